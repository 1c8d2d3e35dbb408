//! The command line (`clap`) and the [`Plan`] it resolves to: scenario defaults,
//! the loopback rule, source addresses, and how connections are split over processes
//! and threads under the per-process open-file limit.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::limits;
use crate::sources::{self, SourceError};

/// Largest `--size` for `ping` (the protocol's `Ping.data` bound).
pub const MAX_PING_DATA: usize = switchboard::protocol::messages::MAX_BODY;
/// Largest `--size` for `echo`.
pub const MAX_ECHO_SIZE: usize = 16 * 1024 * 1024;

/// storm: a load generator for Switchboard and other TCP servers.
///
/// Opens many connections from a few threads (mio, non-blocking; no thread per
/// connection), optionally over several processes and loopback source addresses,
/// drives one scenario on them, and reports rates, latency percentiles
/// (HdrHistogram) and errors. Every run stops by itself.
#[derive(Debug, Clone, Parser)]
#[command(name = "storm", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to do with the connections.
    #[arg(long, value_enum, default_value_t = ScenarioKind::Connect)]
    pub scenario: ScenarioKind,
    /// Server address [default: 127.0.0.1:7700; 127.0.0.1:7702 for --scenario echo].
    #[arg(long, value_name = "ADDR")]
    pub target: Option<String>,
    /// Connections to open (over all processes).
    #[arg(long, short = 'n', default_value_t = 100, value_name = "N")]
    pub connections: u64,
    /// connect/idle: connections opened per second (all processes); echo pingpong and
    /// ping: messages per second per connection. 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0, value_name = "R")]
    pub rate: f64,
    /// Measured time once all connections are open (seconds, or e.g. `500ms`)
    /// [default: 0 for connect, 10 otherwise].
    #[arg(long, value_parser = parse_secs, value_name = "SECS")]
    pub duration: Option<Duration>,
    /// Time before --duration whose samples are left out of rates and latency
    /// (for connect: counted from the first connection attempt).
    #[arg(long, value_parser = parse_secs, default_value = "0", value_name = "SECS")]
    pub warmup: Duration,
    /// Message size in bytes (echo: the message; ping: `Ping.data`).
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    pub size: usize,
    /// Echo traffic pattern: flood (keep writing and reading) or pingpong (one message
    /// in flight per connection).
    #[arg(long, value_enum, default_value_t = EchoMode::Pingpong)]
    pub mode: EchoMode,
    /// connect/idle: plain TCP, no protocol handshake (for echo servers).
    #[arg(long)]
    pub raw: bool,
    /// How the connection carries the protocol: tcp (binary frames), ws-json (a
    /// WebSocket with subprotocol `switchboard.v1.json`, one JSON text per message) or
    /// ws-bin (`switchboard.v1.bin`, binary frames in binary messages). echo: tcp or
    /// ws-bin (alias ws: --size byte binary messages to a WebSocket echo listener).
    /// Over WebSocket, connect latency includes the HTTP upgrade round trip.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// Speak TLS (rustls, the SDK's profile: TLS 1.3 and 1.2, X25519 first; ALPN
    /// `switchboard/1` over tcp, `http/1.1` over WebSocket). Connect latency then
    /// includes the TLS handshake; the report counts full and resumed handshakes.
    #[arg(long)]
    pub tls: bool,
    /// --tls: PEM file of the certificate authorities to trust [default: the Mozilla
    /// roots].
    #[arg(long, value_name = "PEM", requires = "tls")]
    pub ca_file: Option<PathBuf>,
    /// --tls: the name sent as SNI and checked against the certificate [default: the
    /// host part of --target].
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub server_name: Option<String>,
    /// --tls: resume sessions with the tickets earlier connections of the same thread
    /// received (TLS 1.3 resumption; without it every handshake is a full one).
    #[arg(long, requires = "tls")]
    pub tls_resume: bool,
    /// HS256 secret to mint tokens with (the HMAC key is the file's text, trimmed).
    #[arg(long, default_value = "./data/dev-secret", value_name = "PATH")]
    pub secret_file: PathBuf,
    /// Key id to put in the tokens' header (default: none, the server's first key).
    #[arg(long, value_name = "K")]
    pub kid: Option<String>,
    /// Source addresses, round-robin: a range `127.0.0.2-127.0.0.9`, a comma list,
    /// or `none` [default: 127.0.0.2-127.0.0.9 for an IPv4 loopback target].
    #[arg(long, value_name = "LIST")]
    pub source_addrs: Option<String>,
    /// Client processes to spread connections over [default: 1, or as many as the
    /// open-file limit requires].
    #[arg(long, value_name = "N")]
    pub procs: Option<usize>,
    /// Threads per process [default: cores, divided among --procs].
    #[arg(long, value_name = "T")]
    pub threads: Option<usize>,
    /// Print exactly one JSON object on stdout (the summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write the latency distribution as an HdrHistogram .hgrm file (milliseconds).
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Sample this process's resident set (the server's) before, during and after, and
    /// its CPU time over the measurement window (`server_cpu`: µs per message).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Allow a target (and sources) outside loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// A connection not established (Welcome, or TCP connect when raw) within this
    /// is an error of kind `timeout`.
    #[arg(long, value_parser = parse_secs, default_value = "10", value_name = "SECS")]
    pub connect_timeout: Duration,
    /// Overall bound on the run [default: time to connect + warm-up + duration + 60 s].
    #[arg(long, value_parser = parse_secs, value_name = "SECS")]
    pub timeout: Option<Duration>,
    /// Most connections being set up at once per process.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_inflight: usize,
    /// Echo flood: most bytes in flight (sent, not yet echoed) per connection
    /// [default: max(16 × size, 64 KiB)].
    #[arg(long, value_name = "BYTES")]
    pub window: Option<usize>,
    /// chat: how many of the --connections are agents (the rest are visitors, one
    /// conversation each) [default: ceil(connections / 11)].
    #[arg(long, value_name = "A")]
    pub agents: Option<u64>,
    /// chat: each agent's capacity (the minted `max_concurrent`)
    /// [default: ceil(visitors / agents) + 1].
    #[arg(long, value_name = "C")]
    pub capacity: Option<u32>,
    /// chat: the group agents list and conversations open in; fanout: the notices'
    /// group (agents list it) [default: `support` for chat, `fanout` for fanout].
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// fanout: notices the admin sends [default: 10].
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub count: u64,
    /// fanout: members are visitors of the admin's tenant and notices go to everyone
    /// (empty group), instead of agents of the group.
    #[arg(long)]
    pub visitors: bool,
    /// chat and fanout: after --duration, how long to keep reading (no new load) so
    /// messages in flight are counted before loss is judged.
    #[arg(long, value_parser = parse_secs, default_value = "1", value_name = "SECS")]
    pub drain: Duration,
    /// No live progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Internal: run as child process I of --child-count (set by the parent).
    #[arg(long, hide = true, value_name = "I", requires = "child_count")]
    pub child_index: Option<usize>,
    /// Internal: number of child processes (set by the parent).
    #[arg(long, hide = true, value_name = "N", requires = "child_index")]
    pub child_count: Option<usize>,
}

const AFTER_HELP: &str = "\
Scenarios:
  connect  open N connections at --rate per second; handshake (Hello/Welcome with minted
           visitor tokens) or plain TCP with --raw; connect rate and latency
  idle     open N, hold them --duration (answering Pings, sending one per heartbeat),
           report survivors
  echo     raw echo: --mode flood (bytes/s, latency per message by stream position) or
           --mode pingpong (one message in flight; --rate per connection)
  ping     protocol Ping/Pong round trips (--rate per connection, 0 = back to back)
  chat     --agents A agents (capacity --capacity) and N-A visitors; each visitor opens a
           conversation and both sides exchange --size byte messages at --rate per
           conversation (half each way, default 2); v->a and a->v latency, loss, order
  fanout   N members (agents of --group, or --visitors) and one admin sending --count
           notices at --rate per second (default 1); time to reach all members

Examples:
  storm --scenario connect -n 19000 --procs 2 --json
  storm --scenario echo --target 127.0.0.1:7702 -n 1000 --size 1024 --mode flood --duration 10
  storm --scenario idle -n 19000 --duration 30 --server-pid $(pgrep -n switchboard)
  storm --scenario chat -n 5500 --agents 500 --capacity 10 --rate 10 --duration 20
  storm --scenario fanout -n 10000 --count 10 --json
  storm --scenario chat -n 5500 --transport ws-json --duration 20
  storm --scenario echo --target 127.0.0.1:7702 --transport ws -n 1000 --size 1024 --mode flood
  storm --scenario connect -n 10000 --raw --tls --ca-file ca.pem --server-name localhost \
        --server-pid $(pgrep -n switchboard)   # full TLS handshakes per server CPU-second
  storm --scenario chat -n 5500 --tls --tls-resume --ca-file ca.pem --server-name localhost

Transports (--transport): tcp, ws-json, ws-bin (alias ws). Over WebSocket each connection
first upgrades (GET / with a random Sec-WebSocket-Key, the 101 and its accept key checked),
so connect latency includes the upgrade round trip; frames go out masked with a fresh
key each. --raw/echo with ws-bin: binary messages of --size bytes, no subprotocol.

TLS (--tls, any transport): rustls with the SDK's profile (TLS 1.3/1.2, X25519 first);
connect latency includes the TLS handshake; the report counts `tls_full` and
`tls_resumed` handshakes. --tls-resume keeps each thread's session tickets so later
connections resume; with --raw a connection is open once its handshake completes.";

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioKind {
    /// Connection storm: connect rate and handshake latency.
    Connect,
    /// Hold connections idle; count survivors.
    Idle,
    /// Raw echo round trips or flood.
    Echo,
    /// Protocol Ping/Pong round trips.
    Ping,
    /// Conversations: visitors and agents exchanging messages.
    Chat,
    /// One admin's notices delivered to many members.
    Fanout,
}

impl ScenarioKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Idle => "idle",
            Self::Echo => "echo",
            Self::Ping => "ping",
            Self::Chat => "chat",
            Self::Fanout => "fanout",
        }
    }
}

/// How a connection carries its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Plain TCP: binary frames (or raw bytes for echo).
    Tcp,
    /// WebSocket, subprotocol `switchboard.v1.json`: one JSON text message per frame.
    WsJson,
    /// WebSocket, subprotocol `switchboard.v1.bin`: binary frames in binary messages
    /// (echo: `--size` byte binary messages, no subprotocol).
    #[value(alias = "ws")]
    WsBin,
}

impl Transport {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::WsJson => "ws-json",
            Self::WsBin => "ws-bin",
        }
    }

    /// Over a WebSocket.
    pub fn is_ws(self) -> bool {
        self != Self::Tcp
    }
}

/// Echo traffic patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EchoMode {
    /// Every connection writes and reads as fast as it can.
    Flood,
    /// One message in flight per connection.
    Pingpong,
}

impl EchoMode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flood => "flood",
            Self::Pingpong => "pingpong",
        }
    }
}

/// A duration in seconds (`1.5`) or humantime (`500ms`, `2m`).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    if let Ok(f) = s.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(f)
            .map_err(|_| format!("{s:?}: seconds must be a non-negative finite number"));
    }
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?}: {e}"))
}

/// Why the command line cannot run.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The target does not resolve.
    #[error("--target {0:?}: {1}")]
    Target(String, String),
    /// The target is not loopback.
    #[error(
        "--target {0} is not a loopback address; storm only loads servers on this machine \
         unless --allow-remote is given"
    )]
    Remote(SocketAddr),
    /// Bad `--source-addrs`.
    #[error("--source-addrs: {0}")]
    Sources(#[from] SourceError),
    /// A value out of range.
    #[error("{0}")]
    Value(String),
    /// Too many sockets for one process.
    #[error(
        "{per_proc} connections per process exceed the open-file limit of {nofile} \
         (the hard limit; it cannot be raised here): use --procs {suggest} or more"
    )]
    TooManyPerProcess {
        /// Connections one process would open.
        per_proc: u64,
        /// The open-file limit.
        nofile: u64,
        /// Enough processes.
        suggest: u64,
    },
    /// Too many connections per source address.
    #[error(
        "{per_source} connections per source address exceed its {ports} ephemeral ports: \
         give more --source-addrs (e.g. 127.0.0.2-127.0.0.{last})"
    )]
    TooManyPerSource {
        /// Connections one address would carry.
        per_source: u64,
        /// Ports one address has.
        ports: u64,
        /// Suggested last octet.
        last: u64,
    },
}

/// What the machine allows (passed in so resolution is testable).
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    /// Soft open-file limit after raising it.
    pub nofile: u64,
    /// Cores.
    pub cores: usize,
    /// Ephemeral ports per source address.
    pub ports: u64,
}

/// This process's part in a multi-process run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildRole {
    /// 0-based process index.
    pub index: usize,
    /// Number of processes.
    pub count: usize,
}

/// A resolved run: everything defaulted and checked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The scenario.
    pub scenario: ScenarioKind,
    /// Server address.
    pub target: SocketAddr,
    /// Hello/Welcome and frames (`false`: plain TCP).
    pub protocol: bool,
    /// TCP or WebSocket (and which dialect).
    pub transport: Transport,
    /// Connections over the whole run.
    pub total_connections: u64,
    /// Connections this process opens.
    pub connections: u64,
    /// Global index of this process's first connection.
    pub first_index: u64,
    /// Connections per second for this process (0 = as fast as possible).
    pub connect_rate: f64,
    /// Messages per second per connection (0 = back to back).
    pub message_rate: f64,
    /// The `--rate` as given.
    pub rate: f64,
    /// Measured time.
    pub duration: Duration,
    /// Excluded time before it.
    pub warmup: Duration,
    /// Message size.
    pub size: usize,
    /// Echo mode.
    pub mode: EchoMode,
    /// Token secret.
    pub secret_file: PathBuf,
    /// Token key id.
    pub kid: Option<String>,
    /// Source addresses (empty: no bind).
    pub sources: Vec<IpAddr>,
    /// Client processes (1: everything in this process).
    pub procs: usize,
    /// Whether `procs` was chosen automatically.
    pub procs_auto: bool,
    /// Threads in this process.
    pub threads: usize,
    /// JSON output.
    pub json: bool,
    /// .hgrm output.
    pub hgrm: Option<PathBuf>,
    /// Server to sample.
    pub server_pid: Option<u32>,
    /// Per-connection setup bound.
    pub connect_timeout: Duration,
    /// Overall bound.
    pub timeout: Duration,
    /// Connections being set up at once, this process.
    pub max_inflight: usize,
    /// Echo flood window.
    pub window: usize,
    /// No progress line.
    pub quiet: bool,
    /// chat: agents (global indices below this; the rest are visitors).
    pub agents: u64,
    /// chat: each agent's capacity.
    pub capacity: u32,
    /// chat and fanout: the group.
    pub group: String,
    /// fanout: notices to send.
    pub count: u64,
    /// fanout: members are visitors (notices to everyone).
    pub visitors: bool,
    /// chat and fanout: reading time after the load.
    pub drain: Duration,
    /// Set in child processes.
    pub child: Option<ChildRole>,
    /// TLS settings (`--tls`).
    pub tls: Option<TlsPlan>,
}

/// How connections speak TLS (`--tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPlan {
    /// Certificate authorities to trust (`None`: the Mozilla roots).
    pub ca_file: Option<PathBuf>,
    /// SNI and the name the certificate must carry.
    pub server_name: String,
    /// Resume sessions with earlier tickets.
    pub resume: bool,
}

impl Plan {
    /// Index of this process (0 when alone), used in token subjects.
    pub fn proc_index(&self) -> usize {
        self.child.map_or(0, |c| c.index)
    }

    /// `"protocol"` or `"raw"`.
    pub fn wire(&self) -> &'static str {
        if self.protocol { "protocol" } else { "raw" }
    }
}

fn value(msg: impl Into<String>) -> UsageError {
    UsageError::Value(msg.into())
}

/// Resolves a target, preferring IPv4 among several results.
pub fn resolve_target(s: &str) -> Result<SocketAddr, UsageError> {
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| UsageError::Target(s.to_owned(), e.to_string()))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| UsageError::Target(s.to_owned(), "resolves to no address".into()))
}

impl Cli {
    /// Resolves defaults and checks everything that can be checked before running.
    pub fn resolve(&self, m: Machine) -> Result<Plan, UsageError> {
        let scenario = self.scenario;
        let default_target = match scenario {
            ScenarioKind::Echo => "127.0.0.1:7702",
            _ => "127.0.0.1:7700",
        };
        let target_arg = self.target.as_deref().unwrap_or(default_target);
        let target = resolve_target(target_arg)?;
        if !self.allow_remote && !sources::is_loopback(target.ip()) {
            return Err(UsageError::Remote(target));
        }
        let sources = match &self.source_addrs {
            Some(spec) => sources::parse(spec)?,
            None => sources::default_for(target),
        };
        sources::check(&sources, target, self.allow_remote)?;

        if self.connections == 0 {
            return Err(value("--connections must be at least 1"));
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(value("--rate must be a non-negative number"));
        }
        let protocol = match scenario {
            ScenarioKind::Echo => false,
            ScenarioKind::Ping if self.raw => {
                return Err(value(
                    "--scenario ping speaks the protocol; --raw does not apply",
                ));
            }
            ScenarioKind::Ping | ScenarioKind::Chat | ScenarioKind::Fanout if self.raw => {
                return Err(value(format!(
                    "--scenario {} speaks the protocol; --raw does not apply",
                    scenario.name()
                )));
            }
            ScenarioKind::Ping | ScenarioKind::Chat | ScenarioKind::Fanout => true,
            ScenarioKind::Connect | ScenarioKind::Idle => !self.raw,
        };
        let transport = self.transport;
        let tls = if self.tls {
            let server_name = match &self.server_name {
                Some(n) => n.clone(),
                None => host_of(target_arg).to_owned(),
            };
            if rustls::pki_types::ServerName::try_from(server_name.as_str()).is_err() {
                return Err(value(format!(
                    "--server-name {server_name:?} is neither a DNS name nor an IP address"
                )));
            }
            Some(TlsPlan {
                ca_file: self.ca_file.clone(),
                server_name,
                resume: self.tls_resume,
            })
        } else {
            None
        };
        if transport == Transport::WsJson && !protocol {
            return Err(value(
                "--transport ws-json carries the protocol; for echo or --raw use --transport ws-bin",
            ));
        }
        match scenario {
            ScenarioKind::Ping if self.size > MAX_PING_DATA => {
                return Err(value(format!(
                    "--size {} exceeds the protocol's Ping.data bound of {MAX_PING_DATA} bytes",
                    self.size
                )));
            }
            ScenarioKind::Echo if self.size == 0 || self.size > MAX_ECHO_SIZE => {
                return Err(value(format!(
                    "--size must be 1 to {MAX_ECHO_SIZE} bytes for echo"
                )));
            }
            _ => {}
        }
        let (connect_rate_total, message_rate) = match scenario {
            ScenarioKind::Connect | ScenarioKind::Idle => (self.rate, 0.0),
            ScenarioKind::Echo | ScenarioKind::Ping => (0.0, self.rate),
            ScenarioKind::Chat => (0.0, if self.rate > 0.0 { self.rate } else { 2.0 }),
            ScenarioKind::Fanout => (0.0, if self.rate > 0.0 { self.rate } else { 1.0 }),
        };
        if scenario == ScenarioKind::Chat && self.size > MAX_PING_DATA {
            return Err(value(format!(
                "--size {} exceeds the protocol's Send.body bound of {MAX_PING_DATA} bytes",
                self.size
            )));
        }
        if scenario == ScenarioKind::Fanout && self.count == 0 {
            return Err(value("--count must be at least 1"));
        }
        let duration = self.duration.unwrap_or(match scenario {
            ScenarioKind::Connect => Duration::ZERO,
            // The last notice goes out at (count - 1) / rate.
            ScenarioKind::Fanout => {
                Duration::from_secs_f64((self.count as f64 / message_rate).min(1e6))
            }
            _ => Duration::from_secs(10),
        });
        // chat: agents first, then visitors.
        let (agents, capacity) = if scenario == ScenarioKind::Chat {
            if self.connections < 2 {
                return Err(value(
                    "chat needs at least 2 connections (an agent and a visitor)",
                ));
            }
            let agents = self.agents.unwrap_or(self.connections.div_ceil(11));
            if agents == 0 || agents >= self.connections {
                return Err(value(
                    "--agents must be at least 1 and below --connections (the rest are visitors)",
                ));
            }
            let visitors = self.connections - agents;
            let capacity = match self.capacity {
                Some(c) => c,
                None => u32::try_from(visitors.div_ceil(agents) + 1).unwrap_or(u32::MAX),
            };
            (agents, capacity)
        } else {
            (0, 0)
        };
        let group = self.group.clone().unwrap_or_else(|| {
            match scenario {
                ScenarioKind::Fanout if self.visitors => "",
                ScenarioKind::Fanout => "fanout",
                _ => "support",
            }
            .to_owned()
        });
        if self.max_inflight == 0 {
            return Err(value("--max-inflight must be at least 1"));
        }
        let window = self
            .window
            .unwrap_or_else(|| (self.size.saturating_mul(16)).max(64 * 1024));
        if window < self.size {
            return Err(value("--window must be at least --size"));
        }

        // Processes: enough to stay under the open-file limit. fanout adds its admin.
        let n = if scenario == ScenarioKind::Fanout {
            self.connections + 1
        } else {
            self.connections
        };
        let per_proc_max = limits::sockets_per_process(m.nofile);
        let needed = n.div_ceil(per_proc_max);
        let (procs, procs_auto) = match (self.child_count, self.procs) {
            (Some(c), _) => (c.max(1), false),
            (None, Some(0)) => return Err(value("--procs must be at least 1")),
            (None, Some(p)) => (p, false),
            (None, None) => (
                usize::try_from(needed).unwrap_or(usize::MAX).max(1),
                needed > 1,
            ),
        };
        let procs = procs.min(usize::try_from(n).unwrap_or(usize::MAX));
        let per_proc = n.div_ceil(procs as u64);
        if per_proc > per_proc_max {
            return Err(UsageError::TooManyPerProcess {
                per_proc,
                nofile: m.nofile,
                suggest: needed,
            });
        }
        let per_source = sources::max_per_source(sources.len(), n);
        if !sources.is_empty() && per_source > m.ports {
            let want = n.div_ceil(m.ports.max(1));
            return Err(UsageError::TooManyPerSource {
                per_source,
                ports: m.ports,
                last: (1 + want).min(254),
            });
        }

        let child = match (self.child_index, self.child_count) {
            (Some(index), Some(count)) if index < count => Some(ChildRole { index, count }),
            (Some(_), Some(_)) => return Err(value("--child-index must be below --child-count")),
            _ => None,
        };
        // This process's share: contiguous blocks, the first ones one larger.
        let (connections, first_index) = match child {
            Some(c) => share(n, c.count as u64, c.index as u64),
            None => (n, 0),
        };
        let connect_rate = if n > 0 {
            connect_rate_total * connections as f64 / n as f64
        } else {
            0.0
        };
        let threads = match self.threads {
            Some(0) => return Err(value("--threads must be at least 1")),
            Some(t) => t,
            None => (m.cores / procs).max(1),
        };
        let threads = threads.min(usize::try_from(connections.max(1)).unwrap_or(usize::MAX));
        let connect_budget = if connect_rate_total > 0.0 {
            Duration::from_secs_f64((n as f64 / connect_rate_total).min(1e6))
        } else {
            Duration::from_secs(n.div_ceil(1000))
        };
        let timeout = self.timeout.unwrap_or(
            connect_budget
                + self.connect_timeout
                + self.warmup
                + duration
                + Duration::from_secs(60),
        );
        Ok(Plan {
            scenario,
            target,
            protocol,
            transport,
            total_connections: n,
            connections,
            first_index,
            connect_rate,
            message_rate,
            rate: self.rate,
            duration,
            warmup: self.warmup,
            size: self.size,
            mode: self.mode,
            secret_file: self.secret_file.clone(),
            kid: self.kid.clone(),
            sources,
            procs,
            procs_auto,
            threads,
            json: self.json,
            hgrm: self.hgrm.clone(),
            server_pid: self.server_pid,
            connect_timeout: self.connect_timeout,
            timeout,
            max_inflight: self.max_inflight,
            window,
            quiet: self.quiet,
            agents,
            capacity,
            group,
            count: self.count,
            visitors: self.visitors,
            drain: self.drain,
            child,
            tls,
        })
    }
}

/// The host part of a `host:port` target (brackets of an IPv6 literal removed).
fn host_of(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Process `index` of `count`'s share of `n` connections: `(count, first index)`.
pub fn share(n: u64, count: u64, index: u64) -> (u64, u64) {
    let count = count.max(1);
    let base = n / count;
    let extra = n % count;
    let mine = base + u64::from(index < extra);
    let first = index * base + index.min(extra);
    (mine, first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACHINE: Machine = Machine {
        nofile: 20_000,
        cores: 2,
        ports: 28_232,
    };

    fn parse(args: &[&str]) -> Result<Plan, UsageError> {
        let mut v = vec!["storm"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap().resolve(MACHINE)
    }

    #[test]
    fn tls_options() {
        assert_eq!(parse(&[]).unwrap().tls, None);
        let p = parse(&["--tls", "--target", "localhost:7700"]).unwrap();
        assert_eq!(
            p.tls,
            Some(TlsPlan {
                ca_file: None,
                server_name: "localhost".into(),
                resume: false
            })
        );
        let p = parse(&[
            "--tls",
            "--ca-file",
            "ca.pem",
            "--server-name",
            "chat.example.com",
            "--tls-resume",
        ])
        .unwrap();
        assert_eq!(
            p.tls,
            Some(TlsPlan {
                ca_file: Some("ca.pem".into()),
                server_name: "chat.example.com".into(),
                resume: true
            })
        );
        // The default target's host is an IP address, which rustls can check too.
        assert_eq!(
            parse(&["--tls"]).unwrap().tls.unwrap().server_name,
            "127.0.0.1"
        );
        assert!(matches!(
            parse(&["--tls", "--server-name", "not a name"]),
            Err(UsageError::Value(_))
        ));
        // The TLS options need --tls.
        for extra in [
            &["--ca-file", "x"][..],
            &["--tls-resume"],
            &["--server-name", "a"],
        ] {
            let mut v = vec!["storm"];
            v.extend_from_slice(extra);
            assert!(Cli::try_parse_from(v).is_err(), "{extra:?}");
        }
    }

    #[test]
    fn defaults() {
        let p = parse(&[]).unwrap();
        assert_eq!(p.scenario, ScenarioKind::Connect);
        assert_eq!(p.target, "127.0.0.1:7700".parse::<SocketAddr>().unwrap());
        assert!(p.protocol);
        assert_eq!(p.connections, 100);
        assert_eq!(p.duration, Duration::ZERO);
        assert_eq!((p.procs, p.threads), (1, 2));
        assert_eq!(p.sources.len(), 8);
        assert_eq!(p.secret_file, PathBuf::from("./data/dev-secret"));
        assert_eq!(p.kid, None);
        assert!(p.timeout >= Duration::from_secs(60));

        let e = parse(&["--scenario", "echo"]).unwrap();
        assert_eq!(e.target, "127.0.0.1:7702".parse::<SocketAddr>().unwrap());
        assert!(!e.protocol);
        assert_eq!(e.duration, Duration::from_secs(10));
        assert_eq!(e.mode, EchoMode::Pingpong);
    }

    #[test]
    fn every_documented_flag_parses() {
        let p = parse(&[
            "--scenario",
            "echo",
            "--target",
            "127.0.0.1:9000",
            "--connections",
            "1000",
            "--rate",
            "2.5",
            "--duration",
            "1.5",
            "--warmup",
            "500ms",
            "--size",
            "1024",
            "--mode",
            "flood",
            "--secret-file",
            "/tmp/s",
            "--kid",
            "k1",
            "--source-addrs",
            "127.0.0.2,127.0.0.3",
            "--procs",
            "2",
            "--threads",
            "3",
            "--json",
            "--hgrm",
            "/tmp/x.hgrm",
            "--server-pid",
            "42",
            "--window",
            "4096",
            "--quiet",
        ])
        .unwrap();
        assert_eq!(p.target.port(), 9000);
        assert_eq!(p.total_connections, 1000);
        assert_eq!(p.message_rate, 2.5);
        assert_eq!(p.connect_rate, 0.0);
        assert_eq!(p.duration, Duration::from_millis(1500));
        assert_eq!(p.warmup, Duration::from_millis(500));
        assert_eq!((p.size, p.mode, p.window), (1024, EchoMode::Flood, 4096));
        assert_eq!(p.kid.as_deref(), Some("k1"));
        assert_eq!(p.sources.len(), 2);
        assert_eq!((p.procs, p.threads), (2, 3));
        assert!(p.json && p.quiet);
        assert_eq!(p.server_pid, Some(42));
        assert_eq!(p.hgrm, Some(PathBuf::from("/tmp/x.hgrm")));
        let c = parse(&["--scenario", "idle", "--raw", "--rate", "500"]).unwrap();
        assert!(!c.protocol);
        assert_eq!(c.connect_rate, 500.0);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Cli::try_parse_from(["storm", "--scenario", "gossip"]).is_err());
        assert!(parse(&["--scenario", "chat", "-n", "10", "--agents", "10"]).is_err());
        assert!(parse(&["--scenario", "fanout", "--count", "0"]).is_err());
        assert!(Cli::try_parse_from(["storm", "--mode", "burst"]).is_err());
        assert!(Cli::try_parse_from(["storm", "--duration", "soon"]).is_err());
        assert!(Cli::try_parse_from(["storm", "--child-index", "1"]).is_err());
        assert!(parse(&["--connections", "0"]).is_err());
        assert!(parse(&["--rate=-1"]).is_err());
        assert!(parse(&["--scenario", "ping", "--raw"]).is_err());
        assert!(parse(&["--scenario", "ping", "--size", "70000"]).is_err());
        assert!(parse(&["--scenario", "echo", "--size", "0"]).is_err());
        assert!(parse(&["--procs", "0"]).is_err());
        assert!(parse(&["--source-addrs", "127.0.0.9-127.0.0.2"]).is_err());
    }

    #[test]
    fn chat_and_fanout_defaults() {
        let p = parse(&["--scenario", "chat", "-n", "24", "--agents", "4"]).unwrap();
        assert_eq!((p.agents, p.capacity, p.group.as_str()), (4, 6, "support"));
        assert_eq!(p.message_rate, 2.0);
        let p = parse(&[
            "--scenario",
            "chat",
            "-n",
            "5500",
            "--agents",
            "500",
            "--capacity",
            "10",
        ])
        .unwrap();
        assert_eq!((p.agents, p.capacity), (500, 10));
        let f = parse(&["--scenario", "fanout", "-n", "50", "--count", "3"]).unwrap();
        assert_eq!(f.total_connections, 51, "members plus the admin");
        assert_eq!((f.group.as_str(), f.count), ("fanout", 3));
        assert_eq!(f.duration, Duration::from_secs(3));
        let f = parse(&["--scenario", "fanout", "--visitors", "--rate", "4"]).unwrap();
        assert_eq!(f.group, "");
        assert_eq!(f.duration, Duration::from_millis(2500));
    }

    #[test]
    fn non_loopback_needs_allow_remote() {
        let err = parse(&["--target", "192.0.2.1:7700"]).unwrap_err();
        assert!(matches!(err, UsageError::Remote(_)), "{err}");
        assert!(err.to_string().contains("--allow-remote"));
        let err = parse(&["--source-addrs", "192.0.2.9"]).unwrap_err();
        assert!(
            matches!(err, UsageError::Sources(SourceError::NotLoopback(_))),
            "{err}"
        );
        let p = parse(&["--target", "192.0.2.1:7700", "--allow-remote"]).unwrap();
        assert!(p.sources.is_empty(), "no default sources off loopback");
        assert!(parse(&["--target", "localhost:7700"]).is_ok());
    }

    #[test]
    fn open_file_limit_picks_or_demands_processes() {
        let p = parse(&["-n", "19000"]).unwrap();
        assert_eq!((p.procs, p.procs_auto), (1, false));
        let p = parse(&["-n", "50000", "--source-addrs", "127.0.0.2-127.0.0.9"]).unwrap();
        assert_eq!((p.procs, p.procs_auto), (3, true));
        assert_eq!(p.threads, 1);
        let err = parse(&["-n", "50000", "--procs", "2"]).unwrap_err();
        assert!(
            matches!(err, UsageError::TooManyPerProcess { suggest: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("--procs 3"), "{err}");
        // One source address has ~28k ports.
        let err =
            parse(&["-n", "30000", "--source-addrs", "127.0.0.2", "--procs", "2"]).unwrap_err();
        assert!(matches!(err, UsageError::TooManyPerSource { .. }), "{err}");
    }

    #[test]
    fn children_take_contiguous_shares() {
        assert_eq!(share(10, 3, 0), (4, 0));
        assert_eq!(share(10, 3, 1), (3, 4));
        assert_eq!(share(10, 3, 2), (3, 7));
        let total: u64 = (0..7).map(|i| share(19_000, 7, i).0).sum();
        assert_eq!(total, 19_000);
        let p = parse(&[
            "-n",
            "101",
            "--rate",
            "1010",
            "--child-index",
            "1",
            "--child-count",
            "2",
        ])
        .unwrap();
        assert_eq!((p.connections, p.first_index, p.procs), (50, 51, 2));
        assert!((p.connect_rate - 500.0).abs() < 1e-9);
        assert_eq!(p.proc_index(), 1);
    }

    #[test]
    fn transports_resolve_and_json_needs_the_protocol() {
        assert_eq!(parse(&[]).unwrap().transport, Transport::Tcp);
        let p = parse(&["--scenario", "chat", "--transport", "ws-json"]).unwrap();
        assert_eq!((p.transport, p.protocol), (Transport::WsJson, true));
        let p = parse(&["--scenario", "echo", "--transport", "ws"]).unwrap();
        assert_eq!((p.transport, p.protocol), (Transport::WsBin, false));
        assert_eq!(p.transport.name(), "ws-bin");
        for bad in [
            &["--scenario", "echo", "--transport", "ws-json"][..],
            &["--raw", "--transport", "ws-json"][..],
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("ws-json"), "{e}");
        }
    }

    #[test]
    fn seconds_parse_both_ways() {
        assert_eq!(parse_secs("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_secs("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_secs("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("NaN").is_err());
    }
}
