//! The HTTP API in the reactor: a request under `/api/v1/` has its body read
//! (bounded, sans-IO: `crate::http::body`), is routed to the protocol message it
//! stands for (`crate::api::route`) and handed to the connection's session worker
//! as an [`Event::Api`]; the frame that answers it (same request id) becomes the
//! HTTP response. Connections are kept alive between requests (one request at a
//! time; what a client pipelines waits in the spill, bounded).

use bytes::Bytes;

use super::Core;
use crate::api::route::{Op, RouteError, Shape, is_attachment_path, is_upload, media_type, route};
use crate::api::{ApiCall, answer};
use crate::handoff::{CloseReason, Event};
use crate::http::body::BodyReader;
use crate::http::head::{Method, Request};
use crate::http::response::Response;
use crate::protocol::ErrorCode;
use crate::protocol::Msg;
use crate::protocol::messages;
use crate::reactor::api_desk::{Export, Reading, Waiting};
use crate::reactor::conn::Dialect;
use crate::reactor::sys::Driver;

/// Bytes of an upload's body that start its request deadline again.
const UPLOAD_PROGRESS: usize = 64 * 1024;

impl Core {
    /// The head of an API request arrived, with `rest` (what followed it so far).
    pub(super) fn api_head(
        &mut self,
        drv: &mut impl Driver,
        slot: usize,
        req: Request,
        rest: &[u8],
    ) {
        let cors = self.attachment_cors(&req);
        if req.method == Method::Options && is_attachment_path(&req.path) {
            // A CORS preflight (the widget's upload, or a download with a token).
            self.links.stats.web.count_api(1);
            let r = match cors {
                Some(o) => Response::new(204, "text/plain", &b""[..])
                    .header("Access-Control-Allow-Origin", o)
                    .header("Access-Control-Allow-Methods", "GET, POST")
                    .header(
                        "Access-Control-Allow-Headers",
                        "authorization, content-type, idempotency-key",
                    )
                    .header("Access-Control-Max-Age", "600")
                    .header("Vary", "Origin"),
                None => answer::error(403, ErrorCode::Forbidden, "origin not allowed", 0),
            };
            return self.api_respond(drv, slot, r, false, false);
        }
        if let Some(o) = cors {
            self.api.cors.insert(slot, o);
        }
        let upload = is_upload(&req);
        let max = if upload {
            // Checked before any of the body is read: a refused type costs no upload.
            let media = media_type(&req);
            if !self.settings.web.api.attachment_types.contains(&media) {
                let why = format!(
                    "attachments of media type {media:?} are not accepted (api.attachment_types)"
                );
                self.links.stats.web.count_attachment_refused(1);
                return self.api_refuse(drv, slot, 415, &why, false);
            }
            let max_uploads = self.settings.web.api.max_uploads;
            if self.api.uploads.len() >= max_uploads {
                tracing::warn!(
                    reactor = self.id,
                    max = max_uploads,
                    "uploads in flight at api.max_uploads_in_flight; answering 503"
                );
                self.links.stats.web.count_attachment_refused(5);
                let why = "too many uploads in flight";
                return self.api_refuse(drv, slot, 503, why, false);
            }
            self.api.uploads.insert(slot, ());
            self.settings.web.api.max_attachment
        } else {
            self.settings.web.api.max_body
        };
        let mut body = match BodyReader::new(&req, max) {
            Ok(b) => b,
            Err(e) => {
                self.count_upload_refused(upload, e.status());
                return self.api_refuse(drv, slot, e.status(), &e.to_string(), false);
            }
        };
        let fed = match body.feed(rest) {
            Ok(fed) => fed,
            Err(e) => {
                self.count_upload_refused(upload, e.status());
                return self.api_refuse(drv, slot, e.status(), &e.to_string(), false);
            }
        };
        if !fed.done {
            if req.expect_continue && rest.is_empty() {
                // The head passed every check that needs no body: ask for it (RFC
                // 9110 10.1.1) rather than have the client wait for a timeout.
                self.send(
                    drv,
                    slot,
                    Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"),
                );
            }
            // The body is still coming: bounded by `api.max_body_bytes`, in time by
            // the request deadline (408).
            if let Some(c) = self.conns.get_mut(slot) {
                c.dialect = Dialect::HttpBody;
            }
            self.api
                .reading
                .insert(slot, Box::new(Reading { req, body }));
            return;
        }
        let leftover = rest.get(fed.consumed..).unwrap_or_default();
        self.api_call(drv, slot, req, body.into_body(), leftover);
    }

    /// The `Origin` to name in CORS headers: an attachment route asked for by a page
    /// of an origin `web.allowed_origins` or a `[[web.sites]]` entry allows (`None`
    /// for anything else, which gets no CORS headers).
    fn attachment_cors(&self, req: &Request) -> Option<String> {
        let origin = req.origin.as_deref()?;
        (is_attachment_path(&req.path)
            && self
                .settings
                .web
                .origins
                .allows(Some(origin), req.host.as_deref()))
        .then(|| origin.to_owned())
    }

    /// Counts an upload the reactor refused with `status` (nothing for other requests).
    fn count_upload_refused(&self, upload: bool, status: u16) {
        if upload {
            let reason = if status == 413 { 0 } else { 2 };
            self.links.stats.web.count_attachment_refused(reason);
        }
    }

    /// More of a request body.
    pub(super) fn api_body(&mut self, drv: &mut impl Driver, slot: usize, data: &[u8]) {
        let Some(mut reading) = self.api.reading.remove(&slot) else {
            return;
        };
        let before = reading.body.received();
        let fed = match reading.body.feed(data) {
            Ok(fed) => fed,
            Err(e) => {
                self.count_upload_refused(is_upload(&reading.req), e.status());
                return self.api_refuse(drv, slot, e.status(), &e.to_string(), false);
            }
        };
        if !fed.done {
            // An upload may take longer than the request deadline: each
            // `UPLOAD_PROGRESS` bytes received start it again (so it needs at least
            // that much per deadline, and `api.max_uploads_in_flight` bounds how many
            // trickle at once).
            let after = reading.body.received();
            if before / UPLOAD_PROGRESS != after / UPLOAD_PROGRESS && is_upload(&reading.req) {
                let now = self.now;
                if let Some(c) = self.conns.get_mut(slot) {
                    c.mark = now;
                }
            }
            self.api.reading.insert(slot, reading);
            return;
        }
        let Reading { req, body } = *reading;
        let leftover = data.get(fed.consumed..).unwrap_or_default();
        self.api_call(drv, slot, req, body.into_body(), leftover);
    }

    /// Input while a request waits for its answer: the client's next request(s),
    /// kept until the answer is out (at most a head and a body's worth).
    pub(super) fn api_pipelined(&mut self, drv: &mut impl Driver, slot: usize, data: &[u8]) {
        let bound = self
            .settings
            .web
            .head
            .max_bytes
            .saturating_add(self.settings.web.api.max_body);
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.spill.len().saturating_add(data.len()) > bound {
            tracing::debug!(
                reactor = self.id,
                slot,
                "API client pipelined past its bound"
            );
            self.api.forget(slot);
            let why = "more pipelined input than one request may hold";
            return self.api_refuse(drv, slot, 400, why, false);
        }
        c.spill.extend_from_slice(data);
    }

    /// A whole request: routed and handed to the worker, or refused here.
    fn api_call(
        &mut self,
        drv: &mut impl Driver,
        slot: usize,
        req: Request,
        body: Vec<u8>,
        leftover: &[u8],
    ) {
        let keep_alive = !req.connection_close;
        let head_only = req.method == Method::Head;
        if let Some(c) = self.conns.get_mut(slot) {
            c.spill.clear();
            c.spill.extend_from_slice(leftover);
        }
        let call = match route(&req, &body) {
            Ok(mut call) => {
                if let Op::Upload { bytes, .. } = &mut call.op {
                    // Moved, not copied: an upload may be `api.max_attachment_bytes`.
                    *bytes = Bytes::from(body);
                }
                call
            }
            Err(e) => {
                self.count_upload_refused(is_upload(&req), e.status());
                let mut r = answer::error(
                    e.status(),
                    answer::code_for_status(e.status()),
                    &e.to_string(),
                    0,
                );
                if let RouteError::Method { allow } = e {
                    r = r.header("Allow", allow);
                }
                self.links.stats.web.count_api(1);
                return self.api_respond(drv, slot, r, head_only, keep_alive);
            }
        };
        if self.api.in_flight() >= self.settings.web.api.max_in_flight {
            tracing::warn!(
                reactor = self.id,
                max = self.settings.web.api.max_in_flight,
                "API requests in flight at api.max_in_flight; answering 503"
            );
            self.links.stats.web.count_api(2);
            let r = answer::error(
                503,
                ErrorCode::ServerBusy,
                "too many API requests in flight",
                0,
            );
            return self.api_respond(drv, slot, r, head_only, keep_alive);
        }
        let now = self.now;
        let Some(generation) = self.conns.get(slot).map(|c| c.generation) else {
            return;
        };
        let id = self.conn_id(slot, generation);
        if let Some(c) = self.conns.get_mut(slot) {
            c.dialect = Dialect::HttpApi;
            // The service has the request deadline to answer (503 past it).
            c.mark = now;
        }
        let rid = self.api.next_rid();
        self.api.waiting.insert(
            slot,
            Waiting {
                rid,
                head_only,
                keep_alive,
                shape: call.shape,
            },
        );
        if let (Shape::Export, Some(Msg::History(h))) = (call.shape, call.msg()) {
            let export = Export {
                authorization: req.authorization.clone(),
                conversation: h.conversation,
                pages: Vec::new(),
                bytes: 0,
            };
            self.api.exports.insert(slot, Box::new(export));
        }
        let event = Event::Api {
            conn: id,
            call: Box::new(ApiCall {
                rid,
                authorization: req.authorization,
                call,
            }),
        };
        self.links.stats.web.count_api(0);
        // A full worker queue closes the connection with a 503 (`Core::hand_off`).
        self.tell_worker(id, event);
    }

    /// Takes a frame for a connection whose API request waits (true), which then
    /// takes its next pipelined request; false for any other connection.
    pub(super) fn api_takes(&mut self, drv: &mut impl Driver, slot: usize, frame: &Bytes) -> bool {
        if self
            .conns
            .get(slot)
            .is_none_or(|c| c.dialect != Dialect::HttpApi)
        {
            return false;
        }
        self.api_reply(drv, slot, frame);
        self.api_resume(drv);
        true
    }

    /// A frame for a connection whose API request waits: the answer when it carries
    /// the request's id (anything else is not for an API client and is dropped).
    fn api_reply(&mut self, drv: &mut impl Driver, slot: usize, frame: &Bytes) {
        let Some(rid) = frame
            .first_chunk::<{ crate::frame::HEADER_LEN }>()
            .and_then(|raw| crate::frame::FrameHeader::parse(raw, u32::MAX).ok())
            .map(|h| h.request_id)
        else {
            return;
        };
        let Some(w) = self.api.take_waiting(slot, rid) else {
            return;
        };
        let response = match w.shape {
            Shape::Fields => answer::from_frame(frame),
            Shape::Upload => {
                let r = answer::from_frame(frame);
                match r.status {
                    201 => {}
                    500.. => self.links.stats.web.count_attachment_refused(4),
                    _ => self.links.stats.web.count_attachment_refused(3),
                }
                r
            }
            Shape::Export => match self.api_export_page(slot, w, frame) {
                Some(r) => r,
                // The next page was asked for: still waiting.
                None => return,
            },
        };
        self.api.exports.remove(&slot);
        self.api_respond(drv, slot, response, w.head_only, w.keep_alive);
    }

    /// One `HistoryPage` of an export: kept, and the page before it asked for
    /// (`None`: still waiting), or the whole export (or its error) as the answer.
    fn api_export_page(&mut self, slot: usize, w: Waiting, frame: &Bytes) -> Option<Response> {
        let page = answer::from_frame(frame);
        if page.status != 200 {
            return Some(page);
        }
        let max = self.settings.web.api.max_export;
        let export = self.api.exports.get_mut(&slot)?;
        let (lines, first_seq, more) = match answer::entry_lines(&page.body) {
            Ok(x) => x,
            Err(why) => {
                tracing::error!(why, "an export page could not be read");
                return Some(answer::error(500, ErrorCode::Internal, why, 0));
            }
        };
        export.bytes = export.bytes.saturating_add(lines.len());
        if export.bytes > max {
            let why = format!(
                "the transcript is larger than api.max_export_bytes ({max}); page through \
                 /messages instead"
            );
            return Some(answer::error(
                413,
                ErrorCode::FrameTooLarge,
                &why,
                export.conversation,
            ));
        }
        export.pages.push(lines);
        if !(more && first_seq > 1) {
            // Pages came newest first: the export is oldest first.
            let mut body = Vec::with_capacity(export.bytes);
            for p in export.pages.iter().rev() {
                body.extend_from_slice(p);
            }
            return Some(Response::new(200, answer::JSONL, body));
        }
        let call = crate::api::route::Call {
            scope: crate::api::Scope::ConversationsRead,
            acting: crate::api::route::Acting::Admin,
            fresh_id: false,
            shape: Shape::Export,
            op: Op::Protocol(Msg::from(messages::History {
                limit: u16::MAX,
                conversation: export.conversation,
                before_seq: first_seq,
            })),
        };
        let authorization = export.authorization.clone();
        let now = self.now;
        let c = self.conns.get_mut(slot)?;
        // Each page has the whole request deadline.
        c.mark = now;
        let generation = c.generation;
        let id = self.conn_id(slot, generation);
        self.api.waiting.insert(slot, w);
        let event = Event::Api {
            conn: id,
            call: Box::new(ApiCall {
                rid: w.rid,
                authorization,
                call,
            }),
        };
        // A full worker queue closes the connection with a 503 (`Core::hand_off`).
        self.tell_worker(id, event);
        None
    }

    /// A JSON answer the service wrote itself (not a protocol frame) for request
    /// `rid`.
    pub(super) fn api_answer(&mut self, drv: &mut impl Driver, slot: usize, rid: u32, body: Bytes) {
        let Some(w) = self.api.take_waiting(slot, rid) else {
            return;
        };
        let response = Response::new(200, answer::JSON, body);
        self.api_respond(drv, slot, response, w.head_only, w.keep_alive);
    }

    /// A file the service read for request `rid` (`GET .../attachments/{id}`).
    pub(super) fn api_file(
        &mut self,
        drv: &mut impl Driver,
        slot: usize,
        rid: u32,
        file: crate::files::FileAnswer,
    ) {
        let Some(w) = self.api.take_waiting(slot, rid) else {
            return;
        };
        let response = Response::new(200, "", file.body)
            .header("Content-Type", file.media_type)
            .header("Content-Disposition", file.disposition)
            .header("X-Content-Type-Options", "nosniff")
            .header("Cache-Control", "private, no-store");
        self.api_respond(drv, slot, response, w.head_only, w.keep_alive);
    }

    /// The answer to an API request for a connection closed for `reason` while it
    /// waited (or read its body).
    pub(super) fn api_farewell(&mut self, slot: usize, reason: CloseReason) -> Option<Bytes> {
        let waited = self.api.waiting.remove(&slot).is_some();
        self.api.reading.remove(&slot);
        self.api.uploads.remove(&slot);
        let (status, code, why) = match reason {
            CloseReason::Shutdown => (503, ErrorCode::ShuttingDown, "the server is shutting down"),
            CloseReason::Error(ErrorCode::HandshakeTimeout) if waited => (
                503,
                ErrorCode::ServerBusy,
                "the service did not answer in time",
            ),
            CloseReason::Error(ErrorCode::HandshakeTimeout) => (
                408,
                ErrorCode::HandshakeTimeout,
                "the request took too long to arrive",
            ),
            CloseReason::Error(code) => (answer::http_status(code), code, code.name()),
            _ => return None,
        };
        self.links.stats.web.count_response(status);
        Some(answer::error(status, code, why, 0).to_bytes(false))
    }

    /// Refuses a request before it reaches the service, and closes.
    fn api_refuse(
        &mut self,
        drv: &mut impl Driver,
        slot: usize,
        status: u16,
        why: &str,
        keep_alive: bool,
    ) {
        self.links.stats.web.count_api(1);
        let r = answer::error(status, answer::code_for_status(status), why, 0);
        self.api_respond(drv, slot, r, false, keep_alive);
    }

    /// Writes an API answer; then the connection takes its next request (what it
    /// pipelined meanwhile first), or closes.
    fn api_respond(
        &mut self,
        drv: &mut impl Driver,
        slot: usize,
        response: Response,
        head_only: bool,
        keep_alive: bool,
    ) {
        self.links.stats.web.count_response(response.status);
        // Whatever it was, the connection's request is over.
        self.api.uploads.remove(&slot);
        let response = match self.api.cors.remove(&slot) {
            Some(o) => response
                .header("Access-Control-Allow-Origin", o)
                .header("Vary", "Origin"),
            None => response,
        };
        // An answer (a file, an export) may be far larger than a connection's output
        // bound: it is accepted whole, with the usual bound on top of it, so a
        // client that reads is never cut in the middle of one (its memory is spent
        // already; a client that pipelines more while reading nothing is cut at the
        // next one).
        let usual = self.settings.live.max_pending_bytes;
        let bound = |len: usize| u32::try_from(len).unwrap_or(u32::MAX).saturating_add(usual);
        if !keep_alive {
            self.api.forget(slot);
            let bytes = response.to_bytes(head_only);
            let bound = bound(bytes.len());
            if let Some(c) = self.conns.get_mut(slot) {
                // The answer is the last thing sent: no farewell after it.
                c.dialect = Dialect::Raw;
                c.allow(bound.saturating_sub(usual));
            }
            self.write_or_queue(drv, slot, bytes, bound);
            return self.close_with(drv, slot, CloseReason::Server, None);
        }
        let now = self.now;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        c.dialect = Dialect::HttpHead;
        // A kept connection has the request deadline for its next request.
        c.mark = now;
        let pipelined = !c.spill.is_empty();
        let bytes = response.to_bytes_keep_alive(head_only, true);
        let bound = bound(bytes.len());
        c.allow(bound.saturating_sub(usual));
        self.write_or_queue(drv, slot, bytes, bound);
        if pipelined {
            // Taken up by `api_resume`, in a loop: handled from here, a spill of many
            // small requests would deepen the stack once per request.
            self.api.resume.push(slot);
        }
    }

    /// Handles what kept connections pipelined while their last request waited.
    pub(super) fn api_resume(&mut self, drv: &mut impl Driver) {
        while let Some(slot) = self.api.resume.pop() {
            let Some(c) = self.conns.get_mut(slot) else {
                continue;
            };
            if c.dialect != Dialect::HttpHead {
                continue;
            }
            let next = c.spill.take();
            if !next.is_empty() {
                self.on_client_bytes(drv, slot, &next);
            }
        }
    }
}
