//! Webhook delivery counters, one block per endpoint (written by its outbox thread).

use super::{Counter, Gauge};

/// Outcomes of a delivery attempt, in slot order (the `outcome` label).
pub const ATTEMPT_OUTCOMES: [&str; 5] = ["ok", "gone", "http_error", "timeout", "connection"];

/// One endpoint's counters.
#[derive(Debug, Default)]
pub struct EndpointMetrics {
    /// The endpoint's `id` (the `endpoint` label).
    pub id: String,
    /// POST attempts by outcome ([`ATTEMPT_OUTCOMES`]).
    pub attempts: [Counter; ATTEMPT_OUTCOMES.len()],
    /// Events delivered (answered 2xx); a batch sent again after a crash counts again.
    pub delivered: Counter,
    /// Attempts that failed (anything but 2xx and 410): each is retried.
    pub failures: Counter,
    /// 1 once a 410 disabled the endpoint.
    pub disabled: Gauge,
    /// Age of the oldest undelivered record the endpoint waits for (ms; 0 when
    /// caught up).
    pub lag_ms: Gauge,
    /// Journal segments retention deleted before the endpoint read them: their
    /// events were never sent (each also logged with its range).
    pub segments_skipped: Counter,
    /// Records whose body did not validate: no event (each logged).
    pub unreadable: Counter,
}

impl EndpointMetrics {
    /// Zeroed counters for endpoint `id`.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            ..Self::default()
        }
    }
}
