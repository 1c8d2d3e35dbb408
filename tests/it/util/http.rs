//! A minimal blocking HTTP/1.1 client for the admin listener tests: one request per
//! connection, read to EOF, every call bounded by a timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest a request may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The head, lines joined with `\n`.
    pub head: String,
    /// The body.
    pub body: String,
}

/// Sends `raw` as the whole request and reads the response to EOF.
pub fn raw(addr: SocketAddr, raw: &[u8]) -> Response {
    let s = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).unwrap();
    raw_on(s, raw)
}

/// [`raw`] from the local address `from` (another loopback address, e.g. 127.0.0.2).
pub fn raw_from(from: std::net::IpAddr, addr: SocketAddr, raw: &[u8]) -> Response {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket
        .connect_timeout(&addr.into(), HTTP_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect from {from}: {e}"));
    raw_on(socket.into(), raw)
}

/// Sends `raw` on `s` and reads the response to EOF.
pub fn raw_on(mut s: TcpStream, raw: &[u8]) -> Response {
    let addr = s.peer_addr().unwrap();
    s.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(HTTP_TIMEOUT)).unwrap();
    // The server may answer (431) and close before taking everything.
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !out.is_empty() => break,
            Err(e) => panic!("reading the response from {addr}: {e} (got {out:?})"),
        }
    }
    parse(&out)
}

/// `GET path` with an `Accept` header.
pub fn get_accept(addr: SocketAddr, path: &str, accept: &str) -> Response {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: {accept}\r\n\r\n").as_bytes(),
    )
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: switchboard-tests\r\n\r\n")
            .as_bytes(),
    )
}

fn parse(bytes: &[u8]) -> Response {
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let len: Option<usize> = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok());
    // 1xx, 204 and 304 carry no body and so no Content-Length.
    let bodiless = status < 200 || status == 204 || status == 304;
    let len = if bodiless {
        assert!(len.is_none(), "a {status} with a Content-Length: {head}");
        0
    } else {
        len.expect("Content-Length")
    };
    let head_only = body.is_empty();
    assert!(
        head_only || body.len() == len,
        "body length differs from Content-Length"
    );
    Response {
        status,
        head: head.replace("\r\n", "\n"),
        body: body.to_owned(),
    }
}

impl Response {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}
