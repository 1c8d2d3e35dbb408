//! The per-connection context: everything a reactor knows about one socket.
//!
//! Kept small (checked at compile time) because a gateway holds hundreds of thousands
//! of these; an idle connection owns no heap memory at all (its empty buffers are
//! null pointers, `reactor/conn_buffers.rs`).

use mio::Token;
use mio::net::TcpStream;

use crate::clock::Mono;
use crate::handoff::CloseReason;
use crate::reactor::conn_buffers::{OutQueue, Spill};

/// What a listener's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerKind {
    /// Framed client protocol, handled by workers.
    Client,
    /// Raw bytes echoed back by the reactor itself (benchmarking).
    Echo,
    /// WebSocket messages echoed back by the reactor itself (benchmarking, and the
    /// Autobahn conformance suite).
    WsEcho,
}

impl ListenerKind {
    /// Whether output is a sequence of frames (a cut keeps the one the kernel took
    /// part of, and a farewell may follow) rather than a raw byte stream.
    pub fn framed(self) -> bool {
        self != Self::Echo
    }
}

/// What a connection speaks, learnt from its first bytes (client listener) or set
/// by its listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Nothing read yet.
    Unknown,
    /// Binary Switchboard frames (`proto-spec/FRAMING.md`).
    Binary,
    /// An HTTP/1.1 request head is arriving.
    HttpHead,
    /// An HTTP API request's body is arriving (`reactor::api_desk`).
    HttpBody,
    /// An HTTP API request waits for the service's answer.
    HttpApi,
    /// A console login waits for its password check (`reactor/web_console.rs`):
    /// input is discarded, the answer closes the connection.
    HttpWait,
    /// WebSocket, subprotocol `switchboard.v1.json`: one JSON message per text frame.
    WsJson,
    /// WebSocket, subprotocol `switchboard.v1.bin`: binary frames carry binary
    /// Switchboard frames, split anyhow.
    WsBin,
    /// WebSocket echo (the echo listener in `websocket` mode).
    WsEcho,
    /// Raw bytes (the echo listener).
    Raw,
}

impl Dialect {
    /// A WebSocket dialect.
    pub fn is_ws(self) -> bool {
        matches!(self, Self::WsJson | Self::WsBin | Self::WsEcho)
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepted; waiting for the worker to confirm `Hello`.
    Handshake,
    /// Handshake done (or raw echo); subject to the idle deadline.
    Established,
    /// Closing: input is discarded, queued output flushed, then the socket closed when
    /// the peer closes or the linger deadline passes.
    Closing,
}

/// A WebSocket connection part-way through a message (or frame).
#[derive(Debug, Default)]
pub(crate) struct WsPartial {
    /// The receive state (fragmentation, UTF-8 progress).
    pub state: crate::ws::WsState,
    /// The part of a message that has arrived (JSON and echo), or of a binary frame
    /// carried in WebSocket messages (`WsBin`).
    pub inner: Vec<u8>,
}

/// One connection.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes of a frame (or HTTP head) that has not fully arrived; empty
    /// (unallocated) between frames.
    pub spill: Spill,
    /// WebSocket only, and only while a message or frame is part-way in: its receive
    /// state and the part of the message that has arrived. `None` (8 bytes, nothing
    /// allocated) between messages, so an idle WebSocket costs what an idle binary
    /// connection costs.
    pub ws: Option<Box<WsPartial>>,
    /// TLS (client listener, once a ClientHello arrived): the session, which keeps
    /// no record buffer between records. `None` for plaintext connections.
    pub tls: Option<Box<crate::tls::session::TlsSession>>,
    /// Output the kernel has not taken yet; empty (unallocated) when caught up.
    pub outq: OutQueue,
    /// When the current phase's deadline started counting (accept, last input, or
    /// close), on the reactor's clock.
    pub mark: Mono,
    /// Generation stamped at accept.
    pub generation: u32,
    /// Total bytes in `outq`.
    pub pending: u32,
    /// Output allowed on top of `limits.max_pending_bytes`, in units of
    /// [`ALLOWANCE_UNIT`] bytes: the size of the last HTTP API answer (a file, an
    /// export) or of the largest charged reply (a `HistoryPage`) queued, so that a
    /// client reading it is not cut in the middle or for a small frame queued behind
    /// it. Back to 0 when the queue drains. A `u16` fits the struct's padding.
    pub allowance: u16,
    /// The part of `pending` already counted in the output ledger and the reactor's
    /// total (they are brought up to date after each change, see `Core::publish`).
    pub published: u32,
    /// The last output progress (bytes the kernel took), or when output started
    /// queuing, on the reactor's clock: queued output older than
    /// `limits.stall_timeout` by this mark is stalled.
    pub out_mark: Mono,
    /// Input thrown away while closing; past the read budget the linger ends early,
    /// so a flooding peer cannot keep a closing connection busy.
    pub discarded: u32,
    /// Set once the connection starts closing.
    pub close_reason: Option<CloseReason>,
    /// Life phase.
    pub phase: Phase,
    /// What its listener serves.
    pub kind: ListenerKind,
    /// What it speaks.
    pub dialect: Dialect,
    /// Reading stopped because too much output is queued.
    pub read_paused: bool,
    /// Writable interest is registered.
    pub writable_armed: bool,
    /// A worker was told about this connection (so it must be told when it closes).
    pub announced: bool,
    /// Our write side is shut down (FIN sent); nothing more can be written.
    pub write_shut: bool,
    /// Listed for the end-of-turn flush.
    pub dirty: bool,
    /// Listed in the reactor's backlog (connections that may have output queued:
    /// swept for stalls, and the candidates when the daemon-wide budget is passed).
    pub listed: bool,
    /// The head of `outq` is the rest of a frame the kernel took part of (a cut must
    /// keep it so the stream stays framed).
    pub head_started: bool,
    /// Entries at the head of `outq` handed to an asynchronous send that has not
    /// completed (0: none). Nothing else is sent until it completes, and those
    /// entries stay queued so a slow-consumer cut keeps frame boundaries.
    pub sending: u8,
    /// The peer's address key in the connection limits (released on close).
    pub ip_key: crate::reactor::admission::IpKey,
    /// Its listener takes a PROXY header first and it has not arrived yet: input
    /// goes to `reactor/proxied.rs`, and the connection counts only against
    /// `limits.max_connections` (`ip_key` is the proxy's, counted nowhere).
    pub awaiting_proxy: bool,
}

/// The unit of [`Conn::allowance`] (64 KiB: a `u16` of them covers 4 GiB).
pub(crate) const ALLOWANCE_UNIT: u32 = 64 * 1024;

impl Conn {
    /// `limits.max_pending_bytes` (`usual`) plus this connection's allowance.
    pub fn pending_bound(&self, usual: u32) -> u32 {
        usual.saturating_add(u32::from(self.allowance).saturating_mul(ALLOWANCE_UNIT))
    }

    /// Allows `bytes` of output on top of the usual bound (rounded up to the unit).
    pub fn allow(&mut self, bytes: u32) {
        self.allowance = u16::try_from(bytes.div_ceil(ALLOWANCE_UNIT)).unwrap_or(u16::MAX);
    }
}

/// The design's ceiling for a connection context.
pub(crate) const MAX_CONN_BYTES: usize = 368;
const _: () = assert!(std::mem::size_of::<Conn>() <= MAX_CONN_BYTES);
// Tokens pack the generation into the upper 32 bits.
const _: () = assert!(usize::BITS >= 64);

/// The poll token for a slot and generation. Generation zero is never issued, so a
/// connection token can never equal a listener token (`< 2^32`).
pub(crate) fn token(slot: usize, generation: u32) -> Token {
    Token(((generation as usize) << 32) | (slot & 0xffff_ffff))
}

/// Splits a connection token into (slot, generation).
pub(crate) fn untoken(t: Token) -> (usize, u32) {
    (t.0 & 0xffff_ffff, (t.0 >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_never_collide_with_listeners() {
        let t = token(12345, 7);
        assert_eq!(untoken(t), (12345, 7));
        assert!(t.0 >= 1 << 32);
        assert_ne!(token(1, 1), token(1, 2));
    }

    #[test]
    fn conn_fits_the_budget() {
        let size = std::mem::size_of::<Conn>();
        println!("size_of::<Conn>() = {size}");
        assert!(size <= MAX_CONN_BYTES, "{size}");
    }
}
