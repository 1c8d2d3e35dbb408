//! Fuzz target for the frame decoder and the incremental deframer (`switchboard::frame`).
//!
//! The input is a stream. Its first byte picks the payload limit and how the rest is
//! cut into reads:
//!
//! ```text
//! bit 7-6  payload limit: 0 = 1024, 1 = 1 MiB (the default), 2 = 64, 3 = 0
//! bit 5    0 = fixed-size reads of k bytes (k = 0: the whole stream at once)
//!          1 = reads of varying sizes (1..=40 bytes) from a generator seeded with k
//! bit 4-0  k
//! ```
//!
//! The rest is decoded twice: one-shot, by calling `frame::decode` from the start
//! until it stops, and incrementally, by feeding the reads to `frame::deframe`. The
//! target asserts that:
//! - `decode` never reports `consumed` past the buffer, and each frame is consistent:
//!   `consumed == header.wire_len()`, a multiple of 16; payload length == `header.len`
//!   <= the limit; and re-encoding the frame gives back exactly its bytes;
//! - between reads the deframer's spill is empty or shorter than the frame it is
//!   collecting, and every frame it yields has payload length == `header.len`;
//! - both ways yield the same frames and stop with the same error, and when there is
//!   no error the spill holds exactly the incomplete rest one-shot decoding left.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::bench_support::decode_stream;
use switchboard::frame::{self, FrameError, FrameHeader, HEADER_LEN};

/// Payload limits selected by the top two bits of the first byte.
const LIMITS: [u32; 4] = [1024, 1024 * 1024, 64, 0];

type Frames = Vec<(FrameHeader, Vec<u8>)>;

fuzz_target!(|data: &[u8]| {
    let Some((&pattern, stream)) = data.split_first() else {
        return;
    };
    let max = LIMITS[usize::from(pattern >> 6)];
    let (frames, error, stopped_at) = one_shot(stream, max);
    let (d_frames, d_error, spill) = incremental(stream, pattern, max);
    assert_eq!(d_frames, frames, "deframe and decode disagree on frames");
    assert_eq!(d_error, error, "deframe and decode disagree on the error");
    if error.is_none() {
        assert_eq!(
            spill,
            &stream[stopped_at..],
            "spill is not the incomplete rest"
        );
        if stopped_at == stream.len() {
            assert_eq!(spill.capacity(), 0, "spill still allocated between frames");
        }
    }
});

/// Decodes frames from the start of `buf` until `decode` stops, checking each
/// (`decode_stream`); returns the frames, the error (if that is why it stopped) and
/// the offset where it stopped.
fn one_shot(buf: &[u8], max: u32) -> (Frames, Option<FrameError>, usize) {
    let s = decode_stream(buf, max).unwrap_or_else(|e| panic!("{e}"));
    (s.frames, s.error, s.stopped_at)
}

/// Feeds `buf` to `frame::deframe` in the reads `pattern` describes, stopping at the
/// first error; returns the frames, the error and the final spill.
fn incremental(buf: &[u8], pattern: u8, max: u32) -> (Frames, Option<FrameError>, Vec<u8>) {
    let mut spill = Vec::new();
    let mut frames: Frames = Vec::new();
    let mut reads = Reads::new(pattern);
    let mut rest = buf;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(reads.next_len().min(rest.len()));
        rest = tail;
        let r = frame::deframe(&mut spill, chunk, max, |h, p| {
            assert_eq!(p.len(), h.len as usize, "deframe payload length");
            assert!(h.len <= max, "deframe payload over the limit");
            frames.push((h, p.to_vec()));
            true
        });
        if let Err(e) = r {
            return (frames, Some(e), spill);
        }
        let need = match spill.first_chunk::<HEADER_LEN>() {
            Some(raw) => match FrameHeader::parse(raw, max) {
                Ok(h) => h.wire_len(),
                Err(e) => panic!("spill keeps a bad header: {e}"),
            },
            None => HEADER_LEN,
        };
        assert!(
            spill.len() < need,
            "spill holds {} bytes of a {need}-byte frame",
            spill.len()
        );
    }
    (frames, None, spill)
}

/// Read sizes described by the pattern byte.
struct Reads {
    varying: bool,
    k: usize,
    state: u32,
}

impl Reads {
    fn new(pattern: u8) -> Self {
        let k = usize::from(pattern & 0x1f);
        Self {
            varying: pattern & 0x20 != 0,
            k,
            state: (0x9e37_79b9 ^ (k as u32).wrapping_mul(0x85eb_ca6b)) | 1,
        }
    }

    fn next_len(&mut self) -> usize {
        if !self.varying {
            return if self.k == 0 { usize::MAX } else { self.k };
        }
        // xorshift32
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        1 + (self.state % 40) as usize
    }
}
