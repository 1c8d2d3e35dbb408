//! Shared helpers for the integration tests: a small blocking protocol client over
//! loopback TCP, an in-process server started from a [`Config`] built in code (ports 0,
//! short timeouts, a temporary state directory, shut down on drop), the real daemon
//! binary spawned as a child process, and a deterministic pseudo-random byte source.
//!
//! Every blocking call here has a timeout, so a misbehaving server fails a test instead
//! of hanging it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::SystemTime;
use std::time::{Duration, Instant};

use switchboard::Config;
use switchboard::auth::{Claims, Verifier};
use switchboard::config::{AuthKey, ListenerConfig};
use switchboard::frame::{self, FrameHeader};
use switchboard::metrics::Metrics;
use switchboard::protocol::messages;
use switchboard::protocol::{Msg, PROTOCOL_VERSION};
use switchboard::{Server, ShutdownReport};

pub mod api;
pub mod http;
pub mod peer;
pub mod storm;
pub mod tls;
pub mod ws;

/// Message kinds used by the connection-layer tests (see `src/protocol/kind.rs`).
pub mod kind {
    /// Client → server: first frame of a session.
    pub const HELLO: u8 = 1;
    /// Server → client: the handshake succeeded.
    pub const WELCOME: u8 = 2;
    /// Liveness probe.
    pub const PING: u8 = 3;
    /// Answer to a ping.
    pub const PONG: u8 = 4;
    /// Server → client: error; the status holds the code.
    pub const ERROR: u8 = 5;
    /// Orderly end of the session; the status holds the reason.
    pub const BYE: u8 = 6;
}

/// Default time a test waits for one reply before failing.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest payload the client accepts from the server when parsing replies.
const CLIENT_MAX_PAYLOAD: u32 = frame::MAX_PAYLOAD_LIMIT;

/// One frame as the client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The parsed header.
    pub header: FrameHeader,
    /// The payload without padding.
    pub payload: Vec<u8>,
}

impl Frame {
    /// `(kind, status, request_id)` for compact assertions.
    pub fn ksr(&self) -> (u8, u16, u32) {
        (self.header.kind, self.header.status, self.header.request_id)
    }
}

/// What one attempt to read a frame produced.
#[derive(Debug)]
pub enum Read1 {
    /// A complete frame.
    Frame(Frame),
    /// The server closed its side with no partial frame pending.
    Eof,
    /// Nothing complete arrived before the deadline.
    Timeout,
    /// The socket failed (reset, …), or bytes that do not frame arrived.
    Failed(String),
}

/// Encodes one frame with the crate's own encoder.
///
/// Two kinds get real message bodies so the tests can speak of payload bytes: a
/// `Ping`'s `payload` becomes the `data` of an archived `Ping { stamp: request_id }`,
/// and a `Hello` with an empty `payload` carries an archived `Hello` with a valid
/// visitor token ([`hello_payload`]). Every other kind is framed as given.
pub fn encode(kind: u8, request_id: u32, payload: &[u8]) -> Vec<u8> {
    let body = match kind {
        kind::PING => ping_payload(request_id, payload),
        kind::HELLO if payload.is_empty() => hello_payload().to_vec(),
        _ => payload.to_vec(),
    };
    frame::encode(FrameHeader::new(kind, 0, request_id), &body).to_vec()
}

/// Raw frame bytes, never rewritten (for malformed-payload tests).
pub fn encode_raw(kind: u8, request_id: u32, payload: &[u8]) -> Vec<u8> {
    frame::encode(FrameHeader::new(kind, 0, request_id), payload).to_vec()
}

/// The HS256 secret of the `test` key every test server and daemon trusts.
pub const TEST_SECRET: &str = "switchboard-integration-test-secret-0123456789";

/// The auth key test servers are configured with.
pub fn test_key() -> AuthKey {
    AuthKey {
        kid: "test".into(),
        secret: Some(TEST_SECRET.into()),
        secret_file: None,
    }
}

/// A token for `sub` in `role` ("visitor", "agent", …), valid for an hour.
pub fn token(sub: &str, role: &str) -> String {
    let mut c = Config::default();
    c.auth.keys = vec![test_key()];
    let verifier = Verifier::from_config(&c).unwrap();
    let claims = Claims::new(sub, role, SystemTime::now(), Duration::from_secs(3600));
    verifier.mint(&claims, Some("test")).unwrap()
}

/// The optional claims of a token made by [`token_with`].
#[derive(Debug, Clone, Default)]
pub struct TokenClaims<'a> {
    /// Agent groups.
    pub groups: &'a [&'a str],
    /// Tenant (none: the default, empty tenant).
    pub tenant: Option<&'a str>,
    /// An agent's capacity.
    pub max_concurrent: Option<u32>,
    /// Display name (none: the `sub`).
    pub name: Option<&'a str>,
}

/// A token for `sub` in `role` of `tenant` with `groups`, valid for an hour.
pub fn tenant_token(sub: &str, role: &str, tenant: &str, groups: &[&str]) -> String {
    token_with(
        sub,
        role,
        &TokenClaims {
            groups,
            tenant: Some(tenant),
            ..TokenClaims::default()
        },
    )
}

/// A token for `sub` in `role` with the optional claims in `extra`, valid for an hour.
pub fn token_with(sub: &str, role: &str, extra: &TokenClaims<'_>) -> String {
    let mut c = Config::default();
    c.auth.keys = vec![test_key()];
    let verifier = Verifier::from_config(&c).unwrap();
    let mut claims = Claims::new(sub, role, SystemTime::now(), Duration::from_secs(3600));
    claims.groups = extra.groups.iter().map(|g| (*g).to_owned()).collect();
    claims.tenant = extra.tenant.map(str::to_owned);
    claims.max_concurrent = extra.max_concurrent;
    claims.name = extra.name.map(str::to_owned);
    verifier.mint(&claims, Some("test")).unwrap()
}

/// An agent token in `groups`.
pub fn agent_token(sub: &str, groups: &[&str]) -> String {
    token_with(
        sub,
        "agent",
        &TokenClaims {
            groups,
            ..TokenClaims::default()
        },
    )
}

/// An archived `Hello` for a visitor `v1`, made once per test process.
pub fn hello_payload() -> &'static [u8] {
    static HELLO: OnceLock<Vec<u8>> = OnceLock::new();
    HELLO.get_or_init(|| {
        Msg::from(messages::Hello {
            protocol: PROTOCOL_VERSION,
            token: token("v1", "visitor"),
            client: "switchboard-tests".into(),
            resume: Vec::new(),
        })
        .to_payload()
        .to_vec()
    })
}

/// An archived `Ping { stamp, data }`.
pub fn ping_payload(stamp: u32, data: &[u8]) -> Vec<u8> {
    Msg::from(messages::Ping {
        stamp: u64::from(stamp),
        data: data.to_vec(),
    })
    .to_payload()
    .to_vec()
}

/// A blocking protocol client.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    /// Report payloads as sent (see `read_raw_frame`).
    raw: bool,
}

impl Client {
    /// Connects with `TCP_NODELAY` on, so each write leaves as its own segment.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Self::over(stream)
    }

    /// A client over a connected stream: `TCP_NODELAY`, writes bounded.
    fn over(stream: TcpStream) -> Self {
        stream.set_nodelay(true).unwrap();
        stream.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
        Self {
            stream,
            buf: Vec::new(),
            eof: false,
            raw: false,
        }
    }

    /// Connects from a chosen local address (any port), e.g. `127.0.0.5`: loopback
    /// has the whole 127/8, so tests can be several clients.
    pub fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> Self {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
        socket
            .connect_timeout(&addr.into(), REPLY_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {addr} from {source}: {e}"));
        Self::over(socket.into())
    }

    /// Connects with a small receive buffer (`SO_RCVBUF` set before connecting, so the
    /// advertised window stays small): output the client does not read then piles up
    /// at the server instead of in the client's kernel.
    pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> Self {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        socket.set_recv_buffer_size(rcvbuf).unwrap();
        socket
            .connect_timeout(&addr.into(), REPLY_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Self::over(socket.into())
    }

    /// Connects and completes the handshake (`Hello` → `Welcome`).
    pub fn established(addr: SocketAddr) -> Self {
        let mut c = Self::connect(addr);
        c.hello();
        c
    }

    /// The underlying socket (e.g. to clone it for a writer thread).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes raw bytes.
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write of {} bytes: {e}", bytes.len()));
    }

    /// Writes one frame.
    pub fn send(&mut self, kind: u8, request_id: u32, payload: &[u8]) {
        self.write_raw(&encode(kind, request_id, payload));
    }

    /// Sends `Hello` and expects `Welcome`.
    pub fn hello(&mut self) {
        self.send(kind::HELLO, 1, b"");
        let f = self.read_frame(REPLY_TIMEOUT);
        assert_eq!(
            f.ksr(),
            (kind::WELCOME, 0, 1),
            "expected Welcome, got {f:?}"
        );
    }

    /// One ping/pong round trip, checking request id and payload.
    pub fn ping(&mut self, request_id: u32, payload: &[u8]) {
        self.send(kind::PING, request_id, payload);
        let f = self.read_frame(REPLY_TIMEOUT);
        assert_eq!(
            f.ksr(),
            (kind::PONG, 0, request_id),
            "expected Pong, got {f:?}"
        );
        assert_eq!(f.payload, payload, "pong payload differs");
    }

    /// Reads one frame with its payload exactly as sent (no Pong/Welcome rewriting).
    pub fn read_raw_frame(&mut self, timeout: Duration) -> Frame {
        self.raw = true;
        let f = self.read_frame(timeout);
        self.raw = false;
        f
    }

    /// Reads one frame, however it arrives, or reports why none did.
    pub fn try_read_frame(&mut self, timeout: Duration) -> Read1 {
        let deadline = Instant::now() + timeout;
        loop {
            match frame::decode(&self.buf, CLIENT_MAX_PAYLOAD) {
                Ok(Some(d)) => {
                    // A Pong's payload is reported as the data it echoes (see `encode`);
                    // a Welcome, once checked to be valid, as empty (its fields are the
                    // SDK tests' business, not the connection layer's).
                    let payload = match Msg::decode(d.header.kind, d.payload) {
                        _ if self.raw => d.payload.to_vec(),
                        Ok(Msg::Pong(p)) if d.header.kind == kind::PONG => p.data,
                        Ok(Msg::Welcome(_)) if d.header.kind == kind::WELCOME => Vec::new(),
                        _ => d.payload.to_vec(),
                    };
                    let f = Frame {
                        header: d.header,
                        payload,
                    };
                    let consumed = d.consumed;
                    self.buf.drain(..consumed);
                    return Read1::Frame(f);
                }
                Ok(None) => {}
                Err(e) => return Read1::Failed(format!("server sent unframeable bytes: {e}")),
            }
            if self.eof {
                return if self.buf.is_empty() {
                    Read1::Eof
                } else {
                    Read1::Failed(format!("EOF inside a frame ({} bytes)", self.buf.len()))
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Read1::Timeout;
            }
            let mut chunk = [0u8; 64 * 1024];
            match switchboard::client::read_within(&mut self.stream, &mut chunk, deadline) {
                Ok(Some(0)) => self.eof = true,
                Ok(Some(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(None) => {}
                Err(e) => return Read1::Failed(format!("read failed: {e}")),
            }
        }
    }

    /// Reads one frame; fails the test on timeout, EOF or error.
    pub fn read_frame(&mut self, timeout: Duration) -> Frame {
        match self.try_read_frame(timeout) {
            Read1::Frame(f) => f,
            Read1::Failed(why) => panic!("expected a frame: {why}"),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Expects the server to close its side with nothing more sent.
    pub fn expect_eof(&mut self, timeout: Duration) {
        match self.try_read_frame(timeout) {
            Read1::Eof => {}
            other => panic!("expected EOF, got {other:?}"),
        }
    }

    /// Expects an `Error` frame with `code`, then EOF.
    pub fn expect_error_then_eof(&mut self, code: u16, timeout: Duration) {
        let f = self.read_frame(timeout);
        assert_eq!(
            (f.header.kind, f.header.status),
            (kind::ERROR, code),
            "expected Error {code}, got {f:?}"
        );
        self.expect_eof(timeout);
    }

    /// Expects nothing but what this connection asked for: the server answers a
    /// connection's frames in order, so the Pong to a fresh Ping is the next frame
    /// unless a stray one was on its way (a barrier, not a window of silence).
    pub fn expect_nothing_more(&mut self) {
        self.ping(u32::MAX, b"nothing more?");
    }
}

/// Sends signal `sig` to process `pid` (one the test started); fails the test if
/// it cannot.
pub fn kill(pid: u32, sig: i32) {
    switchboard::bench_support::kill(pid, sig)
        .unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

/// A configuration for in-process tests: loopback, ports 0, two reactors and two
/// workers, short but not racy timeouts, `state_dir` inside `dir`.
pub fn test_config(dir: &Path) -> Config {
    let mut c = Config {
        state_dir: dir.join("state"),
        ..Config::default()
    };
    c.listeners.client = ListenerConfig {
        backlog: 1024,
        ..ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 0)))
    };
    c.auth.keys = vec![test_key()];
    c.admin.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    c.reactor.threads = 2;
    c.workers.threads = 2;
    c.heartbeat.interval = Duration::from_secs(1);
    c.heartbeat.handshake_timeout = Duration::from_secs(3);
    c.heartbeat.idle_timeout = Duration::from_secs(5);
    c.limits.close_linger = Duration::from_millis(500);
    c.shutdown.drain_timeout = Duration::from_secs(5);
    c.reactor.backend = test_backend();
    // Small segments: every test server preallocates one.
    c.journal.segment_bytes = 1 << 20;
    c
}

/// The I/O backend in-process test servers use: `SWITCHBOARD_TEST_BACKEND=uring|auto|epoll`
/// (default epoll), so CI runs the whole suite once per backend.
pub fn test_backend() -> switchboard::config::Backend {
    use switchboard::config::Backend;
    match std::env::var("SWITCHBOARD_TEST_BACKEND").as_deref() {
        Ok("uring") => Backend::Uring,
        Ok("auto") => Backend::Auto,
        Ok("epoll") | Err(_) => Backend::Epoll,
        Ok(other) => panic!("SWITCHBOARD_TEST_BACKEND={other}: expected uring, auto or epoll"),
    }
}

/// Turns the echo listener on (loopback, port 0).
pub fn with_echo(c: &mut Config) {
    c.listeners.echo = Some(ListenerConfig {
        backlog: 1024,
        ..ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 0)))
    });
}

/// Turns the echo listener on in WebSocket mode (loopback, port 0).
pub fn with_ws_echo(c: &mut Config) {
    with_echo(c);
    if let Some(echo) = c.listeners.echo.as_mut() {
        echo.websocket = true;
    }
}

/// An in-process server with its temporary state directory; shut down on drop.
pub struct TestServer {
    server: Option<Server>,
    config: Config,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on [`test_config`], adjusted by `tweak`.
    pub fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        config.validate().expect("test config must be valid");
        let server = Server::start(&config).expect("server starts");
        Self {
            server: Some(server),
            config,
            _dir: dir,
        }
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A verifier built from its configuration: it mints tokens the server accepts.
    pub fn verifier(&self) -> Verifier {
        Verifier::from_config(&self.config).unwrap()
    }

    /// Reloads `config` as SIGHUP would.
    pub fn reload(
        &self,
        config: &Config,
    ) -> Result<switchboard::ReloadReport, switchboard::ReloadError> {
        self.server().reload(config)
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    /// The client-protocol address.
    pub fn addr(&self) -> SocketAddr {
        self.server().client_addr()
    }

    /// The admin listener's address (it must be on).
    pub fn admin_addr(&self) -> SocketAddr {
        self.server().admin_addr().expect("admin listener on")
    }

    /// The echo address (the echo listener must be on).
    pub fn echo_addr(&self) -> SocketAddr {
        self.server().echo_addr().expect("echo listener on")
    }

    /// Live counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.server().metrics()
    }

    /// Takes the server out, e.g. to shut it down from another thread.
    pub fn take(&mut self) -> Server {
        self.server.take().expect("server running")
    }

    /// Graceful shutdown now.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.take().shutdown()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.shutdown();
        }
    }
}

/// Command-line words written as one line: `words("--scenario ping -n 20")` (no
/// quoting: a value that may hold spaces, like a path or a message, is pushed on its
/// own).
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
pub use switchboard::bench_support::XorShift as Rng;

/// Path of the real daemon binary built by cargo for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_switchboard")
}

/// Runs the binary with `args` to completion (at most `timeout`, then it is killed);
/// returns its exit status, stdout and stderr.
pub fn run_bin(args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    run_bin_at(None, args, timeout)
}

/// [`run_bin`] with `dir` as the child's working directory (the test process's own
/// stays where it is: all tests share it).
pub fn run_bin_in(dir: &Path, args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    run_bin_at(Some(dir), args, timeout)
}

fn run_bin_at(
    dir: Option<&Path>,
    args: &[&str],
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(bin());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard");
    let out = drain_to_string(child.stdout.take().unwrap());
    let err = drain_to_string(child.stderr.take().unwrap());
    let status = wait_child(&mut child, timeout)
        .unwrap_or_else(|| panic!("switchboard {args:?} did not exit within {timeout:?}"));
    let out = out.recv_timeout(REPLY_TIMEOUT).unwrap_or_default();
    let err = err.recv_timeout(REPLY_TIMEOUT).unwrap_or_default();
    (status, out, err)
}

fn drain_to_string(mut r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx
}

/// Waits for a child to exit; kills it and returns `None` after `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The real daemon running as a child process from a config file in a temp dir.
/// Killed on drop if still running.
pub struct Daemon {
    child: Child,
    client_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stderr_lines: mpsc::Receiver<String>,
    /// The directory of the config file and state (when this daemon made it).
    _dir: Option<tempfile::TempDir>,
    config_path: PathBuf,
}

/// A daemon config file body: loopback, ports 0, one reactor and one worker, state in
/// `state_dir`, short timeouts, plain-text info logs.
pub fn daemon_toml(state_dir: &Path) -> String {
    format!(
        "state_dir = {state:?}\n\
         [listeners.client]\naddr = \"127.0.0.1:0\"\n\
         [reactor]\nthreads = 1\n\
         [workers]\nthreads = 1\n\
         [heartbeat]\ninterval = \"1s\"\nidle_timeout = \"10s\"\nhandshake_timeout = \"5s\"\n\
         [shutdown]\ndrain_timeout = \"3s\"\n\
         [log]\nlevel = \"info\"\nformat = \"text\"\n\
         [admin]\naddr = \"127.0.0.1:0\"\n\
         [journal]\nsegment_bytes = 1048576\n\
         [[auth.keys]]\nkid = \"test\"\nsecret = {secret:?}\n",
        state = state_dir.display().to_string(),
        secret = TEST_SECRET,
    )
}

impl Daemon {
    /// Writes `toml(state_dir)` to a temp dir, starts `switchboard --config FILE` and
    /// waits (at most 10 s) for its `switchboard listening client_addr=…` log line.
    pub fn spawn(toml: impl FnOnce(&Path) -> String) -> Self {
        Self::spawn_with_env(toml, &[])
    }

    /// [`spawn`](Self::spawn) with extra environment variables for the daemon.
    pub fn spawn_with_env(toml: impl FnOnce(&Path) -> String, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path: PathBuf = dir.path().join("switchboard.toml");
        std::fs::write(&config_path, toml(&dir.path().join("state"))).unwrap();
        let mut d = Self::start(&config_path, env);
        d._dir = Some(dir);
        d
    }

    /// Starts `switchboard --config FILE` on an existing config file (its state dir
    /// survives this daemon: restart tests) and waits for its listening line.
    pub fn start(config_path: &Path, env: &[(&str, &str)]) -> Self {
        let config_path = config_path.to_path_buf();
        let mut child = Command::new(bin())
            .arg("--config")
            .arg(&config_path)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchboard");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        let (client_addr, admin_addr) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("daemon never logged its address; stderr so far: {seen:#?}");
                }
            };
            if let Some(addr) = parse_listening(&line) {
                break (addr, parse_admin_addr(&line));
            }
            seen.push(line);
        };
        Self {
            child,
            client_addr,
            admin_addr,
            stderr_lines: rx,
            _dir: None,
            config_path,
        }
    }

    /// The daemon's bound client address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The daemon's bound admin HTTP address, if the admin listener is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The child's process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: i32) {
        kill(self.child.id(), sig);
    }

    /// Waits for the daemon to exit (killing it after `timeout`).
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    /// The configuration file the daemon was started with (rewrite it, then SIGHUP).
    pub fn config_path(&self) -> PathBuf {
        self.config_path.clone()
    }

    /// Stderr lines logged since start-up (or the previous call), without blocking.
    pub fn log_lines(&self) -> Vec<String> {
        self.stderr_lines.try_iter().collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Extracts the address from a line like
/// `... switchboard listening client_addr=127.0.0.1:PORT ...`.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("switchboard listening")?;
    let (_, rest) = rest.split_once("client_addr=")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Extracts the admin address from the listening line (`admin_addr=Some(ADDR)`).
pub fn parse_admin_addr(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("admin_addr=Some(")?;
    rest.split(')').next()?.parse().ok()
}

/// The Python to run for a test that needs the PyPI package `module`: `$env_python`,
/// else `python3`, if it imports `module`. Otherwise the test is skipped (`None`,
/// "skipped: ..." printed), unless `$require` is `1` (CI sets it): then it panics
/// with what to install.
pub fn python_with(module: &str, env_python: &str, require: &str) -> Option<String> {
    use std::process::{Command, Stdio};
    let py = std::env::var(env_python).unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", &format!("import {module}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    if std::env::var(require).as_deref() == Ok("1") {
        panic!(
            "{module} is required ({require}=1) but `{py} -c 'import {module}'` fails; install \
             it (python3 -m pip install {module}) or point {env_python} at a Python that has it"
        );
    }
    println!(
        "skipped: Python package {module} not installed (set {env_python} to a venv's python \
         with it)"
    );
    None
}

/// Starts a test helper process (a Python receiver or SMTP server) that prints
/// `listening <port>` as its first line, and returns it with that port; `what` names
/// it if it says anything else.
pub fn spawn_listening(cmd: &mut std::process::Command, what: &str) -> (std::process::Child, u16) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .strip_prefix("listening ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{what} said {line:?}"));
    (child, port)
}

/// Runs `cmd` with `input` on its standard input (then closed) and returns what it
/// wrote and how it ended.
pub fn run_with_input(cmd: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}
