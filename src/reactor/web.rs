//! The web edge of the reactor: what a client connection speaks is learnt from its
//! first byte; an HTTP request head is parsed (a static route is answered, a
//! WebSocket upgrade is accepted or refused), then WebSocket frames are turned into
//! the same binary frames a binary connection sends, and outbound binary frames into
//! the connection's dialect. The codecs are sans-IO (`crate::http`, `crate::ws`,
//! `crate::protocol::json`); this file only wires them to the connection context.

use bytes::{Bytes, BytesMut};

use super::Core;
use crate::frame::{self, FrameHeader};
use crate::handoff::CloseReason;
use crate::http::head::{self, Method, Request};
use crate::http::response::Response;
use crate::protocol::json::{self, JsonError};
use crate::protocol::{ErrorCode, Kind};
use crate::reactor::conn::{Dialect, ListenerKind, Phase, WsPartial};
use crate::reactor::console_desk;
use crate::reactor::dialect::message_for;
use crate::reactor::sys::Driver;
use crate::reactor::visitor_desk as web_visitors;
use crate::ws::frame::{Opcode, close_frame, put_server_frame};
use crate::ws::{Fed, Subprotocol, WsSink, WsState, close};

/// The static routes of the client port: the health page and the embedded web
/// assets (the visitor widget, the agent console).
fn route(req: &Request) -> Response {
    match req.method {
        Method::Get | Method::Head => {}
        _ => {
            return Response::error(405, "only GET and HEAD are served here")
                .header("Allow", "GET, HEAD");
        }
    }
    match req.path.as_str() {
        "/healthz" => Response::new(200, "application/json", &b"{\"status\":\"ok\"}\n"[..]),
        _ => crate::http::assets::answer(crate::http::assets::ASSETS, req)
            .unwrap_or_else(|| Response::error(404, "no such page")),
    }
}

impl Core {
    /// Input on a connection of the client or WebSocket echo listener.
    pub(super) fn on_client_data(&mut self, drv: &mut impl Driver, slot: usize, data: &[u8]) {
        self.on_client_bytes(drv, slot, data);
        self.api_resume(drv);
    }

    /// [`Core::on_client_data`], but for what kept HTTP connections pipelined.
    pub(super) fn on_client_bytes(&mut self, drv: &mut impl Driver, slot: usize, data: &[u8]) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.dialect == Dialect::Unknown {
            let Some(&first) = data.first() else {
                return;
            };
            c.dialect = match crate::http::sniff(first) {
                crate::http::Dialect::Binary => Dialect::Binary,
                crate::http::Dialect::Http => Dialect::HttpHead,
            };
        }
        match c.dialect {
            Dialect::HttpHead => self.on_head(drv, slot, data),
            // One request per connection here: anything after it is not read.
            Dialect::HttpWait => {}
            Dialect::HttpBody => self.api_body(drv, slot, data),
            Dialect::HttpApi => self.api_pipelined(drv, slot, data),
            Dialect::WsJson | Dialect::WsBin | Dialect::WsEcho => self.on_ws(drv, slot, data),
            Dialect::Raw => self.send(drv, slot, Bytes::copy_from_slice(data)),
            Dialect::Unknown | Dialect::Binary => {
                if let Err(e) = self.deframe(drv, slot, data) {
                    tracing::debug!(reactor = self.id, slot, error = %e, "closing on framing error");
                    self.close_with_error(drv, slot, ErrorCode::from(e), 0);
                }
            }
        }
    }

    /// Part of an HTTP request head: waits for the rest (bounded in size by
    /// `web.max_head_bytes`, in time by the handshake deadline), then answers.
    fn on_head(&mut self, drv: &mut impl Driver, slot: usize, data: &[u8]) {
        let limits = &self.settings.web.head;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let mut buf = c.spill.take();
        let parsed = if buf.is_empty() {
            head::parse(data, limits)
        } else {
            buf.extend_from_slice(data);
            head::parse(&buf, limits)
        };
        match parsed {
            Ok(None) => {
                if buf.is_empty() {
                    buf.extend_from_slice(data);
                }
                c.spill.put(buf);
            }
            Ok(Some((req, len))) => {
                let whole = if buf.is_empty() { data } else { &buf[..] };
                let rest = whole.get(len..).unwrap_or_default();
                if c.kind == ListenerKind::Client && crate::api::is_api_path(&req.path) {
                    let rest = rest.to_vec();
                    return self.api_head(drv, slot, req, &rest);
                }
                if web_visitors::body_wanted(&req)
                    .or_else(|| console_desk::body_wanted(&req))
                    .is_some_and(|n| rest.len() < n)
                {
                    // The body is still coming: keep head and body so far (at most
                    // `web.max_head_bytes` + the endpoint's body bound), bounded in
                    // time by the handshake deadline (408).
                    if buf.is_empty() {
                        buf.extend_from_slice(data);
                    }
                    c.spill.put(buf);
                    return;
                }
                let rest = rest.to_vec();
                self.on_request(drv, slot, &req, &rest);
            }
            Err(e) => {
                tracing::debug!(reactor = self.id, slot, error = %e, "bad request head");
                let status = e.status();
                self.answer_and_close(drv, slot, Response::error(status, &e.to_string()));
            }
        }
    }

    /// A whole request head arrived (`rest`: bytes after it).
    fn on_request(&mut self, drv: &mut impl Driver, slot: usize, req: &Request, rest: &[u8]) {
        let Some(c) = self.conns.get(slot) else {
            return;
        };
        let kind = c.kind;
        let wants_ws = req.upgrade_websocket || req.ws_key.is_some();
        if !wants_ws {
            let head_only = req.method == Method::Head;
            let response = if kind == ListenerKind::WsEcho {
                Response::error(426, "this listener speaks WebSocket only")
                    .header("Upgrade", "websocket")
            } else if let Some(site) = crate::reactor::web_widget::widget_site(&req.path) {
                crate::reactor::web_widget::answer(&self.settings.web.visitors, site, req)
            } else if web_visitors::is_visitor_path(&req.path) {
                self.visitor_request(slot, req, rest)
            } else if console_desk::is_console_path(&req.path) {
                match self.console_request(slot, req, rest) {
                    Some(r) => r,
                    // A login went to the login threads: answered later.
                    None => return,
                }
            } else {
                route(req)
            };
            self.links.stats.web.count_response(response.status);
            let bytes = response.to_bytes(head_only);
            self.answer_bytes_and_close(drv, slot, bytes);
            return;
        }
        let require_protocol = kind == ListenerKind::Client;
        match crate::ws::accept(req, &self.settings.web.origins, require_protocol) {
            Ok(upgrade) => {
                let now = self.now;
                let dialect = match (kind, upgrade.protocol) {
                    (ListenerKind::Client, Some(Subprotocol::Bin)) => Dialect::WsBin,
                    (ListenerKind::Client, _) => Dialect::WsJson,
                    _ => Dialect::WsEcho,
                };
                let Some(c) = self.conns.get_mut(slot) else {
                    return;
                };
                c.dialect = dialect;
                if dialect == Dialect::WsEcho {
                    // No worker confirms anything: the echo is established at once.
                    c.phase = Phase::Established;
                    c.mark = now;
                }
                self.links.stats.web.count_response(101);
                self.links.stats.web.count_upgrade_slot(match dialect {
                    Dialect::WsJson => 0,
                    Dialect::WsBin => 1,
                    _ => 2,
                });
                self.send(drv, slot, upgrade.response);
                if !rest.is_empty() {
                    self.on_ws(drv, slot, rest);
                }
            }
            Err(refusal) => {
                tracing::debug!(reactor = self.id, slot, why = %refusal.why, "WebSocket upgrade refused");
                self.answer_and_close(drv, slot, refusal.response);
            }
        }
    }

    /// Sends an HTTP response and closes.
    fn answer_and_close(&mut self, drv: &mut impl Driver, slot: usize, response: Response) {
        self.links.stats.web.count_response(response.status);
        self.answer_bytes_and_close(drv, slot, response.to_bytes(false));
    }

    pub(super) fn answer_bytes_and_close(
        &mut self,
        drv: &mut impl Driver,
        slot: usize,
        bytes: Bytes,
    ) {
        if let Some(c) = self.conns.get_mut(slot) {
            // The answer is the last thing sent: no farewell after it.
            c.dialect = Dialect::Raw;
        }
        self.send(drv, slot, bytes);
        self.close_with(drv, slot, CloseReason::Server, None);
    }

    /// WebSocket input: whole frames are handled, a partial one spills.
    fn on_ws(&mut self, drv: &mut impl Driver, slot: usize, data: &[u8]) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let mut state = c.ws.as_ref().map(|p| p.state).unwrap_or_default();
        let dialect = c.dialect;
        let mut spilled = c.spill.take();
        let mut scratch = std::mem::take(&mut self.ws_scratch);
        let web = self.settings.web.clone();
        let mut sink = Sink {
            core: self,
            drv,
            slot,
            dialect,
            // An echo answers about as many bytes as it read: one allocation.
            out: if dialect == Dialect::WsEcho {
                BytesMut::with_capacity(data.len().saturating_add(spilled.len()))
            } else {
                BytesMut::new()
            },
        };
        let fed = if spilled.is_empty() {
            let fed = state.feed(data, &web.ws, &mut scratch, &mut sink);
            if let Ok(Fed::More { consumed }) = fed {
                spilled.extend_from_slice(data.get(consumed..).unwrap_or_default());
            }
            fed
        } else {
            spilled.extend_from_slice(data);
            let fed = state.feed(&spilled, &web.ws, &mut scratch, &mut sink);
            if let Ok(Fed::More { consumed }) = fed {
                spilled.drain(..consumed.min(spilled.len()));
                if spilled.is_empty() {
                    spilled = Vec::new();
                }
            }
            fed
        };
        let out = sink.out;
        // What this read made the server say (pongs, echoes) leaves in one write.
        if !out.is_empty()
            && self
                .conns
                .get(slot)
                .is_some_and(|c| c.phase != Phase::Closing)
        {
            self.send(drv, slot, out.freeze());
        }
        // The scratch buffer keeps one frame's worth, up to a bound.
        scratch.clear();
        if scratch.capacity() > MAX_KEPT_SCRATCH {
            scratch = Vec::new();
        }
        self.ws_scratch = scratch;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.phase == Phase::Closing {
            // The sink closed it (a full worker queue, a refused message).
            return;
        }
        match fed {
            Ok(Fed::More { .. }) => {
                c.spill.put(spilled);
                let between = state == WsState::default();
                match c.ws.as_mut() {
                    Some(p) if between && p.inner.is_empty() => c.ws = None,
                    Some(p) => p.state = state,
                    None if between => {}
                    None => {
                        c.ws = Some(Box::new(WsPartial {
                            state,
                            inner: Vec::new(),
                        }))
                    }
                }
            }
            Ok(Fed::Closed { code, .. }) => {
                // The peer's Close was answered; nothing more is sent.
                c.dialect = Dialect::Raw;
                let reason = if matches!(code, close::NORMAL | close::GOING_AWAY | close::NO_STATUS)
                {
                    CloseReason::ClientBye
                } else {
                    CloseReason::PeerClosed
                };
                self.links.stats.web.count_ws_close(code, false);
                self.close_with(drv, slot, reason, None);
            }
            Err(e) => {
                let code = e.close_code();
                tracing::debug!(reactor = self.id, slot, error = %e, code, "closing WebSocket");
                self.ws_fail(drv, slot, code, &e.to_string());
            }
        }
    }

    /// Sends a Close with `code` and closes (a WebSocket protocol failure).
    fn ws_fail(&mut self, drv: &mut impl Driver, slot: usize, code: u16, why: &str) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.phase == Phase::Closing {
            return;
        }
        c.dialect = Dialect::Raw;
        self.links.stats.web.count_ws_close(code, true);
        self.send(drv, slot, close_frame(code, why));
        self.close_with(
            drv,
            slot,
            CloseReason::Error(ErrorCode::MalformedPayload),
            None,
        );
    }

    /// A whole JSON message: on to the worker as the binary frame it stands for, or
    /// answered with an `Error` put in `out` (then the endpoint closes with the returned code).
    fn on_json(
        &mut self,
        drv: &mut impl Driver,
        slot: usize,
        text: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), u16> {
        match json::json_to_frame(text, &self.settings.web.json) {
            Ok((header, payload)) => {
                if self.dispatch(drv, slot, header, &payload) {
                    Ok(())
                } else {
                    Err(close::TRY_AGAIN)
                }
            }
            Err(JsonError::UnknownKind { request_id, .. }) => {
                // As for a binary frame of a kind this build does not know: the session
                // answers (105, or 106 before Hello) and the connection stays open.
                let header = FrameHeader::new(NO_KIND, 0, request_id);
                if self.dispatch(drv, slot, header, &[]) {
                    Ok(())
                } else {
                    Err(close::TRY_AGAIN)
                }
            }
            Err(e) => {
                let code = e.code();
                tracing::debug!(reactor = self.id, slot, error = %e, "bad JSON message");
                let error =
                    frame::encode_status(Kind::Error.as_u8(), code.as_u16(), e.request_id());
                if let Some(message) = message_for(Dialect::WsJson, &error) {
                    out.extend_from_slice(&message);
                }
                Err(if code == ErrorCode::FrameTooLarge {
                    close::TOO_BIG
                } else {
                    close::INVALID_PAYLOAD
                })
            }
        }
    }
}

/// The kind byte a JSON message of an unknown `kind` travels under to the session:
/// no message has kind 0.
const NO_KIND: u8 = 0;

/// Largest WebSocket scratch buffer a reactor keeps between reads.
const MAX_KEPT_SCRATCH: usize = 256 * 1024;

/// Where a WebSocket endpoint's messages go: the connection's dialect decides.
struct Sink<'a, D: Driver> {
    core: &'a mut Core,
    drv: &'a mut D,
    slot: usize,
    dialect: Dialect,
    /// Frames the server answers with (pongs, the Close reply, echoes), sent in one
    /// write once the read is handled: bounded by what the read carried.
    out: BytesMut,
}

impl<D: Driver> Sink<'_, D> {
    /// The connection's partial message, taken out (put back with `keep`); `None`
    /// once it is closing.
    fn take_inner(&mut self) -> Option<Vec<u8>> {
        let c = self.core.conns.get_mut(self.slot)?;
        if c.phase == Phase::Closing {
            return None;
        }
        Some(
            c.ws.as_mut()
                .map(|p| std::mem::take(&mut p.inner))
                .unwrap_or_default(),
        )
    }

    /// Puts a partial message back (allocating the partial state only for one).
    fn keep(&mut self, inner: Vec<u8>) {
        let Some(c) = self.core.conns.get_mut(self.slot) else {
            return;
        };
        match c.ws.as_mut() {
            Some(p) => p.inner = inner,
            None if inner.is_empty() => {}
            None => {
                c.ws = Some(Box::new(WsPartial {
                    state: WsState::default(),
                    inner,
                }))
            }
        }
    }
}

impl<D: Driver> WsSink for Sink<'_, D> {
    fn data(&mut self, text: bool, chunk: &[u8], fin: bool) -> Result<(), u16> {
        let Some(mut inner) = self.take_inner() else {
            // Closing: whatever follows is discarded.
            return Err(close::NORMAL);
        };
        match self.dialect {
            Dialect::WsBin => {
                if text {
                    return Err(close::UNSUPPORTED);
                }
                // Binary frames carry binary Switchboard frames split anyhow.
                let max = self.core.settings.live.max_frame_bytes;
                let (core, drv, slot) = (&mut *self.core, &mut *self.drv, self.slot);
                let r = frame::deframe(&mut inner, chunk, max, |h: FrameHeader, p: &[u8]| {
                    core.dispatch(drv, slot, h, p)
                });
                if let Err(e) = r {
                    self.core
                        .close_with_error(self.drv, self.slot, ErrorCode::from(e), 0);
                    return Err(close::PROTOCOL_ERROR);
                }
                self.keep(inner);
                Ok(())
            }
            Dialect::WsJson => {
                if !text {
                    return Err(close::UNSUPPORTED);
                }
                if fin && inner.is_empty() {
                    return self.core.on_json(self.drv, self.slot, chunk, &mut self.out);
                }
                inner.extend_from_slice(chunk);
                if fin {
                    return self
                        .core
                        .on_json(self.drv, self.slot, &inner, &mut self.out);
                }
                self.keep(inner);
                Ok(())
            }
            Dialect::WsEcho => {
                let op = if text { Opcode::Text } else { Opcode::Binary };
                if fin && inner.is_empty() {
                    put_server_frame(&mut self.out, op, chunk);
                    return Ok(());
                }
                inner.extend_from_slice(chunk);
                if fin {
                    put_server_frame(&mut self.out, op, &inner);
                } else {
                    self.keep(inner);
                }
                Ok(())
            }
            _ => Err(close::PROTOCOL_ERROR),
        }
    }

    fn control(&mut self, frame: Bytes) {
        self.out.extend_from_slice(&frame);
    }
}
