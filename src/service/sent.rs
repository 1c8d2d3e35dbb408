//! Idempotency of `Send`: which sequence number each (sender, client message id)
//! got in one conversation, so a resend is answered with the same `seq`.
//!
//! Kept per sender, then per id: a lookup hashes the sender's user id as a borrowed
//! `&str` and the id as a `u64`, so neither checking nor recording a message copies
//! the user id (only a sender's first message in a conversation does). Both levels
//! are keyed by values the client chooses: seeded hashing ([`ClientMap`]).

use crate::fasthash::ClientMap;

/// Client message id → `seq`, per sender user id.
#[derive(Debug, Default)]
pub(crate) struct SentIds {
    by_sender: ClientMap<String, ClientMap<u64, u64>>,
}

impl SentIds {
    /// The `seq` that `sender`'s message `id` got, if it was stored.
    pub fn get(&self, sender: &str, id: u64) -> Option<u64> {
        self.by_sender.get(sender)?.get(&id).copied()
    }

    /// Records that `sender`'s message `id` got `seq`.
    pub fn insert(&mut self, sender: &str, id: u64, seq: u64) {
        match self.by_sender.get_mut(sender) {
            Some(ids) => {
                ids.insert(id, seq);
            }
            None => {
                let mut ids = ClientMap::default();
                ids.insert(id, seq);
                self.by_sender.insert(sender.to_owned(), ids);
            }
        }
    }

    /// Forgets the messages stored after `seq` (a rollback).
    pub fn retain_up_to(&mut self, seq: u64) {
        for ids in self.by_sender.values_mut() {
            ids.retain(|_, s| *s <= seq);
        }
        self.by_sender.retain(|_, ids| !ids.is_empty());
    }

    /// `seq` → client message id of the messages stored after `seq`.
    pub fn ids_after(&self, seq: u64) -> crate::fasthash::ServerMap<u64, u64> {
        self.by_sender
            .values()
            .flat_map(|ids| ids.iter())
            .filter(|(_, s)| **s > seq)
            .map(|(id, s)| (*s, *id))
            .collect()
    }

    /// Every ((sender, id), seq), sorted (tests compare restored state).
    #[cfg(test)]
    pub fn sorted(&self) -> Vec<((String, u64), u64)> {
        let mut v: Vec<_> = self
            .by_sender
            .iter()
            .flat_map(|(who, ids)| ids.iter().map(move |(id, s)| ((who.clone(), *id), *s)))
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
}
