//! Sans-IO bookkeeping of the requests the io_uring backend has in flight per
//! connection, in one byte per core slot (so an idle connection costs the backend one
//! byte, not a record).
//!
//! Every request's `user_data` names its kind, the core slot and the low 24 bits of
//! the connection's generation. A completion whose generation no longer matches the
//! slot's live connection is stale (the connection was closed, its requests
//! cancelled): it only returns its buffer. So nothing needs to outlive a connection,
//! and a late completion can never be taken for the next connection in that slot.
//!
//! Invariants for a live connection (checked by the property test below):
//! - at most one recv and one poll are in flight;
//! - the state byte says exactly which are in flight;
//! - nothing is armed once input ended (EOF) or after deregistering.

use mio::Token;
use rustc_hash::FxHashMap;

use crate::reactor::conn::untoken;

/// What a request in flight is for; the top byte of its `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Multishot accept on listener `slot`.
    Accept = 1,
    /// Multishot recv.
    Recv = 2,
    /// One-shot POLLOUT.
    PollOut = 3,
    /// Read of the cross-thread wake eventfd.
    Wake = 4,
    /// An `ASYNC_CANCEL` request.
    Cancel = 5,
    /// A `SEND`/`SENDMSG` of queued output.
    Send = 6,
}

const KIND_SHIFT: u32 = 56;
const GEN_MASK: u32 = 0x00ff_ffff;

/// Packs a request's `user_data`.
pub(super) fn user_data(kind: Kind, slot: u32, generation: u32) -> u64 {
    ((kind as u64) << KIND_SHIFT) | (u64::from(generation & GEN_MASK) << 32) | u64::from(slot)
}

/// The `user_data` of a connection request.
pub(super) fn conn_data(kind: Kind, t: Token) -> u64 {
    let (slot, generation) = untoken(t);
    user_data(kind, slot as u32, generation)
}

/// A decoded `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tag {
    /// The request kind.
    pub kind: Kind,
    /// Core slot (or listener index).
    pub slot: u32,
    /// Low 24 bits of the generation.
    pub generation: u32,
}

impl Tag {
    /// Whether this request belongs to the connection now holding token `t`.
    pub fn matches(&self, t: Token) -> bool {
        let (slot, generation) = untoken(t);
        slot == self.slot as usize && generation & GEN_MASK == self.generation
    }
}

/// Unpacks a `user_data`; `None` for values we never issued.
pub(super) fn decode(ud: u64) -> Option<Tag> {
    let kind = match ud >> KIND_SHIFT {
        1 => Kind::Accept,
        2 => Kind::Recv,
        3 => Kind::PollOut,
        4 => Kind::Wake,
        5 => Kind::Cancel,
        6 => Kind::Send,
        _ => return None,
    };
    Some(Tag {
        kind,
        slot: (ud & 0xffff_ffff) as u32,
        generation: ((ud >> 32) as u32) & GEN_MASK,
    })
}

/// The per-connection request kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// The multishot recv.
    Recv,
    /// The POLLOUT poll.
    PollOut,
}

/// A request to submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sqe {
    /// Arm a multishot recv (provided buffers) for connection `t`.
    Recv(Token),
    /// Arm a one-shot POLLOUT for connection `t`.
    PollOut(Token),
    /// Cancel the request with this `user_data`.
    Cancel(u64),
}

// State bits. Zero is the state right after `register`: recv armed, nothing else.
/// No recv in flight.
const RECV_IDLE: u8 = 1;
/// A cancel for the recv in flight was submitted.
const RECV_CANCEL: u8 = 2;
/// A POLLOUT poll is in flight.
const POLL_ARMED: u8 = 4;
/// The peer's FIN arrived while input was parked: never re-arm.
const EOF: u8 = 8;
/// The core wants to hear about writability (it has output queued).
const WANT_WRITE: u8 = 16;
/// The socket is in the ring's registered file table at the slot's index
/// (`files.rs`): requests name the index, not the descriptor.
const FIXED: u8 = 32;
/// Bytes are parked for the connection (`Table::parked` has its entry): a bit, so
/// the check on every receive is not a map lookup.
const PARKED: u8 = 64;

/// The backend's view of every core slot.
#[derive(Debug, Default)]
pub(super) struct Table {
    /// One state byte per core slot (the live connection's).
    states: Vec<u8>,
    /// Input that arrived while the core had paused reading, by slot. The recv is
    /// cancelled on the first such completion, so this holds at most what the
    /// kernel had already received (about one socket receive buffer), and only for
    /// paused connections.
    parked: FxHashMap<u32, Vec<u8>>,
}

/// The core slot of token `t`.
pub(super) fn slot_of(t: Token) -> usize {
    untoken(t).0
}

impl Table {
    fn state(&mut self, t: Token) -> Option<&mut u8> {
        self.states.get_mut(slot_of(t))
    }

    /// A new connection: its recv is armed. `fixed`: its socket is in the
    /// registered file table.
    pub fn register(&mut self, t: Token, fixed: bool) -> Sqe {
        let slot = slot_of(t);
        if self.states.len() <= slot {
            self.states.resize(slot + 1, RECV_IDLE);
        }
        if let Some(s) = self.states.get_mut(slot) {
            *s = if fixed { FIXED } else { 0 };
        }
        self.parked.remove(&(slot as u32));
        Sqe::Recv(t)
    }

    /// The connection is about to be closed: cancels what is in flight. Later
    /// completions of these requests are stale (the slot's generation moves on).
    pub fn deregister(&mut self, t: Token) -> [Option<Sqe>; 2] {
        self.parked.remove(&(slot_of(t) as u32));
        let Some(s) = self.state(t) else {
            return [None, None];
        };
        let recv =
            (*s & (RECV_IDLE | RECV_CANCEL) == 0).then(|| Sqe::Cancel(conn_data(Kind::Recv, t)));
        let poll = (*s & POLL_ARMED != 0).then(|| Sqe::Cancel(conn_data(Kind::PollOut, t)));
        *s = RECV_IDLE;
        [recv, poll]
    }

    /// Turns writability interest on (arming a poll unless one is in flight) or
    /// off (a poll in flight stays; its completion finds nothing to do).
    pub fn set_writable(&mut self, t: Token, on: bool) -> Option<Sqe> {
        let s = self.state(t)?;
        if on {
            *s |= WANT_WRITE;
            self.arm(t, Op::PollOut)
        } else {
            *s &= !WANT_WRITE;
            None
        }
    }

    /// Whether the live connection's socket is in the registered file table (false
    /// after deregistering).
    pub fn fixed(&self, t: Token) -> bool {
        self.states.get(slot_of(t)).is_some_and(|s| s & FIXED != 0)
    }

    /// Whether the core wants to hear about writability.
    pub fn wants_write(&self, t: Token) -> bool {
        self.states
            .get(slot_of(t))
            .is_some_and(|s| s & WANT_WRITE != 0)
    }

    /// Arms `op` unless it is in flight (or, for recv, input ended; for a poll,
    /// unless writability is wanted).
    pub fn arm(&mut self, t: Token, op: Op) -> Option<Sqe> {
        let s = self.state(t)?;
        match op {
            Op::Recv if *s & RECV_IDLE != 0 && *s & EOF == 0 => {
                *s &= !(RECV_IDLE | RECV_CANCEL);
                Some(Sqe::Recv(t))
            }
            Op::PollOut if *s & POLL_ARMED == 0 && *s & WANT_WRITE != 0 => {
                *s |= POLL_ARMED;
                Some(Sqe::PollOut(t))
            }
            _ => None,
        }
    }

    /// Reading paused: cancels the recv in flight (once).
    pub fn cancel_recv(&mut self, t: Token) -> Option<Sqe> {
        let s = self.state(t)?;
        if *s & (RECV_IDLE | RECV_CANCEL) != 0 {
            return None;
        }
        *s |= RECV_CANCEL;
        Some(Sqe::Cancel(conn_data(Kind::Recv, t)))
    }

    /// A live connection's request posted its final completion (no `F_MORE`).
    pub fn finished(&mut self, t: Token, op: Op) {
        if let Some(s) = self.state(t) {
            match op {
                Op::Recv => *s = (*s | RECV_IDLE) & !RECV_CANCEL,
                Op::PollOut => *s &= !POLL_ARMED,
            }
        }
    }

    /// Whether a recv is in flight.
    #[cfg(test)]
    pub fn recv_in_flight(&self, t: Token) -> bool {
        self.states
            .get(slot_of(t))
            .is_some_and(|s| s & RECV_IDLE == 0)
    }

    /// Records that input ended while bytes were parked.
    pub fn set_eof(&mut self, t: Token) {
        if let Some(s) = self.state(t) {
            *s |= EOF;
        }
    }

    /// Whether input ended while bytes were parked.
    pub fn eof(&self, t: Token) -> bool {
        self.states.get(slot_of(t)).is_some_and(|s| s & EOF != 0)
    }

    /// Whether bytes are parked for the connection.
    pub fn has_parked(&self, t: Token) -> bool {
        self.states.get(slot_of(t)).is_some_and(|s| s & PARKED != 0)
    }

    /// Parks bytes that arrived while reading was paused.
    pub fn park(&mut self, t: Token, data: &[u8]) {
        let Some(s) = self.state(t) else {
            return;
        };
        *s |= PARKED;
        self.parked
            .entry(slot_of(t) as u32)
            .or_default()
            .extend_from_slice(data);
    }

    /// Takes the parked bytes.
    pub fn take_parked(&mut self, t: Token) -> Vec<u8> {
        if let Some(s) = self.state(t) {
            *s &= !PARKED;
        }
        self.parked.remove(&(slot_of(t) as u32)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::reactor::conn::token;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn user_data_round_trips() {
        for kind in [
            Kind::Accept,
            Kind::Recv,
            Kind::PollOut,
            Kind::Wake,
            Kind::Cancel,
            Kind::Send,
        ] {
            let t = decode(user_data(kind, 77, 0x1234_5678)).unwrap();
            assert_eq!((t.kind, t.slot, t.generation), (kind, 77, 0x34_5678));
            assert!(t.matches(token(77, 0x1234_5678)));
            assert!(!t.matches(token(77, 0x1234_5679)));
            assert!(!t.matches(token(78, 0x1234_5678)));
        }
        assert_eq!(decode(0), None);
        assert_eq!(decode(9 << 56), None);
    }

    #[test]
    fn deregister_cancels_what_is_in_flight() {
        let mut tb = Table::default();
        let t = token(3, 1);
        assert_eq!(tb.register(t, false), Sqe::Recv(t));
        assert_eq!(tb.set_writable(t, true), Some(Sqe::PollOut(t)));
        assert_eq!(tb.set_writable(t, true), None, "one poll at a time");
        let c = tb.deregister(t);
        assert_eq!(
            c,
            [
                Some(Sqe::Cancel(conn_data(Kind::Recv, t))),
                Some(Sqe::Cancel(conn_data(Kind::PollOut, t)))
            ]
        );
        // The next connection in the slot starts clean.
        let t2 = token(3, 2);
        assert_eq!(tb.register(t2, false), Sqe::Recv(t2));
        assert!(tb.recv_in_flight(t2));
        assert!(!tb.wants_write(t2));
        assert_eq!(tb.set_writable(t2, true), Some(Sqe::PollOut(t2)));
    }

    #[test]
    fn paused_recv_is_cancelled_once_and_rearmed_after_its_final_completion() {
        let mut tb = Table::default();
        let t = token(0, 1);
        tb.register(t, false);
        assert!(matches!(tb.cancel_recv(t), Some(Sqe::Cancel(_))));
        assert_eq!(tb.cancel_recv(t), None, "one cancel per request");
        assert_eq!(tb.arm(t, Op::Recv), None, "still in flight");
        tb.finished(t, Op::Recv);
        assert_eq!(tb.arm(t, Op::Recv), Some(Sqe::Recv(t)));
        assert_eq!(
            tb.deregister(t)[0],
            Some(Sqe::Cancel(conn_data(Kind::Recv, t)))
        );
    }

    #[test]
    fn eof_stops_rearming_and_parked_bytes_keep_order() {
        let mut tb = Table::default();
        let t = token(0, 1);
        tb.register(t, false);
        tb.park(t, b"ab");
        tb.park(t, b"cd");
        tb.finished(t, Op::Recv);
        tb.set_eof(t);
        assert_eq!(tb.arm(t, Op::Recv), None);
        assert_eq!(tb.take_parked(t), b"abcd");
        assert!(!tb.has_parked(t));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Open(u8, bool),
        Close(u8),
        Writable(u8, bool),
        Pause(u8),
        Rearm(u8),
        /// Park a byte (true) or take what is parked (false).
        Park(u8, bool),
        /// Complete the n-th request in flight; `final` = no MORE flag.
        Complete(u8, bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..4, any::<bool>()).prop_map(|(s, f)| Step::Open(s, f)),
            (0u8..4).prop_map(Step::Close),
            (0u8..4, any::<bool>()).prop_map(|(s, on)| Step::Writable(s, on)),
            (0u8..4).prop_map(Step::Pause),
            (0u8..4).prop_map(Step::Rearm),
            (0u8..4, any::<bool>()).prop_map(|(s, p)| Step::Park(s, p)),
            (any::<u8>(), any::<bool>()).prop_map(|(n, f)| Step::Complete(n, f)),
        ]
    }

    proptest! {
        /// Drives the table as the backend does, against a model kernel that holds
        /// every submitted request until a completion is chosen for it, and a model
        /// core that reuses slots with new generations.
        #[test]
        fn live_state_matches_the_kernel(steps in proptest::collection::vec(step(), 1..300)) {
            let mut tb = Table::default();
            // user_data → multishot, for requests the kernel holds.
            let mut kernel: HashMap<u64, bool> = HashMap::new();
            // Live connections: slot → token.
            let mut live: HashMap<u32, Token> = HashMap::new();
            // Live connections whose socket is in the file table.
            let mut fixed: HashMap<u32, bool> = HashMap::new();
            let mut next_gen = 0u32;
            let submit = |kernel: &mut HashMap<u64, bool>, sqe: Option<Sqe>| {
                match sqe {
                    Some(Sqe::Recv(t)) => {
                        prop_assert!(kernel.insert(conn_data(Kind::Recv, t), true).is_none(), "two recvs");
                    }
                    Some(Sqe::PollOut(t)) => {
                        prop_assert!(kernel.insert(conn_data(Kind::PollOut, t), false).is_none(), "two polls");
                    }
                    // A cancel's target may already be done (race); either way its
                    // final completion comes through `Complete`.
                    Some(Sqe::Cancel(_)) | None => {}
                }
                Ok(())
            };
            for s in steps {
                match s {
                    Step::Open(slot, in_table) => {
                        let slot = u32::from(slot);
                        if live.contains_key(&slot) { continue; }
                        next_gen += 1;
                        let t = token(slot as usize, next_gen);
                        let sqe = tb.register(t, in_table);
                        submit(&mut kernel, Some(sqe))?;
                        live.insert(slot, t);
                        fixed.insert(slot, in_table);
                    }
                    Step::Close(slot) => {
                        if let Some(t) = live.remove(&u32::from(slot)) {
                            for sqe in tb.deregister(t) { submit(&mut kernel, sqe)?; }
                            prop_assert!(!tb.fixed(t), "a closed connection names no table entry");
                        }
                    }
                    Step::Writable(slot, on) => {
                        if let Some(&t) = live.get(&u32::from(slot)) {
                            let sqe = tb.set_writable(t, on);
                            submit(&mut kernel, sqe)?;
                        }
                    }
                    Step::Pause(slot) => {
                        if let Some(&t) = live.get(&u32::from(slot)) {
                            let sqe = tb.cancel_recv(t);
                            submit(&mut kernel, sqe)?;
                        }
                    }
                    Step::Rearm(slot) => {
                        if let Some(&t) = live.get(&u32::from(slot)) {
                            let sqe = tb.arm(t, Op::Recv);
                            submit(&mut kernel, sqe)?;
                            let sqe = tb.arm(t, Op::PollOut);
                            submit(&mut kernel, sqe)?;
                        }
                    }
                    Step::Park(slot, park) => {
                        if let Some(&t) = live.get(&u32::from(slot)) {
                            if park {
                                tb.park(t, b"x");
                            } else {
                                tb.take_parked(t);
                            }
                        }
                    }
                    Step::Complete(n, fin) => {
                        if kernel.is_empty() { continue; }
                        let mut keys: Vec<u64> = kernel.keys().copied().collect();
                        keys.sort_unstable();
                        let ud = keys[usize::from(n) % keys.len()];
                        let fin = fin || !kernel[&ud];
                        let tag = decode(ud).unwrap();
                        if fin {
                            kernel.remove(&ud);
                            // The backend's rule: only a live connection's own
                            // completions touch the table.
                            if let Some(&t) = live.get(&tag.slot)
                                && tag.matches(t)
                            {
                                let op = if tag.kind == Kind::Recv { Op::Recv } else { Op::PollOut };
                                tb.finished(t, op);
                            }
                        }
                    }
                }
                for (slot, &t) in &live {
                    prop_assert_eq!(tb.has_parked(t), tb.parked.contains_key(slot), "the bit says what the map holds");
                    prop_assert_eq!(Some(tb.fixed(t)), fixed.get(slot).copied(), "the table entry lasts the connection's life");
                    prop_assert_eq!(tb.recv_in_flight(t), kernel.contains_key(&conn_data(Kind::Recv, t)));
                    let poll = tb.states[slot_of(t)] & POLL_ARMED != 0;
                    prop_assert_eq!(poll, kernel.contains_key(&conn_data(Kind::PollOut, t)));
                }
            }
        }
    }
}
