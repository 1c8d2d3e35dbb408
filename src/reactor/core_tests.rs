//! The core's write path against a scripted backend: what goes out, when, and in
//! what pieces, for a synchronous (epoll-like) and a batching (io_uring-like)
//! driver. Real loopback sockets stand in for connections; nothing is read from
//! them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use mio::Token;
use mio::net::TcpStream;

use super::{Core, Settings};
use crate::handoff::WorkerQueue;
use crate::ops::limits::{AcceptBucket, ConnLimits};
use crate::reactor::conn::{ListenerKind, Phase};
use crate::reactor::sys::{Driver, Sent};

/// A backend that records what the core asks of it.
#[derive(Default)]
struct Script {
    /// Batch sends (io_uring-like) instead of writing at once.
    batching: bool,
    /// Synchronous mode: bytes the "kernel" takes per write before refusing.
    room: usize,
    /// Every send offered: the bytes of the head entries it covered.
    sends: Vec<Vec<u8>>,
    /// Direct writes made.
    writes: Vec<Vec<u8>>,
    writable: Vec<bool>,
}

impl Driver for Script {
    fn register(&mut self, _: &mut TcpStream, _: Token) -> io::Result<()> {
        Ok(())
    }
    fn set_writable(&mut self, _: &mut TcpStream, _: Token, on: bool) -> io::Result<()> {
        self.writable.push(on);
        Ok(())
    }
    fn write_now(&mut self, _: &TcpStream, data: &[u8]) -> Option<Sent> {
        if self.batching {
            return None;
        }
        let n = data.len().min(self.room);
        self.room -= n;
        self.writes.push(data[..n].to_vec());
        Some(if n == 0 {
            Sent::Blocked
        } else {
            Sent::Wrote(n)
        })
    }
    fn send(&mut self, _: &TcpStream, _: Token, queue: &VecDeque<Bytes>) -> Sent {
        let head: Vec<u8> = queue.iter().take(8).flat_map(|b| b.to_vec()).collect();
        let entries = queue.len().min(8);
        if self.batching {
            self.sends.push(head);
            return Sent::Submitted(entries as u8);
        }
        let n = head.len().min(self.room);
        self.room -= n;
        self.sends.push(head[..n].to_vec());
        if n == 0 {
            Sent::Blocked
        } else {
            Sent::Wrote(n)
        }
    }
    fn deregister(&mut self, _: &mut TcpStream, _: Token) {}
    fn stop_accepting(&mut self) {}
}

fn settings(max_pending_bytes: u32) -> Settings {
    Settings {
        max_frame_bytes: 1 << 20,
        max_pending_bytes,
        max_pending_total: u64::MAX,
        stall_ms: 10_000,
        handshake_ms: 10_000,
        idle_ms: 10_000,
        linger_ms: 1_000,
        read_budget_bytes: 1 << 20,
        command_batch: 64,
        reserve_slots: 16,
    }
}

/// A core with one raw echo connection; returns it with the connection's token and
/// the peer socket (kept open so the connection stays valid).
fn core_with_echo(drv: &mut Script, max_pending: u32) -> (Core, Token, std::net::TcpStream) {
    let limits = crate::config::Limits::default();
    let (tx, _rx) = crossbeam_channel::bounded(16);
    // Leak the receiver so the worker queue stays connected for the test's life.
    std::mem::forget(_rx);
    let workers: Arc<[WorkerQueue]> = vec![WorkerQueue::new(tx, 1 << 20)].into();
    let (_cmd_tx, cmd_rx) = crossbeam_channel::bounded(16);
    std::mem::forget(_cmd_tx);
    let mut core = Core::new(
        0,
        settings(max_pending),
        cmd_rx,
        workers,
        Arc::default(),
        (
            Arc::new(ConnLimits::new(&limits)),
            AcceptBucket::new(&limits, 1),
        ),
        Arc::new(crate::ledger::Ledger::new(1, 1024)),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, peer) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    core.accept(drv, ListenerKind::Echo, TcpStream::from_std(server), peer);
    let t = core.token_at(0).expect("accepted");
    (core, t, client)
}

#[test]
fn a_synchronous_backend_writes_at_once_and_queues_only_the_refusal() {
    let mut drv = Script {
        room: 5,
        ..Script::default()
    };
    let (mut core, t, _peer) = core_with_echo(&mut drv, 1 << 20);
    core.on_data(&mut drv, t, b"abc");
    assert_eq!(
        drv.writes,
        [b"abc".to_vec()],
        "written before the turn ends"
    );
    core.on_data(&mut drv, t, b"defg");
    assert_eq!(
        drv.writes.last().unwrap(),
        b"de",
        "the kernel took two bytes"
    );
    assert_eq!(drv.writable, [true], "writability awaited for the rest");
    core.on_data(&mut drv, t, b"h");
    assert_eq!(drv.writes.len(), 2, "queued behind the refused bytes");
    core.flush_dirty(&mut drv);
    assert!(
        drv.sends.is_empty(),
        "nothing is flushed before writability"
    );
    drv.room = 100;
    core.on_writable(&mut drv, t);
    assert_eq!(drv.sends, [b"fgh".to_vec()], "rest in order, one writev");
    assert_eq!(drv.writable, [true, false]);
    let c = core.conns.get(0).unwrap();
    assert!(c.outq.is_empty() && c.pending == 0);
}

#[test]
fn a_batching_backend_gets_one_send_per_connection_per_turn() {
    let mut drv = Script {
        batching: true,
        ..Script::default()
    };
    let (mut core, t, _peer) = core_with_echo(&mut drv, 1 << 20);
    core.on_data(&mut drv, t, b"ab");
    core.on_data(&mut drv, t, b"cd");
    assert!(drv.sends.is_empty(), "nothing before the turn ends");
    core.flush_dirty(&mut drv);
    assert_eq!(drv.sends, [b"abcd".to_vec()]);
    // More output while the send is in flight waits for its completion.
    core.on_data(&mut drv, t, b"ef");
    core.flush_dirty(&mut drv);
    assert_eq!(drv.sends.len(), 1);
    // A short send: the unsent tail goes again, followed by the newer bytes.
    core.on_sent(&mut drv, t, 3);
    assert_eq!(drv.sends.last().unwrap(), b"def");
    core.on_sent(&mut drv, t, 3);
    let c = core.conns.get(0).unwrap();
    assert!(c.outq.is_empty() && c.pending == 0 && c.sending == 0);
    assert_eq!(drv.sends.len(), 2);
}

#[test]
fn a_failed_send_releases_and_a_stale_completion_is_ignored() {
    let mut drv = Script {
        batching: true,
        ..Script::default()
    };
    let (mut core, t, _peer) = core_with_echo(&mut drv, 1 << 20);
    core.on_sent(&mut drv, t, 5);
    assert!(core.conns.get(0).is_some(), "no send in flight: ignored");
    core.on_data(&mut drv, t, b"xy");
    core.flush_dirty(&mut drv);
    core.on_sent(&mut drv, t, -libc::ECONNRESET);
    assert!(core.conns.get(0).is_none(), "released");
    core.on_sent(&mut drv, t, 2);
}

#[test]
fn reading_pauses_at_half_the_bound_before_the_send_and_a_cut_keeps_the_send_in_flight() {
    let mut drv = Script {
        batching: true,
        ..Script::default()
    };
    let (mut core, t, _peer) = core_with_echo(&mut drv, 100);
    core.on_data(&mut drv, t, &[1; 40]);
    assert!(core.readable_stream(t).is_some());
    core.on_data(&mut drv, t, &[2; 20]);
    assert!(
        core.readable_stream(t).is_none(),
        "60 of 100 queued: reading paused before any send"
    );
    core.flush_dirty(&mut drv);
    assert_eq!(drv.sends.len(), 1);
    // The kernel holds the send; more output passes the bound: cut, but the two
    // entries the kernel may be reading stay queued until it reports.
    core.send(&mut drv, 0, Bytes::from_static(&[3; 50]));
    let c = core.conns.get(0).unwrap();
    assert_eq!(c.phase, Phase::Closing);
    assert_eq!((c.outq.len(), c.pending, c.sending), (2, 60, 2));
    core.on_sent(&mut drv, t, 60);
    let c = core.conns.get(0).unwrap();
    assert!(c.outq.is_empty() && c.write_shut, "flushed, then FIN");
}
