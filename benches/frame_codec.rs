//! Frame codec throughput: `frame::encode`, `frame::decode` and the incremental
//! `frame::deframe` over a buffer of many frames, for payloads of 16 B to 16 KiB and a
//! mixed buffer of all of them.
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench frame_codec
//! cargo bench --bench frame_codec -- --warm-up-time 1 --measurement-time 3   # shorter
//! ```
//!
//! Each buffer holds about 1 MiB of frames (at least 64). Throughput is reported both in
//! bytes (wire bytes: header, payload and padding) and in frames (criterion prints
//! `elem/s`). `deframe` is fed the buffer in 64 KiB chunks, the size of a reactor's read
//! buffer, so frames that straddle a chunk boundary go through the spill path exactly as
//! they do in the daemon.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchboard::frame::{self, FrameHeader};

/// Payload sizes measured one at a time.
const SIZES: [usize; 6] = [16, 64, 256, 1024, 4096, 16 * 1024];
/// Target size of each frame buffer.
const BUFFER_BYTES: usize = 1 << 20;
/// Fewest frames in a buffer.
const MIN_FRAMES: usize = 64;
/// The reactor's default read buffer (`reactor.read_buffer_bytes`).
const READ_CHUNK: usize = 64 * 1024;
/// The default `limits.max_frame_bytes`.
const MAX_PAYLOAD: u32 = 1 << 20;
/// A message kind (Send); the framing layer does not interpret it.
const KIND: u8 = 16;

/// Deterministic, incompressible-looking payload bytes.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One input set: the payloads, and the same payloads framed back to back.
struct Set {
    name: String,
    payloads: Vec<Vec<u8>>,
    stream: Vec<u8>,
}

impl Set {
    fn new(name: String, sizes: impl Iterator<Item = usize>) -> Self {
        let payloads: Vec<Vec<u8>> = sizes
            .enumerate()
            .map(|(i, len)| payload(len, i as u64 + 7))
            .collect();
        let mut stream = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            stream.extend_from_slice(&frame::encode(FrameHeader::new(KIND, 0, i as u32), p));
        }
        Self {
            name,
            payloads,
            stream,
        }
    }

    fn throughput(&self) -> Throughput {
        Throughput::ElementsAndBytes {
            elements: self.payloads.len() as u64,
            bytes: self.stream.len() as u64,
        }
    }
}

fn sets() -> Vec<Set> {
    let mut out: Vec<Set> = SIZES
        .iter()
        .map(|&size| {
            let wire = frame::HEADER_LEN + size.next_multiple_of(frame::ALIGN);
            let n = (BUFFER_BYTES / wire).max(MIN_FRAMES);
            Set::new(format!("{size}B"), std::iter::repeat_n(size, n))
        })
        .collect();
    // Mixed: every size in turn, as many rounds as fit in the buffer size.
    let round: usize = SIZES.iter().map(|s| s + frame::HEADER_LEN).sum();
    let rounds = (BUFFER_BYTES / round).max(1);
    out.push(Set::new(
        "mixed".into(),
        SIZES.iter().copied().cycle().take(rounds * SIZES.len()),
    ));
    out
}

fn bench_encode(c: &mut Criterion, sets: &[Set]) {
    let mut g = c.benchmark_group("frame/encode");
    for set in sets {
        g.throughput(set.throughput());
        g.bench_with_input(BenchmarkId::from_parameter(&set.name), set, |b, set| {
            b.iter(|| {
                let mut wire = 0usize;
                for (i, p) in set.payloads.iter().enumerate() {
                    let f: Bytes = frame::encode(FrameHeader::new(KIND, 0, i as u32), p);
                    wire += black_box(f).len();
                }
                wire
            });
        });
    }
    g.finish();
}

fn bench_decode(c: &mut Criterion, sets: &[Set]) {
    let mut g = c.benchmark_group("frame/decode");
    for set in sets {
        g.throughput(set.throughput());
        g.bench_with_input(BenchmarkId::from_parameter(&set.name), set, |b, set| {
            b.iter(|| {
                let mut rest = black_box(&set.stream[..]);
                let mut frames = 0usize;
                let mut bytes = 0usize;
                while let Some(f) = frame::decode(rest, MAX_PAYLOAD).expect("valid stream") {
                    frames += 1;
                    bytes += f.payload.len();
                    rest = &rest[f.consumed..];
                }
                assert_eq!(frames, set.payloads.len());
                bytes
            });
        });
    }
    g.finish();
}

fn bench_deframe(c: &mut Criterion, sets: &[Set]) {
    let mut g = c.benchmark_group("frame/deframe_64k_reads");
    for set in sets {
        g.throughput(set.throughput());
        g.bench_with_input(BenchmarkId::from_parameter(&set.name), set, |b, set| {
            b.iter(|| {
                let mut spill = Vec::new();
                let mut frames = 0usize;
                let mut bytes = 0usize;
                for chunk in black_box(&set.stream[..]).chunks(READ_CHUNK) {
                    frame::deframe(&mut spill, chunk, MAX_PAYLOAD, |_h, p| {
                        frames += 1;
                        bytes += black_box(p).len();
                        true
                    })
                    .expect("valid stream");
                }
                assert_eq!(frames, set.payloads.len());
                assert!(spill.is_empty());
                bytes
            });
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let sets = sets();
    bench_encode(c, &sets);
    bench_decode(c, &sets);
    bench_deframe(c, &sets);
}

criterion_group!(codec, benches);
criterion_main!(codec);
