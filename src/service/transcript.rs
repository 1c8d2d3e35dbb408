//! A conversation's transcript: the newest entries in memory, the older ones only in
//! the journal, read back through its read-only maps when `History` or a resume
//! needs them. Without a journal there is nothing to read back: a conversation keeps
//! its newest [`TAIL`] entries alone, and older ones are forgotten.

use std::collections::{HashMap, VecDeque};

use crate::journal::{JournalReader, Location};
use crate::protocol::messages::Entry;

use super::locs::Locs;
use super::record;

/// Entries kept in memory per conversation once they are durable (and, without a
/// journal, at all).
pub(crate) const TAIL: usize = 16;

/// The entries of one conversation, in *slots*: a slot holds one entry, which stands
/// for one sequence number — except a gap entry (kind [`GAP`]) recorded by salvage,
/// which may stand for several (a span). Without spans, slot `i` is `seq` `i + 1`.
/// Callers speak in sequence numbers only: a span reads back as one gap entry per
/// number it stands for.
///
/// In memory an entry is a [`Slot`] (32 bytes and its body), not an [`Entry`]
/// (72 bytes, a sender string and its body): the sequence number is the slot's
/// place and the sender an index into the few user ids that wrote in the
/// conversation. A chat transcript is most of a conversation's memory.
///
/// [`GAP`]: crate::protocol::messages::entry_kind::GAP
#[derive(Debug, Default)]
pub(crate) struct Transcript {
    /// Slots no longer in memory (all durable, all located — or, without a journal,
    /// forgotten).
    first: u64,
    /// Slots `0 .. forgotten` left memory without a journal: gone for good.
    forgotten: u64,
    /// Slots `first ..` in order. A ring: the oldest leave one by one as the newest
    /// come, so it holds [`TAIL`] entries and what is not durable yet, no more.
    tail: VecDeque<Slot>,
    /// The distinct senders of the entries, in order of their first entry (a slot
    /// holds its index here).
    senders: Vec<Box<str>>,
    /// Journal location of slots `0 .. locs.len()` (the durable ones), kept
    /// compactly: they stay for the conversation's life (see [`Locs`]).
    locs: Locs,
    /// The slots that stand for more than one sequence number, ascending, with how
    /// many more (`extra`). Empty unless the journal was salvaged.
    spans: Vec<Span>,
}

/// An entry as a transcript keeps it: [`Entry`] without its `seq` (the slot's place
/// says it) and with its sender as an index into [`Transcript::senders`].
#[derive(Debug, Clone, Default)]
struct Slot {
    time_ms: u64,
    kind: u8,
    sender_role: u8,
    content_type: u8,
    flags: u8,
    sender: u32,
    body: Box<str>,
}

/// A slot standing for `1 + extra` sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    slot: u64,
    extra: u64,
}

impl Transcript {
    /// Number of sequence numbers taken (the last `seq`).
    pub fn len(&self) -> u64 {
        self.slots() + self.spans.iter().map(|s| s.extra).sum::<u64>()
    }

    fn slots(&self) -> u64 {
        self.first + self.tail.len() as u64
    }

    /// The slot standing for `seq` (1-based), and the first sequence number it stands
    /// for; `None` past the end.
    fn slot_of(&self, seq: u64) -> Option<(u64, u64)> {
        if seq == 0 || seq > self.len() {
            return None;
        }
        let mut before = 0;
        for s in &self.spans {
            let first = s.slot + 1 + before;
            if seq < first {
                break;
            }
            if seq <= first + s.extra {
                return Some((s.slot, first));
            }
            before += s.extra;
        }
        Some((seq - 1 - before, seq))
    }

    /// The index of `sender` in `senders`, added if new. A conversation has few
    /// (its visitor, its agents, the system's empty one): a scan is enough.
    fn sender_index(&mut self, sender: &str) -> u32 {
        if let Some(i) = self.senders.iter().position(|s| **s == *sender) {
            return i as u32;
        }
        self.senders.push(sender.into());
        (self.senders.len() - 1) as u32
    }

    /// `entry` as a slot (its strings moved, not copied, but the sender's first time).
    fn slot(&mut self, entry: Entry) -> Slot {
        Slot {
            time_ms: entry.time_ms,
            kind: entry.kind,
            sender_role: entry.sender_role,
            content_type: entry.content_type,
            flags: entry.flags,
            sender: self.sender_index(&entry.sender),
            body: entry.body.into_boxed_str(),
        }
    }

    /// The entry slot `s` holds, with sequence number `seq`.
    fn entry(&self, s: &Slot, seq: u64) -> Entry {
        Entry {
            seq,
            time_ms: s.time_ms,
            kind: s.kind,
            sender_role: s.sender_role,
            content_type: s.content_type,
            flags: s.flags,
            sender: self
                .senders
                .get(s.sender as usize)
                .map_or_else(String::new, |n| n.to_string()),
            body: s.body.to_string(),
        }
    }

    /// Appends the next entry; returns its `seq`.
    pub fn push(&mut self, entry: Entry) -> u64 {
        let slot = self.slot(entry);
        self.push_slot(slot);
        self.len()
    }

    /// Appends `slot`. Past [`TAIL`] the ring grows by a quarter, not twice: a
    /// conversation's tail stays near `TAIL` slots (a doubling would leave 64 slots
    /// of room behind 33 entries in every long conversation).
    fn push_slot(&mut self, slot: Slot) {
        let len = self.tail.len();
        if len == self.tail.capacity() && len >= TAIL {
            self.tail.reserve_exact(len / 4);
        }
        self.tail.push_back(slot);
    }

    /// Appends a gap entry standing for `count` (at least 1) sequence numbers; returns
    /// the first of them.
    pub fn push_span(&mut self, entry: Entry, count: u64) -> u64 {
        let first = self.len() + 1;
        if count > 1 {
            self.spans.push(Span {
                slot: self.slots(),
                extra: count - 1,
            });
        }
        let slot = self.slot(entry);
        self.push_slot(slot);
        first
    }

    /// Time of the newest entry.
    pub fn last_time_ms(&self) -> Option<u64> {
        self.tail.back().map(|s| s.time_ms)
    }

    /// Kind of the newest entry.
    pub fn last_kind(&self) -> Option<u8> {
        self.tail.back().map(|s| s.kind)
    }

    /// Lends the newest entry to `f` (its sender and body moved out and back, not
    /// copied; its `seq` the first it stands for). What `f` changes is kept, but for
    /// the sender, which other entries share: `f` must leave it as it was.
    pub fn with_last<R>(&mut self, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let seq = self.slot_of(self.len()).map(|(_, first)| first)?;
        let s = self.tail.back_mut()?;
        let sender = self
            .senders
            .get_mut(s.sender as usize)
            .map(std::mem::take)
            .unwrap_or_default();
        let mut e = Entry {
            seq,
            time_ms: s.time_ms,
            kind: s.kind,
            sender_role: s.sender_role,
            content_type: s.content_type,
            flags: s.flags,
            sender: sender.into_string(),
            body: std::mem::take(&mut s.body).into_string(),
        };
        let r = f(&mut e);
        if let Some(n) = self.senders.get_mut(s.sender as usize) {
            *n = std::mem::take(&mut e.sender).into_boxed_str();
        }
        *s = Slot {
            sender: s.sender,
            ..Self::bare(e)
        };
        Some(r)
    }

    /// `e` as a slot, sender index 0 (the caller sets it).
    fn bare(e: Entry) -> Slot {
        Slot {
            time_ms: e.time_ms,
            kind: e.kind,
            sender_role: e.sender_role,
            content_type: e.content_type,
            flags: e.flags,
            sender: 0,
            body: e.body.into_boxed_str(),
        }
    }

    /// Takes back the entries after `len` (never below what left memory: those are
    /// durable, and only entries that are not can be taken back).
    pub fn truncate(&mut self, len: u64) {
        let keep = match self.slot_of(len) {
            Some((slot, _)) => slot + 1,
            None if len == 0 => 0,
            None => return,
        };
        let in_memory = keep.saturating_sub(self.first);
        self.tail
            .truncate(usize::try_from(in_memory).unwrap_or(usize::MAX));
        self.locs
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        self.spans.retain(|s| s.slot < keep);
    }

    /// Entry `seq` (the first a slot stands for) is durable at `at`. Locations arrive
    /// in order; when more than [`TAIL`] located entries are in memory, the oldest
    /// leave it.
    pub fn located(&mut self, seq: u64, at: Location, evict: bool) {
        if let Some((slot, first)) = self.slot_of(seq)
            && first == seq
            && slot == self.locs.len() as u64
        {
            self.locs.push(at);
        }
        let located_in_memory = (self.locs.len() as u64).saturating_sub(self.first) as usize;
        if evict && located_in_memory > TAIL {
            let n = (located_in_memory - TAIL).min(self.tail.len());
            self.tail.drain(..n);
            self.first += n as u64;
        }
    }

    /// Without a journal: when more than [`TAIL`] entries are in memory, the oldest
    /// leave it for good, so that a conversation's memory stays bounded
    /// however long it runs (nothing can read them back: `History` ends at
    /// [`Transcript::forgotten`], and a resume from before it is not recovered).
    pub fn forget_old(&mut self) {
        if self.tail.len() > TAIL && self.spans.is_empty() {
            let n = self.tail.len() - TAIL;
            self.tail.drain(..n);
            self.first += n as u64;
            self.forgotten = self.first;
        }
    }

    /// The last sequence number forgotten (see [`Transcript::forget_old`]); 0 when
    /// every entry can be had.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Compaction moved records: follow them.
    pub fn moved(&mut self, moves: &HashMap<Location, Location>) {
        self.locs.moved(moves);
    }

    /// Entries `from ..= to` (1-based, clamped), oldest first; `None` if one that
    /// left memory cannot be read back.
    pub fn range(&self, from: u64, to: u64, reader: Option<&JournalReader>) -> Option<Vec<Entry>> {
        let to = to.min(self.len());
        let from = from.max(1);
        let mut out = Vec::with_capacity(usize::try_from(to.saturating_sub(from) + 1).unwrap_or(0));
        if from > to {
            return Some(out);
        }
        if !self.spans.is_empty() {
            self.range_with_spans(from, to, reader, &mut out)?;
            return Some(out);
        }
        let mut seq = from;
        while seq <= to && seq <= self.first {
            let at = self.locs.get(usize::try_from(seq - 1).ok()?)?;
            out.push(read(reader?, at)?);
            seq += 1;
        }
        if seq <= to {
            let a = usize::try_from(seq - self.first - 1).ok()?;
            let b = usize::try_from(to - self.first).ok()?;
            if a > b || b > self.tail.len() {
                return None;
            }
            let slots = self.tail.range(a..b);
            out.extend((seq..).zip(slots).map(|(q, s)| self.entry(s, q)));
        }
        Some(out)
    }

    /// [`Transcript::range`] when some slots are spans: each span reads back as one gap
    /// entry per sequence number in range.
    fn range_with_spans(
        &self,
        from: u64,
        to: u64,
        reader: Option<&JournalReader>,
        out: &mut Vec<Entry>,
    ) -> Option<()> {
        let (mut slot, mut first) = self.slot_of(from)?;
        let start = slot;
        let mut spans = self.spans.iter().filter(|s| s.slot >= start).peekable();
        while first <= to && slot < self.slots() {
            let entry = if slot < self.first {
                read(reader?, self.locs.get(usize::try_from(slot).ok()?)?)?
            } else {
                let s = self.tail.get(usize::try_from(slot - self.first).ok()?)?;
                self.entry(s, first)
            };
            let extra = match spans.peek() {
                Some(s) if s.slot == slot => {
                    let e = s.extra;
                    spans.next();
                    e
                }
                _ => 0,
            };
            for seq in first.max(from)..=(first + extra).min(to) {
                let mut e = entry.clone();
                e.seq = seq;
                out.push(e);
            }
            first += 1 + extra;
            slot += 1;
        }
        Some(())
    }

    /// Entry `seq`, if it can be had.
    pub fn get(&self, seq: u64, reader: Option<&JournalReader>) -> Option<Entry> {
        self.range(seq, seq, reader)?.pop()
    }

    /// Every entry (tests: the restore check compares whole transcripts).
    #[cfg(test)]
    pub fn all(&self, reader: Option<&JournalReader>) -> Vec<Entry> {
        self.range(1, self.len(), reader).unwrap_or_default()
    }
}

/// Reads one entry back from the journal.
fn read(reader: &JournalReader, at: Location) -> Option<Entry> {
    let r = reader.read(at).ok()?;
    let (_, body) = record::decode(r.kind, &r.body).ok()?;
    Some(body.entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> Entry {
        Entry {
            seq,
            body: format!("e{seq}"),
            ..Entry::default()
        }
    }

    #[test]
    fn without_a_journal_everything_stays_and_ranges_clamp() {
        let mut t = Transcript::default();
        for s in 1..=100 {
            assert_eq!(t.push(entry(s)), s);
        }
        let r = t.range(98, 500, None).unwrap();
        assert_eq!(
            r.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![98, 99, 100]
        );
        t.truncate(97);
        assert_eq!((t.len(), t.get(97, None).map(|e| e.seq)), (97, Some(97)));
        assert_eq!(t.get(0, None).map(|e| e.seq), None);
    }

    #[test]
    fn located_entries_leave_memory_and_unlocated_ones_never_do() {
        let mut t = Transcript::default();
        for s in 1..=200 {
            t.push(entry(s));
        }
        for s in 1..=100 {
            t.located(
                s,
                Location {
                    segment: 1,
                    offset: s as u32,
                },
                true,
            );
        }
        assert!(t.first > 0 && t.first <= 100 - TAIL as u64, "{}", t.first);
        assert_eq!(t.len(), 200);
        // What left memory needs the journal; without it the range is unavailable.
        assert!(t.range(1, 5, None).is_none());
        assert_eq!(t.range(150, 151, None).unwrap().len(), 2);
        // Taking back never touches what left memory.
        t.truncate(150);
        assert_eq!(t.len(), 150);
    }

    #[test]
    fn without_a_journal_the_oldest_entries_are_forgotten() {
        let mut t = Transcript::default();
        for s in 1..=(TAIL as u64) {
            t.push(entry(s));
            t.forget_old();
        }
        // Up to the tail, everything stays.
        assert_eq!(
            (t.forgotten(), t.range(1, 1, None).map(|r| r.len())),
            (0, Some(1))
        );
        for s in TAIL as u64 + 1..=TAIL as u64 + 5 {
            t.push(entry(s));
            t.forget_old();
        }
        let gone = 5;
        // The ring grew a quarter past the tail, not to twice it.
        assert!(t.tail.capacity() < TAIL + TAIL / 2, "{}", t.tail.capacity());
        assert_eq!(
            (t.forgotten(), t.len(), t.tail.len()),
            (gone, gone + TAIL as u64, TAIL)
        );
        // What is gone cannot be had (a resume from before it is not recovered); what
        // is kept reads back with its own sequence numbers, senders and bodies.
        assert!(t.range(gone, gone + 1, None).is_none());
        let kept = t.range(gone + 1, t.len(), None).unwrap();
        assert_eq!(kept.len(), TAIL);
        for (e, seq) in kept.iter().zip(gone + 1..) {
            assert_eq!((e.seq, e.body.as_str()), (seq, format!("e{seq}").as_str()));
        }
    }

    #[test]
    fn senders_are_kept_once_and_lent_entries_come_back() {
        let mut t = Transcript::default();
        for (i, who) in ["visitor-1", "agent-7", "visitor-1", "", "agent-7"]
            .iter()
            .enumerate()
        {
            t.push(Entry {
                sender: (*who).to_owned(),
                time_ms: i as u64,
                ..entry(i as u64 + 1)
            });
        }
        assert_eq!(t.senders.len(), 3);
        let senders: Vec<String> = t.all(None).into_iter().map(|e| e.sender).collect();
        assert_eq!(
            senders,
            ["visitor-1", "agent-7", "visitor-1", "", "agent-7"]
        );
        // The newest entry is lent whole and taken back as the lender left it.
        let seen = t.with_last(|e| {
            let seen = (e.seq, e.sender.clone(), e.body.clone(), e.time_ms);
            e.flags = 3;
            seen
        });
        assert_eq!(seen, Some((5, "agent-7".to_owned(), "e5".to_owned(), 4)));
        let last = t.get(5, None).unwrap();
        assert_eq!(
            (last.sender.as_str(), last.body.as_str(), last.flags),
            ("agent-7", "e5", 3)
        );
        assert_eq!(t.get(2, None).unwrap().sender, "agent-7");
        assert_eq!((t.last_time_ms(), t.last_kind()), (Some(4), Some(0)));
    }

    use crate::protocol::messages::entry_kind::GAP;

    fn gap(seq: u64) -> Entry {
        Entry {
            seq,
            kind: GAP,
            ..Entry::default()
        }
    }

    #[test]
    fn spans_stand_for_several_numbers_and_read_back_one_gap_each() {
        let mut t = Transcript::default();
        t.push(entry(1));
        t.push(entry(2));
        assert_eq!(t.push_span(gap(3), 4), 3);
        assert_eq!(t.len(), 6);
        assert_eq!(t.push(entry(7)), 7);
        assert_eq!(t.push_span(gap(8), 1), 8);
        assert_eq!(t.push_span(gap(9), 1000), 9);
        assert_eq!(t.push(entry(1009)), 1009);
        let all = t.all(None);
        assert_eq!(all.len(), 1009);
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1);
            let is_gap = (3..=6).contains(&e.seq) || (8..=1008).contains(&e.seq);
            assert_eq!(e.kind == GAP, is_gap, "seq {}", e.seq);
        }
        let r = t.range(5, 8, None).unwrap();
        assert_eq!(
            r.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![5, 6, 7, 8]
        );
        assert_eq!(t.get(1009, None).unwrap().body, "e1009");
        assert_eq!(t.get(500, None).unwrap().kind, GAP);
        // Taking back to the end of a span keeps it; before it drops it.
        t.truncate(1008);
        assert_eq!(t.len(), 1008);
        t.truncate(7);
        assert_eq!(t.len(), 7);
        assert_eq!(t.push(entry(8)), 8);
        t.truncate(2);
        assert_eq!(t.len(), 2);
        assert!(t.spans.is_empty());
    }

    #[test]
    fn spans_leave_memory_and_come_back_by_location() {
        let mut t = Transcript::default();
        t.push_span(gap(1), 10);
        for s in 11..=200 {
            assert_eq!(t.push(entry(s)), s);
        }
        t.located(
            1,
            Location {
                segment: 1,
                offset: 0,
            },
            true,
        );
        for s in 11..=150 {
            t.located(
                s,
                Location {
                    segment: 1,
                    offset: s as u32,
                },
                true,
            );
        }
        assert!(t.first > 0);
        assert_eq!(t.len(), 200);
        assert!(t.range(1, 12, None).is_none());
        let r = t.range(180, 200, None).unwrap();
        assert_eq!(r.first().map(|e| e.seq), Some(180));
        assert_eq!(r.len(), 21);
    }
}
