//! The client's liveness deadlines, sans-IO: given the time, when the last frame went
//! out and when bytes last came in, what the read loop does next (send a heartbeat,
//! give the connection up as dead, return, or wait until when). The blocking calls
//! read the clock and hand it in; the tests below script it.

use std::time::{Duration, Instant};

/// What the read loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The caller's deadline passed: return with nothing.
    Done,
    /// Nothing arrived for `dead_after` following a heartbeat: the connection is dead.
    Dead,
    /// Quiet for the heartbeat interval: send a heartbeat `Ping`, then ask again.
    Heartbeat,
    /// Read, waiting at most until then.
    Wait(Instant),
}

/// Heartbeat and dead-connection deadlines of one connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Liveness {
    /// The heartbeat interval in use.
    pub heartbeat: Duration,
    /// Silence after a heartbeat that counts as a dead connection.
    pub dead_after: Duration,
    /// When a heartbeat `Ping` went out with nothing received since.
    silent_since: Option<Instant>,
}

impl Liveness {
    /// Deadlines for a new connection (nothing in flight).
    pub fn new(heartbeat: Duration, dead_after: Duration) -> Self {
        Self {
            heartbeat,
            dead_after,
            silent_since: None,
        }
    }

    /// What to do at `now`, for a caller waiting until `deadline`. `watching`: false
    /// once the session is ending (no heartbeats, no dead-connection check).
    pub fn next(
        &mut self,
        now: Instant,
        deadline: Instant,
        (last_sent, last_received): (Instant, Instant),
        watching: bool,
    ) -> Step {
        if now >= deadline {
            return Step::Done;
        }
        let mut wake = deadline;
        if watching {
            if let Some(dead) = self.dead_at(last_received) {
                if now >= dead {
                    return Step::Dead;
                }
                wake = wake.min(dead);
            }
            if let Some(due) = last_sent.checked_add(self.heartbeat) {
                if now >= due {
                    return Step::Heartbeat;
                }
                wake = wake.min(due);
            }
        }
        Step::Wait(wake)
    }

    /// A heartbeat `Ping` went out at `now`: the dead-connection clock runs from the
    /// first one with nothing received since.
    pub fn heartbeat_sent(&mut self, now: Instant) {
        self.silent_since.get_or_insert(now);
    }

    /// When the connection counts as dead: `dead_after` past a heartbeat `Ping` with
    /// nothing received since (`None` while not waiting on one).
    fn dead_at(&mut self, last_received: Instant) -> Option<Instant> {
        let sent = self.silent_since?;
        if last_received >= sent {
            self.silent_since = None;
            return None;
        }
        sent.checked_add(self.dead_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock: milliseconds after a fixed origin.
    struct Fake(Instant);

    impl Fake {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    const HEARTBEAT: Duration = Duration::from_millis(100);
    const DEAD_AFTER: Duration = Duration::from_millis(300);

    #[test]
    fn a_quiet_connection_sends_a_heartbeat_when_the_interval_has_passed() {
        let t = Fake(Instant::now());
        let mut l = Liveness::new(HEARTBEAT, DEAD_AFTER);
        let io = (t.at(0), t.at(0));
        assert_eq!(
            l.next(t.at(50), t.at(1_000), io, true),
            Step::Wait(t.at(100))
        );
        assert_eq!(
            l.next(t.at(99), t.at(1_000), io, true),
            Step::Wait(t.at(100))
        );
        assert_eq!(l.next(t.at(100), t.at(1_000), io, true), Step::Heartbeat);
        // Any frame sent counts: the next heartbeat is due an interval after it.
        let io = (t.at(100), t.at(0));
        l.heartbeat_sent(t.at(100));
        assert_eq!(
            l.next(t.at(100), t.at(1_000), io, true),
            Step::Wait(t.at(200))
        );
    }

    #[test]
    fn silence_after_a_heartbeat_is_dead_after_dead_after() {
        let t = Fake(Instant::now());
        let mut l = Liveness::new(HEARTBEAT, DEAD_AFTER);
        assert_eq!(
            l.next(t.at(100), t.at(10_000), (t.at(0), t.at(0)), true),
            Step::Heartbeat
        );
        l.heartbeat_sent(t.at(100));
        // Heartbeats go on meanwhile; the dead clock runs from the first.
        assert_eq!(
            l.next(t.at(200), t.at(10_000), (t.at(100), t.at(0)), true),
            Step::Heartbeat
        );
        l.heartbeat_sent(t.at(200));
        let io = (t.at(300), t.at(0));
        assert_eq!(
            l.next(t.at(350), t.at(10_000), io, true),
            Step::Wait(t.at(400)),
            "dead at 100 + 300, the next heartbeat at 300 + 100"
        );
        let io = (t.at(390), t.at(0));
        assert_eq!(
            l.next(t.at(399), t.at(10_000), io, true),
            Step::Wait(t.at(400))
        );
        assert_eq!(l.next(t.at(400), t.at(10_000), io, true), Step::Dead);
    }

    #[test]
    fn anything_received_after_the_heartbeat_stops_the_dead_clock() {
        let t = Fake(Instant::now());
        let mut l = Liveness::new(HEARTBEAT, DEAD_AFTER);
        l.heartbeat_sent(t.at(100));
        let io = (t.at(100), t.at(150));
        assert_eq!(
            l.next(t.at(180), t.at(10_000), io, true),
            Step::Wait(t.at(200))
        );
        let io = (t.at(1_000), t.at(150));
        assert_eq!(
            l.next(t.at(1_050), t.at(10_000), io, true),
            Step::Wait(t.at(1_100)),
            "never dead: the Pong came"
        );
    }

    #[test]
    fn the_callers_deadline_comes_first_and_an_ending_session_only_waits() {
        let t = Fake(Instant::now());
        let mut l = Liveness::new(HEARTBEAT, DEAD_AFTER);
        l.heartbeat_sent(t.at(10));
        let io = (t.at(10), t.at(0));
        assert_eq!(l.next(t.at(500), t.at(500), io, true), Step::Done);
        assert_eq!(
            l.next(t.at(499), t.at(500), io, false),
            Step::Wait(t.at(500))
        );
        assert_eq!(l.next(t.at(499), t.at(500), io, true), Step::Dead);
        assert_eq!(l.next(t.at(20), t.at(50), io, true), Step::Wait(t.at(50)));
    }
}
