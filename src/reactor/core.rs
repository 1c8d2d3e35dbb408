//! The backend-independent half of a reactor: connections, framing, write queues,
//! deadlines and the hand-off to workers. A backend (see `sys/`) feeds it accepted
//! sockets, received bytes and writability, and gives it a [`Driver`] to change
//! interest; nothing here waits for I/O or reads a clock: every call that needs the
//! time takes `now` (read by the backend once per loop turn).

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::queue::Receiver;
use bytes::{Buf, Bytes};
use crossbeam_channel::TrySendError;
use mio::Token;
use mio::net::TcpStream;
use slab::Slab;

use super::conn::{Conn, Dialect, ListenerKind, Phase, token, untoken};
use super::conn_buffers::{OutQueue, Spill};
use super::sys::{Driver, Sent};
use super::timer::TimerHeap;
use super::{api_desk, console_desk, dialect, visitor_desk};
use crate::clock::{Clock, Mono};
use crate::frame::{self, FrameHeader};
use crate::handoff::{CloseReason, Command, ConnId, Event, LiveLimits, WorkerQueue};
use crate::ledger::{Ledger, TOTAL_QUANTUM};
use crate::log_gate::LogGate;
use crate::metrics::{Cut, ReactorMetrics};
use crate::protocol::{ErrorCode, Kind};
use crate::reactor::admission::{AcceptBucket, ConnLimits, RejectLog};
use crossbeam_utils::CachePadded;

/// The numbers a reactor needs, resolved from the config.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The limits a reload may change (SIGHUP, [`Command::Limits`]).
    pub live: LiveLimits,
    pub read_budget_bytes: usize,
    pub command_batch: usize,
    /// Connection slots reserved up front: this reactor's share of
    /// `limits.max_connections`. Address space only (pages are touched as slots
    /// fill), and the slab never reallocates below it: growth by doubling would copy
    /// every live connection on the reactor thread and, under mimalloc, leave the old
    /// copy resident (idle memory rose from 137 to 329 B per connection).
    pub reserve_slots: usize,
    /// The web edge's bounds and origin rules (`[web]`).
    pub web: Arc<WebSettings>,
    /// TLS on the client listener (`[listeners.client.tls]`): what new handshakes
    /// use (`None`: plaintext only).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The listeners that take a PROXY protocol header first (`proxied.rs`).
    pub proxy: ProxyListeners,
}

impl Settings {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            live: LiveLimits::from_config(c),
            read_budget_bytes: c.reactor.read_budget_bytes,
            command_batch: c.reactor.command_queue_depth,
            reserve_slots: (c.limits.max_connections as usize)
                .div_ceil(c.reactor_threads().max(1))
                .min(MAX_RESERVED_SLOTS),
            web: WebSettings::from_config(c),
            tls: None,
            proxy: ProxyListeners::from_config(c),
        }
    }
}

/// Events a turn holds for the workers before handing them over early (see
/// [`Core::hand_off`]): a turn's input is handed over in pieces this large at most.
const HOLD_EVENTS: usize = 256;
/// Frame bytes a turn holds for the workers before handing them over early.
const HOLD_BYTES: usize = 256 * 1024;

/// Most slots one reactor reserves up front (~120 MiB of address space).
const MAX_RESERVED_SLOTS: usize = 1 << 20;

/// Longest time between two sweeps of the backlog (stalled output) while anything
/// is queued.
const SWEEP_MS: u64 = 100;
/// While the kernel is short of TCP memory, output stalls for reasons that are not
/// the peer's: a stalled connection is then cut only after this many
/// `limits.stall_timeout`s (the kernel itself drops orphaned peers meanwhile).
const KERNEL_PRESSURE_STALL_FACTOR: u64 = 6;
/// How long an answer about the kernel's TCP memory pressure is reused (ms).
const KERNEL_PRESSURE_CHECK_MS: u64 = 1000;

/// What [`Core::write_direct`] did with bytes offered to the socket at once.
enum Direct {
    /// All written, or the connection is gone (a failed write closed it).
    Done,
    /// The kernel took this many bytes (maybe 0); the rest must be queued.
    Refused(usize),
    /// Not written: output is queued or in flight before it, or the backend
    /// writes only at the end of the turn.
    NotTried,
}

/// One reactor's connections and everything attached to them.
pub(crate) struct Core {
    id: u16,
    settings: Settings,
    conns: Slab<Conn>,
    timers: TimerHeap,
    /// Converts deadlines other threads send as `Instant`s (no clock is read here).
    clock: Clock,
    next_generation: u32,
    /// Queues, metrics and daemon-wide counts shared with other threads.
    links: Links,
    /// `Closed` events a full worker queue refused; retried every loop turn so a
    /// worker never keeps state for a connection that is gone.
    deferred: VecDeque<(usize, Event)>,
    /// Events for the workers (worker index, event) from this turn, in order,
    /// handed over by [`Core::hand_off`] once the turn's input is read: a parked
    /// worker is woken once per turn, not once per frame (a futex wake and a
    /// context switch each).
    held: Vec<(usize, Event)>,
    /// Payload bytes of the frames in `held`.
    held_bytes: usize,
    /// Connections to read again without waiting for readiness (read budget used up,
    /// or reading resumed after backpressure).
    resume: Vec<Token>,
    /// Connections with output queued this turn, flushed once at its end (so a
    /// connection gets one `writev`, or one send request, per turn).
    dirty: Vec<Token>,
    input_open: bool,
    drain_deadline: Option<Mono>,
    reject_log: RejectLog,
    /// Connections that may have output queued (each at most once: `Conn::listed`).
    backlog: Vec<Token>,
    /// Bytes queued on this reactor's connections (the sum of their `published`).
    queued: u64,
    /// Change of `queued` not yet added to the ledger's daemon-wide total.
    unpublished: i64,
    /// When the backlog is swept next.
    next_sweep: Mono,
    /// Cutting connections for the daemon-wide budget (no nested shedding).
    shedding: bool,
    /// Output queued daemon-wide passed half of `limits.max_pending_total`:
    /// connections stop reading while they have anything queued, so output that
    /// their own input causes (an echo, replies) cannot grow until they drain.
    pressure: bool,
    /// Log gates (at most a line a second each): pressure changes, shedding, cuts.
    pressure_log: LogGate,
    shed_log: LogGate,
    cut_log: LogGate,
    /// Connections closed for a bad or missing PROXY header (`proxied.rs`).
    proxy_log: LogGate,
    /// Asks whether the kernel's TCP memory is under pressure (tests replace it).
    kernel_pressure_probe: fn() -> bool,
    /// The last answer and when it was asked (`None`: never).
    kernel_pressure: (Option<Mono>, bool),
    /// While draining: a closing connection whose output made no progress for this
    /// long is dropped (its peer reads nothing; waiting longer cannot help).
    drain_stall_ms: u64,
    /// Where WebSocket payloads are unmasked (one frame's worth, kept up to a bound).
    ws_scratch: Vec<u8>,
    /// TLS: where records are decrypted, the plaintext they held, and the handshake
    /// bytes to send (one read's worth each, kept up to a bound).
    tls_bufs: tls_io::TlsBuffers,
    /// Log gate of TLS failures (at most a line a second).
    tls_log: LogGate,
    /// The visitor-token endpoint's per-address rate and log gates.
    visitor_desk: visitor_desk::Desk,
    /// The console login endpoints' per-address rate, log gates and queue.
    console_desk: console_desk::Desk,
    /// HTTP API requests in progress.
    api: api_desk::ApiDesk,
    /// The time the backend gave with the call being handled (each entry point that
    /// needs the clock takes it as `now`; the core never reads one).
    now: Mono,
}

/// What a core is connected to.
pub(crate) struct Links {
    /// Commands from the workers.
    pub commands: Receiver<Command>,
    /// The workers' event queues.
    pub workers: Arc<[WorkerQueue]>,
    pub stats: Arc<CachePadded<ReactorMetrics>>,
    /// Daemon-wide connection counts, and this reactor's share of the accept rate.
    pub limits: Arc<ConnLimits>,
    pub bucket: AcceptBucket,
    /// Output owed per connection and in total.
    pub ledger: Arc<Ledger>,
    /// The console's users and login threads (`None`: not wired, in unit tests).
    pub console: Option<console_desk::ConsoleLinks>,
}

impl Core {
    /// A core with no connections; `clock` is the one its backend reads (the core
    /// only converts deadlines sent as `Instant`s with it).
    pub fn new(id: u16, settings: Settings, links: Links, clock: Clock) -> Self {
        let reserve = settings.reserve_slots;
        let visitor_desk = visitor_desk::Desk::new(&settings.web.visitors);
        let console_desk = console_desk::Desk::new(links.console.clone());
        Self {
            id,
            settings,
            links,
            conns: Slab::with_capacity(reserve),
            timers: TimerHeap::default(),
            clock,
            next_generation: 0,
            deferred: VecDeque::new(),
            held: Vec::new(),
            held_bytes: 0,
            resume: Vec::new(),
            dirty: Vec::new(),
            input_open: true,
            drain_deadline: None,
            reject_log: RejectLog::new(),
            backlog: Vec::new(),
            queued: 0,
            unpublished: 0,
            next_sweep: Mono::ZERO,
            shedding: false,
            pressure: false,
            pressure_log: LogGate::default(),
            shed_log: LogGate::default(),
            cut_log: LogGate::default(),
            proxy_log: LogGate::default(),
            kernel_pressure_probe: crate::host_memory::tcp_memory_pressure,
            kernel_pressure: (None, false),
            drain_stall_ms: u64::MAX,
            ws_scratch: Vec::new(),
            tls_bufs: tls_io::TlsBuffers::default(),
            tls_log: LogGate::default(),
            visitor_desk,
            console_desk,
            api: api_desk::ApiDesk::default(),
            now: Mono::ZERO,
        }
    }

    /// The clock this core's [`Mono`] times are on (its backend reads it).
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Takes the time a call is made at; never goes back (a backend may hand an
    /// older reading to a later call).
    fn at(&mut self, now: Mono) {
        self.now = self.now.max(now);
    }

    /// Ends one loop turn (`now`: its time): publishes the turn's output growth and
    /// enforces the daemon-wide budget. A backend calls it once per turn, then
    /// [`Core::turn_took`] with the time the turn took.
    pub fn end_turn(&mut self, drv: &mut impl Driver, now: Mono) {
        self.at(now);
        self.hand_off(drv);
        // Growth under one quantum is published here, every turn: it is enforced
        // too, or turns that each grow a little would creep past the budget.
        let grew = self.unpublished > 0;
        self.links
            .ledger
            .add_total(std::mem::take(&mut self.unpublished));
        self.note_pressure();
        if grew {
            self.enforce_total(drv);
        }
        let s = self.stats();
        if s.stall_ms.get() != 0 {
            // Test hook (admin `/debug/stall`, only with SWITCHBOARD_TEST_HOOKS=1): a
            // turn stuck this long, measured as one.
            std::thread::sleep(Duration::from_millis(s.stall_ms.take()));
        }
    }

    /// Records a loop turn that took `busy` (from the poll's return to the end of
    /// [`Core::end_turn`]): bumps the watchdog's progress counter and the loop-lag
    /// figures.
    pub fn turn_took(&self, busy: Duration) {
        let s = self.stats();
        let us = u64::try_from(busy.as_micros()).unwrap_or(u64::MAX);
        s.pending_bytes.set(self.queued);
        s.loops.inc();
        s.loop_lag.observe_us(us);
        s.busy_us.add(us);
    }

    /// Applies the connection limits to a new connection from `peer`; on refusal the
    /// caller drops (closes) the socket.
    fn admit(&mut self, peer: SocketAddr) -> Option<crate::reactor::admission::IpKey> {
        let now = self.now;
        let key = self.links.limits.key(peer.ip());
        let verdict = if self.links.bucket.take(now) {
            self.links.limits.admit(key)
        } else {
            Err(crate::metrics::Reject::AcceptRate)
        };
        match verdict {
            Ok(()) => Some(key),
            Err(why) => {
                self.links.stats.count_reject(why);
                self.reject_log.note(self.id, why, peer.ip(), now);
                None
            }
        }
    }

    fn stats(&self) -> &ReactorMetrics {
        &self.links.stats
    }

    fn conn_id(&self, slot: usize, generation: u32) -> ConnId {
        ConnId {
            reactor: self.id,
            slot: slot as u32,
            generation,
        }
    }

    fn deadline_of(&self, c: &Conn) -> Mono {
        let span = match c.phase {
            Phase::Handshake => self.settings.live.handshake_ms,
            Phase::Established => self.settings.live.idle_ms,
            Phase::Closing => self.settings.live.linger_ms,
        };
        c.mark.plus_ms(span)
    }

    fn slot_of(&self, t: Token) -> Option<usize> {
        let (slot, generation) = untoken(t);
        let c = self.conns.get(slot)?;
        (c.generation == generation).then_some(slot)
    }

    fn slot_of_id(&self, id: ConnId) -> Option<usize> {
        let slot = id.slot as usize;
        let c = self.conns.get(slot)?;
        (id.reactor == self.id && c.generation == id.generation).then_some(slot)
    }

    /// The slot of a live connection that may still be written to: nothing may
    /// follow a farewell frame, so closing connections take no more output.
    fn open_slot_of_id(&self, id: ConnId) -> Option<usize> {
        let slot = self.slot_of_id(id)?;
        let c = self.conns.get(slot)?;
        (c.phase != Phase::Closing).then_some(slot)
    }

    fn worker_for(&self, id: ConnId) -> usize {
        let n = self.links.workers.len().max(1);
        (id.slot as usize)
            .wrapping_mul(31)
            .wrapping_add(usize::from(id.reactor))
            % n
    }

    /// Holds an event for the worker that owns the connection until
    /// [`Core::hand_off`] (this turn).
    fn tell_worker(&mut self, id: ConnId, event: Event) {
        let w = self.worker_for(id);
        self.held.push((w, event));
    }

    /// Hands the turn's events to the workers, in order. A full queue refuses
    /// everything but `Closed`, which is deferred instead: the connection of a
    /// refused `Opened` or `Frame` is closed with `SERVER_BUSY` and nothing after
    /// it is handed on (its `Closed` follows). Backends need not call it: the core
    /// does before applying commands and at the end of each turn.
    pub fn hand_off(&mut self, drv: &mut impl Driver) {
        // Closing a refused connection holds its `Closed`: handed on in the next round.
        while !self.held.is_empty() {
            let mut list = std::mem::take(&mut self.held);
            self.held_bytes = 0;
            // Connections whose frame was refused (their `Closed` still goes), and
            // whose `Opened` was (the worker never hears of them).
            let mut refused: Vec<ConnId> = Vec::new();
            let mut unknown: Vec<ConnId> = Vec::new();
            for (w, event) in list.drain(..) {
                let skip = match &event {
                    Event::Opened { conn, .. }
                    | Event::Frame { conn, .. }
                    | Event::Api { conn, .. } => refused.contains(conn) || unknown.contains(conn),
                    Event::Closed { conn, .. } => unknown.contains(conn),
                    Event::Barrier(_) => false,
                };
                if skip {
                    continue;
                }
                let Some(tx) = self.links.workers.get(w) else {
                    continue;
                };
                match tx.try_send(event) {
                    // Workers are gone only during shutdown; nothing left to tell.
                    Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                    Err(TrySendError::Full(event)) => {
                        self.stats().worker_queue_full.inc();
                        match event {
                            Event::Closed { .. } => self.deferred.push_back((w, event)),
                            Event::Opened { conn, .. } => {
                                unknown.push(conn);
                                self.refuse_busy(drv, conn, 0, false);
                            }
                            Event::Frame { conn, header, .. } => {
                                refused.push(conn);
                                self.refuse_busy(drv, conn, header.request_id, true);
                            }
                            // The API request's answer is a 503 (`Core::api_farewell`).
                            Event::Api { conn, .. } => {
                                refused.push(conn);
                                self.refuse_busy(drv, conn, 0, true);
                            }
                            Event::Barrier(_) => {}
                        }
                    }
                }
            }
            if self.held.is_empty() {
                // Keep the allocation for the next turn.
                self.held = list;
            }
        }
    }

    /// Closes a connection whose event a full worker queue refused with
    /// `SERVER_BUSY`; `announced`: the worker knows the connection (it had its
    /// `Opened`), so it is told `Closed`.
    fn refuse_busy(&mut self, drv: &mut impl Driver, conn: ConnId, rid: u32, announced: bool) {
        let Some(slot) = self.slot_of_id(conn) else {
            return;
        };
        if let Some(c) = self.conns.get_mut(slot) {
            c.announced &= announced;
        }
        if announced {
            tracing::warn!(
                reactor = self.id,
                slot,
                "worker queue full; closing connection"
            );
        }
        self.close_with_error(drv, slot, ErrorCode::ServerBusy, rid);
    }

    /// Retries deferred `Closed` events, in order.
    pub fn flush_deferred(&mut self) {
        while let Some((w, event)) = self.deferred.pop_front() {
            let Some(tx) = self.links.workers.get(w) else {
                continue;
            };
            match tx.try_send(event) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(event)) => {
                    self.deferred.push_front((w, event));
                    return;
                }
            }
        }
    }

    /// Takes a freshly accepted socket.
    pub fn accept(
        &mut self,
        drv: &mut impl Driver,
        now: Mono,
        kind: ListenerKind,
        mut stream: TcpStream,
        peer: SocketAddr,
    ) {
        self.at(now);
        if !self.input_open {
            return;
        }
        // Behind a PROXY header the client's address is known only once it is read.
        let awaiting_proxy = self.settings.proxy.of(kind).is_some();
        let admitted = if awaiting_proxy {
            self.admit_proxy(kind, peer)
        } else {
            self.admit(peer)
        };
        let Some(ip_key) = admitted else {
            return;
        };
        let release_key = |core: &Self| {
            if awaiting_proxy {
                core.links.limits.release_total();
            } else {
                core.links.limits.release(ip_key);
            }
        };
        // Latency matters more than packet count for chat traffic.
        let _ = stream.set_nodelay(true);
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let generation = self.next_generation;
        let now = self.now;
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        if u32::try_from(slot).is_err() {
            release_key(self);
            return;
        }
        if let Err(e) = drv.register(&mut stream, token(slot, generation)) {
            tracing::warn!(reactor = self.id, error = %e, "cannot register accepted socket");
            self.links.stats.accept_errors.inc();
            release_key(self);
            return;
        }
        let (phase, dialect) = match kind {
            ListenerKind::Client => (Phase::Handshake, Dialect::Unknown),
            // The PROXY header must come within the handshake deadline.
            ListenerKind::Echo if awaiting_proxy => (Phase::Handshake, Dialect::Raw),
            ListenerKind::Echo => (Phase::Established, Dialect::Raw),
            // The upgrade must come within the handshake deadline.
            ListenerKind::WsEcho => (Phase::Handshake, Dialect::HttpHead),
        };
        entry.insert(Conn {
            stream,
            spill: Spill::default(),
            ws: None,
            tls: None,
            outq: OutQueue::default(),
            mark: now,
            generation,
            pending: 0,
            allowance: 0,
            published: 0,
            out_mark: now,
            discarded: 0,
            close_reason: None,
            phase,
            kind,
            dialect,
            read_paused: false,
            writable_armed: false,
            announced: false,
            write_shut: false,
            dirty: false,
            listed: false,
            head_started: false,
            sending: 0,
            ip_key,
            awaiting_proxy,
        });
        self.links.ledger.open(self.id, slot as u32, generation);
        let stats = self.stats();
        stats.accepted.inc();
        stats.open.set(self.conns.len() as u64);
        let deadline = self.conns.get(slot).map_or(now, |c| self.deadline_of(c));
        self.timers.push(deadline, slot as u32, generation);
        // Behind a PROXY header, the worker hears of it with the client's address.
        if kind == ListenerKind::Client && !awaiting_proxy {
            let id = self.conn_id(slot, generation);
            self.tell_worker(id, Event::Opened { conn: id, peer });
            if let Some(c) = self.conns.get_mut(slot) {
                c.announced = true;
            }
        }
    }

    /// The socket of a live connection, reading paused or not (a completion backend
    /// re-arms requests on it).
    pub fn stream(&self, t: Token) -> Option<&TcpStream> {
        self.conns.get(self.slot_of(t)?).map(|c| &c.stream)
    }

    /// The token of the connection now in `slot`, if any (a completion backend
    /// tells a late completion of a closed connection from the slot's new one).
    pub fn token_at(&self, slot: usize) -> Option<Token> {
        self.conns.get(slot).map(|c| token(slot, c.generation))
    }

    /// The socket to read from, unless the connection is gone or its reading is
    /// paused for backpressure. A closing connection is always read: its input is
    /// discarded, and unread input would turn the final close into a reset that
    /// destroys the farewell frame.
    pub fn readable_stream(&self, t: Token) -> Option<&TcpStream> {
        let c = self.conns.get(self.slot_of(t)?)?;
        (!c.read_paused || c.phase == Phase::Closing).then_some(&c.stream)
    }

    /// Bytes to read from one connection per readiness event.
    pub fn read_budget(&self) -> usize {
        self.settings.read_budget_bytes
    }

    /// Counts and logs a failed `accept` (e.g. out of file descriptors).
    pub fn accept_failed(&self, e: &io::Error) {
        self.links.stats.accept_errors.inc();
        tracing::warn!(reactor = self.id, error = %e, "accept failed; pausing accepts briefly");
    }

    /// Asks to be read again on the next loop turn (budget used up).
    pub fn read_again(&mut self, t: Token) {
        self.resume.push(t);
    }

    /// Connections to read without waiting for readiness.
    pub fn take_resume(&mut self) -> Vec<Token> {
        std::mem::take(&mut self.resume)
    }

    /// Whether some connections are waiting to be read again.
    pub fn has_resume(&self) -> bool {
        !self.resume.is_empty()
    }

    /// The peer closed its side.
    pub fn on_eof(&mut self, drv: &mut impl Driver, t: Token) {
        if let Some(slot) = self.slot_of(t) {
            self.release(drv, slot, CloseReason::PeerClosed);
        }
    }

    /// Reading failed.
    pub fn on_read_error(&mut self, drv: &mut impl Driver, t: Token) {
        if let Some(slot) = self.slot_of(t) {
            self.release(drv, slot, CloseReason::IoError);
        }
    }

    /// Bytes arrived for a connection.
    pub fn on_data(&mut self, drv: &mut impl Driver, now: Mono, t: Token, data: &[u8]) {
        self.on_input(drv, now, t, data, None);
    }

    /// Whether a connection would queue its input as it is (an echo listener's raw
    /// stream), so a backend holding the bytes in its own buffer can lend them
    /// ([`Core::on_data_lent`]) instead of having them copied.
    pub fn takes_lent(&self, t: Token) -> bool {
        self.slot_of(t)
            .and_then(|s| self.conns.get(s))
            .is_some_and(|c| c.kind == ListenerKind::Echo && c.phase != Phase::Closing)
    }

    /// The backend could not lend an echo's input (its buffers are short) and
    /// handed a copy instead.
    pub fn lend_refused(&self) {
        self.stats().uring_echo_copies.inc();
    }

    /// The backend served `n` connections without a registered file table entry.
    pub fn unfixed(&self, n: u64) {
        self.stats().uring_unfixed.add(n);
    }

    /// Bytes arrived for a connection, lent by the backend: an echo queues `data`
    /// itself (no copy); anything else reads it like [`Core::on_data`].
    pub fn on_data_lent(&mut self, drv: &mut impl Driver, now: Mono, t: Token, data: Bytes) {
        self.on_input(drv, now, t, &data, Some(&data));
    }

    /// `on_data`, with the same bytes as a `Bytes` when the backend lent them.
    fn on_input(
        &mut self,
        drv: &mut impl Driver,
        now: Mono,
        t: Token,
        data: &[u8],
        lent: Option<&Bytes>,
    ) {
        self.at(now);
        let Some(slot) = self.slot_of(t) else {
            return;
        };
        self.stats().bytes_in.add(data.len() as u64);
        let now = self.now;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.phase == Phase::Closing {
            c.discarded = c.discarded.saturating_add(data.len() as u32);
            // Only once the farewell is out: releasing with input unread resets the
            // connection, and a reset destroys what the peer has not read yet. Until
            // then the linger bounds it; during a graceful drain the drain deadline.
            if c.discarded as usize > self.settings.read_budget_bytes
                && c.write_shut
                && self.drain_deadline.is_none()
            {
                let reason = c.close_reason.unwrap_or(CloseReason::Server);
                self.release(drv, slot, reason);
            }
            return;
        }
        if !self.input_open {
            return;
        }
        if c.awaiting_proxy {
            return self.proxy_data(drv, slot, data);
        }
        if c.phase == Phase::Established {
            c.mark = now;
        }
        self.on_payload(drv, slot, data, lent);
    }

    /// A connection's own input (after any PROXY header): TLS records on a client
    /// connection that started TLS (or starts it now), else its dialect's bytes.
    /// `lent`: the same bytes, lent by the backend (see [`Core::on_data_lent`]).
    fn on_payload(
        &mut self,
        drv: &mut impl Driver,
        slot: usize,
        data: &[u8],
        lent: Option<&Bytes>,
    ) {
        let Some(c) = self.conns.get(slot) else {
            return;
        };
        let (kind, tls) = (c.kind, c.tls.is_some());
        if kind == ListenerKind::Client && (tls || self.start_tls(slot, data)) {
            self.on_tls_data(drv, slot, data);
            return;
        }
        match kind {
            ListenerKind::Echo => self.echo(drv, slot, data, lent),
            ListenerKind::Client | ListenerKind::WsEcho => self.on_client_data(drv, slot, data),
        }
    }

    /// Frames `data` (after any spilled partial frame) and hands each frame on.
    fn deframe(
        &mut self,
        drv: &mut impl Driver,
        slot: usize,
        data: &[u8],
    ) -> Result<(), frame::FrameError> {
        let Some(c) = self.conns.get_mut(slot) else {
            return Ok(());
        };
        let mut spill = c.spill.take();
        frame::deframe(
            &mut spill,
            data,
            self.settings.live.max_frame_bytes,
            |h, p| self.dispatch(drv, slot, h, p),
        )?;
        if let Some(c) = self.conns.get_mut(slot)
            && c.phase != Phase::Closing
        {
            c.spill.put(spill);
        }
        Ok(())
    }

    /// Hands one frame to the connection's worker (at [`Core::hand_off`], or now
    /// once the turn holds [`HOLD_EVENTS`] events or [`HOLD_BYTES`] of frames); false
    /// if the connection is gone or was closed because its worker's queue is full.
    fn dispatch(
        &mut self,
        drv: &mut impl Driver,
        slot: usize,
        header: FrameHeader,
        payload: &[u8],
    ) -> bool {
        let Some(c) = self.conns.get(slot) else {
            return false;
        };
        let id = self.conn_id(slot, c.generation);
        self.stats().frames_in.inc();
        self.stats().kinds_in.count(header.kind, header.wire_len());
        self.held_bytes = self.held_bytes.saturating_add(payload.len());
        let event = Event::Frame {
            conn: id,
            header,
            payload: Bytes::copy_from_slice(payload),
        };
        self.tell_worker(id, event);
        if self.held.len() < HOLD_EVENTS && self.held_bytes < HOLD_BYTES {
            return true;
        }
        // A flood must meet the worker queue's bound as it reads, not hold a
        // turn's worth of frames first.
        self.hand_off(drv);
        self.open_slot_of_id(id).is_some()
    }

    /// A protocol frame as connection `slot` receives it (its dialect's form).
    fn in_dialect(&self, slot: usize, frame: &Bytes) -> Option<Bytes> {
        dialect::message_for(self.conns.get(slot)?.dialect, frame)
    }

    /// Writes to a connection: queued, and the end-of-turn [`Core::flush_dirty`] (or
    /// writability) sends it with the rest of the turn's output for it; an echo
    /// listener's output goes straight to the socket if the backend writes
    /// synchronously and nothing is queued. Past `max_pending_bytes` of
    /// output the kernel has refused, the connection is closed as a slow consumer.
    fn send(&mut self, drv: &mut impl Driver, slot: usize, data: Bytes) {
        self.write_or_queue(drv, slot, data, self.settings.live.max_pending_bytes);
    }

    /// `send` with an explicit bound (a farewell frame may exceed the usual one). On
    /// a TLS connection `data` goes out as TLS records.
    fn write_or_queue(&mut self, drv: &mut impl Driver, slot: usize, data: Bytes, bound: u32) {
        let data = match self.conns.get_mut(slot) {
            Some(c) if c.tls.is_some() && !data.is_empty() => match self.seal(drv, slot, &data) {
                Some(records) => records,
                None => return,
            },
            _ => data,
        };
        self.queue_wire(drv, slot, data, bound);
    }

    /// Queues bytes for the wire as they are (see [`Core::write_or_queue`]).
    fn queue_wire(&mut self, drv: &mut impl Driver, slot: usize, mut data: Bytes, bound: u32) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.write_shut || data.is_empty() {
            return;
        }
        // Protocol output waits for the end of the turn, so frames for one
        // connection in one turn share a system call and a TCP segment (a chat run
        // made half the sends that way); an echo stream, which answers each read
        // with one write, goes out at once and holds no copy for the turn.
        if c.kind != ListenerKind::Client {
            match self.write_direct(drv, slot, &data) {
                Direct::Done => return,
                Direct::Refused(n) => {
                    data.advance(n);
                    self.queue_refused(drv, slot, data, bound);
                    return;
                }
                Direct::NotTried => {}
            }
        }
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let pending = u64::from(c.pending) + data.len() as u64;
        // A charged page or an HTTP answer still queued widens every frame's bound.
        let bound = bound.max(c.pending_bound(self.settings.live.max_pending_bytes));
        // Output not yet offered to the kernel may reach twice the bound in one turn
        // (what the kernel then takes does not count against the bound).
        let blocked = c.writable_armed || c.sending > 0;
        let cap = if blocked {
            u64::from(bound)
        } else {
            u64::from(bound) * 2
        };
        if pending > cap || pending > u64::from(u32::MAX) {
            self.over_bound(drv, slot);
            return;
        }
        enqueue(c, data, pending, now);
        if !blocked && !c.dirty {
            c.dirty = true;
            self.dirty.push(token(slot, c.generation));
        }
        // Also before the turn's send: a turn's input can queue far more than the
        // kernel will take at once.
        self.pause_if_backlogged(slot);
        self.publish(drv, slot);
    }

    /// Writes `data` at once when nothing is queued or in flight before it (the
    /// backend may decline: io_uring sends at the end of the turn). A failed write
    /// closes the connection ([`Direct::Done`]).
    fn write_direct(&mut self, drv: &mut impl Driver, slot: usize, data: &[u8]) -> Direct {
        let Some(c) = self.conns.get_mut(slot) else {
            return Direct::Done;
        };
        if !c.outq.is_empty() || c.sending != 0 {
            return Direct::NotTried;
        }
        match drv.write_now(&c.stream, data) {
            None => Direct::NotTried,
            Some(Sent::Wrote(n)) => {
                self.links.stats.bytes_out.add(n as u64);
                if n >= data.len() {
                    return Direct::Done;
                }
                c.head_started = n > 0;
                Direct::Refused(n)
            }
            Some(Sent::Blocked | Sent::Submitted(_)) => Direct::Refused(0),
            Some(Sent::Failed) => {
                self.release(drv, slot, CloseReason::IoError);
                Direct::Done
            }
        }
    }

    /// An echo listener answers a read with one write straight from the read
    /// buffer; only what the socket does not take is copied and queued (copying
    /// every read first was 5% of the daemon's samples in the echo flood). Where the
    /// backend sends at the end of the turn, bytes it lent (`lent`, io_uring's
    /// provided buffer) are queued as they are instead of copied.
    fn echo(&mut self, drv: &mut impl Driver, slot: usize, data: &[u8], lent: Option<&Bytes>) {
        match self.conns.get(slot) {
            Some(c) if !c.write_shut && !data.is_empty() => {}
            _ => return,
        }
        let bound = self.settings.live.max_pending_bytes;
        match self.write_direct(drv, slot, data) {
            Direct::Done => {}
            Direct::Refused(n) => {
                let rest = match lent {
                    Some(b) => b.slice(n..),
                    None => Bytes::copy_from_slice(&data[n..]),
                };
                self.queue_refused(drv, slot, rest, bound);
            }
            Direct::NotTried => {
                let data = lent
                    .cloned()
                    .unwrap_or_else(|| Bytes::copy_from_slice(data));
                self.send(drv, slot, data);
            }
        }
    }

    /// Queues what the kernel refused from a direct write and waits for
    /// writability.
    fn queue_refused(&mut self, drv: &mut impl Driver, slot: usize, data: Bytes, bound: u32) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let pending = u64::from(c.pending) + data.len() as u64;
        if pending > u64::from(bound) {
            if c.outq.is_empty() && c.head_started {
                // The kernel took the start of this frame: the cut keeps its rest.
                c.pending = u32::try_from(pending).unwrap_or(u32::MAX);
                c.outq.push_back(data);
                self.publish(drv, slot);
            }
            self.over_bound(drv, slot);
            return;
        }
        enqueue(c, data, pending, now);
        if !c.writable_armed {
            c.writable_armed = true;
            let t = token(slot, c.generation);
            if drv.set_writable(&mut c.stream, t, true).is_err() {
                self.release(drv, slot, CloseReason::IoError);
                return;
            }
        }
        self.pause_if_backlogged(slot);
        self.publish(drv, slot);
    }

    /// Brings the output ledger and the reactor's total up to date with a
    /// connection's queue (after any change of `pending`), lists it in the backlog
    /// while it has output queued, and enforces the daemon-wide budget when the
    /// total grew.
    fn publish(&mut self, drv: &mut impl Driver, slot: usize) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let delta = i64::from(c.pending) - i64::from(c.published);
        if delta == 0 {
            return;
        }
        c.published = c.pending;
        if c.phase != Phase::Closing {
            self.links
                .ledger
                .settle(self.id, slot as u32, c.generation, delta);
        }
        if c.pending > 0 && !c.listed {
            c.listed = true;
            self.backlog.push(token(slot, c.generation));
        }
        self.queued = self.queued.saturating_add_signed(delta);
        if delta > 0 && self.unpublished < 0 {
            // Publish what shrank before growing again, so growth that the total
            // does not show yet stays under one quantum.
            self.links
                .ledger
                .add_total(std::mem::take(&mut self.unpublished));
        }
        self.unpublished += delta;
        if self.unpublished.abs() >= TOTAL_QUANTUM {
            self.links
                .ledger
                .add_total(std::mem::take(&mut self.unpublished));
            self.note_pressure();
            if delta > 0 {
                self.enforce_total(drv);
            }
        }
    }

    /// Recomputes whether the daemon's output is under pressure (from the published
    /// total), logging changes at most once a second.
    fn note_pressure(&mut self) {
        let budget = self.settings.live.max_pending_total;
        let total = self.links.ledger.total();
        let on = total > budget / 2;
        if on == self.pressure {
            return;
        }
        self.pressure = on;
        if on {
            // Those already behind stop reading now, not at their next write.
            for &t in &self.backlog {
                if let Some(c) = self.conns.get_mut(untoken(t).0)
                    && c.generation == untoken(t).1
                    && c.pending > 0
                    && !c.read_paused
                {
                    c.read_paused = true;
                    self.links.stats.read_pauses.inc();
                }
            }
        }
        let Some(skipped) = self.pressure_log.pass(self.now.as_ms()) else {
            return;
        };
        if on {
            tracing::warn!(
                reactor = self.id,
                total,
                budget,
                changes_not_logged = skipped,
                "output over half of limits.max_pending_total: connections with output queued stop reading until it drains"
            );
        } else {
            tracing::info!(
                reactor = self.id,
                total,
                budget,
                changes_not_logged = skipped,
                "output back under half of limits.max_pending_total"
            );
        }
    }

    /// A connection is gone: its queued bytes leave the reactor's total.
    fn unpublish(&mut self, published: u32) {
        self.queued = self.queued.saturating_sub(u64::from(published));
        self.unpublished -= i64::from(published);
    }

    /// When the output queued at all reactors passed `limits.max_pending_total`, cuts
    /// this reactor's connections that owe the most until the excess is freed (or
    /// nothing is left here): the largest consumers go first, as with Redis' output
    /// buffer limits or NATS' slow consumers. The reactor whose growth passed the
    /// budget does it (another one may hold most of it and grow no more), so when two
    /// notice at once a little more than the excess may go.
    fn enforce_total(&mut self, drv: &mut impl Driver) {
        let budget = self.settings.live.max_pending_total;
        let total = self
            .links
            .ledger
            .total()
            .saturating_add_signed(self.unpublished);
        if self.shedding || total <= budget || self.queued == 0 {
            return;
        }
        self.shedding = true;
        let share = (total - budget).min(self.queued);
        let mut candidates: Vec<(u32, usize)> = self
            .backlog
            .iter()
            .filter_map(|&t| {
                let slot = self.slot_of(t)?;
                let c = self.conns.get(slot)?;
                (c.pending > 0).then_some((c.pending, slot))
            })
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        let before = self.queued;
        let mut cut = 0u32;
        for (_, slot) in candidates {
            if before.saturating_sub(self.queued) >= share {
                break;
            }
            match self.conns.get(slot).map(|c| c.phase) {
                Some(Phase::Closing) => {
                    let reason = self
                        .conns
                        .get(slot)
                        .and_then(|c| c.close_reason)
                        .unwrap_or(CloseReason::Server);
                    self.release(drv, slot, reason);
                }
                Some(_) => {
                    self.cut_slow_consumer(drv, slot, Cut::Total);
                    // A raw stream has no farewell to wait for, and what a send in
                    // flight still holds is freed only when it is cancelled.
                    if let Some(c) = self.conns.get(slot)
                        && c.kind == ListenerKind::Echo
                        && c.pending > 0
                    {
                        self.release(drv, slot, CloseReason::Error(ErrorCode::SlowConsumer));
                    }
                }
                None => {}
            }
            cut += 1;
        }
        self.links
            .ledger
            .add_total(std::mem::take(&mut self.unpublished));
        let Some(held_back) = self.shed_log.pass(self.now.as_ms()) else {
            self.shedding = false;
            return;
        };
        tracing::warn!(
            reactor = self.id,
            total,
            budget,
            cut,
            lines_held_back = held_back,
            freed = before.saturating_sub(self.queued),
            "output over limits.max_pending_total; cut the connections owing the most"
        );
        self.shedding = false;
    }

    /// Output past the bound: a closing connection is released (even its farewell
    /// does not fit), any other is cut as a slow consumer.
    fn over_bound(&mut self, drv: &mut impl Driver, slot: usize) {
        let Some(c) = self.conns.get(slot) else {
            return;
        };
        if c.phase == Phase::Closing {
            let reason = c.close_reason.unwrap_or(CloseReason::Server);
            self.release(drv, slot, reason);
            return;
        }
        self.cut_slow_consumer(drv, slot, Cut::MaxPending);
    }

    /// Stops reading a connection whose unsent output passed half the bound, or, while
    /// the daemon's output is under pressure, any connection with output queued.
    fn pause_if_backlogged(&mut self, slot: usize) {
        let threshold = if self.pressure {
            0
        } else {
            self.settings.live.max_pending_bytes / 2
        };
        if let Some(c) = self.conns.get_mut(slot)
            && c.pending > threshold
            && !c.read_paused
        {
            c.read_paused = true;
            self.links.stats.read_pauses.inc();
        }
    }

    /// Cuts a slow consumer: drops its queued output but what a send in flight covers
    /// and the rest of a partly written frame (so frame boundaries survive; a raw echo
    /// stream keeps only what is in flight), then closes it with `SLOW_CONSUMER`,
    /// whose `Error` frame follows what was kept.
    fn cut_slow_consumer(&mut self, drv: &mut impl Driver, slot: usize, why: Cut) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.phase == Phase::Closing {
            return;
        }
        let pending = c.pending;
        let keep = usize::from(c.sending).max(usize::from(c.head_started && c.kind.framed()));
        if let Some(tls) = c.tls.as_mut() {
            // Dropped records (queued, or the one that did not fit) leave a gap in
            // the record sequence: nothing sent after them would decrypt, so the
            // farewell is not sent either.
            tls.abandon();
        }
        c.outq.truncate(keep);
        c.pending = c.outq.iter().map(|b| b.len() as u32).sum();
        if c.outq.is_empty() {
            c.head_started = false;
        }
        let stalled_ms = now.ms_since(c.out_mark);
        self.links.stats.count_cut(why);
        if let Some(held_back) = self.cut_log.pass(now.as_ms()) {
            let peer = c.stream.peer_addr().ok();
            tracing::info!(
                reactor = self.id,
                ?peer,
                pending,
                stalled_ms,
                cause = why.label(),
                lines_held_back = held_back,
                "closing slow consumer"
            );
        }
        self.publish(drv, slot);
        self.close_with_error(drv, slot, ErrorCode::SlowConsumer, 0);
    }

    /// The socket can take more output.
    pub fn on_writable(&mut self, drv: &mut impl Driver, now: Mono, t: Token) {
        self.at(now);
        if let Some(slot) = self.slot_of(t) {
            self.flush(drv, slot);
        }
    }

    /// Writes the output queued during this turn: one `flush` per connection.
    pub fn flush_dirty(&mut self, drv: &mut impl Driver, now: Mono) {
        self.at(now);
        let mut list = std::mem::take(&mut self.dirty);
        for t in list.drain(..) {
            let Some(slot) = self.slot_of(t) else {
                continue;
            };
            if let Some(c) = self.conns.get_mut(slot) {
                c.dirty = false;
            }
            self.flush(drv, slot);
        }
        if self.dirty.is_empty() {
            // Keep the allocation for the next turn.
            self.dirty = list;
        }
    }

    /// An asynchronous send (see [`Sent::Submitted`]) completed with `res`: bytes
    /// written, or a negative errno.
    pub fn on_sent(&mut self, drv: &mut impl Driver, now: Mono, t: Token, res: i32) {
        self.at(now);
        let Some(slot) = self.slot_of(t) else {
            return;
        };
        let now = self.now;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let sending = std::mem::take(&mut c.sending);
        if sending == 0 {
            return;
        }
        match res {
            n if n > 0 => {
                let offered: usize = c.outq.iter().take(sending.into()).map(Bytes::len).sum();
                self.links.stats.bytes_out.add(n as u64);
                consume(c, n as usize);
                c.out_mark = now;
                // Only echo output borrows the backend's buffers.
                if (n as usize) < offered && c.kind == ListenerKind::Echo {
                    drv.unlend(c.outq.deque_mut());
                }
            }
            e if e == -libc::EAGAIN || e == -libc::EINTR => {
                if c.kind == ListenerKind::Echo {
                    drv.unlend(c.outq.deque_mut());
                }
                if !c.writable_armed {
                    c.writable_armed = true;
                    if drv.set_writable(&mut c.stream, t, true).is_err() {
                        self.release(drv, slot, CloseReason::IoError);
                    }
                }
                return;
            }
            // Cancelled: the connection is being released.
            e if e == -libc::ECANCELED => return,
            _ => {
                self.release(drv, slot, CloseReason::IoError);
                return;
            }
        }
        self.publish(drv, slot);
        let Some(c) = self.conns.get(slot) else {
            return;
        };
        let bound = c.pending_bound(self.settings.live.max_pending_bytes);
        if c.pending > bound && c.phase != Phase::Closing {
            self.over_bound(drv, slot);
            return;
        }
        self.pause_if_backlogged(slot);
        self.flush(drv, slot);
    }

    /// Offers a connection's queued output to the kernel until it is all written,
    /// the kernel refuses more (then writability is awaited), or an asynchronous
    /// send takes it (then its completion continues).
    fn flush(&mut self, drv: &mut impl Driver, slot: usize) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.sending > 0 {
            return;
        }
        let t = token(slot, c.generation);
        while !c.outq.is_empty() {
            match drv.send(&c.stream, t, &c.outq) {
                Sent::Wrote(n) if n > 0 => {
                    self.links.stats.bytes_out.add(n as u64);
                    consume(c, n);
                    c.out_mark = now;
                }
                Sent::Wrote(_) | Sent::Failed => {
                    self.release(drv, slot, CloseReason::IoError);
                    return;
                }
                Sent::Submitted(k) => {
                    c.sending = k.max(1);
                    self.publish(drv, slot);
                    return;
                }
                Sent::Blocked => {
                    if !c.writable_armed {
                        c.writable_armed = true;
                        if drv.set_writable(&mut c.stream, t, true).is_err() {
                            self.release(drv, slot, CloseReason::IoError);
                            return;
                        }
                    }
                    let bound = c.pending_bound(self.settings.live.max_pending_bytes);
                    if c.phase != Phase::Closing && c.pending > bound {
                        self.over_bound(drv, slot);
                    } else {
                        self.pause_if_backlogged(slot);
                        self.publish(drv, slot);
                    }
                    return;
                }
            }
        }
        // Caught up: drop the queue's storage so an idle connection owns nothing;
        // the room a large page or answer had is gone with it.
        c.outq.clear();
        c.pending = 0;
        c.head_started = false;
        c.allowance = 0;
        if c.writable_armed {
            c.writable_armed = false;
            if drv.set_writable(&mut c.stream, t, false).is_err() {
                self.release(drv, slot, CloseReason::IoError);
                return;
            }
        }
        if c.read_paused {
            c.read_paused = false;
            self.resume.push(t);
        }
        if c.phase == Phase::Closing && !c.write_shut {
            c.write_shut = true;
            let _ = c.stream.shutdown(Shutdown::Write);
        }
        self.publish(drv, slot);
    }

    /// Starts closing a connection: sends `farewell` (an `Error` or `Bye` frame) if
    /// given, stops handing input on, and closes once output is flushed and the peer
    /// has closed or `close_linger` passed. Reading continues (discarding) meanwhile so
    /// the peer sees the farewell instead of a reset.
    fn close_with(
        &mut self,
        drv: &mut impl Driver,
        slot: usize,
        reason: CloseReason,
        farewell: Option<Bytes>,
    ) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.phase == Phase::Closing {
            return;
        }
        c.phase = Phase::Closing;
        c.close_reason = Some(reason);
        c.spill.clear();
        c.ws = None;
        c.mark = now;
        let generation = c.generation;
        // Producers stop charging it: whatever they send now is dropped.
        self.links.ledger.close(self.id, slot as u32);
        // In the connection's dialect (raw echo streams carry no frames, so they
        // close without one); nothing is sent after it.
        let farewell = match c.dialect {
            Dialect::HttpBody | Dialect::HttpApi => {
                c.dialect = Dialect::Raw;
                self.api_farewell(slot, reason)
            }
            dialect => dialect::farewell_for(dialect, reason, farewell),
        };
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.dialect.is_ws() {
            c.dialect = Dialect::Raw;
            let code = dialect::ws_close_code(reason);
            self.links.stats.web.count_ws_close(code, true);
        }
        if c.read_paused {
            // Input waiting behind the pause must be drained (and discarded).
            self.resume.push(token(slot, generation));
        }
        let announced = std::mem::replace(&mut c.announced, false);
        self.links.stats.count_close(reason);
        self.timers.push(
            now.plus_ms(self.settings.live.linger_ms),
            slot as u32,
            generation,
        );
        if announced {
            let id = self.conn_id(slot, generation);
            self.tell_worker(id, Event::Closed { conn: id, reason });
        }
        if let Some(frame) = farewell {
            // A few bytes past what is queued, so even a slow consumer hears why (the
            // rest of a frame larger than the bound may be queued ahead of it).
            let queued = self.conns.get(slot).map_or(0, |c| c.pending);
            let bound = self
                .settings
                .live
                .max_pending_bytes
                .max(queued)
                .saturating_add(frame.len() as u32);
            self.write_or_queue(drv, slot, frame, bound);
        }
        self.queue_close_notify(drv, slot);
        // Says FIN now if nothing is queued; otherwise the last flush does.
        self.flush(drv, slot);
    }

    /// Closes with an `Error` frame carrying `code`.
    fn close_with_error(&mut self, drv: &mut impl Driver, slot: usize, code: ErrorCode, rid: u32) {
        let frame = frame::encode_status(Kind::Error.as_u8(), code.as_u16(), rid);
        self.close_with(drv, slot, CloseReason::Error(code), Some(frame));
    }

    /// Closes the socket now and forgets the connection.
    fn release(&mut self, drv: &mut impl Driver, slot: usize, reason: CloseReason) {
        let Some(mut c) = self.conns.try_remove(slot) else {
            return;
        };
        drv.deregister(&mut c.stream, token(slot, c.generation));
        self.api.forget(slot);
        if c.awaiting_proxy {
            self.links.limits.release_total();
        } else {
            self.links.limits.release(c.ip_key);
        }
        self.links.ledger.close(self.id, slot as u32);
        self.unpublish(c.published);
        if c.close_reason.is_none() {
            self.links.stats.count_close(reason);
        }
        if c.announced {
            let id = self.conn_id(slot, c.generation);
            let reason = c.close_reason.unwrap_or(reason);
            self.tell_worker(id, Event::Closed { conn: id, reason });
        }
        self.links.stats.open.set(self.conns.len() as u64);
    }

    /// Applies queued worker commands.
    pub fn run_commands(&mut self, drv: &mut impl Driver, now: Mono) {
        self.at(now);
        // The workers start on this turn's input while the commands are applied.
        self.hand_off(drv);
        for _ in 0..self.settings.command_batch {
            let Ok(cmd) = self.links.commands.try_recv() else {
                return;
            };
            match cmd {
                Command::Send { conn, frame } => {
                    if let Some(slot) = self.open_slot_of_id(conn) {
                        self.links.stats.kinds_out.count_encoded(&frame);
                        if !self.api_takes(drv, slot, &frame)
                            && let Some(bytes) = self.in_dialect(slot, &frame)
                        {
                            self.send(drv, slot, bytes);
                        }
                    }
                }
                Command::SendCharged { conn, frame } => {
                    if let Some(slot) = self.open_slot_of_id(conn) {
                        // The producer's charge becomes queued output (or none).
                        let charged = i64::try_from(frame.len()).unwrap_or(i64::MAX);
                        self.links
                            .ledger
                            .settle(self.id, conn.slot, conn.generation, -charged);
                        self.links.stats.kinds_out.count_encoded(&frame);
                        if self.api_takes(drv, slot, &frame) {
                            continue;
                        }
                        // Its producer sent it because the connection owed less than
                        // the bound (or nothing): it may take the queue to the bound
                        // plus this page, even behind events queued since.
                        let Some(bytes) = self.in_dialect(slot, &frame) else {
                            continue;
                        };
                        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                        let usual = self.settings.live.max_pending_bytes;
                        // And it keeps that room until the queue drains: the kernel
                        // taking only part of it, or a reply or event queued behind
                        // it, must not cut a client that reads.
                        if let Some(c) = self.conns.get_mut(slot) {
                            c.allow(c.pending_bound(usual).saturating_sub(usual).max(len));
                        }
                        self.write_or_queue(drv, slot, bytes, usual.saturating_add(len));
                    }
                }
                Command::Answer { conn, rid, body } => {
                    if let Some(slot) = self.open_slot_of_id(conn) {
                        self.api_answer(drv, slot, rid, body);
                        self.api_resume(drv);
                    }
                }
                Command::ConsoleLogin { conn, verdict } => {
                    self.console_verdict(drv, conn, verdict);
                }
                Command::File { conn, rid, file } => {
                    if let Some(slot) = self.open_slot_of_id(conn) {
                        self.api_file(drv, slot, rid, *file);
                        self.api_resume(drv);
                    }
                }
                Command::SendMany { conns, frame } => {
                    let mut encoded = dialect::PerDialect::new(frame.clone());
                    for conn in conns {
                        if let Some(slot) = self.open_slot_of_id(conn) {
                            self.links.stats.kinds_out.count_encoded(&frame);
                            let dialect = self.conns.get(slot).map_or(Dialect::Raw, |c| c.dialect);
                            if let Some(bytes) = encoded.get(dialect) {
                                self.send(drv, slot, bytes);
                            }
                        }
                    }
                }
                Command::Established { conn } => {
                    let now = self.now;
                    if let Some(c) = self.slot_of_id(conn).and_then(|s| self.conns.get_mut(s))
                        && c.phase == Phase::Handshake
                    {
                        c.phase = Phase::Established;
                        c.mark = now;
                        // The idle deadline may come before the handshake entry
                        // already in the heap (which then finds nothing to do).
                        let (slot, generation) = (conn.slot, c.generation);
                        self.timers
                            .push(now.plus_ms(self.settings.live.idle_ms), slot, generation);
                    }
                }
                Command::Close {
                    conn,
                    code,
                    farewell,
                } => {
                    if let Some(slot) = self.slot_of_id(conn) {
                        match (code, farewell) {
                            // A producer found the replies it holds back for this
                            // connection past their bound.
                            (Some(ErrorCode::SlowConsumer), None) => {
                                self.cut_slow_consumer(drv, slot, Cut::Deferred)
                            }
                            (Some(code), None) => self.close_with_error(drv, slot, code, 0),
                            (code, farewell) => {
                                let reason = code.map_or(CloseReason::Server, CloseReason::Error);
                                self.close_with(drv, slot, reason, farewell);
                            }
                        }
                    }
                }
                Command::ClientBye { conn } => {
                    if let Some(slot) = self.slot_of_id(conn) {
                        self.close_with(drv, slot, CloseReason::ClientBye, None);
                    }
                }
                Command::StopInput(ack) => {
                    drv.stop_accepting();
                    self.input_open = false;
                    // Everything read so far reaches the workers before the
                    // shutdown's barrier follows it.
                    self.hand_off(drv);
                    let _ = ack.send(());
                }
                Command::Drain { deadline } => self.begin_drain(drv, deadline),
                Command::Limits(l) => self.settings.live = l,
                Command::VisitorSigner(v) => self.visitor_desk.signer = Some(v),
                Command::Tls(config) => self.settings.tls = config,
            }
        }
    }

    /// Fires the deadlines due at `now`; returns how long until the next one.
    pub fn run_timers(&mut self, drv: &mut impl Driver, now: Mono) -> Option<Duration> {
        self.at(now);
        let now = self.now;
        while let Some(e) = self.timers.pop_due(now) {
            let slot = e.slot as usize;
            let Some(c) = self.conns.get(slot) else {
                continue;
            };
            if c.generation != e.generation {
                continue;
            }
            // A paused connection is not idle: we stopped reading it, not the peer
            // sending.
            let due = if c.read_paused && c.phase == Phase::Established {
                now.plus_ms(self.settings.live.idle_ms)
            } else if c.pending > 0 && c.phase == Phase::Handshake {
                // An HTTP answer (a file) still going out: the deadline runs from its
                // last progress (no progress at all is `limits.stall_timeout`'s).
                self.deadline_of(c)
                    .max(c.out_mark.plus_ms(self.settings.live.handshake_ms))
            } else {
                self.deadline_of(c)
            };
            if due > now {
                self.timers.push(due, e.slot, e.generation);
                continue;
            }
            match c.phase {
                Phase::Handshake if c.awaiting_proxy => self.proxy_timed_out(drv, slot),
                Phase::Handshake => {
                    self.close_with_error(drv, slot, ErrorCode::HandshakeTimeout, 0)
                }
                Phase::Established => self.close_with_error(drv, slot, ErrorCode::IdleTimeout, 0),
                // A graceful drain is bounded by its own deadline, not the linger.
                Phase::Closing if self.drain_deadline.is_some() && !c.write_shut => {
                    let next = now.plus_ms(self.settings.live.linger_ms);
                    self.timers.push(next, e.slot, e.generation);
                }
                Phase::Closing => self.release(drv, slot, CloseReason::Server),
            }
        }
        if !self.backlog.is_empty() && now >= self.next_sweep {
            self.sweep(drv, now);
            self.next_sweep = now.plus_ms(self.sweep_interval());
        }
        let mut wait = self.timers.next_deadline().map(|d| d.since(now));
        if !self.backlog.is_empty() {
            let sweep = self.next_sweep.since(now);
            wait = Some(wait.map_or(sweep, |w| w.min(sweep)));
        }
        if let Some(deadline) = self.drain_deadline {
            let left = deadline.since(now);
            wait = Some(wait.map_or(left, |w| w.min(left)));
        }
        wait
    }

    /// How often the backlog is swept: often enough to notice a stall within a
    /// quarter of `limits.stall_timeout`.
    fn sweep_interval(&self) -> u64 {
        (self.settings.live.stall_ms / 4).clamp(1, SWEEP_MS)
    }

    /// Walks the backlog: forgets connections that caught up, cuts those whose
    /// queued output made no progress for `limits.stall_timeout` (their peer reads
    /// nothing: paused, such a connection could neither read nor write), and, while
    /// draining, drops closing connections whose farewell cannot get out.
    fn sweep(&mut self, drv: &mut impl Driver, now: Mono) {
        let list = std::mem::take(&mut self.backlog);
        let mut stalled = Vec::new();
        let mut hopeless = Vec::new();
        for t in list {
            let Some(slot) = self.slot_of(t) else {
                continue;
            };
            let Some(c) = self.conns.get_mut(slot) else {
                continue;
            };
            if c.pending == 0 {
                c.listed = false;
                continue;
            }
            self.backlog.push(t);
            let quiet = now.ms_since(c.out_mark);
            match c.phase {
                Phase::Closing if quiet >= self.drain_stall_ms => hopeless.push(slot),
                Phase::Closing => {}
                _ if quiet >= self.settings.live.stall_ms => stalled.push((slot, quiet)),
                _ => {}
            }
        }
        if !stalled.is_empty() && self.kernel_short_of_tcp_memory(now) {
            let patience = self
                .settings
                .live
                .stall_ms
                .saturating_mul(KERNEL_PRESSURE_STALL_FACTOR);
            stalled.retain(|&(_, quiet)| quiet >= patience);
        }
        for (slot, _) in stalled {
            self.cut_slow_consumer(drv, slot, Cut::Stalled);
        }
        for slot in hopeless {
            let reason = self
                .conns
                .get(slot)
                .and_then(|c| c.close_reason)
                .unwrap_or(CloseReason::Shutdown);
            tracing::debug!(
                reactor = self.id,
                slot,
                "draining: dropping a connection whose output is stuck"
            );
            self.release(drv, slot, reason);
        }
    }

    /// Whether the kernel's TCP memory is under pressure (asked at most once a
    /// second, and only when a connection's output has stalled); counted in the
    /// `kernel_tcp_memory_pressure` gauge and logged when it starts.
    fn kernel_short_of_tcp_memory(&mut self, now: Mono) -> bool {
        let (asked, was) = self.kernel_pressure;
        if asked.is_some_and(|t| now.ms_since(t) < KERNEL_PRESSURE_CHECK_MS) {
            return was;
        }
        let on = (self.kernel_pressure_probe)();
        self.kernel_pressure = (Some(now), on);
        self.links.stats.kernel_tcp_pressure.set(u64::from(on));
        if on && !was {
            tracing::warn!(
                reactor = self.id,
                "kernel TCP memory under pressure (net.ipv4.tcp_mem): stalled output may \
                 not be the peers' fault; cutting stalled connections only after \
                 6 x limits.stall_timeout meanwhile"
            );
        }
        on
    }

    /// Shutdown phase two: tells protocol clients `Bye`, closes every connection
    /// once flushed.
    fn begin_drain(&mut self, drv: &mut impl Driver, deadline: Instant) {
        let deadline = self.clock.at(deadline);
        self.drain_deadline = Some(deadline);
        // Output that made no progress for half the drain's time will not get out
        // in the other half either.
        self.drain_stall_ms = deadline.ms_since(self.now) / 2;
        self.next_sweep = Mono::ZERO;
        self.input_open = false;
        // One Bye for everyone; closing connections already said their farewell
        // (close_with ignores them).
        let bye = frame::encode_status(Kind::Bye.as_u8(), ErrorCode::ShuttingDown.as_u16(), 0);
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.close_with(drv, slot, CloseReason::Shutdown, Some(bye.clone()));
        }
    }

    /// When draining: true once every connection has flushed and said FIN, or the
    /// deadline passed by `now`. Always false when not draining.
    pub fn drain_finished(&self, now: Mono) -> bool {
        match self.drain_deadline {
            None => false,
            Some(deadline) => {
                now >= deadline
                    || (self.resume.is_empty() && self.conns.iter().all(|(_, c)| c.write_shut))
            }
        }
    }
}

/// Drops `n` written bytes from the head of a connection's queue.
/// Appends `data` to a connection's output queue; `pending` (checked against its
/// bound, so within `u32`) is the queue's new total.
fn enqueue(c: &mut Conn, data: Bytes, pending: u64, now: Mono) {
    if c.outq.is_empty() {
        c.out_mark = now;
    }
    c.pending = u32::try_from(pending).unwrap_or(u32::MAX);
    c.outq.push_back(data);
}

fn consume(c: &mut Conn, n: usize) {
    c.pending = c.pending.saturating_sub(n as u32);
    let mut left = n;
    while left > 0 {
        let Some(front) = c.outq.front_mut() else {
            break;
        };
        if front.len() <= left {
            left -= front.len();
            c.outq.pop_front();
            c.head_started = false;
        } else {
            front.advance(left);
            c.head_started = true;
            left = 0;
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

#[path = "web.rs"]
mod web;
#[path = "web_api.rs"]
mod web_api;
#[path = "web_visitors.rs"]
mod web_visitors;

#[path = "web_console.rs"]
mod web_console;

#[path = "proxied.rs"]
mod proxied;
#[path = "tls_io.rs"]
mod tls_io;
pub(crate) use super::dialect::WebSettings;
pub(crate) use proxied::ProxyListeners;
