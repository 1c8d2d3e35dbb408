//! What some of the shard's methods report back (kept apart from the files that
//! make them so that the module graph stays acyclic).

use crate::journal::{Location, Record};

/// What became of a `History` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Served {
    /// Answered (a page or an error), or dropped with its connection.
    Done,
    /// Its connection owes too much output; the page takes this many bytes (0: not
    /// built).
    Wait(u32),
}

/// What `Shard::salvage` did.
#[derive(Debug, Default)]
pub(crate) struct SalvageOutcome {
    /// Records to journal, in order: gap records, and requeues that must follow one.
    pub records: Vec<Record>,
    /// Entries applied behind a new gap, whose journal locations must be noted (with
    /// `Shard::located`) in sequence order together with the gaps' own, once those
    /// are durable: (conversation, seq, location).
    pub deferred: Vec<(u64, u64, Location)>,
    /// Sequence numbers recorded as lost (holes between surviving records).
    pub lost: u64,
    /// Sequence numbers reserved after a conversation's last surviving record.
    pub reserved: u64,
    /// Conversations rebuilt without their opening record (closed, hidden).
    pub orphans: u64,
    /// Records of conversations without an opening record that were dropped (retention
    /// leftovers, when salvage was not asked to keep them).
    pub dropped: u64,
}
