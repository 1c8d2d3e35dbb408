//! The admin HTTP listener: `/metrics`, `/healthz`, `/readyz` on `admin.addr`.
//!
//! One thread, one `mio` poll, no blocking call: at most `admin.max_connections`
//! connections, request heads of at most `admin.max_request_bytes`, and a deadline of
//! `admin.read_timeout` per connection for its request (and again for its answer). One
//! request per connection; the response is written and the connection closed.
//!
//! Idle or slow clients cannot keep a probe out: when every slot is taken, a new
//! connection takes the slot of the oldest one still waiting for its request — which
//! is first read once more, and answered if its request has arrived — or, when every
//! slot is writing an answer, of the oldest of those. So a probe is only ever closed
//! unanswered if more than `admin.max_connections` connections arrive between its
//! accept and the arrival of its request. It keeps answering during a graceful
//! shutdown (so `/readyz` can say 503) and stops after it.

mod exporter;
pub(crate) mod http;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::config::AdminConfig;
use crate::metrics::Metrics;
use crate::reactor::ReactorHandle;
use http::{Parsed, Status};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 4096;
/// Kernel accept queue of the admin listener (capped by `net.core.somaxconn`): deep
/// enough that a burst of connections does not drop a probe's SYN (a retry costs 1 s).
const BACKLOG: i32 = 1024;
/// At most one log line about evictions per this long.
const EVICTION_LOG_EVERY: Duration = Duration::from_secs(10);
/// Longest stall a test may ask for.
const MAX_TEST_STALL: Duration = Duration::from_secs(60);

/// What the `/debug/` routes may touch (only when `SWITCHBOARD_TEST_HOOKS=1`).
pub(crate) struct TestHooks {
    /// The reactors, to wake one after asking it to stall.
    pub reactors: Arc<[ReactorHandle]>,
}

/// The running admin listener.
pub(crate) struct Admin {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: JoinHandle<()>,
}

/// Binds the admin listener (before any thread starts, so a taken port fails start-up).
pub(crate) fn bind(cfg: &AdminConfig) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(cfg.addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&cfg.addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl Admin {
    /// Starts serving on `listener`.
    pub fn spawn(
        listener: std::net::TcpListener,
        cfg: AdminConfig,
        metrics: Arc<Metrics>,
        hooks: Option<TestHooks>,
    ) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut server = Serve {
            poll,
            listener,
            conns: Slab::with_capacity(cfg.max_connections),
            cfg,
            metrics,
            hooks,
            stop: stop.clone(),
            next_serial: 0,
            evictions: Evictions::default(),
        };
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                if let Err(e) = server.run() {
                    tracing::error!(error = %e, "admin listener stopped on an I/O error");
                }
            })?;
        Ok(Self {
            addr,
            stop,
            waker,
            thread,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        let _ = self.thread.join();
    }
}

struct AdminConn {
    stream: TcpStream,
    input: Vec<u8>,
    /// The answer; empty while the request is still being read.
    output: Vec<u8>,
    written: usize,
    /// When it is closed if not done: reading its request, then writing its answer.
    deadline: Instant,
    /// Accept order (smaller is older): who is evicted first.
    serial: u64,
}

impl AdminConn {
    fn answering(&self) -> bool {
        !self.output.is_empty()
    }
}

/// Evictions not yet logged, and when the last line was.
#[derive(Default)]
struct Evictions {
    unlogged: u64,
    logged_at: Option<Instant>,
}

struct Serve {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<AdminConn>,
    cfg: AdminConfig,
    metrics: Arc<Metrics>,
    hooks: Option<TestHooks>,
    stop: Arc<AtomicBool>,
    next_serial: u64,
    evictions: Evictions,
}

impl Serve {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        while !self.stop.load(Ordering::Acquire) {
            let now = Instant::now();
            let wait = self
                .conns
                .iter()
                .map(|(_, c)| c.deadline.saturating_duration_since(now))
                .min();
            if let Err(e) = self.poll.poll(&mut events, wait)
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    LISTENER => self.accept(),
                    Token(slot) => self.serve(slot),
                }
            }
            let now = Instant::now();
            let expired: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, c)| c.deadline <= now)
                .map(|(k, _)| k)
                .collect();
            for slot in expired {
                self.metrics.admin.timed_out.inc();
                self.close(slot);
            }
            self.log_evictions(now);
        }
        Ok(())
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    self.metrics.admin.accepted.inc();
                    self.make_room();
                    let entry = self.conns.vacant_entry();
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, Token(entry.key()), Interest::READABLE)
                        .is_ok()
                    {
                        entry.insert(AdminConn {
                            stream,
                            input: Vec::new(),
                            output: Vec::new(),
                            written: 0,
                            deadline: Instant::now() + self.cfg.read_timeout,
                            serial: self.next_serial,
                        });
                        self.next_serial += 1;
                        self.metrics.admin.open.set(self.conns.len() as u64);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    return;
                }
            }
        }
    }

    /// Frees slots until one is free for a new connection. The oldest connection
    /// still reading its request is read once more: answered if its request is there,
    /// else closed (an idle or slow client). Only when every slot is answering is the
    /// oldest answer dropped (a client that does not read it). Each turn closes a
    /// connection or turns a reader into a writer, so this ends.
    fn make_room(&mut self) {
        while self.conns.len() >= self.cfg.max_connections {
            let Some((slot, answering)) = self
                .conns
                .iter()
                .min_by_key(|(_, c)| (c.answering(), c.serial))
                .map(|(k, c)| (k, c.answering()))
            else {
                return;
            };
            if !answering {
                self.serve(slot);
                if self.conns.get(slot).is_none_or(AdminConn::answering) {
                    continue;
                }
            }
            self.metrics.admin.evicted.inc();
            self.evictions.unlogged += 1;
            self.close(slot);
        }
    }

    /// Says, at most every [`EVICTION_LOG_EVERY`], how many connections were evicted.
    fn log_evictions(&mut self, now: Instant) {
        let e = &mut self.evictions;
        if e.unlogged == 0
            || e.logged_at
                .is_some_and(|t| now.duration_since(t) < EVICTION_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(
            evicted = e.unlogged,
            max_connections = self.cfg.max_connections,
            "admin listener full: closed the oldest idle or slow connections to serve new ones"
        );
        e.unlogged = 0;
        e.logged_at = Some(now);
    }

    /// Reads what arrived, answers a complete request, writes what the socket takes.
    fn serve(&mut self, slot: usize) {
        let max = self.cfg.max_request_bytes;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.output.is_empty() {
            let mut chunk = [0u8; READ_CHUNK];
            let parsed = loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => {
                        self.close(slot);
                        return;
                    }
                    Ok(n) => {
                        let room = (max + 1).saturating_sub(c.input.len());
                        c.input
                            .extend_from_slice(chunk.get(..n.min(room)).unwrap_or_default());
                        match http::parse(&c.input, max) {
                            Parsed::Partial => {}
                            done => break done,
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => {
                        self.close(slot);
                        return;
                    }
                }
            };
            let response = self.respond(parsed);
            let Some(c) = self.conns.get_mut(slot) else {
                return;
            };
            c.output = response;
            c.input = Vec::new();
            c.deadline = Instant::now() + self.cfg.read_timeout;
            let _ = self.poll.registry().reregister(
                &mut c.stream,
                Token(slot),
                Interest::READABLE | Interest::WRITABLE,
            );
        }
        self.write(slot);
    }

    fn write(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        while c.written < c.output.len() {
            match c
                .stream
                .write(c.output.get(c.written..).unwrap_or_default())
            {
                Ok(n) => c.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        self.close(slot);
    }

    fn close(&mut self, slot: usize) {
        if let Some(mut c) = self.conns.try_remove(slot) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        self.metrics.admin.open.set(self.conns.len() as u64);
    }

    fn respond(&self, parsed: Parsed) -> Vec<u8> {
        let (path, query, head_only, openmetrics) = match parsed {
            Parsed::Get {
                path,
                query,
                head_only,
                openmetrics,
            } => (path, query, head_only, openmetrics),
            Parsed::Reject(status) => return http::text(status, "\n"),
            Parsed::Partial => return http::text(Status::BadRequest, "\n"),
        };
        let text = "text/plain; charset=utf-8";
        match path.as_str() {
            "/metrics" => match exporter::render(&self.metrics, openmetrics) {
                Ok(body) => {
                    let content_type = if openmetrics {
                        exporter::OPENMETRICS
                    } else {
                        exporter::PROMETHEUS_TEXT
                    };
                    http::response(Status::Ok, content_type, &body, head_only)
                }
                Err(_) => http::text(Status::Internal, "cannot render metrics\n"),
            },
            "/healthz" => http::response(Status::Ok, text, "ok\n", head_only),
            "/readyz" => {
                let h = &self.metrics.health;
                if h.ready() {
                    http::response(Status::Ok, text, "ready\n", head_only)
                } else {
                    let why = if !h.accepting.load(Ordering::Acquire) {
                        "not accepting (starting or shutting down)\n"
                    } else {
                        "journal unhealthy\n"
                    };
                    http::response(Status::Unavailable, text, why, head_only)
                }
            }
            "/debug/stall" if self.hooks.is_some() => self.stall(query.as_deref()),
            _ => http::response(Status::NotFound, text, "not found\n", head_only),
        }
    }

    /// Test hook: `/debug/stall?reactor=N&ms=M` makes reactor N sleep M ms at its next
    /// loop turn, so a test can watch the watchdog withhold its pings.
    fn stall(&self, query: Option<&str>) -> Vec<u8> {
        let mut reactor = None;
        let mut ms = None;
        for pair in query.unwrap_or_default().split('&') {
            match pair.split_once('=') {
                Some(("reactor", v)) => reactor = v.parse::<usize>().ok(),
                Some(("ms", v)) => ms = v.parse::<u64>().ok(),
                _ => {}
            }
        }
        let (Some(r), Some(ms), Some(hooks)) = (reactor, ms, &self.hooks) else {
            return http::text(Status::BadRequest, "want reactor=N&ms=M\n");
        };
        let ms = ms.min(MAX_TEST_STALL.as_millis() as u64);
        match (self.metrics.reactors.get(r), hooks.reactors.get(r)) {
            (Some(stats), Some(handle)) => {
                stats.stall_ms.set(ms);
                handle.wake();
                http::text(Status::Ok, "stalling\n")
            }
            _ => http::text(Status::NotFound, "no such reactor\n"),
        }
    }
}
