//! The connection engine: one mio event loop per thread, owning a share of the
//! connections in a `slab` (a socket, a few counters, and the scenario's small
//! per-connection state each). No thread or task per connection.
//!
//! A thread's life has four stages, driven by its coordinator through [`Control`]:
//!
//! 1. **connecting** — opens its connections (paced by `--rate`, at most its share of
//!    `--max-inflight` being set up at once): non-blocking `connect` from a socket
//!    bound to its source address, then `Hello` → `Welcome` in protocol mode. A
//!    connection not established within `--connect-timeout` fails with `timeout`.
//!    When all are established or failed, it reports [`ThreadEvent::Opened`];
//! 2. **opened** — keeps them alive (heartbeats) until the coordinator sets `go`
//!    (once every thread of every process has opened its connections);
//! 3. **steady** — `go + warmup + duration`: the scenario generates load; samples
//!    count from `go + warmup`. Scenarios with a drain period (`chat`, `fanout`:
//!    `--drain`) then keep reading for it with no new load, so messages in flight are
//!    still counted. Then it reports [`ThreadEvent::Final`] with its [`Stats`];
//! 4. **done** — keeps the connections open (answering pings, heartbeats) until the
//!    coordinator sets `release` (after sampling the server's memory), then closes them
//!    all (`SO_LINGER 0`: no `TIME_WAIT` left behind) and returns.
//!
//! Over a WebSocket (`--transport ws-json|ws-bin`) a connection upgrades after the TCP
//! connect (phase `Upgrading`: the request, then the `101` checked with its accept
//! key), and [`Ctx::send`] wraps what a scenario sends: each frame as one JSON text
//! (ws-json) or the frames as one binary message (ws-bin), masked with a fresh key;
//! server messages are unwrapped ([`crate::ws::Reader`]) and fed to the same frame
//! handling (JSON texts through `json_to_frame`). Server pings get pongs; a Close is
//! answered with a Close and ends the connection with the error kind `ws_close_<code>`.
//!
//! Reads land in one 64 KiB buffer per thread; protocol frames are cut by the
//! crate's own incremental deframer ([`frame::deframe`]), whose spill buffer holds
//! only a partial frame. Writes go straight to the socket; what the kernel refuses
//! waits in a per-connection queue flushed on the next writable event. Sockets are
//! registered once for both directions (edge-triggered), so there are no re-register
//! calls on the hot path. Deadlines (connect timeouts, scenario timers) live in one
//! min-heap per thread with lazy deletion.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};
use slab::Slab;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use switchboard::frame::{self, FrameHeader};
use switchboard::protocol::json::{JsonLimits, frame_to_json, json_to_frame};
use switchboard::protocol::messages::{Hello, Welcome};
use switchboard::protocol::{ErrorCode, Kind, Msg, PROTOCOL_VERSION};
use switchboard::ws::{Opcode, Subprotocol};

use crate::cli::{Plan, ScenarioKind, Transport};
use crate::scenario::Scenario;
use crate::sources;
use crate::stats::{Clock, Meter, Stats};
use crate::tls::{tls_config, tls_error_kind, tls_output, tls_read};
use crate::token::{self, Minter};
use crate::ws::{self, Rng, WsEvent};

/// Largest frame payload accepted from the server.
const MAX_FRAME: u32 = frame::MAX_PAYLOAD_LIMIT;
/// The per-thread read buffer.
const READ_BUF: usize = 64 * 1024;
/// Longest sleep in `poll`, so flags from the coordinator are seen promptly.
const TICK: Duration = Duration::from_millis(20);
/// Most connections started per loop turn, so events keep being served.
const STARTS_PER_TURN: usize = 128;
/// A drained write queue keeps at most this much capacity.
const KEEP_OUT_CAPACITY: usize = 64 * 1024;

/// Live counters of one thread, read by the coordinator for the progress line.
#[derive(Debug, Default)]
pub struct Live {
    /// Established and open now.
    pub open: AtomicU64,
    /// Being set up now.
    pub connecting: AtomicU64,
    /// Established so far.
    pub connected: AtomicU64,
    /// Messages completed so far (warm-up included).
    pub messages: AtomicU64,
    /// Bytes received so far.
    pub bytes_in: AtomicU64,
    /// Errors so far.
    pub errors: AtomicU64,
}

/// A sum of [`Live`] counters at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Established and open now.
    pub open: u64,
    /// Being set up now.
    pub connecting: u64,
    /// Established so far.
    pub connected: u64,
    /// Messages so far.
    pub messages: u64,
    /// Bytes received so far.
    pub bytes_in: u64,
    /// Errors so far.
    pub errors: u64,
}

impl Snapshot {
    /// Adds another snapshot.
    pub fn add(&mut self, o: &Snapshot) {
        self.open += o.open;
        self.connecting += o.connecting;
        self.connected += o.connected;
        self.messages += o.messages;
        self.bytes_in += o.bytes_in;
        self.errors += o.errors;
    }
}

/// Shared between a process's coordinator and its engine threads.
#[derive(Debug)]
pub struct Control {
    /// When the steady stage starts (set once, when every connection is open).
    pub go: OnceLock<Instant>,
    /// End now: stop connecting, end the steady stage early.
    pub stop: AtomicBool,
    /// Close everything and exit (after the final stats were sent).
    pub release: AtomicBool,
    /// One set of live counters per thread.
    pub live: Vec<Arc<CachePadded<Live>>>,
}

impl Control {
    /// Controls for `threads` threads.
    pub fn new(threads: usize) -> Self {
        Self {
            go: OnceLock::new(),
            stop: AtomicBool::new(false),
            release: AtomicBool::new(false),
            live: (0..threads).map(|_| Arc::default()).collect(),
        }
    }

    /// The sum of all threads' live counters.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for l in &self.live {
            s.add(&Snapshot {
                open: l.open.load(Relaxed),
                connecting: l.connecting.load(Relaxed),
                connected: l.connected.load(Relaxed),
                messages: l.messages.load(Relaxed),
                bytes_in: l.bytes_in.load(Relaxed),
                errors: l.errors.load(Relaxed),
            });
        }
        s
    }
}

/// What a thread tells its coordinator.
#[derive(Debug)]
pub enum ThreadEvent {
    /// Every connection of the thread is established or failed.
    Opened,
    /// The thread's measurements; it now holds its connections until released.
    Final(Box<Stats>),
    /// Thread `.0` could not run.
    Failed(usize, String),
}

/// What one engine thread is asked to do.
#[derive(Debug, Clone)]
pub struct ThreadSpec {
    /// This thread's number.
    pub thread: usize,
    /// Threads in this process.
    pub threads: usize,
    /// The run.
    pub plan: Arc<Plan>,
    /// Token minting (protocol mode).
    pub minter: Option<Arc<Minter>>,
    /// When the run started.
    pub t0: Instant,
    /// For windows in Unix time.
    pub clock: Clock,
}

impl ThreadSpec {
    /// Connections this thread opens: process-local indices `thread, thread +
    /// threads, ...` below the process's count.
    pub fn share(&self) -> u64 {
        let n = self.plan.connections;
        let (t, ts) = (self.thread as u64, self.threads.max(1) as u64);
        if t >= n { 0 } else { (n - t - 1) / ts + 1 }
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect in progress.
    Connecting,
    /// `--tls`: ClientHello sent, the TLS handshake in progress.
    TlsHandshaking,
    /// WebSocket transports: upgrade request sent, waiting for the `101`.
    Upgrading,
    /// `Hello` sent, waiting for `Welcome`.
    Handshaking,
    /// Established.
    Open,
}

/// Why a connection is being closed: an error kind for the report.
type CloseReason = String;

/// The engine's part of a connection (the scenario's part is `S::Conn`).
#[derive(Debug)]
pub struct Core {
    sock: TcpStream,
    slot: usize,
    generation: u32,
    /// Process-local index.
    index: u64,
    phase: Phase,
    started: Instant,
    /// The `Hello` frame, until sent.
    hello: Option<bytes::Bytes>,
    /// Bytes the kernel refused, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    /// The one live deadline (older heap entries are stale).
    timer: Option<Instant>,
    /// Set when the connection must close; the engine closes it after the callback.
    close: Option<CloseReason>,
    next_request_id: u32,
    /// `--tls`: the session; everything sent is encrypted, everything read decrypted.
    tls: Option<Box<rustls::ClientConnection>>,
}

impl Core {
    fn fail(&mut self, kind: impl Into<String>) {
        if self.close.is_none() {
            self.close = Some(kind.into());
        }
    }

    fn queued(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Writes as much of `bytes` as the kernel takes now; returns how much.
    fn write_now(&mut self, bytes: &[u8]) -> usize {
        let mut done = 0;
        while done < bytes.len() {
            let rest = bytes.get(done..).unwrap_or_default();
            match self.sock.write(rest) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(classify(&e));
                    break;
                }
            }
        }
        done
    }

    /// Writes queued bytes; returns how many went out.
    fn flush(&mut self) -> usize {
        let mut total = 0;
        while self.out_pos < self.out.len() && self.close.is_none() {
            let n = {
                let rest = self.out.get(self.out_pos..).unwrap_or_default();
                match self.sock.write(rest) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.fail(classify(&e));
                        break;
                    }
                }
            };
            self.out_pos += n;
            total += n;
        }
        if self.out_pos >= self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > KEEP_OUT_CAPACITY {
                self.out = Vec::new();
            }
        }
        total
    }
}

/// Per-thread bookkeeping the scenario callbacks can reach through [`Ctx`].
#[derive(Debug)]
pub struct Book {
    stats: Stats,
    timers: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    live: Arc<CachePadded<Live>>,
    protocol: bool,
    /// TCP or WebSocket (and which dialect).
    transport: Transport,
    /// Masks and keys (WebSocket transports).
    rng: Rng,
    /// Reused for framing outbound WebSocket messages.
    scratch: Vec<u8>,
    /// `--tls`: this thread's client configuration (its own session store, so
    /// `--tls-resume` resumes with tickets this thread received) and the name.
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// Load generation allowed (the steady stage).
    steady: bool,
    inflight: usize,
    open: u64,
    first_start: Option<Instant>,
    last_measured_connect: Option<Instant>,
}

impl Book {
    fn error(&mut self, kind: &str) {
        self.stats.error(kind);
        self.live.errors.fetch_add(1, Relaxed);
    }
}

/// What the engine tells a scenario when a connection is established.
#[derive(Debug, Clone, Copy)]
pub struct Opened<'a> {
    /// Connect start → `Welcome` (protocol) or → TCP connected (raw).
    pub latency: Duration,
    /// The server's `Welcome` (protocol mode).
    pub welcome: Option<&'a Welcome>,
}

/// A scenario's handle on one connection during a callback.
#[derive(Debug)]
pub struct Ctx<'a> {
    now: Instant,
    core: &'a mut Core,
    book: &'a mut Book,
}

impl Ctx<'_> {
    /// The time of the event being handled.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The connection's process-local index (stable; use it to spread timers).
    pub fn index(&self) -> u64 {
        self.core.index
    }

    /// Whether the steady stage is on (scenarios generate load only then).
    pub fn steady(&self) -> bool {
        self.book.steady
    }

    /// Sends `bytes` in order: straight to the socket, the rest queued. Over a
    /// WebSocket, `bytes` (one or more binary frames in protocol mode, raw data for
    /// echo) become masked messages: one binary message (ws-bin), or one JSON text
    /// per frame (ws-json).
    pub fn send(&mut self, bytes: &[u8]) {
        if self.core.close.is_some() {
            return;
        }
        match self.book.transport {
            Transport::Tcp => self.send_wire(bytes),
            Transport::WsBin => {
                let mut out = std::mem::take(&mut self.book.scratch);
                out.clear();
                ws::push_frame(&mut out, Opcode::Binary, bytes, self.book.rng.mask());
                self.send_wire(&out);
                self.book.scratch = out;
            }
            Transport::WsJson => {
                let mut out = std::mem::take(&mut self.book.scratch);
                out.clear();
                let mut rest = bytes;
                while !rest.is_empty() {
                    let len = match frame::decode(rest, MAX_FRAME) {
                        Ok(Some(d)) => d.consumed,
                        _ => {
                            self.core.fail("json_encode");
                            break;
                        }
                    };
                    let (one, tail) = rest.split_at(len.min(rest.len()));
                    rest = tail;
                    match frame_to_json(one) {
                        Ok(text) => {
                            ws::push_frame(&mut out, Opcode::Text, &text, self.book.rng.mask());
                        }
                        Err(_) => {
                            self.core.fail("json_encode");
                            break;
                        }
                    }
                }
                self.send_wire(&out);
                self.book.scratch = out;
            }
        }
    }

    /// Sends `chunk` cut into messages of `size` bytes, each its own masked binary
    /// WebSocket message, in one write (the echo scenario over a WebSocket).
    pub fn send_messages(&mut self, chunk: &[u8], size: usize) {
        if self.core.close.is_some() {
            return;
        }
        let mut out = std::mem::take(&mut self.book.scratch);
        out.clear();
        for msg in chunk.chunks(size.max(1)) {
            ws::push_frame(&mut out, Opcode::Binary, msg, self.book.rng.mask());
        }
        self.send_wire(&out);
        self.book.scratch = out;
    }

    /// Whether the connection is a WebSocket.
    pub fn is_ws(&self) -> bool {
        self.book.transport.is_ws()
    }

    /// Bytes queued behind what the kernel took.
    pub fn queued(&self) -> usize {
        self.core.queued()
    }

    /// Sends bytes exactly as they are, in order (over TLS: as records).
    fn send_wire(&mut self, bytes: &[u8]) {
        if self.core.close.is_some() {
            return;
        }
        if let Some(tls) = self.core.tls.as_mut() {
            if let Err(e) = tls.writer().write_all(bytes) {
                self.core.fail(format!("tls_{}", classify(&e)));
                return;
            }
            let wire = tls_output(tls);
            self.send_raw(&wire);
            return;
        }
        self.send_raw(bytes);
    }

    /// Sends bytes to the socket as they are: what the kernel takes now, the rest
    /// queued.
    fn send_raw(&mut self, bytes: &[u8]) {
        if self.core.close.is_some() {
            return;
        }
        let written = if self.core.queued() == 0 {
            self.core.write_now(bytes)
        } else {
            0
        };
        self.book.stats.sent(self.now, written);
        if written < bytes.len() && self.core.close.is_none() {
            self.core
                .out
                .extend_from_slice(bytes.get(written..).unwrap_or_default());
        }
    }

    /// Writes what the kernel takes of `bytes` now, queueing nothing; returns how
    /// much (0 when the socket is full or something is queued already).
    pub fn write_some(&mut self, bytes: &[u8]) -> usize {
        if self.core.close.is_some() || self.core.queued() > 0 {
            return 0;
        }
        if self.core.tls.is_some() {
            // Records cannot be cut where the kernel stops: all of it, the rest queued.
            self.send_wire(bytes);
            return bytes.len();
        }
        let n = self.core.write_now(bytes);
        self.book.stats.sent(self.now, n);
        n
    }

    /// Arms the connection's timer (replacing an earlier one).
    pub fn set_timer(&mut self, at: Instant) {
        self.core.timer = Some(at);
        self.book
            .timers
            .push(Reverse((at, self.core.slot, self.core.generation)));
    }

    /// A fresh non-zero request id.
    pub fn request_id(&mut self) -> u32 {
        self.core.next_request_id = self.core.next_request_id.wrapping_add(1).max(2);
        self.core.next_request_id
    }

    /// A round trip of `d` completed now (one message, one latency sample).
    pub fn round_trip(&mut self, d: Duration) {
        self.book.live.messages.fetch_add(1, Relaxed);
        self.book.stats.round_trip(self.now, d);
    }

    /// `n` messages completed now, without a latency sample.
    pub fn messages(&mut self, n: u64) {
        self.book.live.messages.fetch_add(n, Relaxed);
        self.book.stats.messages(self.now, n);
    }

    /// A latency sample without a message.
    pub fn latency(&mut self, d: Duration) {
        self.book.stats.latency(self.now, d);
    }

    /// A sample of `d` in the scenario's named histogram `name` (gated like
    /// [`Ctx::latency`]).
    pub fn sample(&mut self, name: &str, d: Duration) {
        self.book.stats.sample(name, self.now, d, false);
    }

    /// A sample of `d` in the scenario's named histogram `name`, whenever it
    /// completes (warm-up and drain included).
    pub fn sample_always(&mut self, name: &str, d: Duration) {
        self.book.stats.sample(name, self.now, d, true);
    }

    /// Adds `n` to the scenario's counter `name` (not gated: warm-up included).
    pub fn count(&mut self, name: &str, n: u64) {
        self.book.stats.count(name, n);
    }

    /// Raises the scenario's maximum `name` to `v`.
    pub fn max(&mut self, name: &str, v: u64) {
        self.book.stats.max(name, v);
    }

    /// Counts one error of `kind` without closing the connection.
    pub fn error(&mut self, kind: &str) {
        self.book.error(kind);
    }

    /// Closes the connection with an error of `kind`.
    pub fn fail(&mut self, kind: impl Into<String>) {
        self.core.fail(kind);
    }
}

/// The error kind of an I/O error, for the report.
pub fn classify(e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => return "too_many_open_files".into(),
        Some(libc::ENETUNREACH | libc::EHOSTUNREACH) => return "unreachable".into(),
        _ => {}
    }
    match e.kind() {
        K::ConnectionRefused => "refused".into(),
        K::TimedOut => "timeout".into(),
        K::ConnectionReset | K::ConnectionAborted => "reset".into(),
        K::BrokenPipe => "broken_pipe".into(),
        K::AddrNotAvailable => "addr_not_available".into(),
        K::AddrInUse => "addr_in_use".into(),
        _ => match e.raw_os_error() {
            Some(code) => format!("os_error_{code}"),
            None => format!("io_{:?}", e.kind()).to_lowercase(),
        },
    }
}

/// The error kind for a server `Error` frame with `code`.
pub fn server_error_kind(code: u16) -> String {
    match ErrorCode::from_u16(code) {
        Some(c) => format!("server_error_{code}_{}", c.name()),
        None => format!("server_error_{code}"),
    }
}

/// The error kind for a server `Bye` with `code`.
pub fn bye_kind(code: u16) -> String {
    match ErrorCode::from_u16(code) {
        Some(c) => format!("bye_{code}_{}", c.name()),
        None => format!("bye_{code}"),
    }
}

/// A frame for `msg` (used by scenarios and the handshake).
pub fn msg_frame(msg: &Msg, request_id: u32) -> bytes::Bytes {
    msg.to_frame(request_id)
}

struct Conn<C> {
    /// The deframer's partial frame (empty and unallocated between frames).
    spill: Vec<u8>,
    /// WebSocket transports: the upgrade and the frame reader.
    ws: Option<Box<WsConn>>,
    core: Core,
    st: C,
}

/// A WebSocket connection's client state.
#[derive(Debug, Default)]
struct WsConn {
    /// The `Sec-WebSocket-Key` sent (until the `101`).
    key: String,
    /// The response head so far (until the `101`).
    head: Vec<u8>,
    reader: ws::Reader,
}

/// Bounds on the server's JSON texts: the protocol's largest frame, in JSON.
const JSON_LIMITS: JsonLimits = JsonLimits {
    max_bytes: 2 * MAX_FRAME as usize,
    max_depth: 16,
};
/// Largest WebSocket message accepted from the server.
const MAX_WS_MESSAGE: usize = MAX_FRAME as usize;

/// The subprotocol offered for `transport` in `protocol` mode (none for raw echo).
fn subprotocol(transport: Transport, protocol: bool) -> Option<&'static str> {
    match (transport, protocol) {
        (Transport::Tcp, _) | (_, false) => None,
        (Transport::WsJson, true) => Some(Subprotocol::Json.name()),
        (Transport::WsBin, true) => Some(Subprotocol::Bin.name()),
    }
}

/// Where the thread is in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Opened,
    /// Load until `end`, then (scenarios with a drain period) no new load until
    /// `until`, so messages in flight can still arrive and be counted.
    Steady {
        end: Instant,
        until: Instant,
    },
    Done,
}

/// One thread's event loop.
struct Engine<S: Scenario> {
    spec: ThreadSpec,
    poll: Poll,
    conns: Slab<Conn<S::Conn>>,
    book: Book,
    scenario: S,
    /// Next local ordinal to start, and how many this thread opens.
    next_k: u64,
    to_start: u64,
    /// Per-thread connect rate and in-flight bound.
    rate: f64,
    max_inflight: usize,
    generation: u32,
    ctl: Arc<Control>,
    /// `--tls`: decrypted bytes of one read, handed on like plaintext reads.
    plain: Vec<u8>,
}

/// Runs one engine thread to the end, reporting to `tx`.
pub fn run_thread<S: Scenario>(
    spec: ThreadSpec,
    scenario: S,
    ctl: Arc<Control>,
    tx: Sender<ThreadEvent>,
) {
    let thread = spec.thread;
    let result = Engine::new(spec, scenario, ctl).and_then(|mut e| e.run(&tx));
    if let Err(e) = result {
        let _ = tx.send(ThreadEvent::Failed(thread, e.to_string()));
    }
}

impl<S: Scenario> Engine<S> {
    fn new(spec: ThreadSpec, scenario: S, ctl: Arc<Control>) -> io::Result<Self> {
        let plan = spec.plan.clone();
        let to_start = spec.share();
        let live = ctl
            .live
            .get(spec.thread)
            .cloned()
            .ok_or_else(|| io::Error::other("no live counters for this thread"))?;
        let mut stats = Stats::default();
        // The connect scenario measures connections: its window opens after the
        // warm-up counted from the start. The others measure connect latency of every
        // connection; their main window opens at `go`.
        if plan.scenario == ScenarioKind::Connect {
            stats.meter = Meter::from(spec.t0 + plan.warmup);
            stats.connect_meter = stats.meter;
        } else {
            stats.connect_meter = Meter::from(spec.t0);
        }
        let threads = spec.threads.max(1);
        let rate = if plan.connections > 0 {
            plan.connect_rate * to_start as f64 / plan.connections as f64
        } else {
            0.0
        };
        Ok(Self {
            poll: Poll::new()?,
            conns: Slab::with_capacity(usize::try_from(to_start).unwrap_or(0).min(1 << 20)),
            book: Book {
                stats,
                timers: BinaryHeap::new(),
                live,
                protocol: plan.protocol,
                transport: plan.transport,
                rng: Rng::from_entropy(spec.thread as u64 + 1),
                scratch: Vec::new(),
                tls: match &plan.tls {
                    Some(t) => Some(tls_config(t, plan.transport)?),
                    None => None,
                },
                steady: false,
                inflight: 0,
                open: 0,
                first_start: None,
                last_measured_connect: None,
            },
            scenario,
            next_k: 0,
            to_start,
            rate,
            max_inflight: (plan.max_inflight / threads).max(1),
            generation: 0,
            ctl,
            spec,
            plain: Vec::new(),
        })
    }

    fn run(&mut self, tx: &Sender<ThreadEvent>) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; READ_BUF];
        let mut stage = Stage::Connecting;
        loop {
            let now = Instant::now();
            let stop = self.ctl.stop.load(Relaxed);
            match stage {
                Stage::Connecting => {
                    if stop {
                        self.abort_connecting();
                    } else {
                        self.start_due(now);
                    }
                    if self.next_k >= self.to_start && self.book.inflight == 0 {
                        if tx.send(ThreadEvent::Opened).is_err() {
                            return Ok(());
                        }
                        stage = Stage::Opened;
                        continue;
                    }
                }
                Stage::Opened => {
                    if let Some(&go) = self.ctl.go.get()
                        && now >= go
                    {
                        let plan = &self.spec.plan;
                        let end = go + plan.warmup + plan.duration;
                        let until = end + self.scenario.drain();
                        self.begin_steady(go, end);
                        stage = Stage::Steady { end, until };
                        continue;
                    }
                }
                Stage::Steady { end, until } => {
                    if now >= end {
                        // The load is over; what is in flight may still arrive.
                        self.book.steady = false;
                    }
                    if stop || now >= until {
                        let stats = self.finish(now, stop);
                        if tx.send(ThreadEvent::Final(Box::new(stats))).is_err() {
                            return Ok(());
                        }
                        stage = Stage::Done;
                        continue;
                    }
                }
                Stage::Done => {
                    if self.ctl.release.load(Relaxed) {
                        self.close_all();
                        return Ok(());
                    }
                }
            }
            self.fire_timers(now);

            let mut wake = now + TICK;
            if let Some(Reverse((at, _, _))) = self.book.timers.peek() {
                wake = wake.min(*at);
            }
            if let Stage::Steady { end, until } = stage {
                wake = wake.min(if now < end { end } else { until });
            }
            if stage == Stage::Connecting
                && self.rate > 0.0
                && self.next_k < self.to_start
                && self.book.inflight < self.max_inflight
            {
                wake = wake.min(self.due(self.next_k));
            }
            if stage == Stage::Opened
                && let Some(&go) = self.ctl.go.get()
            {
                wake = wake.min(go);
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                // A fresh time per event: a batch can take a while to serve, and
                // latency is measured from these.
                self.on_event(ev, &mut buf, Instant::now());
            }
        }
    }

    /// When local ordinal `k` is due under the connect rate.
    fn due(&self, k: u64) -> Instant {
        if self.rate > 0.0 {
            self.spec.t0 + Duration::from_secs_f64((k as f64 / self.rate).min(1e9))
        } else {
            self.spec.t0
        }
    }

    fn start_due(&mut self, now: Instant) {
        let mut budget = STARTS_PER_TURN;
        while self.next_k < self.to_start
            && budget > 0
            && self.book.inflight < self.max_inflight
            && self.due(self.next_k) <= now
        {
            self.start_one();
            budget -= 1;
        }
    }

    /// The overall timeout or a signal: no new connections, the pending ones fail.
    fn abort_connecting(&mut self) {
        let left = self.to_start - self.next_k;
        if left > 0 {
            *self
                .book
                .stats
                .errors
                .entry("not_started".to_owned())
                .or_insert(0) += left;
            self.book.stats.failed += left;
            self.next_k = self.to_start;
        }
        let pending: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.core.phase != Phase::Open)
            .map(|(k, _)| k)
            .collect();
        for slot in pending {
            if let Some(c) = self.conns.get_mut(slot) {
                c.core.fail("aborted");
            }
            self.reap(slot);
        }
    }

    fn start_one(&mut self) {
        let plan = self.spec.plan.clone();
        let k = self.next_k;
        self.next_k += 1;
        let index = self.spec.thread as u64 + k * self.spec.threads.max(1) as u64;
        let hello = match &self.spec.minter {
            Some(m) if plan.protocol => match self.scenario.token(
                m,
                &token::sub(plan.proc_index(), index),
                plan.first_index + index,
            ) {
                Ok(token) => Some(msg_frame(
                    &Msg::Hello(Hello {
                        protocol: PROTOCOL_VERSION,
                        token,
                        client: concat!("storm/", env!("CARGO_PKG_VERSION")).into(),
                        resume: Vec::new(),
                    }),
                    1,
                )),
                Err(_) => {
                    self.book.error("token");
                    self.book.stats.failed += 1;
                    return;
                }
            },
            _ => None,
        };
        let started = Instant::now();
        self.book.first_start.get_or_insert(started);
        let source = sources::pick(&plan.sources, plan.first_index + index);
        let mut sock = match open_socket(plan.target, source) {
            Ok(s) => s,
            Err(e) => {
                self.book.error(&classify(&e));
                self.book.stats.failed += 1;
                return;
            }
        };
        let tls = match &self.book.tls {
            Some((config, name)) => {
                match rustls::ClientConnection::new(config.clone(), name.clone()) {
                    Ok(mut c) => {
                        // Records are drained into the engine's own queue after every
                        // write, so rustls' 64 KiB bound would only refuse a large send.
                        c.set_buffer_limit(None);
                        Some(Box::new(c))
                    }
                    Err(e) => {
                        self.book.error(&tls_error_kind(&e));
                        self.book.stats.failed += 1;
                        return;
                    }
                }
            }
            None => None,
        };
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut sock,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.book.error(&classify(&e));
            self.book.stats.failed += 1;
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        let deadline = started + plan.connect_timeout;
        entry.insert(Conn {
            spill: Vec::new(),
            ws: plan.transport.is_ws().then(Box::default),
            core: Core {
                sock,
                slot,
                generation: self.generation,
                index,
                phase: Phase::Connecting,
                started,
                hello,
                out: Vec::new(),
                out_pos: 0,
                timer: Some(deadline),
                close: None,
                next_request_id: 1,
                tls,
            },
            st: S::Conn::default(),
        });
        self.book
            .timers
            .push(Reverse((deadline, slot, self.generation)));
        self.book.inflight += 1;
        self.book.live.connecting.fetch_add(1, Relaxed);
    }

    fn begin_steady(&mut self, go: Instant, end: Instant) {
        let plan = &self.spec.plan;
        if plan.scenario != ScenarioKind::Connect {
            self.book.stats.meter = Meter::between(go + plan.warmup, end);
        }
        self.book.steady = true;
        let now = Instant::now();
        let open: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.core.phase == Phase::Open)
            .map(|(k, _)| k)
            .collect();
        for slot in open {
            if let Some(Conn { core, st, .. }) = self.conns.get_mut(slot) {
                let mut cx = Ctx {
                    now,
                    core,
                    book: &mut self.book,
                };
                self.scenario.on_steady(&mut cx, st);
            }
            self.reap(slot);
        }
    }

    /// Ends the window and hands the measurements over.
    fn finish(&mut self, now: Instant, interrupted: bool) -> Stats {
        self.book.steady = false;
        let mut stats = std::mem::take(&mut self.book.stats);
        let clock = self.spec.clock;
        stats.requested = self.to_start;
        stats.open_at_end = self.book.open;
        stats.interrupted = interrupted;
        if let (Some(first), Some(last)) = (self.book.first_start, self.book.last_measured_connect)
        {
            let start = stats.connect_meter.from.map_or(first, |f| f.max(first));
            if last > start {
                stats.connect_span_us = (clock.unix_us(start), clock.unix_us(last));
            }
        }
        if self.spec.plan.scenario == ScenarioKind::Connect {
            stats.window_us = stats.connect_span_us;
        } else if let Some(from) = stats.meter.from {
            let end = stats.meter.until.map_or(now, |u| u.min(now));
            if end > from {
                stats.window_us = (clock.unix_us(from), clock.unix_us(end));
            }
        }
        stats
    }

    fn close_all(&mut self) {
        for mut c in self.conns.drain() {
            let _ = self.poll.registry().deregister(&mut c.core.sock);
        }
        self.book.live.open.store(0, Relaxed);
        self.book.live.connecting.store(0, Relaxed);
        self.book.open = 0;
        self.book.inflight = 0;
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, slot, generation))) = self.book.timers.peek() {
            if at > now {
                break;
            }
            self.book.timers.pop();
            let Some(Conn { core, st, .. }) = self.conns.get_mut(slot) else {
                continue;
            };
            if core.generation != generation || core.timer != Some(at) {
                continue;
            }
            core.timer = None;
            if core.phase == Phase::Open {
                let mut cx = Ctx {
                    now,
                    core,
                    book: &mut self.book,
                };
                self.scenario.on_timer(&mut cx, st);
            } else {
                core.fail("timeout");
            }
            self.reap(slot);
        }
    }

    fn on_event(&mut self, ev: &Event, buf: &mut [u8], now: Instant) {
        let slot = ev.token().0;
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.core.phase == Phase::Connecting {
            match connect_result(&conn.core.sock) {
                Ok(false) => return,
                Ok(true) => self.on_connected(slot, now),
                Err(kind) => conn.core.fail(kind),
            }
        }
        if ev.is_writable() {
            self.on_writable(slot, now);
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.on_readable(slot, buf);
        }
        self.reap(slot);
    }

    fn on_connected(&mut self, slot: usize, now: Instant) {
        let Some(Conn { core, .. }) = self.conns.get_mut(slot) else {
            return;
        };
        if let Some(tls) = core.tls.as_mut() {
            // The ClientHello; the rest waits for the server's flight.
            core.phase = Phase::TlsHandshaking;
            let hello = tls_output(tls);
            Ctx {
                now,
                core,
                book: &mut self.book,
            }
            .send_raw(&hello);
            return;
        }
        self.on_transport(slot, now);
    }

    /// TCP connected (and, over TLS, the handshake done): the WebSocket upgrade,
    /// `Hello` or open.
    fn on_transport(&mut self, slot: usize, now: Instant) {
        let Some(Conn { core, ws, .. }) = self.conns.get_mut(slot) else {
            return;
        };
        if let Some(w) = ws {
            core.phase = Phase::Upgrading;
            w.key = self.book.rng.key();
            let host = self.spec.plan.target.to_string();
            let proto = subprotocol(self.book.transport, self.book.protocol);
            let req = ws::upgrade_request(&host, proto, &w.key);
            Ctx {
                now,
                core,
                book: &mut self.book,
            }
            .send_wire(&req);
            return;
        }
        self.after_connect(slot, now);
    }

    /// TCP connected (and upgraded, over a WebSocket): `Hello` or open.
    fn after_connect(&mut self, slot: usize, now: Instant) {
        let Some(Conn { core, st, .. }) = self.conns.get_mut(slot) else {
            return;
        };
        if self.book.protocol {
            core.phase = Phase::Handshaking;
            if let Some(hello) = core.hello.take() {
                let mut cx = Ctx {
                    now,
                    core,
                    book: &mut self.book,
                };
                cx.send(&hello);
            }
        } else {
            open_conn(&mut self.scenario, &mut self.book, core, st, now, None);
        }
    }

    fn on_writable(&mut self, slot: usize, now: Instant) {
        let Some(Conn { core, st, .. }) = self.conns.get_mut(slot) else {
            return;
        };
        if core.close.is_some() || core.phase == Phase::Connecting {
            return;
        }
        let n = core.flush();
        self.book.stats.sent(now, n);
        if core.queued() == 0 && core.phase == Phase::Open && core.close.is_none() {
            let mut cx = Ctx {
                now,
                core,
                book: &mut self.book,
            };
            self.scenario.on_writable(&mut cx, st);
        }
    }

    fn on_readable(&mut self, slot: usize, buf: &mut [u8]) {
        loop {
            let Some(Conn { core, .. }) = self.conns.get_mut(slot) else {
                return;
            };
            if core.close.is_some() || core.phase == Phase::Connecting {
                return;
            }
            let n = match core.sock.read(buf) {
                Ok(0) => {
                    core.fail("eof");
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    core.fail(classify(&e));
                    return;
                }
            };
            let is_tls = core.tls.is_some();
            // The arrival time of these bytes (a read loop can outlast the event).
            let now = Instant::now();
            let data = buf.get(..n).unwrap_or_default();
            self.book.stats.received(now, n);
            self.book.live.bytes_in.fetch_add(n as u64, Relaxed);
            if is_tls {
                self.on_tls_bytes(slot, data, now);
            } else {
                self.on_bytes(slot, data, now);
            }
            // A short read drained the socket; data arriving later raises a new edge.
            if n < buf.len() {
                return;
            }
        }
    }

    /// TLS records from the socket: handshake messages are answered, a completed
    /// handshake counted (`tls_full`, `tls_resumed`) and followed by what a plain
    /// connection does after its TCP connect; plaintext goes to [`Self::on_bytes`].
    fn on_tls_bytes(&mut self, slot: usize, data: &[u8], now: Instant) {
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        let Some(Conn { core, .. }) = self.conns.get_mut(slot) else {
            return;
        };
        let Some(tls) = core.tls.as_mut() else {
            return;
        };
        let result = tls_read(tls, data, &mut plain);
        // Handshake answers, alerts, or nothing.
        let wire = tls_output(tls);
        let done = core.phase == Phase::TlsHandshaking && !tls.is_handshaking();
        let resumed = tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let mut cx = Ctx {
            now,
            core,
            book: &mut self.book,
        };
        cx.send_raw(&wire);
        if let Err(e) = result {
            cx.core.fail(tls_error_kind(&e));
        } else if done {
            cx.count(if resumed { "tls_resumed" } else { "tls_full" }, 1);
            self.on_transport(slot, now);
        }
        if !plain.is_empty() {
            self.on_bytes(slot, &plain, now);
        }
        plain.clear();
        if plain.capacity() > READ_BUF {
            plain = Vec::new();
        }
        self.plain = plain;
    }

    /// Bytes from the socket: the upgrade answer, WebSocket frames, protocol frames
    /// or raw data, depending on the transport and the phase.
    fn on_bytes(&mut self, slot: usize, data: &[u8], now: Instant) {
        let Some(Conn {
            spill,
            ws,
            core,
            st,
        }) = self.conns.get_mut(slot)
        else {
            return;
        };
        if core.close.is_some() {
            return;
        }
        let Some(w) = ws else {
            if self.book.protocol {
                let (scenario, book) = (&mut self.scenario, &mut self.book);
                let framed = frame::deframe(spill, data, MAX_FRAME, |h, payload| {
                    on_frame(scenario, book, core, st, h, payload, now);
                    core.close.is_none()
                });
                if framed.is_err() {
                    core.fail("bad_frame");
                }
            } else {
                let mut cx = Ctx {
                    now,
                    core,
                    book: &mut self.book,
                };
                self.scenario.on_data(&mut cx, st, data);
            }
            return;
        };
        if core.phase == Phase::Upgrading {
            w.head.extend_from_slice(data);
            let proto = subprotocol(self.book.transport, self.book.protocol);
            match ws::check_response(&w.head, &w.key, proto) {
                Ok(None) => {}
                Err(e) => core.fail(e.kind()),
                Ok(Some(len)) => {
                    // Frames may follow the head in the same read.
                    let rest = w.head.split_off(len.min(w.head.len()));
                    w.head = Vec::new();
                    w.key = String::new();
                    self.after_connect(slot, now);
                    if !rest.is_empty() {
                        self.on_bytes(slot, &rest, now);
                    }
                }
            }
            return;
        }
        let (scenario, book) = (&mut self.scenario, &mut self.book);
        let fed = w.reader.feed(data, MAX_WS_MESSAGE, |ev| {
            match ev {
                WsEvent::Message { text, payload } => match (book.transport, book.protocol) {
                    (_, false) => {
                        let mut cx = Ctx { now, core, book };
                        scenario.on_data(&mut cx, st, payload);
                    }
                    (Transport::WsJson, true) if text => {
                        match json_to_frame(payload, &JSON_LIMITS) {
                            Ok((h, p)) => on_frame(scenario, book, core, st, h, &p, now),
                            Err(_) => core.fail("bad_json"),
                        }
                    }
                    (Transport::WsBin, true) if !text => {
                        let framed = frame::deframe(spill, payload, MAX_FRAME, |h, p| {
                            on_frame(scenario, book, core, st, h, p, now);
                            core.close.is_none()
                        });
                        if framed.is_err() {
                            core.fail("bad_frame");
                        }
                    }
                    _ => core.fail("ws_wrong_message_type"),
                },
                WsEvent::Ping(p) => {
                    let mut pong = Vec::with_capacity(p.len() + 6);
                    ws::push_frame(&mut pong, Opcode::Pong, p, book.rng.mask());
                    Ctx { now, core, book }.send_wire(&pong);
                }
                WsEvent::Pong => {}
                WsEvent::Close(code) => {
                    // Answer the closing handshake (RFC 6455 5.5.1), then drop it.
                    let mut reply = Vec::with_capacity(8);
                    let echoed = if code == 1005 {
                        Vec::new()
                    } else {
                        code.to_be_bytes().to_vec()
                    };
                    ws::push_frame(&mut reply, Opcode::Close, &echoed, book.rng.mask());
                    Ctx { now, core, book }.send_wire(&reply);
                    core.fail(format!("ws_close_{code}"));
                }
            }
            core.close.is_none()
        });
        if let Err(e) = fed {
            core.fail(e.kind());
        }
        if !book.protocol && core.close.is_none() && core.phase == Phase::Open {
            scenario.after_read(&mut Ctx { now, core, book }, st);
        }
    }

    /// Closes and forgets the connection if a callback marked it for closing.
    fn reap(&mut self, slot: usize) {
        let closing = self.conns.get(slot).is_some_and(|c| c.core.close.is_some());
        if !closing {
            return;
        }
        let mut conn = self.conns.remove(slot);
        let _ = self.poll.registry().deregister(&mut conn.core.sock);
        match conn.core.phase {
            Phase::Connecting | Phase::TlsHandshaking | Phase::Upgrading | Phase::Handshaking => {
                self.book.inflight = self.book.inflight.saturating_sub(1);
                self.book.live.connecting.fetch_sub(1, Relaxed);
                self.book.stats.failed += 1;
            }
            Phase::Open => {
                self.book.open = self.book.open.saturating_sub(1);
                self.book.live.open.fetch_sub(1, Relaxed);
            }
        }
        if let Some(kind) = conn.core.close.take() {
            self.book.error(&kind);
        }
    }
}

/// Marks a connection established and hands it to the scenario.
fn open_conn<S: Scenario>(
    scenario: &mut S,
    book: &mut Book,
    core: &mut Core,
    st: &mut S::Conn,
    now: Instant,
    welcome: Option<&Welcome>,
) {
    core.phase = Phase::Open;
    core.timer = None;
    let latency = now.saturating_duration_since(core.started);
    book.inflight = book.inflight.saturating_sub(1);
    book.open += 1;
    book.live.connecting.fetch_sub(1, Relaxed);
    book.live.open.fetch_add(1, Relaxed);
    book.live.connected.fetch_add(1, Relaxed);
    book.stats.connected(now, latency);
    if book.stats.connect_meter.on(now) {
        book.stats.connects_measured += 1;
        book.last_measured_connect = Some(now);
    }
    let mut cx = Ctx { now, core, book };
    scenario.on_open(&mut cx, st, &Opened { latency, welcome });
    if cx.book.steady && cx.core.close.is_none() {
        scenario.on_steady(&mut cx, st);
    }
}

/// One frame from the server (protocol mode).
fn on_frame<S: Scenario>(
    scenario: &mut S,
    book: &mut Book,
    core: &mut Core,
    st: &mut S::Conn,
    h: FrameHeader,
    payload: &[u8],
    now: Instant,
) {
    let kind = Kind::from_u8(h.kind);
    match core.phase {
        Phase::Connecting | Phase::TlsHandshaking | Phase::Upgrading => {}
        Phase::Handshaking => match kind {
            Some(Kind::Welcome) => match Msg::decode(h.kind, payload) {
                Ok(Msg::Welcome(w)) => open_conn(scenario, book, core, st, now, Some(&w)),
                _ => core.fail("bad_welcome"),
            },
            Some(Kind::Error) => core.fail(server_error_kind(h.status)),
            Some(Kind::Bye) => core.fail(bye_kind(h.status)),
            _ => core.fail(format!("unexpected_kind_{}", h.kind)),
        },
        Phase::Open => match kind {
            Some(Kind::Ping) => {
                let pong = frame::encode(
                    FrameHeader::new(Kind::Pong.as_u8(), 0, h.request_id),
                    payload,
                );
                Ctx { now, core, book }.send(&pong);
            }
            Some(Kind::Error) => {
                let closes = ErrorCode::from_u16(h.status).is_none_or(|c| c.closes_connection());
                if closes {
                    core.fail(server_error_kind(h.status));
                } else {
                    book.error(&server_error_kind(h.status));
                }
            }
            Some(Kind::Bye) => core.fail(bye_kind(h.status)),
            _ => {
                let mut cx = Ctx { now, core, book };
                scenario.on_frame(&mut cx, st, h, payload);
            }
        },
    }
}

/// A non-blocking TCP socket bound to `(source, 0)` and connecting to `target`.
fn open_socket(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let s = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    // Closing sends a reset and leaves no TIME_WAIT to starve the next run of ports.
    s.set_linger(Some(Duration::ZERO))?;
    if let Some(ip) = source {
        s.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    match s.connect(&SockAddr::from(target)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(s)))
}

/// `Ok(true)` when a pending connect has completed, `Ok(false)` when still in
/// progress, `Err(kind)` when it failed.
fn connect_result(sock: &TcpStream) -> Result<bool, String> {
    match sock.take_error() {
        Ok(Some(e)) | Err(e) => return Err(classify(&e)),
        Ok(None) => {}
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(classify(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_classify() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&e), "refused");
        assert_eq!(
            classify(&io::Error::from_raw_os_error(libc::ECONNRESET)),
            "reset"
        );
        assert_eq!(
            classify(&io::Error::from_raw_os_error(libc::EMFILE)),
            "too_many_open_files"
        );
        assert_eq!(
            classify(&io::Error::from_raw_os_error(libc::ETIMEDOUT)),
            "timeout"
        );
        assert_eq!(server_error_kind(301), "server_error_301_idle_timeout");
        assert_eq!(server_error_kind(999), "server_error_999");
        assert_eq!(bye_kind(501), "bye_501_shutting_down");
    }

    #[test]
    fn threads_share_connections_round_robin() {
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(["storm", "-n", "10"]).unwrap();
        let plan = Arc::new(
            cli.resolve(crate::cli::Machine {
                nofile: 20_000,
                cores: 2,
                ports: 28_000,
            })
            .unwrap(),
        );
        let spec = |thread, threads| ThreadSpec {
            thread,
            threads,
            plan: plan.clone(),
            minter: None,
            t0: Instant::now(),
            clock: Clock::new(),
        };
        assert_eq!(
            (spec(0, 3).share(), spec(1, 3).share(), spec(2, 3).share()),
            (4, 3, 3)
        );
        assert_eq!(spec(11, 12).share(), 0);
    }
}
