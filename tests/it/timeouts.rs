//! Liveness deadlines over real sockets, one smoke test: a connection that never says
//! `Hello` is closed with error 300 and an established one that goes silent with 301,
//! each no earlier than its timeout. The deadline logic itself (to the millisecond:
//! trickled headers, activity, linger, paused reading, drain) is tested on a fake
//! clock in `src/reactor/core_tests.rs`; here only that the loops feed it real time.
//! No upper bound on when the close comes: this machine may be loaded.

use std::time::{Duration, Instant};

use crate::util::{Client, TestServer, kind};
use switchboard::handoff::CloseReason;
use switchboard::protocol::ErrorCode;

const HANDSHAKE: Duration = Duration::from_millis(300);
const INTERVAL: Duration = Duration::from_millis(100);
const IDLE: Duration = Duration::from_millis(500);
/// How long to wait for a close before calling the test hung (not a bound on when
/// the close may come: a loaded machine may take long).
const GIVE_UP: Duration = Duration::from_secs(60);

/// Reads the error frame, checks its code, that it came no earlier than `deadline`
/// after `since`, and that the connection then closes.
fn expect_timeout_error(c: &mut Client, code: u16, since: Instant, deadline: Duration) {
    let f = c.read_frame(GIVE_UP);
    let at = since.elapsed();
    assert_eq!(f.ksr(), (kind::ERROR, code, 0), "got {f:?}");
    // A millisecond of rounding between the test's clock and the reactor's.
    assert!(
        at + Duration::from_millis(1) >= deadline,
        "closed too early: {at:?} < {deadline:?}"
    );
    c.expect_eof(GIVE_UP);
}

#[test]
fn silent_connections_are_closed_on_their_handshake_and_idle_deadlines() {
    let server = TestServer::start(|c| {
        c.heartbeat.handshake_timeout = HANDSHAKE;
        c.heartbeat.interval = INTERVAL;
        c.heartbeat.idle_timeout = IDLE;
    });
    // Both taken before the deadlines can start counting (accept; `Hello` answered).
    let since = Instant::now();
    let mut mute = Client::connect(server.addr());
    let mut idle = Client::established(server.addr());
    expect_timeout_error(&mut mute, 300, since, HANDSHAKE);
    expect_timeout_error(&mut idle, 301, since, IDLE);
    let m = server.metrics();
    assert_eq!(
        m.closed_for(CloseReason::Error(ErrorCode::HandshakeTimeout)),
        1
    );
    assert_eq!(m.closed_for(CloseReason::Error(ErrorCode::IdleTimeout)), 1);
}
