//! The client protocol's vocabulary: message kinds and error codes (see `proto-spec/`).
//!
//! Sans-IO: nothing here touches a socket.

mod error_code;
pub mod json;
mod kind;
pub mod messages;
pub mod profile;

pub use error_code::ErrorCode;
pub use kind::Kind;
pub use messages::{DecodeError, Msg, PROTOCOL_VERSION};
