//! Property tests for the frame codec (`switchboard::frame`).
//!
//! - `encode` then `decode` gives back every header field and the payload, and the
//!   wire bytes are exactly the re-encoding of what was decoded;
//! - arbitrary (and mutated, truncated) bytes through `decode` and `frame::deframe`
//!   return `Ok` or `Err` but never panic, and `decode` never reports `consumed` past
//!   the buffer or a payload that disagrees with its header;
//! - splitting a byte stream at arbitrary points and feeding the pieces to
//!   `frame::deframe` gives exactly what one-shot decoding gives: the same frames, then
//!   the same error or the same incomplete rest in the spill (empty and unallocated
//!   after a stream of whole frames).

use proptest::prelude::*;
use proptest::sample::Index;
use switchboard::bench_support::{DecodedStream, decode_stream};
use switchboard::frame::{
    self, FrameError, FrameHeader, HEADER_LEN, MAX_PAYLOAD_LIMIT, decode, encode,
};

type Frames = Vec<(FrameHeader, Vec<u8>)>;

/// One-shot decoding of a whole buffer, every frame checked (`decode_stream`).
fn decode_all(buf: &[u8], max: u32) -> DecodedStream {
    decode_stream(buf, max).unwrap_or_else(|e| panic!("{e}"))
}

/// Feeds `buf` to `frame::deframe` cut at `cuts` (sorted offsets), stopping at the
/// first error; returns the frames, the error and the final spill.
fn deframe_split(buf: &[u8], cuts: &[usize], max: u32) -> (Frames, Option<FrameError>, Vec<u8>) {
    let mut spill = Vec::new();
    let mut frames = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&buf.len())) {
        let r = frame::deframe(&mut spill, &buf[from..to], max, |h, p| {
            frames.push((h, p.to_vec()));
            true
        });
        if let Err(e) = r {
            return (frames, Some(e), spill);
        }
        // Between calls the spill holds less than one frame.
        let need = match spill.first_chunk::<HEADER_LEN>() {
            Some(raw) => FrameHeader::parse(raw, max).unwrap().wire_len(),
            None => HEADER_LEN,
        };
        assert!(
            spill.is_empty() || spill.len() < need,
            "spill holds a whole frame"
        );
        from = to;
    }
    (frames, None, spill)
}

/// Sorted cut offsets into a buffer of `len` bytes.
fn cuts_for(len: usize, picks: &[Index]) -> Vec<usize> {
    let mut cuts: Vec<usize> = picks.iter().map(|i| i.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

fn header() -> impl Strategy<Value = FrameHeader> {
    (
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(kind, flags, status, len, request_id)| FrameHeader {
            kind,
            flags,
            status,
            len,
            request_id,
        })
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    // Mostly small, sometimes a few KiB; lengths around multiples of 16 matter most.
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..=48),
        1 => proptest::collection::vec(any::<u8>(), 0..=4096),
    ]
}

/// Several encoded frames laid end to end, with what they encode.
fn stream() -> impl Strategy<Value = (Vec<u8>, Frames)> {
    proptest::collection::vec((header(), payload()), 1..6).prop_map(|frames| {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (h, p) in frames {
            wire.extend_from_slice(&encode(h, &p));
            let h = FrameHeader {
                len: u32::try_from(p.len()).unwrap(),
                ..h
            };
            expected.push((h, p));
        }
        (wire, expected)
    })
}

fn max_payload() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(16),
        Just(1024),
        Just(MAX_PAYLOAD_LIMIT),
        Just(u32::MAX),
        any::<u32>(),
    ]
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(h in header(), p in payload()) {
        let wire = encode(h, &p);
        let len = u32::try_from(p.len()).unwrap();
        prop_assert_eq!(wire.len(), HEADER_LEN + p.len().next_multiple_of(16));
        prop_assert!(wire[HEADER_LEN + p.len()..].iter().all(|&b| b == 0), "padding");
        for max in [len, MAX_PAYLOAD_LIMIT, u32::MAX] {
            let d = decode(&wire, max).unwrap().unwrap();
            prop_assert_eq!(d.header, FrameHeader { len, ..h });
            prop_assert_eq!(d.payload, p.as_slice());
            prop_assert_eq!(d.consumed, wire.len());
            // The encoding is canonical: re-encoding what was decoded gives the bytes.
            prop_assert_eq!(encode(d.header, d.payload), wire.clone());
        }
        if let Some(max) = len.checked_sub(1) {
            prop_assert_eq!(decode(&wire, max), Err(FrameError::TooLarge { len, max }));
        }
    }

    #[test]
    fn header_bytes_round_trip(h in header()) {
        prop_assert_eq!(FrameHeader::parse(&h.to_bytes(), u32::MAX), Ok(h));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        max in max_payload(),
        picks in proptest::collection::vec(any::<Index>(), 0..6),
    ) {
        // `decode_all` asserts `consumed` and payload bounds on every frame found.
        let one = decode_all(&bytes, max);
        let (frames, error, _) = deframe_split(&bytes, &cuts_for(bytes.len(), &picks), max);
        prop_assert_eq!(frames, one.frames);
        prop_assert_eq!(error, one.error);
    }

    #[test]
    fn bytes_that_look_like_frames_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        len in any::<u32>(),
        max in max_payload(),
    ) {
        // A valid magic and version, so decoding gets past the first checks.
        let mut buf = b"SB\x01".to_vec();
        buf.extend_from_slice(&bytes);
        if let Some(l) = buf.get_mut(8..12) {
            l.copy_from_slice(&(len % 64).to_le_bytes());
        }
        let one = decode_all(&buf, max);
        let (frames, error, _) = deframe_split(&buf, &[], max);
        prop_assert_eq!(frames, one.frames);
        prop_assert_eq!(error, one.error);
    }

    #[test]
    fn split_stream_yields_the_one_shot_frames(
        (wire, expected) in stream(),
        picks in proptest::collection::vec(any::<Index>(), 0..12),
    ) {
        let one = decode_all(&wire, MAX_PAYLOAD_LIMIT);
        prop_assert_eq!(&one.frames, &expected);
        prop_assert_eq!(one.error, None);
        prop_assert_eq!(one.stopped_at, wire.len());

        let cuts = cuts_for(wire.len(), &picks);
        let (frames, error, spill) = deframe_split(&wire, &cuts, MAX_PAYLOAD_LIMIT);
        prop_assert_eq!(frames, expected);
        prop_assert_eq!(error, None);
        prop_assert!(spill.is_empty(), "spill left with {} bytes", spill.len());
        prop_assert_eq!(spill.capacity(), 0, "spill still allocated");
    }

    #[test]
    fn split_mutated_stream_agrees_with_one_shot(
        (wire, _) in stream(),
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 0..4),
        truncate in proptest::option::of(any::<Index>()),
        picks in proptest::collection::vec(any::<Index>(), 0..12),
        max in prop_oneof![Just(0u32), Just(64), Just(4096), Just(MAX_PAYLOAD_LIMIT)],
    ) {
        let mut wire = wire;
        for (at, byte) in edits {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        if let Some(t) = truncate {
            wire.truncate(t.index(wire.len() + 1));
        }
        let one = decode_all(&wire, max);
        let cuts = cuts_for(wire.len(), &picks);
        let (frames, error, spill) = deframe_split(&wire, &cuts, max);
        prop_assert_eq!(&frames, &one.frames);
        prop_assert_eq!(error, one.error);
        if error.is_none() {
            // Whatever one-shot decoding could not finish is exactly what is spilled.
            prop_assert_eq!(spill.as_slice(), &wire[one.stopped_at..]);
        }
    }

    #[test]
    fn deframe_stops_when_asked(
        (wire, expected) in stream(),
        stop_after in 1usize..6,
        picks in proptest::collection::vec(any::<Index>(), 0..4),
    ) {
        let mut spill = Vec::new();
        let mut seen = 0usize;
        let mut from = 0;
        for &to in cuts_for(wire.len(), &picks).iter().chain(std::iter::once(&wire.len())) {
            if seen >= stop_after {
                break;
            }
            frame::deframe(&mut spill, &wire[from..to], MAX_PAYLOAD_LIMIT, |_, _| {
                seen += 1;
                seen < stop_after
            })
            .unwrap();
            from = to;
        }
        prop_assert_eq!(seen, stop_after.min(expected.len()));
    }
}
