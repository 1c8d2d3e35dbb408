//! The authenticated handshake over loopback: a valid token gets a `Welcome` whose
//! fields come from the token and the config; every bad `Hello` (malformed archive,
//! wrong protocol version, expired, forged, wrong algorithm, unknown key, bad claims)
//! gets its documented error code, then end-of-stream, and a neighbour connection is
//! untouched.

use crate::util;

use std::time::{Duration, SystemTime};

use crate::util::{Client, REPLY_TIMEOUT, TestServer, kind};
use switchboard::auth::{Claims, Verifier};
use switchboard::config::AuthKey;
use switchboard::handoff::CloseReason;
use switchboard::protocol::messages::{self, role};
use switchboard::protocol::{ErrorCode, Msg, PROTOCOL_VERSION};

fn hello_frame(token: &str, protocol: u16, rid: u32) -> Vec<u8> {
    let payload = Msg::from(messages::Hello {
        protocol,
        token: token.into(),
        client: "handshake-test".into(),
        resume: vec![messages::Cursor {
            conversation: 7,
            last_seq: 3,
        }],
    })
    .to_payload();
    util::encode_raw(kind::HELLO, rid, &payload)
}

/// Sends `bad` as the first frame and expects Error `code` (header and archived body
/// agree), then EOF, with a neighbour still answering pings.
fn refused(bad: &[u8], code: ErrorCode) {
    let server = TestServer::start(|_| {});
    let mut neighbour = Client::established(server.addr());
    let mut c = Client::connect(server.addr());
    c.write_raw(bad);
    let f = c.read_frame(REPLY_TIMEOUT);
    assert_eq!(f.ksr(), (kind::ERROR, code.as_u16(), 5), "{f:?}");
    match Msg::decode(kind::ERROR, &f.payload) {
        Ok(Msg::Error(e)) => {
            assert_eq!(e.code, code.as_u16());
            assert_eq!(e.retryable, code.retryable());
        }
        other => panic!("not an archived Error: {other:?}"),
    }
    c.expect_eof(REPLY_TIMEOUT);
    neighbour.ping(9, b"still fine");
    assert_eq!(server.metrics().closed_for(CloseReason::Error(code)), 1);
}

fn claims(sub: &str, role: &str) -> Claims {
    Claims::new(sub, role, SystemTime::now(), Duration::from_secs(600))
}

fn mint_with(secret: &str, kid: &str, claims: &Claims) -> String {
    let mut c = switchboard::Config::default();
    c.auth.keys = vec![AuthKey {
        kid: kid.into(),
        secret: Some(secret.into()),
        secret_file: None,
    }];
    Verifier::from_config(&c)
        .unwrap()
        .mint(claims, Some(kid))
        .unwrap()
}

/// A token signed directly with jsonwebtoken, bypassing the minting checks.
fn raw_token(
    alg: jsonwebtoken::Algorithm,
    kid: &str,
    secret: &str,
    claims: serde_json::Value,
) -> String {
    let header = jsonwebtoken::Header {
        kid: Some(kid.into()),
        ..jsonwebtoken::Header::new(alg)
    };
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn in_ten_minutes() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600
}

#[test]
fn valid_token_gets_welcome_with_identity_and_limits() {
    let server = TestServer::start(|c| c.limits.max_frame_bytes = 8192);
    let mut c = Client::connect(server.addr());
    let mut cl = claims("alice", "agent");
    cl.name = Some("Alice".into());
    cl.groups = vec!["sales".into(), "support".into()];
    cl.tenant = Some("acme".into());
    let token = mint_with(util::TEST_SECRET, "test", &cl);
    c.write_raw(&hello_frame(&token, PROTOCOL_VERSION, 5));
    // Read the raw Welcome (the util client blanks its payload).
    let raw = c.read_raw_frame(REPLY_TIMEOUT);
    assert_eq!(raw.ksr(), (kind::WELCOME, 0, 5));
    let Ok(Msg::Welcome(w)) = Msg::decode(kind::WELCOME, &raw.payload) else {
        panic!("not a Welcome: {raw:?}");
    };
    assert_eq!(w.protocol, PROTOCOL_VERSION);
    assert_eq!(w.role, role::AGENT);
    assert_eq!((w.user.as_str(), w.name.as_str()), ("alice", "Alice"));
    assert_eq!(w.tenant, "acme");
    assert_eq!(w.groups, vec!["sales".to_string(), "support".to_string()]);
    assert_eq!(w.heartbeat_ms, 1000);
    assert_eq!(w.idle_timeout_ms, 5000);
    assert_eq!(w.max_frame, 8192);
    assert_ne!(w.session, 0);
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(w.server_time_ms.abs_diff(now_ms) < 60_000);
    // Conversation 7 does not exist (nor is alice in it): not recovered.
    assert_eq!(
        w.resumed,
        vec![messages::Resumed {
            conversation: 7,
            from_seq: 3,
            recovered: false
        }]
    );
    c.ping(6, b"after welcome");
}

#[test]
fn malformed_hello_payload_is_104() {
    refused(
        &util::encode_raw(kind::HELLO, 5, b"not an archive"),
        ErrorCode::MalformedPayload,
    );
}

#[test]
fn wrong_protocol_version_is_204() {
    let token = util::token("v1", "visitor");
    refused(&hello_frame(&token, 99, 5), ErrorCode::UnsupportedProtocol);
}

#[test]
fn expired_token_is_201() {
    let token = raw_token(
        jsonwebtoken::Algorithm::HS256,
        "test",
        util::TEST_SECRET,
        serde_json::json!({"sub": "v1", "role": "visitor", "exp": 1_000_000}),
    );
    refused(&hello_frame(&token, 1, 5), ErrorCode::TokenExpired);
}

#[test]
fn forged_token_is_200() {
    let token = raw_token(
        jsonwebtoken::Algorithm::HS256,
        "test",
        "some-other-secret-that-is-long-enough-0123",
        serde_json::json!({"sub": "v1", "role": "visitor", "exp": in_ten_minutes()}),
    );
    refused(&hello_frame(&token, 1, 5), ErrorCode::TokenInvalid);
}

#[test]
fn wrong_algorithm_is_200() {
    // The right secret but HS384: the algorithm is pinned to HS256.
    let token = raw_token(
        jsonwebtoken::Algorithm::HS384,
        "test",
        util::TEST_SECRET,
        serde_json::json!({"sub": "v1", "role": "visitor", "exp": in_ten_minutes()}),
    );
    refused(&hello_frame(&token, 1, 5), ErrorCode::TokenInvalid);
}

#[test]
fn unknown_key_id_is_202() {
    let token = raw_token(
        jsonwebtoken::Algorithm::HS256,
        "retired-2024",
        util::TEST_SECRET,
        serde_json::json!({"sub": "v1", "role": "visitor", "exp": in_ten_minutes()}),
    );
    refused(&hello_frame(&token, 1, 5), ErrorCode::UnknownKey);
}

#[test]
fn unknown_role_is_203() {
    let token = raw_token(
        jsonwebtoken::Algorithm::HS256,
        "test",
        util::TEST_SECRET,
        serde_json::json!({"sub": "v1", "role": "superuser", "exp": in_ten_minutes()}),
    );
    refused(&hello_frame(&token, 1, 5), ErrorCode::BadClaims);
}

#[test]
fn missing_exp_is_rejected() {
    let token = raw_token(
        jsonwebtoken::Algorithm::HS256,
        "test",
        util::TEST_SECRET,
        serde_json::json!({"sub": "v1", "role": "visitor"}),
    );
    let server = TestServer::start(|_| {});
    let mut c = Client::connect(server.addr());
    c.write_raw(&hello_frame(&token, 1, 5));
    let f = c.read_frame(REPLY_TIMEOUT);
    assert_eq!(f.header.kind, kind::ERROR, "{f:?}");
    assert!(
        [200, 203].contains(&f.header.status),
        "a token without exp must be refused, got {}",
        f.header.status
    );
    c.expect_eof(REPLY_TIMEOUT);
}

#[test]
fn garbage_token_is_200() {
    refused(&hello_frame("not.a.jwt", 1, 5), ErrorCode::TokenInvalid);
}
