//! Idempotency of `Send`: which sequence number each (sender, client message id)
//! got in one conversation, so a resend is answered with the same `seq`.
//!
//! Kept per sender, then per id: a lookup hashes the sender's user id as a borrowed
//! `&str` and the id as a `u64`, so neither checking nor recording a message copies
//! the user id (only a sender's first message in a conversation does). Both levels
//! are keyed by values the client chooses: seeded hashing ([`ClientMap`]).

use std::hash::{Hash, Hasher};

use crate::fasthash::ClientMap;

/// Client message id → `seq`, per sender user id.
///
/// A conversation keeps one entry per message it ever stored (a resend may come at
/// any time), so an entry is packed: the id as two `u32` halves and the `seq` as a
/// `u32`, 12 bytes in the table instead of 16. A `seq` beyond `u32::MAX` (never, in
/// practice) goes to `big`.
#[derive(Debug, Default)]
pub(crate) struct SentIds {
    by_sender: ClientMap<String, Ids>,
}

/// One sender's ids.
#[derive(Debug, Default)]
struct Ids {
    small: ClientMap<Id, u32>,
    /// Boxed: almost always absent, so it costs a pointer.
    big: Option<Box<ClientMap<u64, u64>>>,
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
        match self.small.get(&Id::new(id)) {
            Some(&seq) => Some(u64::from(seq)),
            None => self.big.as_ref()?.get(&id).copied(),
        }
    }

    fn insert(&mut self, id: u64, seq: u64) {
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
    }

    fn is_empty(&self) -> bool {
        self.small.is_empty() && self.big.as_ref().is_none_or(|b| b.is_empty())
    }

    /// Every (id, seq).
    fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let small = self.small.iter().map(|(id, s)| (id.get(), u64::from(*s)));
        let big = self
            .big
            .iter()
            .flat_map(|b| b.iter().map(|(id, s)| (*id, *s)));
        small.chain(big)
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
}
