//! The client port answers HTTP: the first byte tells an HTTP request from a binary
//! frame; a request gets a proper status and a close, and a binary neighbour on the
//! same port is unaffected by any of it.

use std::time::Duration;

use crate::util::http::{self, raw};
use crate::util::{Client, REPLY_TIMEOUT, TestServer};

/// A binary session that must keep working while HTTP goes wrong beside it.
fn neighbour(server: &TestServer) -> Client {
    Client::established(server.addr())
}

fn still_fine(c: &mut Client) {
    c.ping(77, b"");
}

#[test]
fn healthz_answers_200_and_head_has_no_body() {
    let server = TestServer::start(|_| {});
    let mut n = neighbour(&server);
    let r = http::get(server.addr(), "/healthz");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("\"ok\""), "{r:?}");
    assert!(r.head.contains("Connection: close"), "{r:?}");
    let r = raw(server.addr(), b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty(), "HEAD has no body: {r:?}");
    still_fine(&mut n);
}

#[test]
fn unknown_paths_are_404_and_other_methods_405() {
    let server = TestServer::start(|_| {});
    let mut n = neighbour(&server);
    let r = http::get(server.addr(), "/nothing/here");
    assert_eq!(r.status, 404, "{r:?}");
    let r = raw(
        server.addr(),
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 405, "{r:?}");
    assert!(r.head.contains("Allow: GET, HEAD"), "{r:?}");
    still_fine(&mut n);
}

#[test]
fn bad_heads_get_their_status() {
    let server = TestServer::start(|c| {
        c.web.max_head_bytes = 1024;
        c.web.max_headers = 8;
    });
    let mut n = neighbour(&server);
    let addr = server.addr();
    // Malformed request line.
    assert_eq!(raw(addr, b"GET\x01/ HTTP/1.1\r\n\r\n").status, 400);
    // A header line without a colon.
    assert_eq!(raw(addr, b"GET / HTTP/1.1\r\nHost x\r\n\r\n").status, 400);
    // A head over web.max_head_bytes (no end in sight).
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n", "a".repeat(2000));
    assert_eq!(raw(addr, long.as_bytes()).status, 431);
    // More headers than web.max_headers.
    let many: String = (0..20).map(|i| format!("X-{i}: y\r\n")).collect();
    let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert_eq!(raw(addr, req.as_bytes()).status, 431);
    still_fine(&mut n);
}

#[test]
fn a_head_that_never_ends_gets_408_at_the_handshake_deadline() {
    let server = TestServer::start(|c| {
        c.heartbeat.handshake_timeout = Duration::from_millis(300);
    });
    let mut n = neighbour(&server);
    // Half a head, then silence: the deadline that bounds a Hello bounds the head.
    let r = raw(server.addr(), b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
    assert_eq!(r.status, 408, "{r:?}");
    still_fine(&mut n);
}

#[test]
fn binary_clients_are_told_apart_by_the_first_byte() {
    let server = TestServer::start(|_| {});
    // "SB" is a binary frame; a stray lowercase byte stays a framing error (100) as
    // before, not an HTTP answer.
    let mut c = Client::connect(server.addr());
    c.write_raw(b"xx not a frame at all....");
    c.expect_error_then_eof(100, REPLY_TIMEOUT);
    let mut ok = Client::established(server.addr());
    still_fine(&mut ok);
}

#[test]
fn http_answers_are_counted() {
    let server = TestServer::start(|_| {});
    http::get(server.addr(), "/healthz");
    http::get(server.addr(), "/missing");
    let text = http::get(server.admin_addr(), "/metrics").body;
    for want in [
        "switchboard_http_responses_total{status=\"200\"} 1",
        "switchboard_http_responses_total{status=\"404\"} 1",
    ] {
        assert!(text.contains(want), "{want} missing from metrics");
    }
}
