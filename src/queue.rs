//! Bounded queues whose memory follows their use.
//!
//! `crossbeam_channel::bounded(n)` allocates and writes every one of its `n` slots
//! when it is made, so a deep queue is resident memory from the first second: the
//! daemon's three deep queues (the journal's, each reactor's commands, each worker's
//! events, 16,384 each by default) were ~4 MB of an idle daemon's ~5.6 MB of heap.
//! These queues keep crossbeam's unbounded list (blocks of 31 slots, allocated as
//! messages arrive and freed as they leave) and count messages against the bound
//! themselves: a sender that would pass it gets `Full`, or waits for room.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use crossbeam_channel::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

/// A queue holding at most `cap` messages (`cap` ≥ 1).
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let gate = Arc::new(Gate {
        cap: cap.max(1),
        len: AtomicUsize::new(0),
        waiting: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        lock: Mutex::new(()),
        room: Condvar::new(),
    });
    (
        Sender {
            tx,
            gate: gate.clone(),
        },
        Receiver { rx, gate },
    )
}

/// The count of queued messages and the senders waiting for room.
#[derive(Debug)]
struct Gate {
    cap: usize,
    /// Messages admitted and not yet received (may briefly read one above `cap`
    /// while a refused sender backs out).
    len: AtomicUsize,
    /// Senders between deciding to wait and being woken.
    waiting: AtomicUsize,
    /// The receiver is gone.
    closed: AtomicBool,
    lock: Mutex<()>,
    room: Condvar,
}

impl Gate {
    fn release(&self) {
        self.len.fetch_sub(1, SeqCst);
        // A waiter registers under the lock before it re-reads `len`; taking the
        // lock here means it is either already waiting or will see the room.
        if self.waiting.load(SeqCst) > 0 {
            let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.room.notify_all();
        }
    }

    fn close(&self) {
        self.closed.store(true, SeqCst);
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.room.notify_all();
    }
}

/// The sending side; cheap to clone.
#[derive(Debug)]
pub struct Sender<T> {
    tx: crossbeam_channel::Sender<T>,
    gate: Arc<Gate>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<T> Sender<T> {
    /// Queues `msg` if there is room, without waiting.
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        if self.gate.closed.load(SeqCst) {
            return Err(TrySendError::Disconnected(msg));
        }
        if self.gate.len.fetch_add(1, SeqCst) >= self.gate.cap {
            self.gate.len.fetch_sub(1, SeqCst);
            return Err(TrySendError::Full(msg));
        }
        self.tx.send(msg).map_err(|SendError(msg)| {
            self.gate.len.fetch_sub(1, SeqCst);
            TrySendError::Disconnected(msg)
        })
    }

    /// Queues `msg`, waiting for room as long as it takes.
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.send_until(msg, None)
            .map_err(|e| SendError(e.into_inner()))
    }

    /// Queues `msg`, waiting up to `timeout` for room.
    pub fn send_timeout(&self, msg: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_until(msg, Instant::now().checked_add(timeout))
    }

    fn send_until(&self, mut msg: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        loop {
            match self.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(m)) => {
                    return Err(SendTimeoutError::Disconnected(m));
                }
                Err(TrySendError::Full(m)) => msg = m,
            }
            let gate = &*self.gate;
            let held = gate.lock.lock().unwrap_or_else(|e| e.into_inner());
            gate.waiting.fetch_add(1, SeqCst);
            let full = gate.len.load(SeqCst) >= gate.cap && !gate.closed.load(SeqCst);
            let timed_out = if !full {
                false
            } else if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                let (_held, result) = gate
                    .room
                    .wait_timeout(held, left)
                    .unwrap_or_else(|e| e.into_inner());
                result.timed_out()
            } else {
                drop(gate.room.wait(held).unwrap_or_else(|e| e.into_inner()));
                false
            };
            gate.waiting.fetch_sub(1, SeqCst);
            if timed_out {
                // One last try: room may have come with the deadline.
                return self.try_send(msg).map_err(|e| match e {
                    TrySendError::Full(m) => SendTimeoutError::Timeout(m),
                    TrySendError::Disconnected(m) => SendTimeoutError::Disconnected(m),
                });
            }
        }
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.gate.len.load(SeqCst).min(self.gate.cap)
    }

    /// Whether no message is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.gate.cap
    }
}

/// The receiving side (one owner: not `Clone`).
#[derive(Debug)]
pub struct Receiver<T> {
    rx: crossbeam_channel::Receiver<T>,
    gate: Arc<Gate>,
}

impl<T> Receiver<T> {
    /// Takes a message if one is queued.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv().inspect(|_| self.gate.release())
    }

    /// Takes a message, waiting for one.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.rx.recv().inspect(|_| self.gate.release())
    }

    /// Takes a message, waiting up to `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.rx
            .recv_timeout(timeout)
            .inspect(|_| self.gate.release())
    }

    /// Takes every message queued now, without waiting.
    pub fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }

    /// The underlying channel, for `crossbeam_channel::select!`. What a `recv` of it
    /// returns must be passed through [`Receiver::counted`], which frees its place.
    pub fn selectable(&self) -> &crossbeam_channel::Receiver<T> {
        &self.rx
    }

    /// Frees the place of a message taken through [`Receiver::selectable`].
    pub fn counted(&self, taken: Result<T, RecvError>) -> Result<T, RecvError> {
        taken.inspect(|_| self.gate.release())
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.gate.len.load(SeqCst).min(self.gate.cap)
    }

    /// Whether no message is queued now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Senders waiting for room would otherwise wait for a receiver that is gone.
        self.gate.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn refuses_past_the_bound_and_takes_again_after_a_receive() {
        let (tx, rx) = bounded(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(tx.len(), 2);
        assert_eq!(rx.try_recv(), Ok(1));
        tx.try_send(3).unwrap();
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Ok(3));
        assert!(rx.is_empty());
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn a_send_into_a_full_queue_times_out_and_keeps_the_message() {
        let (tx, _rx) = bounded(1);
        tx.try_send("a").unwrap();
        assert_eq!(
            tx.send_timeout("b", Duration::from_millis(1)),
            Err(SendTimeoutError::Timeout("b"))
        );
    }

    #[test]
    fn a_waiting_sender_is_let_in_by_a_receive() {
        let (tx, rx) = bounded(1);
        tx.send(0).unwrap();
        let sender = thread::spawn(move || {
            for i in 1..1000 {
                tx.send(i).unwrap();
            }
        });
        // Every message arrives, in order, through a queue of one.
        for want in 0..1000 {
            assert_eq!(rx.recv(), Ok(want));
        }
        sender.join().unwrap();
    }

    #[test]
    fn a_waiting_sender_learns_the_receiver_is_gone() {
        let (tx, rx) = bounded(1);
        tx.send(0).unwrap();
        let sender = thread::spawn(move || tx.send(1));
        // Whenever the receiver goes, before or after the sender waits, the send ends.
        drop(rx);
        assert!(sender.join().unwrap().is_err());
    }

    #[test]
    fn receives_through_select_free_their_place() {
        let (tx, rx) = bounded(1);
        tx.try_send(7).unwrap();
        let got = crossbeam_channel::select! {
            recv(rx.selectable()) -> m => rx.counted(m),
        };
        assert_eq!(got, Ok(7));
        tx.try_send(8).unwrap();
        assert!(matches!(tx.try_send(9), Err(TrySendError::Full(9))));
    }

    #[test]
    fn many_senders_never_hold_more_than_the_bound() {
        let (tx, rx) = bounded(8);
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let tx = tx.clone();
                thread::spawn(move || {
                    let mut refused = 0;
                    for i in 0..2_000u32 {
                        if tx.try_send(i).is_err() {
                            refused += 1;
                        }
                    }
                    refused
                })
            })
            .collect();
        let mut got = 0;
        let refused: u32 = senders.into_iter().map(|s| s.join().unwrap()).sum();
        while rx.try_recv().is_ok() {
            got += 1;
        }
        // With nobody receiving, exactly the bound got in, whatever raced.
        assert_eq!((got, refused), (8, 7_992));
        assert!(rx.is_empty());
    }
}
