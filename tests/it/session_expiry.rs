//! Sessions end at their token's `exp` over loopback, and `Refresh` keeps them going
//! (PROTOCOL.md sections 4.6a, 6.3): an expiring session gets `Error` 201 (request id
//! 0) and end-of-stream, and the router forgets it; a session refreshed in time
//! outlives a twin that was not; a refused `Refresh` gets the handshake's code and
//! closes; bad input gets its documented code with the neighbour untouched.
//!
//! Tokens here expire one or two seconds ahead on a server with `auth.leeway = 0`.
//! Nothing asserts how long anything took: the tests wait (bounded) for the events.

use crate::util;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::peer::{Peer, service_server, text};
use crate::util::{REPLY_TIMEOUT, TestServer, kind};
use switchboard::auth::{Claims, Verifier};
use switchboard::client::{Client, ClientConfig, ClientError};
use switchboard::handoff::CloseReason;
use switchboard::protocol::messages::{self, MAX_TOKEN};
use switchboard::protocol::{ErrorCode, Kind, Msg};

/// Bound on waiting for a token that expires a few seconds ahead to end its session.
const EXPIRY_WAIT: Duration = Duration::from_secs(30);

/// A server that ends sessions exactly at `exp` (no leeway).
fn server() -> TestServer {
    service_server(|c| c.auth.leeway = Duration::ZERO)
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token of the test key for `sub` in `role` (and `groups`), expiring at `exp`.
fn token_until(sub: &str, role: &str, groups: &[&str], exp: u64) -> String {
    let mut config = switchboard::Config::default();
    config.auth.keys = vec![util::test_key()];
    let mut claims = Claims::new(sub, role, SystemTime::now(), Duration::ZERO);
    claims.exp = exp;
    claims.groups = groups.iter().map(|g| (*g).to_owned()).collect();
    Verifier::from_config(&config)
        .unwrap()
        .mint(&claims, Some("test"))
        .unwrap()
}

fn connect(server: &TestServer, token: String) -> Client {
    let config = ClientConfig {
        connect_timeout: REPLY_TIMEOUT,
        handshake_timeout: REPLY_TIMEOUT,
        ..ClientConfig::new(server.addr().to_string(), token)
    };
    Client::connect(config).unwrap()
}

/// Reads until the session ends; the frame that ended it must be `Error` 201
/// `token_expired`, unsolicited, and the stream must end after it.
fn expect_expiry(client: &mut Client) {
    let deadline = std::time::Instant::now() + EXPIRY_WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(
            !left.is_zero(),
            "the session did not end at its token's exp"
        );
        match client.recv(left.min(Duration::from_secs(1))) {
            Ok(Some(i)) => {
                if let Msg::Error(e) = &i.msg {
                    assert_eq!((e.code, e.retryable, i.request_id), (201, true, 0), "{i:?}");
                    assert_eq!(e.message, "token_expired");
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => panic!("the session ended without 201: {e}"),
        }
    }
    // Nothing more: end-of-stream.
    assert!(matches!(
        client.recv(REPLY_TIMEOUT),
        Err(ClientError::Closed)
    ));
}

fn expired_sessions(server: &TestServer) -> u64 {
    let w = &server.metrics().workers;
    w.iter().map(|w| w.sessions_expired.get()).sum()
}

#[test]
fn a_session_ends_at_its_tokens_exp_and_the_router_forgets_it() {
    let server = server();
    let mut neighbour = connect(&server, util::token("nina", "visitor"));
    let exp = unix_secs() + 2;
    let mut agent = connect(&server, token_until("ann", "agent", &["support"], exp));
    expect_expiry(&mut agent);
    assert!(util::wait_until(REPLY_TIMEOUT, || {
        server
            .metrics()
            .closed_for(CloseReason::Error(ErrorCode::TokenExpired))
            == 1
    }));
    assert_eq!(expired_sessions(&server), 1);
    // The neighbour's hour-long token keeps it connected.
    neighbour.ping(REPLY_TIMEOUT).unwrap();
    // The expired agent is no agent of the group any more: a visitor waits in the queue.
    let mut vera = Peer::connect(server.addr(), &util::token("vera", "visitor"), "vera");
    vera.post(text(0, 1, "is anyone there?"));
    vera.wait_event("Queued", |m| match m {
        Msg::Queued(q) if q.position == 1 => Some(()),
        _ => None,
    });
}

/// Twins with the same short token: the one that refreshes outlives the other's end.
#[test]
fn a_refreshed_session_outlives_its_old_exp() {
    let server = server();
    let exp = unix_secs() + 2;
    let mut twin = connect(&server, token_until("vera", "visitor", &[], exp));
    let mut kept = connect(&server, token_until("vera", "visitor", &[], exp));
    let later = unix_secs() + 3600;
    let expires_ms = kept
        .refresh(token_until("vera", "visitor", &[], later), REPLY_TIMEOUT)
        .unwrap();
    assert_eq!(expires_ms, later * 1000);
    // The server's clock has passed the old exp once the twin is cut off...
    expect_expiry(&mut twin);
    // ...and the refreshed session still answers (a frame past its end would have
    // ended it instead).
    kept.ping(REPLY_TIMEOUT).unwrap();
    kept.send_text(0, "still here").unwrap();
    let accepted = loop {
        match kept.recv(REPLY_TIMEOUT).unwrap() {
            Some(i) if matches!(i.msg, Msg::Accepted(_)) => break i.msg,
            Some(i) if matches!(i.msg, Msg::Error(_)) => panic!("{i:?}"),
            Some(_) => {}
            None => panic!("no Accepted"),
        }
    };
    assert!(matches!(accepted, Msg::Accepted(_)));
    assert_eq!(expired_sessions(&server), 1);
}

/// A refused `Refresh` gets the code the handshake would give, and closes.
#[test]
fn a_refused_refresh_closes_with_the_handshakes_code() {
    let server = server();
    let mut neighbour = connect(&server, util::token("nina", "visitor"));
    let hour = unix_secs() + 3600;
    let cases = [
        (
            "another user",
            token_until("rita", "visitor", &[], hour),
            203,
        ),
        ("another role", token_until("vera", "agent", &[], hour), 203),
        (
            "expired",
            token_until("vera", "visitor", &[], 1_000_000),
            201,
        ),
        ("not a token", "not.a.token".to_owned(), 200),
    ];
    for (what, token, code) in cases {
        let mut c = connect(&server, util::token("vera", "visitor"));
        let e = c.refresh(token, REPLY_TIMEOUT).unwrap_err();
        assert!(
            matches!(e, ClientError::Server { code: c, closes: true, .. } if c == code),
            "{what}: {e:?}"
        );
        assert!(
            matches!(c.recv(REPLY_TIMEOUT), Err(ClientError::Closed)),
            "{what}"
        );
    }
    neighbour.ping(REPLY_TIMEOUT).unwrap();
}

#[test]
fn refresh_bad_input() {
    let server = TestServer::start(|_| {});
    let mut neighbour = util::Client::established(server.addr());
    let refresh = |rid, token: String| {
        let payload = Msg::from(messages::Refresh { token }).to_payload();
        util::encode_raw(Kind::Refresh.as_u8(), rid, &payload)
    };

    // Over MAX_TOKEN: 400, the connection stays.
    let mut c = util::Client::established(server.addr());
    c.write_raw(&refresh(3, "t".repeat(MAX_TOKEN + 1)));
    let f = c.read_frame(REPLY_TIMEOUT);
    assert_eq!(f.ksr(), (kind::ERROR, 400, 3), "{f:?}");
    c.ping(4, b"still open");
    // A broken archive: 104, close.
    c.write_raw(&util::encode_raw(
        Kind::Refresh.as_u8(),
        5,
        b"not an archive",
    ));
    c.expect_error_then_eof(104, REPLY_TIMEOUT);

    // Before Hello: 106, close.
    let mut c = util::Client::connect(server.addr());
    c.write_raw(&refresh(6, util::token("v1", "visitor")));
    c.expect_error_then_eof(106, REPLY_TIMEOUT);

    // `Refreshed` is the server's to send: 105, the connection stays.
    let mut c = util::Client::established(server.addr());
    let payload = Msg::from(messages::Refreshed { expires_ms: 1 }).to_payload();
    c.write_raw(&util::encode_raw(Kind::Refreshed.as_u8(), 7, &payload));
    let f = c.read_frame(REPLY_TIMEOUT);
    assert_eq!(f.ksr(), (kind::ERROR, 105, 7), "{f:?}");
    c.ping(8, b"still open");

    neighbour.ping(9, b"untouched");
}
