//! The session worker's token deadlines: (end, connection) of every session, soonest
//! first. A binary heap with lazy removal: a session that ends or moves its deadline
//! leaves its old entry behind as stale, taken out when it reaches the head and swept
//! out once the stale ones are as many as the live ones. 24 bytes an entry in one `Vec`
//! (plus its doubling), against ~49 for a `BTreeSet` whose nodes are half full
//! (README, "Memory per authenticated session"); insert and pop are O(log n).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::handoff::ConnId;

/// Fewer stale entries than this are never swept (a sweep walks the whole heap).
const MIN_SWEEP: usize = 64;

/// Deadlines by (end in Unix ms, connection).
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    heap: BinaryHeap<Reverse<(u64, ConnId)>>,
    /// Entries in `heap` that no longer belong to a session (an upper bound: a
    /// sweep or a skipped pop brings it back to the truth).
    stale: usize,
}

impl Deadlines {
    /// Records `conn`'s deadline `at` (exactly one live entry per session).
    pub fn insert(&mut self, at: u64, conn: ConnId) {
        self.heap.push(Reverse((at, conn)));
    }

    /// `conn`'s deadline `at` no longer holds (the session ended or moved it; `live`
    /// says which entries still do): its entry turns stale. A stale entry at the head
    /// is taken out at once (the head is always live, so [`Deadlines::first`] is
    /// exact); once stale entries outnumber the live ones, all are swept out.
    pub fn remove(&mut self, at: u64, conn: ConnId, live: impl Fn(u64, ConnId) -> bool) {
        debug_assert!(!live(at, conn), "remove a deadline that still holds");
        self.stale += 1;
        if self.stale >= MIN_SWEEP && self.stale * 2 >= self.heap.len() {
            self.heap.retain(|Reverse((at, conn))| live(*at, *conn));
            self.stale = 0;
            // A heap that held many more sessions than now gives the memory back.
            if self.heap.capacity() > 4 * self.heap.len().max(16) {
                self.heap.shrink_to(2 * self.heap.len());
            }
        }
        self.settle(&live);
    }

    /// The soonest deadline.
    pub fn first(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes out the soonest entry if it is due by `now` (it is live: the head
    /// always is).
    pub fn pop_due(&mut self, now: u64, live: impl Fn(u64, ConnId) -> bool) -> Option<ConnId> {
        let &Reverse((at, conn)) = self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        // A deadline moved away and back again left an equal stale entry: it is the
        // head now, and must not come out a second time.
        while self.heap.peek() == Some(&Reverse((at, conn))) {
            self.heap.pop();
            self.stale = self.stale.saturating_sub(1);
        }
        self.settle(&live);
        Some(conn)
    }

    /// Takes stale entries off the head until a live one (or none) is there.
    fn settle(&mut self, live: &impl Fn(u64, ConnId) -> bool) {
        while let Some(&Reverse((at, conn))) = self.heap.peek() {
            if live(at, conn) {
                break;
            }
            self.heap.pop();
            self.stale = self.stale.saturating_sub(1);
        }
    }

    /// Entries held, stale ones included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn conn(slot: u32) -> ConnId {
        ConnId {
            reactor: 0,
            slot,
            generation: 1,
        }
    }

    #[test]
    fn pops_in_order_and_skips_removed() {
        let mut d = Deadlines::default();
        let mut live = BTreeMap::new();
        for (slot, at) in [(1, 30), (2, 10), (3, 20)] {
            d.insert(at, conn(slot));
            live.insert(conn(slot), at);
        }
        live.remove(&conn(2));
        d.remove(10, conn(2), |at, c| live.get(&c) == Some(&at));
        assert_eq!(d.first(), Some(20), "a stale head is taken out");
        let is_live = |at, c| live.get(&c) == Some(&at);
        assert_eq!(d.pop_due(5, is_live), None);
        assert_eq!(d.pop_due(25, is_live), Some(conn(3)));
        assert_eq!(d.pop_due(25, is_live), None);
        assert_eq!(d.first(), Some(30));
    }

    #[test]
    fn a_deadline_moved_away_and_back_comes_out_once() {
        let mut d = Deadlines::default();
        let mut live = BTreeMap::from([(conn(1), 10)]);
        d.insert(10, conn(1));
        for at in [20, 10] {
            let old = live.insert(conn(1), at).expect("live");
            d.insert(at, conn(1));
            d.remove(old, conn(1), |at, c| live.get(&c) == Some(&at));
        }
        let is_live = |at, c| live.get(&c) == Some(&at);
        assert_eq!(d.pop_due(15, is_live), Some(conn(1)));
        live.remove(&conn(1));
        assert_eq!(d.pop_due(100, |at, c| live.get(&c) == Some(&at)), None);
        assert_eq!(d.first(), None);
    }

    #[test]
    fn stale_entries_are_swept() {
        let mut d = Deadlines::default();
        let mut live = BTreeMap::new();
        for slot in 0..1000 {
            d.insert(u64::from(slot), conn(slot));
            live.insert(conn(slot), u64::from(slot));
        }
        for slot in 0..1000 {
            live.remove(&conn(slot));
            d.remove(u64::from(slot), conn(slot), |at, c| {
                live.get(&c) == Some(&at)
            });
            assert!(d.len() <= 2 * live.len() + MIN_SWEEP, "{} held", d.len());
        }
    }

    proptest! {
        /// Against a model: what is due comes out, in deadline order, exactly once.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u32..50, 0u64..100, any::<bool>()), 0..400)) {
            let mut d = Deadlines::default();
            let mut live: BTreeMap<ConnId, u64> = BTreeMap::new();
            let mut now = 0;
            for (slot, at, end) in ops {
                let c = conn(slot);
                if let Some(old) = live.remove(&c) {
                    d.remove(old, c, |a, c| live.get(&c) == Some(&a));
                }
                if !end {
                    live.insert(c, now + at);
                    d.insert(now + at, c);
                }
                now += 3;
                while let Some(c) = d.pop_due(now, |a, c| live.get(&c) == Some(&a)) {
                    let at = live.remove(&c);
                    prop_assert!(at.is_some_and(|at| at <= now));
                }
                prop_assert!(live.values().all(|&at| at > now));
                prop_assert_eq!(d.first(), live.values().min().copied(), "the head is exact");
            }
        }
    }
}
