//! The webhook families: one series per `[[webhooks]]` endpoint.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::Exporter;
use crate::metrics::webhooks::{ATTEMPT_OUTCOMES, EndpointMetrics};

/// A per-endpoint family: name, help, type, value.
type Family = (
    &'static str,
    &'static str,
    MetricType,
    fn(&EndpointMetrics) -> f64,
);

impl Exporter {
    pub(super) fn webhooks(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let hooks = &self.0.webhooks;
        if hooks.is_empty() {
            return Ok(());
        }
        let mut me = enc.encode_descriptor(
            "webhook_attempts",
            "Webhook POST attempts, by endpoint and outcome (ok: 2xx; gone: 410; http_error: another status; timeout; connection: could not connect or the connection broke).",
            None,
            MetricType::Counter,
        )?;
        for h in hooks {
            for (outcome, c) in ATTEMPT_OUTCOMES.iter().zip(&h.attempts) {
                me.encode_family(&[("endpoint", h.id.as_str()), ("outcome", outcome)])?
                    .encode_counter::<NoLabelSet, _, u64>(&c.get(), None)?;
            }
        }
        let families: [Family; 6] = [
            (
                "webhook_events_delivered",
                "Webhook events delivered (their POST answered 2xx), by endpoint.",
                MetricType::Counter,
                |h| h.delivered.get() as f64,
            ),
            (
                "webhook_failures",
                "Webhook POST attempts that failed and are retried with backoff, by endpoint.",
                MetricType::Counter,
                |h| h.failures.get() as f64,
            ),
            (
                "webhook_segments_skipped",
                "Journal segments retention deleted before the endpoint read them (their events were never sent; each logged), by endpoint.",
                MetricType::Counter,
                |h| h.segments_skipped.get() as f64,
            ),
            (
                "webhook_records_unreadable",
                "Journal records whose body did not validate, so no event was made of them (each logged), by endpoint.",
                MetricType::Counter,
                |h| h.unreadable.get() as f64,
            ),
            (
                "webhook_disabled",
                "1 once the endpoint answered 410 Gone and was disabled, by endpoint.",
                MetricType::Gauge,
                |h| h.disabled.get() as f64,
            ),
            (
                "webhook_lag_seconds",
                "Age of the oldest committed record whose events the endpoint has not acknowledged yet (0 when caught up), by endpoint.",
                MetricType::Gauge,
                |h| h.lag_ms.get() as f64 / 1e3,
            ),
        ];
        for (name, help, kind, value) in families {
            let mut me = enc.encode_descriptor(name, help, None, kind)?;
            for h in hooks {
                let labels = [("endpoint", h.id.as_str())];
                let mut m = me.encode_family(&labels)?;
                let v = value(h);
                match kind {
                    MetricType::Counter => {
                        m.encode_counter::<NoLabelSet, _, u64>(&(v as u64), None)?
                    }
                    _ => m.encode_gauge(&v)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::metrics::Metrics;
    use crate::metrics::webhooks::EndpointMetrics;
    use crate::ops::admin::exporter::render;

    #[test]
    fn each_endpoint_has_its_series() {
        let mut m = Metrics::new(1, 1);
        let crm = Arc::new(EndpointMetrics::new("crm"));
        crm.attempts[0].add(3);
        crm.attempts[2].inc();
        crm.delivered.add(250);
        crm.lag_ms.set(1500);
        m.webhooks = vec![crm, Arc::new(EndpointMetrics::new("bi"))];
        let text = render(&Arc::new(m), false).unwrap();
        for line in [
            "switchboard_webhook_attempts_total{endpoint=\"crm\",outcome=\"ok\"} 3\n",
            "switchboard_webhook_attempts_total{endpoint=\"crm\",outcome=\"http_error\"} 1\n",
            "switchboard_webhook_events_delivered_total{endpoint=\"crm\"} 250\n",
            "switchboard_webhook_lag_seconds{endpoint=\"crm\"} 1.5\n",
            "switchboard_webhook_disabled{endpoint=\"bi\"} 0",
            "# TYPE switchboard_webhook_failures_total counter\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let none = render(&Arc::new(Metrics::new(1, 1)), false).unwrap();
        assert!(!none.contains("webhook"), "no family without endpoints");
    }
}
