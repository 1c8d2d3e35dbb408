//! The small HTTP/1.1 responses the gateway writes itself (error pages, the health
//! page, static routes, API answers). A response closes the connection unless it is
//! written with [`Response::to_bytes_keep_alive`] (the API keeps connections open).

use bytes::{BufMut, Bytes, BytesMut};

/// `text/plain` in UTF-8, the type of error pages.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// A response to write, then close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers, written in order after the standard ones.
    pub headers: Vec<(&'static str, String)>,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// A response with a body and no extra header.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            content_type,
            body: body.into(),
        }
    }

    /// A short text/plain error page whose body names the status and `why`.
    pub fn error(status: u16, why: &str) -> Self {
        Self::new(
            status,
            TEXT_PLAIN,
            format!("{status} {}: {why}\n", reason(status)),
        )
    }

    /// Adds a header (written after the standard ones).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The response's bytes: status line, headers (`Content-Type`, `Content-Length`,
    /// `Connection: close`, the extra headers, `Cache-Control: no-store` unless set),
    /// blank line, body (omitted when `head_only`, for `HEAD`; `Content-Length` still
    /// says what a `GET` would get). Control characters in header values are written
    /// as spaces, so no value can start a header of its own.
    pub fn to_bytes(&self, head_only: bool) -> Bytes {
        self.to_bytes_keep_alive(head_only, false)
    }

    /// [`Response::to_bytes`], with `Connection: keep-alive` instead of `close` when
    /// `keep_alive`.
    pub fn to_bytes_keep_alive(&self, head_only: bool, keep_alive: bool) -> Bytes {
        let extra: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len().saturating_add(v.len()).saturating_add(4))
            .sum();
        let body_len = if head_only { 0 } else { self.body.len() };
        let mut out = BytesMut::with_capacity(
            128usize
                .saturating_add(self.content_type.len())
                .saturating_add(extra)
                .saturating_add(body_len),
        );
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(self.status.to_string().as_bytes());
        out.put_u8(b' ');
        out.put_slice(reason(self.status).as_bytes());
        out.put_slice(b"\r\n");
        // 1xx, 204 and 304 have no body, so no body headers either (RFC 9110 8.6).
        let bodiless = self.status < 200 || self.status == 204 || self.status == 304;
        if !bodiless {
            // Empty: the type is not a constant and comes among the extra headers.
            if !self.content_type.is_empty() {
                put_header(&mut out, "Content-Type", self.content_type);
            }
            put_header(&mut out, "Content-Length", &self.body.len().to_string());
        }
        put_header(
            &mut out,
            "Connection",
            if keep_alive { "keep-alive" } else { "close" },
        );
        for (name, value) in &self.headers {
            put_header(&mut out, name, value);
        }
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
        {
            put_header(&mut out, "Cache-Control", "no-store");
        }
        out.put_slice(b"\r\n");
        if !head_only && !bodiless {
            out.put_slice(&self.body);
        }
        out.freeze()
    }
}

fn put_header(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    for b in value.bytes() {
        out.put_u8(if b.is_ascii_control() && b != b'\t' {
            b' '
        } else {
            b
        });
    }
    out.put_slice(b"\r\n");
}

/// The reason phrase of a status code ("" for one this server never sends).
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        201 => "Created",
        202 => "Accepted",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Response, head_only: bool) -> String {
        String::from_utf8(r.to_bytes(head_only).to_vec()).unwrap()
    }

    #[test]
    fn error_page() {
        let r = Response::error(404, "no such route");
        assert_eq!(
            text(&r, false),
            "HTTP/1.1 404 Not Found\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 29\r\n\
             Connection: close\r\n\
             Cache-Control: no-store\r\n\r\n\
             404 Not Found: no such route\n"
        );
        // HEAD: same headers, no body.
        let head = text(&r, true);
        assert!(head.ends_with("Cache-Control: no-store\r\n\r\n"));
        assert!(head.contains("Content-Length: 29\r\n"));
    }

    #[test]
    fn extra_headers_and_cache_control() {
        let r = Response::new(200, "text/html", "<p>hi</p>")
            .header("Cache-Control", "max-age=60")
            .header("X-Evil", "a\r\nSet-Cookie: x=1");
        let t = text(&r, false);
        assert!(t.contains("Cache-Control: max-age=60\r\n"));
        assert!(!t.contains("no-store"));
        assert!(t.contains("X-Evil: a  Set-Cookie: x=1\r\n"), "{t}");
        assert!(t.ends_with("\r\n\r\n<p>hi</p>"));
        let r = Response::error(426, "version").header("Sec-WebSocket-Version", "13");
        assert!(text(&r, false).contains("\r\nSec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn bodiless_statuses() {
        let t = text(&Response::new(204, TEXT_PLAIN, "x"), false);
        assert_eq!(
            t,
            "HTTP/1.1 204 No Content\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
        );
    }

    #[test]
    fn every_status_we_send_has_a_reason() {
        for s in [400, 403, 404, 405, 408, 426, 431, 500, 501, 503, 505] {
            assert!(!reason(s).is_empty(), "{s}");
        }
        assert_eq!(reason(299), "");
    }
}
