//! WebSocket on the client port and the echo listener: the upgrade's statuses, every
//! close code the server sends, and a binary neighbour unaffected by all of it.

use crate::util::ws::{WsClient, op, upgrade_request};
use crate::util::{Client, TestServer, with_ws_echo};

const JSON: &str = "switchboard.v1.json";
const BIN: &str = "switchboard.v1.bin";

fn server() -> TestServer {
    TestServer::start(with_ws_echo)
}

/// The answer status to an upgrade request built with `extra` header lines
/// (`protocol` offered when given).
fn refused(
    server: &TestServer,
    protocol: Option<&str>,
    origin: Option<&str>,
    extra: &[&str],
) -> (u16, String) {
    let req = upgrade_request(server.addr(), protocol, origin, extra);
    match WsClient::try_connect(server.addr(), &req) {
        Ok(_) => panic!("upgrade accepted: {req}"),
        Err(answer) => answer,
    }
}

#[test]
fn upgrades_pick_the_offered_subprotocol() {
    let server = server();
    let json = WsClient::connect(server.addr(), Some(JSON), None);
    assert!(
        json.head
            .contains("Sec-WebSocket-Protocol: switchboard.v1.json"),
        "{}",
        json.head
    );
    let bin = WsClient::connect(server.addr(), Some("x.unknown, switchboard.v1.bin"), None);
    assert!(
        bin.head
            .contains("Sec-WebSocket-Protocol: switchboard.v1.bin"),
        "{}",
        bin.head
    );
}

#[test]
fn bad_upgrades_get_their_status_and_neighbours_carry_on() {
    let server = server();
    let mut n = Client::established(server.addr());
    // No subprotocol we speak: 400 naming ours.
    let (status, body) = refused(&server, Some("chat"), None, &[]);
    assert_eq!(status, 400);
    assert!(body.contains(JSON), "{body}");
    assert_eq!(refused(&server, None, None, &[]).0, 400);
    // Another version: 426 with the one we speak.
    let req =
        upgrade_request(server.addr(), Some(JSON), None, &[]).replace("Version: 13", "Version: 8");
    let (status, head) = WsClient::try_connect(server.addr(), &req).err().unwrap();
    assert_eq!(status, 426);
    assert!(head.contains("Sec-WebSocket-Version: 13"), "{head}");
    // A key that is not 16 bytes of base64.
    let req = upgrade_request(server.addr(), Some(JSON), None, &[])
        .replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
    assert_eq!(
        WsClient::try_connect(server.addr(), &req).err().unwrap().0,
        400
    );
    n.ping(5, b"");
}

#[test]
fn origins_are_checked() {
    let server = server();
    let addr = server.addr();
    // Same host: allowed by default.
    WsClient::connect(addr, Some(JSON), Some(&format!("http://{addr}")));
    // Another site's page: refused.
    let (status, _) = refused(&server, Some(JSON), Some("https://evil.example"), &[]);
    assert_eq!(status, 403);
    assert_eq!(refused(&server, Some(JSON), Some("null"), &[]).0, 403);
    // A configured origin.
    let server =
        TestServer::start(|c| c.web.allowed_origins = vec!["https://*.example.com".into()]);
    WsClient::connect(server.addr(), Some(JSON), Some("https://help.example.com"));
    assert_eq!(
        refused(
            &server,
            Some(JSON),
            Some(&format!("http://{}", server.addr())),
            &[]
        )
        .0,
        403
    );
}

#[test]
fn echo_listener_echoes_messages_and_answers_pings() {
    let server = server();
    let mut c = WsClient::connect(server.echo_addr(), None, None);
    c.send_text("hello");
    let f = c.read_frame().unwrap();
    assert_eq!((f.fin, f.opcode, f.text()), (true, op::TEXT, "hello"));
    // A fragmented message with a ping between its fragments.
    c.send(false, op::BINARY, b"ab");
    c.send(true, op::PING, b"p");
    c.send(true, op::CONTINUATION, b"cd");
    let pong = c.read_frame().unwrap();
    assert_eq!((pong.opcode, &pong.payload[..]), (op::PONG, &b"p"[..]));
    let f = c.read_frame().unwrap();
    assert_eq!((f.opcode, &f.payload[..]), (op::BINARY, &b"abcd"[..]));
    // The closing handshake: our code echoed, then the end.
    c.send(true, op::CLOSE, &1000u16.to_be_bytes());
    c.expect_close(1000);
}

#[test]
fn every_protocol_violation_closes_with_its_code() {
    let server = TestServer::start(|c| {
        with_ws_echo(c);
        c.web.max_message_bytes = 4096;
    });
    let mut n = Client::established(server.addr());
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked frame", vec![0x81, 0x02, b'h', b'i'], 1002),
        (
            "reserved bit",
            crate::util::ws::masked(true, op::TEXT | 0x40, b"x", [1, 2, 3, 4]),
            1002,
        ),
        (
            "reserved opcode",
            crate::util::ws::masked(true, 0x3, b"x", [1, 2, 3, 4]),
            1002,
        ),
        (
            "fragmented ping",
            crate::util::ws::masked(false, op::PING, b"x", [1, 2, 3, 4]),
            1002,
        ),
        (
            "long ping",
            crate::util::ws::masked(true, op::PING, &[0; 126], [1, 2, 3, 4]),
            1002,
        ),
        (
            "stray continuation",
            crate::util::ws::masked(true, op::CONTINUATION, b"x", [1, 2, 3, 4]),
            1002,
        ),
        (
            "invalid UTF-8",
            crate::util::ws::masked(true, op::TEXT, &[0xce, 0xba, 0xff], [1, 2, 3, 4]),
            1007,
        ),
        (
            "too big",
            crate::util::ws::masked(true, op::BINARY, &[7; 5000], [1, 2, 3, 4]),
            1009,
        ),
        (
            "bad close code",
            crate::util::ws::masked(true, op::CLOSE, &999u16.to_be_bytes(), [1, 2, 3, 4]),
            1002,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut c = WsClient::connect(server.echo_addr(), None, None);
        c.write_raw(&bytes);
        let before = c.expect_close(code);
        assert!(before.is_empty(), "{what}: {before:?}");
    }
    // A message over the limit in fragments that are each under it.
    let mut c = WsClient::connect(server.echo_addr(), None, None);
    c.send(false, op::TEXT, &[b'a'; 3000]);
    c.send(true, op::CONTINUATION, &[b'a'; 3000]);
    c.expect_close(1009);
    // Invalid UTF-8 split across fragments.
    let mut c = WsClient::connect(server.echo_addr(), None, None);
    c.send(false, op::TEXT, &[b'a', 0xe2]);
    c.send(true, op::CONTINUATION, &[0x28, 0xa1]);
    c.expect_close(1007);
    n.ping(6, b"");
}

#[test]
fn the_wrong_frame_type_for_the_subprotocol_is_1003() {
    let server = server();
    let mut c = WsClient::connect(server.addr(), Some(JSON), None);
    c.send(true, op::BINARY, b"SB");
    c.expect_close(1003);
    let mut c = WsClient::connect(server.addr(), Some(BIN), None);
    c.send_text("{}");
    c.expect_close(1003);
}

#[test]
fn the_echo_listener_speaks_websocket_only() {
    let server = server();
    let r = crate::util::http::get(server.echo_addr(), "/");
    assert_eq!(r.status, 426, "{r:?}");
}

#[test]
fn websocket_closes_are_counted() {
    let server = server();
    let mut c = WsClient::connect(server.echo_addr(), None, None);
    c.write_raw(&[0x81, 0x00]);
    c.expect_close(1002);
    let text = crate::util::http::get(server.admin_addr(), "/metrics").body;
    for want in [
        "switchboard_websocket_upgrades_total{subprotocol=\"echo\"} 1",
        "switchboard_websocket_closes_sent_total{code=\"1002\"} 1",
    ] {
        assert!(text.contains(want), "{want} missing from metrics");
    }
}

#[test]
fn binary_frames_ride_binary_messages_split_anyhow() {
    use crate::util::{encode, kind};
    let server = server();
    let mut c = WsClient::connect(server.addr(), Some(BIN), None);
    // A Hello cut in three: two fragments of one message, then the rest in another.
    let hello = encode(kind::HELLO, 1, b"");
    let (a, rest) = hello.split_at(5);
    let (b, d) = rest.split_at(20);
    c.send(false, op::BINARY, a);
    c.send(true, op::CONTINUATION, b);
    c.send(true, op::BINARY, d);
    let f = c.read_data();
    assert_eq!(f.opcode, op::BINARY);
    assert_eq!(
        f.payload[3],
        kind::WELCOME,
        "a Welcome frame: {:?}",
        &f.payload[..16]
    );
    // Two pings in one message: two pongs, each its own message.
    let mut two = encode(kind::PING, 7, b"x");
    two.extend(encode(kind::PING, 8, b"y"));
    c.send(true, op::BINARY, &two);
    for rid in [7u32, 8] {
        let f = c.read_data();
        assert_eq!(f.payload[3], kind::PONG);
        assert_eq!(
            u32::from_le_bytes(f.payload[12..16].try_into().unwrap()),
            rid
        );
    }
    // A framing error inside: the Error frame, then Close 4100 (100 bad_magic).
    c.send(true, op::BINARY, b"XX not a frame at all");
    let before = c.expect_close(4100);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].payload[3], kind::ERROR);
}

#[test]
fn a_session_closed_by_the_server_says_why_in_the_close_code() {
    let server = TestServer::start(|c| {
        c.heartbeat.handshake_timeout = std::time::Duration::from_millis(300);
    });
    // No Hello within the handshake deadline: Error 300, then Close 4300.
    let mut c = WsClient::connect(server.addr(), Some(BIN), None);
    let before = c.expect_close(4300);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(
        u16::from_le_bytes(before[0].payload[6..8].try_into().unwrap()),
        300
    );
    let text = crate::util::http::get(server.admin_addr(), "/metrics").body;
    let want = "switchboard_websocket_closes_sent_total{code=\"error\"} 1";
    assert!(text.contains(want), "{want} missing from metrics");
}
