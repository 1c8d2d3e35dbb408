//! The web edge's families: HTTP answers, WebSocket upgrades and closes, visitor
//! tokens, summed over
//! the reactors.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::Exporter;
use crate::auth::visitor::Outcome;
use crate::metrics::Counter;
use crate::metrics::web::{
    API_OUTCOMES, ATTACHMENT_REFUSALS, WS_DIALECTS, WebMetrics, close_label, status_label,
};

impl Exporter {
    pub(super) fn web(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        self.web_family(
            enc,
            "http_responses",
            "HTTP responses on the client port, by status (101: WebSocket upgrades).",
            "status",
            |w| &w.responses[..],
            status_label,
        )?;
        self.web_family(
            enc,
            "websocket_upgrades",
            "WebSocket connections accepted, by subprotocol (echo: the echo listener).",
            "subprotocol",
            |w| &w.upgrades[..],
            |i| WS_DIALECTS.get(i).copied().unwrap_or("other").to_owned(),
        )?;
        self.web_family(
            enc,
            "websocket_closes_sent",
            "WebSocket Close frames the server started, by code (error: 4000 + a protocol error code).",
            "code",
            |w| &w.closes_sent[..],
            close_label,
        )?;
        self.web_family(
            enc,
            "websocket_closes_received",
            "WebSocket Close frames the peer started, by code.",
            "code",
            |w| &w.closes_received[..],
            close_label,
        )?;
        self.web_family(
            enc,
            "visitor_tokens",
            "Visitor-token requests (POST /web/v1/sites/{site}/visitor-token), by outcome.",
            "outcome",
            |w| &w.visitor_tokens[..],
            |i| {
                Outcome::ALL
                    .get(i)
                    .map_or("other", |o| o.label())
                    .to_owned()
            },
        )?;
        self.web_family(
            enc,
            "console_logins",
            "Console logins (POST /console/v1/login) and refreshes (/console/v1/refresh), by \
             outcome.",
            "outcome",
            |w| &w.console_logins[..],
            |i| {
                crate::console::Outcome::ALL
                    .get(i)
                    .map_or("other", |o| o.label())
                    .to_owned()
            },
        )?;
        self.web_family(
            enc,
            "api_requests",
            "HTTP API requests: routed to the service, refused by the reactor (route, query, \
             body), or refused at api.max_in_flight (busy).",
            "outcome",
            |w| &w.api_requests[..],
            |i| API_OUTCOMES.get(i).copied().unwrap_or("other").to_owned(),
        )?;
        self.web_family(
            enc,
            "attachments_refused",
            "Attachment uploads refused: too_large (api.max_attachment_bytes), media_type \
             (api.attachment_types), bad_request (name, empty), denied (credential, scope, \
             party, closed conversation), failed (not stored), busy (api.max_uploads_in_flight).",
            "reason",
            |w| &w.attachments_refused[..],
            |i| {
                ATTACHMENT_REFUSALS
                    .get(i)
                    .copied()
                    .unwrap_or("other")
                    .to_owned()
            },
        )
    }

    /// One counter family labelled by slot, summed over the reactors.
    fn web_family(
        &self,
        enc: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        label: &'static str,
        slots: impl Fn(&WebMetrics) -> &[Counter],
        value_of: impl Fn(usize) -> String,
    ) -> Result<(), fmt::Error> {
        let mut me = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        let n = self.0.reactors.first().map_or(0, |r| slots(&r.web).len());
        for i in 0..n {
            let total: u64 = self
                .0
                .reactors
                .iter()
                .filter_map(|r| slots(&r.web).get(i).map(Counter::get))
                .sum();
            let labels = [(label, value_of(i))];
            me.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&total, None)?;
        }
        Ok(())
    }
}
