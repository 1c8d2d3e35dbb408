//! Journal locations of a transcript's durable entries, kept compactly: they stay for
//! the conversation's whole life (one per entry ever made durable), so a plain
//! `Vec<Location>` cost 8 bytes per routed message and up to twice that with the
//! `Vec`'s doubling.
//!
//! A conversation's consecutive entries mostly lie in one segment at growing offsets,
//! so every [`MARK_EVERY`]th location is kept whole (a mark) and the ones between as
//! the distance from the previous one, a LEB128 varint of `distance << 1` (an even
//! number; ~3 bytes at 50,000 msg/s). Anything else — another segment, a smaller
//! offset (compaction moves records to newer segments) — is an escape: the odd number
//! `segment << 1 | 1`, then the offset. Reading entry `i` decodes at most
//! `MARK_EVERY - 1` codes from its mark.

use std::collections::HashMap;

use crate::journal::Location;

/// One location in this many is kept whole.
pub(crate) const MARK_EVERY: usize = 32;

/// The locations of entries `0 .. len()`, in order.
#[derive(Debug)]
pub(crate) struct Locs {
    /// Entry `k * MARK_EVERY`'s location, and where the codes of the entries after
    /// it start in `codes`.
    marks: Vec<Mark>,
    /// The entries that are not marks, in order (see the module's comment).
    codes: Vec<u8>,
    /// Number of locations.
    len: usize,
    /// The newest location (what the next code is relative to).
    last: Location,
}

/// Nowhere: what a code before any location is relative to.
const NOWHERE: Location = Location {
    segment: 0,
    offset: 0,
};

impl Default for Locs {
    fn default() -> Self {
        Locs {
            marks: Vec::new(),
            codes: Vec::new(),
            len: 0,
            last: NOWHERE,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Location,
    code: usize,
}

impl Locs {
    /// Number of locations kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends the location of the next entry.
    pub fn push(&mut self, at: Location) {
        if self.len.is_multiple_of(MARK_EVERY) {
            grow(&mut self.marks, 1, 2);
            self.marks.push(Mark {
                at,
                code: self.codes.len(),
            });
        } else if at.segment == self.last.segment && at.offset > self.last.offset {
            self.put(u64::from(at.offset - self.last.offset) << 1);
        } else {
            self.put(u64::from(at.segment) << 1 | 1);
            self.put(u64::from(at.offset));
        }
        self.last = at;
        self.len += 1;
    }

    /// Location of entry `i`; `None` past the end.
    pub fn get(&self, i: usize) -> Option<Location> {
        if i >= self.len {
            return None;
        }
        let mark = self.marks.get(i / MARK_EVERY)?;
        let (mut at, mut pos) = (mark.at, mark.code);
        for _ in 0..i % MARK_EVERY {
            pos = self.step(&mut at, pos)?;
        }
        Some(at)
    }

    /// Keeps the first `n` locations.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len {
            return;
        }
        let group = n / MARK_EVERY;
        let keep_in_group = n % MARK_EVERY;
        let cut = match self.marks.get(group) {
            Some(m) if keep_in_group == 0 => m.code,
            Some(m) => {
                let (mut at, mut pos) = (m.at, m.code);
                for _ in 1..keep_in_group {
                    pos = self.step(&mut at, pos).unwrap_or(pos);
                }
                pos
            }
            None => self.codes.len(),
        };
        self.codes.truncate(cut);
        self.marks.truncate(group + usize::from(keep_in_group > 0));
        self.len = n;
        self.last = n
            .checked_sub(1)
            .and_then(|i| self.get(i))
            .unwrap_or(NOWHERE);
    }

    /// Compaction moved records: follow them.
    pub fn moved(&mut self, moves: &HashMap<Location, Location>) {
        let all: Vec<Location> = self.iter().collect();
        if !all.iter().any(|l| moves.contains_key(l)) {
            return;
        }
        *self = Locs::default();
        for l in all {
            self.push(moves.get(&l).copied().unwrap_or(l));
        }
    }

    /// Every location, in order.
    pub fn iter(&self) -> impl Iterator<Item = Location> + '_ {
        let mut at = NOWHERE;
        let mut pos = 0;
        (0..self.len).map_while(move |i| {
            if i.is_multiple_of(MARK_EVERY) {
                let m = self.marks.get(i / MARK_EVERY)?;
                (at, pos) = (m.at, m.code);
            } else {
                pos = self.step(&mut at, pos)?;
            }
            Some(at)
        })
    }

    /// Bytes held (tests and the README's figures).
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        self.marks.capacity() * std::mem::size_of::<Mark>() + self.codes.capacity()
    }

    /// Decodes the code at `pos` into `at` (the location before it); returns where
    /// the next code starts.
    fn step(&self, at: &mut Location, pos: usize) -> Option<usize> {
        let (v, pos) = self.varint(pos)?;
        if v & 1 == 0 {
            at.offset = at.offset.checked_add(u32::try_from(v >> 1).ok()?)?;
            return Some(pos);
        }
        let (offset, pos) = self.varint(pos)?;
        *at = Location {
            segment: u32::try_from(v >> 1).ok()?,
            offset: u32::try_from(offset).ok()?,
        };
        Some(pos)
    }

    fn varint(&self, mut pos: usize) -> Option<(u64, usize)> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.codes.get(pos)?;
            pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some((v, pos));
            }
        }
        None
    }

    fn put(&mut self, mut v: u64) {
        grow(&mut self.codes, 10, 32);
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.codes.push(b);
                return;
            }
            self.codes.push(b | 0x80);
        }
    }
}

/// Room for `more` items, growing by a quarter (at least `min`) rather than doubling
/// (still amortised O(1)): long conversations keep ~25% slack at most, not up to 100%.
fn grow<T>(v: &mut Vec<T>, more: usize, min: usize) {
    if v.capacity() - v.len() < more {
        v.reserve_exact((v.capacity() / 4).max(more).max(min));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn loc(segment: u32, offset: u32) -> Location {
        Location { segment, offset }
    }

    #[test]
    fn a_run_in_one_segment_takes_a_few_bytes_per_entry() {
        let mut l = Locs::default();
        let mut v = Vec::new();
        // ~750 KB apart: the chat run's spacing at 50,000 msg/s over 5,000 conversations.
        for i in 0..1000u32 {
            let at = loc(3 + i / 400, 64 + (i % 400) * 750_000 / 100);
            l.push(at);
            v.push(at);
        }
        assert_eq!(l.iter().collect::<Vec<_>>(), v);
        assert!(l.heap_bytes() <= 4_000, "{} B", l.heap_bytes());
        for (i, at) in v.iter().enumerate() {
            assert_eq!(l.get(i), Some(*at));
        }
        assert_eq!(l.get(1000), None);
    }

    #[test]
    fn the_chat_runs_conversation_takes_about_half() {
        // ~120 durable entries per conversation in `benches/chat_cpu.sh --rate 10`:
        // a `Vec<Location>` holds 128 × 8 = 1,024 B for them.
        let mut l = Locs::default();
        for i in 0..120u32 {
            l.push(loc(2, 64 + i * 750_000));
        }
        assert!(l.heap_bytes() <= 512, "{} B", l.heap_bytes());
    }

    #[test]
    fn truncate_at_and_around_marks_then_push_again() {
        for n in [0, 1, 31, 32, 33, 63, 64, 65, 99, 100, 150] {
            let mut l = Locs::default();
            let v: Vec<Location> = (0..100).map(|i| loc(i / 10, i * 7 + 1)).collect();
            v.iter().for_each(|at| l.push(*at));
            l.truncate(n as usize);
            let kept = n.min(100) as usize;
            assert_eq!(l.iter().collect::<Vec<_>>(), v[..kept], "n {n}");
            l.push(loc(99, 5));
            assert_eq!(l.get(kept), Some(loc(99, 5)), "n {n}");
            assert_eq!(l.len(), kept + 1);
        }
    }

    #[test]
    fn moved_locations_are_followed_in_any_order() {
        let mut l = Locs::default();
        for i in 0..70 {
            l.push(loc(1, 100 + i * 50));
        }
        // Compaction copied the first 40 into a newer segment, at smaller offsets.
        let moves: HashMap<Location, Location> = (0..40)
            .map(|i| (loc(1, 100 + i * 50), loc(9, 16 + i * 50)))
            .collect();
        l.moved(&moves);
        for i in 0..70 {
            let want = if i < 40 {
                loc(9, 16 + i * 50)
            } else {
                loc(1, 100 + i * 50)
            };
            assert_eq!(l.get(i as usize), Some(want), "{i}");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Next location: same segment forward by d, or (segment, offset) anywhere.
        Forward(u32),
        Anywhere(u32, u32),
        Truncate(usize),
        Move(usize, u32, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1u32..2_000_000).prop_map(Op::Forward),
            2 => (any::<u32>(), any::<u32>()).prop_map(|(s, o)| Op::Anywhere(s, o)),
            1 => (0usize..300).prop_map(Op::Truncate),
            1 => (0usize..300, any::<u32>(), any::<u32>()).prop_map(|(i, s, o)| Op::Move(i, s, o)),
        ]
    }

    proptest! {
        /// The compact form holds exactly what a `Vec<Location>` would, through pushes,
        /// truncations and compaction's moves.
        #[test]
        fn behaves_as_a_vec(ops in proptest::collection::vec(op(), 0..400)) {
            let mut l = Locs::default();
            let mut model: Vec<Location> = Vec::new();
            for op in ops {
                match op {
                    Op::Forward(d) => {
                        let last = model.last().copied().unwrap_or(NOWHERE);
                        let at = loc(last.segment, last.offset.saturating_add(d));
                        l.push(at);
                        model.push(at);
                    }
                    Op::Anywhere(s, o) => {
                        l.push(loc(s, o));
                        model.push(loc(s, o));
                    }
                    Op::Truncate(n) => {
                        l.truncate(n);
                        model.truncate(n);
                    }
                    Op::Move(i, s, o) => {
                        if let Some(from) = model.get(i).copied() {
                            let moves = HashMap::from([(from, loc(s, o))]);
                            l.moved(&moves);
                            for m in &mut model {
                                if let Some(to) = moves.get(m) {
                                    *m = *to;
                                }
                            }
                        }
                    }
                }
                prop_assert_eq!(l.len(), model.len());
            }
            prop_assert_eq!(l.iter().collect::<Vec<_>>(), model.clone());
            for (i, at) in model.iter().enumerate() {
                prop_assert_eq!(l.get(i), Some(*at));
            }
            prop_assert_eq!(l.get(model.len()), None);
        }
    }
}
