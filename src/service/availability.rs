//! What a visitor learns about the groups it may write to: whether anyone is online,
//! and how long a conversation opened now is expected to wait (PROTOCOL.md §§4.18a,
//! 13.14).
//!
//! The router keeps one [`WaitEstimate`] per group and the last [`Availability`] it
//! told the group's visitors; it tells them again only when that changes, so the
//! estimate moves in coarse steps ([`messages::WAIT_STEPS_MS`]) with some hysteresis:
//! a queue whose average hovers around a step boundary does not make every visitor
//! of the group hear about it at each assignment.

use crate::protocol::messages;

/// What the visitors of a group are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Availability {
    /// Some agent or bot of the group is online.
    pub online: bool,
    /// Expected wait, a step of [`messages::WAIT_STEPS_MS`] or 0.
    pub wait_ms: u64,
}

impl Availability {
    /// The wire form for `group`.
    pub fn to_message(self, group: &str) -> messages::GroupAvailability {
        messages::GroupAvailability {
            online: self.online,
            estimated_wait_ms: self.wait_ms,
            group: group.to_owned(),
        }
    }
}

/// A moving average of how long conversations waited in a group's queue before an
/// agent took them.
#[derive(Debug, Default, Clone)]
pub(crate) struct WaitEstimate {
    /// `None` until a conversation has waited.
    average_ms: Option<u64>,
}

impl WaitEstimate {
    /// A conversation left the queue for an agent after `waited_ms`.
    pub fn record(&mut self, waited_ms: u64) {
        // Weight 1/8: roughly the last dozen waits count.
        self.average_ms = Some(match self.average_ms {
            None => waited_ms,
            Some(a) => a - a / 8 + waited_ms / 8,
        });
    }

    /// The expected wait of a conversation queued now, in milliseconds: the recent
    /// average, or longer if the queue's head has already waited longer (a stalled
    /// queue); at least the first step, since an agent had no room.
    pub fn expected(&self, head_waited_ms: u64) -> u64 {
        self.average_ms
            .unwrap_or(0)
            .max(head_waited_ms)
            .max(messages::WAIT_STEPS_MS[0])
    }
}

/// What the visitors of a group are told, given whether an agent is online, whether
/// one has room with nobody waiting, the raw expected wait, and what they were told
/// last (for the hysteresis).
pub(crate) fn availability(
    online: bool,
    room_now: bool,
    expected_ms: u64,
    told: Option<Availability>,
) -> Availability {
    let wait_ms = if !online || room_now {
        0
    } else {
        step(expected_ms, told.map_or(0, |t| t.wait_ms))
    };
    Availability { online, wait_ms }
}

/// `ms` rounded up to a step, but `told` kept while `ms` stays within 10% of that
/// step's range.
fn step(ms: u64, told: u64) -> u64 {
    let steps = &messages::WAIT_STEPS_MS;
    let up = steps
        .iter()
        .copied()
        .find(|&s| ms <= s)
        .unwrap_or(steps[steps.len() - 1]);
    let Some(i) = steps.iter().position(|&s| s == told) else {
        return up;
    };
    let below = if i == 0 { 0 } else { steps[i - 1] };
    let last = i == steps.len() - 1;
    let within = ms > below - below / 10 && (last || ms <= told + told / 10);
    if within { told } else { up }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_online_or_room_now_is_zero() {
        assert_eq!(availability(false, false, 500_000, None).wait_ms, 0);
        assert_eq!(availability(true, true, 500_000, None).wait_ms, 0);
        assert!(availability(true, true, 0, None).online);
    }

    #[test]
    fn waits_round_up_to_a_step() {
        assert_eq!(step(1, 0), 15_000);
        assert_eq!(step(15_000, 0), 15_000);
        assert_eq!(step(15_001, 0), 30_000);
        assert_eq!(step(170_000, 0), 180_000);
        assert_eq!(step(10 * 3_600_000, 0), 3_600_000);
    }

    #[test]
    fn a_told_step_holds_within_ten_percent() {
        // Told 3 min (range 2..3 min): 3 min 10 s and 1 min 50 s keep it.
        assert_eq!(step(190_000, 180_000), 180_000);
        assert_eq!(step(110_000, 180_000), 180_000);
        // Clearly outside: the new step.
        assert_eq!(step(250_000, 180_000), 300_000);
        assert_eq!(step(100_000, 180_000), 120_000);
        // The last step has no upper edge.
        assert_eq!(step(100 * 3_600_000, 3_600_000), 3_600_000);
    }

    #[test]
    fn the_average_follows_recent_waits() {
        let mut e = WaitEstimate::default();
        assert_eq!(e.expected(0), 15_000, "no history: the first step");
        e.record(240_000);
        assert_eq!(e.expected(0), 240_000);
        for _ in 0..40 {
            e.record(60_000);
        }
        let now = e.expected(0);
        assert!((60_000..61_000).contains(&now), "{now}");
        // A stalled queue: its head has waited longer than the average.
        assert_eq!(e.expected(900_000), 900_000);
    }
}
