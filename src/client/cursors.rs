//! Resume cursors (sans-IO): the last sequence number delivered per conversation, used
//! to drop replayed duplicates and to fill `Hello.resume` on reconnect.

use std::collections::BTreeMap;

use crate::protocol::messages::{Cursor, MAX_CURSORS};

/// Last delivered sequence number per conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Cursors {
    last: BTreeMap<u64, u64>,
}

impl Cursors {
    /// Cursors starting from `list` (the highest `last_seq` wins for a conversation
    /// named twice).
    pub fn from_list(list: &[Cursor]) -> Self {
        let mut c = Self::default();
        for cur in list {
            c.accept(cur.conversation, cur.last_seq);
        }
        c
    }

    /// Records event `seq` of `conversation`; false when it is not newer than the
    /// last one delivered there (a replayed duplicate to drop).
    pub fn accept(&mut self, conversation: u64, seq: u64) -> bool {
        match self.last.get(&conversation) {
            Some(&last) if seq <= last => false,
            _ => {
                self.last.insert(conversation, seq);
                true
            }
        }
    }

    /// Every cursor, by conversation id.
    pub fn all(&self) -> Vec<Cursor> {
        self.last
            .iter()
            .map(|(&conversation, &last_seq)| Cursor {
                conversation,
                last_seq,
            })
            .collect()
    }

    /// The cursors for `Hello.resume`: at most [`MAX_CURSORS`], the highest
    /// conversation ids (the newest, as the server hands ids out in order) when
    /// there are more.
    pub fn for_hello(&self) -> Vec<Cursor> {
        let mut all = self.all();
        let extra = all.len().saturating_sub(MAX_CURSORS);
        all.drain(..extra);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(conversation: u64, last_seq: u64) -> Cursor {
        Cursor {
            conversation,
            last_seq,
        }
    }

    #[test]
    fn duplicates_and_older_events_are_dropped_per_conversation() {
        let mut c = Cursors::default();
        assert!(c.accept(7, 1));
        assert!(c.accept(7, 2));
        assert!(!c.accept(7, 2));
        assert!(!c.accept(7, 1));
        assert!(c.accept(8, 1), "another conversation has its own cursor");
        assert!(
            c.accept(7, 5),
            "gaps are the server's business, not a duplicate"
        );
        assert_eq!(c.all(), vec![cur(7, 5), cur(8, 1)]);
    }

    #[test]
    fn starts_from_a_list_keeping_the_highest() {
        let c = Cursors::from_list(&[cur(3, 9), cur(3, 4), cur(1, 2)]);
        assert_eq!(c.all(), vec![cur(1, 2), cur(3, 9)]);
        let mut c = c;
        assert!(!c.accept(3, 9));
        assert!(c.accept(3, 10));
    }

    #[test]
    fn hello_gets_at_most_the_protocol_limit_newest_first_kept() {
        let list: Vec<Cursor> = (1..=MAX_CURSORS as u64 + 5).map(|i| cur(i, 1)).collect();
        let c = Cursors::from_list(&list);
        let hello = c.for_hello();
        assert_eq!(hello.len(), MAX_CURSORS);
        assert_eq!(hello.first(), Some(&cur(6, 1)));
        assert_eq!(c.all().len(), MAX_CURSORS + 5);
    }
}
