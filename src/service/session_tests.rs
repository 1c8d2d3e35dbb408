//! Session unit tests on a fake clock (Unix ms from `T0`): the handshake, token
//! expiry and `Refresh`; frames are decoded back to messages.

use std::time::Duration;

use super::*;
use crate::auth::Claims;
use crate::clock::UnixMs;
use crate::config::{AuthKey, Config};
use crate::protocol::messages::{MAX_TOKEN, content};

const SECRET: &str = "0123456789abcdef0123456789abcdef";
/// The fake clock's start, Unix ms (a whole second).
const T0: u64 = 1_800_000_000_000;

fn config(kid: &str, secret: &str, leeway: u64) -> Config {
    let mut config = Config::default();
    config.auth.keys = vec![AuthKey {
        kid: kid.into(),
        secret: Some(secret.into()),
        secret_file: None,
    }];
    config.auth.leeway = Duration::from_secs(leeway);
    config
}

fn sessions_with(max_record: Option<usize>, leeway: u64) -> (Sessions, Verifier) {
    let config = config("k", SECRET, leeway);
    let settings = SessionSettings {
        verifier: Verifier::from_config(&config).unwrap(),
        heartbeat_ms: 1000,
        idle_timeout_ms: 3000,
        max_frame: 1 << 20,
        shards: 1,
        max_replay: 10,
        api_keys: Default::default(),
        visitor_address: Default::default(),
        max_record,
    };
    let shared = Arc::new(std::sync::RwLock::new(Arc::new(settings)));
    (
        Sessions::new(0, shared),
        Verifier::from_config(&config).unwrap(),
    )
}

fn sessions(max_record: Option<usize>) -> (Sessions, Verifier) {
    sessions_with(max_record, 30)
}

fn frame(conn: ConnId, rid: u32, msg: impl Into<Msg>) -> Event {
    let msg = msg.into();
    Event::Frame {
        conn,
        header: FrameHeader::new(msg.kind().as_u8(), 0, rid),
        payload: Bytes::copy_from_slice(&msg.to_payload()),
    }
}

fn conn(slot: u32) -> ConnId {
    ConnId {
        reactor: 0,
        slot,
        generation: 1,
    }
}

/// Claims for `sub` in `role` and `tenant` expiring at `exp` (Unix seconds).
fn claims(sub: &str, role: &str, tenant: &str, exp: u64) -> Claims {
    let mut c = Claims::new(sub, role, UNIX_EPOCH, Duration::ZERO);
    c.tenant = Some(tenant.into()).filter(|t: &String| !t.is_empty());
    c.exp = exp;
    c.iat = None;
    c
}

/// Seconds after [`T0`], as a token's `exp`.
fn secs(after: u64) -> u64 {
    T0 / 1000 + after
}

fn hello(token: String) -> messages::Hello {
    messages::Hello {
        protocol: PROTOCOL_VERSION,
        token,
        client: "test".into(),
        resume: Vec::new(),
    }
}

/// A frame an effect sends (a farewell too) and whether it closes the connection.
#[derive(Debug)]
struct Sent {
    rid: u32,
    msg: Msg,
    closes: bool,
}

fn sent(out: &mut Out) -> Vec<Sent> {
    let decode = |frame: &Bytes, closes| {
        let f = frame::decode(frame, u32::MAX).unwrap().unwrap();
        let mut msg = Msg::decode(f.header.kind, f.payload).unwrap();
        if let Msg::Error(e) = &mut msg {
            assert_eq!(e.code, f.header.status);
        }
        Sent {
            rid: f.header.request_id,
            msg,
            closes,
        }
    };
    out.drain(..)
        .filter_map(|e| match e {
            Effect::Reactor(Command::Send { frame, .. }) => Some(decode(&frame, false)),
            Effect::Reactor(Command::Close {
                farewell: Some(frame),
                ..
            }) => Some(decode(&frame, true)),
            _ => None,
        })
        .collect()
}

/// The one frame `out` sends: an `Error` with `code`, closing or not; its request id.
fn error_of(out: &mut Out, code: u16, closes: bool) -> u32 {
    match sent(out).as_slice() {
        [
            Sent {
                rid,
                msg: Msg::Error(e),
                closes: c,
            },
        ] if e.code == code && *c == closes => *rid,
        other => panic!("expected error {code} (closes: {closes}), got {other:?}"),
    }
}

/// Sessions on a fake clock, with one established session.
struct Fixture {
    s: Sessions,
    verifier: Verifier,
    stats: WorkerMetrics,
    out: Out,
    conn: ConnId,
}

impl Fixture {
    /// `leeway` seconds; a visitor `vera` of tenant `t` whose token expires 10 s
    /// after [`T0`], connected at `T0`.
    fn new(leeway: u64) -> Self {
        let mut f = Fixture::opened(leeway, conn(1));
        let token = f.token("vera", "visitor", "t", secs(10));
        f.event(frame(f.conn, 1, hello(token)), T0);
        let welcome = sent(&mut f.out);
        assert!(
            matches!(
                welcome.as_slice(),
                [Sent {
                    msg: Msg::Welcome(_),
                    rid: 1,
                    ..
                }]
            ),
            "{welcome:?}"
        );
        f
    }

    /// `leeway` seconds; connection `c` opened at `T0` (from port `c.slot`), no
    /// `Hello` yet.
    fn opened(leeway: u64, c: ConnId) -> Self {
        let (s, verifier) = sessions_with(None, leeway);
        let mut f = Fixture {
            s,
            verifier,
            stats: WorkerMetrics::default(),
            out: Vec::new(),
            conn: c,
        };
        let port = u16::try_from(c.slot).unwrap_or(u16::MAX);
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        f.event(Event::Opened { conn: c, peer }, T0);
        f
    }

    fn token(&self, sub: &str, role: &str, tenant: &str, exp: u64) -> String {
        self.verifier
            .mint(&claims(sub, role, tenant, exp), None)
            .unwrap()
    }

    fn event(&mut self, e: Event, now: u64) {
        self.s.handle(e, UnixMs(now), &mut self.out, &self.stats);
    }

    fn refresh(&mut self, rid: u32, token: String, now: u64) {
        self.event(frame(self.conn, rid, messages::Refresh { token }), now);
    }

    fn ping(&mut self, rid: u32, now: u64) {
        let ping = messages::Ping {
            stamp: 1,
            data: Vec::new(),
        };
        self.event(frame(self.conn, rid, ping), now);
    }

    fn tick(&mut self, now: u64) {
        self.s.tick(UnixMs(now), &mut self.out, &self.stats);
    }

    /// After the connection closed: whether the router heard it leave.
    fn closed(&mut self) -> bool {
        let closed = Event::Closed {
            conn: self.conn,
            reason: crate::handoff::CloseReason::Server,
        };
        self.event(closed, T0);
        let left = self
            .out
            .iter()
            .any(|e| matches!(e, Effect::Router(RouterMsg::Disconnected { .. })));
        self.out.clear();
        left
    }

    /// The session ended: nothing it receives now is acted on, no deadline is
    /// left, and the router hears of it when the connection closes.
    fn assert_ended(&mut self, now: u64) {
        assert_eq!(self.s.next_deadline(), None);
        self.ping(90, now);
        self.refresh(91, self.token("vera", "visitor", "t", secs(3600)), now);
        assert!(self.out.is_empty(), "acted after its end: {:?}", self.out);
        assert!(self.closed(), "the router was not told");
    }
}

#[test]
fn a_session_ends_at_its_tokens_exp_not_before() {
    let mut f = Fixture::new(0);
    let end = T0 + 10_000;
    assert_eq!(f.s.next_deadline(), Some(UnixMs(end)));
    f.tick(end - 1);
    f.ping(2, end - 1);
    assert!(matches!(
        sent(&mut f.out).as_slice(),
        [Sent {
            msg: Msg::Pong(_),
            ..
        }]
    ));
    f.tick(end);
    // Unsolicited (request id 0), retryable, and the connection closes.
    assert_eq!(error_of(&mut f.out, 201, true), 0);
    assert_eq!(f.stats.sessions_expired.get(), 1);
    f.assert_ended(end);
}

#[test]
fn the_leeway_of_the_handshake_applies_to_the_session() {
    let mut f = Fixture::new(30);
    assert_eq!(f.s.next_deadline(), Some(UnixMs(T0 + 40_000)));
    f.tick(T0 + 39_999);
    assert!(f.out.is_empty());
    f.tick(T0 + 40_000);
    error_of(&mut f.out, 201, true);
}

/// The worker's timer may be late: a frame that arrives past the deadline is not
/// acted on, and ends the session.
#[test]
fn a_frame_past_the_deadline_ends_the_session_unanswered() {
    let mut f = Fixture::new(0);
    f.ping(2, T0 + 10_000);
    assert_eq!(error_of(&mut f.out, 201, true), 0);
    f.assert_ended(T0 + 10_000);
    // Its deadline is gone: the timer has nothing left to do.
    f.tick(u64::MAX);
    assert!(f.out.is_empty());
}

#[test]
fn refresh_moves_the_end_to_the_new_tokens_exp() {
    let mut f = Fixture::new(0);
    f.refresh(7, f.token("vera", "visitor", "t", secs(100)), T0 + 5_000);
    match sent(&mut f.out).as_slice() {
        [
            Sent {
                rid: 7,
                msg: Msg::Refreshed(r),
                closes: false,
            },
        ] => assert_eq!(r.expires_ms, T0 + 100_000),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.stats.sessions_refreshed.get(), 1);
    assert_eq!(f.s.next_deadline(), Some(UnixMs(T0 + 100_000)));
    // The old exp passes unnoticed.
    f.tick(T0 + 10_000);
    f.ping(8, T0 + 10_000);
    assert!(matches!(
        sent(&mut f.out).as_slice(),
        [Sent {
            msg: Msg::Pong(_),
            ..
        }]
    ));
    // The latest token rules, also when it expires sooner.
    f.refresh(9, f.token("vera", "visitor", "t", secs(50)), T0 + 20_000);
    assert!(matches!(
        sent(&mut f.out).as_slice(),
        [Sent {
            msg: Msg::Refreshed(_),
            ..
        }]
    ));
    assert_eq!(f.s.next_deadline(), Some(UnixMs(T0 + 50_000)));
    f.tick(T0 + 50_000);
    error_of(&mut f.out, 201, true);
    f.assert_ended(T0 + 50_000);
}

#[test]
fn refresh_for_another_user_tenant_or_role_is_refused_and_closes() {
    for (sub, role, tenant) in [
        ("rita", "visitor", "t"),
        ("vera", "visitor", "other"),
        ("vera", "visitor", ""),
        ("vera", "agent", "t"),
    ] {
        let mut f = Fixture::new(0);
        f.refresh(3, f.token(sub, role, tenant, secs(100)), T0);
        assert_eq!(error_of(&mut f.out, 203, true), 3, "{sub} {role} {tenant}");
        f.assert_ended(T0);
    }
}

#[test]
fn refresh_with_a_bad_token_gets_the_handshakes_code_and_closes() {
    let f = Fixture::new(0);
    let vera = claims("vera", "visitor", "t", secs(100));
    let other_secret = Verifier::from_config(&config("k", &"z".repeat(32), 0)).unwrap();
    let other_kid = Verifier::from_config(&config("x", SECRET, 0)).unwrap();
    let mut no_role = claims("vera", "visitor", "t", secs(100));
    no_role.role = String::new();
    let cases: [(&str, String, u16); 5] = [
        ("garbage", "not.a.jwt".into(), 200),
        ("signature", other_secret.mint(&vera, None).unwrap(), 200),
        ("expired", f.token("vera", "visitor", "t", secs(1)), 201),
        ("kid", other_kid.mint(&vera, None).unwrap(), 202),
        (
            "claims",
            {
                // Signed right, but without a valid role.
                let header = jsonwebtoken::Header {
                    kid: Some("k".into()),
                    ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
                };
                let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
                jsonwebtoken::encode(&header, &no_role, &key).unwrap()
            },
            203,
        ),
    ];
    drop(f);
    for (what, token, code) in cases {
        let mut f = Fixture::new(0);
        f.refresh(4, token, T0 + 2_000);
        assert_eq!(error_of(&mut f.out, code, true), 4, "{what}");
        f.assert_ended(T0 + 2_000);
    }
}

#[test]
fn refresh_decoding_and_state_errors() {
    // Over MAX_TOKEN: a bound, 400; the session goes on with its old deadline.
    let mut f = Fixture::new(0);
    f.refresh(5, "t".repeat(MAX_TOKEN + 1), T0);
    assert_eq!(error_of(&mut f.out, 400, false), 5);
    assert_eq!(f.s.next_deadline(), Some(UnixMs(T0 + 10_000)));
    f.ping(6, T0);
    assert!(matches!(
        sent(&mut f.out).as_slice(),
        [Sent {
            msg: Msg::Pong(_),
            ..
        }]
    ));
    // A broken archive: 104, closes.
    let broken = Event::Frame {
        conn: f.conn,
        header: FrameHeader::new(Kind::Refresh.as_u8(), 0, 7),
        payload: Bytes::from_static(&[0xff; 3]),
    };
    f.event(broken, T0);
    assert_eq!(error_of(&mut f.out, 104, true), 7);
    f.assert_ended(T0);

    // `Refreshed` is the server's: 105, the connection stays.
    let mut f = Fixture::new(0);
    let refreshed = messages::Refreshed { expires_ms: 1 };
    f.event(frame(f.conn, 8, refreshed), T0);
    assert_eq!(error_of(&mut f.out, 105, false), 8);

    // Before `Hello`: 106, closes.
    let mut f = Fixture::opened(0, conn(2));
    let token = f.token("vera", "visitor", "", secs(100));
    f.refresh(9, token, T0);
    assert_eq!(error_of(&mut f.out, 106, true), 9);
    assert_eq!(f.s.next_deadline(), None);
}

/// A resuming session's token may expire while the shards look up its cursors:
/// it gets 201, not a `Welcome`, and the router never hears of it.
#[test]
fn a_token_expiring_during_resume_ends_the_session() {
    for timer_first in [true, false] {
        let mut f = Fixture::opened(0, conn(3));
        let c = f.conn;
        let mut hello = hello(f.token("vera", "visitor", "", secs(1)));
        hello.resume = vec![messages::Cursor {
            conversation: 5,
            last_seq: 1,
        }];
        f.event(frame(c, 1, hello), T0);
        assert!(matches!(
            f.out.as_slice(),
            [Effect::Shard(ShardMsg::Resume { .. })]
        ));
        f.out.clear();
        assert_eq!(f.s.next_deadline(), Some(UnixMs(T0 + 1_000)));
        if timer_first {
            f.tick(T0 + 1_000);
            assert_eq!(error_of(&mut f.out, 201, true), 0);
        }
        f.s.resumed(c, Vec::new(), UnixMs(T0 + 1_000), &mut f.out, &f.stats);
        if !timer_first {
            assert_eq!(error_of(&mut f.out, 201, true), 0);
        }
        assert!(f.out.is_empty(), "{:?}", f.out);
        assert_eq!(f.s.next_deadline(), None);
        let closed = Event::Closed {
            conn: c,
            reason: crate::handoff::CloseReason::Server,
        };
        f.event(closed, T0);
        assert!(f.out.is_empty(), "the router never knew it: {:?}", f.out);
    }
}

/// Closing forgets the deadline: the timer does not touch a gone connection.
#[test]
fn a_closed_session_leaves_no_deadline() {
    let mut f = Fixture::new(0);
    assert!(f.closed());
    assert_eq!(f.s.next_deadline(), None);
    f.tick(u64::MAX);
    assert!(f.out.is_empty());
}

/// A `Send` whose record could not be stored is refused with 400 (not
/// retryable) before it reaches the router or a shard; one that fits goes on.
#[test]
fn a_send_whose_record_would_not_fit_is_a_bad_request() {
    let (mut s, verifier) = sessions(Some(1000));
    let conn = conn(1);
    let claims = Claims::new(
        "vera",
        "visitor",
        UNIX_EPOCH + Duration::from_millis(T0),
        Duration::from_secs(60),
    );
    let hello = hello(verifier.mint(&claims, None).unwrap());
    let stats = WorkerMetrics::default();
    let mut out = Vec::new();
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    s.handle(Event::Opened { conn, peer }, UnixMs(T0), &mut out, &stats);
    s.handle(frame(conn, 1, hello), UnixMs(T0), &mut out, &stats);
    out.clear();
    let send = |body: usize| messages::Send {
        content_type: content::TEXT,
        conversation: 7,
        client_msg_id: 1,
        group: String::new(),
        body: "x".repeat(body),
    };
    s.handle(frame(conn, 2, send(1000)), UnixMs(T0), &mut out, &stats);
    assert_eq!(error_of(&mut out, 400, false), 2);
    s.handle(frame(conn, 3, send(100)), UnixMs(T0), &mut out, &stats);
    assert!(
        matches!(out.as_slice(), [Effect::Shard(ShardMsg::Request { .. })]),
        "{out:?}"
    );
}

#[test]
fn a_conversation_list_is_cut_to_fit_max_frame() {
    let mut f = Fixture::opened(30, conn(5));
    let c = f.conn;
    let token = f.token("boss", "admin", "t", secs(600));
    f.event(frame(c, 1, hello(token)), T0);
    f.out.clear();
    let query = messages::ListConversations {
        limit: 1000,
        state: messages::conversation_state::ANY,
        ..Default::default()
    };
    f.event(frame(c, 2, query), T0);
    assert!(
        f.out
            .iter()
            .any(|e| matches!(e, Effect::AllShards(ShardControl::List { .. }))),
        "{:?}",
        f.out
    );
    f.out.clear();
    // 1000 items of ~2.3 KB: more than the 1 MiB frame.
    let items: Vec<messages::ConversationInfo> = (1..=1000)
        .map(|i| messages::ConversationInfo {
            conversation: i,
            group: "g".repeat(1024),
            visitor_name: "n".repeat(1024),
            visitor: "v".repeat(200),
            ..Default::default()
        })
        .collect();
    f.s.listed(c, 2, items, false, &mut f.out);
    let page = match sent(&mut f.out).as_slice() {
        [
            Sent {
                rid: 2,
                msg: Msg::ConversationList(p),
                ..
            },
        ] => p.clone(),
        other => panic!("{other:?}"),
    };
    let bytes = Msg::from(page.clone()).to_payload().len();
    assert!(bytes <= 1 << 20, "{bytes} bytes");
    assert!(page.more);
    assert!(
        page.items.len() > 300 && page.items.len() < 1000,
        "{}",
        page.items.len()
    );
    assert_eq!(page.next_after, page.items.last().unwrap().conversation);
}
