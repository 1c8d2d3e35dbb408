//! `[web]`: the web edge of the client listener (HTTP, WebSocket, JSON).

use serde::{Deserialize, Serialize};

/// The web edge of the client listener: what browsers may do and how much.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Origins whose pages may open a WebSocket: `"same-host"` (the page's host and
    /// port equal the request's `Host`), exact origins (`"https://example.com"`), or
    /// subdomain wildcards (`"https://*.example.com"`). A request without `Origin`
    /// (a non-browser client) is allowed; a browser always sends one, so a page of
    /// another site cannot ride on its visitor's cookies or network position.
    pub allowed_origins: Vec<String>,
    /// Largest HTTP request head (request line and headers), in bytes; larger is
    /// answered 431.
    pub max_head_bytes: usize,
    /// Most header lines in a request head; more is answered 431.
    pub max_headers: usize,
    /// Largest WebSocket message (all its fragments), in bytes; larger closes the
    /// connection with 1009. A JSON message must also fit `limits.max_frame_bytes`
    /// once converted to the binary frame it stands for.
    pub max_message_bytes: u32,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            allowed_origins: vec!["same-host".into()],
            max_head_bytes: 8192,
            max_headers: 32,
            max_message_bytes: 2 * 1024 * 1024,
        }
    }
}

impl WebConfig {
    /// Checks what the types cannot: `(key, reason)` of the first problem.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Err(e) = crate::ws::OriginPolicy::parse(&self.allowed_origins) {
            return Err(("web.allowed_origins", e.to_string()));
        }
        if !(1024..=65_536).contains(&self.max_head_bytes) {
            return Err(("web.max_head_bytes", "from 1024 to 65536".into()));
        }
        if !(4..=256).contains(&self.max_headers) {
            return Err(("web.max_headers", "from 4 to 256".into()));
        }
        if !(1024..=crate::frame::MAX_PAYLOAD_LIMIT).contains(&self.max_message_bytes) {
            return Err((
                "web.max_message_bytes",
                format!("from 1024 to {}", crate::frame::MAX_PAYLOAD_LIMIT),
            ));
        }
        Ok(())
    }
}
