//! The simplest conversation over a real loopback socket: `Hello` → `Welcome`, then
//! `Ping` → `Pong` with the same request id and payload; payloads of every padding
//! remainder and up to `limits.max_frame_bytes` come back intact; an unknown kind is
//! answered with error 105 without closing the connection; a client's `Bye` closes it,
//! counted as `client_bye`.

use crate::util;

use crate::util::{Client, REPLY_TIMEOUT, TestServer, kind};
use switchboard::handoff::CloseReason;

#[test]
fn hello_gets_welcome_and_ping_gets_pong_with_same_id_and_payload() {
    let server = TestServer::start(|_| {});
    let mut c = Client::connect(server.addr());
    c.send(kind::HELLO, 77, b"");
    let w = c.read_frame(REPLY_TIMEOUT);
    assert_eq!(w.ksr(), (kind::WELCOME, 0, 77));

    c.send(kind::PING, 0xdead_beef, b"are you there?");
    let p = c.read_frame(REPLY_TIMEOUT);
    assert_eq!(p.ksr(), (kind::PONG, 0, 0xdead_beef));
    assert_eq!(p.payload, b"are you there?");

    // Request id zero and an empty payload are ordinary values too.
    c.ping(0, b"");
    c.expect_nothing_more();
}

#[test]
fn every_padding_remainder_and_the_largest_allowed_payload_round_trip() {
    const MAX: u32 = 4096;
    let server = TestServer::start(|c| c.limits.max_frame_bytes = MAX);
    let mut c = Client::established(server.addr());
    let mut rng = util::Rng::new(0x5eed);
    // The archived Ping adds 16 bytes around its data.
    for len in (0..=48).chain([1000, 4079, MAX as usize - 16]) {
        let payload = rng.bytes(len);
        c.ping(len as u32 + 100, &payload);
    }
}

#[test]
fn unknown_kind_is_error_105_and_the_connection_stays_open() {
    let server = TestServer::start(|_| {});
    let mut c = Client::established(server.addr());
    c.send(200, 9, b"what is this");
    let e = c.read_frame(REPLY_TIMEOUT);
    assert_eq!(e.ksr(), (kind::ERROR, 105, 9));
    c.ping(10, b"still here");
}

#[test]
fn bye_from_the_client_closes_the_session() {
    let server = TestServer::start(|_| {});
    let mut c = Client::established(server.addr());
    c.send(kind::BYE, 3, b"");
    c.expect_eof(REPLY_TIMEOUT);
    // Counted as the client's goodbye, not as a close the server chose.
    let m = server.metrics();
    assert!(
        util::wait_until(REPLY_TIMEOUT, || m.closed_for(CloseReason::ClientBye) == 1),
        "client_bye: {}",
        m.closed_for(CloseReason::ClientBye)
    );
    assert_eq!(m.closed_for(CloseReason::Server), 0);
    assert_eq!(m.closed_for(CloseReason::PeerClosed), 0);
}
