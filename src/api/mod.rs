//! The HTTP API for back ends (`/api/v1/…` on the client port), sans-IO.
//!
//! An API request is one more dialect of the same typed messages (DESIGN.md, "the one
//! way through the house"): the reactor reads the request ([`crate::http`]), [`route`]
//! turns method, path, query and body into the protocol [`crate::protocol::Msg`] it
//! stands for and the [`Scope`] it needs, the session worker authenticates the
//! credential ([`keys`]) and hands the message on exactly as it would a session's,
//! and the reply frame the service sends back becomes the HTTP response
//! ([`answer`]). Nothing here touches a socket or a clock.

pub mod answer;
pub mod keys;
pub mod query;
pub mod route;
mod scope;

pub use scope::{Scope, Scopes};

/// The path prefix of every API route.
pub const PREFIX: &str = "/api/v1/";

/// Whether a request path is the API's.
pub fn is_api_path(path: &str) -> bool {
    path.starts_with(PREFIX) || path == "/api/v1"
}

/// An API request on its way from a reactor to the session worker of its
/// connection: the credential as presented and the routed call.
#[derive(Debug)]
pub struct ApiCall {
    /// The request id the reply will carry (the reactor matches it).
    pub rid: u32,
    /// The `Authorization` header (a credential: never logged).
    pub authorization: Option<String>,
    /// The routed request.
    pub call: route::Call,
}
