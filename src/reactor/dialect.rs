//! What the web edge needs outside a connection's handling: its settings, and how a
//! binary frame (as the service encodes it) becomes what a connection of each dialect
//! receives, including the farewell and Close frame it ends with. Pure functions of
//! their inputs; `core` and its web module use them.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::conn::Dialect;
use super::visitor_desk::Visitors;
use crate::handoff::CloseReason;
use crate::http::head::HeadLimits;
use crate::http::response::Response;
use crate::protocol::ErrorCode;
use crate::protocol::json::{self, JsonLimits};
use crate::ws::frame::{Opcode, close_frame, server_frame};
use crate::ws::{OriginPolicy, WsLimits, close};

/// The web edge's limits and rules, resolved from the config (`[web]`).
pub(crate) struct WebSettings {
    /// Origins whose pages may open a WebSocket (`web.allowed_origins`).
    pub origins: OriginPolicy,
    /// Request head bounds (`web.max_head_bytes`, `web.max_headers`).
    pub head: HeadLimits,
    /// WebSocket message bound (`web.max_message_bytes`).
    pub ws: WsLimits,
    /// JSON message bounds (`web.max_message_bytes`, nesting).
    pub json: JsonLimits,
    /// The visitor-token endpoint's sites (`[[web.sites]]`).
    pub visitors: Visitors,
    /// The HTTP API's bounds (`[api]`).
    pub api: ApiLimits,
}

/// The HTTP API's bounds in a reactor.
#[derive(Debug, Clone)]
pub(crate) struct ApiLimits {
    /// `api.max_body_bytes`.
    pub max_body: usize,
    /// `api.max_in_flight`.
    pub max_in_flight: usize,
    /// `api.max_export_bytes`.
    pub max_export: usize,
    /// `api.max_attachment_bytes`: the body limit of an upload.
    pub max_attachment: usize,
    /// `api.attachment_types`.
    pub attachment_types: std::sync::Arc<[String]>,
    /// `api.max_uploads_in_flight`.
    pub max_uploads: usize,
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("max_head_bytes", &self.head.max_bytes)
            .field("max_message_bytes", &self.ws.max_message)
            .finish_non_exhaustive()
    }
}

impl WebSettings {
    /// The web settings of `config` (validated: the origin lists parse). The
    /// origins of every site may open WebSockets too.
    pub fn from_config(c: &crate::config::Config) -> Arc<Self> {
        let w = &c.web;
        let origins: Vec<String> = w
            .allowed_origins
            .iter()
            .chain(w.sites.iter().flat_map(|s| &s.allowed_origins))
            .cloned()
            .collect();
        Arc::new(Self {
            origins: OriginPolicy::parse(&origins).unwrap_or_else(|_| OriginPolicy::same_host()),
            head: HeadLimits {
                max_bytes: w.max_head_bytes,
                max_headers: w.max_headers,
            },
            ws: WsLimits {
                max_message: w.max_message_bytes,
            },
            json: JsonLimits {
                max_bytes: w.max_message_bytes as usize,
                max_depth: JSON_MAX_DEPTH,
            },
            visitors: Visitors::from_config(c),
            api: ApiLimits {
                max_body: c.api.max_body_bytes,
                max_in_flight: c.api.max_in_flight,
                max_export: c.api.max_export_bytes,
                max_attachment: c.api.max_attachment_bytes,
                attachment_types: c.api.attachment_types.clone().into(),
                max_uploads: c.api.max_uploads_in_flight,
            },
        })
    }
}

/// Deepest JSON nesting accepted; the protocol's own messages nest at most 4 deep.
const JSON_MAX_DEPTH: usize = 16;

/// The WebSocket close code for a connection closed for `reason`: protocol error
/// codes travel as 4000 + code (the private-use range, so a page's `onclose` sees
/// the code without parsing anything); a shutdown is 1001, anything else 1000.
pub(crate) fn ws_close_code(reason: CloseReason) -> u16 {
    match reason {
        CloseReason::Error(code) => 4000u16.saturating_add(code.as_u16()),
        CloseReason::Shutdown => close::GOING_AWAY,
        _ => close::NORMAL,
    }
}

/// A binary frame as a connection of `dialect` receives it (`None`: the dialect
/// carries no protocol messages, or the frame has no JSON form).
pub(crate) fn message_for(dialect: Dialect, frame: &Bytes) -> Option<Bytes> {
    match dialect {
        // A raw stream takes bytes as they are (no worker writes to one in
        // production; closed WebSockets are `Raw` but take no more commands).
        Dialect::Unknown | Dialect::Binary | Dialect::Raw => Some(frame.clone()),
        Dialect::WsBin => Some(server_frame(Opcode::Binary, frame)),
        Dialect::WsJson => match json::frame_to_json(frame) {
            Ok(text) => Some(server_frame(Opcode::Text, &text)),
            Err(e) => {
                // The service built the frame: failing to convert it is a bug.
                tracing::error!(error = %e, "no JSON form for an outbound frame; dropped");
                None
            }
        },
        Dialect::HttpHead
        | Dialect::HttpWait
        | Dialect::HttpBody
        | Dialect::HttpApi
        | Dialect::WsEcho => None,
    }
}

/// The last bytes a connection of `dialect` closed for `reason` gets: the protocol
/// farewell in its dialect, and on a WebSocket a Close frame after it.
pub(crate) fn farewell_for(
    dialect: Dialect,
    reason: CloseReason,
    farewell: Option<Bytes>,
) -> Option<Bytes> {
    match dialect {
        Dialect::Unknown | Dialect::Binary => farewell,
        // The reactor answers these itself (`Core::api_farewell`).
        Dialect::Raw | Dialect::HttpBody | Dialect::HttpApi => None,
        Dialect::HttpHead | Dialect::HttpWait => match reason {
            CloseReason::Error(ErrorCode::HandshakeTimeout) => {
                Some(Response::error(408, "the request head took too long").to_bytes(false))
            }
            CloseReason::Shutdown => {
                Some(Response::error(503, "the server is shutting down").to_bytes(false))
            }
            _ => None,
        },
        Dialect::WsJson | Dialect::WsBin | Dialect::WsEcho => {
            let mut out = BytesMut::new();
            if let Some(message) = farewell.and_then(|f| message_for(dialect, &f)) {
                out.extend_from_slice(&message);
            }
            out.extend_from_slice(&close_frame(ws_close_code(reason), reason.name()));
            Some(out.freeze())
        }
    }
}

/// One outbound frame in each dialect, converted at most once (a frame for many
/// connections is encoded once per dialect, not once per member).
pub(crate) struct PerDialect {
    frame: Bytes,
    json: Option<Option<Bytes>>,
    bin: Option<Bytes>,
}

impl PerDialect {
    /// `frame` as the service encoded it (binary).
    pub fn new(frame: Bytes) -> Self {
        Self {
            frame,
            json: None,
            bin: None,
        }
    }

    /// The frame for a connection of `dialect`.
    pub fn get(&mut self, dialect: Dialect) -> Option<Bytes> {
        match dialect {
            Dialect::WsJson => self
                .json
                .get_or_insert_with(|| message_for(Dialect::WsJson, &self.frame))
                .clone(),
            Dialect::WsBin => Some(
                self.bin
                    .get_or_insert_with(|| server_frame(Opcode::Binary, &self.frame))
                    .clone(),
            ),
            other => message_for(other, &self.frame),
        }
    }
}
