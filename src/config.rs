//! The daemon's configuration: TOML, unknown keys rejected, every value defaulted.
//!
//! `tuning/switchboard.toml` is the commented reference; the defaults below are the
//! source of truth and the reference file is checked against them by a test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::frame::{HEADER_LEN, MAX_PAYLOAD_LIMIT};
use crate::protocol::messages::MAX_BODY;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The TOML did not parse or named a key we do not know.
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    /// A key parsed but its value is out of range.
    #[error("invalid value for `{key}`: {reason}")]
    Invalid {
        /// Dotted path of the offending key, e.g. `limits.max_frame_bytes`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Something a configuration allows but an operator should know about: reported by
/// `switchboard check-config` (which still exits 0) and logged when the daemon starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct ConfigWarning {
    /// Dotted path of the key concerned, e.g. `admin.addr`.
    pub key: &'static str,
    /// What to know about it.
    pub message: String,
}

/// The whole configuration. `Serialize` (for the reload log's comparison of old and
/// new) writes no secret: `auth.keys` is skipped.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory that holds everything the daemon persists (journal, dev secret).
    pub state_dir: PathBuf,
    /// Sockets the daemon listens on.
    pub listeners: Listeners,
    /// Reactor (I/O thread) settings.
    pub reactor: ReactorConfig,
    /// Business worker pool settings.
    pub workers: WorkersConfig,
    /// Per-connection resource bounds.
    pub limits: Limits,
    /// Liveness deadlines.
    pub heartbeat: Heartbeat,
    /// Graceful shutdown.
    pub shutdown: Shutdown,
    /// Logging.
    pub log: LogConfig,
    /// Conversation routing.
    pub routing: RoutingConfig,
    /// Token verification keys.
    pub auth: AuthConfig,
    /// The admin HTTP listener (metrics, health).
    pub admin: AdminConfig,
    /// The durable journal of conversations (`<state_dir>/journal`).
    pub journal: JournalConfig,
    /// The agent assistants: FAQ auto-reply, canned replies, abuse filter.
    pub assist: AssistConfig,
    /// The web edge of the client listener (HTTP, WebSocket, JSON).
    pub web: WebConfig,
    /// The HTTP API for back ends (`/api/v1/…` on the client port).
    pub api: ApiConfig,
    /// The agent console's own logins (`[[console.users]]`).
    pub console: ConsoleConfig,
    /// Bounds of webhook delivery, for every endpoint.
    pub outbox: OutboxConfig,
    /// Endpoints that get conversation events from the journal (none by default).
    pub webhooks: Vec<WebhookConfig>,
    /// Offline notifications and reply digests by SMTP (off without `email.host`).
    pub email: EmailConfig,
}

mod api;
mod email;
mod proxy;
pub use api::{ApiConfig, ApiKeyConfig, MAX_API_KEYS, valid_key_id};
pub use email::{CaFileError, CredentialsError, EmailConfig, SmtpCredentials, SmtpTls};
mod console;
pub use console::{ConsoleConfig, ConsoleUser, MAX_CONSOLE_USERS, check_password_hash};
mod tls;
mod web;
mod webhooks;
mod widget;
pub use tls::{CertificatePair, MAX_TLS_CERTIFICATES, TlsConfig};
pub use web::{MAX_SITES, SiteSecretError, WebConfig, WebSite, valid_site_id};
pub use webhooks::{
    EVENT_TYPES, MAX_WEBHOOKS, OutboxConfig, WebhookConfig, WebhookSecretError, decode_secret,
    glob_match,
};
pub use widget::{PreChatField, WidgetSettings, parse_hours};

pub use crate::assist::AssistConfig;

pub use crate::journal::{FsyncPolicy, JournalConfig, OnDamage};

impl Default for Config {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("./data"),
            listeners: Listeners::default(),
            reactor: ReactorConfig::default(),
            workers: WorkersConfig::default(),
            limits: Limits::default(),
            heartbeat: Heartbeat::default(),
            shutdown: Shutdown::default(),
            log: LogConfig::default(),
            routing: RoutingConfig::default(),
            auth: AuthConfig::default(),
            admin: AdminConfig::default(),
            journal: JournalConfig::default(),
            assist: AssistConfig::default(),
            web: WebConfig::default(),
            api: ApiConfig::default(),
            console: ConsoleConfig::default(),
            outbox: OutboxConfig::default(),
            webhooks: Vec::new(),
            email: EmailConfig::default(),
        }
    }
}

/// The listening sockets.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// The binary-protocol listener for visitors, agents and bots.
    pub client: ListenerConfig,
    /// Raw echo listener for benchmarking the connection layer; off unless configured.
    pub echo: Option<ListenerConfig>,
}

impl Default for Listeners {
    fn default() -> Self {
        Self {
            client: ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 7700))),
            echo: None,
        }
    }
}

/// One listening socket.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address to bind; port 0 picks a free port (useful in tests).
    pub addr: SocketAddr,
    /// Kernel accept backlog per reactor listener.
    #[serde(default = "default_backlog")]
    pub backlog: u32,
    /// Echo listener only: echo WebSocket messages (RFC 6455, after an HTTP
    /// upgrade) instead of raw bytes. The client listener detects WebSocket itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub websocket: bool,
    /// Every connection starts with a PROXY protocol header (v1 or v2) naming the
    /// real client; accepted only from `trusted_proxies` (see `config/proxy.rs`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy_protocol: bool,
    /// The addresses (CIDRs) allowed to connect when `proxy_protocol` is on; anything
    /// else is closed at accept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<crate::proxy::Cidr>,
    /// Longest PROXY v2 header (TLVs included) taken, in bytes.
    #[serde(
        default = "proxy::default_max_header_bytes",
        skip_serializing_if = "proxy::is_default_max_header_bytes"
    )]
    pub proxy_max_header_bytes: usize,
    /// Client listener only: terminate TLS (`[listeners.client.tls]`). The port
    /// still takes plaintext too (a ClientHello is told apart by its first byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// A listener on a non-loopback address without `tls` is refused by
    /// `check-config` unless this says plaintext is deliberate (behind a proxy
    /// that terminates TLS).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_plaintext: bool,
}

impl ListenerConfig {
    /// A listener on `addr` with every other key at its default.
    pub fn on(addr: SocketAddr) -> Self {
        Self {
            addr,
            backlog: default_backlog(),
            websocket: false,
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            proxy_max_header_bytes: proxy::default_max_header_bytes(),
            tls: None,
            allow_plaintext: false,
        }
    }
}

fn default_backlog() -> u32 {
    4096
}

/// Reactor thread settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReactorConfig {
    /// Number of reactor threads; 0 means one per available core.
    pub threads: usize,
    /// Size of each reactor's shared read buffer in bytes.
    pub read_buffer_bytes: usize,
    /// Bytes read from one connection per readiness event before others get a turn.
    pub read_budget_bytes: usize,
    /// Readiness events taken from the kernel per poll call (io_uring: submission
    /// queue entries, rounded up to a power of two; the completion queue is 4×).
    pub events_per_poll: usize,
    /// Depth of the queue of commands from workers to one reactor.
    pub command_queue_depth: usize,
    /// The I/O backend: `epoll`, `uring`, or `auto` (uring when the kernel supports
    /// every feature it uses, else epoll; the choice is logged at start).
    pub backend: Backend,
    /// io_uring: most provided receive buffers per reactor (a power of two, at most
    /// 32768); 256 KiB of them are published at start and the pool doubles when
    /// receives run out.
    pub uring_buffers: u32,
    /// io_uring: size of each provided receive buffer in bytes.
    pub uring_buffer_bytes: u32,
    /// io_uring: entries of each reactor's registered file table (at most the
    /// open-files limit; 0 turns it off). A connection whose slot is within it names
    /// the table entry in its requests instead of its descriptor (no file reference
    /// taken per request); the rest use their descriptors.
    pub uring_fixed_files: u32,
    /// Scheduler slice in microseconds that reactor and worker threads ask of the
    /// kernel (Linux 6.12+ EEVDF: a shorter slice preempts sooner on wakeup); 0 keeps
    /// the kernel's default. Between 100 (the default) and 100,000 when set.
    pub sched_slice_us: u32,
}

/// Which I/O backend the reactors use.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// epoll through `mio`.
    Epoll,
    /// io_uring (multishot accept/recv, provided-buffer ring); fails to start if the
    /// kernel lacks a feature.
    Uring,
    /// io_uring when supported, else epoll.
    Auto,
}

impl Backend {
    /// The value as written in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Epoll => "epoll",
            Self::Uring => "uring",
            Self::Auto => "auto",
        }
    }
}

impl Default for ReactorConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            read_buffer_bytes: 64 * 1024,
            read_budget_bytes: 256 * 1024,
            events_per_poll: 1024,
            command_queue_depth: 16_384,
            backend: Backend::Epoll,
            uring_buffers: 64,
            uring_buffer_bytes: 16_384,
            uring_fixed_files: 16_384,
            sched_slice_us: 100,
        }
    }
}

/// Business worker pool settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Number of worker threads; 0 means half the available cores (at least one).
    pub threads: usize,
    /// Depth of each worker's event queue; a full queue closes the connection with
    /// `SERVER_BUSY` rather than blocking a reactor.
    pub queue_depth: usize,
    /// Frame payload bytes one worker's queue may hold; past it, as for a full queue,
    /// the connection whose frame did not fit is closed with `SERVER_BUSY`.
    pub queue_bytes: u64,
    /// Messages the router's queue and each conversation shard's queue may hold
    /// before a client request for it is refused: the request's connection is closed
    /// with `SERVER_BUSY` (retryable). Facts (connections coming and going, the
    /// router's assignments, closes) are never refused; each is caused by a bounded
    /// input, so a queue holds at most this many requests plus a few facts per
    /// connection and per admitted request.
    pub service_queue_depth: usize,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            queue_depth: 16_384,
            queue_bytes: 64 * 1024 * 1024,
            service_queue_depth: 65_536,
        }
    }
}

/// Per-connection resource bounds.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest frame payload accepted, in bytes (excluding header and padding).
    pub max_frame_bytes: u32,
    /// Output queued for one connection beyond which it is closed as a slow consumer.
    /// Expensive replies (`HistoryPage`s) count against it from when they are built
    /// and are deferred while the connection owes this much.
    pub max_pending_bytes: u32,
    /// Output queued for all connections together; past it the connections owing the
    /// most are cut as slow consumers until the total is back under it. 0 = auto:
    /// a sixteenth of the memory available to the daemon (see
    /// [`Config::max_pending_total_bytes`]).
    pub max_pending_total: u64,
    /// `History` requests one connection may have waiting while it owes
    /// `max_pending_bytes` of output; one more cuts it as a slow consumer. A worker
    /// holds at most 64 times this many.
    pub max_held_requests: u32,
    /// A connection whose queued output makes no progress for this long (its peer
    /// reads nothing) is cut as a slow consumer, whether or not its reading is paused.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// After the server closes a connection with an error frame, how long it keeps
    /// reading (and discarding) so the client sees the error instead of a reset.
    #[serde(with = "humantime_serde")]
    pub close_linger: Duration,
    /// Open connections over the whole daemon (all listeners); a connection past it is
    /// closed as soon as it is accepted.
    pub max_connections: u32,
    /// Open connections from one IP address (IPv6: one /64 counts as one address).
    pub max_connections_per_ip: u32,
    /// Connections accepted per second over the whole daemon (a token bucket per
    /// reactor, each refilled at its share); past it new connections are closed.
    pub accept_rate: u32,
    /// How many connections may be accepted in one burst above `accept_rate`.
    pub accept_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 1024 * 1024,
            max_pending_bytes: 4 * 1024 * 1024,
            max_pending_total: 0,
            max_held_requests: 1024,
            stall_timeout: Duration::from_secs(10),
            close_linger: Duration::from_secs(2),
            max_connections: 1_000_000,
            max_connections_per_ip: 10_000,
            accept_rate: 100_000,
            accept_burst: 20_000,
        }
    }
}

/// The admin HTTP listener (`[admin]`): `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Whether the admin listener runs at all.
    pub enabled: bool,
    /// Address to bind; port 0 picks a free port (useful in tests).
    pub addr: SocketAddr,
    /// Admin connections open at once. When all are taken, a new connection takes the
    /// slot of the oldest one still waiting for its request (answered first if its
    /// request has arrived, else closed), or, if every slot is answering, of the oldest
    /// answer: idle or slow clients cannot keep a probe out.
    pub max_connections: usize,
    /// Largest request head (request line and headers) accepted, in bytes; larger is
    /// answered 431.
    pub max_request_bytes: usize,
    /// A connection that has not sent a whole request head within this is closed, and
    /// one whose answer is not taken within it again.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Groups that get a `group` label value of their own in the per-group
    /// conversation metrics; later groups are counted as `group="_other"` (the label
    /// set stays bounded however many groups tokens name).
    pub metric_groups: usize,
}

/// Default of `admin.metric_groups`.
pub const DEFAULT_METRIC_GROUPS: usize = crate::metrics::conversation::DEFAULT_GROUPS;

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: SocketAddr::from(([127, 0, 0, 1], 7701)),
            max_connections: 64,
            max_request_bytes: 8192,
            read_timeout: Duration::from_secs(5),
            metric_groups: DEFAULT_METRIC_GROUPS,
        }
    }
}

/// Liveness deadlines.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Heartbeat {
    /// How often clients should send something (a `Ping` when otherwise silent).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A connection that sends nothing for this long is closed (`IDLE_TIMEOUT`).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A protocol connection that has not completed `Hello` within this is closed
    /// (`HANDSHAKE_TIMEOUT`).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Graceful shutdown.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    /// Upper bound on flushing queued output after SIGTERM/SIGINT before closing.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Conversation routing: groups, agent capacity, presence grace.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Group a visitor's conversation opens in when neither the `Send` nor the token
    /// names one.
    pub default_group: String,
    /// Concurrent conversations an agent takes when its token has no `max_concurrent`.
    pub default_capacity: u32,
    /// Concurrent conversations a bot takes when its token has no `max_concurrent`.
    pub bot_capacity: u32,
    /// When an agent's last connection drops, its conversations are requeued after
    /// this long unless it comes back.
    #[serde(with = "humantime_serde")]
    pub agent_grace: Duration,
    /// When a visitor's last connection drops, its conversations still waiting in a
    /// queue are closed as `abandoned` after this long unless it reconnects (0: never).
    #[serde(with = "humantime_serde")]
    pub visitor_grace: Duration,
    /// Open conversations with no new event for this long are closed as `inactive`
    /// (0: never).
    #[serde(with = "humantime_serde")]
    pub inactivity_close: Duration,
    /// At most one typing indicator per participant per this interval is relayed.
    #[serde(with = "humantime_serde")]
    pub typing_interval: Duration,
    /// Most entries in one `HistoryPage`.
    pub history_page_max: u16,
    /// What is kept of a visitor's network address (the PROXY protocol's client
    /// address behind a trusted proxy) for the agents and the HTTP API.
    pub visitor_address: VisitorAddress,
}

/// `routing.visitor_address`: how much of a visitor's IP address a conversation keeps
/// (shown as `visitor_address` by `GET /api/v1/conversations/{id}` and on the
/// console's context card).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum VisitorAddress {
    /// The whole address.
    #[default]
    Full,
    /// The network part only: IPv4 to its /24, IPv6 to its /48 (the rest zero), as
    /// analytics tools anonymise addresses.
    Masked,
    /// Nothing: the address is not kept.
    Off,
}

impl VisitorAddress {
    /// What of `ip` is kept (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn keep(self, ip: std::net::IpAddr) -> Option<std::net::IpAddr> {
        use std::net::IpAddr;
        let ip = ip.to_canonical();
        match self {
            Self::Off => None,
            Self::Full => Some(ip),
            Self::Masked => Some(match ip {
                IpAddr::V4(v4) => {
                    let [a, b, c, _] = v4.octets();
                    IpAddr::from([a, b, c, 0])
                }
                IpAddr::V6(v6) => {
                    let s = v6.segments();
                    IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
                }
            }),
        }
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            default_group: "support".to_owned(),
            default_capacity: 5,
            bot_capacity: 100,
            agent_grace: Duration::from_secs(30),
            visitor_grace: Duration::from_secs(300),
            inactivity_close: Duration::ZERO,
            typing_interval: Duration::from_secs(1),
            history_page_max: 200,
            visitor_address: VisitorAddress::Full,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter directive, e.g. `info` or `switchboard=debug`.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Token verification (`[auth]`): see `crate::auth`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Clock skew allowed when checking `exp` and `nbf` (whole seconds count).
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// HS256 keys by id. A token names its key in the JWT header `kid`; a token
    /// without `kid` is checked against the first key. Empty means the development
    /// secret in `state_dir` (loopback listeners only). Never serialized: whatever
    /// shows a configuration (the reload log) shows keys by id only.
    #[serde(skip_serializing)]
    pub keys: Vec<AuthKey>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            leeway: Duration::from_secs(30),
            keys: Vec::new(),
        }
    }
}

/// Largest `auth.leeway` accepted.
pub const MAX_AUTH_LEEWAY: Duration = Duration::from_secs(600);

/// Shortest HS256 secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// One HS256 key (`[[auth.keys]]`). Exactly one of `secret` and `secret_file` is set.
///
/// `Debug` never shows the secret.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthKey {
    /// Key id, matched against the JWT header `kid`.
    pub kid: String,
    /// The secret itself; the HMAC key is its UTF-8 bytes.
    #[serde(default)]
    pub secret: Option<String>,
    /// A file holding the secret; the HMAC key is its content with surrounding
    /// whitespace trimmed. Relative paths are relative to the working directory.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthKey")
            .field("kid", &self.kid)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .finish()
    }
}

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Number of reactor threads after resolving `0` to the core count.
    pub fn reactor_threads(&self) -> usize {
        resolve_threads(self.reactor.threads)
    }

    /// Number of worker threads after resolving `0` to half the core count (at
    /// least one): the reactors' system calls are most of the daemon's CPU, routing a
    /// small part (README, "Chat latency on a shared machine").
    pub fn worker_threads(&self) -> usize {
        match self.workers.threads {
            0 => resolve_threads(0).div_ceil(2),
            n => n,
        }
    }

    /// What is valid but risky in this configuration (never an error).
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let mut out = Vec::new();
        if self.admin.enabled && !self.admin.addr.ip().to_canonical().is_loopback() {
            out.push(ConfigWarning {
                key: "admin.addr",
                message: format!(
                    "{} is not a loopback address: the admin listener (/metrics, /healthz, \
                     /readyz) has no authentication; keep it on loopback or a management \
                     network behind a firewall",
                    self.admin.addr
                ),
            });
        }
        if !self
            .web
            .allowed_origins
            .iter()
            .any(|o| o == crate::ws::SAME_HOST)
        {
            out.push(ConfigWarning {
                key: "web.allowed_origins",
                message: "has no \"same-host\": pages served by this daemon itself, the agent \
                          console (/console/) among them, cannot open their WebSocket; add \
                          \"same-host\" to the list unless that is deliberate"
                    .into(),
            });
        }
        for u in self.console.users.iter().filter(|u| u.weak_hash()) {
            out.push(ConfigWarning {
                key: "console.users.password_hash",
                message: format!(
                    "user {:?}: the hash's argon2id cost is below m=19456 (19 MiB), t=2: \
                     cheap to guess if the config leaks; make it again with `switchboard passwd`",
                    u.name
                ),
            });
        }
        out
    }

    /// `limits.max_pending_total` in bytes after resolving `0` (auto): a sixteenth
    /// of the memory the daemon may use — physical memory, or its cgroup's
    /// `memory.max` when that is lower — and at least 64 MiB and
    /// `limits.max_pending_bytes`.
    pub fn max_pending_total_bytes(&self) -> u64 {
        if self.limits.max_pending_total != 0 {
            return self.limits.max_pending_total;
        }
        auto_pending_total(crate::host_memory::available_bytes())
            .max(u64::from(self.limits.max_pending_bytes))
    }

    /// Checks value ranges that the types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                reason: reason.into(),
            }
        }
        if self.reactor.threads > MAX_THREADS {
            return Err(invalid("reactor.threads", format!("at most {MAX_THREADS}")));
        }
        if self.workers.threads > MAX_THREADS {
            return Err(invalid("workers.threads", format!("at most {MAX_THREADS}")));
        }
        if self.reactor.read_buffer_bytes < 4096 {
            return Err(invalid("reactor.read_buffer_bytes", "at least 4096"));
        }
        if self.reactor.read_budget_bytes < self.reactor.read_buffer_bytes {
            return Err(invalid(
                "reactor.read_budget_bytes",
                "must be at least reactor.read_buffer_bytes",
            ));
        }
        let slice = self.reactor.sched_slice_us;
        if slice != 0
            && !(crate::reactor::sys::sched::MIN_US..=crate::reactor::sys::sched::MAX_US)
                .contains(&slice)
        {
            return Err(invalid(
                "reactor.sched_slice_us",
                "must be 0 (the kernel's default) or between 100 and 100000",
            ));
        }
        if self.reactor.events_per_poll == 0 {
            return Err(invalid("reactor.events_per_poll", "must be positive"));
        }
        if self.reactor.command_queue_depth == 0 {
            return Err(invalid("reactor.command_queue_depth", "must be positive"));
        }
        if !self.reactor.uring_buffers.is_power_of_two() || self.reactor.uring_buffers > 32_768 {
            return Err(invalid(
                "reactor.uring_buffers",
                "a power of two, at most 32768",
            ));
        }
        if !(1024..=1 << 20).contains(&self.reactor.uring_buffer_bytes) {
            return Err(invalid("reactor.uring_buffer_bytes", "1024 to 1048576"));
        }
        if self.reactor.uring_fixed_files > 1 << 20 {
            return Err(invalid("reactor.uring_fixed_files", "at most 1048576"));
        }
        if self.workers.queue_bytes < u64::from(self.limits.max_frame_bytes) {
            return Err(invalid(
                "workers.queue_bytes",
                "must be at least limits.max_frame_bytes",
            ));
        }
        if self.workers.queue_depth == 0 {
            return Err(invalid("workers.queue_depth", "must be positive"));
        }
        if self.workers.service_queue_depth == 0 {
            return Err(invalid("workers.service_queue_depth", "must be positive"));
        }
        if self.limits.max_frame_bytes == 0 || self.limits.max_frame_bytes > MAX_PAYLOAD_LIMIT {
            return Err(invalid(
                "limits.max_frame_bytes",
                format!("must be between 1 and {MAX_PAYLOAD_LIMIT}"),
            ));
        }
        let min_pending = HEADER_LEN as u64 * 4;
        if u64::from(self.limits.max_pending_bytes) < min_pending {
            return Err(invalid(
                "limits.max_pending_bytes",
                format!("at least {min_pending}"),
            ));
        }
        if (self.limits.max_pending_bytes as usize) < self.reactor.read_buffer_bytes {
            // One echoed read must fit, or a reader keeping up could be cut off.
            return Err(invalid(
                "limits.max_pending_bytes",
                "must be at least reactor.read_buffer_bytes",
            ));
        }
        if self.limits.max_pending_total != 0
            && self.limits.max_pending_total < u64::from(self.limits.max_pending_bytes)
        {
            return Err(invalid(
                "limits.max_pending_total",
                "0 (auto) or at least limits.max_pending_bytes",
            ));
        }
        for (key, value) in [
            ("heartbeat.interval", self.heartbeat.interval),
            ("heartbeat.idle_timeout", self.heartbeat.idle_timeout),
            (
                "heartbeat.handshake_timeout",
                self.heartbeat.handshake_timeout,
            ),
            ("shutdown.drain_timeout", self.shutdown.drain_timeout),
            ("admin.read_timeout", self.admin.read_timeout),
            ("limits.stall_timeout", self.limits.stall_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        let r = &self.routing;
        if r.default_group.is_empty() || r.default_group.len() > 1024 {
            return Err(invalid("routing.default_group", "1 to 1024 bytes"));
        }
        if r.default_capacity == 0 {
            return Err(invalid("routing.default_capacity", "must be positive"));
        }
        if r.bot_capacity == 0 {
            return Err(invalid("routing.bot_capacity", "must be positive"));
        }
        if r.history_page_max == 0 {
            return Err(invalid("routing.history_page_max", "must be positive"));
        }
        if self.heartbeat.idle_timeout <= self.heartbeat.interval {
            return Err(invalid(
                "heartbeat.idle_timeout",
                "must be longer than heartbeat.interval",
            ));
        }
        for (key, value) in [
            ("limits.max_connections", self.limits.max_connections),
            (
                "limits.max_connections_per_ip",
                self.limits.max_connections_per_ip,
            ),
            ("limits.accept_rate", self.limits.accept_rate),
            ("limits.accept_burst", self.limits.accept_burst),
            ("limits.max_held_requests", self.limits.max_held_requests),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        if self.admin.max_connections == 0 || self.admin.max_connections > 1024 {
            return Err(invalid("admin.max_connections", "between 1 and 1024"));
        }
        if !(256..=65_536).contains(&self.admin.max_request_bytes) {
            return Err(invalid("admin.max_request_bytes", "between 256 and 65536"));
        }
        if (self.journal.max_record_bytes as usize) < MIN_JOURNAL_RECORD_BYTES {
            // Smaller, the largest valid messages could not be stored: they would be
            // refused although the protocol accepts them.
            return Err(invalid(
                "journal.max_record_bytes",
                format!(
                    "at least {MIN_JOURNAL_RECORD_BYTES}, the record of the largest message \
                     the protocol accepts (a {MAX_BODY}-byte Send body)"
                ),
            ));
        }
        if let Err(e) = self.journal.validate() {
            return Err(match e {
                crate::journal::JournalError::Config { key, reason } => {
                    ConfigError::Invalid { key, reason }
                }
                other => invalid("journal", other.to_string()),
            });
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid("log.level", "not a valid tracing filter directive"));
        }
        if let Err(e) = self.assist.validate() {
            return Err(ConfigError::Invalid {
                key: "assist",
                reason: e.to_string(),
            });
        }
        if self.listeners.client.websocket {
            return Err(invalid(
                "listeners.client.websocket",
                "only for the echo listener: the client listener detects WebSocket upgrades \
                 itself",
            ));
        }
        if self
            .listeners
            .echo
            .as_ref()
            .is_some_and(|e| e.tls.is_some())
        {
            return Err(invalid(
                "listeners.echo.tls",
                "only the client listener terminates TLS",
            ));
        }
        if let Some(tls) = &self.listeners.client.tls
            && let Err((key, reason)) = tls.validate()
        {
            return Err(invalid(key, reason));
        }
        if let Err((key, reason)) = proxy::validate(&self.listeners) {
            return Err(invalid(key, reason));
        }
        if let Err((key, reason)) = self.web.validate() {
            return Err(invalid(key, reason));
        }
        if let Err((key, reason)) = self.api.validate() {
            return Err(invalid(key, reason));
        }
        if let Err((key, reason)) = self.console.validate() {
            return Err(invalid(key, reason));
        }
        if let Err((key, reason)) =
            webhooks::validate(&self.webhooks, &self.outbox, self.journal.enabled)
        {
            return Err(invalid(key, reason));
        }
        if let Err((key, reason)) = self.email.validate(self.journal.enabled) {
            return Err(invalid(key, reason));
        }
        self.listeners_apart()?;
        self.auth.validate()
    }

    /// The daemon's own listeners, as (address key, address): client, echo when on,
    /// admin when enabled.
    pub fn own_listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut v = vec![("listeners.client.addr", self.listeners.client.addr)];
        if let Some(echo) = &self.listeners.echo {
            v.push(("listeners.echo.addr", echo.addr));
        }
        if self.admin.enabled {
            v.push(("admin.addr", self.admin.addr));
        }
        v
    }

    /// No two of the daemon's own listeners may take one address: the second bind
    /// would fail at start with "address in use" (its own), or, both with
    /// `SO_REUSEPORT`, share the port and split connections between them.
    fn listeners_apart(&self) -> Result<(), ConfigError> {
        let own = self.own_listeners();
        for (i, &(key, addr)) in own.iter().enumerate() {
            if let Some(&(first, other)) = own[..i].iter().find(|(_, a)| overlap(*a, addr)) {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!(
                        "{addr} takes the address of `{first}` ({other}); each listener needs \
                         its own port"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Whether two listen addresses would clash: the same port (0, "any free port",
/// never clashes) on the same address, or on a wildcard address covering the other
/// (`0.0.0.0` covers IPv4; `[::]` covers everything, IPv4 too unless the socket is
/// IPv6-only, which the daemon does not ask for).
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || a.port() != b.port() {
        return false;
    }
    let (x, y) = (a.ip().to_canonical(), b.ip().to_canonical());
    let covers = |wild: std::net::IpAddr, other: std::net::IpAddr| {
        wild.is_unspecified() && (wild.is_ipv6() || other.is_ipv4())
    };
    x == y || covers(x, y) || covers(y, x)
}

impl AuthConfig {
    /// Checks `[auth]`: leeway bound, and per key a non-empty unique `kid`, exactly one
    /// of `secret`/`secret_file`, and an inline secret of at least [`MIN_SECRET_BYTES`].
    /// (A `secret_file`'s length is checked when it is read.)
    fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                reason: reason.into(),
            }
        }
        if self.leeway > MAX_AUTH_LEEWAY {
            return Err(invalid(
                "auth.leeway",
                format!("at most {}", humantime::format_duration(MAX_AUTH_LEEWAY)),
            ));
        }
        for (i, key) in self.keys.iter().enumerate() {
            if key.kid.is_empty() {
                return Err(invalid(
                    "auth.keys.kid",
                    format!("key #{} has an empty kid", i + 1),
                ));
            }
            if self.keys[..i].iter().any(|k| k.kid == key.kid) {
                return Err(invalid(
                    "auth.keys.kid",
                    format!("kid {:?} appears more than once", key.kid),
                ));
            }
            match (&key.secret, &key.secret_file) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(invalid(
                        "auth.keys",
                        format!(
                            "key {:?}: set exactly one of `secret` and `secret_file`",
                            key.kid
                        ),
                    ));
                }
                (Some(secret), None) if secret.len() < MIN_SECRET_BYTES => {
                    return Err(invalid(
                        "auth.keys.secret",
                        format!(
                            "key {:?}: secret is {} bytes; at least {MIN_SECRET_BYTES} required",
                            key.kid,
                            secret.len()
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Smallest `journal.max_record_bytes` accepted: the largest record body a message
/// the protocol accepts can make (a 65,536-byte `Send` body from a 256-byte user id,
/// with the record's fixed part and padding), derived from the protocol's bounds.
pub const MIN_JOURNAL_RECORD_BYTES: usize = 65_879;

/// The automatic `limits.max_pending_total` for a daemon that may use `memory` bytes
/// (`None`: unknown, taken as 4 GiB).
pub(crate) fn auto_pending_total(memory: Option<u64>) -> u64 {
    const FLOOR: u64 = 64 << 20;
    (memory.unwrap_or(4 << 30) / 16).max(FLOOR)
}

/// Upper bound on reactor and worker threads (keeps reactor ids in a `u16`).
pub const MAX_THREADS: usize = 1024;

fn resolve_threads(configured: usize) -> usize {
    if configured == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        configured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_is_the_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn default_binds_loopback_7700_and_echo_is_off() {
        let c = Config::default();
        assert_eq!(c.listeners.client.addr.to_string(), "127.0.0.1:7700");
        assert!(c.listeners.echo.is_none());
        assert_eq!(c.state_dir, PathBuf::from("./data"));
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let err = Config::from_toml("[limits]\nmax_frame_byts = 10\n").unwrap_err();
        assert!(err.to_string().contains("max_frame_byts"), "{err}");
    }

    #[test]
    fn out_of_range_value_names_the_key() {
        let err = Config::from_toml("[limits]\nmax_frame_bytes = 0\n").unwrap_err();
        assert!(err.to_string().contains("limits.max_frame_bytes"), "{err}");
        let err = Config::from_toml("[heartbeat]\nidle_timeout = \"1s\"\ninterval = \"2s\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("heartbeat.idle_timeout"), "{err}");
        for bad in [1, 99, 100_001] {
            let err =
                Config::from_toml(&format!("[reactor]\nsched_slice_us = {bad}\n")).unwrap_err();
            assert!(err.to_string().contains("reactor.sched_slice_us"), "{err}");
        }
        for good in [0, 100, 100_000] {
            Config::from_toml(&format!("[reactor]\nsched_slice_us = {good}\n")).unwrap();
        }
    }

    #[test]
    fn durations_and_listeners_parse() {
        let c = Config::from_toml(
            "[heartbeat]\nidle_timeout = \"2m\"\nhandshake_timeout = \"1500ms\"\n\
             [listeners.echo]\naddr = \"127.0.0.1:7702\"\n",
        )
        .unwrap();
        assert_eq!(c.heartbeat.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.heartbeat.handshake_timeout, Duration::from_millis(1500));
        assert_eq!(c.listeners.echo.unwrap().addr.port(), 7702);
    }

    #[test]
    fn reference_file_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/switchboard.toml");
        assert_eq!(Config::load(&path).unwrap(), Config::default());
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn auth_keys_parse_in_order() {
        let c = Config::from_toml(&format!(
            "[auth]\nleeway = \"5s\"\n\
             [[auth.keys]]\nkid = \"new\"\nsecret = \"{SECRET}\"\n\
             [[auth.keys]]\nkid = \"old\"\nsecret_file = \"/etc/switchboard/old.key\"\n"
        ))
        .unwrap();
        assert_eq!(c.auth.leeway, Duration::from_secs(5));
        let kids: Vec<&str> = c.auth.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["new", "old"]);
        assert_eq!(c.auth.keys[0].secret.as_deref(), Some(SECRET));
        assert_eq!(
            c.auth.keys[1].secret_file.as_deref(),
            Some(Path::new("/etc/switchboard/old.key"))
        );
    }

    fn auth_error(body: &str) -> String {
        Config::from_toml(body).unwrap_err().to_string()
    }

    #[test]
    fn auth_key_errors_name_the_key() {
        let both = auth_error(&format!(
            "[[auth.keys]]\nkid = \"k1\"\nsecret = \"{SECRET}\"\nsecret_file = \"/x\"\n"
        ));
        assert!(
            both.contains("\"k1\"") && both.contains("exactly one"),
            "{both}"
        );
        let neither = auth_error("[[auth.keys]]\nkid = \"k2\"\n");
        assert!(
            neither.contains("\"k2\"") && neither.contains("exactly one"),
            "{neither}"
        );
        let short = auth_error("[[auth.keys]]\nkid = \"k3\"\nsecret = \"short\"\n");
        assert!(
            short.contains("\"k3\"") && short.contains("at least 32"),
            "{short}"
        );
        let dup = auth_error(&format!(
            "[[auth.keys]]\nkid = \"k4\"\nsecret = \"{SECRET}\"\n\
             [[auth.keys]]\nkid = \"k4\"\nsecret = \"{SECRET}\"\n"
        ));
        assert!(
            dup.contains("\"k4\"") && dup.contains("more than once"),
            "{dup}"
        );
        let empty = auth_error(&format!(
            "[[auth.keys]]\nkid = \"\"\nsecret = \"{SECRET}\"\n"
        ));
        assert!(empty.contains("auth.keys.kid"), "{empty}");
        let unknown = auth_error("[[auth.keys]]\nkid = \"k5\"\nsecrte = \"x\"\n");
        assert!(unknown.contains("secrte"), "{unknown}");
    }

    #[test]
    fn auth_leeway_is_bounded() {
        let err = auth_error("[auth]\nleeway = \"11m\"\n");
        assert!(err.contains("auth.leeway"), "{err}");
        assert!(Config::from_toml("[auth]\nleeway = \"10m\"\n").is_ok());
        assert!(Config::from_toml("[auth]\nleeway = \"0s\"\n").is_ok());
    }

    #[test]
    fn auth_key_debug_hides_the_secret() {
        let key = AuthKey {
            kid: "k".into(),
            secret: Some(SECRET.into()),
            secret_file: None,
        };
        let shown = format!("{key:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn admin_and_connection_limits_parse_and_are_bounded() {
        let c = Config::from_toml(
            "[admin]\nenabled = false\naddr = \"127.0.0.1:9\"\n\
             [limits]\nmax_connections = 10\nmax_connections_per_ip = 2\n\
             accept_rate = 5\naccept_burst = 1\n",
        )
        .unwrap();
        assert!(!c.admin.enabled);
        assert_eq!(c.admin.addr.port(), 9);
        assert_eq!(
            (
                c.limits.max_connections,
                c.limits.max_connections_per_ip,
                c.limits.accept_rate,
                c.limits.accept_burst
            ),
            (10, 2, 5, 1)
        );
        for (doc, key) in [
            ("[limits]\nmax_connections = 0\n", "limits.max_connections"),
            (
                "[limits]\nmax_connections_per_ip = 0\n",
                "limits.max_connections_per_ip",
            ),
            ("[limits]\naccept_rate = 0\n", "limits.accept_rate"),
            ("[admin]\nmax_connections = 0\n", "admin.max_connections"),
            (
                "[admin]\nmax_request_bytes = 10\n",
                "admin.max_request_bytes",
            ),
            ("[admin]\nread_timeout = \"0s\"\n", "admin.read_timeout"),
        ] {
            let err = Config::from_toml(doc).unwrap_err().to_string();
            assert!(err.contains(key), "{doc}: {err}");
        }
    }

    #[test]
    fn journal_record_limit_must_hold_the_largest_message() {
        assert!(
            Config::default().journal.max_record_bytes as usize >= MIN_JOURNAL_RECORD_BYTES,
            "the default holds it"
        );
        // 64 KiB (the old default) cannot hold a 65,536-byte body and its record.
        let err = Config::from_toml("[journal]\nmax_record_bytes = 65536\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("journal.max_record_bytes") && err.contains("65536-byte Send body"),
            "{err}"
        );
        let exact = format!("[journal]\nmax_record_bytes = {MIN_JOURNAL_RECORD_BYTES}\n");
        assert!(Config::from_toml(&exact).is_ok());
        let one_less = format!(
            "[journal]\nmax_record_bytes = {}\n",
            MIN_JOURNAL_RECORD_BYTES - 1
        );
        assert!(Config::from_toml(&one_less).is_err());
        // The journal's own ranges are checked at load too, not only at open.
        let err = Config::from_toml("[journal]\nsegment_bytes = 4096\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("journal.segment_bytes"), "{err}");
    }

    #[test]
    fn an_admin_listener_off_loopback_is_a_warning_not_an_error() {
        assert!(Config::default().warnings().is_empty());
        for addr in [
            "0.0.0.0:7701",
            "10.1.2.3:7701",
            "[::]:7701",
            "[::ffff:10.0.0.1]:7701",
        ] {
            let c = Config::from_toml(&format!("[admin]\naddr = \"{addr}\"\n")).unwrap();
            let w = c.warnings();
            assert_eq!(w.len(), 1, "{addr}: {w:?}");
            assert_eq!(w[0].key, "admin.addr");
            let text = w[0].to_string();
            assert!(
                text.contains("no authentication") && text.contains(addr),
                "{text}"
            );
        }
        for addr in [
            "127.0.0.1:7701",
            "127.0.0.2:1",
            "[::1]:7701",
            "[::ffff:127.0.0.1]:7701",
        ] {
            let c = Config::from_toml(&format!("[admin]\naddr = \"{addr}\"\n")).unwrap();
            assert!(c.warnings().is_empty(), "{addr}");
        }
        let sites = Config::from_toml("[web]\nallowed_origins = [\"https://shop.example\"]\n");
        let w = sites.unwrap().warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].key, "web.allowed_origins");
        assert!(w[0].to_string().contains("/console/"), "{}", w[0]);
        let both = "[web]\nallowed_origins = [\"same-host\", \"https://shop.example\"]\n";
        assert!(Config::from_toml(both).unwrap().warnings().is_empty());
        let off = Config::from_toml("[admin]\nenabled = false\naddr = \"0.0.0.0:7701\"\n");
        assert!(
            off.unwrap().warnings().is_empty(),
            "no listener, no warning"
        );
    }

    #[test]
    fn two_own_listeners_on_one_address_are_refused() {
        let client_echo = Config::from_toml(
            "[listeners.client]\naddr = \"127.0.0.1:20700\"\n\
             [listeners.echo]\naddr = \"127.0.0.1:20700\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            client_echo.contains("listeners.echo.addr")
                && client_echo.contains("listeners.client.addr"),
            "{client_echo}"
        );
        let admin = Config::from_toml("[admin]\naddr = \"127.0.0.1:7700\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            admin.contains("`admin.addr`") && admin.contains("listeners.client.addr"),
            "{admin}"
        );
        // A wildcard covers the specific address of its family.
        let wild = "[listeners.client]\naddr = \"0.0.0.0:20701\"\n\
                    [[auth.keys]]\nkid = \"k\"\nsecret = \"0123456789abcdef0123456789abcdef\"\n\
                    [admin]\naddr = \"127.0.0.1:20701\"\n";
        assert!(Config::from_toml(wild).is_err());
        for ok in [
            // Port 0 picks a free port each time.
            "[listeners.client]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n",
            // Another address, or another port.
            "[admin]\naddr = \"127.0.0.2:7700\"\n",
            "[admin]\naddr = \"127.0.0.1:7702\"\n",
            // A disabled admin listener takes nothing.
            "[admin]\nenabled = false\naddr = \"127.0.0.1:7700\"\n",
        ] {
            assert!(Config::from_toml(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn listen_addresses_overlap_by_port_and_cover() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlap(a("127.0.0.1:1"), a("127.0.0.1:1")));
        assert!(overlap(a("0.0.0.0:1"), a("127.0.0.2:1")));
        assert!(overlap(a("10.0.0.1:1"), a("0.0.0.0:1")));
        assert!(overlap(a("[::]:1"), a("127.0.0.1:1")));
        assert!(overlap(a("[::ffff:127.0.0.1]:1"), a("127.0.0.1:1")));
        assert!(!overlap(a("0.0.0.0:1"), a("[::1]:1")));
        assert!(!overlap(a("127.0.0.1:1"), a("127.0.0.2:1")));
        assert!(!overlap(a("127.0.0.1:1"), a("127.0.0.1:2")));
        assert!(!overlap(a("127.0.0.1:0"), a("127.0.0.1:0")));
    }

    #[test]
    fn bad_duration_is_a_parse_error() {
        assert!(Config::from_toml("[shutdown]\ndrain_timeout = \"soon\"\n").is_err());
    }
    #[test]
    fn visitor_address_keeps_all_the_network_part_or_nothing() {
        let parse = |t: &str| Config::from_toml(t).unwrap().routing.visitor_address;
        assert_eq!(parse(""), VisitorAddress::Full);
        assert_eq!(
            parse("[routing]\nvisitor_address = \"masked\"\n"),
            VisitorAddress::Masked
        );
        assert!(Config::from_toml("[routing]\nvisitor_address = \"none\"\n").is_err());
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let v4 = ip("203.0.113.77");
        assert_eq!(VisitorAddress::Full.keep(v4), Some(v4));
        assert_eq!(VisitorAddress::Masked.keep(v4), Some(ip("203.0.113.0")));
        assert_eq!(VisitorAddress::Off.keep(v4), None);
        // A mapped IPv4 address (a dual-stack listener) is shown as IPv4.
        assert_eq!(
            VisitorAddress::Full.keep(ip("::ffff:203.0.113.77")),
            Some(v4)
        );
        assert_eq!(
            VisitorAddress::Masked.keep(ip("2001:db8:85a3:8d3:1319:8a2e:370:7348")),
            Some(ip("2001:db8:85a3::"))
        );
    }
}
