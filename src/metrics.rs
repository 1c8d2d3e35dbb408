//! Counters shared between threads. Each reactor and worker writes only its own
//! cache-padded block, so counting costs no cross-core traffic on the hot path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::handoff::CloseReason;
use crate::protocol::ErrorCode;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Close reasons tracked separately, in [`CloseReason`] label order.
pub const CLOSE_LABELS: [&str; 12] = [
    "peer_closed",
    "io_error",
    "server",
    "shutdown",
    "bad_magic",
    "unsupported_version",
    "frame_too_large",
    "bad_padding",
    "handshake_timeout",
    "idle_timeout",
    "slow_consumer",
    "other_error",
];

fn close_index(reason: CloseReason) -> usize {
    match reason {
        CloseReason::PeerClosed => 0,
        CloseReason::IoError => 1,
        CloseReason::Server => 2,
        CloseReason::Shutdown => 3,
        CloseReason::Error(code) => match code {
            ErrorCode::BadMagic => 4,
            ErrorCode::UnsupportedVersion => 5,
            ErrorCode::FrameTooLarge => 6,
            ErrorCode::BadPadding => 7,
            ErrorCode::HandshakeTimeout => 8,
            ErrorCode::IdleTimeout => 9,
            ErrorCode::SlowConsumer => 10,
            _ => 11,
        },
    }
}

/// One reactor's counters.
#[derive(Debug, Default)]
pub struct ReactorMetrics {
    /// Connections accepted.
    pub accepted: Counter,
    /// Connections currently open on this reactor.
    pub open: Gauge,
    /// Connections closed, by reason (indexed like [`CLOSE_LABELS`]).
    pub closed: [Counter; CLOSE_LABELS.len()],
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
}

/// One worker's counters.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Events handled.
    pub events: Counter,
    /// Frames answered with an error code.
    pub errors_sent: Counter,
    /// Current depth of this worker's event queue (sampled).
    pub queue_depth: Gauge,
}

/// Every counter in the process.
#[derive(Debug)]
pub struct Metrics {
    /// Per reactor, by reactor index.
    pub reactors: Box<[Arc<CachePadded<ReactorMetrics>>]>,
    /// Per worker, by worker index.
    pub workers: Box<[Arc<CachePadded<WorkerMetrics>>]>,
}

impl Metrics {
    /// Zeroed counters for the given thread counts.
    pub fn new(reactors: usize, workers: usize) -> Self {
        Self {
            reactors: (0..reactors).map(|_| Arc::default()).collect(),
            workers: (0..workers).map(|_| Arc::default()).collect(),
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
