//! Counters shared between threads. Each reactor and worker writes only its own
//! cache-padded block, so counting costs no cross-core traffic on the hot path.

mod cell;
pub mod conversation;
pub mod email;
pub mod tls;
pub mod web;
pub mod webhooks;

pub use cell::{Counter, Gauge};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::handoff::CloseReason;
use crate::protocol::{ErrorCode, Kind};

/// Close reasons that are not error codes, in slot order; error codes follow, in
/// [`ErrorCode::ALL`] order.
const PLAIN_CLOSES: [CloseReason; 6] = [
    CloseReason::PeerClosed,
    CloseReason::IoError,
    CloseReason::Server,
    CloseReason::Shutdown,
    CloseReason::ClientBye,
    CloseReason::TlsError,
];

/// Number of close-reason slots: the plain reasons, then one per error code.
pub const CLOSE_SLOTS: usize = PLAIN_CLOSES.len() + ErrorCode::ALL.len();

/// Every close reason, in slot order (for exporting the `closed` counters).
pub fn close_reasons() -> impl Iterator<Item = CloseReason> {
    PLAIN_CLOSES
        .into_iter()
        .chain(ErrorCode::ALL.into_iter().map(CloseReason::Error))
}

fn close_index(reason: CloseReason) -> usize {
    match reason {
        CloseReason::PeerClosed => 0,
        CloseReason::IoError => 1,
        CloseReason::Server => 2,
        CloseReason::Shutdown => 3,
        CloseReason::ClientBye => 4,
        CloseReason::TlsError => 5,
        CloseReason::Error(code) => {
            PLAIN_CLOSES.len()
                + ErrorCode::ALL
                    .iter()
                    .position(|c| *c == code)
                    .unwrap_or(usize::MAX - PLAIN_CLOSES.len())
        }
    }
}

/// Why a freshly accepted connection was closed at once, in slot order.
pub const REJECT_LABELS: [&str; 4] = [
    "max_connections",
    "max_connections_per_ip",
    "accept_rate",
    "untrusted_proxy",
];

/// Why a connection on a `proxy_protocol` listener was closed before its PROXY
/// header was read, in slot order (the `reason` label of
/// `proxy_header_errors_total`): `timeout` (no complete header within
/// `heartbeat.handshake_timeout`), then [`crate::proxy::ProxyError::REASONS`].
pub const PROXY_HEADER_ERRORS: [&str; 1 + crate::proxy::ProxyError::REASONS.len()] = {
    let reasons = crate::proxy::ProxyError::REASONS;
    let mut out = ["timeout"; 1 + crate::proxy::ProxyError::REASONS.len()];
    let mut i = 0;
    while i < reasons.len() {
        out[i + 1] = reasons[i];
        i += 1;
    }
    out
};

/// Why a freshly accepted connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// `limits.max_connections` reached.
    MaxConnections = 0,
    /// `limits.max_connections_per_ip` reached for the peer's address.
    PerIp = 1,
    /// `limits.accept_rate` exceeded.
    AcceptRate = 2,
    /// A `proxy_protocol` listener's connection from outside its `trusted_proxies`.
    UntrustedProxy = 3,
}

impl Reject {
    /// The metric label.
    pub fn label(self) -> &'static str {
        REJECT_LABELS.get(self as usize).copied().unwrap_or("other")
    }
}

/// Why a slow consumer was cut, in slot order (the `cause` label of
/// `slow_consumer_cuts_total`).
pub const CUT_CAUSES: [&str; 4] = [
    "max_pending_bytes",
    "stall_timeout",
    "max_pending_total",
    "deferred_replies",
];

/// Why a slow consumer was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Its queued output would pass `limits.max_pending_bytes`.
    MaxPending = 0,
    /// Its queued output made no progress for `limits.stall_timeout`.
    Stalled = 1,
    /// The output of all connections passed `limits.max_pending_total` and it owed
    /// the most.
    Total = 2,
    /// Replies held back for it (while it owed `limits.max_pending_bytes`) passed
    /// their bound.
    Deferred = 3,
}

impl Cut {
    /// The metric label.
    pub fn label(self) -> &'static str {
        CUT_CAUSES.get(self as usize).copied().unwrap_or("other")
    }
}

/// Slots of [`KindCounts`]: every kind number is below this; slot 0 counts frames of
/// kinds this build does not know.
pub const KIND_SLOTS: usize = 64;

/// Frames and their bytes by message kind, for one direction.
#[derive(Debug)]
pub struct KindCounts {
    /// Frames, by kind number (slot 0: unknown kinds).
    pub frames: [Counter; KIND_SLOTS],
    /// Bytes on the wire (header, payload, padding), by kind number.
    pub bytes: [Counter; KIND_SLOTS],
}

impl Default for KindCounts {
    fn default() -> Self {
        Self {
            frames: std::array::from_fn(|_| Counter::default()),
            bytes: std::array::from_fn(|_| Counter::default()),
        }
    }
}

impl KindCounts {
    /// Counts one frame of `kind` taking `bytes` on the wire.
    pub fn count(&self, kind: u8, bytes: usize) {
        let slot = if Kind::from_u8(kind).is_some() {
            usize::from(kind)
        } else {
            0
        };
        if let (Some(f), Some(b)) = (self.frames.get(slot), self.bytes.get(slot)) {
            f.inc();
            b.add(bytes as u64);
        }
    }

    /// Counts an encoded frame (its kind is header byte 3).
    pub fn count_encoded(&self, frame: &[u8]) {
        if let Some(kind) = frame.get(3) {
            self.count(*kind, frame.len());
        }
    }
}

/// Upper bounds of the latency histogram buckets, in microseconds (a `+Inf` bucket
/// follows).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// Upper bounds of the FAQ confidence histogram's buckets (a `+Inf` bucket follows),
/// finer around the default threshold.
pub const CONFIDENCE_BUCKETS: [f32; 12] = [
    0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8, 1.0,
];

/// A lock-free histogram of scores in 0–1 with [`CONFIDENCE_BUCKETS`]; one per worker,
/// summed when scraped.
#[derive(Debug, Default)]
pub struct ConfidenceHistogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    pub buckets: [Counter; CONFIDENCE_BUCKETS.len() + 1],
    /// Sum of all observations, in thousandths.
    pub sum_milli: Counter,
}

impl ConfidenceHistogram {
    /// Adds counts gathered elsewhere (per bucket, as [`Self::bucket`] numbers them).
    pub fn add(&self, counts: &[u64; CONFIDENCE_BUCKETS.len() + 1], sum_milli: u64) {
        for (b, n) in self.buckets.iter().zip(counts) {
            b.add(*n);
        }
        self.sum_milli.add(sum_milli);
    }

    /// The bucket of `score`.
    pub fn bucket(score: f32) -> usize {
        CONFIDENCE_BUCKETS.partition_point(|b| *b < score)
    }
}

/// A lock-free latency histogram with fixed buckets ([`LATENCY_BUCKETS_US`]); one per
/// writing thread, summed when scraped.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    pub buckets: [Counter; LATENCY_BUCKETS_US.len() + 1],
    /// Sum of all observations in microseconds.
    pub sum_us: Counter,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.observe_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one observation of `us` microseconds.
    pub fn observe_us(&self, us: u64) {
        let i = LATENCY_BUCKETS_US.partition_point(|b| *b < us);
        if let Some(b) = self.buckets.get(i) {
            b.inc();
        }
        self.sum_us.add(us);
    }
}

/// One reactor's counters.
#[derive(Debug, Default)]
pub struct ReactorMetrics {
    /// Connections accepted.
    pub accepted: Counter,
    /// Connections currently open on this reactor.
    pub open: Gauge,
    /// Connections closed, by reason (indexed like [`close_reasons`]).
    pub closed: [Counter; CLOSE_SLOTS],
    /// Connections closed right after accept by a connection limit, by [`Reject`].
    pub rejected: [Counter; REJECT_LABELS.len()],
    /// Connections on a `proxy_protocol` listener closed for their PROXY header, by
    /// [`PROXY_HEADER_ERRORS`] slot.
    pub proxy_header_errors: [Counter; PROXY_HEADER_ERRORS.len()],
    /// PROXY headers read (the connection then counts as its client's).
    pub proxy_headers: Counter,
    /// Loop turns; also the watchdog's sign of life (bumped even when idle while the
    /// watchdog is on).
    pub loops: Counter,
    /// Loop turns by duration (time spent handling events between two polls: how
    /// late the reactor could be for any socket). Cumulative, so every scraper sees
    /// the same figures.
    pub loop_lag: LatencyHistogram,
    /// Total time spent handling events (not waiting), in microseconds.
    pub busy_us: Counter,
    /// Protocol frames received, by kind.
    pub kinds_in: KindCounts,
    /// Protocol frames queued for sending by workers, by kind (one per recipient).
    pub kinds_out: KindCounts,
    /// Test hook: milliseconds the reactor should sleep at its next turn.
    #[doc(hidden)]
    pub stall_ms: Gauge,
    /// Accept calls that failed (e.g. out of file descriptors).
    pub accept_errors: Counter,
    /// Complete frames received.
    pub frames_in: Counter,
    /// Bytes received.
    pub bytes_in: Counter,
    /// Bytes written to sockets.
    pub bytes_out: Counter,
    /// Events refused because a worker queue was full.
    pub worker_queue_full: Counter,
    /// Connections whose reading paused for backpressure.
    pub read_pauses: Counter,
    /// io_uring echo receives copied instead of lent from the receive buffer (half
    /// the buffer pool was held by echo output not yet sent).
    pub uring_echo_copies: Counter,
    /// io_uring connections whose socket found no entry in the registered file
    /// table (slot past `reactor.uring_fixed_files`, or the kernel refused): their
    /// requests name the descriptor.
    pub uring_unfixed: Counter,
    /// Slow consumers cut, by [`Cut`].
    pub cuts: [Counter; CUT_CAUSES.len()],
    /// Output queued on this reactor's connections (bytes, at the end of the last
    /// loop turn).
    pub pending_bytes: Gauge,
    /// 1 while the kernel's TCP memory was under pressure when last asked (asked
    /// only when some connection's output stalled).
    pub kernel_tcp_pressure: Gauge,
    /// The web edge: HTTP answers, WebSocket upgrades and closes.
    pub web: web::WebMetrics,
    /// TLS handshakes on the client listener.
    pub tls: tls::TlsMetrics,
}

impl ReactorMetrics {
    /// Counts one closed connection.
    pub fn count_close(&self, reason: CloseReason) {
        if let Some(c) = self.closed.get(close_index(reason)) {
            c.inc();
        }
    }

    /// Connections closed for `reason` so far.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.closed.get(close_index(reason)).map_or(0, Counter::get)
    }

    /// Counts one slow consumer cut.
    pub fn count_cut(&self, why: Cut) {
        if let Some(c) = self.cuts.get(why as usize) {
            c.inc();
        }
    }

    /// Slow consumers cut for `why` so far.
    pub fn cuts_for(&self, why: Cut) -> u64 {
        self.cuts.get(why as usize).map_or(0, Counter::get)
    }

    /// Counts one connection closed for its PROXY header (`reason` from
    /// [`PROXY_HEADER_ERRORS`]).
    pub fn count_proxy_error(&self, reason: &str) {
        let i = PROXY_HEADER_ERRORS.iter().position(|r| *r == reason);
        if let Some(c) = i.and_then(|i| self.proxy_header_errors.get(i)) {
            c.inc();
        }
    }

    /// Counts one connection refused by a limit.
    pub fn count_reject(&self, why: Reject) {
        if let Some(c) = self.rejected.get(why as usize) {
            c.inc();
        }
    }
}

/// One worker's counters.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Events handled.
    pub events: Counter,
    /// Frames answered with an error code.
    pub errors_sent: Counter,
    /// Sessions closed with 201 because their token expired (no `Refresh` in time).
    pub sessions_expired: Counter,
    /// `Refresh`es accepted (the session's token replaced).
    pub sessions_refreshed: Counter,
    /// Current depth of this worker's event queue (sampled).
    pub queue_depth: Gauge,
    /// Current depth of this worker's conversation-shard queue (sampled).
    pub shard_queue_depth: Gauge,
    /// The deepest the shard queue was seen since start (sampled).
    pub shard_queue_peak: Gauge,
    /// Client requests of this worker's sessions refused with 500 because the
    /// router's queue held `workers.service_queue_depth` messages.
    pub router_queue_refused: Counter,
    /// The same for the queue of the request's conversation shard.
    pub shard_queue_refused: Counter,
    /// Journal batches that failed (disk full, I/O error, queue full): their changes
    /// were taken back and the clients told 503.
    pub storage_errors: Counter,
    /// FAQ answers sent automatically.
    pub auto_replies: Counter,
    /// Automatic replies agents marked wrong (`WrongReply`).
    pub faq_wrong: Counter,
    /// Confidence (score of the best entry) of each visitor message the FAQ looked at,
    /// answered or not.
    pub faq_confidence: ConfidenceHistogram,
    /// Visitor profile updates refused at the merged profile's field bound.
    pub profiles_refused: Counter,
    /// Visitor messages the abuse filter acted on, by action.
    pub filtered: FilterCounts,
    /// Loop turns; the watchdog's sign of life (see [`ReactorMetrics::loops`]).
    pub loops: Counter,
    /// Hook for the service: time from a message's arrival at its session worker to
    /// its delivery being queued at the reactors (`observe` it in the shard).
    pub message_latency: LatencyHistogram,
    /// `History` requests held back because their connection owed
    /// `limits.max_pending_bytes` of output.
    pub history_deferred: Counter,
    /// `History` requests held back now.
    pub history_waiting: Gauge,
}

/// Visitor messages the abuse filter acted on, by action (each also logged, without
/// the message body).
#[derive(Debug, Default)]
pub struct FilterCounts {
    /// Delivered with the `FLAGGED` bit.
    pub flagged: Counter,
    /// Refused (403), not stored.
    pub dropped: Counter,
    /// Refused (205) while the sender is blocked, or when a rule blocked it.
    pub blocked: Counter,
    /// Refused (429) over the visitor's message rate.
    pub rate_limited: Counter,
}

/// Open conversation states exported as `switchboard_conversations{state=...}`
/// (closed ones are counted by `conversations_closed_total` instead).
pub const CONVERSATION_STATES: [&str; 2] = ["queued", "assigned"];

/// The router thread's gauges. Only the router writes them.
#[derive(Debug, Default)]
pub struct RouterMetrics {
    /// Loop turns; the watchdog's sign of life.
    pub loops: Counter,
    /// Current depth of the router's queue (sampled each turn).
    pub queue_depth: Gauge,
    /// The deepest the router's queue was seen since start (sampled).
    pub queue_peak: Gauge,
    /// Agents and bots whose presence is online.
    pub agents_online: Gauge,
    /// Open conversations by state, indexed like [`CONVERSATION_STATES`].
    pub conversations: [Gauge; CONVERSATION_STATES.len()],
    /// Conversations closed since start (written by the conversation shards).
    pub conversations_closed: Counter,
    /// Per-group conversation figures (opened, abandoned, queue wait, first reply,
    /// ratings), written by the router and the shards.
    pub by_group: conversation::ConversationMetrics,
    /// Queue length per (tenant, group): replaced wholesale by the router at most a few
    /// times a second (a snapshot, not touched on the message path).
    pub queue_lengths: Mutex<Vec<(String, String, u64)>>,
}

impl RouterMetrics {
    /// Publishes the current queue lengths as (tenant, group, length). Past
    /// `admin.metric_groups` queues, the longest keep their labels and the rest are
    /// summed under (`_other`, `_other`), so the series stay bounded.
    pub fn set_queue_lengths(&self, mut lengths: Vec<(String, String, u64)>) {
        let max = self.by_group.max_groups();
        if lengths.len() > max {
            lengths.sort_unstable_by(|a, b| {
                b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1)))
            });
            let rest: u64 = lengths.drain(max..).map(|q| q.2).sum();
            let other = conversation::OTHER.to_owned();
            lengths.push((other.clone(), other, rest));
        }
        if let Ok(mut q) = self.queue_lengths.lock() {
            *q = lengths;
        }
    }
}

/// Journal counters (hooks for the durable journal).
#[derive(Debug, Default)]
pub struct JournalMetrics {
    /// Records appended.
    pub appends: Counter,
    /// Bytes appended.
    pub append_bytes: Counter,
    /// Time to append one batch.
    pub append_latency: LatencyHistogram,
    /// Times a worker shard held its next batch back because
    /// `journal.max_inflight_batches` were unanswered.
    pub inflight_full: Counter,
    /// Time of one fsync (or fdatasync).
    pub fsync_latency: LatencyHistogram,
    /// Damaged ranges recovery found at start (0 on a clean journal).
    pub damaged_ranges: Gauge,
    /// Bytes in those ranges.
    pub damaged_bytes: Gauge,
    /// Sequence numbers salvage recorded as lost (holes between surviving records).
    pub gap_lost: Counter,
    /// Sequence numbers salvage reserved after a conversation's last surviving record.
    pub gap_reserved: Counter,
    /// Conversations salvage rebuilt without their opening record (hidden).
    pub orphaned: Gauge,
}

/// The admin listener's counters (written by its one thread).
#[derive(Debug, Default)]
pub struct AdminMetrics {
    /// Connections accepted.
    pub accepted: Counter,
    /// Connections closed to make room for a new one while all `admin.max_connections`
    /// slots were taken: idle or slow clients (the oldest first), never a probe that
    /// has sent its request.
    pub evicted: Counter,
    /// Connections closed at `admin.read_timeout` (request or answer not done).
    pub timed_out: Counter,
    /// Connections open now.
    pub open: Gauge,
}

/// Process-wide health flags read by `/readyz`.
#[derive(Debug)]
pub struct Health {
    /// Listeners are bound and accepting; cleared when shutdown begins.
    pub accepting: AtomicBool,
    /// The journal is writable. Set false by the journal on a storage failure (hook:
    /// nothing clears it yet).
    pub journal_ok: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            accepting: AtomicBool::new(false),
            journal_ok: AtomicBool::new(true),
        }
    }
}

impl Health {
    /// Whether `/readyz` answers 200.
    pub fn ready(&self) -> bool {
        self.accepting.load(Ordering::Acquire) && self.journal_ok.load(Ordering::Acquire)
    }
}

/// Every counter in the process.
#[derive(Debug)]
pub struct Metrics {
    /// Per reactor, by reactor index.
    pub reactors: Box<[Arc<CachePadded<ReactorMetrics>>]>,
    /// Per worker, by worker index.
    pub workers: Box<[Arc<CachePadded<WorkerMetrics>>]>,
    /// The router thread.
    pub router: Arc<CachePadded<RouterMetrics>>,
    /// The journal.
    pub journal: Arc<CachePadded<JournalMetrics>>,
    /// Readiness flags.
    pub health: Arc<Health>,
    /// The admin listener.
    pub admin: AdminMetrics,
    /// `limits.max_pending_total` in force (bytes).
    pub pending_limit: Gauge,
    /// Output queued at all reactors (bytes), as they last published it; the total
    /// `limits.max_pending_total` bounds (shared with the output ledger).
    pub pending_total: Arc<CachePadded<Gauge>>,
    /// The reactors' I/O backend, `auto` resolved (`epoll` or `uring`; empty until
    /// the daemon has chosen, and then not exported).
    pub reactor_backend: &'static str,
    /// One block per `[[webhooks]]` endpoint, in configuration order.
    pub webhooks: Vec<Arc<webhooks::EndpointMetrics>>,
    /// The mail thread's counters (`None` without `email.host`: not exported).
    pub email: Option<Arc<email::EmailMetrics>>,
    /// The files thread (attachments).
    pub files: Arc<FilesMetrics>,
    /// The client listener's certificates (expiry, reloads).
    pub certificates: Arc<tls::CertificateMetrics>,
}

/// What the files thread stored (attachments).
#[derive(Debug, Default)]
pub struct FilesMetrics {
    /// Files written (new content for their conversation).
    pub stored: Counter,
    /// Uploads whose content their conversation had already (nothing written).
    pub deduplicated: Counter,
    /// Bytes of the files written.
    pub bytes: Counter,
}

impl Metrics {
    /// Zeroed counters for the given thread counts.
    pub fn new(reactors: usize, workers: usize) -> Self {
        Self {
            reactors: (0..reactors).map(|_| Arc::default()).collect(),
            workers: (0..workers).map(|_| Arc::default()).collect(),
            router: Arc::default(),
            journal: Arc::default(),
            health: Arc::default(),
            admin: AdminMetrics::default(),
            pending_limit: Gauge::default(),
            pending_total: Arc::default(),
            reactor_backend: "",
            webhooks: Vec::new(),
            email: None,
            files: Arc::default(),
            certificates: Arc::default(),
        }
    }

    /// Sum of a reactor counter over all reactors.
    pub fn reactor_sum(&self, f: impl Fn(&ReactorMetrics) -> u64) -> u64 {
        self.reactors.iter().map(|r| f(r)).sum()
    }

    /// Connections closed for `reason`, over all reactors.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.reactor_sum(|r| r.closed_for(reason))
    }

    /// Connections open now, over all reactors.
    pub fn open_connections(&self) -> u64 {
        self.reactor_sum(|r| r.open.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_reason_has_its_own_slot() {
        let m = ReactorMetrics::default();
        let reasons: Vec<CloseReason> = close_reasons().collect();
        assert_eq!(reasons.len(), CLOSE_SLOTS);
        for (i, r) in reasons.iter().enumerate() {
            assert_eq!(close_index(*r), i);
            m.count_close(*r);
            assert_eq!(m.closed_for(*r), 1, "{r:?}");
        }
    }

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(10));
        assert_eq!(h.buckets[0].get(), 1);
        assert_eq!(h.buckets[1].get(), 1);
        assert_eq!(h.buckets[LATENCY_BUCKETS_US.len()].get(), 1);
        assert_eq!(h.sum_us.get(), 10_000_201);
    }

    #[test]
    fn queue_lengths_past_the_bound_fold_into_other() {
        let m = RouterMetrics::default();
        m.by_group.set_max_groups(2);
        let q = |t: &str, g: &str, n| (t.to_owned(), g.to_owned(), n);
        m.set_queue_lengths(vec![
            q("a", "x", 1),
            q("a", "y", 7),
            q("b", "x", 3),
            q("b", "z", 2),
        ]);
        assert_eq!(
            *m.queue_lengths.lock().unwrap(),
            [q("a", "y", 7), q("b", "x", 3), q("_other", "_other", 3)]
        );
        m.set_queue_lengths(vec![q("a", "x", 1)]);
        assert_eq!(*m.queue_lengths.lock().unwrap(), [q("a", "x", 1)]);
    }

    #[test]
    fn gauge_max_and_take() {
        let g = Gauge::default();
        g.max(5);
        g.max(3);
        assert_eq!(g.take(), 5);
        assert_eq!(g.get(), 0);
    }
}
