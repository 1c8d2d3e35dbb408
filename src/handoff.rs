//! The two typed queues where reactors and workers meet (DESIGN.md, "the one way through
//! the house"): reactors push [`Event`]s to workers, workers push [`Command`]s back.

use std::net::SocketAddr;

use bytes::Bytes;

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
    /// Write the same encoded frame to several connections of this reactor.
    SendMany {
        /// Target connections (all owned by the receiving reactor).
        conns: Vec<ConnId>,
        /// Header, payload and padding, shared.
        frame: Bytes,
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
    /// Shutdown phase one: stop accepting and stop passing input to workers, then ack.
    StopInput(crossbeam_channel::Sender<()>),
    /// Shutdown phase two: say `Bye`, flush, close everything, exit the thread.
    Drain {
        /// Give up flushing at this instant.
        deadline: std::time::Instant,
    },
}
