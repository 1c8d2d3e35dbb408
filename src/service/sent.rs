//! Idempotency of `Send`: which sequence number each (sender, client message id)
//! got in one conversation, so a resend is answered with the same `seq`.
//!
//! Kept per sender, then per id: a lookup hashes the sender's user id as a borrowed
//! `&str` and the id as a `u64`, so neither checking nor recording a message copies
//! the user id (only a sender's first message in a conversation does). Both levels
//! are keyed by values the client chooses: seeded hashing ([`ClientMap`]).
//!
//! A conversation keeps one id per message it ever stored (a resend may come at any
//! time: PROTOCOL.md section 10.3 promises it is never stored twice), so this is the
//! one part of a conversation that grows with every message. Most clients (the SDK,
//! `storm`) number their messages n, n+1, ...: such ids are kept as [`Run`]s, one
//! byte per message (the distance from the previous message's `seq`), not as a hash
//! table entry (12 bytes, ~15–20 with the table's slack).

use std::hash::{Hash, Hasher};

use crate::fasthash::ClientMap;

/// Client message id → `seq`, per sender user id.
#[derive(Debug, Default)]
pub(crate) struct SentIds {
    by_sender: ClientMap<String, Ids>,
}

/// One sender's ids.
///
/// Ids that continue the sender's last run join it; the rest go to `small` (packed:
/// the id as two `u32` halves and the `seq` as a `u32`, 12 bytes in the table), or
/// `big` for a `seq` beyond `u32::MAX` (never, in practice).
#[derive(Debug, Default)]
struct Ids {
    small: ClientMap<Id, u32>,
    /// Boxed: almost always absent, so it costs a pointer.
    big: Option<Box<ClientMap<u64, u64>>>,
    /// Runs of consecutive ids, ascending and disjoint: a run is only ever started
    /// past the end of the last one, and only the last one grows, so both stay O(1)
    /// per message whatever order a client uses (out-of-order ids stay in `small`).
    runs: Vec<Run>,
}

/// Ids `first_id ..= first_id + deltas.len()`, in the order they were stored:
/// element `i` got `seq(i)`, with `seq(0) = first_seq` and
/// `seq(i + 1) = seq(i) + deltas[i]` (messages of a conversation are stored in `seq`
/// order, so every delta is ≥ 1; one that would not fit a byte ends the run).
#[derive(Debug)]
struct Run {
    first_id: u64,
    first_seq: u64,
    /// `seq` of the last element (what the next delta is from).
    last_seq: u64,
    deltas: Vec<u8>,
    /// `seq` of elements `MARK`, `2 × MARK`, ...: a lookup adds at most `MARK - 1`
    /// deltas.
    marks: Vec<u64>,
}

/// Elements between two [`Run::marks`].
const MARK: usize = 256;

impl Run {
    fn new(first_id: u64, first_seq: u64) -> Self {
        Run {
            first_id,
            first_seq,
            last_seq: first_seq,
            deltas: Vec::new(),
            marks: Vec::new(),
        }
    }

    /// Number of ids in the run.
    fn len(&self) -> usize {
        self.deltas.len() + 1
    }

    /// The id after the last one.
    fn end(&self) -> u64 {
        self.first_id.wrapping_add(self.len() as u64)
    }

    /// Whether `id` is in the run.
    fn holds(&self, id: u64) -> bool {
        id >= self.first_id && id - self.first_id < self.len() as u64
    }

    /// The `seq` of element `k` (< `len`).
    fn seq(&self, k: usize) -> u64 {
        let block = k / MARK;
        let base = match block {
            0 => self.first_seq,
            b => self.marks[b - 1],
        };
        let added: u64 = self.deltas[block * MARK..k]
            .iter()
            .map(|&d| u64::from(d))
            .sum();
        base + added
    }

    /// Appends the next id with `seq`; false (nothing changed) when `seq` is not
    /// within a byte after the last one, or the id would wrap.
    fn push(&mut self, seq: u64) -> bool {
        let Some(delta) = seq
            .checked_sub(self.last_seq)
            .and_then(|d| u8::try_from(d).ok())
        else {
            return false;
        };
        if delta == 0 || self.end() == 0 {
            return false;
        }
        self.deltas.push(delta);
        self.last_seq = seq;
        if (self.len() - 1).is_multiple_of(MARK) {
            self.marks.push(seq);
        }
        true
    }

    /// Keeps the elements with `seq` ≤ `seq`; false when none is left.
    fn retain_up_to(&mut self, seq: u64) -> bool {
        let keep = self.iter().take_while(|&(_, s)| s <= seq).count();
        if keep == 0 {
            return false;
        }
        self.deltas.truncate(keep - 1);
        self.marks.truncate((keep - 1) / MARK);
        self.last_seq = self.seq(keep - 1);
        true
    }

    /// Every (id, seq), in order.
    fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let rest = self.deltas.iter().scan(self.first_seq, |s, &d| {
            *s += u64::from(d);
            Some(*s)
        });
        std::iter::once(self.first_seq)
            .chain(rest)
            .enumerate()
            .map(|(i, s)| (self.first_id + i as u64, s))
    }
}

/// A client message id in 4-byte-aligned halves (hashed as the `u64` it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Id([u32; 2]);

impl Id {
    fn new(id: u64) -> Self {
        Id([id as u32, (id >> 32) as u32])
    }

    fn get(self) -> u64 {
        u64::from(self.0[0]) | (u64::from(self.0[1]) << 32)
    }
}

impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.get());
    }
}

impl Ids {
    fn get(&self, id: u64) -> Option<u64> {
        if let Some(&seq) = self.small.get(&Id::new(id)) {
            return Some(u64::from(seq));
        }
        // The run with the greatest first id ≤ `id`.
        let at = self.runs.partition_point(|r| r.first_id <= id);
        if let Some(run) = at.checked_sub(1).map(|i| &self.runs[i])
            && run.holds(id)
        {
            return Some(run.seq((id - run.first_id) as usize));
        }
        self.big.as_ref()?.get(&id).copied()
    }

    /// Records a new id (not stored before) with a `seq` above every one stored.
    fn insert(&mut self, id: u64, seq: u64) {
        if let Some(run) = self.runs.last_mut()
            && run.end() == id
            && run.push(seq)
        {
            return;
        }
        // `id - 1` alone in `small` and past the last run: the two start a run.
        let past_runs = self.runs.last().is_none_or(|r| id > r.end());
        if let Some(prev) = id.checked_sub(1).filter(|_| past_runs)
            && let Some(&prev_seq) = self.small.get(&Id::new(prev))
        {
            let mut run = Run::new(prev, u64::from(prev_seq));
            if run.push(seq) {
                self.small.remove(&Id::new(prev));
                if self.runs.capacity() == 0 {
                    self.runs.reserve_exact(1);
                }
                self.runs.push(run);
                return;
            }
        }
        match u32::try_from(seq) {
            Ok(small) => {
                self.small.insert(Id::new(id), small);
            }
            Err(_) => {
                self.big.get_or_insert_default().insert(id, seq);
            }
        }
    }

    fn retain_up_to(&mut self, seq: u64) {
        self.small.retain(|_, s| u64::from(*s) <= seq);
        if let Some(big) = &mut self.big {
            big.retain(|_, s| *s <= seq);
        }
        self.runs.retain_mut(|r| r.retain_up_to(seq));
    }

    fn is_empty(&self) -> bool {
        self.small.is_empty()
            && self.runs.is_empty()
            && self.big.as_ref().is_none_or(|b| b.is_empty())
    }

    /// Every (id, seq).
    fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let small = self.small.iter().map(|(id, s)| (id.get(), u64::from(*s)));
        let big = self
            .big
            .iter()
            .flat_map(|b| b.iter().map(|(id, s)| (*id, *s)));
        let runs = self.runs.iter().flat_map(Run::iter);
        small.chain(big).chain(runs)
    }

    /// Heap bytes asked for (tests and the memory figures).
    #[cfg(test)]
    fn runs_heap(&self) -> usize {
        self.runs.capacity() * std::mem::size_of::<Run>()
            + self
                .runs
                .iter()
                .map(|r| r.deltas.capacity() + r.marks.capacity() * 8)
                .sum::<usize>()
    }
}

impl SentIds {
    /// The `seq` that `sender`'s message `id` got, if it was stored.
    pub fn get(&self, sender: &str, id: u64) -> Option<u64> {
        self.by_sender.get(sender)?.get(id)
    }

    /// Records that `sender`'s message `id` got `seq`.
    pub fn insert(&mut self, sender: &str, id: u64, seq: u64) {
        match self.by_sender.get_mut(sender) {
            Some(ids) => ids.insert(id, seq),
            None => {
                let mut ids = Ids::default();
                ids.insert(id, seq);
                self.by_sender.insert(sender.to_owned(), ids);
            }
        }
    }

    /// Forgets the messages stored after `seq` (a rollback).
    pub fn retain_up_to(&mut self, seq: u64) {
        for ids in self.by_sender.values_mut() {
            ids.retain_up_to(seq);
        }
        self.by_sender.retain(|_, ids| !ids.is_empty());
    }

    /// `seq` → client message id of the messages stored after `seq`.
    pub fn ids_after(&self, seq: u64) -> crate::fasthash::ServerMap<u64, u64> {
        self.by_sender
            .values()
            .flat_map(|ids| ids.iter())
            .filter(|(_, s)| *s > seq)
            .map(|(id, s)| (s, id))
            .collect()
    }

    /// Every ((sender, id), seq), sorted (tests compare restored state).
    #[cfg(test)]
    pub fn sorted(&self) -> Vec<((String, u64), u64)> {
        let mut v: Vec<_> = self
            .by_sender
            .iter()
            .flat_map(|(who, ids)| ids.iter().map(move |(id, s)| ((who.clone(), id), s)))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_per_sender() {
        let mut s = SentIds::default();
        s.insert("v", 1, 1);
        s.insert("a", 1, 2);
        s.insert("v", 2, 3);
        assert_eq!(
            (s.get("v", 1), s.get("a", 1), s.get("v", 2)),
            (Some(1), Some(2), Some(3))
        );
        assert_eq!((s.get("a", 2), s.get("x", 1)), (None, None));
        let after: Vec<_> = {
            let mut v: Vec<_> = s.ids_after(1).into_iter().collect();
            v.sort();
            v
        };
        assert_eq!(after, vec![(2, 1), (3, 2)]);
    }

    #[test]
    fn retain_forgets_later_messages_and_empty_senders() {
        let mut s = SentIds::default();
        s.insert("v", 1, 1);
        s.insert("a", 7, 2);
        s.insert("v", 2, 3);
        s.retain_up_to(1);
        assert_eq!(s.sorted(), vec![(("v".to_owned(), 1), 1)]);
        assert!(!s.by_sender.contains_key("a"));
    }

    #[test]
    fn ids_use_all_64_bits_and_sequence_numbers_beyond_u32_are_kept() {
        let mut s = SentIds::default();
        let (a, b) = (u64::MAX, (7u64 << 32) | 7);
        s.insert("v", a, 1);
        s.insert("v", b, u64::from(u32::MAX) + 5);
        s.insert("v", 7, 2);
        assert_eq!(
            (
                s.get("v", a),
                s.get("v", b),
                s.get("v", 7),
                s.get("v", 7 << 32)
            ),
            (Some(1), Some(u64::from(u32::MAX) + 5), Some(2), None)
        );
        assert_eq!(s.ids_after(1).get(&(u64::from(u32::MAX) + 5)), Some(&b));
        s.retain_up_to(2);
        assert_eq!(
            s.sorted(),
            vec![(("v".to_owned(), 7), 2), (("v".to_owned(), a), 1)]
        );
    }

    #[test]
    fn an_entry_is_twelve_bytes() {
        assert_eq!(std::mem::size_of::<(Id, u32)>(), 12);
    }

    #[test]
    fn consecutive_ids_take_a_byte_per_message() {
        // Two senders taking turns, each numbering its messages 1, 2, 3, ...
        let mut s = SentIds::default();
        for n in 1..=1000u64 {
            s.insert("v", n, 2 * n - 1);
            s.insert("a", n, 2 * n);
        }
        let v = &s.by_sender["v"];
        assert!(v.small.is_empty() && v.runs.len() == 1, "{v:?}");
        // 999 deltas (the Vec's doubling: 1,024), three marks, the run itself.
        assert!(v.runs_heap() <= 1_024 + 4 * 8 + 80, "{}", v.runs_heap());
        for n in [1, 2, 255, 256, 257, 512, 999, 1000] {
            assert_eq!(s.get("v", n), Some(2 * n - 1));
            assert_eq!(s.get("a", n), Some(2 * n));
        }
        assert_eq!((s.get("v", 0), s.get("v", 1001)), (None, None));
    }

    #[test]
    fn a_gap_of_more_than_255_messages_starts_a_new_run() {
        let mut s = SentIds::default();
        s.insert("v", 1, 1);
        s.insert("v", 2, 2);
        s.insert("v", 3, 300); // 298 after: not a byte
        s.insert("v", 4, 301);
        s.insert("v", 10, 302); // not consecutive: alone
        let v = &s.by_sender["v"];
        assert_eq!((v.runs.len(), v.small.len()), (2, 1));
        assert_eq!(
            [1, 2, 3, 4, 5, 10].map(|id| s.get("v", id)),
            [Some(1), Some(2), Some(300), Some(301), None, Some(302)]
        );
    }

    #[test]
    fn rollback_cuts_runs_and_they_grow_again() {
        let mut s = SentIds::default();
        for n in 1..=600u64 {
            s.insert("v", n, n);
        }
        s.retain_up_to(300);
        assert_eq!((s.get("v", 300), s.get("v", 301)), (Some(300), None));
        s.insert("v", 301, 305);
        assert_eq!((s.get("v", 301), s.get("v", 257)), (Some(305), Some(257)));
        s.retain_up_to(0);
        assert!(s.by_sender.is_empty());
    }

    /// An operation on both the table and a plain map.
    #[derive(Debug, Clone)]
    enum Op {
        /// A sender's next message: its id is the sender's last id plus `step`
        /// (mostly 1), or a random one.
        Store {
            sender: u8,
            step: u64,
            random: Option<u64>,
            skip: u8,
        },
        Rollback {
            back: u8,
        },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            10 => (0u8..3, prop_oneof![4 => Just(1u64), 1 => 0u64..4], proptest::option::weighted(0.1, any::<u64>()), prop_oneof![8 => Just(0u8), 1 => any::<u8>()])
                .prop_map(|(sender, step, random, skip)| Op::Store { sender, step, random, skip }),
            1 => (0u8..20).prop_map(|back| Op::Rollback { back }),
        ]
    }

    proptest::proptest! {
        #[test]
        fn runs_answer_as_a_plain_map_does(ops in proptest::collection::vec(op(), 1..400)) {
            let mut s = SentIds::default();
            let mut model: std::collections::BTreeMap<(String, u64), u64> = Default::default();
            let mut last_id = [0u64; 3];
            let mut seq = 0u64;
            for op in ops {
                match op {
                    Op::Store { sender, step, random, skip } => {
                        let who = ["v", "a", "b"][usize::from(sender)];
                        let id = random.unwrap_or(last_id[usize::from(sender)].wrapping_add(step));
                        last_id[usize::from(sender)] = id;
                        seq += 1 + u64::from(skip);
                        let key = (who.to_owned(), id);
                        // As the conversation does: a stored id is a resend.
                        proptest::prop_assert_eq!(s.get(who, id), model.get(&key).copied());
                        if let std::collections::btree_map::Entry::Vacant(e) = model.entry(key) {
                            e.insert(seq);
                            s.insert(who, id, seq);
                        }
                    }
                    Op::Rollback { back } => {
                        seq = seq.saturating_sub(u64::from(back));
                        model.retain(|_, s| *s <= seq);
                        s.retain_up_to(seq);
                    }
                }
                for ((who, id), want) in &model {
                    proptest::prop_assert_eq!(s.get(who, *id), Some(*want));
                    proptest::prop_assert_eq!(s.get(who, id.wrapping_add(1)), model.get(&(who.clone(), id.wrapping_add(1))).copied());
                }
            }
            let want: Vec<_> = model.into_iter().collect();
            proptest::prop_assert_eq!(s.sorted(), want);
        }
    }
}
