//! Rebuilding a shard from the journal at start-up, and salvage after damage.
//!
//! Records are applied in the order the journal hands them over. One that does not
//! follow what its conversation holds yet (compaction copies older records after
//! newer ones) is held back and applied in sequence order once the scan is over.
//! What still does not fit then is a hole (a sequence number no surviving record
//! holds) or a conversation without its opening record: the caller decides whether
//! that is damage (refuse to start) or salvage, which records each hole as a gap
//! entry, journals it, and carries on (`proto-spec/JOURNAL.md` §4).

use super::outcome::SalvageOutcome;
use super::{Body, Conversation, Held, Location, RecordError, RecordKind, Shard, State, UserRef};
use crate::journal::RecordRef;
use crate::protocol::Kind;
use crate::protocol::messages::{Entry, entry_kind, gap, role};
use crate::service::record;

/// Restored records that did not fit, per conversation (see [`Shard::unplaced`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unplaced {
    /// Conversation id.
    pub conversation: u64,
    /// Its opening record was seen (else every record of it is unplaced).
    pub opened: bool,
    /// The sequence number the conversation expects next.
    pub next_seq: u64,
    /// The lowest sequence number an unplaced record needs in place before it: the
    /// hole is `next_seq ..= first_needed - 1`.
    pub first_needed: u64,
    /// Unplaced records.
    pub records: usize,
    /// One of them closes or rates the conversation (it had ended).
    pub closed: bool,
}

/// The order held records are applied in: opened first, then by sequence number; a
/// requeue after the entry it follows.
fn held_order(h: &Held) -> (bool, u64, u8, u64) {
    let (seq, time, kind, _, _) = h;
    let rank = match kind {
        RecordKind::Opened | RecordKind::Reserved | RecordKind::Orphaned => 0,
        RecordKind::Entry | RecordKind::Gap => 1,
        RecordKind::Requeued => 2,
    };
    (rank != 0, *seq, rank, *time)
}

/// The sequence number that must be in place before `h` applies (its own for an entry,
/// the one after the entry it follows for a requeue).
fn needed(h: &Held) -> u64 {
    let (seq, _, kind, body, _) = h;
    match kind {
        RecordKind::Requeued => seq.saturating_add(1),
        RecordKind::Entry | RecordKind::Gap => body.entry.seq,
        RecordKind::Opened | RecordKind::Reserved | RecordKind::Orphaned => 0,
    }
}

/// A gap entry standing for numbers from `seq` on.
fn gap_entry(seq: u64, what: u8, now_ms: u64) -> Entry {
    Entry {
        seq,
        time_ms: now_ms,
        kind: entry_kind::GAP,
        sender_role: role::SYSTEM,
        content_type: what,
        flags: 0,
        sender: String::new(),
        body: String::new(),
    }
}

impl Shard {
    /// Applies one journal record at start-up, rebuilding state without effects.
    ///
    /// Records normally come in the order they were written; compaction (retention)
    /// copies a conversation's older records after its newer ones, so a record that
    /// does not follow what was applied is held back, and [`Shard::finish_restore`]
    /// applies the held records in sequence order.
    pub fn restore(&mut self, r: RecordRef<'_>, at: Option<Location>) -> Result<(), RecordError> {
        let RecordRef {
            conversation,
            seq,
            time_ms,
            kind,
            body,
        } = r;
        let (kind, body) = record::decode(kind, body)?;
        if !self.apply_restored(conversation, seq, time_ms, kind, &body, at) {
            self.held
                .entry(conversation)
                .or_default()
                .push((seq, time_ms, kind, body, at));
        }
        Ok(())
    }

    /// Applies the records [`Shard::restore`] held back; call once, after the last.
    /// Records that still do not fit stay held: see [`Shard::unplaced`].
    pub fn finish_restore(&mut self) {
        for (conversation, mut records) in std::mem::take(&mut self.held) {
            records.sort_by_key(held_order);
            let mut rest = Vec::new();
            for h in records {
                let (seq, time_ms, kind, body, at) = &h;
                if !self.apply_restored(conversation, *seq, *time_ms, *kind, body, *at) {
                    rest.push(h);
                }
            }
            if !rest.is_empty() {
                self.held.insert(conversation, rest);
            }
        }
        for c in self.convs.values_mut().filter(|c| c.orphan) {
            close_orphan(c);
        }
    }

    /// The records restore could not place, per conversation, by id.
    pub fn unplaced(&self) -> Vec<Unplaced> {
        let mut v: Vec<Unplaced> = self
            .held
            .iter()
            .map(|(&id, held)| {
                let c = self.convs.get(&id);
                let closed = held.iter().any(|(_, _, kind, body, _)| {
                    *kind == RecordKind::Entry
                        && matches!(
                            Kind::from_u8(body.entry.kind),
                            Some(Kind::Close | Kind::Rate)
                        )
                });
                Unplaced {
                    conversation: id,
                    opened: c.is_some(),
                    next_seq: c.map_or(1, |c| c.next_seq()),
                    first_needed: held.iter().map(needed).min().unwrap_or(1),
                    records: held.len(),
                    closed,
                }
            })
            .collect();
        v.sort_by_key(|u| u.conversation);
        v
    }

    /// The conversations that may still get entries, for reservations after damage:
    /// (id, open). An open one may get any number; a closed one only its rating, so
    /// rated ones are left out.
    pub fn tail_candidates(&self) -> Vec<(u64, bool)> {
        let mut v: Vec<(u64, bool)> = self
            .convs
            .iter()
            .filter(|(_, c)| !(c.orphan || (c.state == State::Closed && c.rated)))
            .map(|(&id, c)| (id, c.state != State::Closed))
            .collect();
        v.sort_unstable();
        v
    }

    /// Salvage after [`Shard::finish_restore`]: places every held record, recording
    /// each hole in front of one as a gap entry (lost); rebuilds a conversation whose
    /// opening record is missing as a closed, hidden *orphan* when `keep_orphans` (else
    /// drops its records: retention leftovers); then gives each conversation of
    /// `tails` (id, count) a gap entry reserving `count` numbers after its last one.
    /// The gap entries' records are returned for the journal.
    pub fn salvage(
        &mut self,
        tails: &[(u64, u64)],
        keep_orphans: bool,
        now_ms: u64,
    ) -> SalvageOutcome {
        let mut out = SalvageOutcome::default();
        let mut held: Vec<(u64, Vec<Held>)> = std::mem::take(&mut self.held).into_iter().collect();
        held.sort_by_key(|(id, _)| *id);
        for (id, mut records) in held {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.convs.entry(id) {
                if !keep_orphans {
                    out.dropped += records.len() as u64;
                    continue;
                }
                let c = orphan(&records, now_ms);
                let body = Body {
                    visitor: c.visitor.user.clone(),
                    visitor_name: c.visitor_name.clone(),
                    group: c.group.clone(),
                    ..Body::default()
                };
                slot.insert(c);
                out.records
                    .push(record::record(id, 0, now_ms, RecordKind::Orphaned, &body));
                out.orphans += 1;
            }
            records.sort_by_key(held_order);
            let mut gapped = false;
            for h in records {
                let (seq, time_ms, kind, body, at) = &h;
                let at = if gapped { None } else { *at };
                if !self.apply_restored(id, *seq, *time_ms, *kind, body, at) {
                    let Some(c) = self.convs.get_mut(&id) else {
                        continue;
                    };
                    let next = c.next_seq();
                    let count = needed(&h).saturating_sub(next);
                    if count == 0 {
                        continue; // superseded (a requeue of a closed conversation)
                    }
                    self.push_gap(id, gap::LOST, count, now_ms, &mut out);
                    gapped = true;
                    if !self.apply_restored(id, *seq, *time_ms, *kind, body, None) {
                        continue;
                    }
                }
                if !gapped {
                    continue;
                }
                match (kind, h.4) {
                    (RecordKind::Entry | RecordKind::Gap, Some(loc)) => {
                        out.deferred.push((id, body.entry.seq, loc));
                    }
                    // A requeue applies at the transcript length of its time: after a
                    // restart it must come after the gap just recorded (and before any
                    // reserved at the end), so it is written again behind the gap.
                    (RecordKind::Requeued, _) => {
                        out.records.push(record::record(
                            id,
                            *seq,
                            *time_ms,
                            RecordKind::Requeued,
                            body,
                        ));
                    }
                    _ => {}
                }
            }
            if let Some(c) = self.convs.get_mut(&id)
                && c.orphan
            {
                close_orphan(c);
            }
        }
        for &(id, count) in tails {
            let known = self.convs.get(&id).is_some_and(|c| !c.orphan);
            if known && count > 0 {
                self.push_gap(id, gap::RESERVED, count, now_ms, &mut out);
            }
        }
        out
    }

    /// Appends a gap entry standing for `count` numbers to a conversation, and its
    /// record to `out`.
    fn push_gap(&mut self, id: u64, what: u8, count: u64, now_ms: u64, out: &mut SalvageOutcome) {
        let Some(c) = self.convs.get_mut(&id) else {
            return;
        };
        let seq = c.next_seq();
        let entry = gap_entry(seq, what, now_ms);
        let body = Body {
            client_msg_id: count,
            entry: entry.clone(),
            ..Body::default()
        };
        c.events.push_span(entry, count);
        out.records
            .push(record::record(id, seq, now_ms, RecordKind::Gap, &body));
        if what == gap::LOST {
            out.lost += count;
        } else {
            out.reserved += count;
        }
    }

    /// Applies a restored record if it follows the conversation's state; false when
    /// it comes too early (held for later).
    pub(super) fn apply_restored(
        &mut self,
        id: u64,
        seq: u64,
        time_ms: u64,
        kind: RecordKind,
        body: &Body,
        at: Option<Location>,
    ) -> bool {
        match kind {
            RecordKind::Reserved => {
                self.reserved_max = self.reserved_max.max(id);
                return true;
            }
            RecordKind::Orphaned => {
                self.convs.entry(id).or_insert_with(|| {
                    let mut c = Conversation::new(
                        UserRef {
                            tenant: String::new(),
                            user: body.visitor.clone(),
                        },
                        body.visitor_name.clone(),
                        body.group.clone(),
                    );
                    c.orphan = true;
                    (c.since_ms, c.closed_ms, c.opened_ms) = (time_ms, time_ms, time_ms);
                    c
                });
                return true;
            }
            RecordKind::Opened => {
                self.convs.entry(id).or_insert_with(|| {
                    let visitor = UserRef {
                        tenant: body.tenant.clone(),
                        user: body.visitor.clone(),
                    };
                    let mut c =
                        Conversation::new(visitor, body.visitor_name.clone(), body.group.clone());
                    c.since_ms = time_ms;
                    c.opened_ms = time_ms;
                    c
                });
                return true;
            }
            RecordKind::Entry | RecordKind::Gap | RecordKind::Requeued => {}
        }
        let Some(c) = self.convs.get_mut(&id) else {
            return false;
        };
        let next = c.next_seq();
        if kind == RecordKind::Requeued {
            // `seq` is the number of entries when it was requeued.
            if seq == next - 1 && c.state != State::Closed {
                c.state = State::Queued;
                c.agent = None;
                c.group = body.group.clone();
                c.since_ms = time_ms;
                return true;
            }
            return seq < next - 1;
        }
        let e = &body.entry;
        if e.seq < next {
            return true; // a duplicate (a compaction copy)
        }
        if e.seq > next {
            return false;
        }
        if kind == RecordKind::Gap {
            c.events.push_span(e.clone(), body.client_msg_id.max(1));
        } else {
            match Kind::from_u8(e.kind) {
                Some(kind @ (Kind::Send | Kind::Note)) => {
                    c.sent.insert(&e.sender, body.client_msg_id, e.seq);
                    c.answered |=
                        kind == Kind::Send && crate::service::is_staff_role(e.sender_role);
                }
                Some(Kind::Assigned) => {
                    c.state = State::Assigned;
                    c.agent = Some(UserRef {
                        tenant: c.tenant.clone(),
                        user: e.sender.clone(),
                    });
                    c.group = body.group.clone();
                }
                Some(Kind::Queued) => {
                    c.state = State::Queued;
                    c.agent = None;
                    c.group = e.body.clone();
                    c.since_ms = e.time_ms;
                }
                Some(Kind::Close) => {
                    c.state = State::Closed;
                    c.closed_ms = e.time_ms;
                }
                Some(Kind::Rate) => c.rated = true,
                _ => {}
            }
            c.note_file(e);
            c.note_profile(e);
            c.events.push(e.clone());
        }
        if let Some(at) = at {
            // Restored from a journal, whose reader the shard gets next.
            c.events.located(e.seq, at, true);
        }
        true
    }
}

/// An orphan is closed once its records are applied (it may have been assigned), and
/// serves nobody.
fn close_orphan(c: &mut Conversation) {
    c.state = State::Closed;
    c.agent = None;
}

/// A conversation rebuilt from records without its opening one: the visitor is the
/// sender of its first visitor message (if any), the group that of its last
/// assignment or requeue; the tenant is unknown, so it stays hidden. Closed once its
/// records are applied.
fn orphan(records: &[Held], now_ms: u64) -> Conversation {
    let visitor = records
        .iter()
        .find(|(_, _, kind, body, _)| {
            *kind == RecordKind::Entry && body.entry.sender_role == role::VISITOR
        })
        .map(|(_, _, _, body, _)| body.entry.sender.clone())
        .unwrap_or_default();
    let group = records
        .iter()
        .rev()
        .find(|(_, _, _, body, _)| !body.group.is_empty())
        .map(|(_, _, _, body, _)| body.group.clone())
        .unwrap_or_default();
    let mut c = Conversation::new(
        UserRef {
            tenant: String::new(),
            user: visitor.clone(),
        },
        visitor,
        group,
    );
    c.orphan = true;
    (c.since_ms, c.closed_ms) = (now_ms, now_ms);
    c
}
