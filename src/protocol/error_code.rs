//! Error codes carried in the `status` field of `Error` and `Bye` frame headers.

use crate::frame::FrameError;

/// Every error code of protocol version 1 (table in `proto-spec/FRAMING.md`).
///
/// Ranges: 1xx framing and session state, 2xx handshake and auth, 3xx liveness and
/// flow, 4xx request errors (the connection stays open), 5xx server conditions.
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
    /// The token is malformed, its signature does not verify, or it is not HS256.
    TokenInvalid = 200,
    /// The token has expired (or is not valid yet); get a fresh one.
    TokenExpired = 201,
    /// The token names a key id (`kid`) the server does not have.
    UnknownKey = 202,
    /// A required claim is missing or has a value the server does not accept.
    BadClaims = 203,
    /// `Hello.protocol` is a version the server does not speak.
    UnsupportedProtocol = 204,
    /// The user is blocked (abuse filter) for a while.
    Blocked = 205,
    /// An admin ended this session (`Disconnect`).
    Disconnected = 206,
    /// No `Hello` arrived within `heartbeat.handshake_timeout`.
    HandshakeTimeout = 300,
    /// Nothing arrived within `heartbeat.idle_timeout`.
    IdleTimeout = 301,
    /// More than `limits.max_pending_bytes` of output queued for the connection.
    SlowConsumer = 302,
    /// A field of a request is out of range or inconsistent.
    BadRequest = 400,
    /// The user may not do this (role, ownership, tenant).
    Forbidden = 403,
    /// No such conversation (or not visible to this user).
    NotFound = 404,
    /// The conversation is not in a state that allows this.
    Conflict = 409,
    /// Too many requests; slow down.
    RateLimited = 429,
    /// A server queue is full; try again shortly.
    ServerBusy = 500,
    /// The server is shutting down; reconnect (possibly elsewhere).
    ShuttingDown = 501,
    /// An unexpected server-side failure.
    Internal = 502,
    /// Durable storage is failing (disk full, I/O error); nothing was stored.
    StorageUnavailable = 503,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 26] = [
        Self::BadMagic,
        Self::UnsupportedVersion,
        Self::FrameTooLarge,
        Self::BadPadding,
        Self::MalformedPayload,
        Self::UnknownKind,
        Self::UnexpectedKind,
        Self::TokenInvalid,
        Self::TokenExpired,
        Self::UnknownKey,
        Self::BadClaims,
        Self::UnsupportedProtocol,
        Self::Blocked,
        Self::Disconnected,
        Self::HandshakeTimeout,
        Self::IdleTimeout,
        Self::SlowConsumer,
        Self::BadRequest,
        Self::Forbidden,
        Self::NotFound,
        Self::Conflict,
        Self::RateLimited,
        Self::ServerBusy,
        Self::ShuttingDown,
        Self::Internal,
        Self::StorageUnavailable,
    ];

    /// The code for a wire value, if this build knows it.
    pub fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_u16() == v)
    }

    /// The wire value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// Whether the server closes the connection after sending this code.
    pub fn closes_connection(self) -> bool {
        !matches!(
            self,
            Self::UnknownKind
                | Self::BadRequest
                | Self::Forbidden
                | Self::NotFound
                | Self::Conflict
                | Self::RateLimited
                | Self::StorageUnavailable
        )
    }

    /// Whether retrying (after reconnecting, where closed) can succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::TokenExpired
                | Self::HandshakeTimeout
                | Self::IdleTimeout
                | Self::RateLimited
                | Self::StorageUnavailable
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
            Self::TokenInvalid => "token_invalid",
            Self::TokenExpired => "token_expired",
            Self::UnknownKey => "unknown_key",
            Self::BadClaims => "bad_claims",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::Blocked => "blocked",
            Self::Disconnected => "disconnected",
            Self::BadRequest => "bad_request",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::RateLimited => "rate_limited",
            Self::StorageUnavailable => "storage_unavailable",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_sorted_unique_and_round_trips() {
        for w in ErrorCode::ALL.windows(2) {
            assert!(w[0].as_u16() < w[1].as_u16(), "{w:?}");
        }
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(c.as_u16()), Some(c));
        }
        assert_eq!(ErrorCode::from_u16(0), None);
    }

    #[test]
    fn request_errors_keep_the_connection() {
        for c in ErrorCode::ALL {
            let v = c.as_u16();
            if (400..500).contains(&v) {
                assert!(!c.closes_connection(), "{c:?}");
            }
            if (200..300).contains(&v) {
                assert!(c.closes_connection(), "{c:?}");
            }
        }
    }
}
