//! The core's write path against a scripted backend: what goes out, when, and in
//! what pieces, for a synchronous (epoll-like) and a batching (io_uring-like)
//! driver. Real loopback sockets stand in for connections; nothing is read from
//! them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mio::Token;
use mio::net::TcpStream;

use super::{Core, Links, Settings};
use crate::clock::{Clock, Mono};
use crate::handoff::{LiveLimits, WorkerQueue};
use crate::protocol::ErrorCode;
use crate::reactor::admission::{AcceptBucket, ConnLimits};
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
    /// Times the core asked for lent bytes to be copied out (short sends).
    unlent: usize,
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
    fn unlend(&mut self, queue: &mut VecDeque<Bytes>) {
        self.unlent += 1;
        for b in queue.iter_mut() {
            *b = Bytes::copy_from_slice(b);
        }
    }
    fn stop_accepting(&mut self) {}
}

/// The time of every call in tests where time plays no part.
const NOW: Mono = Mono::ZERO;

fn settings(max_pending_bytes: u32) -> Settings {
    Settings {
        live: limits(max_pending_bytes),
        read_budget_bytes: 1 << 20,
        command_batch: 64,
        reserve_slots: 16,
        web: super::WebSettings::from_config(&crate::config::Config::default()),
        tls: None,
        proxy: super::ProxyListeners::default(),
    }
}

/// The connection limits of [`settings`].
fn limits(max_pending_bytes: u32) -> LiveLimits {
    LiveLimits {
        max_frame_bytes: 1 << 20,
        max_pending_bytes,
        max_pending_total: u64::MAX,
        stall_ms: 10_000,
        handshake_ms: 10_000,
        idle_ms: 10_000,
        linger_ms: 1_000,
    }
}

/// [`settings`] with other connection limits.
fn with_limits(live: LiveLimits) -> Settings {
    Settings {
        live,
        ..settings(live.max_pending_bytes)
    }
}

/// A core under test, with what the tests drive it through.
struct Fixture {
    core: Core,
    /// Worker commands to the core.
    commands: crate::queue::Sender<crate::handoff::Command>,
    ledger: Arc<crate::ledger::Ledger>,
    listener: std::net::TcpListener,
    /// Peer sockets, kept open so the connections stay valid.
    peers: Vec<std::net::TcpStream>,
    /// The fake clock: what the backend would have read this turn.
    now: Mono,
}

impl Fixture {
    fn new(settings: Settings) -> Self {
        let (f, rx) = Self::with_worker_queue(settings, 16);
        // Leak the receiver so the worker queue stays connected for the test's life.
        std::mem::forget(rx);
        f
    }

    /// A fixture whose one worker queue holds `events`; returns its receiving end.
    fn with_worker_queue(
        settings: Settings,
        events: usize,
    ) -> (Self, crate::queue::Receiver<crate::handoff::Event>) {
        let limits = crate::config::Limits::default();
        let (tx, rx) = crate::queue::bounded(events);
        let workers: Arc<[WorkerQueue]> = vec![WorkerQueue::new(tx, 1 << 20)].into();
        let (commands, cmd_rx) = crate::queue::bounded(16);
        let ledger = Arc::new(crate::ledger::Ledger::new(1, 1024, Arc::default()));
        let links = Links {
            commands: cmd_rx,
            workers,
            stats: Arc::default(),
            limits: Arc::new(ConnLimits::new(&limits)),
            bucket: AcceptBucket::new(&limits, 1),
            ledger: ledger.clone(),
            console: None,
        };
        let core = Core::new(0, settings, links, Clock::new());
        let mut f = Self {
            core,
            commands,
            ledger,
            listener: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            peers: Vec::new(),
            now: Mono::from_ms(1_000),
        };
        // Whatever the machine running the tests is doing.
        f.core.kernel_pressure_probe = || false;
        (f, rx)
    }

    /// Accepts one connection of `kind`; returns its token.
    fn open(&mut self, drv: &mut Script, kind: ListenerKind) -> Token {
        let client = std::net::TcpStream::connect(self.listener.local_addr().unwrap()).unwrap();
        let (server, peer) = self.listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        self.peers.push(client);
        let before = self.core.conns.len();
        self.core
            .accept(drv, self.now, kind, TcpStream::from_std(server), peer);
        assert_eq!(self.core.conns.len(), before + 1, "accepted");
        let slot = self.core.conns.iter().map(|(s, _)| s).max().unwrap();
        self.core.token_at(slot).unwrap()
    }

    /// Lets `ms` milliseconds pass on the fake clock (and ends the loop turn).
    fn advance(&mut self, drv: &mut Script, ms: u64) {
        self.now = self.now.plus_ms(ms);
        self.core.end_turn(drv, self.now);
    }

    fn phase(&self, t: Token) -> Option<Phase> {
        self.core
            .slot_of(t)
            .and_then(|s| self.core.conns.get(s))
            .map(|c| c.phase)
    }
}

/// A core with one raw echo connection; returns it with the connection's token and
/// the peer socket (kept open so the connection stays valid).
fn core_with_echo(drv: &mut Script, max_pending: u32) -> (Core, Token, std::net::TcpStream) {
    let mut f = Fixture::new(settings(max_pending));
    let t = f.open(drv, ListenerKind::Echo);
    std::mem::forget(f.commands);
    (f.core, t, f.peers.pop().unwrap())
}

#[test]
fn a_synchronous_backend_writes_at_once_and_queues_only_the_refusal() {
    let mut drv = Script {
        room: 5,
        ..Script::default()
    };
    let (mut core, t, _peer) = core_with_echo(&mut drv, 1 << 20);
    core.on_data(&mut drv, NOW, t, b"abc");
    assert_eq!(
        drv.writes,
        [b"abc".to_vec()],
        "written before the turn ends"
    );
    core.on_data(&mut drv, NOW, t, b"defg");
    assert_eq!(
        drv.writes.last().unwrap(),
        b"de",
        "the kernel took two bytes"
    );
    assert_eq!(drv.writable, [true], "writability awaited for the rest");
    core.on_data(&mut drv, NOW, t, b"h");
    assert_eq!(drv.writes.len(), 2, "queued behind the refused bytes");
    core.flush_dirty(&mut drv, NOW);
    assert!(
        drv.sends.is_empty(),
        "nothing is flushed before writability"
    );
    drv.room = 100;
    core.on_writable(&mut drv, NOW, t);
    assert_eq!(drv.sends, [b"fgh".to_vec()], "rest in order, one writev");
    assert_eq!(drv.writable, [true, false]);
    let c = core.conns.get(0).unwrap();
    assert!(c.outq.is_empty() && c.pending == 0);
}

/// Protocol output waits for the end of the turn even on a synchronous backend: a
/// connection's frames of one turn leave in one `writev`.
#[test]
fn protocol_frames_of_one_turn_leave_in_one_write() {
    let mut drv = Script {
        room: 1 << 20,
        ..Script::default()
    };
    let mut f = Fixture::new(settings(1 << 20));
    let t = f.open(&mut drv, ListenerKind::Client);
    let slot = f.core.slot_of(t).unwrap();
    let (a, b) = (
        frame_of(crate::protocol::Kind::Ping, 1),
        frame_of(crate::protocol::Kind::Ping, 2),
    );
    f.core.send(&mut drv, slot, a.clone());
    f.core.send(&mut drv, slot, b.clone());
    assert!(
        drv.writes.is_empty() && drv.sends.is_empty(),
        "held for the turn"
    );
    f.core.flush_dirty(&mut drv, f.now);
    assert_eq!(drv.sends, [[a.to_vec(), b.to_vec()].concat()]);
    assert!(drv.writes.is_empty());
    let c = f.core.conns.get(slot).unwrap();
    assert!(c.outq.is_empty() && c.pending == 0);
}

#[test]
fn a_batching_backend_gets_one_send_per_connection_per_turn() {
    let mut drv = Script {
        batching: true,
        ..Script::default()
    };
    let (mut core, t, _peer) = core_with_echo(&mut drv, 1 << 20);
    core.on_data(&mut drv, NOW, t, b"ab");
    core.on_data(&mut drv, NOW, t, b"cd");
    assert!(drv.sends.is_empty(), "nothing before the turn ends");
    core.flush_dirty(&mut drv, NOW);
    assert_eq!(drv.sends, [b"abcd".to_vec()]);
    // More output while the send is in flight waits for its completion.
    core.on_data(&mut drv, NOW, t, b"ef");
    core.flush_dirty(&mut drv, NOW);
    assert_eq!(drv.sends.len(), 1);
    // A short send: the unsent tail goes again, followed by the newer bytes.
    core.on_sent(&mut drv, NOW, t, 3);
    assert_eq!(drv.sends.last().unwrap(), b"def");
    core.on_sent(&mut drv, NOW, t, 3);
    let c = core.conns.get(0).unwrap();
    assert!(c.outq.is_empty() && c.pending == 0 && c.sending == 0);
    assert_eq!(drv.sends.len(), 2);
}

/// Bytes a backend lends (io_uring's receive buffer), with a count of the lent
/// pieces still alive.
fn lent(data: &'static [u8], alive: &Arc<std::sync::atomic::AtomicUsize>) -> Bytes {
    struct Owner(&'static [u8], Arc<std::sync::atomic::AtomicUsize>);
    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            self.0
        }
    }
    impl Drop for Owner {
        fn drop(&mut self) {
            self.1.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    alive.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Bytes::from_owner(Owner(data, Arc::clone(alive)))
}

#[test]
fn an_echo_queues_lent_bytes_as_they_are_until_the_kernel_took_them_all() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let mut drv = Script {
        batching: true,
        ..Script::default()
    };
    let (mut core, t, _peer) = core_with_echo(&mut drv, 1 << 20);
    assert!(core.takes_lent(t));
    let alive = Arc::new(AtomicUsize::new(0));
    static AB: &[u8] = b"abcdef";
    core.on_data_lent(&mut drv, NOW, t, lent(AB, &alive));
    let c = core.conns.get(0).unwrap();
    assert_eq!(c.outq.front().unwrap().as_ptr(), AB.as_ptr(), "not copied");
    core.on_data_lent(&mut drv, NOW, t, lent(b"gh", &alive));
    core.flush_dirty(&mut drv, NOW);
    assert_eq!(drv.sends, [b"abcdefgh".to_vec()]);
    // A send the kernel took whole returns nothing to copy.
    core.on_sent(&mut drv, NOW, t, 8);
    assert_eq!(
        (alive.load(SeqCst), drv.unlent),
        (0, 0),
        "all sent: every lent piece dropped"
    );
    // A short send: the unsent rest is copied out of the backend's buffers (a slow
    // reader must not hold them) and sent next, in order.
    core.on_data_lent(&mut drv, NOW, t, lent(AB, &alive));
    core.on_data_lent(&mut drv, NOW, t, lent(b"gh", &alive));
    core.flush_dirty(&mut drv, NOW);
    core.on_sent(&mut drv, NOW, t, 4);
    assert_eq!((alive.load(SeqCst), drv.unlent), (0, 1));
    assert_eq!(drv.sends.last().unwrap(), b"efgh");
    // Refused outright (EAGAIN): the same.
    core.on_data_lent(&mut drv, NOW, t, lent(b"ij", &alive));
    core.on_sent(&mut drv, NOW, t, -libc::EAGAIN);
    assert_eq!((alive.load(SeqCst), drv.unlent), (0, 2));
    core.on_writable(&mut drv, NOW, t);
    assert_eq!(drv.sends.last().unwrap(), b"efghij");
    core.on_sent(&mut drv, NOW, t, 6);
    assert!(core.conns.get(0).unwrap().outq.is_empty());
    // Closing with lent bytes queued drops them with the queue.
    core.on_data_lent(&mut drv, NOW, t, lent(b"kl", &alive));
    assert_eq!(alive.load(SeqCst), 1);
    core.on_eof(&mut drv, t);
    assert!(core.conns.get(0).is_none());
    assert_eq!(alive.load(SeqCst), 0);
}

#[test]
fn only_open_echo_connections_take_lent_bytes() {
    let mut drv = Script::default();
    let mut f = Fixture::new(settings(1 << 20));
    let client = f.open(&mut drv, ListenerKind::Client);
    let ws = f.open(&mut drv, ListenerKind::WsEcho);
    let echo = f.open(&mut drv, ListenerKind::Echo);
    assert!(!f.core.takes_lent(client) && !f.core.takes_lent(ws));
    assert!(f.core.takes_lent(echo));
    let slot = f.core.slot_of(echo).unwrap();
    f.core
        .cut_slow_consumer(&mut drv, slot, super::Cut::MaxPending);
    assert!(!f.core.takes_lent(echo), "closing: input is discarded");
}

#[test]
fn a_failed_send_releases_and_a_stale_completion_is_ignored() {
    let mut drv = Script {
        batching: true,
        ..Script::default()
    };
    let (mut core, t, _peer) = core_with_echo(&mut drv, 1 << 20);
    core.on_sent(&mut drv, NOW, t, 5);
    assert!(core.conns.get(0).is_some(), "no send in flight: ignored");
    core.on_data(&mut drv, NOW, t, b"xy");
    core.flush_dirty(&mut drv, NOW);
    core.on_sent(&mut drv, NOW, t, -libc::ECONNRESET);
    assert!(core.conns.get(0).is_none(), "released");
    core.on_sent(&mut drv, NOW, t, 2);
}

#[test]
fn reading_pauses_at_half_the_bound_before_the_send_and_a_cut_keeps_the_send_in_flight() {
    let mut drv = Script {
        batching: true,
        ..Script::default()
    };
    let (mut core, t, _peer) = core_with_echo(&mut drv, 100);
    core.on_data(&mut drv, NOW, t, &[1; 40]);
    assert!(core.readable_stream(t).is_some());
    core.on_data(&mut drv, NOW, t, &[2; 20]);
    assert!(
        core.readable_stream(t).is_none(),
        "60 of 100 queued: reading paused before any send"
    );
    core.flush_dirty(&mut drv, NOW);
    assert_eq!(drv.sends.len(), 1);
    // The kernel holds the send; more output passes the bound: cut, but the two
    // entries the kernel may be reading stay queued until it reports.
    core.send(&mut drv, 0, Bytes::from_static(&[3; 50]));
    let c = core.conns.get(0).unwrap();
    assert_eq!(c.phase, Phase::Closing);
    assert_eq!((c.outq.len(), c.pending, c.sending), (2, 60, 2));
    core.on_sent(&mut drv, NOW, t, 60);
    let c = core.conns.get(0).unwrap();
    assert!(c.outq.is_empty() && c.write_shut, "flushed, then FIN");
}

#[test]
fn output_that_makes_no_progress_is_cut_after_the_stall_timeout() {
    let mut drv = Script::default();
    let mut f = Fixture::new(with_limits(LiveLimits {
        stall_ms: 5_000,
        idle_ms: 120_000,
        ..limits(1 << 20)
    }));
    let stuck = f.open(&mut drv, ListenerKind::Echo);
    let moving = f.open(&mut drv, ListenerKind::Echo);
    f.core.on_data(&mut drv, f.now, stuck, b"nobody reads this");
    f.core.on_data(&mut drv, f.now, moving, b"this is read");
    f.core.run_timers(&mut drv, f.now);
    f.advance(&mut drv, 4_000);
    f.core.run_timers(&mut drv, f.now);
    assert_eq!(f.phase(stuck), Some(Phase::Established), "not yet");
    // The other peer reads: progress, and then nothing left to stall.
    drv.room = 100;
    f.core.on_writable(&mut drv, f.now, moving);
    drv.room = 0;
    f.core.on_data(&mut drv, f.now, moving, b"more");
    f.advance(&mut drv, 2_000);
    f.core.run_timers(&mut drv, f.now);
    assert_eq!(f.phase(stuck), Some(Phase::Closing), "cut");
    assert_eq!(
        f.phase(moving),
        Some(Phase::Established),
        "it made progress"
    );
    assert_eq!(f.core.links.stats.cuts_for(crate::metrics::Cut::Stalled), 1);
}

#[test]
fn while_the_kernel_is_short_of_tcp_memory_stalled_output_gets_longer() {
    let mut drv = Script::default();
    let mut f = Fixture::new(with_limits(LiveLimits {
        stall_ms: 5_000,
        idle_ms: 120_000,
        ..limits(1 << 20)
    }));
    f.core.kernel_pressure_probe = || true;
    let t = f.open(&mut drv, ListenerKind::Echo);
    f.core.on_data(&mut drv, f.now, t, b"nobody reads this");
    f.core.run_timers(&mut drv, f.now);
    f.advance(&mut drv, 6_000);
    f.core.run_timers(&mut drv, f.now);
    assert_eq!(
        f.phase(t),
        Some(Phase::Established),
        "the kernel's fault, maybe"
    );
    assert_eq!(f.core.links.stats.kernel_tcp_pressure.get(), 1);
    f.advance(&mut drv, 25_000);
    f.core.run_timers(&mut drv, f.now);
    assert_eq!(f.phase(t), Some(Phase::Closing), "6 x 5 s: cut anyway");
    assert_eq!(f.core.links.stats.cuts_for(crate::metrics::Cut::Stalled), 1);
}

#[test]
fn the_largest_consumers_are_cut_first_when_the_total_passes_its_budget() {
    let mut drv = Script::default();
    let mut f = Fixture::new(with_limits(LiveLimits {
        max_pending_total: 450 << 10,
        ..limits(1 << 20)
    }));
    let sizes = [100usize << 10, 300 << 10, 200 << 10];
    let conns: Vec<Token> = sizes
        .iter()
        .map(|_| f.open(&mut drv, ListenerKind::Echo))
        .collect();
    for (t, n) in conns.iter().zip(sizes) {
        for chunk in vec![7u8; n].chunks(50 << 10) {
            f.core.on_data(&mut drv, f.now, *t, chunk);
        }
    }
    let phases: Vec<Option<Phase>> = conns.iter().map(|t| f.phase(*t)).collect();
    assert_eq!(
        phases,
        [
            Some(Phase::Established),
            Some(Phase::Closing),
            Some(Phase::Established)
        ],
        "600 KiB queued against 450: the 300 KiB one goes, and it is enough"
    );
    assert_eq!(f.core.links.stats.cuts_for(crate::metrics::Cut::Total), 1);
    assert_eq!(f.core.queued, 300 << 10);
    f.core.end_turn(&mut drv, f.now);
    assert_eq!(f.ledger.total(), 300 << 10);
}

#[test]
fn turns_that_each_grow_less_than_a_quantum_still_meet_the_budget() {
    let mut drv = Script::default();
    let mut f = Fixture::new(with_limits(LiveLimits {
        max_pending_total: 100 << 10,
        ..limits(1 << 20)
    }));
    let conns: Vec<Token> = (0..6)
        .map(|_| f.open(&mut drv, ListenerKind::Echo))
        .collect();
    // 30 KiB a turn: each turn's growth is published at its end, never by a quantum.
    for t in &conns {
        f.core.on_data(&mut drv, f.now, *t, &[7u8; 30 << 10]);
        f.core.end_turn(&mut drv, f.now);
        assert!(
            f.ledger.total() <= 100 << 10,
            "{} queued against 100 KiB",
            f.ledger.total()
        );
    }
    assert!(f.core.links.stats.cuts_for(crate::metrics::Cut::Total) >= 1);
}

/// The id producers use for the connection `t` of reactor 0.
fn conn_id(t: Token) -> crate::handoff::ConnId {
    let (slot, generation) = crate::reactor::conn::untoken(t);
    crate::handoff::ConnId {
        reactor: 0,
        slot: slot as u32,
        generation,
    }
}

#[test]
fn a_charged_reply_is_settled_as_the_kernel_takes_it() {
    let mut drv = Script::default();
    let mut f = Fixture::new(settings(1 << 20));
    let t = f.open(&mut drv, ListenerKind::Echo);
    let conn = conn_id(t);
    let slot = conn.slot as usize;
    assert!(
        f.ledger.charge(conn, 100),
        "the shard charges the page it built"
    );
    let frame = Bytes::from(vec![1u8; 100]);
    f.commands
        .send(crate::handoff::Command::SendCharged { conn, frame })
        .unwrap();
    f.core.run_commands(&mut drv, f.now);
    assert_eq!(
        f.ledger.owed(conn),
        Some(100),
        "now queued instead of charged"
    );
    drv.room = 60;
    f.core.on_writable(&mut drv, f.now, t);
    assert_eq!(f.ledger.owed(conn), Some(40));
    drv.room = 100;
    f.core.on_writable(&mut drv, f.now, t);
    assert_eq!(f.ledger.owed(conn), Some(0));
    // Closing: producers see it gone.
    f.core
        .close_with(&mut drv, slot, crate::handoff::CloseReason::Server, None);
    assert_eq!(f.ledger.owed(conn), None);
}

#[test]
fn a_charged_page_may_pass_the_bound_behind_an_event_queued_since() {
    let mut drv = Script::default();
    let mut f = Fixture::new(settings(64 << 10));
    let t = f.open(&mut drv, ListenerKind::Echo);
    let conn = conn_id(t);
    // The shard saw the connection owe nothing and charged a 100 KiB page; an event
    // went out first and the kernel took none of it.
    assert!(f.ledger.charge(conn, 100 << 10));
    drv.room = 0;
    let event = Bytes::from(vec![2u8; 1000]);
    f.commands
        .send(crate::handoff::Command::Send { conn, frame: event })
        .unwrap();
    f.core.run_commands(&mut drv, f.now);
    f.core.flush_dirty(&mut drv, f.now);
    let page = Bytes::from(vec![1u8; 100 << 10]);
    f.commands
        .send(crate::handoff::Command::SendCharged { conn, frame: page })
        .unwrap();
    f.core.run_commands(&mut drv, f.now);
    assert_eq!(f.phase(t), Some(Phase::Established), "not cut");
    assert_eq!(f.ledger.owed(conn), Some(1000 + (100 << 10)));
    // An uncharged frame past the bound is still cut.
    f.commands
        .send(crate::handoff::Command::Send {
            conn,
            frame: Bytes::from(vec![3u8; 1000]),
        })
        .unwrap();
    f.core.run_commands(&mut drv, f.now);
    assert_eq!(
        f.phase(t),
        Some(Phase::Established),
        "a small event behind it fits"
    );
    // An uncharged frame past the bound plus the page's room is still cut.
    f.commands
        .send(crate::handoff::Command::Send {
            conn,
            frame: Bytes::from(vec![4u8; 100 << 10]),
        })
        .unwrap();
    f.core.run_commands(&mut drv, f.now);
    assert_eq!(f.phase(t), Some(Phase::Closing));
}

/// A page larger than the bound, sent whole to a connection that owed nothing: the
/// kernel takes part of it (a short send on io_uring, a short `writev` on epoll) and
/// a small frame is queued behind the rest. Neither is a reason to cut a client that
/// reads (the slow-reader test's cuts under CPU load); once the queue drains, the
/// usual bound is back.
#[test]
fn a_page_past_the_bound_that_the_kernel_took_part_of_keeps_its_room_until_it_drains() {
    for batching in [true, false] {
        let mut drv = Script {
            batching,
            room: 44 << 10,
            ..Script::default()
        };
        let mut f = Fixture::new(settings(64 << 10));
        let t = f.open(&mut drv, ListenerKind::Client);
        let conn = conn_id(t);
        let page = Bytes::from(vec![1u8; 120 << 10]);
        assert!(f.ledger.charge(conn, page.len() as u32));
        f.commands
            .send(crate::handoff::Command::SendCharged { conn, frame: page })
            .unwrap();
        f.core.run_commands(&mut drv, f.now);
        f.core.flush_dirty(&mut drv, f.now);
        if batching {
            f.core.on_sent(&mut drv, f.now, t, 44 << 10);
        }
        assert_eq!(
            f.phase(t),
            Some(Phase::Handshake),
            "batching {batching}: not cut"
        );
        assert_eq!(f.ledger.owed(conn), Some(76 << 10));
        // A Pong or an event behind the rest of the page.
        let pong = Bytes::from(vec![2u8; 100]);
        f.commands
            .send(crate::handoff::Command::Send { conn, frame: pong })
            .unwrap();
        f.core.run_commands(&mut drv, f.now);
        f.core.flush_dirty(&mut drv, f.now);
        assert_eq!(
            f.phase(t),
            Some(Phase::Handshake),
            "batching {batching}: not cut"
        );
        // The rest goes out; the usual bound applies again.
        drv.room = 1 << 20;
        if batching {
            f.core.on_sent(&mut drv, f.now, t, 76 << 10);
            f.core.on_sent(&mut drv, f.now, t, 100);
        } else {
            f.core.on_writable(&mut drv, f.now, t);
        }
        assert_eq!(f.ledger.owed(conn), Some(0));
        drv.room = 0;
        let slot = f.core.slot_of(t).unwrap();
        f.core
            .send(&mut drv, slot, Bytes::from(vec![3u8; 40 << 10]));
        f.core.flush_dirty(&mut drv, f.now);
        f.core
            .send(&mut drv, slot, Bytes::from(vec![4u8; 40 << 10]));
        assert_eq!(
            f.phase(t),
            Some(Phase::Closing),
            "batching {batching}: 80 KiB of uncharged output is past the bound"
        );
    }
}

/// An io_uring batch that holds a send's completion and input whose echo needs the
/// room that send freed: handled sends first (as the backend does, and as epoll
/// handles writability before readability), the echo fits; the other way round the
/// bytes the kernel already took would still count and cut the connection.
#[test]
fn a_send_completion_frees_its_bytes_before_the_same_batchs_input_is_answered() {
    for sends_first in [true, false] {
        let mut drv = Script {
            batching: true,
            ..Script::default()
        };
        let (mut core, t, _peer) = core_with_echo(&mut drv, 100);
        core.on_data(&mut drv, NOW, t, &[1; 45]);
        core.flush_dirty(&mut drv, NOW);
        assert!(core.readable_stream(t).is_some(), "under half the bound");
        // The batch: the 45 bytes in flight were sent; 60 more bytes arrived.
        if sends_first {
            core.on_sent(&mut drv, NOW, t, 45);
        }
        core.on_data(&mut drv, NOW, t, &[2; 60]);
        if !sends_first {
            core.on_sent(&mut drv, NOW, t, 45);
        }
        let phase = core.conns.get(0).map(|c| c.phase);
        let expected = if sends_first {
            Phase::Established
        } else {
            Phase::Closing
        };
        assert_eq!(phase, Some(expected), "sends first: {sends_first}");
    }
}

/// The frames queued on a protocol connection, as (kind, status) of each entry that
/// starts a frame, and the bytes of the rest of a partly written one at the head.
fn queued_frames(core: &Core, t: Token) -> (usize, Vec<(u8, u16)>) {
    let c = core.conns.get(core.slot_of(t).unwrap()).unwrap();
    let mut partial = 0;
    let mut frames = Vec::new();
    for (i, b) in c.outq.iter().enumerate() {
        if i == 0 && c.head_started {
            partial = b.len();
            continue;
        }
        let h = crate::frame::decode(b, u32::MAX).unwrap().unwrap().header;
        frames.push((h.kind, h.status));
    }
    (partial, frames)
}

#[test]
fn a_cut_keeps_only_the_rest_of_a_partly_written_frame_before_the_302() {
    let ping = || crate::frame::encode(crate::frame::FrameHeader::new(4, 0, 1), &[9u8; 100]);
    let error = (crate::protocol::Kind::Error.as_u8(), 302);
    for (room, partial) in [(0, 0), (50, ping().len() - 50)] {
        let mut drv = Script {
            room,
            ..Script::default()
        };
        let mut f = Fixture::new(settings(4096));
        let t = f.open(&mut drv, ListenerKind::Client);
        let slot = f.core.slot_of(t).unwrap();
        f.core.send(&mut drv, slot, ping());
        f.core.send(&mut drv, slot, ping());
        // Protocol output goes out at the end of the turn.
        f.core.flush_dirty(&mut drv, f.now);
        f.core
            .cut_slow_consumer(&mut drv, slot, crate::metrics::Cut::MaxPending);
        assert_eq!(
            queued_frames(&f.core, t),
            (partial, vec![error]),
            "kernel took {room} bytes of the first frame"
        );
    }
}

#[test]
fn a_closing_connection_keeps_reading_until_its_farewell_is_out() {
    let mut drv = Script::default();
    let mut f = Fixture::new(Settings {
        read_budget_bytes: 1000,
        ..settings(4096)
    });
    let t = f.open(&mut drv, ListenerKind::Client);
    let slot = f.core.slot_of(t).unwrap();
    f.core
        .close_with_error(&mut drv, slot, ErrorCode::SlowConsumer, 0);
    for _ in 0..5 {
        f.core.on_data(&mut drv, f.now, t, &[0u8; 1000]);
    }
    assert_eq!(f.phase(t), Some(Phase::Closing), "the 302 is not out yet");
    drv.room = 100;
    f.core.on_writable(&mut drv, f.now, t);
    f.core.on_data(&mut drv, f.now, t, &[0u8; 1000]);
    assert_eq!(f.phase(t), None, "farewell out, flood goes on: released");
}

#[test]
fn a_frame_larger_than_the_bound_that_the_kernel_took_part_of_is_finished_before_the_302() {
    let mut drv = Script {
        room: 100,
        ..Script::default()
    };
    let mut f = Fixture::new(settings(4096));
    let t = f.open(&mut drv, ListenerKind::Client);
    let slot = f.core.slot_of(t).unwrap();
    // Within twice the bound, so the turn may queue it before offering it.
    let big = crate::frame::encode(crate::frame::FrameHeader::new(4, 0, 1), &[9u8; 6_000]);
    f.core.send(&mut drv, slot, big.clone());
    assert_eq!(f.phase(t), Some(Phase::Handshake), "queued, not cut yet");
    f.core.flush_dirty(&mut drv, f.now);
    assert_eq!(f.phase(t), Some(Phase::Closing), "past the bound: cut");
    assert_eq!(
        queued_frames(&f.core, t),
        (
            big.len() - 100,
            vec![(crate::protocol::Kind::Error.as_u8(), 302)]
        )
    );
}

// Liveness deadlines on the fake clock: what tests/timeouts.rs checked with real
// sleeps and slack, here to the millisecond.

/// Deadline settings as tests/timeouts.rs used them.
fn deadlines(handshake_ms: u64, idle_ms: u64, linger_ms: u64) -> Settings {
    with_limits(LiveLimits {
        handshake_ms,
        idle_ms,
        linger_ms,
        ..limits(1 << 20)
    })
}

/// The frame of `kind` with an empty payload.
fn frame_of(kind: crate::protocol::Kind, rid: u32) -> Bytes {
    crate::frame::encode(crate::frame::FrameHeader::new(kind.as_u8(), 0, rid), &[])
}

const ERROR: u8 = crate::protocol::Kind::Error as u8;

impl Fixture {
    /// Runs the timers at `at` ms after the fixture's start; returns the next wait.
    fn timers_at(&mut self, drv: &mut Script, at: u64) -> Option<Duration> {
        self.now = Mono::from_ms(1_000 + at);
        self.core.run_timers(drv, self.now)
    }

    /// The worker's `Established` for `t`, applied at `at` ms after the start.
    fn establish_at(&mut self, drv: &mut Script, t: Token, at: u64) {
        self.now = Mono::from_ms(1_000 + at);
        let conn = conn_id(t);
        self.commands
            .send(crate::handoff::Command::Established { conn })
            .unwrap();
        self.core.run_commands(drv, self.now);
    }

    /// Bytes from the peer at `at` ms after the start.
    fn data_at(&mut self, drv: &mut Script, t: Token, at: u64, data: &[u8]) {
        self.now = Mono::from_ms(1_000 + at);
        self.core.on_data(drv, self.now, t, data);
    }

    fn closed_for(&self, code: ErrorCode) -> u64 {
        self.core
            .stats()
            .closed_for(crate::handoff::CloseReason::Error(code))
    }
}

#[test]
fn no_hello_is_closed_with_300_at_the_handshake_deadline() {
    let mut drv = Script::default();
    let mut f = Fixture::new(deadlines(300, 500, 1_000));
    let t = f.open(&mut drv, ListenerKind::Client);
    assert_eq!(
        f.timers_at(&mut drv, 0),
        Some(Duration::from_millis(300)),
        "the loop is told to wake at the deadline"
    );
    f.timers_at(&mut drv, 299);
    assert_eq!(f.phase(t), Some(Phase::Handshake), "not yet");
    f.timers_at(&mut drv, 300);
    assert_eq!(f.phase(t), Some(Phase::Closing));
    assert_eq!(queued_frames(&f.core, t), (0, vec![(ERROR, 300)]));
    assert_eq!(f.closed_for(ErrorCode::HandshakeTimeout), 1);
}

#[test]
fn trickling_a_partial_header_does_not_extend_the_handshake() {
    let mut drv = Script::default();
    let mut f = Fixture::new(deadlines(300, 500, 1_000));
    let t = f.open(&mut drv, ListenerKind::Client);
    let hello = frame_of(crate::protocol::Kind::Hello, 1);
    // One byte every 50 ms, never a whole header.
    for (i, b) in hello.iter().take(6).enumerate() {
        let at = 50 * i as u64;
        f.data_at(&mut drv, t, at, std::slice::from_ref(b));
        f.timers_at(&mut drv, at);
        assert_eq!(f.phase(t), Some(Phase::Handshake), "at {at} ms");
    }
    f.timers_at(&mut drv, 300);
    assert_eq!(f.phase(t), Some(Phase::Closing), "counted from the accept");
    assert_eq!(queued_frames(&f.core, t), (0, vec![(ERROR, 300)]));
}

#[test]
fn silence_after_hello_is_closed_with_301_at_the_idle_deadline() {
    let mut drv = Script::default();
    let mut f = Fixture::new(deadlines(300, 500, 1_000));
    let t = f.open(&mut drv, ListenerKind::Client);
    f.establish_at(&mut drv, t, 100);
    // The handshake entry comes due and finds an idle deadline further on.
    assert_eq!(
        f.timers_at(&mut drv, 300),
        Some(Duration::from_millis(300)),
        "the idle deadline: 100 + 500"
    );
    f.timers_at(&mut drv, 599);
    assert_eq!(f.phase(t), Some(Phase::Established), "not yet");
    f.timers_at(&mut drv, 600);
    assert_eq!(f.phase(t), Some(Phase::Closing));
    assert_eq!(queued_frames(&f.core, t), (0, vec![(ERROR, 301)]));
    assert_eq!(f.closed_for(ErrorCode::IdleTimeout), 1);
    assert_eq!(f.closed_for(ErrorCode::HandshakeTimeout), 0);
}

#[test]
fn a_ping_every_150ms_keeps_the_connection_open_then_silence_counts_from_the_last() {
    let mut drv = Script::default();
    let mut f = Fixture::new(deadlines(300, 500, 1_000));
    let t = f.open(&mut drv, ListenerKind::Client);
    f.establish_at(&mut drv, t, 0);
    let mut last = 0;
    for rid in 1..=10 {
        last = 150 * u64::from(rid);
        f.data_at(
            &mut drv,
            t,
            last,
            &frame_of(crate::protocol::Kind::Ping, rid),
        );
        f.timers_at(&mut drv, last);
        assert_eq!(f.phase(t), Some(Phase::Established), "at {last} ms");
    }
    f.timers_at(&mut drv, last + 499);
    assert_eq!(f.phase(t), Some(Phase::Established), "not yet");
    f.timers_at(&mut drv, last + 500);
    assert_eq!(f.phase(t), Some(Phase::Closing));
    assert_eq!(queued_frames(&f.core, t), (0, vec![(ERROR, 301)]));
}

/// The idle deadline does not wait for the handshake deadline when it is the shorter.
#[test]
fn an_idle_timeout_shorter_than_the_handshake_timeout_still_applies() {
    let mut drv = Script::default();
    let mut f = Fixture::new(deadlines(5_000, 500, 1_000));
    let t = f.open(&mut drv, ListenerKind::Client);
    f.establish_at(&mut drv, t, 10);
    assert_eq!(
        f.timers_at(&mut drv, 10),
        Some(Duration::from_millis(500)),
        "the idle entry comes first"
    );
    f.timers_at(&mut drv, 510);
    assert_eq!(f.phase(t), Some(Phase::Closing));
    assert_eq!(f.closed_for(ErrorCode::IdleTimeout), 1);
}

/// Raw echo streams carry no frames: a silent one is closed at its idle deadline
/// with nothing written, and counted as 301.
#[test]
fn an_idle_echo_connection_closes_without_writing_a_frame() {
    let mut drv = Script {
        room: 1 << 20,
        ..Script::default()
    };
    let mut f = Fixture::new(deadlines(300, 500, 1_000));
    let t = f.open(&mut drv, ListenerKind::Echo);
    f.data_at(&mut drv, t, 100, b"ping");
    assert_eq!(drv.writes, [b"ping".to_vec()]);
    f.timers_at(&mut drv, 599);
    assert_eq!(
        f.phase(t),
        Some(Phase::Established),
        "idle counts from input"
    );
    f.timers_at(&mut drv, 600);
    assert_eq!(drv.writes, [b"ping".to_vec()], "no frame on a raw stream");
    assert!(drv.sends.is_empty());
    assert_eq!(f.closed_for(ErrorCode::IdleTimeout), 1);
}

/// A closing connection whose peer never closes is released when the linger ends.
#[test]
fn a_closing_connection_is_released_when_the_linger_ends() {
    // The kernel takes the farewell: only the linger is left to wait for.
    let mut drv = Script {
        room: 1 << 20,
        ..Script::default()
    };
    let mut f = Fixture::new(deadlines(300, 500, 1_000));
    let t = f.open(&mut drv, ListenerKind::Client);
    f.timers_at(&mut drv, 300);
    assert_eq!(f.phase(t), Some(Phase::Closing), "handshake timeout");
    assert_eq!(
        f.timers_at(&mut drv, 300),
        Some(Duration::from_millis(1_000))
    );
    f.timers_at(&mut drv, 1_299);
    assert_eq!(f.phase(t), Some(Phase::Closing), "lingering");
    f.timers_at(&mut drv, 1_300);
    assert_eq!(f.phase(t), None, "released");
}

/// Reading paused for backpressure is not idleness: the peer may be sending.
#[test]
fn a_paused_connection_is_not_idle() {
    let mut drv = Script::default();
    let mut f = Fixture::new(deadlines(300, 500, 1_000));
    let t = f.open(&mut drv, ListenerKind::Echo);
    // Nobody reads: the echo queues until reading pauses.
    f.data_at(&mut drv, t, 0, &vec![7u8; 600 << 10]);
    assert!(f.core.readable_stream(t).is_none(), "paused");
    f.timers_at(&mut drv, 500);
    assert_eq!(f.phase(t), Some(Phase::Established), "paused, not idle");
    assert_eq!(f.closed_for(ErrorCode::IdleTimeout), 0);
}

/// A drain ends when its deadline passes, even with output stuck.
#[test]
fn a_drain_finishes_at_its_deadline_with_output_stuck() {
    let mut drv = Script::default();
    let mut f = Fixture::new(deadlines(300, 500, 1_000));
    let t = f.open(&mut drv, ListenerKind::Client);
    f.establish_at(&mut drv, t, 0);
    let deadline = f.core.clock().instant(Mono::from_ms(1_000 + 2_000));
    f.commands
        .send(crate::handoff::Command::Drain { deadline })
        .unwrap();
    f.core.run_commands(&mut drv, f.now);
    assert_eq!(f.phase(t), Some(Phase::Closing), "Bye queued");
    assert!(!f.core.drain_finished(f.now), "the Bye is not out");
    assert!(!f.core.drain_finished(Mono::from_ms(1_000 + 1_999)));
    assert!(f.core.drain_finished(Mono::from_ms(1_000 + 2_000)));
}

/// A turn's events reach the worker at its hand-off, in order; a frame a full queue
/// refuses closes its connection with 500 and nothing after it is handed on, while
/// the `Closed` waits for room and the neighbour is untouched.
#[test]
fn events_are_handed_over_per_turn_and_a_refused_frame_closes_with_500() {
    use crate::handoff::{CloseReason, Event};
    use crate::protocol::Kind;
    let mut drv = Script::default();
    let (mut f, rx) = Fixture::with_worker_queue(settings(1 << 20), 3);
    let t = f.open(&mut drv, ListenerKind::Client);
    let u = f.open(&mut drv, ListenerKind::Client);
    assert!(rx.try_recv().is_err(), "held until the hand-off");
    f.core.hand_off(&mut drv);
    let pings: Vec<u8> = (1..=3)
        .flat_map(|rid| frame_of(Kind::Ping, rid).to_vec())
        .collect();
    f.data_at(&mut drv, t, 0, &pings);
    assert_eq!(rx.len(), 2, "the frames wait for the hand-off");
    f.core.end_turn(&mut drv, f.now);
    let got: Vec<Event> = rx.try_iter().collect();
    assert!(matches!(got[0], Event::Opened { conn, .. } if conn == conn_id(t)));
    assert!(matches!(got[1], Event::Opened { conn, .. } if conn == conn_id(u)));
    assert!(
        matches!(&got[2], Event::Frame { conn, header, .. } if *conn == conn_id(t) && header.request_id == 1)
    );
    assert_eq!(
        got.len(),
        3,
        "frame 2 was refused and frame 3 not handed on"
    );
    assert_eq!(f.phase(t), Some(Phase::Closing));
    assert_eq!(queued_frames(&f.core, t), (0, vec![(ERROR, 500)]));
    assert_eq!(f.closed_for(ErrorCode::ServerBusy), 1);
    assert_eq!(
        f.phase(u),
        Some(Phase::Handshake),
        "the neighbour is untouched"
    );
    // The `Closed` found the queue full too: it follows once there is room.
    f.core.flush_deferred();
    let closed = rx.try_recv().unwrap();
    assert!(matches!(
        closed,
        Event::Closed { conn, reason: CloseReason::Error(ErrorCode::ServerBusy) } if conn == conn_id(t)
    ));
    assert!(rx.try_recv().is_err());
}

/// A flood in one read meets the worker queue's bound while it is read: a turn holds
/// at most `HOLD_EVENTS` events before handing them over.
#[test]
fn a_flood_in_one_read_is_handed_over_in_pieces_and_cut_at_the_queue_bound() {
    use crate::protocol::Kind;
    let mut drv = Script::default();
    let (mut f, rx) = Fixture::with_worker_queue(settings(1 << 20), 100);
    let t = f.open(&mut drv, ListenerKind::Client);
    let flood: Vec<u8> = (1..=(3 * super::HOLD_EVENTS as u32))
        .flat_map(|rid| frame_of(Kind::Ping, rid).to_vec())
        .collect();
    f.data_at(&mut drv, t, 0, &flood);
    assert_eq!(f.phase(t), Some(Phase::Closing), "cut within the read");
    assert_eq!(rx.len(), 100, "the Opened and the frames that fit");
    assert!(
        f.core.held.len() <= 1,
        "only the Closed may wait for the turn's end"
    );
    assert_eq!(queued_frames(&f.core, t), (0, vec![(ERROR, 500)]));
}

/// A connection whose `Opened` a full queue refused never reaches the worker: not
/// even its `Closed`, when it went away in the same turn.
#[test]
fn a_refused_opened_is_never_followed_by_its_closed() {
    use crate::handoff::Event;
    let mut drv = Script::default();
    let (mut f, rx) = Fixture::with_worker_queue(settings(1 << 20), 1);
    let a = f.open(&mut drv, ListenerKind::Client);
    let b = f.open(&mut drv, ListenerKind::Client);
    f.core.on_eof(&mut drv, b);
    f.core.end_turn(&mut drv, f.now);
    assert!(matches!(rx.try_recv(), Ok(Event::Opened { conn, .. }) if conn == conn_id(a)));
    f.core.flush_deferred();
    assert!(rx.try_recv().is_err(), "nothing about b");
    assert!(f.core.deferred.is_empty());
    assert_eq!(f.phase(a), Some(Phase::Handshake));
}

/// A fixture whose core has console logins wired to a login queue of `depth` (the
/// returned receiver stands for the login threads) and a key to sign with.
fn console_fixture(
    settings: Settings,
    depth: usize,
) -> (
    Fixture,
    crossbeam_channel::Receiver<crate::service::LoginJob>,
    Arc<crate::auth::Verifier>,
) {
    let mut f = Fixture::new(settings);
    let mut config = crate::config::Config::default();
    config.auth.keys = vec![crate::config::AuthKey {
        kid: "k".into(),
        secret: Some("console-test-secret-0123456789abcdef".into()),
        secret_file: None,
    }];
    let verifier = Arc::new(crate::auth::Verifier::from_config(&config).unwrap());
    f.core.visitor_desk.signer = Some(verifier.clone());
    let (jobs, rx) = crossbeam_channel::bounded(depth);
    let users = crate::console::Users::from_config(&config.console, &[0; 16]);
    f.core.console_desk = super::console_desk::Desk::new(Some(super::console_desk::ConsoleLinks {
        users: Arc::new(users),
        jobs,
        ttl: Duration::from_secs(900),
        per_minute: 100,
        max_entries: 16,
    }));
    (f, rx, verifier)
}

/// Everything the core wrote or offered to write for the connections, and what `t`
/// still has queued, as text (after ending the turn, which flushes).
fn http_out(f: &mut Fixture, drv: &mut Script, t: Token) -> String {
    f.advance(drv, 0);
    let mut all: Vec<u8> = drv.writes.concat();
    all.extend(drv.sends.concat());
    if let Some(c) = f.core.slot_of(t).and_then(|s| f.core.conns.get(s)) {
        all.extend(c.outq.iter().flat_map(|b| b.to_vec()));
    }
    String::from_utf8_lossy(&all).into_owned()
}

fn login_request(username: &str) -> String {
    let body = format!(r#"{{"username":"{username}","password":"pw"}}"#);
    format!(
        "POST /console/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_console_login_waits_for_its_verdict_then_the_reactor_mints_answers_and_closes() {
    let mut drv = Script {
        room: usize::MAX,
        ..Script::default()
    };
    let (mut f, jobs, verifier) = console_fixture(deadlines(300, 500, 1_000), 4);
    let t = f.open(&mut drv, ListenerKind::Client);
    f.data_at(&mut drv, t, 0, login_request("ann").as_bytes());
    let job = jobs
        .try_recv()
        .expect("the login went to the login threads");
    assert_eq!(
        (job.conn, job.request.username.as_str()),
        (conn_id(t), "ann")
    );
    // While it waits, nothing is written and further input is not read.
    f.data_at(&mut drv, t, 10, b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(http_out(&mut f, &mut drv, t), "");
    assert_eq!(f.phase(t), Some(Phase::Handshake));
    let account = crate::console::Account {
        id: "ann".into(),
        name: "Ann".into(),
        role: "agent".into(),
        groups: vec!["support".into()],
        tenant: String::new(),
        max_concurrent: Some(4),
    };
    f.commands
        .send(crate::handoff::Command::ConsoleLogin {
            conn: conn_id(t),
            verdict: Ok(Box::new(account)),
        })
        .unwrap();
    f.core.run_commands(&mut drv, f.now);
    let out = http_out(&mut f, &mut drv, t);
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(out.contains("Cache-Control: no-store"), "{out}");
    let body: serde_json::Value =
        serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let id = verifier
        .verify(
            body["token"].as_str().unwrap(),
            std::time::SystemTime::now(),
        )
        .unwrap();
    assert_eq!(
        (id.user.as_str(), id.name.as_str(), id.max_concurrent),
        ("ann", "Ann", Some(4))
    );
    assert_eq!(f.phase(t), Some(Phase::Closing));
    // A second verdict for the same connection (answered, closing) is ignored.
    let written = (drv.writes.len(), drv.sends.len());
    f.commands
        .send(crate::handoff::Command::ConsoleLogin {
            conn: conn_id(t),
            verdict: Err(crate::console::Outcome::BadPassword),
        })
        .unwrap();
    f.core.run_commands(&mut drv, f.now);
    f.advance(&mut drv, 0);
    assert_eq!((drv.writes.len(), drv.sends.len()), written);
}

#[test]
fn a_full_login_queue_is_503_and_a_verdict_that_never_comes_is_408_at_the_deadline() {
    let mut drv = Script {
        room: usize::MAX,
        ..Script::default()
    };
    let (mut f, jobs, _) = console_fixture(deadlines(300, 500, 1_000), 1);
    let first = f.open(&mut drv, ListenerKind::Client);
    f.data_at(&mut drv, first, 0, login_request("ann").as_bytes());
    let second = f.open(&mut drv, ListenerKind::Client);
    f.data_at(&mut drv, second, 0, login_request("bob").as_bytes());
    let out = http_out(&mut f, &mut drv, second);
    assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
    assert!(out.contains("Retry-After: 1"), "{out}");
    assert_eq!(f.phase(second), Some(Phase::Closing));
    assert_eq!(f.core.stats().web.console_logins[6].get(), 1, "busy");
    // The first still waits; its deadline answers it.
    drv.writes.clear();
    drv.sends.clear();
    f.timers_at(&mut drv, 300);
    assert_eq!(f.phase(first), Some(Phase::Closing));
    let out = http_out(&mut f, &mut drv, first);
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert_eq!(jobs.len(), 1);
}

// PROXY protocol (`proxied.rs`) on the fake clock.

/// [`settings`] with the client and echo listeners taking PROXY headers from
/// loopback, and a handshake deadline of `handshake_ms`.
fn proxied(handshake_ms: u64) -> Settings {
    let rule = Arc::new(super::proxied::ProxyRule {
        trusted: vec!["127.0.0.0/8".parse().unwrap()],
        max_header_bytes: 1024,
    });
    Settings {
        proxy: super::ProxyListeners {
            client: Some(rule.clone()),
            echo: Some(rule),
        },
        ..deadlines(handshake_ms, 10_000, 1_000)
    }
}

/// The worker hears of a proxied connection only once its header is read, with the
/// client's address; the bytes after the header are the connection's own.
#[test]
fn a_proxied_connection_opens_with_the_client_address_after_its_header() {
    use crate::handoff::Event;
    use crate::protocol::Kind;
    let mut drv = Script::default();
    let (mut f, rx) = Fixture::with_worker_queue(proxied(10_000), 8);
    let t = f.open(&mut drv, ListenerKind::Client);
    f.core.end_turn(&mut drv, f.now);
    assert!(rx.try_recv().is_err(), "not announced before its header");
    let client: std::net::SocketAddr = "[2001:db8::7]:4242".parse().unwrap();
    let header = crate::proxy::encode_v2(
        &crate::proxy::ProxyHeader::Proxied {
            source: client,
            destination: "[2001:db8::1]:7700".parse().unwrap(),
        },
        &[],
    );
    let bytes = [header.as_slice(), &frame_of(Kind::Ping, 9)].concat();
    // Split in the header, and again in the frame after it.
    for (i, piece) in bytes.chunks(7).enumerate() {
        f.data_at(&mut drv, t, i as u64, piece);
    }
    f.core.end_turn(&mut drv, f.now);
    let got: Vec<Event> = rx.try_iter().collect();
    assert!(
        matches!(got.first(), Some(Event::Opened { conn, peer }) if *conn == conn_id(t) && *peer == client),
        "{got:?}"
    );
    assert!(
        matches!(got.get(1), Some(Event::Frame { header, .. }) if header.request_id == 9),
        "{got:?}"
    );
    assert_eq!(f.core.stats().proxy_headers.get(), 1);
    // Counted once in the total (at accept), and now as the client.
    assert_eq!(f.core.links.limits.total(), 1);
}

/// No complete header within the handshake deadline: closed without a farewell,
/// counted as a `timeout` header error; the limits forget it.
#[test]
fn a_proxied_connection_without_its_header_times_out() {
    let mut drv = Script::default();
    let mut f = Fixture::new(proxied(500));
    let t = f.open(&mut drv, ListenerKind::Echo);
    assert_eq!(f.phase(t), Some(Phase::Handshake));
    f.data_at(&mut drv, t, 100, b"PROXY TCP4 ");
    f.core.run_timers(&mut drv, Mono::from_ms(1_000 + 499));
    assert_eq!(f.phase(t), Some(Phase::Handshake));
    f.core.run_timers(&mut drv, Mono::from_ms(1_000 + 500));
    assert_eq!(f.phase(t), Some(Phase::Closing));
    assert_eq!(f.core.stats().proxy_header_errors[0].get(), 1);
    assert_eq!(f.closed_for(ErrorCode::HandshakeTimeout), 1);
    f.core
        .run_timers(&mut drv, Mono::from_ms(1_000 + 500 + 1_000));
    assert_eq!(f.phase(t), None);
    assert_eq!(f.core.links.limits.total(), 0);
}
