//! A conversation's transcript: the newest entries in memory, the older ones only in
//! the journal, read back through its read-only maps when `History` or a resume
//! needs them. Without a journal every entry stays in memory.

use std::collections::HashMap;

use crate::journal::{JournalReader, Location};
use crate::protocol::messages::Entry;

use super::record;

/// Entries kept in memory per conversation once they are durable (at least).
pub(crate) const TAIL: usize = 32;

/// The entries of one conversation; entry `seq` is the `seq`-th.
#[derive(Debug, Default)]
pub(crate) struct Transcript {
    /// Entries no longer in memory (all durable, all located).
    first: u64,
    /// Entries `first + 1 ..` in order.
    tail: Vec<Entry>,
    /// Journal location of entries `1 ..= locs.len()` (the durable ones).
    locs: Vec<Location>,
}

impl Transcript {
    /// Number of entries (the last `seq`).
    pub fn len(&self) -> u64 {
        self.first + self.tail.len() as u64
    }

    /// Appends the next entry; returns its `seq`.
    pub fn push(&mut self, entry: Entry) -> u64 {
        self.tail.push(entry);
        self.len()
    }

    /// The newest entry.
    pub fn last(&self) -> Option<&Entry> {
        self.tail.last()
    }

    /// The newest entry, to change in place.
    pub fn last_mut(&mut self) -> Option<&mut Entry> {
        self.tail.last_mut()
    }

    /// Takes back the entries after `len` (never below what left memory: those are
    /// durable, and only entries that are not can be taken back).
    pub fn truncate(&mut self, len: u64) {
        let keep = usize::try_from(len.saturating_sub(self.first)).unwrap_or(usize::MAX);
        self.tail.truncate(keep);
        self.locs
            .truncate(usize::try_from(len).unwrap_or(usize::MAX));
    }

    /// Entry `seq` is durable at `at`. Locations arrive in order; when more than
    /// [`TAIL`] located entries are in memory, the oldest half of them leave it.
    pub fn located(&mut self, seq: u64, at: Location, evict: bool) {
        if seq == self.locs.len() as u64 + 1 {
            self.locs.push(at);
        }
        let located_in_memory = (self.locs.len() as u64).saturating_sub(self.first) as usize;
        if evict && located_in_memory > 2 * TAIL {
            let n = located_in_memory - TAIL;
            self.tail.drain(..n.min(self.tail.len()));
            self.first += n as u64;
        }
    }

    /// Compaction moved records: follow them.
    pub fn moved(&mut self, moves: &HashMap<Location, Location>) {
        for l in &mut self.locs {
            if let Some(to) = moves.get(l) {
                *l = *to;
            }
        }
    }

    /// Entries `from ..= to` (1-based, clamped), oldest first; `None` if one that
    /// left memory cannot be read back.
    pub fn range(&self, from: u64, to: u64, reader: Option<&JournalReader>) -> Option<Vec<Entry>> {
        let to = to.min(self.len());
        let from = from.max(1);
        let mut out = Vec::with_capacity(usize::try_from(to.saturating_sub(from) + 1).unwrap_or(0));
        let mut seq = from;
        while seq <= to && seq <= self.first {
            let at = *self.locs.get(usize::try_from(seq - 1).ok()?)?;
            out.push(read(reader?, at)?);
            seq += 1;
        }
        if seq <= to {
            let a = usize::try_from(seq - self.first - 1).ok()?;
            let b = usize::try_from(to - self.first).ok()?;
            out.extend_from_slice(self.tail.get(a..b)?);
        }
        Some(out)
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
        assert_eq!((t.len(), t.last().map(|e| e.seq)), (97, Some(97)));
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
}
