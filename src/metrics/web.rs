//! Counters of the web edge (HTTP answers, WebSocket upgrades and closes), one block
//! per reactor.

use super::Counter;

/// HTTP statuses the client port answers with, in slot order; anything else counts
/// as `other`.
pub const HTTP_STATUSES: [u16; 20] = [
    101, 200, 400, 403, 404, 405, 408, 426, 431, 501, 503, 505, 413, 204, 411, 415, 429, 500, 401,
    409,
];

/// Outcomes of HTTP API requests, in slot order: handed to the service, refused by
/// the reactor (no such route, bad query or body), refused at `api.max_in_flight`.
pub const API_OUTCOMES: [&str; 3] = ["routed", "refused", "busy"];

/// Why attachment uploads were refused, in slot order: past
/// `api.max_attachment_bytes`, a media type not in `api.attachment_types`, a bad
/// name or an empty body, refused by the service (credential, scope, party, a closed
/// conversation), not stored (the disk), or past `api.max_uploads_in_flight`.
pub const ATTACHMENT_REFUSALS: [&str; 6] = [
    "too_large",
    "media_type",
    "bad_request",
    "denied",
    "failed",
    "busy",
];

/// WebSocket close codes counted by name, in slot order; anything else counts as
/// `other` (4000 + an error code: `error`).
pub const WS_CLOSE_CODES: [u16; 9] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013];

/// Labels of the WebSocket dialects, in slot order.
pub const WS_DIALECTS: [&str; 3] = ["switchboard.v1.json", "switchboard.v1.bin", "echo"];

/// One reactor's web-edge counters.
#[derive(Debug, Default)]
pub struct WebMetrics {
    /// HTTP responses by status ([`HTTP_STATUSES`], then `other`).
    pub responses: [Counter; HTTP_STATUSES.len() + 1],
    /// WebSocket upgrades by dialect ([`WS_DIALECTS`]).
    pub upgrades: [Counter; WS_DIALECTS.len()],
    /// WebSocket closes the server started, by code ([`WS_CLOSE_CODES`], then
    /// `error` for 4000 + code, then `other`).
    pub closes_sent: [Counter; WS_CLOSE_CODES.len() + 2],
    /// WebSocket closes the peer started, by code (same slots).
    pub closes_received: [Counter; WS_CLOSE_CODES.len() + 2],
    /// Visitor-token requests by outcome ([`crate::auth::visitor::Outcome::ALL`]).
    pub visitor_tokens: [Counter; crate::auth::visitor::Outcome::ALL.len()],
    /// HTTP API requests by outcome ([`API_OUTCOMES`]).
    pub api_requests: [Counter; API_OUTCOMES.len()],
    /// Attachment uploads refused, by reason ([`ATTACHMENT_REFUSALS`]).
    pub attachments_refused: [Counter; ATTACHMENT_REFUSALS.len()],
    /// Console logins and refreshes by outcome ([`crate::console::Outcome::ALL`]).
    pub console_logins: [Counter; crate::console::Outcome::ALL.len()],
}

impl WebMetrics {
    /// Counts one HTTP response.
    pub fn count_response(&self, status: u16) {
        let i = HTTP_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(HTTP_STATUSES.len());
        if let Some(c) = self.responses.get(i) {
            c.inc();
        }
    }

    /// Counts one visitor-token request with the outcome in slot `i`.
    pub fn count_visitor(&self, i: usize) {
        if let Some(c) = self.visitor_tokens.get(i) {
            c.inc();
        }
    }

    /// Counts one console login or refresh with the outcome in slot `i`.
    pub fn count_console(&self, i: usize) {
        if let Some(c) = self.console_logins.get(i) {
            c.inc();
        }
    }

    /// Counts one HTTP API request with the outcome in slot `i` of [`API_OUTCOMES`].
    pub fn count_api(&self, i: usize) {
        if let Some(c) = self.api_requests.get(i) {
            c.inc();
        }
    }

    /// Counts one refused upload with the reason in slot `i` of
    /// [`ATTACHMENT_REFUSALS`].
    pub fn count_attachment_refused(&self, i: usize) {
        if let Some(c) = self.attachments_refused.get(i) {
            c.inc();
        }
    }

    /// Counts one upgrade to the dialect in slot `i` of [`WS_DIALECTS`].
    pub fn count_upgrade_slot(&self, i: usize) {
        if let Some(c) = self.upgrades.get(i) {
            c.inc();
        }
    }

    /// Counts one WebSocket close with `code`, sent by the server or by the peer.
    pub fn count_ws_close(&self, code: u16, by_server: bool) {
        let table = if by_server {
            &self.closes_sent
        } else {
            &self.closes_received
        };
        if let Some(c) = table.get(close_slot(code)) {
            c.inc();
        }
    }
}

/// The slot of a close code in [`WebMetrics::closes_sent`].
fn close_slot(code: u16) -> usize {
    match WS_CLOSE_CODES.iter().position(|c| *c == code) {
        Some(i) => i,
        None if (4000..5000).contains(&code) => WS_CLOSE_CODES.len(),
        None => WS_CLOSE_CODES.len() + 1,
    }
}

/// The label of close slot `i`.
pub fn close_label(i: usize) -> String {
    match WS_CLOSE_CODES.get(i) {
        Some(code) => code.to_string(),
        None if i == WS_CLOSE_CODES.len() => "error".into(),
        None => "other".into(),
    }
}

/// The label of response slot `i`.
pub fn status_label(i: usize) -> String {
    HTTP_STATUSES
        .get(i)
        .map_or_else(|| "other".into(), u16::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_land_in_their_slots() {
        let m = WebMetrics::default();
        m.count_response(404);
        m.count_response(299);
        m.count_ws_close(1009, true);
        m.count_ws_close(4301, true);
        m.count_ws_close(1234, false);
        assert_eq!(m.responses[4].get(), 1);
        assert_eq!(m.responses[HTTP_STATUSES.len()].get(), 1);
        assert_eq!(m.closes_sent[6].get(), 1);
        assert_eq!(m.closes_sent[WS_CLOSE_CODES.len()].get(), 1);
        assert_eq!(m.closes_received[WS_CLOSE_CODES.len() + 1].get(), 1);
        assert_eq!(close_label(WS_CLOSE_CODES.len()), "error");
        assert_eq!(status_label(1), "200");
    }
}
