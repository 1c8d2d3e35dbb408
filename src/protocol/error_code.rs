//! Error codes carried in the `status` field of `Error` and `Bye` frame headers.

use crate::frame::FrameError;

/// Every error code of protocol version 1 (table in `proto-spec/FRAMING.md`).
///
/// Ranges: 1xx framing, 2xx handshake and auth, 3xx liveness and flow, 4xx requests,
/// 5xx server conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The stream does not start with the `SB` magic.
    BadMagic = 100,
    /// The frame's version byte is not supported.
    UnsupportedVersion = 101,
    /// The payload length exceeds `limits.max_frame_bytes`.
    FrameTooLarge = 102,
    /// A padding byte is not zero.
    BadPadding = 103,
    /// The payload is not a valid message of its kind.
    MalformedPayload = 104,
    /// The kind byte names no message this server knows.
    UnknownKind = 105,
    /// The message is not allowed in the session's current state (e.g. before `Hello`).
    UnexpectedKind = 106,
    /// No `Hello` arrived within `heartbeat.handshake_timeout`.
    HandshakeTimeout = 300,
    /// Nothing arrived within `heartbeat.idle_timeout`.
    IdleTimeout = 301,
    /// More than `limits.max_pending_bytes` of output queued for the connection.
    SlowConsumer = 302,
    /// A server queue is full; try again shortly.
    ServerBusy = 500,
    /// The server is shutting down; reconnect (possibly elsewhere).
    ShuttingDown = 501,
    /// An unexpected server-side failure.
    Internal = 502,
}

impl ErrorCode {
    /// The wire value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// Whether the server closes the connection after sending this code.
    pub fn closes_connection(self) -> bool {
        !matches!(self, Self::UnknownKind)
    }

    /// Whether retrying (after reconnecting, where closed) can succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::HandshakeTimeout
                | Self::IdleTimeout
                | Self::SlowConsumer
                | Self::ServerBusy
                | Self::ShuttingDown
                | Self::Internal
        )
    }

    /// A short stable name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::BadMagic => "bad_magic",
            Self::UnsupportedVersion => "unsupported_version",
            Self::FrameTooLarge => "frame_too_large",
            Self::BadPadding => "bad_padding",
            Self::MalformedPayload => "malformed_payload",
            Self::UnknownKind => "unknown_kind",
            Self::UnexpectedKind => "unexpected_kind",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::SlowConsumer => "slow_consumer",
            Self::ServerBusy => "server_busy",
            Self::ShuttingDown => "shutting_down",
            Self::Internal => "internal",
        }
    }
}

impl From<FrameError> for ErrorCode {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::BadMagic => Self::BadMagic,
            FrameError::UnsupportedVersion(_) => Self::UnsupportedVersion,
            FrameError::TooLarge { .. } => Self::FrameTooLarge,
            FrameError::BadPadding => Self::BadPadding,
        }
    }
}
