//! What journal damage costs, and what salvage does about it (sans-IO).
//!
//! The journal reports the byte ranges it could not read; the shards report the
//! records they could not place (holes, conversations without an opening record).
//! From both, [`DamagePlan::new`] works out:
//! - each range's worst case: at most `len / min_frame` records were in it;
//! - which open conversations may have lost entries *after* their last surviving one
//!   (their numbers must be reserved, or a new message would reuse an acknowledged
//!   `seq`): those with no record written after the range. "Written after" is told
//!   by position, and a record counts only if its time is not older than the records
//!   before it (compaction copies old records to the end of the journal, with their
//!   old times, so a copy proves nothing about what was written later);
//! - how many conversation ids to skip (an opening record may have been lost).

use std::fmt::Write as _;

use crate::fasthash::ServerMap;
use crate::journal::{Damage, DamagedRange, Location, RecordRef};

use super::conversation::restore::Unplaced;

/// A record counts as written where it stands if its time is at most this much older
/// than the newest record before it (clock steps and queueing between workers).
const COPY_SKEW_MS: u64 = 10 * 60 * 1000;

/// Most conversations a report lists one by one.
const REPORT_LINES: usize = 50;

/// Tracks, while the journal is scanned, where each conversation's last record that
/// is not a compaction copy stands.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    last_original: ServerMap<u64, Location>,
    newest_ms: u64,
    skew_ms: u64,
}

impl Positions {
    /// For a journal whose retention is `retention_ms` (copies are at least that old).
    pub(crate) fn new(retention_ms: u64) -> Self {
        Self {
            skew_ms: COPY_SKEW_MS.min(retention_ms / 2),
            ..Self::default()
        }
    }

    /// Notes a record, in journal order.
    pub(crate) fn see(&mut self, r: &RecordRef<'_>, at: Location) {
        if r.time_ms.saturating_add(self.skew_ms) >= self.newest_ms {
            self.last_original.insert(r.conversation, at);
        }
        self.newest_ms = self.newest_ms.max(r.time_ms);
    }

    fn last_original(&self, conversation: u64) -> Option<Location> {
        self.last_original.get(&conversation).copied()
    }
}

/// A damaged range and the most records it can have held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeCost {
    /// The range.
    pub range: DamagedRange,
    /// At most this many records were in it.
    pub max_records: u64,
}

/// The damage found at start and what salvage does about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DamagePlan {
    /// Damaged byte ranges, in journal order.
    pub ranges: Vec<RangeCost>,
    /// Conversations with sequence numbers no surviving record holds.
    pub holes: Vec<Unplaced>,
    /// Conversations whose opening record is gone: kept as hidden, closed orphans.
    pub orphans: Vec<Unplaced>,
    /// Records of ended conversations whose opening record is gone, in a journal
    /// without damage: what retention left of conversations it forgot. Dropped.
    pub leftovers: Vec<Unplaced>,
    /// Conversations with no record after some damaged range: (id, numbers to reserve
    /// after their last one — one for a closed conversation, its rating).
    pub tails: Vec<(u64, u64)>,
    /// Conversation ids from here on may have been used (0: none reserved).
    pub reserve_ids_to: u64,
}

impl DamagePlan {
    /// Works out the plan. `unplaced` and `candidates` (id, open; see
    /// `Shard::tail_candidates`) come from every shard; `max_id` is the highest
    /// conversation id seen.
    pub(crate) fn new(
        damage: &[DamagedRange],
        unplaced: Vec<Unplaced>,
        candidates: &[(u64, bool)],
        positions: &Positions,
        max_id: u64,
        min_frame: u64,
    ) -> Self {
        let ranges: Vec<RangeCost> = damage
            .iter()
            .map(|d| RangeCost {
                range: *d,
                max_records: match d.what {
                    Damage::Header => 0,
                    Damage::Records | Damage::Trailing => d.len.div_ceil(min_frame.max(1)),
                },
            })
            .collect();
        let mut plan = DamagePlan {
            ranges,
            ..DamagePlan::default()
        };
        let damaged_bytes = !plan.ranges.is_empty();
        for u in unplaced {
            if u.opened {
                plan.holes.push(u);
            } else if damaged_bytes || !u.closed {
                // Retention never forgets an open conversation: without damage to
                // explain it, a missing opening record of one is damage too.
                plan.orphans.push(u);
            } else {
                plan.leftovers.push(u);
            }
        }
        if damaged_bytes {
            for &(id, open) in candidates {
                let after = positions.last_original(id);
                let mut before = plan
                    .ranges
                    .iter()
                    .filter(|r| after.is_none_or(|at| at < r.range.location()));
                // A closed conversation can only have lost its rating.
                let count: u64 = if open {
                    before.map(|r| r.max_records).sum()
                } else {
                    u64::from(before.any(|r| r.max_records > 0))
                };
                if count > 0 {
                    plan.tails.push((id, count));
                }
            }
            let ids: u64 = plan.ranges.iter().map(|r| r.max_records).sum();
            if ids > 0 {
                plan.reserve_ids_to = max_id.saturating_add(ids);
            }
        }
        plan
    }

    /// Whether anything is damaged (the daemon refuses to start unless salvaging).
    pub(crate) fn damaged(&self) -> bool {
        !self.ranges.is_empty() || !self.holes.is_empty() || !self.orphans.is_empty()
    }

    /// The tail reservations of one shard's conversations.
    pub(crate) fn tails_for(&self, shard: usize, shards: usize) -> Vec<(u64, u64)> {
        self.tails
            .iter()
            .copied()
            .filter(|&(id, _)| super::shard_of(id, shards) == shard)
            .collect()
    }

    /// What an operator reads: every range with what it may have held, every
    /// conversation affected (the first [`REPORT_LINES`]), and what salvage would do.
    pub(crate) fn report(&self) -> String {
        let mut s = String::new();
        let lost: u64 = self.ranges.iter().map(|r| r.max_records).sum();
        let _ = writeln!(
            s,
            "{} damaged range(s), {} bytes, up to {} records lost",
            self.ranges.len(),
            self.ranges.iter().map(|r| r.range.len).sum::<u64>(),
            lost
        );
        for r in &self.ranges {
            let _ = writeln!(
                s,
                "  segment {:010}.seg offset {} length {}: {}; up to {} records",
                r.range.segment,
                r.range.offset,
                r.range.len,
                r.range.what.name(),
                r.max_records
            );
        }
        let affected = self.holes.len() + self.orphans.len() + self.tails.len();
        let _ = writeln!(s, "{affected} conversation(s) affected");
        let mut lines = 0;
        let mut line = |s: &mut String, text: String| {
            if lines < REPORT_LINES {
                let _ = writeln!(s, "  {text}");
            }
            lines += 1;
        };
        for u in &self.holes {
            line(
                &mut s,
                format!(
                    "conversation {}: seqs {}..={} lost (records after them survive)",
                    u.conversation,
                    u.next_seq,
                    u.first_needed.saturating_sub(1)
                ),
            );
        }
        for u in &self.orphans {
            line(
                &mut s,
                format!(
                    "conversation {}: opening record lost; {} record(s) kept, hidden (no tenant)",
                    u.conversation, u.records
                ),
            );
        }
        for (id, n) in &self.tails {
            line(
                &mut s,
                format!(
                    "conversation {id}: no record after the damage; the next {n} seq(s) \
                     are reserved in case they were used"
                ),
            );
        }
        if lines > REPORT_LINES {
            let _ = writeln!(s, "  ... and {} more", lines - REPORT_LINES);
        }
        if !self.leftovers.is_empty() {
            let _ = writeln!(
                s,
                "{} ended conversation(s) without an opening record (retention leftovers) are skipped",
                self.leftovers.len()
            );
        }
        if self.reserve_ids_to > 0 {
            let _ = writeln!(
                s,
                "conversation ids up to {} are reserved (an opening record may have been lost)",
                self.reserve_ids_to
            );
        }
        if self.damaged() {
            let _ = writeln!(
                s,
                "salvage keeps every valid record, records each hole as a gap entry (kind 60) \
                 in its conversation, saves the damaged bytes to <segment>.seg.damaged-<offset> \
                 and covers them so the journal reads cleanly"
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(segment: u32, offset: u64, len: u64) -> DamagedRange {
        DamagedRange {
            segment,
            offset,
            len,
            what: Damage::Records,
        }
    }

    fn at(segment: u32, offset: u32) -> Location {
        Location { segment, offset }
    }

    fn rec(conversation: u64, time_ms: u64) -> RecordRef<'static> {
        RecordRef {
            conversation,
            seq: 1,
            time_ms,
            kind: 2,
            body: &[],
        }
    }

    fn unplaced(conversation: u64, opened: bool, closed: bool) -> Unplaced {
        Unplaced {
            conversation,
            opened,
            next_seq: 3,
            first_needed: 5,
            records: 2,
            closed,
        }
    }

    #[test]
    fn a_clean_journal_has_no_plan_but_its_leftovers() {
        let p = DamagePlan::new(
            &[],
            vec![unplaced(4, false, true)],
            &[(1, true)],
            &Positions::new(1 << 40),
            9,
            120,
        );
        assert!(!p.damaged());
        assert_eq!(p.leftovers.len(), 1);
        assert!(p.tails.is_empty() && p.reserve_ids_to == 0);
        // An open conversation missing its opening record is damage even so.
        let p = DamagePlan::new(
            &[],
            vec![unplaced(4, false, false)],
            &[],
            &Positions::new(1 << 40),
            9,
            120,
        );
        assert!(p.damaged());
        assert_eq!(p.orphans.len(), 1);
    }

    #[test]
    fn only_conversations_with_nothing_written_after_a_range_reserve() {
        let mut pos = Positions::new(1 << 40);
        // 1: a record after the damage; 2: only before; 3: after, but a compaction
        // copy (old time) — proves nothing.
        pos.see(&rec(1, 1_000_000), at(1, 100));
        pos.see(&rec(2, 1_000_000), at(1, 200));
        pos.see(&rec(3, 1_000_000), at(1, 300));
        pos.see(&rec(1, 2_000_000), at(2, 100));
        pos.see(&rec(3, 10), at(2, 200));
        let damage = [range(1, 1000, 360)];
        let p = DamagePlan::new(
            &damage,
            vec![],
            &[(1, true), (2, true), (3, true), (4, true), (5, false)],
            &pos,
            50,
            120,
        );
        assert!(p.damaged());
        assert_eq!(p.ranges[0].max_records, 3);
        assert_eq!(p.tails, vec![(2, 3), (3, 3), (4, 3), (5, 1)]);
        assert_eq!(p.reserve_ids_to, 53);
        let report = p.report();
        assert!(
            report.contains("segment 0000000001.seg offset 1000 length 360"),
            "{report}"
        );
        assert!(report.contains("conversation 2:"), "{report}");
    }

    #[test]
    fn with_damage_every_fragment_is_kept_as_an_orphan() {
        let p = DamagePlan::new(
            &[range(1, 64, 40)],
            vec![unplaced(4, false, true), unplaced(5, true, false)],
            &[],
            &Positions::new(1 << 40),
            9,
            120,
        );
        assert_eq!(p.orphans.len(), 1);
        assert_eq!(p.holes.len(), 1);
        assert!(p.leftovers.is_empty());
    }
}
