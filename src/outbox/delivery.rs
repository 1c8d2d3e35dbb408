//! One endpoint's delivery rules (sans-IO): how a batch is built, what an attempt's
//! outcome leads to, and how long to wait before the next attempt (exponential
//! backoff with full jitter, capped). The clock and the random numbers come in.

use crate::journal::Location;

/// First backoff cap: the first retry waits up to this long (or `max_backoff` when
/// lower).
pub(crate) const INITIAL_BACKOFF_MS: u64 = 500;

/// What one POST came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The endpoint answered with this status.
    Status(u16),
    /// No answer within `timeout`.
    Timeout,
    /// Could not connect, or the connection broke.
    Connection,
}

#[cfg(test)]
use crate::metrics::webhooks::ATTEMPT_OUTCOMES as OUTCOMES;

impl Outcome {
    /// The metric slot of this outcome in
    /// [`ATTEMPT_OUTCOMES`](crate::metrics::webhooks::ATTEMPT_OUTCOMES).
    pub(crate) fn slot(self) -> usize {
        match self {
            Outcome::Status(s) if (200..300).contains(&s) => 0,
            Outcome::Status(410) => 1,
            Outcome::Status(_) => 2,
            Outcome::Timeout => 3,
            Outcome::Connection => 4,
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Delivered (2xx): move the cursor past the batch.
    Delivered,
    /// Try the same batch again at this time (ms, the caller's clock).
    RetryAt(u64),
    /// 410 Gone: stop sending to this endpoint for good.
    Disable,
}

/// The retry state of one endpoint's current batch.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    max_backoff_ms: u64,
    /// Failed attempts of the current batch.
    failures: u32,
}

impl Delivery {
    /// Retries wait at most `max_backoff_ms`.
    pub(crate) fn new(max_backoff_ms: u64) -> Self {
        Self {
            max_backoff_ms: max_backoff_ms.max(1),
            failures: 0,
        }
    }

    /// Failed attempts of the current batch so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// The longest wait after `failures` failed attempts: doubling from
    /// [`INITIAL_BACKOFF_MS`], capped at `max_backoff`.
    pub(crate) fn cap_ms(&self, failures: u32) -> u64 {
        let doubled = INITIAL_BACKOFF_MS.saturating_mul(1u64 << failures.saturating_sub(1).min(40));
        doubled.min(self.max_backoff_ms)
    }

    /// Applies the outcome of an attempt made at `now_ms`; `random` gives a uniformly
    /// random `u64` (full jitter: the wait is uniform in `0 ..= cap`).
    pub(crate) fn on_outcome(
        &mut self,
        outcome: Outcome,
        now_ms: u64,
        random: &mut impl FnMut() -> u64,
    ) -> Next {
        match outcome {
            Outcome::Status(s) if (200..300).contains(&s) => {
                self.failures = 0;
                Next::Delivered
            }
            Outcome::Status(410) => Next::Disable,
            _ => {
                self.failures = self.failures.saturating_add(1);
                let cap = self.cap_ms(self.failures);
                let wait = random() % cap.saturating_add(1);
                Next::RetryAt(now_ms.saturating_add(wait))
            }
        }
    }
}

/// The `webhook-id` of the batch starting at record `start` with `events` events: the
/// same after a retry and after a restart (the cursor keeps the batch).
pub(crate) fn webhook_id(start: Location, events: u32) -> String {
    format!("msg_{}_{}_{events}", start.segment, start.offset)
}

/// A POST body being built: a JSON array of events.
#[derive(Debug)]
pub(crate) struct Batch {
    body: Vec<u8>,
    events: u32,
    max_events: u32,
    max_bytes: usize,
}

impl Batch {
    /// An empty batch of at most `max_events` events and `max_bytes` bytes (one event
    /// larger than that still goes, alone).
    pub(crate) fn new(max_events: usize, max_bytes: usize) -> Self {
        let mut body = Vec::with_capacity(max_bytes.min(64 << 10));
        body.push(b'[');
        Self {
            body,
            events: 0,
            max_events: u32::try_from(max_events).unwrap_or(u32::MAX).max(1),
            max_bytes,
        }
    }

    /// Events in the batch.
    pub(crate) fn events(&self) -> u32 {
        self.events
    }

    /// Whether the batch takes no more events.
    pub(crate) fn is_full(&self) -> bool {
        self.events >= self.max_events
    }

    /// Whether `len` more bytes of events would fit (always, when empty).
    pub(crate) fn fits(&self, len: usize) -> bool {
        // A comma before it and the closing bracket after.
        self.events == 0 || self.body.len() + len + 2 <= self.max_bytes
    }

    /// Adds one event's JSON (the caller checked [`Batch::fits`] and
    /// [`Batch::is_full`]).
    pub(crate) fn push(&mut self, event: &[u8]) {
        if self.events > 0 {
            self.body.push(b',');
        }
        self.body.extend_from_slice(event);
        self.events += 1;
    }

    /// The body: `[event, ...]`.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.body.push(b']');
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed sequence of "random" numbers.
    fn fixed(values: &[u64]) -> impl FnMut() -> u64 + '_ {
        let mut i = 0;
        move || {
            let v = values[i % values.len()];
            i += 1;
            v
        }
    }

    #[test]
    fn success_delivers_and_resets_the_backoff() {
        let mut d = Delivery::new(60_000);
        // 500 % (500 + 1): the whole first cap.
        let mut r = fixed(&[500]);
        assert_eq!(
            d.on_outcome(Outcome::Status(500), 0, &mut r),
            Next::RetryAt(500)
        );
        assert_eq!(d.failures(), 1);
        assert_eq!(
            d.on_outcome(Outcome::Status(204), 1000, &mut r),
            Next::Delivered
        );
        assert_eq!(d.failures(), 0);
        // The next batch starts from the first cap again.
        assert_eq!(
            d.on_outcome(Outcome::Timeout, 2000, &mut r),
            Next::RetryAt(2500)
        );
    }

    #[test]
    fn the_cap_doubles_up_to_max_backoff() {
        let mut d = Delivery::new(5_000);
        // The largest random number each time: the wait is the cap.
        let mut r = fixed(&[u64::MAX]);
        let mut waits = Vec::new();
        for now in [0u64, 10_000, 20_000, 30_000, 40_000, 50_000] {
            match d.on_outcome(Outcome::Connection, now, &mut r) {
                Next::RetryAt(at) => waits.push(at - now),
                other => panic!("{other:?}"),
            }
        }
        // u64::MAX % (cap + 1): the cap itself when cap + 1 is a power of two; check
        // the caps instead, and that every wait is within its cap.
        let caps: Vec<u64> = (1..=6).map(|f| d.cap_ms(f)).collect();
        assert_eq!(caps, [500, 1000, 2000, 4000, 5000, 5000]);
        for (w, c) in waits.iter().zip(&caps) {
            assert!(w <= c, "{waits:?} {caps:?}");
        }
    }

    #[test]
    fn full_jitter_spreads_over_zero_to_cap() {
        let mut d = Delivery::new(300_000);
        let mut r = fixed(&[0, 250, 500]);
        let got: Vec<Next> = (0..3)
            .map(|_| {
                let mut one = Delivery::new(300_000);
                one.on_outcome(Outcome::Status(503), 100, &mut r)
            })
            .collect();
        assert_eq!(
            got,
            [Next::RetryAt(100), Next::RetryAt(350), Next::RetryAt(600)]
        );
        // Forever: a thousand failures still give a wait within max_backoff.
        let mut r = fixed(&[u64::MAX - 1]);
        for _ in 0..1000 {
            match d.on_outcome(Outcome::Status(429), 0, &mut r) {
                Next::RetryAt(at) => assert!(at <= 300_000),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(d.failures(), 1000);
    }

    #[test]
    fn gone_disables_and_other_statuses_retry() {
        let mut r = fixed(&[0]);
        assert_eq!(
            Delivery::new(1000).on_outcome(Outcome::Status(410), 0, &mut r),
            Next::Disable
        );
        for s in [301, 400, 404, 429, 500, 503] {
            assert!(matches!(
                Delivery::new(1000).on_outcome(Outcome::Status(s), 0, &mut r),
                Next::RetryAt(_)
            ));
        }
        assert_eq!(Outcome::Status(204).slot(), 0);
        assert_eq!(OUTCOMES[Outcome::Status(410).slot()], "gone");
        assert_eq!(OUTCOMES[Outcome::Status(302).slot()], "http_error");
        assert_eq!(OUTCOMES[Outcome::Timeout.slot()], "timeout");
    }

    #[test]
    fn batches_are_json_arrays_bounded_in_events_and_bytes() {
        let mut b = Batch::new(2, 1 << 20);
        assert!(!b.is_full() && b.fits(10));
        b.push(b"{\"a\":1}");
        b.push(b"{\"b\":2}");
        assert!(b.is_full());
        assert_eq!(b.finish(), b"[{\"a\":1},{\"b\":2}]");
        let mut b = Batch::new(100, 20);
        let big = [b'1'; 30];
        assert!(b.fits(big.len()), "an empty batch takes any event");
        b.push(&big);
        assert!(!b.fits(1));
        assert_eq!(b.events(), 1);
        assert_eq!(Batch::new(1, 100).finish(), b"[]");
    }

    #[test]
    fn ids_name_the_batch_start_and_size() {
        let at = Location {
            segment: 3,
            offset: 4160,
        };
        assert_eq!(webhook_id(at, 25), "msg_3_4160_25");
    }
}
