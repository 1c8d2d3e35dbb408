//! What can go wrong in a [`Client`](super::Client) call.

use std::io;
use std::time::Duration;

use crate::frame::FrameError;
use crate::protocol::messages::{self, DecodeError};
use crate::protocol::{ErrorCode, Kind};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed (connect refused, reset, …). The connection is gone.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// Nothing arrived (or nothing could be written) within the call's time bound.
    /// After a write timeout the connection is gone; after a read timeout it is not.
    #[error("timed out")]
    Timeout,
    /// The connection is closed: the server ended the stream, or an earlier error
    /// (framing, I/O, a closing `Error` or `Bye`) ended it. [`Client::reconnect`] may
    /// help.
    ///
    /// [`Client::reconnect`]: super::Client::reconnect
    #[error("connection closed")]
    Closed,
    /// The server answered with an `Error` (or ended the session with `Bye`).
    #[error("server error {code} ({name}): {message}")]
    Server {
        /// The error code (the frame header's status).
        code: u16,
        /// Its stable name (`"unknown"` for a code this build does not know).
        name: &'static str,
        /// The server's detail, empty for a header-only `Error`.
        message: String,
        /// The conversation the error concerns (0 for none).
        conversation: u64,
        /// The request id the error answered (0 for an unsolicited one).
        request_id: u32,
        /// Whether trying again (reconnecting, if it closes) can succeed.
        retryable: bool,
        /// Whether the server closes the connection after it.
        closes: bool,
    },
    /// Nothing arrived for this long (`Welcome.heartbeat_ms + idle_timeout_ms`) after
    /// a heartbeat `Ping`, so the connection was given up as dead (PROTOCOL.md
    /// section 6.4).
    #[error("the server sent nothing for {0:?} after a heartbeat Ping")]
    Unresponsive(Duration),
    /// TLS failed: the CA file cannot be used, the handshake failed (an untrusted or
    /// expired certificate, no common protocol), or a record did not decrypt. The
    /// connection is gone.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server sent bytes that do not frame; the connection is gone.
    #[error("unframeable bytes from the server: {0}")]
    Framing(#[from] FrameError),
    /// The server sent a well-framed message whose body is invalid. The framing is
    /// intact, so the connection stays usable.
    #[error("invalid message from the server: {0}")]
    Decode(#[from] DecodeError),
    /// A message was refused before sending: the server would reject it as malformed
    /// (e.g. an empty `Send.body`) or it exceeds the server's frame limit.
    #[error("message not sent: {0}")]
    Invalid(String),
    /// The server broke the handshake (no `Welcome`, another protocol version, …).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// A reply arrived under the request's id but is not what that request expects.
    #[error("unexpected {got:?} in reply to request {request_id}")]
    UnexpectedReply {
        /// The request's id.
        request_id: u32,
        /// The kind that arrived.
        got: Kind,
    },
    /// Too many frames are queued for [`Client::recv`](super::Client::recv); the
    /// request gave up waiting (its reply, if it comes, is queued too).
    #[error("{0} received frames are queued unread; call recv")]
    InboxFull(usize),
    /// [`Client::reconnect`](super::Client::reconnect) ran out of attempts.
    #[error("reconnect failed after {attempts} attempts: {last}")]
    ReconnectFailed {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// Whether trying again — reconnecting where the connection is gone — can
    /// succeed: I/O errors, timeouts, closed or unresponsive connections and
    /// retryable server codes.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Io(_) | Self::Timeout | Self::Closed | Self::Unresponsive(_) => true,
            Self::Server { retryable, .. } => *retryable,
            Self::Framing(_)
            | Self::Tls(_)
            | Self::Decode(_)
            | Self::Invalid(_)
            | Self::Handshake(_)
            | Self::UnexpectedReply { .. }
            | Self::InboxFull(_)
            | Self::ReconnectFailed { .. } => false,
        }
    }

    /// The error for a server `Error` body (a header-only one or a `Bye` already
    /// turned into one) that answered `request_id`. Codes this build does not know
    /// count as not closing (FRAMING.md section 7: the socket tells).
    pub(super) fn server(body: &messages::Error, request_id: u32) -> Self {
        let known = ErrorCode::from_u16(body.code);
        Self::Server {
            code: body.code,
            name: known.map_or("unknown", ErrorCode::name),
            message: body.message.clone(),
            conversation: body.conversation,
            request_id,
            retryable: body.retryable,
            closes: known.is_some_and(ErrorCode::closes_connection),
        }
    }
}
