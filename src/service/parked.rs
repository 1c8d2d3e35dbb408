//! What a journaled shard keeps while a batch waits for the disk, kept small and
//! reused: the effects of its changes in a compact form ([`ParkedEffect`]), and the
//! batch's lists handed from one batch to the next ([`Spares`]).
//!
//! With `fsync = "always"` every message's effects wait for their batch (a few
//! hundred messages per fsync at 50,000 msg/s). As whole [`Effect`]s (248 bytes,
//! sized by rare variants) in lists that grew anew for each batch, they touched
//! fresh memory several times a second, which the allocator then gave back to the
//! kernel and touched again: the journal-on chat run's largest source of page faults.

use bytes::Bytes;

use crate::handoff::{Command, ConnId};
use crate::service::Effect;

/// An effect waiting for its batch to be durable. The two a chat message makes (a
/// frame for one connection, the same frame for several) are kept inline; anything
/// else is boxed.
#[derive(Debug)]
pub(crate) enum ParkedEffect {
    /// [`Effect::Reactor`] of a [`Command::Send`].
    Send {
        /// The connection.
        conn: ConnId,
        /// The frame.
        frame: Bytes,
    },
    /// [`Effect::Broadcast`].
    Broadcast(Vec<ConnId>, Bytes),
    /// Any other effect.
    Other(Box<Effect>),
}

impl From<Effect> for ParkedEffect {
    fn from(e: Effect) -> Self {
        match e {
            Effect::Reactor(Command::Send { conn, frame }) => ParkedEffect::Send { conn, frame },
            Effect::Broadcast(conns, frame) => ParkedEffect::Broadcast(conns, frame),
            other => ParkedEffect::Other(Box::new(other)),
        }
    }
}

impl From<ParkedEffect> for Effect {
    fn from(p: ParkedEffect) -> Self {
        match p {
            ParkedEffect::Send { conn, frame } => Effect::Reactor(Command::Send { conn, frame }),
            ParkedEffect::Broadcast(conns, frame) => Effect::Broadcast(conns, frame),
            ParkedEffect::Other(e) => *e,
        }
    }
}

/// Emptied lists kept for reuse: at most `max_lists` of them, each of a capacity of
/// at most `max_items` (a list grown by a burst is dropped, not kept).
#[derive(Debug)]
pub(crate) struct Spares<T> {
    lists: Vec<Vec<T>>,
    max_lists: usize,
    max_items: usize,
}

impl<T> Spares<T> {
    /// A free list of up to `max_lists` lists of up to `max_items` capacity each.
    pub fn new(max_lists: usize, max_items: usize) -> Self {
        Spares {
            lists: Vec::with_capacity(max_lists),
            max_lists,
            max_items,
        }
    }

    /// An empty list: a kept one if there is any, else a new one with no room.
    pub fn take(&mut self) -> Vec<T> {
        self.lists.pop().unwrap_or_default()
    }

    /// Keeps `list` (emptied here, on the caller's thread) for reuse, unless the free
    /// list is full, it has no room worth keeping, or more than `max_items`.
    pub fn give(&mut self, mut list: Vec<T>) {
        let cap = list.capacity();
        if cap == 0 || cap > self.max_items || self.lists.len() >= self.max_lists {
            return;
        }
        list.clear();
        self.lists.push(list);
    }

    /// Lists kept now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lists.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn conn(slot: u32) -> ConnId {
        ConnId {
            reactor: 1,
            slot,
            generation: 1,
        }
    }

    #[test]
    fn a_parked_effect_is_a_quarter_of_an_effect() {
        assert!(
            std::mem::size_of::<ParkedEffect>() <= 64,
            "{} bytes",
            std::mem::size_of::<ParkedEffect>()
        );
    }

    #[test]
    fn effects_come_back_as_they_were_parked() {
        let frame = Bytes::from_static(b"frame");
        let parked: Vec<ParkedEffect> = vec![
            Effect::Reactor(Command::Send {
                conn: conn(1),
                frame: frame.clone(),
            })
            .into(),
            Effect::Broadcast(vec![conn(2), conn(3)], frame.clone()).into(),
            Effect::Reactor(Command::Established { conn: conn(4) }).into(),
        ];
        assert!(matches!(parked[2], ParkedEffect::Other(_)));
        let back: Vec<Effect> = parked.into_iter().map(Effect::from).collect();
        assert!(matches!(
            &back[0],
            Effect::Reactor(Command::Send { conn: c, frame: f }) if *c == conn(1) && *f == frame
        ));
        assert!(matches!(
            &back[1],
            Effect::Broadcast(cs, f) if cs[..] == [conn(2), conn(3)] && *f == frame
        ));
        assert!(matches!(
            &back[2],
            Effect::Reactor(Command::Established { conn: c }) if *c == conn(4)
        ));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Take,
        /// Give back a list with this many items pushed.
        Give(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![Just(Op::Take), (0usize..40).prop_map(Op::Give)]
    }

    proptest! {
        /// Against a model (the capacities kept, a stack): never more than
        /// `max_lists` lists nor one over `max_items`; every list taken is empty; a
        /// kept list comes back with its room.
        #[test]
        fn spares_match_a_model(
            ops in proptest::collection::vec(op(), 0..64),
            max_lists in 0usize..4,
            max_items in 0usize..32,
        ) {
            let mut spares = Spares::<u64>::new(max_lists, max_items);
            let mut model: Vec<usize> = Vec::new();
            for op in ops {
                match op {
                    Op::Take => {
                        let list = spares.take();
                        prop_assert!(list.is_empty());
                        match model.pop() {
                            Some(cap) => prop_assert_eq!(list.capacity(), cap),
                            None => prop_assert_eq!(list.capacity(), 0),
                        }
                    }
                    Op::Give(n) => {
                        let list: Vec<u64> = (0..n as u64).collect();
                        let cap = list.capacity();
                        if cap > 0 && cap <= max_items && model.len() < max_lists {
                            model.push(cap);
                        }
                        spares.give(list);
                    }
                }
                prop_assert_eq!(spares.len(), model.len());
                prop_assert!(spares.len() <= max_lists);
            }
        }
    }
}
