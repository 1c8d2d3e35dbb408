//! RFC 6455 WebSocket, sans-IO: the opening handshake ([`handshake`], with the Origin
//! policy of [`origin`]), frames ([`frame`]), close codes ([`close`]), incremental
//! UTF-8 validation ([`utf8`]) and the receive state machine the reactor drives
//! ([`endpoint`]). No socket, no clock, no buffer of its own on an idle connection.
//!
//! Extensions (permessage-deflate) are not negotiated: RSV bits are a protocol error.

pub mod close;
pub mod endpoint;
pub mod frame;
pub mod handshake;
pub mod origin;
pub mod utf8;

pub use endpoint::{Fed, WsError, WsLimits, WsSink, WsState};
pub use frame::{Opcode, client_frame, close_frame, server_frame, server_header};
pub use handshake::{Refusal, Refused, Subprotocol, Upgrade, accept, accept_key};
pub use origin::{OriginError, OriginPolicy, SAME_HOST};

#[cfg(test)]
mod peer_tests;
