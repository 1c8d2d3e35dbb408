//! The admin listener's HTTP/1.1, sans-IO: a request head in, a whole response out.
//! GET only, one request per connection (`Connection: close`).

/// What to do with the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet.
    Partial,
    /// A complete GET (or HEAD) of `path` (query string removed).
    Get {
        /// The path without the query.
        path: String,
        /// The query string, if any (without `?`).
        query: Option<String>,
        /// `HEAD`: answer without a body.
        head_only: bool,
        /// The client accepts OpenMetrics (Prometheus does).
        openmetrics: bool,
    },
    /// Answer with this status and close.
    Reject(Status),
}

/// The statuses the admin listener uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 200.
    Ok,
    /// 400: not HTTP.
    BadRequest,
    /// 404: no such path.
    NotFound,
    /// 405: not GET/HEAD.
    MethodNotAllowed,
    /// 431: head larger than `admin.max_request_bytes` (or too many headers).
    HeaderTooLarge,
    /// 500: rendering failed.
    Internal,
    /// 503: not ready.
    Unavailable,
}

impl Status {
    /// The status code.
    pub fn code(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::BadRequest => 400,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::HeaderTooLarge => 431,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }

    fn line(self) -> &'static str {
        match self {
            Self::Ok => "200 OK",
            Self::BadRequest => "400 Bad Request",
            Self::NotFound => "404 Not Found",
            Self::MethodNotAllowed => "405 Method Not Allowed",
            Self::HeaderTooLarge => "431 Request Header Fields Too Large",
            Self::Internal => "500 Internal Server Error",
            Self::Unavailable => "503 Service Unavailable",
        }
    }
}

/// Most headers parsed in one request.
const MAX_HEADERS: usize = 32;

/// Parses what has arrived of a request head, bounded by `max_bytes`.
pub fn parse(buf: &[u8], max_bytes: usize) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => {
            Parsed::Reject(Status::HeaderTooLarge)
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(n)) if n > max_bytes => {
            Parsed::Reject(Status::HeaderTooLarge)
        }
        Ok(httparse::Status::Complete(_)) => {
            let head_only = match req.method {
                Some("GET") => false,
                Some("HEAD") => true,
                _ => return Parsed::Reject(Status::MethodNotAllowed),
            };
            let target = req.path.unwrap_or("/");
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p, Some(q.to_owned())),
                None => (target, None),
            };
            let openmetrics = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("accept")
                    && std::str::from_utf8(h.value)
                        .is_ok_and(|v| v.contains("application/openmetrics-text"))
            });
            Parsed::Get {
                path: path.to_owned(),
                query,
                head_only,
                openmetrics,
            }
        }
        Err(httparse::Error::TooManyHeaders) => Parsed::Reject(Status::HeaderTooLarge),
        Err(_) => Parsed::Reject(Status::BadRequest),
    }
}

/// A complete response with `Content-Length` and `Connection: close`.
pub(crate) fn response(status: Status, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut extra = "";
    if status == Status::MethodNotAllowed {
        extra = "Allow: GET, HEAD\r\n";
    }
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{extra}Connection: close\r\n\r\n",
        status.line(),
        body.len()
    );
    let mut out = head.into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// A short plain-text response.
pub fn text(status: Status, body: &str) -> Vec<u8> {
    response(status, "text/plain; charset=utf-8", body, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_code_is_the_one_its_line_names() {
        for s in [
            Status::Ok,
            Status::BadRequest,
            Status::NotFound,
            Status::MethodNotAllowed,
            Status::HeaderTooLarge,
            Status::Internal,
            Status::Unavailable,
        ] {
            assert_eq!(s.line().get(..3), Some(s.code().to_string().as_str()));
        }
    }

    #[test]
    fn get_with_query_parses() {
        assert_eq!(
            parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", 8192),
            Parsed::Get {
                path: "/metrics".into(),
                query: Some("x=1".into()),
                head_only: false,
                openmetrics: false,
            }
        );
        let prom = b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;\
            version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n";
        assert!(matches!(
            parse(prom, 8192),
            Parsed::Get {
                openmetrics: true,
                ..
            }
        ));
        assert_eq!(parse(b"GET /metr", 8192), Parsed::Partial);
    }

    #[test]
    fn errors_map_to_statuses() {
        assert_eq!(
            parse(b"POST /metrics HTTP/1.1\r\n\r\n", 8192),
            Parsed::Reject(Status::MethodNotAllowed)
        );
        assert_eq!(
            parse(b"\x16\x03\x01 garbage\r\n\r\n", 8192),
            Parsed::Reject(Status::BadRequest)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(600));
        assert_eq!(
            parse(big.as_bytes(), 512),
            Parsed::Reject(Status::HeaderTooLarge)
        );
        let many: String = (0..40).map(|i| format!("H{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse(req.as_bytes(), 8192),
            Parsed::Reject(Status::HeaderTooLarge)
        );
    }

    #[test]
    fn responses_carry_length_and_close() {
        let r = String::from_utf8(text(Status::Ok, "ok\n")).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Length: 3\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\nok\n"));
        let r =
            String::from_utf8(response(Status::MethodNotAllowed, "text/plain", "x", true)).unwrap();
        assert!(
            r.contains("Allow: GET, HEAD\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
    }
}
