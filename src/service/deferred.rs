//! `History` requests a shard holds back while their connection owes
//! `limits.max_pending_bytes` of output (see `crate::ledger`): the page is built only
//! once the connection has taken enough of what it was already sent, so a client that
//! asks for many pages and reads none makes the daemon hold about one bound's worth of
//! them, not all. Requests wait in arrival order, each connection's in its own order;
//! how many may wait is bounded per connection (`limits.max_held_requests`) and per
//! shard (64 times that), and past either bound the connection is cut as a slow
//! consumer.

use std::collections::VecDeque;

use super::Sender;
use crate::fasthash::ServerMap;
use crate::handoff::ConnId;
use crate::protocol::messages;

/// How many more requests one shard may hold than one connection
/// (`limits.max_held_requests`): a shard holds at most this many connections' worth.
pub(crate) const SHARD_FACTOR: usize = 64;

/// One request waiting.
#[derive(Debug)]
pub(crate) struct Waiting {
    /// Who asked, on which connection.
    pub from: Sender,
    /// What was asked.
    pub history: messages::History,
    /// Bytes its page took when last built (0: not built yet); it is built again
    /// only once the connection has room for that much.
    pub needed: u32,
}

/// The requests waiting on one shard.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    queue: VecDeque<Waiting>,
    per_conn: ServerMap<ConnId, u32>,
}

/// A bound of [`Deferred`] was passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow;

impl Deferred {
    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether `conn` has requests waiting (a new one must queue behind them).
    pub fn has(&self, conn: ConnId) -> bool {
        self.per_conn.contains_key(&conn)
    }

    /// Holds `w` back at the end of the queue, if its connection has fewer than
    /// `per_conn` waiting and the shard fewer than [`SHARD_FACTOR`] times that. Past a
    /// bound, forgets every request of its connection instead and says so (the caller
    /// cuts the connection).
    pub fn push(&mut self, w: Waiting, per_conn: u32) -> Result<(), Overflow> {
        let conn = w.from.conn;
        let n = self.per_conn.get(&conn).copied().unwrap_or(0);
        let per_shard = (per_conn as usize).saturating_mul(SHARD_FACTOR);
        if n >= per_conn || self.queue.len() >= per_shard {
            self.forget(conn);
            return Err(Overflow);
        }
        self.per_conn.insert(conn, n + 1);
        self.queue.push_back(w);
        Ok(())
    }

    /// Takes the whole queue for a retry pass; what cannot be served yet goes back
    /// with [`Deferred::requeue`], in the order taken.
    pub fn take(&mut self) -> VecDeque<Waiting> {
        std::mem::take(&mut self.queue)
    }

    /// Puts back a request taken for a retry pass that must wait longer.
    pub fn requeue(&mut self, w: Waiting) {
        self.queue.push_back(w);
    }

    /// A request taken for a retry pass was served or dropped.
    pub fn done(&mut self, conn: ConnId) {
        if let Some(n) = self.per_conn.get_mut(&conn) {
            *n -= 1;
            if *n == 0 {
                self.per_conn.remove(&conn);
            }
        }
    }

    /// Forgets every request of `conn`.
    fn forget(&mut self, conn: ConnId) {
        if self.per_conn.remove(&conn).is_some() {
            self.queue.retain(|w| w.from.conn != conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(slot: u32, rid: u32) -> Waiting {
        Waiting {
            from: Sender::test(
                "u",
                0,
                ConnId {
                    reactor: 0,
                    slot,
                    generation: 1,
                },
                rid,
            ),
            history: messages::History {
                conversation: 1,
                before_seq: 0,
                limit: 10,
            },
            needed: 0,
        }
    }

    const MAX: u32 = 16;

    #[test]
    fn the_shard_bound_is_a_multiple_of_the_connection_bound() {
        let mut d = Deferred::default();
        for slot in 0..SHARD_FACTOR as u32 {
            for rid in 0..2 {
                d.push(waiting(slot, rid), 2).unwrap();
            }
        }
        assert_eq!(d.push(waiting(999, 0), 2), Err(Overflow));
    }

    #[test]
    fn per_connection_bound_forgets_that_connection_only() {
        let mut d = Deferred::default();
        for rid in 0..MAX {
            d.push(waiting(1, rid), MAX).unwrap();
        }
        d.push(waiting(2, 0), MAX).unwrap();
        assert_eq!(d.push(waiting(1, 9999), MAX), Err(Overflow));
        assert!(!d.has(waiting(1, 0).from.conn));
        assert_eq!(d.len(), 1, "only the other connection's request is left");
        assert!(d.has(waiting(2, 0).from.conn));
    }

    #[test]
    fn a_retry_pass_keeps_order_and_counts() {
        let mut d = Deferred::default();
        for rid in 0..3 {
            d.push(waiting(1, rid), MAX).unwrap();
        }
        let mut pass = d.take();
        let first = pass.pop_front().unwrap();
        d.done(first.from.conn);
        for w in pass {
            d.requeue(w);
        }
        let rids: Vec<u32> = d.take().iter().map(|w| w.from.rid).collect();
        assert_eq!(rids, [1, 2]);
    }
}
