//! Bad input closes only the offending connection, after a header-only `Error` frame
//! with the right code: oversize length (102, from the header alone), garbage such as
//! HTTP (100), wrong version (101), non-zero padding (103), `Ping` before `Hello`
//! (106). A neighbour established before each episode keeps doing ping/pong after it.

use crate::util;

use switchboard::protocol::Msg;

use crate::util::{Client, REPLY_TIMEOUT, TestServer, encode, kind};
use switchboard::frame::FrameHeader;
use switchboard::handoff::CloseReason;
use switchboard::protocol::ErrorCode;

const MAX_FRAME: u32 = 4096;

/// Runs one bad-client episode next to an established neighbour.
fn episode(
    code: ErrorCode,
    establish_first: bool,
    bad_bytes: &[u8],
    expect_request_id: u32,
) -> TestServer {
    let server = TestServer::start(|c| c.limits.max_frame_bytes = MAX_FRAME);
    let mut neighbour = Client::established(server.addr());
    neighbour.ping(1, b"before");

    let mut bad = Client::connect(server.addr());
    if establish_first {
        bad.hello();
    }
    bad.write_raw(bad_bytes);
    let f = bad.read_frame(REPLY_TIMEOUT);
    assert_eq!(
        f.ksr(),
        (kind::ERROR, code.as_u16(), expect_request_id),
        "expected error {} ({}), got {f:?}",
        code.as_u16(),
        code.name()
    );
    // Header-only from the connection layer, or an archived Error with the same code.
    if !f.payload.is_empty() {
        match Msg::decode(kind::ERROR, &f.payload) {
            Ok(Msg::Error(e)) => assert_eq!(e.code, code.as_u16(), "{e:?}"),
            other => panic!("error payload is not an Error: {other:?}"),
        }
    }
    bad.expect_eof(REPLY_TIMEOUT);

    for i in 0..5 {
        neighbour.ping(100 + i, format!("after {i}").as_bytes());
    }
    assert_eq!(server.metrics().closed_for(CloseReason::Error(code)), 1);
    server
}

#[test]
fn oversize_length_is_102_from_the_header_alone() {
    // Only the header is sent: the server must not wait for the 4 KiB + 1 payload.
    let header = FrameHeader::new(kind::PING, MAX_FRAME + 1, 5).to_bytes();
    episode(ErrorCode::FrameTooLarge, true, &header, 0);
}

#[test]
fn oversize_length_before_hello_is_102_too() {
    let header = FrameHeader::new(kind::HELLO, u32::MAX, 1).to_bytes();
    episode(ErrorCode::FrameTooLarge, false, &header, 0);
}

#[test]
fn text_that_is_no_http_request_is_bad_magic_100() {
    // An HTTP request as the first bytes is answered over HTTP (web_http); a text that
    // does not start with a capital letter is still the binary protocol's bad magic.
    episode(
        ErrorCode::BadMagic,
        false,
        b"get / http/1.1\r\nhost: localhost\r\n\r\n",
        0,
    );
}

#[test]
fn garbage_after_a_good_frame_is_bad_magic_100() {
    episode(ErrorCode::BadMagic, true, b"GET / HTTP/1.1\r\n\r\n", 0);
}

#[test]
fn wrong_version_is_101() {
    let mut hello = encode(kind::HELLO, 1, b"");
    hello[2] = 2;
    episode(ErrorCode::UnsupportedVersion, false, &hello, 0);
}

#[test]
fn wrong_version_seen_from_three_bytes_is_101() {
    // Just "SB\x07": the version byte alone is enough to refuse.
    episode(ErrorCode::UnsupportedVersion, true, b"SB\x07", 0);
}

#[test]
fn nonzero_padding_is_103() {
    let mut ping = util::encode_raw(kind::PING, 4, b"x");
    assert_eq!(ping.len(), 32);
    ping[31] = 0xff;
    episode(ErrorCode::BadPadding, true, &ping, 0);
}

#[test]
fn ping_before_hello_is_106_answering_its_request_id() {
    let ping = encode(kind::PING, 4242, b"too early");
    episode(ErrorCode::UnexpectedKind, false, &ping, 4242);
}

#[test]
fn second_hello_is_106() {
    let hello = encode(kind::HELLO, 8, b"");
    episode(ErrorCode::UnexpectedKind, true, &hello, 8);
}

#[test]
fn garbage_in_the_same_segment_as_good_frames_still_ends_with_100_then_eof() {
    // The reactor sees all of it in one read: it may close before the worker's replies
    // to the good frames reach it, so those replies are optional; but whatever arrives
    // before the error must be exactly those replies, and the error must come last.
    let server = TestServer::start(|c| c.limits.max_frame_bytes = MAX_FRAME);
    let mut c = Client::connect(server.addr());
    let mut bytes = encode(kind::HELLO, 1, b"");
    bytes.extend(encode(kind::PING, 2, b"first"));
    bytes.extend(b"NOT A FRAME AT ALL");
    c.write_raw(&bytes);
    let mut allowed = vec![
        (kind::WELCOME, 1, Vec::new()),
        (kind::PONG, 2, b"first".to_vec()),
    ]
    .into_iter();
    loop {
        let f = c.read_frame(REPLY_TIMEOUT);
        if f.header.kind == kind::ERROR {
            assert_eq!(f.ksr(), (kind::ERROR, 100, 0));
            break;
        }
        let reply = (f.header.kind, f.header.request_id, f.payload.clone());
        assert!(
            allowed.any(|a| a == reply),
            "unexpected frame before the error: {f:?}"
        );
    }
    c.expect_eof(REPLY_TIMEOUT);
}
