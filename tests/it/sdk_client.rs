//! The SDK client (`switchboard::client`) against the real server, in process: JWT
//! handshake, `Welcome` fields, ping, heartbeats that keep an idle session alive,
//! a rejected token, orderly close and the server's shutdown `Bye`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchboard::Config;
use switchboard::auth::{Claims, Verifier};
use switchboard::client::{Client, ClientConfig, ClientError};
use switchboard::protocol::PROTOCOL_VERSION;
use switchboard::protocol::messages::{self, Cursor, Msg, role};

use crate::util::TestServer;

/// An in-process test server plus a verifier built from its config, to mint tokens
/// the server accepts.
struct Setup {
    server: TestServer,
    verifier: Verifier,
}

impl Setup {
    fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let server = TestServer::start(tweak);
        let verifier = server.verifier();
        Self { server, verifier }
    }

    fn token(&self, sub: &str, role: &str, name: &str) -> String {
        let mut claims = Claims::new(sub, role, SystemTime::now(), Duration::from_secs(600));
        claims.name = Some(name.to_owned());
        claims.groups = vec!["billing".to_owned()];
        self.verifier.mint(&claims, None).unwrap()
    }

    fn client_config(&self, token: String) -> ClientConfig {
        ClientConfig {
            client_name: "sdk-test/1".into(),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            ..ClientConfig::new(self.server.addr().to_string(), token)
        }
    }
}

fn unix_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[test]
fn sdk_handshake_welcome_fields_and_ping() {
    let setup = Setup::start(|_| {});
    let mut cfg = setup.client_config(setup.token("v-42", "visitor", "Vera"));
    cfg.resume = vec![Cursor {
        conversation: 5,
        last_seq: 3,
    }];
    let before = unix_ms();
    let mut client = Client::connect(cfg).expect("handshake");
    let w = client.welcome().clone();
    assert_eq!(w.protocol, PROTOCOL_VERSION);
    assert_eq!(w.role, role::VISITOR);
    assert_eq!((w.user.as_str(), w.name.as_str()), ("v-42", "Vera"));
    assert_eq!(w.groups, vec!["billing".to_owned()]);
    assert_eq!(w.tenant, "");
    let hb = &setup.server.config().heartbeat;
    assert_eq!(u128::from(w.heartbeat_ms), hb.interval.as_millis());
    assert_eq!(u128::from(w.idle_timeout_ms), hb.idle_timeout.as_millis());
    assert_eq!(w.max_frame, setup.server.config().limits.max_frame_bytes);
    assert!(
        w.server_time_ms + 5_000 >= before && w.server_time_ms <= unix_ms() + 5_000,
        "server time {} vs client {before}",
        w.server_time_ms
    );
    let resumed: Vec<u64> = w.resumed.iter().map(|r| r.conversation).collect();
    assert_eq!(resumed, vec![5], "every resume cursor gets an answer");
    assert_eq!(client.heartbeat(), hb.interval);

    client.ping(Duration::from_secs(5)).expect("pong");

    // A second session gets another session id.
    let other = Client::connect(setup.client_config(setup.token("a-1", "agent", "Ann"))).unwrap();
    assert_ne!(other.welcome().session, w.session);
    assert_eq!(other.welcome().role, role::AGENT);
    other.close().expect("orderly close");
    client.close().expect("orderly close");
}

#[test]
fn sdk_heartbeats_keep_an_idle_session_past_the_idle_timeout() {
    let setup = Setup::start(|c| {
        c.heartbeat.interval = Duration::from_millis(200);
        c.heartbeat.idle_timeout = Duration::from_millis(700);
    });
    let mut client =
        Client::connect(setup.client_config(setup.token("v-1", "visitor", "V"))).unwrap();
    assert_eq!(client.heartbeat(), Duration::from_millis(200));
    // Nothing from the application for three idle timeouts: only the client's own
    // heartbeats keep the server from closing with 301.
    let until = Instant::now() + Duration::from_millis(2100);
    while Instant::now() < until {
        match client.recv(Duration::from_millis(100)) {
            Ok(None) => {}
            other => panic!("idle session should stay quiet and open, got {other:?}"),
        }
    }
    client.ping(Duration::from_secs(5)).expect("still open");
}

#[test]
fn sdk_rejected_token_is_a_typed_error() {
    let setup = Setup::start(|_| {});
    let e = Client::connect(setup.client_config("not.a.jwt".into())).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Server {
                code: 200,
                name: "token_invalid",
                closes: true,
                retryable: false,
                ..
            }
        ),
        "{e:?}"
    );
    let expired = {
        let claims = Claims::new(
            "v-1",
            "visitor",
            SystemTime::now() - Duration::from_secs(7200),
            Duration::from_secs(60),
        );
        setup.verifier.mint(&claims, None).unwrap()
    };
    let e = Client::connect(setup.client_config(expired)).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Server {
                code: 201,
                retryable: true,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn sdk_sees_bye_501_when_the_server_shuts_down() {
    let mut setup = Setup::start(|_| {});
    let mut client =
        Client::connect(setup.client_config(setup.token("v-1", "visitor", "V"))).unwrap();
    client.ping(Duration::from_secs(5)).unwrap();
    let server = setup.server.take();
    let stopper = std::thread::spawn(move || server.shutdown());
    let got = client
        .recv(Duration::from_secs(10))
        .expect("a frame")
        .expect("Bye before the deadline");
    assert!(
        matches!(got.msg, Msg::Bye(messages::Bye { code: 501, .. })),
        "{got:?}"
    );
    assert!(matches!(
        client.recv(Duration::from_secs(10)),
        Err(ClientError::Closed)
    ));
    stopper.join().unwrap();
}
