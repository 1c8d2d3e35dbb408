//! The two typed queues where reactors and workers meet (DESIGN.md, "the one way through
//! the house"): reactors push [`Event`]s to workers, workers push [`Command`]s back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::queue::{Sender, TrySendError};
use bytes::Bytes;
use crossbeam_utils::CachePadded;

use crate::frame::FrameHeader;
use crate::protocol::ErrorCode;

/// Names one connection anywhere in the process. The generation makes a reused slab
/// slot a different connection: a stale id never reaches the new occupant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    /// Index of the owning reactor.
    pub reactor: u16,
    /// Slot in that reactor's slab.
    pub slot: u32,
    /// Generation stamped at accept; never zero.
    pub generation: u32,
}

/// Why a connection ended; used for the metric label and the worker's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side.
    PeerClosed,
    /// A socket error (reset, broken pipe, …).
    IoError,
    /// The server closed it with an error code (framing error, timeout, slow consumer…).
    Error(ErrorCode),
    /// A worker asked for an orderly close.
    Server,
    /// The daemon is shutting down.
    Shutdown,
    /// The client said `Bye` and the server closed in answer.
    ClientBye,
    /// The TLS layer failed: a handshake that could not complete, or a record that
    /// does not decrypt or parse (the peer got an alert, if anything).
    TlsError,
}

impl CloseReason {
    /// A short stable name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::PeerClosed => "peer_closed",
            Self::IoError => "io_error",
            Self::Error(code) => code.name(),
            Self::Server => "server",
            Self::Shutdown => "shutdown",
            Self::ClientBye => "client_bye",
            Self::TlsError => "tls_error",
        }
    }
}

/// Reactor → worker.
#[derive(Debug)]
pub enum Event {
    /// A protocol connection was accepted.
    Opened {
        /// The new connection.
        conn: ConnId,
        /// Its peer address.
        peer: SocketAddr,
    },
    /// A complete, well-framed message arrived.
    Frame {
        /// Where it came from.
        conn: ConnId,
        /// Its header.
        header: FrameHeader,
        /// Its payload, without padding.
        payload: Bytes,
    },
    /// An HTTP API request (`crate::api`), answered by a frame with its `rid`.
    Api {
        /// Where it came from.
        conn: ConnId,
        /// The request.
        call: Box<crate::api::ApiCall>,
    },
    /// The connection is gone (or closing); nothing more will arrive from it.
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Shutdown barrier: the worker acknowledges once everything before it is handled.
    Barrier(crossbeam_channel::Sender<()>),
}

/// Worker → reactor.
#[derive(Debug)]
pub enum Command {
    /// Write an encoded frame to a connection.
    Send {
        /// Target connection.
        conn: ConnId,
        /// Header, payload and padding, ready for the wire.
        frame: Bytes,
    },
    /// Write an encoded frame its producer charged to the connection in the output
    /// ledger (an expensive reply such as a `HistoryPage`): the reactor settles the
    /// charge as it takes the frame.
    SendCharged {
        /// Target connection.
        conn: ConnId,
        /// Header, payload and padding, ready for the wire.
        frame: Bytes,
    },
    /// Write the same encoded frame to several connections of this reactor.
    SendMany {
        /// Target connections (all owned by the receiving reactor).
        conns: Vec<ConnId>,
        /// Header, payload and padding, shared.
        frame: Bytes,
    },
    /// An HTTP API answer no protocol message carries (`GET /api/v1/agents`): the
    /// JSON body of a 200 for request `rid` of an API connection.
    Answer {
        /// The API connection.
        conn: ConnId,
        /// The request id.
        rid: u32,
        /// The JSON body.
        body: Bytes,
    },
    /// An HTTP API answer with a file (`GET .../attachments/{id}`): a 200 for request
    /// `rid` of an API connection with the file's bytes and headers.
    File {
        /// The API connection.
        conn: ConnId,
        /// The request id.
        rid: u32,
        /// The file and how to label it.
        file: Box<crate::files::FileAnswer>,
    },
    /// A console login's password was checked (`POST /console/v1/login`, on a login
    /// thread): the reactor mints the token (or refuses) and answers the request.
    ConsoleLogin {
        /// The HTTP connection.
        conn: ConnId,
        /// The account when the password was right, else why not
        /// (`BadPassword`, `UnknownUser`).
        verdict: Result<Box<crate::console::Account>, crate::console::Outcome>,
    },
    /// The connection completed its handshake; switch it from the handshake deadline to
    /// the idle deadline.
    Established {
        /// The connection.
        conn: ConnId,
    },
    /// Close a connection: send `farewell` (or, without one, a header-only `Error`
    /// for `code`), then close as the reactor closes on errors.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, for metrics and the header-only farewell; `None` is an orderly close.
        code: Option<ErrorCode>,
        /// The last frame to send (an `Error` with details, a `Bye`).
        farewell: Option<Bytes>,
    },
    /// The client said `Bye`: close without a farewell, as for [`Command::Close`],
    /// counted as [`CloseReason::ClientBye`].
    ClientBye {
        /// The connection.
        conn: ConnId,
    },
    /// Shutdown phase one: stop accepting and stop passing input to workers, then ack.
    StopInput(crossbeam_channel::Sender<()>),
    /// A configuration reload changed the connection limits (SIGHUP).
    Limits(LiveLimits),
    /// A configuration reload built the token keys anew: visitor tokens are signed
    /// with its first key from now on (so they verify under the keys in force).
    VisitorSigner(Arc<crate::auth::Verifier>),
    /// A reload read the client listener's certificates anew: new TLS handshakes
    /// use this configuration (sessions already established keep theirs; `None`:
    /// plaintext only from now on).
    Tls(Option<Arc<rustls::ServerConfig>>),
    /// Shutdown phase two: say `Bye`, flush, close everything, exit the thread.
    Drain {
        /// Give up flushing at this instant.
        deadline: std::time::Instant,
    },
}

impl Command {
    /// The one connection the command is for, which picks its reactor (`None` for a
    /// command to many connections or to the reactor itself).
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Command::Send { conn, .. }
            | Command::SendCharged { conn, .. }
            | Command::Answer { conn, .. }
            | Command::File { conn, .. }
            | Command::ConsoleLogin { conn, .. }
            | Command::Established { conn }
            | Command::Close { conn, .. }
            | Command::ClientBye { conn } => Some(*conn),
            Command::SendMany { .. }
            | Command::StopInput(_)
            | Command::Limits(_)
            | Command::VisitorSigner(_)
            | Command::Tls(_)
            | Command::Drain { .. } => None,
        }
    }
}

/// The connection limits a reload may change without dropping a connection; they
/// apply to frames read and deadlines armed from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveLimits {
    /// Largest frame payload accepted (bytes).
    pub max_frame_bytes: u32,
    /// Output queued for one connection before it is cut as a slow consumer (bytes).
    pub max_pending_bytes: u32,
    /// Output queued for all connections before the largest are cut (bytes).
    pub max_pending_total: u64,
    /// Time queued output may make no progress before the connection is cut
    /// (milliseconds).
    pub stall_ms: u64,
    /// Time to complete the handshake (milliseconds).
    pub handshake_ms: u64,
    /// Silence after which an established connection is closed (milliseconds).
    pub idle_ms: u64,
    /// How long a closing connection may take to flush (milliseconds).
    pub linger_ms: u64,
}

impl LiveLimits {
    /// The limits `config` sets.
    pub fn from_config(config: &crate::config::Config) -> Self {
        use crate::clock::millis;
        Self {
            max_frame_bytes: config.limits.max_frame_bytes,
            max_pending_bytes: config.limits.max_pending_bytes,
            max_pending_total: config.max_pending_total_bytes(),
            stall_ms: millis(config.limits.stall_timeout),
            handshake_ms: millis(config.heartbeat.handshake_timeout),
            idle_ms: millis(config.heartbeat.idle_timeout),
            linger_ms: millis(config.limits.close_linger),
        }
    }
}

/// A worker's event queue: bounded in events by the channel, and in frame payload
/// bytes by a shared count, so a few connections sending large frames faster than a
/// worker handles them cannot pile up memory behind a queue that is short in events.
#[derive(Debug, Clone)]
pub struct WorkerQueue {
    tx: Sender<Event>,
    bytes: Arc<CachePadded<AtomicU64>>,
    max_bytes: u64,
}

impl WorkerQueue {
    /// A queue over `tx` holding at most `max_bytes` of frame payloads.
    pub fn new(tx: Sender<Event>, max_bytes: u64) -> Self {
        Self {
            tx,
            bytes: Arc::default(),
            max_bytes,
        }
    }

    /// The shared byte count, for the worker to release what it handled.
    pub fn bytes(&self) -> Arc<CachePadded<AtomicU64>> {
        self.bytes.clone()
    }

    /// Queues an event without blocking; a frame that would take the queue past its
    /// byte bound is refused as `Full`.
    pub fn try_send(&self, event: Event) -> Result<(), TrySendError<Event>> {
        let len = match &event {
            Event::Frame { payload, .. } => payload.len() as u64,
            _ => 0,
        };
        if len > 0 {
            let before = self.bytes.fetch_add(len, Ordering::Relaxed);
            if before.saturating_add(len) > self.max_bytes {
                self.bytes.fetch_sub(len, Ordering::Relaxed);
                return Err(TrySendError::Full(event));
            }
        }
        self.tx.try_send(event).inspect_err(|_| {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
        })
    }

    /// Queues an event, waiting up to `timeout` for room (shutdown barriers).
    pub fn send_timeout(&self, event: Event, timeout: std::time::Duration) -> bool {
        self.tx.send_timeout(event, timeout).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Event {
        Event::Frame {
            conn: ConnId {
                reactor: 0,
                slot: 0,
                generation: 1,
            },
            header: FrameHeader::default(),
            payload: Bytes::from(vec![0; len]),
        }
    }

    #[test]
    fn byte_bound_refuses_frames_and_releases_on_failure() {
        let (tx, rx) = crate::queue::bounded(10);
        let q = WorkerQueue::new(tx, 100);
        assert!(q.try_send(frame(60)).is_ok());
        assert!(matches!(q.try_send(frame(60)), Err(TrySendError::Full(_))));
        // The refused frame's bytes were given back: 40 more still fit.
        assert!(q.try_send(frame(40)).is_ok());
        assert_eq!(q.bytes().load(Ordering::Relaxed), 100);
        // What the worker handles it releases.
        drop(rx.recv());
        q.bytes().fetch_sub(60, Ordering::Relaxed);
        assert!(q.try_send(frame(60)).is_ok());
    }

    #[test]
    fn a_full_channel_gives_the_bytes_back() {
        let (tx, _rx) = crate::queue::bounded(1);
        let q = WorkerQueue::new(tx, 1000);
        assert!(q.try_send(frame(10)).is_ok());
        assert!(q.try_send(frame(10)).is_err());
        assert_eq!(q.bytes().load(Ordering::Relaxed), 10);
    }
}
