//! The email families (only with `email.host` set).

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::{Exporter, counter, gauge};
use crate::metrics::email::{DROP_REASONS, MAIL_KINDS};

impl Exporter {
    pub(super) fn email(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(m) = &self.0.email else {
            return Ok(());
        };
        let mut me = enc.encode_descriptor(
            "email_sent",
            "Mails the SMTP server accepted, by kind (offline: notification to a group's address; digest: replies to a visitor who was away). A mail sent again after a crash counts again.",
            None,
            MetricType::Counter,
        )?;
        for (kind, c) in MAIL_KINDS.iter().zip(&m.sent) {
            me.encode_family(&[("kind", *kind)])?
                .encode_counter::<NoLabelSet, _, u64>(&c.get(), None)?;
        }
        counter(
            enc,
            "email_failures",
            "SMTP attempts that failed (retried with backoff; dropped after repeated 5xx answers), and failed saves of the mail marks.",
            m.failures.get(),
        )?;
        let mut me = enc.encode_descriptor(
            "email_dropped",
            "Mails dropped unsent, by reason (max_pending: email.max_pending conversations waited already; rejected: refused for good by the SMTP server, or an address that does not parse; no_address: an offline message of a group without a notification address).",
            None,
            MetricType::Counter,
        )?;
        for (reason, c) in DROP_REASONS.iter().zip(&m.dropped) {
            me.encode_family(&[("reason", *reason)])?
                .encode_counter::<NoLabelSet, _, u64>(&c.get(), None)?;
        }
        gauge(
            enc,
            "email_pending",
            "Conversations with mail not sent yet (waiting for its time, an address, or a retry).",
            m.pending.get(),
        )?;
        counter(
            enc,
            "email_records_unreadable",
            "Journal records whose body did not validate, so no mail was made of them (each logged).",
            m.unreadable.get(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::metrics::Metrics;
    use crate::metrics::email::EmailMetrics;
    use crate::ops::admin::exporter::render;

    #[test]
    fn email_series_only_when_on() {
        let none = render(&Arc::new(Metrics::new(1, 1)), false).unwrap();
        assert!(!none.contains("email"), "no family without email");
        let mut m = Metrics::new(1, 1);
        let e = Arc::new(EmailMetrics::default());
        e.sent[1].add(2);
        e.dropped[0].inc();
        e.pending.set(4);
        m.email = Some(e);
        let text = render(&Arc::new(m), false).unwrap();
        for line in [
            "switchboard_email_sent_total{kind=\"offline\"} 0\n",
            "switchboard_email_sent_total{kind=\"digest\"} 2\n",
            "switchboard_email_dropped_total{reason=\"max_pending\"} 1\n",
            "switchboard_email_failures_total 0\n",
            "switchboard_email_pending 4\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
