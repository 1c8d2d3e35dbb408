//! The JSON dialect end to end over real sockets: a browser-like client speaks
//! `switchboard.v1.json` beside SDK clients on the binary protocol; bad texts get
//! their documented codes and close codes, and neighbours carry on.

use serde_json::{Value, json};
use switchboard::protocol::messages::{self, Msg};

use crate::util::peer::{Peer, service_server};
use crate::util::ws::{WsClient, op};
use crate::util::{Client, TestServer, agent_token, token};

const JSON: &str = "switchboard.v1.json";

/// A JSON connection that has said Hello with `token`; returns it and its Welcome.
fn json_session(server: &TestServer, token: &str) -> (WsClient, Value) {
    let mut c = WsClient::connect(server.addr(), Some(JSON), None);
    c.send_json(&json!({"kind": "Hello", "request_id": 1,
        "fields": {"protocol": 1, "token": token, "client": "json-test"}}));
    let welcome = c.read_json();
    assert_eq!(welcome["kind"], "Welcome", "{welcome}");
    (c, welcome)
}

impl WsClient {
    fn send_json(&mut self, v: &Value) {
        self.send_text(&v.to_string());
    }

    /// The next data message, parsed as JSON.
    fn read_json(&mut self) -> Value {
        let f = self.read_data();
        assert_eq!(f.opcode, op::TEXT, "{f:?}");
        serde_json::from_str(f.text()).unwrap_or_else(|e| panic!("{e}: {}", f.text()))
    }

    /// The next JSON message of `kind` (others skipped).
    fn read_kind(&mut self, kind: &str) -> Value {
        loop {
            let v = self.read_json();
            if v["kind"] == kind {
                return v;
            }
        }
    }
}

#[test]
fn hello_ping_and_ids_as_strings() {
    let server = TestServer::start(|_| {});
    let (mut c, welcome) = json_session(&server, &token("vera", "visitor"));
    let f = &welcome["fields"];
    assert_eq!(welcome["request_id"], 1);
    assert_eq!(f["user"], "vera");
    assert_eq!(f["role"], 1);
    assert!(
        f["session"].is_string(),
        "u64 travels as a string: {welcome}"
    );
    assert!(f["server_time_ms"].is_string(), "{welcome}");
    // The browser's heartbeat: a Ping message, answered with the same id.
    c.send_json(&json!({"kind": "Ping", "request_id": 9}));
    let pong = c.read_json();
    assert_eq!(
        (pong["kind"].as_str(), pong["request_id"].as_u64()),
        (Some("Pong"), Some(9))
    );
}

#[test]
fn a_json_visitor_and_an_sdk_agent_talk_both_ways() {
    let server = service_server(|_| {});
    let mut alice = Peer::connect(server.addr(), &agent_token("alice", &["support"]), "alice");
    let (mut vera, _) = json_session(&server, &token("vera", "visitor"));
    vera.send_json(&json!({"kind": "Send", "request_id": 2, "fields":
        {"content_type": 1, "conversation": "0", "client_msg_id": "18446744073709551615",
         "body": "hello"}}));
    let accepted = vera.read_kind("Accepted");
    assert_eq!(accepted["request_id"], 2);
    assert_eq!(accepted["fields"]["client_msg_id"], "18446744073709551615");
    let conversation: u64 = accepted["fields"]["conversation"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Alice takes it (the opening message is in its history), then hears the next one.
    alice.wait_event("Assigned", |m| match m {
        Msg::Assigned(a) if a.conversation == conversation => Some(()),
        _ => None,
    });
    vera.send_json(&json!({"kind": "Send", "request_id": 3, "fields":
        {"content_type": 1, "conversation": conversation.to_string(), "client_msg_id": "2",
         "body": "hello 你好 \"quoted\""}}));
    let body = alice.wait_event("Deliver", |m| match m {
        Msg::Deliver(d) if d.conversation == conversation => Some(d.body.clone()),
        _ => None,
    });
    assert_eq!(body, "hello 你好 \"quoted\"");
    alice.post(messages::Send {
        content_type: messages::content::TEXT,
        conversation,
        client_msg_id: 1,
        group: String::new(),
        body: "hi Vera".into(),
    });
    let d = vera.read_kind("Deliver");
    assert_eq!(d["fields"]["body"], "hi Vera");
    assert_eq!(d["fields"]["sender"], "alice");
    assert_eq!(d["fields"]["conversation"], conversation.to_string());
}

#[test]
fn bad_texts_get_their_codes_and_close_codes() {
    let server = TestServer::start(|c| c.web.max_message_bytes = 4096);
    let mut n = Client::established(server.addr());
    let vera = token("vera", "visitor");
    // Not JSON: Error 104, then 1007.
    let (mut c, _) = json_session(&server, &vera);
    c.send_text("{\"kind\":\"Ping\",");
    let before = c.expect_close(1007);
    let err: Value = serde_json::from_str(before[0].text()).unwrap();
    assert_eq!(
        (err["kind"].as_str(), err["status"].as_u64()),
        (Some("Error"), Some(104))
    );
    // A u64 as a number beyond 2^53: 104 with the request id read before it.
    let (mut c, _) = json_session(&server, &vera);
    c.send_text(r#"{"kind":"Ping","request_id":5,"fields":{"stamp":9007199254740993}}"#);
    let before = c.expect_close(1007);
    let err: Value = serde_json::from_str(before[0].text()).unwrap();
    assert_eq!(
        (err["status"].as_u64(), err["request_id"].as_u64()),
        (Some(104), Some(5))
    );
    // Over web.max_message_bytes: the WebSocket layer refuses it (1009).
    let (mut c, _) = json_session(&server, &vera);
    c.send_text(&format!(
        "{{\"kind\":\"Ping\",\"x\":\"{}\"}}",
        "a".repeat(5000)
    ));
    c.expect_close(1009);
    // An unknown kind once established: Error 105 and the connection stays.
    let (mut c, _) = json_session(&server, &vera);
    c.send_json(&json!({"kind": "Shout", "request_id": 3}));
    let err = c.read_json();
    assert_eq!(
        (err["status"].as_u64(), err["request_id"].as_u64()),
        (Some(105), Some(3))
    );
    c.send_json(&json!({"kind": "Ping", "request_id": 4}));
    assert_eq!(c.read_json()["kind"], "Pong");
    n.ping(3, b"");
}

#[test]
fn session_errors_close_with_4000_plus_the_code() {
    let server = TestServer::start(|_| {});
    // An unknown kind before Hello: 106, as for any first frame but Hello.
    let mut c = WsClient::connect(server.addr(), Some(JSON), None);
    c.send_json(&json!({"kind": "Shout", "request_id": 3}));
    let before = c.expect_close(4106);
    let err: Value = serde_json::from_str(before[0].text()).unwrap();
    assert_eq!(err["status"], 106);
    // A bad token: 200 token_invalid.
    let mut c = WsClient::connect(server.addr(), Some(JSON), None);
    c.send_json(&json!({"kind": "Hello", "request_id": 1,
        "fields": {"protocol": 1, "token": "not.a.token"}}));
    let before = c.expect_close(4200);
    let err: Value = serde_json::from_str(before[0].text()).unwrap();
    assert_eq!(
        (err["status"].as_u64(), err["request_id"].as_u64()),
        (Some(200), Some(1))
    );
    // A goodbye: Bye, then an orderly 1000.
    let (mut c, _) = json_session(&server, &token("vera", "visitor"));
    c.send_json(&json!({"kind": "Bye"}));
    c.expect_close(1000);
}

#[test]
fn shutdown_says_bye_then_going_away() {
    let server = TestServer::start(|_| {});
    let (mut c, _) = json_session(&server, &token("vera", "visitor"));
    let (mut b, _) = {
        let mut b = WsClient::connect(server.addr(), Some("switchboard.v1.bin"), None);
        b.send(
            true,
            op::BINARY,
            &crate::util::encode(crate::util::kind::HELLO, 1, b""),
        );
        let w = b.read_data();
        (b, w)
    };
    server.shutdown();
    let before = c.expect_close(1001);
    let bye: Value = serde_json::from_str(before[0].text()).unwrap();
    assert_eq!(
        (bye["kind"].as_str(), bye["status"].as_u64()),
        (Some("Bye"), Some(501))
    );
    let before = b.expect_close(1001);
    assert_eq!(before[0].payload[3], crate::util::kind::BYE);
}
