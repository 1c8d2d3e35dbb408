//! Frames survive whatever segmentation TCP gives them: a byte stream of `Hello` and a
//! few `Ping`s split into two writes at every byte position (arriving as two separate
//! reads) gets exactly the same replies each time, and 1,000 `Ping`s coalesced into
//! one write get 1,000 `Pong`s, in order.

use crate::util;

use std::time::Duration;

use crate::util::{Client, REPLY_TIMEOUT, TestServer, encode, kind};

/// A reply as `(kind, request id, payload)`.
type Reply = (u8, u32, Vec<u8>);

/// `Hello` then pings whose payloads cover empty, short, exactly-aligned and one-past.
fn conversation() -> (Vec<u8>, Vec<Reply>) {
    let pings: [(u32, &[u8]); 4] = [
        (10, b""),
        (11, b"a"),
        (12, b"sixteen bytes!!!"),
        (13, b"seventeen bytes!!"),
    ];
    let mut stream = encode(kind::HELLO, 1, b"");
    let mut replies = vec![(kind::WELCOME, 1, Vec::new())];
    for (rid, body) in pings {
        stream.extend_from_slice(&encode(kind::PING, rid, body));
        replies.push((kind::PONG, rid, body.to_vec()));
    }
    (stream, replies)
}

fn read_replies(c: &mut Client, n: usize) -> Vec<Reply> {
    (0..n)
        .map(|_| {
            let f = c.read_frame(REPLY_TIMEOUT);
            assert_eq!(f.header.status, 0, "unexpected status in {f:?}");
            (f.header.kind, f.header.request_id, f.payload)
        })
        .collect()
}

#[test]
fn split_at_every_byte_boundary_gives_the_same_replies() {
    let server = TestServer::start(|_| {});
    let (stream, expected) = conversation();
    // Every split position, including the two degenerate ones (one write only).
    for cut in 0..=stream.len() {
        let (a, b) = stream.split_at(cut);
        let mut c = Client::connect(server.addr());
        if !a.is_empty() {
            c.write_raw(a);
            // TCP_NODELAY is on: the pause makes the halves arrive as separate reads.
            std::thread::sleep(Duration::from_millis(2));
        }
        if !b.is_empty() {
            c.write_raw(b);
        }
        let got = read_replies(&mut c, expected.len());
        assert_eq!(got, expected, "split at byte {cut} of {}", stream.len());
        // And the session is still in a clean state after the split frame.
        c.ping(99, b"after");
    }
    assert_eq!(
        server.metrics().reactor_sum(|r| r.frames_in.get()),
        (stream.len() as u64 + 1) * (expected.len() as u64 + 1)
    );
}

#[test]
fn byte_at_a_time_gives_the_same_replies() {
    let server = TestServer::start(|_| {});
    let (stream, expected) = conversation();
    let mut c = Client::connect(server.addr());
    for b in &stream {
        c.write_raw(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_micros(300));
    }
    assert_eq!(read_replies(&mut c, expected.len()), expected);
}

#[test]
fn thousand_pings_in_one_write_get_thousand_pongs_in_order() {
    const N: u32 = 1000;
    let server = TestServer::start(|_| {});
    let mut c = Client::established(server.addr());
    let mut rng = util::Rng::new(42);
    let mut stream = Vec::new();
    let mut payloads = Vec::new();
    for rid in 0..N {
        let len = (rng.next_u64() % 40) as usize;
        let mut body = rid.to_le_bytes().to_vec();
        body.extend(rng.bytes(len));
        stream.extend_from_slice(&encode(kind::PING, rid, &body));
        payloads.push(body);
    }
    c.write_raw(&stream);
    for (rid, body) in payloads.iter().enumerate() {
        let f = c.read_frame(REPLY_TIMEOUT);
        assert_eq!(f.ksr(), (kind::PONG, 0, rid as u32), "pong #{rid}: {f:?}");
        assert_eq!(&f.payload, body, "pong #{rid} payload");
    }
    c.expect_nothing_more();
}
