//! The per-reactor heartbeat timer: one min-heap of (deadline, slot, generation).
//!
//! Connections never own timer objects. Activity only updates a timestamp on the
//! connection; when an entry comes due the reactor compares it with the connection's
//! real deadline and either fires, re-arms, or drops the entry (lazy deletion: entries
//! of closed connections are recognised by a stale generation and discarded).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::clock::Mono;

/// One armed deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    /// On the reactor's clock.
    pub deadline: Mono,
    /// Slab slot of the connection.
    pub slot: u32,
    /// Generation the connection had when armed.
    pub generation: u32,
}

/// A min-heap of deadlines.
#[derive(Debug, Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl TimerHeap {
    /// Arms a deadline.
    pub fn push(&mut self, deadline: Mono, slot: u32, generation: u32) {
        self.heap.push(Reverse(Entry {
            deadline,
            slot,
            generation,
        }));
    }

    /// The earliest armed deadline.
    pub fn next_deadline(&self) -> Option<Mono> {
        self.heap.peek().map(|Reverse(e)| e.deadline)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Mono) -> Option<Entry> {
        if self.next_deadline()? <= now {
            self.heap.pop().map(|Reverse(e)| e)
        } else {
            None
        }
    }

    /// Armed entries, live or stale.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Mono {
        Mono::from_ms(ms)
    }

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let mut t = TimerHeap::default();
        t.push(ms(30), 3, 1);
        t.push(ms(10), 1, 1);
        t.push(ms(20), 2, 1);
        assert_eq!(t.pop_due(ms(5)), None);
        assert_eq!(t.pop_due(ms(25)).map(|e| e.slot), Some(1));
        assert_eq!(t.pop_due(ms(25)).map(|e| e.slot), Some(2));
        assert_eq!(t.pop_due(ms(25)), None);
        assert_eq!(t.next_deadline(), Some(ms(30)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn hundred_thousand_entries_drain_sorted() {
        let mut t = TimerHeap::default();
        let mut x: u64 = 0x9E37_79B9;
        for slot in 0..100_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t.push(ms(x % 1_000_000), slot, 1);
        }
        let mut last = Mono::ZERO;
        let mut n = 0;
        while let Some(e) = t.pop_due(ms(u64::MAX)) {
            assert!(e.deadline >= last);
            last = e.deadline;
            n += 1;
        }
        assert_eq!(n, 100_000);
    }
}
