//! Tests of the receive state machine: every rule and error class, the closing
//! handshake, and restart semantics (proptests).
#![allow(
    clippy::arithmetic_side_effects,
    reason = "tests compute small offsets"
)]

use super::*;
use crate::ws::frame::client_frame;
use proptest::prelude::*;

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];
const LIMITS: WsLimits = WsLimits { max_message: 1000 };

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Data {
        text: bool,
        chunk: Vec<u8>,
        fin: bool,
    },
    Control(Vec<u8>),
}

#[derive(Default)]
struct Rec {
    calls: Vec<Call>,
    refuse_with: Option<u16>,
}

impl WsSink for Rec {
    fn data(&mut self, text: bool, chunk: &[u8], fin: bool) -> Result<(), u16> {
        if let Some(code) = self.refuse_with {
            return Err(code);
        }
        self.calls.push(Call::Data {
            text,
            chunk: chunk.to_vec(),
            fin,
        });
        Ok(())
    }
    fn control(&mut self, frame: Bytes) {
        self.calls.push(Call::Control(frame.to_vec()));
    }
}

fn data(text: bool, chunk: &[u8], fin: bool) -> Call {
    Call::Data {
        text,
        chunk: chunk.to_vec(),
        fin,
    }
}

fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(fin, op, payload, MASK)
}

/// Feeds everything at once.
fn feed_once(state: &mut WsState, input: &[u8]) -> (Vec<Call>, Result<Fed, WsError>) {
    let mut rec = Rec::default();
    let mut scratch = Vec::new();
    let r = state.feed(input, &LIMITS, &mut scratch, &mut rec);
    (rec.calls, r)
}

/// What the caller of `feed` sees at the end of a stream delivered in pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// All input handled; this many bytes of a partial frame remain spilled.
    Open(usize),
    Closed(u16),
    Failed(WsError),
}

/// Drives a stream delivered as `pieces` the way the reactor does: spill + new bytes,
/// keep the unconsumed rest.
fn drive(pieces: &[&[u8]], limits: &WsLimits) -> (Vec<Call>, End) {
    let mut state = WsState::default();
    let mut rec = Rec::default();
    let mut scratch = Vec::new();
    let mut spill: Vec<u8> = Vec::new();
    for piece in pieces {
        spill.extend_from_slice(piece);
        match state.feed(&spill, limits, &mut scratch, &mut rec) {
            Ok(Fed::More { consumed }) => {
                assert!(consumed <= spill.len());
                spill.drain(..consumed);
            }
            Ok(Fed::Closed { code, .. }) => return (rec.calls, End::Closed(code)),
            Err(e) => return (rec.calls, End::Failed(e)),
        }
    }
    (rec.calls, End::Open(spill.len()))
}

fn fails_with(input: &[u8], want: WsError, code: u16) {
    let (_, r) = feed_once(&mut WsState::default(), input);
    assert_eq!(r, Err(want), "{input:02x?}");
    assert_eq!(want.close_code(), code);
}

#[test]
fn state_is_small() {
    assert_eq!(std::mem::size_of::<WsState>(), 16);
}

#[test]
fn single_frame_messages() {
    let mut input = frame(true, 1, b"hello");
    input.extend(frame(true, 2, &[0, 1, 2]));
    input.extend(frame(true, 1, b""));
    let mut s = WsState::default();
    let (calls, r) = feed_once(&mut s, &input);
    assert_eq!(
        r,
        Ok(Fed::More {
            consumed: input.len()
        })
    );
    assert_eq!(
        calls,
        [
            data(true, b"hello", true),
            data(false, &[0, 1, 2], true),
            data(true, b"", true)
        ]
    );
    assert!(!s.mid_message());
}

#[test]
fn partial_frames_are_left_unconsumed() {
    let one = frame(true, 1, b"hello");
    let mut input = one.clone();
    input.extend_from_slice(&frame(true, 2, &[9; 300])[..7]);
    let (calls, r) = feed_once(&mut WsState::default(), &input);
    assert_eq!(
        r,
        Ok(Fed::More {
            consumed: one.len()
        })
    );
    assert_eq!(calls.len(), 1);
    for cut in 0..one.len() {
        let (calls, r) = feed_once(&mut WsState::default(), &one[..cut]);
        assert_eq!(
            (calls, r),
            (vec![], Ok(Fed::More { consumed: 0 })),
            "cut {cut}"
        );
    }
}

#[test]
fn fragments_with_control_frames_interleaved() {
    let mut input = frame(false, 1, "κό".as_bytes());
    input.extend(frame(true, 9, b"ping!"));
    input.extend(frame(false, 0, "σμ".as_bytes()));
    input.extend(frame(true, 0xA, b"unsolicited pong"));
    input.extend(frame(true, 0, "ε".as_bytes()));
    let mut s = WsState::default();
    let mut rec = Rec::default();
    let mut scratch = Vec::new();
    // Frame by frame, to see mid_message.
    let r = s.feed(
        &input[..frame(false, 1, "κό".as_bytes()).len()],
        &LIMITS,
        &mut scratch,
        &mut rec,
    );
    assert!(matches!(r, Ok(Fed::More { .. })));
    assert!(s.mid_message());
    let (calls, r) = {
        let mut s2 = WsState::default();
        feed_once(&mut s2, &input)
    };
    assert_eq!(
        r,
        Ok(Fed::More {
            consumed: input.len()
        })
    );
    assert_eq!(
        calls,
        [
            data(true, "κό".as_bytes(), false),
            Call::Control(b"\x8a\x05ping!".to_vec()),
            data(true, "σμ".as_bytes(), false),
            data(true, "ε".as_bytes(), true),
        ]
    );
}

#[test]
fn bad_utf8_fails_before_its_frame_is_complete() {
    // Autobahn 6.4.3: one text frame whose second piece holds an invalid sequence.
    let mut body = "κόσμε".as_bytes().to_vec();
    body.extend_from_slice(b"\xf4\x90\x80\x80");
    body.extend_from_slice(b"-edited");
    let f = frame(true, 1, &body);
    let bad_end = 6 + "κόσμε".len() + 4;
    let mut s = WsState::default();
    let mut rec = Rec::default();
    let mut scratch = Vec::new();
    // The valid first part: nothing delivered, nothing consumed, no error.
    let r = s.feed(&f[..6 + 5], &LIMITS, &mut scratch, &mut rec);
    assert_eq!(r, Ok(Fed::More { consumed: 0 }));
    // Fed again from the frame's header with more bytes: the bad sequence fails now,
    // before the rest of the frame arrives.
    let r = s.feed(&f[..bad_end], &LIMITS, &mut scratch, &mut rec);
    assert_eq!(r, Err(WsError::BadUtf8));
    assert!(rec.calls.is_empty());
    // The same within a continuation of a text message.
    let mut input = frame(false, 1, b"ok");
    let first = input.len();
    input.extend(frame(true, 0, &body));
    let (calls, r) = feed_once(&mut WsState::default(), &input[..first + bad_end]);
    assert_eq!(r, Err(WsError::BadUtf8));
    assert_eq!(calls, [data(true, b"ok", false)]);
    // Binary is never checked.
    let (_, r) = feed_once(&mut WsState::default(), &frame(true, 2, &body)[..bad_end]);
    assert_eq!(r, Ok(Fed::More { consumed: 0 }));
}

#[test]
fn a_text_frame_trickled_byte_by_byte_is_checked_once_and_delivered_whole() {
    let text = "aé€𝄞κόσμε".repeat(20);
    let f = frame(true, 1, text.as_bytes());
    let pieces: Vec<&[u8]> = f.chunks(1).collect();
    let (calls, end) = drive(&pieces, &LIMITS);
    assert_eq!(end, End::Open(0));
    assert_eq!(calls, [data(true, text.as_bytes(), true)]);
    // Cut inside a code point at every position, then completed.
    for cut in 0..f.len() {
        let (calls, end) = drive(&[&f[..cut], &f[cut..]], &LIMITS);
        assert_eq!((calls.len(), end), (1, End::Open(0)), "cut {cut}");
    }
}

#[test]
fn ping_is_answered_with_the_same_payload() {
    let payload = [7u8; 125];
    let (calls, _) = feed_once(&mut WsState::default(), &frame(true, 9, &payload));
    let mut pong = vec![0x8a, 125];
    pong.extend_from_slice(&payload);
    assert_eq!(calls, [Call::Control(pong)]);
    let (calls, _) = feed_once(&mut WsState::default(), &frame(true, 9, b""));
    assert_eq!(calls, [Call::Control(vec![0x8a, 0])]);
}

#[test]
fn every_error_class_and_its_close_code() {
    let unmasked = crate::ws::frame::server_frame(Opcode::Text, b"hi");
    fails_with(&unmasked, WsError::Unmasked, 1002);
    fails_with(&frame(true, 0x41, b"x"), WsError::Reserved(4), 1002);
    fails_with(&frame(true, 0x11, b"x"), WsError::Reserved(1), 1002);
    for op in [3u8, 7, 0xb, 0xf] {
        fails_with(&frame(true, op, b""), WsError::BadOpcode(op), 1002);
    }
    // 127 with the top bit set, masked; no payload needed to fail.
    let huge = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    fails_with(&huge, WsError::BadLength, 1002);
    fails_with(
        &frame(true, 9, &[0; 126]),
        WsError::ControlTooLong(126),
        1002,
    );
    fails_with(
        &frame(true, 8, &[3, 232, b'x'].repeat(42)),
        WsError::ControlTooLong(126),
        1002,
    );
    fails_with(&frame(false, 9, b""), WsError::FragmentedControl, 1002);
    fails_with(&frame(false, 0xA, b""), WsError::FragmentedControl, 1002);
    fails_with(&frame(true, 0, b"x"), WsError::UnexpectedContinuation, 1002);
    let mut two_starts = frame(false, 1, b"a");
    two_starts.extend(frame(true, 2, b"b"));
    fails_with(&two_starts, WsError::ExpectedContinuation, 1002);
    fails_with(&frame(true, 1, b"\xff"), WsError::BadUtf8, 1007);
    fails_with(&frame(true, 1, b"a\xe2\x82"), WsError::BadUtf8, 1007);
    fails_with(
        &frame(true, 8, &[0x03, 0xec]),
        WsError::BadCloseCode(1004),
        1002,
    );
    fails_with(&frame(true, 8, &[0x03]), WsError::BadClosePayload, 1002);
    fails_with(&frame(true, 8, &[0x03, 0xe8, 0xff]), WsError::BadUtf8, 1007);
    // Binary is not checked for UTF-8.
    let (_, r) = feed_once(&mut WsState::default(), &frame(true, 2, b"\xff"));
    assert!(r.is_ok());
}

#[test]
fn too_big_from_the_header_alone() {
    // Only the header of a 1001-byte frame: no payload has arrived.
    let f = frame(true, 2, &[0; 1001]);
    let header_only = &f[..2 + 2 + 4];
    let (calls, r) = feed_once(&mut WsState::default(), header_only);
    assert!(calls.is_empty());
    assert_eq!(
        r,
        Err(WsError::TooBig {
            len: 1001,
            max: 1000
        })
    );
    assert_eq!(WsError::TooBig { len: 0, max: 0 }.close_code(), 1009);
    // Exactly the limit is fine.
    let (calls, r) = feed_once(&mut WsState::default(), &frame(true, 2, &[0; 1000]));
    assert!(r.is_ok() && calls.len() == 1);
    // Across fragments: 600 + 400 fit, one more byte does not, and fails at the header.
    let mut input = frame(false, 2, &[0; 600]);
    input.extend(frame(false, 0, &[0; 400]));
    let ok_len = input.len();
    input.extend_from_slice(&frame(true, 0, &[0; 1])[..6]);
    let mut s = WsState::default();
    let (calls, r) = feed_once(&mut s, &input);
    assert_eq!(calls.len(), 2);
    assert_eq!(
        r,
        Err(WsError::TooBig {
            len: 1001,
            max: 1000
        })
    );
    // An empty final fragment still fits.
    let mut input = input[..ok_len].to_vec();
    input.extend(frame(true, 0, b""));
    let (calls, r) = feed_once(&mut WsState::default(), &input);
    assert_eq!(
        r,
        Ok(Fed::More {
            consumed: input.len()
        })
    );
    assert_eq!(calls.last(), Some(&data(false, b"", true)));
    // The count starts over with the next message.
    let mut twice = frame(true, 2, &[0; 1000]);
    twice.extend(frame(true, 2, &[0; 1000]));
    let (calls, r) = feed_once(&mut WsState::default(), &twice);
    assert!(r.is_ok() && calls.len() == 2);
}

#[test]
fn sink_refusal_fails_with_its_code() {
    let mut rec = Rec {
        refuse_with: Some(1008),
        ..Rec::default()
    };
    let r = WsState::default().feed(&frame(true, 1, b"{"), &LIMITS, &mut Vec::new(), &mut rec);
    assert_eq!(r, Err(WsError::Refused(1008)));
    assert_eq!(WsError::Refused(1008).close_code(), 1008);
}

#[test]
fn close_handshake() {
    // Empty Close: answered with 1000, reported as 1005.
    let mut s = WsState::default();
    let mut input = frame(true, 8, b"");
    let close_len = input.len();
    input.extend(frame(true, 1, b"after close"));
    let (calls, r) = feed_once(&mut s, &input);
    assert_eq!(
        r,
        Ok(Fed::Closed {
            consumed: close_len,
            code: 1005
        })
    );
    assert_eq!(calls, [Call::Control(vec![0x88, 2, 0x03, 0xe8])]);
    assert!(s.close_received());
    // Feeding again: still closed, nothing consumed, nothing sent.
    let (calls, r) = feed_once(&mut s, &input[close_len..]);
    assert_eq!(
        (calls, r),
        (
            vec![],
            Ok(Fed::Closed {
                consumed: 0,
                code: 1005
            })
        )
    );

    // With a code and a reason: the code is echoed.
    for code in [1000u16, 1001, 1003, 1011, 1013, 3000, 4999] {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice("bye ✓".as_bytes());
        let (calls, r) = feed_once(&mut WsState::default(), &frame(true, 8, &payload));
        assert_eq!(
            r,
            Ok(Fed::Closed {
                consumed: 6 + payload.len(),
                code
            })
        );
        let mut reply = vec![0x88, 2];
        reply.extend_from_slice(&code.to_be_bytes());
        assert_eq!(calls, [Call::Control(reply)]);
    }
    // Bad codes.
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let (calls, r) = feed_once(
            &mut WsState::default(),
            &frame(true, 8, &code.to_be_bytes()),
        );
        assert_eq!(r, Err(WsError::BadCloseCode(code)));
        assert!(calls.is_empty());
    }

    // After our own Close, the peer's is the reply: not answered again.
    let mut s = WsState::default();
    s.close_sent();
    let (calls, r) = feed_once(&mut s, &frame(true, 8, &[0x03, 0xe9]));
    assert_eq!(
        r,
        Ok(Fed::Closed {
            consumed: 8,
            code: 1001
        })
    );
    assert!(calls.is_empty());
}

#[test]
fn close_in_the_middle_of_a_fragmented_message() {
    let mut input = frame(false, 1, b"part");
    input.extend(frame(true, 8, &[0x03, 0xe8]));
    let (calls, r) = feed_once(&mut WsState::default(), &input);
    assert_eq!(
        r,
        Ok(Fed::Closed {
            consumed: input.len(),
            code: 1000
        })
    );
    assert_eq!(calls.len(), 2);
}

/// One frame of a generated stream.
#[derive(Debug, Clone)]
enum Gen {
    /// A data message: text or binary, cut into fragments at these points, with a
    /// ping after some fragments.
    Message {
        text: bool,
        body: Vec<u8>,
        cuts: Vec<usize>,
        pings: Vec<bool>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn gen_frames() -> impl Strategy<Value = Vec<Gen>> {
    let message = (
        any::<bool>(),
        prop_oneof![
            any::<String>().prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..300),
        ],
        proptest::collection::vec(any::<usize>(), 0..4),
        proptest::collection::vec(any::<bool>(), 0..5),
    )
        .prop_map(|(text, body, cuts, pings)| {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
            cuts.sort_unstable();
            Gen::Message {
                text,
                body,
                cuts,
                pings,
            }
        });
    let control = proptest::collection::vec(any::<u8>(), 0..=125);
    proptest::collection::vec(
        prop_oneof![
            4 => message,
            1 => control.clone().prop_map(Gen::Ping),
            1 => control.prop_map(Gen::Pong),
        ],
        1..5,
    )
}

/// The wire bytes of a generated stream and the calls a correct endpoint makes
/// (`None` if a text body is not UTF-8 — the stream must then fail with 1007).
fn encode(frames: &[Gen], mask: [u8; 4]) -> (Vec<u8>, Option<Vec<Call>>) {
    let mut wire = Vec::new();
    let mut calls = Some(Vec::new());
    for g in frames {
        match g {
            Gen::Ping(p) => {
                wire.extend(client_frame(true, 9, p, mask));
                let pong = server_frame(Opcode::Pong, p).to_vec();
                if let Some(c) = calls.as_mut() {
                    c.push(Call::Control(pong));
                }
            }
            Gen::Pong(p) => wire.extend(client_frame(true, 0xA, p, mask)),
            Gen::Message {
                text,
                body,
                cuts,
                pings,
            } => {
                if *text && std::str::from_utf8(body).is_err() {
                    calls = None;
                }
                let mut bounds = cuts.clone();
                bounds.push(body.len());
                let mut at = 0;
                for (i, &end) in bounds.iter().enumerate() {
                    let fin = i + 1 == bounds.len();
                    let op = if i > 0 {
                        0
                    } else if *text {
                        1
                    } else {
                        2
                    };
                    wire.extend(client_frame(fin, op, &body[at..end], mask));
                    if let Some(c) = calls.as_mut() {
                        c.push(data(*text, &body[at..end], fin));
                    }
                    if !fin && pings.get(i).copied().unwrap_or(false) {
                        wire.extend(client_frame(true, 9, b"p", mask));
                        if let Some(c) = calls.as_mut() {
                            c.push(Call::Control(b"\x8a\x01p".to_vec()));
                        }
                    }
                    at = end;
                }
            }
        }
    }
    (wire, calls)
}

const BIG: WsLimits = WsLimits {
    max_message: 1 << 20,
};

proptest! {
    #[test]
    fn split_at_every_byte_gives_the_same_calls(frames in gen_frames(), mask in any::<[u8; 4]>()) {
        let (wire, want) = encode(&frames, mask);
        let (once, end_once) = drive(&[&wire], &BIG);
        match &want {
            Some(want) => {
                prop_assert_eq!(&once, want);
                prop_assert_eq!(&end_once, &End::Open(0));
            }
            None => prop_assert_eq!(&end_once, &End::Failed(WsError::BadUtf8)),
        }
        for cut in 0..=wire.len() {
            let (calls, end) = drive(&[&wire[..cut], &wire[cut..]], &BIG);
            prop_assert_eq!(&calls, &once, "cut at {}", cut);
            prop_assert_eq!(&end, &end_once, "cut at {}", cut);
        }
        // Byte by byte.
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        let (calls, end) = drive(&bytes, &BIG);
        prop_assert_eq!(&calls, &once);
        prop_assert_eq!(&end, &end_once);
    }

    #[test]
    fn utf8_split_inside_code_points_across_fragments(
            s in "[a-zé€𝄞κόσμε]{0,40}", cuts in proptest::collection::vec(any::<usize>(), 0..6),
            flip in proptest::option::of((any::<usize>(), any::<u8>()))) {
        let mut body = s.into_bytes();
        if let (Some((i, b)), false) = (flip, body.is_empty()) {
            let n = body.len();
            body[i % n] = b;
        }
        let valid = std::str::from_utf8(&body).is_ok();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
        cuts.sort_unstable();
        let (wire, _) = encode(&[Gen::Message { text: true, body, cuts, pings: vec![] }], MASK);
        let (_, end) = drive(&[&wire], &BIG);
        prop_assert_eq!(end == End::Open(0), valid);
        if !valid {
            prop_assert_eq!(end, End::Failed(WsError::BadUtf8));
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                cuts in proptest::collection::vec(any::<usize>(), 0..5),
                                max in 0u32..300) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut at = 0;
        for c in cuts { pieces.push(&bytes[at..c]); at = c; }
        pieces.push(&bytes[at..]);
        let limits = WsLimits { max_message: max };
        let (_, end) = drive(&pieces, &limits);
        let (_, once) = drive(&[&bytes], &limits);
        prop_assert_eq!(end, once);
    }

    #[test]
    fn random_frames_never_panic(ops in proptest::collection::vec(
            (any::<bool>(), 0u8..0x80, proptest::collection::vec(any::<u8>(), 0..140)), 0..8)) {
        let mut wire = Vec::new();
        for (fin, op, payload) in &ops {
            wire.extend(client_frame(*fin, *op, payload, MASK));
        }
        let (_, end) = drive(&[&wire], &WsLimits { max_message: 200 });
        if let End::Failed(e) = end {
            prop_assert!([1002, 1007, 1009].contains(&e.close_code()));
        }
    }
}
