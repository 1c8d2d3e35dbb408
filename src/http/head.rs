//! A bounded, sans-IO parser for an HTTP/1.x request head (request line and headers).
//!
//! [`parse`] is called with everything received so far; it answers "need more", a
//! parsed [`Request`] with the head's length, or a typed [`HeadError`] that names the
//! status to answer with. A head that has not ended within `max_bytes` is refused
//! without waiting for the rest, so a client cannot make the gateway buffer more than
//! `max_bytes` for it. `httparse` does the tokenising; this module keeps only what the
//! gateway uses, and refuses what is ambiguous (two `Host`s, conflicting lengths,
//! `Transfer-Encoding` with `Content-Length`): the request-smuggling classics.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

/// Hard ceiling on `max_headers`, whatever the config says: the parser's header table
/// lives on the stack.
pub const MAX_HEADERS_LIMIT: usize = 128;

/// Bounds of one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Most bytes of a head, request line to the blank line included (431 past it).
    pub max_bytes: usize,
    /// Most header fields (431 past it); at most [`MAX_HEADERS_LIMIT`].
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_bytes: 8192,
            max_headers: 32,
        }
    }
}

/// The request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// `PATCH`
    Patch,
    /// Any other token (methods are case-sensitive: `get` is `Other`).
    Other,
}

impl Method {
    fn from_token(token: &str) -> Self {
        match token {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "OPTIONS" => Self::Options,
            "PATCH" => Self::Patch,
            _ => Self::Other,
        }
    }
}

/// An owned, parsed request head: only what the gateway uses. Its `Debug` never
/// shows the `Authorization` value.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The request target's path, without the query (`/` or `*` at least).
    pub path: String,
    /// What followed the first `?` of the target, if there was one.
    pub query: Option<String>,
    /// The `x` of `HTTP/1.x` (0 or 1).
    pub minor_version: u8,
    /// The `Host` header, trimmed.
    pub host: Option<String>,
    /// The `Origin` header, trimmed.
    pub origin: Option<String>,
    /// An `Upgrade` header lists the token `websocket` (case-insensitive).
    pub upgrade_websocket: bool,
    /// A `Connection` header lists the token `upgrade` (case-insensitive).
    pub connection_upgrade: bool,
    /// The client does not keep the connection: `Connection: close`, or HTTP/1.0
    /// without `Connection: keep-alive`.
    pub connection_close: bool,
    /// `Sec-WebSocket-Key`, trimmed.
    pub ws_key: Option<String>,
    /// `Sec-WebSocket-Version`, trimmed.
    pub ws_version: Option<String>,
    /// `Sec-WebSocket-Protocol` offers in the client's order: every such header,
    /// comma-split, trimmed, empty elements dropped.
    pub ws_protocols: Vec<String>,
    /// `Content-Length` (every copy agreeing).
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// The `Content-Type` header, trimmed.
    pub content_type: Option<String>,
    /// The `Authorization` header, trimmed (a credential: never logged).
    pub authorization: Option<String>,
    /// The `Idempotency-Key` header, trimmed.
    pub idempotency_key: Option<String>,
    /// `Expect: 100-continue` (HTTP/1.1): the client waits for `100 Continue` before
    /// it sends the body (curl does for bodies over 1 MiB).
    pub expect_continue: bool,
    /// `Accept-Encoding` accepts `gzip` (listed, or `*`, with a non-zero `q`).
    pub accept_gzip: bool,
    /// `If-None-Match`, trimmed (every such header, comma-joined).
    pub if_none_match: Option<String>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("minor_version", &self.minor_version)
            .field("host", &self.host)
            .field("origin", &self.origin)
            .field("upgrade_websocket", &self.upgrade_websocket)
            .field("connection_upgrade", &self.connection_upgrade)
            .field("connection_close", &self.connection_close)
            .field("ws_key", &self.ws_key)
            .field("ws_version", &self.ws_version)
            .field("ws_protocols", &self.ws_protocols)
            .field("content_length", &self.content_length)
            .field("chunked", &self.chunked)
            .field("content_type", &self.content_type)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("idempotency_key", &self.idempotency_key)
            .field("expect_continue", &self.expect_continue)
            .field("accept_gzip", &self.accept_gzip)
            .field("if_none_match", &self.if_none_match)
            .finish()
    }
}

/// Why a request head was refused; [`HeadError::status`] is the status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The head did not end within `max_bytes` (431).
    #[error("request head longer than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// More header fields than `max_headers` (431).
    #[error("more than {max} header fields")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// Not a well-formed HTTP/1.x head (400); says what was wrong.
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    /// The request line's version is not `HTTP/1.0` or `HTTP/1.1` (505).
    #[error("HTTP version not supported")]
    BadVersion,
    /// An HTTP/1.1 request without a `Host` header (400, RFC 9112 3.2).
    #[error("HTTP/1.1 request without Host")]
    MissingHost,
    /// A header that must appear at most once appeared twice (400).
    #[error("duplicate {0} header")]
    Duplicate(&'static str),
    /// A `Content-Length` that is not a number, or copies that disagree (400).
    #[error("invalid or conflicting Content-Length")]
    BadContentLength,
    /// Both `Transfer-Encoding` and `Content-Length` (400, RFC 9112 6.1).
    #[error("both Transfer-Encoding and Content-Length")]
    LengthAndEncoding,
    /// A transfer coding other than a lone `chunked` (501), or any on HTTP/1.0 (400).
    #[error("unsupported Transfer-Encoding")]
    UnsupportedEncoding,
}

impl HeadError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } | Self::TooManyHeaders { .. } => 431,
            Self::BadVersion => 505,
            Self::UnsupportedEncoding => 501,
            Self::Malformed(_)
            | Self::MissingHost
            | Self::Duplicate(_)
            | Self::BadContentLength
            | Self::LengthAndEncoding => 400,
        }
    }
}

/// Parses the request head at the start of `buf`.
///
/// `Ok(None)`: incomplete and still under `max_bytes`. `Ok(Some((req, head_len)))`:
/// `buf[..head_len]` was the head; what follows is a body or, after an upgrade, the
/// client's first WebSocket frames (clients may send them before reading the 101), to
/// be fed to the next layer. A head over `max_bytes` without its end is
/// [`HeadError::TooLarge`] at once.
pub fn parse(buf: &[u8], limits: &HeadLimits) -> Result<Option<(Request, usize)>, HeadError> {
    let window = buf.get(..limits.max_bytes).unwrap_or(buf);
    let max_headers = limits.max_headers.min(MAX_HEADERS_LIMIT);
    let mut table = [httparse::EMPTY_HEADER; MAX_HEADERS_LIMIT];
    let headers = table.get_mut(..max_headers).unwrap_or_default();
    let mut req = httparse::Request::new(headers);
    let status = req.parse(window).map_err(|e| match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders { max: max_headers },
        httparse::Error::Version => HeadError::BadVersion,
        httparse::Error::HeaderName => HeadError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HeadError::Malformed("invalid header value"),
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Token => HeadError::Malformed("invalid token in request line"),
        httparse::Error::Status => HeadError::Malformed("invalid status"),
    })?;
    let head_len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial if window.len() >= limits.max_bytes => {
            return Err(HeadError::TooLarge {
                max: limits.max_bytes,
            });
        }
        httparse::Status::Partial => return Ok(None),
    };
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    let request = build(method, target, minor_version, req.headers)?;
    Ok(Some((request, head_len)))
}

/// Turns httparse's borrowed view into the owned [`Request`], checking the headers.
fn build(
    method: &str,
    target: &str,
    minor_version: u8,
    headers: &[httparse::Header<'_>],
) -> Result<Request, HeadError> {
    let method = Method::from_token(method);
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    // Origin-form, or `*` for OPTIONS; absolute-form (proxies) and authority-form
    // (CONNECT) are not for this server.
    let path_ok = path.starts_with('/') || (path == "*" && method == Method::Options);
    if !path_ok {
        return Err(HeadError::Malformed(
            "request target is not an absolute path",
        ));
    }
    let mut r = Request {
        method,
        path: path.to_owned(),
        query,
        minor_version,
        host: None,
        origin: None,
        upgrade_websocket: false,
        connection_upgrade: false,
        connection_close: false,
        ws_key: None,
        ws_version: None,
        ws_protocols: Vec::new(),
        content_length: None,
        chunked: false,
        content_type: None,
        authorization: None,
        idempotency_key: None,
        expect_continue: false,
        accept_gzip: false,
        if_none_match: None,
    };
    let mut keep_alive = false;
    let mut transfer_encoding = false;
    for h in headers {
        let name = h.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("host") {
            set_once(&mut r.host, h.value, "Host")?;
        } else if is("origin") {
            set_once(&mut r.origin, h.value, "Origin")?;
        } else if is("content-type") {
            set_once(&mut r.content_type, h.value, "Content-Type")?;
        } else if is("authorization") {
            set_once(&mut r.authorization, h.value, "Authorization")?;
        } else if is("idempotency-key") {
            set_once(&mut r.idempotency_key, h.value, "Idempotency-Key")?;
        } else if is("sec-websocket-key") {
            set_once(&mut r.ws_key, h.value, "Sec-WebSocket-Key")?;
        } else if is("sec-websocket-version") {
            set_once(&mut r.ws_version, h.value, "Sec-WebSocket-Version")?;
        } else if is("sec-websocket-protocol") {
            for offer in tokens(text(h.value)?) {
                r.ws_protocols.push(offer.to_owned());
            }
        } else if is("upgrade") {
            // `Upgrade: websocket, h2c` or `Upgrade: WebSocket/13`: the protocol name.
            r.upgrade_websocket |= tokens(text(h.value)?).any(|t| {
                let name = t.split_once('/').map_or(t, |(n, _)| n);
                name.eq_ignore_ascii_case("websocket")
            });
        } else if is("connection") {
            for t in tokens(text(h.value)?) {
                r.connection_upgrade |= t.eq_ignore_ascii_case("upgrade");
                r.connection_close |= t.eq_ignore_ascii_case("close");
                keep_alive |= t.eq_ignore_ascii_case("keep-alive");
            }
        } else if is("content-length") {
            for t in text(h.value)?.split(',') {
                let n = parse_length(t.trim())?;
                if r.content_length.is_some_and(|m| m != n) {
                    return Err(HeadError::BadContentLength);
                }
                r.content_length = Some(n);
            }
        } else if is("accept-encoding") {
            r.accept_gzip |= tokens(text(h.value)?).any(accepts_gzip);
        } else if is("if-none-match") {
            let v = text(h.value)?.trim();
            r.if_none_match = Some(match r.if_none_match.take() {
                Some(before) => format!("{before}, {v}"),
                None => v.to_owned(),
            });
        } else if is("expect") {
            r.expect_continue =
                minor_version >= 1 && text(h.value)?.trim().eq_ignore_ascii_case("100-continue");
        } else if is("transfer-encoding") {
            for t in tokens(text(h.value)?) {
                // Only a single `chunked` is understood; anything else (gzip, a
                // second chunked) is a body this server cannot read.
                if !t.eq_ignore_ascii_case("chunked") || r.chunked {
                    return Err(HeadError::UnsupportedEncoding);
                }
                r.chunked = true;
            }
            transfer_encoding = true;
        }
    }
    if transfer_encoding {
        if minor_version == 0 {
            return Err(HeadError::UnsupportedEncoding);
        }
        if !r.chunked {
            return Err(HeadError::UnsupportedEncoding);
        }
        if r.content_length.is_some() {
            return Err(HeadError::LengthAndEncoding);
        }
    }
    if minor_version == 0 && !keep_alive {
        r.connection_close = true;
    }
    if minor_version >= 1 && r.host.is_none() {
        return Err(HeadError::MissingHost);
    }
    Ok(r)
}

/// A header value the gateway reads must be UTF-8 (in practice ASCII).
fn text(value: &[u8]) -> Result<&str, HeadError> {
    std::str::from_utf8(value).map_err(|_| HeadError::Malformed("header value is not UTF-8"))
}

/// The elements of a comma-separated list, trimmed, empty ones dropped.
fn tokens(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// Whether one `Accept-Encoding` element (`gzip;q=0.5`, `*`) accepts gzip.
fn accepts_gzip(element: &str) -> bool {
    let mut parts = element.split(';');
    let coding = parts.next().unwrap_or("").trim();
    if !(coding.eq_ignore_ascii_case("gzip")
        || coding.eq_ignore_ascii_case("x-gzip")
        || coding == "*")
    {
        return false;
    }
    // `q=0` (or 0.0, 0.000) refuses it; a malformed q counts as accepting.
    !parts.any(|p| {
        p.trim()
            .strip_prefix("q=")
            .or_else(|| p.trim().strip_prefix("Q="))
            .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
    })
}

fn set_once(slot: &mut Option<String>, value: &[u8], name: &'static str) -> Result<(), HeadError> {
    if slot.is_some() {
        return Err(HeadError::Duplicate(name));
    }
    *slot = Some(text(value)?.trim().to_owned());
    Ok(())
}

/// `1*DIGIT`: no sign, no spaces inside, no overflow.
fn parse_length(s: &str) -> Result<u64, HeadError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeadError::BadContentLength);
    }
    s.parse().map_err(|_| HeadError::BadContentLength)
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "tests compute small offsets"
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(raw: &str) -> (Request, usize) {
        parse(raw.as_bytes(), &HeadLimits::default())
            .expect("parses")
            .expect("complete")
    }

    fn err(raw: &str) -> HeadError {
        parse(raw.as_bytes(), &HeadLimits::default()).expect_err("refused")
    }

    const UPGRADE: &str = "GET /ws?site=a&x=1 HTTP/1.1\r\n\
        Host: chat.example.com:8080\r\n\
        Upgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: https://chat.example.com\r\n\
        Sec-WebSocket-Protocol: chat, switchboard.v1.json\r\n\
        sec-websocket-protocol:  switchboard.v1.bin ,\r\n\
        Sec-WebSocket-Version: 13\r\n\r\nBODY";

    #[test]
    fn api_headers_are_kept_and_the_credential_never_printed() {
        let (r, _) = ok("POST /api/v1/notices HTTP/1.1\r\nHost: h\r\n\
             Authorization: Bearer sbk_crm_s3cret\r\nIdempotency-Key:  k-1 \r\n\r\n");
        assert_eq!(r.authorization.as_deref(), Some("Bearer sbk_crm_s3cret"));
        assert_eq!(r.idempotency_key.as_deref(), Some("k-1"));
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: a\r\nauthorization: b\r\n\r\n"),
            HeadError::Duplicate("Authorization")
        );
    }

    #[test]
    fn parses_a_websocket_upgrade() {
        let (r, n) = ok(UPGRADE);
        assert_eq!(n, UPGRADE.len() - 4);
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/ws");
        assert_eq!(r.query.as_deref(), Some("site=a&x=1"));
        assert_eq!(r.minor_version, 1);
        assert_eq!(r.host.as_deref(), Some("chat.example.com:8080"));
        assert_eq!(r.origin.as_deref(), Some("https://chat.example.com"));
        assert!(r.upgrade_websocket && r.connection_upgrade && !r.connection_close);
        assert_eq!(r.ws_key.as_deref(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(r.ws_version.as_deref(), Some("13"));
        assert_eq!(
            r.ws_protocols,
            ["chat", "switchboard.v1.json", "switchboard.v1.bin"]
        );
        assert_eq!((r.content_length, r.chunked), (None, false));
    }

    #[test]
    fn incomplete_is_none_at_every_prefix() {
        let full = UPGRADE.as_bytes();
        let (_, n) = ok(UPGRADE);
        for cut in 0..n {
            let got = parse(&full[..cut], &HeadLimits::default());
            assert_eq!(got, Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn plain_get_and_methods() {
        let (r, _) = ok("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            (r.method, r.path.as_str(), r.query),
            (Method::Get, "/healthz", None)
        );
        assert!(!r.upgrade_websocket && !r.connection_upgrade);
        for (m, want) in [
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
            ("PATCH", Method::Patch),
            ("BREW", Method::Other),
        ] {
            let (r, _) = ok(&format!("{m} / HTTP/1.1\r\nHost: x\r\n\r\n"));
            assert_eq!(r.method, want, "{m}");
        }
        let (r, _) = ok("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.path, "*");
    }

    #[test]
    fn http10_closes_unless_keep_alive_and_needs_no_host() {
        let (r, _) = ok("GET / HTTP/1.0\r\n\r\n");
        assert!(r.connection_close && r.minor_version == 0 && r.host.is_none());
        let (r, _) = ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(!r.connection_close);
        let (r, _) = ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: CLOSE\r\n\r\n");
        assert!(r.connection_close);
    }

    #[test]
    fn too_large_without_waiting_for_the_end() {
        let limits = HeadLimits {
            max_bytes: 64,
            max_headers: 32,
        };
        let mut raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
        raw.resize(63, b'a');
        assert_eq!(parse(&raw, &limits), Ok(None));
        raw.push(b'a');
        assert_eq!(parse(&raw, &limits), Err(HeadError::TooLarge { max: 64 }));
        raw.extend_from_slice(b"\r\n\r\n");
        let e = parse(&raw, &limits).expect_err("too large");
        assert_eq!(e.status(), 431);
        // A head that ends exactly at the limit is fine, whatever follows it.
        let exact = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let limits = HeadLimits {
            max_bytes: exact.len(),
            max_headers: 32,
        };
        let mut with_body = exact.to_vec();
        with_body.extend_from_slice(b"garbage");
        assert_eq!(
            parse(&with_body, &limits).map(|o| o.map(|(_, n)| n)),
            Ok(Some(exact.len()))
        );
    }

    #[test]
    fn too_many_headers() {
        let limits = HeadLimits {
            max_bytes: 8192,
            max_headers: 3,
        };
        let raw = "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let e = parse(raw.as_bytes(), &limits).expect_err("too many");
        assert_eq!(e, HeadError::TooManyHeaders { max: 3 });
        assert_eq!(e.status(), 431);
        let raw = "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(parse(raw.as_bytes(), &limits).expect("3 fit").is_some());
    }

    #[test]
    fn statuses_of_bad_heads() {
        let cases: &[(&str, u16)] = &[
            ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nOrigin: a\r\nOrigin: b\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: a\r\nsec-websocket-key: b\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                400,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                501,
            ),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
            ("GET http://evil/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHo st: a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", 400),
            ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ];
        for (raw, status) in cases {
            let e = err(raw);
            assert_eq!(e.status(), *status, "{raw:?}: {e}");
        }
        // Not UTF-8 in a header the gateway reads.
        let raw = b"GET / HTTP/1.1\r\nHost: \xff\r\n\r\n";
        let e = parse(raw, &HeadLimits::default()).expect_err("not utf-8");
        assert_eq!(e.status(), 400);
        // ... but obs-text in one it ignores is fine.
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xe9\r\n\r\n";
        assert!(parse(raw, &HeadLimits::default()).expect("ok").is_some());
    }

    #[test]
    fn lengths_and_chunked() {
        let (r, _) =
            ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\ncontent-length: 12\r\n\r\n");
        assert_eq!(r.content_length, Some(12));
        let (r, _) = ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert!(r.chunked && r.content_length.is_none());
    }

    #[test]
    fn upgrade_tokens() {
        let (r, _) = ok(
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c, WebSocket/13\r\nConnection: UPGRADE\r\n\r\n",
        );
        assert!(r.upgrade_websocket && r.connection_upgrade);
        let (r, _) =
            ok("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websockets\r\nConnection: upgraded\r\n\r\n");
        assert!(!r.upgrade_websocket && !r.connection_upgrade);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                       max_bytes in 0usize..700, max_headers in 0usize..200) {
            let limits = HeadLimits { max_bytes, max_headers };
            if let Ok(Some((_, n))) = parse(&bytes, &limits) {
                prop_assert!(n <= bytes.len() && n <= max_bytes);
            }
        }

        #[test]
        fn header_soup_never_panics(lines in proptest::collection::vec(
            "(Host|Origin|Connection|Upgrade|Content-Length|Transfer-Encoding|Sec-WebSocket-[A-Za-z]{0,9}): [ -~]{0,20}", 0..12)) {
            let raw = format!("GET / HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"));
            if let Err(e) = parse(raw.as_bytes(), &HeadLimits::default()) {
                prop_assert!([400, 431, 501, 505].contains(&e.status()));
            }
        }
    }
}
