//! Output owed to connections: what has been produced for a connection and not yet
//! taken by the kernel, per connection and for the whole daemon.
//!
//! A reply that costs much more than its request (a `HistoryPage` of up to
//! `limits.max_frame_bytes` for a 48-byte `History`) is charged here by the shard that
//! builds it, before it travels through the command queue; the connection's reactor
//! settles the charge when it takes the frame, and keeps the entry equal to the
//! connection's queued output from then on. So a shard sees, before building the next
//! page, everything the connection already owes — pages still in queues and bytes
//! its socket has not taken — and defers the page while that is past
//! `limits.max_pending_bytes` (see `service::conversation`).
//!
//! One `u64` per connection slot: the connection's generation (high half; 0 = no
//! connection, or closing) and the bytes it owes (low half). A charge is a
//! compare-and-swap that checks the generation, so it can never land on the next
//! connection in the slot; the reactor resets the entry when the connection opens and
//! when it starts closing, so charges for replies it then drops vanish with it. Only
//! expensive replies are charged and the reactor touches an entry only when the
//! connection's queue changes, so the chat path (small replies written at once) never
//! shares a cache line across threads here.
//!
//! Entries live in chunks allocated on first use, so slots that never held a
//! connection cost one pointer per chunk.
//!
//! The daemon-wide total is the sum of every connection's queued output, published by
//! each reactor in quanta of [`TOTAL_QUANTUM`] bytes (so it lags each reactor's own
//! count by less than that); `limits.max_pending_total` bounds it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_utils::CachePadded;

use crate::handoff::ConnId;
use crate::metrics::Gauge;

/// Connection slots per lazily allocated chunk.
const CHUNK: usize = 4096;

/// A reactor publishes its change to the daemon-wide total once it reaches this many
/// bytes (either way).
pub(crate) const TOTAL_QUANTUM: i64 = 64 * 1024;

/// One reactor's entries.
#[derive(Debug)]
struct Table {
    chunks: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

impl Table {
    fn new(slots: usize) -> Self {
        Self {
            chunks: (0..slots.div_ceil(CHUNK))
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    /// The entry of `slot`, if its chunk exists.
    fn get(&self, slot: usize) -> Option<&AtomicU64> {
        self.chunks.get(slot / CHUNK)?.get()?.get(slot % CHUNK)
    }

    /// The entry of `slot`, allocating its chunk (reactor side, at open).
    fn get_or_alloc(&self, slot: usize) -> Option<&AtomicU64> {
        self.chunks
            .get(slot / CHUNK)?
            .get_or_init(|| (0..CHUNK).map(|_| AtomicU64::new(0)).collect())
            .get(slot % CHUNK)
    }
}

fn pack(generation: u32, owed: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(owed)
}

fn generation_of(v: u64) -> u32 {
    (v >> 32) as u32
}

fn owed_of(v: u64) -> u32 {
    v as u32
}

/// The output ledger shared by reactors (which own the entries of their
/// connections) and shards (which charge expensive replies).
#[derive(Debug)]
pub(crate) struct Ledger {
    reactors: Box<[Table]>,
    /// Also the `output_pending_total_bytes` metric. Each reactor's published part
    /// is never negative, so the sum is not either, whatever the order of updates.
    total: Arc<CachePadded<Gauge>>,
}

impl Ledger {
    /// A ledger for `reactors` reactors of up to `slots` connection slots each
    /// (connections in slots beyond are not accounted: producers see no debt),
    /// keeping the daemon-wide total in `total`.
    pub fn new(reactors: usize, slots: usize, total: Arc<CachePadded<Gauge>>) -> Self {
        Self {
            reactors: (0..reactors).map(|_| Table::new(slots)).collect(),
            total,
        }
    }

    fn entry(&self, reactor: u16, slot: u32) -> Option<&AtomicU64> {
        self.reactors.get(usize::from(reactor))?.get(slot as usize)
    }

    /// Whether `conn`'s slot is outside the table (such connections are not
    /// accounted).
    fn beyond(&self, conn: ConnId) -> bool {
        self.reactors
            .get(usize::from(conn.reactor))
            .is_none_or(|t| conn.slot as usize >= t.chunks.len() * CHUNK)
    }

    /// Reactor: a connection opened in `slot` with `generation`; it owes nothing.
    pub fn open(&self, reactor: u16, slot: u32, generation: u32) {
        if let Some(e) = self
            .reactors
            .get(usize::from(reactor))
            .and_then(|t| t.get_or_alloc(slot as usize))
        {
            e.store(pack(generation, 0), Ordering::Release);
        }
    }

    /// Reactor: the connection in `slot` is closing or gone; charges for it fail from
    /// now on and what it owed is forgotten.
    pub fn close(&self, reactor: u16, slot: u32) {
        if let Some(e) = self.entry(reactor, slot) {
            e.store(0, Ordering::Release);
        }
    }

    /// Reactor: adds `delta` (may be negative) to what the connection in `slot` with
    /// `generation` owes, stopping at zero. Nothing happens once it is closing.
    pub fn settle(&self, reactor: u16, slot: u32, generation: u32, delta: i64) {
        let Some(e) = self.entry(reactor, slot) else {
            return;
        };
        let _ = e.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            (generation_of(v) == generation && generation != 0).then(|| {
                let owed = (i64::from(owed_of(v)) + delta).clamp(0, i64::from(u32::MAX));
                pack(generation, owed as u32)
            })
        });
    }

    /// Producer: what `conn` owes now; `None` when it is closing or gone (its replies
    /// would be dropped), `Some(0)` when it is not accounted.
    pub fn owed(&self, conn: ConnId) -> Option<u32> {
        if self.beyond(conn) {
            return Some(0);
        }
        let v = self.entry(conn.reactor, conn.slot)?.load(Ordering::Acquire);
        (generation_of(v) == conn.generation).then_some(owed_of(v))
    }

    /// Producer: charges `bytes` to `conn` for a reply about to be sent to it; false
    /// when it is closing or gone (nothing is charged then).
    pub fn charge(&self, conn: ConnId, bytes: u32) -> bool {
        if self.beyond(conn) {
            return true;
        }
        let Some(e) = self.entry(conn.reactor, conn.slot) else {
            return false;
        };
        e.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            (generation_of(v) == conn.generation)
                .then(|| pack(conn.generation, owed_of(v).saturating_add(bytes)))
        })
        .is_ok()
    }

    /// Reactor: adds a published change to the daemon-wide total.
    pub fn add_total(&self, delta: i64) {
        if delta != 0 {
            self.total.add_signed(delta);
        }
    }

    /// Output queued at all reactors as last published (bytes).
    pub fn total(&self) -> u64 {
        let t = self.total.get();
        // A transient wrap below zero cannot happen (see `total`), but never report
        // one as a huge figure.
        if t > u64::MAX / 2 { 0 } else { t }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(slot: u32, generation: u32) -> ConnId {
        ConnId {
            reactor: 1,
            slot,
            generation,
        }
    }

    #[test]
    fn charges_land_only_on_the_connection_they_name() {
        let l = Ledger::new(2, 10_000, Arc::default());
        assert_eq!(l.owed(conn(5000, 7)), None, "chunk exists, no connection");
        l.open(1, 5000, 7);
        assert!(l.charge(conn(5000, 7), 100));
        assert_eq!(l.owed(conn(5000, 7)), Some(100));
        // The slot's next connection never sees the old one's debt or charges.
        assert!(!l.charge(conn(5000, 6), 50), "stale generation");
        l.settle(1, 5000, 7, -30);
        assert_eq!(l.owed(conn(5000, 7)), Some(70));
        l.settle(1, 5000, 7, -1000);
        assert_eq!(l.owed(conn(5000, 7)), Some(0), "stops at zero");
        l.close(1, 5000);
        assert_eq!(l.owed(conn(5000, 7)), None);
        assert!(!l.charge(conn(5000, 7), 1), "closing: nothing charged");
        l.settle(1, 5000, 7, 10);
        assert_eq!(
            l.owed(conn(5000, 7)),
            None,
            "settling a closed entry is a no-op"
        );
        l.open(1, 5000, 8);
        assert_eq!(l.owed(conn(5000, 8)), Some(0));
    }

    #[test]
    fn slots_outside_the_table_are_not_accounted() {
        let l = Ledger::new(1, 100, Arc::default());
        let far = ConnId {
            reactor: 0,
            slot: 1 << 20,
            generation: 1,
        };
        l.open(0, far.slot, 1);
        assert_eq!(l.owed(far), Some(0));
        assert!(l.charge(far, 10));
        let other_reactor = ConnId {
            reactor: 3,
            slot: 0,
            generation: 1,
        };
        assert_eq!(l.owed(other_reactor), Some(0));
    }

    #[test]
    fn total_adds_published_changes() {
        let l = Ledger::new(1, 1, Arc::default());
        l.add_total(100);
        l.add_total(-40);
        assert_eq!(l.total(), 60);
        l.add_total(-100);
        assert_eq!(l.total(), 0, "never reported below zero");
    }
}
