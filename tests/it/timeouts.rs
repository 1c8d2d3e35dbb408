//! Liveness deadlines: a connection that never says `Hello` is closed with error 300
//! after `heartbeat.handshake_timeout` (a trickle of partial header bytes does not
//! extend it); an established connection that goes silent is closed with 301 after
//! `heartbeat.idle_timeout`; regular activity keeps it open indefinitely.

use crate::util;

use std::time::{Duration, Instant};

use crate::util::{Client, TestServer, encode, kind};
use switchboard::handoff::CloseReason;
use switchboard::protocol::ErrorCode;

const HANDSHAKE: Duration = Duration::from_millis(300);
const INTERVAL: Duration = Duration::from_millis(100);
const IDLE: Duration = Duration::from_millis(500);
/// Scheduling slack allowed on top of a deadline before calling it late.
const SLACK: Duration = Duration::from_millis(700);

fn start() -> TestServer {
    TestServer::start(|c| {
        c.heartbeat.handshake_timeout = HANDSHAKE;
        c.heartbeat.interval = INTERVAL;
        c.heartbeat.idle_timeout = IDLE;
    })
}

/// Reads the error frame, checks its code and when it came (relative to `since`).
fn expect_timeout_error(c: &mut Client, code: u16, since: Instant, deadline: Duration) {
    let f = c.read_frame(deadline + SLACK + Duration::from_secs(2));
    let at = since.elapsed();
    assert_eq!(f.ksr(), (kind::ERROR, code, 0), "got {f:?}");
    assert!(
        at + Duration::from_millis(20) >= deadline,
        "closed too early: {at:?} < {deadline:?}"
    );
    assert!(at <= deadline + SLACK, "closed too late: {at:?}");
    c.expect_eof(Duration::from_secs(2));
}

#[test]
fn no_hello_is_closed_with_300_after_the_handshake_timeout() {
    let server = start();
    let since = Instant::now();
    let mut c = Client::connect(server.addr());
    expect_timeout_error(&mut c, 300, since, HANDSHAKE);
    assert_eq!(
        server
            .metrics()
            .closed_for(CloseReason::Error(ErrorCode::HandshakeTimeout)),
        1
    );
}

#[test]
fn trickling_a_partial_header_does_not_extend_the_handshake() {
    let server = start();
    let since = Instant::now();
    let mut c = Client::connect(server.addr());
    let hello = encode(kind::HELLO, 1, b"");
    // One byte every 50 ms: 15 bytes would take 750 ms, well past the deadline.
    for b in &hello[..15] {
        c.write_raw(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_millis(50));
        if since.elapsed() > HANDSHAKE + Duration::from_millis(100) {
            break;
        }
    }
    expect_timeout_error(&mut c, 300, since, HANDSHAKE);
}

#[test]
fn silence_after_hello_is_closed_with_301_after_the_idle_timeout() {
    let server = start();
    let mut c = Client::established(server.addr());
    let since = Instant::now();
    expect_timeout_error(&mut c, 301, since, IDLE);
    assert_eq!(
        server
            .metrics()
            .closed_for(CloseReason::Error(ErrorCode::IdleTimeout)),
        1
    );
}

#[test]
fn a_ping_every_150ms_keeps_the_connection_open_for_1_5s() {
    let server = start();
    let mut c = Client::established(server.addr());
    let start = Instant::now();
    let mut rid = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(150));
        rid += 1;
        c.ping(rid, b"still here");
    }
    assert!(rid >= 8, "only {rid} pings in 1.5 s");
    assert_eq!(server.metrics().open_connections(), 1);
    // Then, silent, it is closed on the idle deadline counted from the last ping.
    let since = Instant::now();
    expect_timeout_error(&mut c, 301, since, IDLE);
}

/// The idle deadline must not depend on the handshake deadline: here the handshake
/// timeout (5 s) is longer than the idle timeout (500 ms), which the config accepts.
#[test]
fn idle_timeout_shorter_than_handshake_timeout_still_applies() {
    let server = TestServer::start(|c| {
        c.heartbeat.handshake_timeout = Duration::from_secs(5);
        c.heartbeat.interval = INTERVAL;
        c.heartbeat.idle_timeout = IDLE;
    });
    let mut c = Client::established(server.addr());
    let since = Instant::now();
    expect_timeout_error(&mut c, 301, since, IDLE);
}

/// Raw echo streams carry no frames: an echo connection that goes silent is closed at
/// its idle deadline with nothing written (no framed `Error`), and counted as 301.
#[test]
fn idle_echo_connection_closes_without_writing_a_frame() {
    use std::io::{Read, Write};
    let server = TestServer::start(|c| {
        c.heartbeat.interval = INTERVAL;
        c.heartbeat.idle_timeout = IDLE;
        util::with_echo(c);
    });
    let mut s = std::net::TcpStream::connect(server.echo_addr()).unwrap();
    s.set_read_timeout(Some(IDLE + SLACK + SLACK)).unwrap();
    s.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    s.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "an echo stream got {rest:?} at its idle deadline"
    );
    assert_eq!(
        server
            .metrics()
            .closed_for(CloseReason::Error(ErrorCode::IdleTimeout)),
        1
    );
}
