//! Fuzz target for message-body decoding (`switchboard::protocol::Msg::decode`).
//!
//! The input's first byte is the frame header's kind byte; the rest is the payload.
//! The payload is decoded twice: copied to a 16-aligned address (`Msg::decode`
//! validates it in place) and copied to an odd address, 1 to 15 bytes past one
//! (`Msg::decode` copies it to an aligned buffer first). The target asserts that:
//! - both give the same answer: the same message, or errors of the same variant for
//!   the same kind (and, for a bound, the same field);
//! - an unknown kind byte gives `UnknownKind`, and a known one never does;
//! - a decoded message has the kind it was decoded under, and its re-encoding
//!   (`to_payload`, and `to_frame` through `frame::decode`) decodes to an equal
//!   message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::bench_support::{DecodeOutcome as Outcome, decode_at};
use switchboard::frame::{self, MAX_PAYLOAD_LIMIT};
use switchboard::protocol::{Kind, Msg};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, payload)) = data.split_first() else {
        return;
    };
    let aligned = decode_at(kind, payload, 0);
    // An odd offset that varies with the length: 1, 3, ..., 15.
    let odd = 1 + 2 * (payload.len() % 8);
    let misaligned = decode_at(kind, payload, odd);
    assert_eq!(
        aligned, misaligned,
        "aligned and misaligned (offset {odd}) decoding disagree"
    );
    match aligned {
        Outcome::UnknownKind(k) => {
            assert_eq!(k, kind);
            assert!(
                Kind::from_u8(kind).is_none(),
                "known kind {kind} reported unknown"
            );
        }
        Outcome::Ok(msg) => {
            assert_eq!(msg.kind().as_u8(), kind, "decoded as another kind");
            let again = msg.to_payload();
            assert_eq!(
                decode_at(kind, &again, 0),
                Outcome::Ok(msg.clone()),
                "re-encoded payload decodes differently"
            );
            let wire = msg.to_frame(1);
            let d = match frame::decode(&wire, MAX_PAYLOAD_LIMIT) {
                Ok(Some(d)) => d,
                other => panic!("to_frame gave an undecodable frame: {other:?}"),
            };
            assert_eq!(d.header.kind, kind);
            assert_eq!(d.payload, again.as_slice());
            assert_eq!(
                Outcome::from(Msg::decode(kind, d.payload)),
                Outcome::Ok(msg),
                "re-encoded frame decodes differently"
            );
        }
        Outcome::Invalid(k) | Outcome::Bound(k, _, _) => assert_eq!(k.as_u8(), kind),
    }
});
