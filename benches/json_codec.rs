//! The JSON dialect's conversions (`protocol::json`): `frame_to_json` (run on the
//! reactor thread once per outbound message and dialect) and `json_to_frame` (once per
//! inbound text), for a typical `Deliver` and `Send` (a 100-byte chat line) and a
//! 4 KiB one, beside the binary encoder `Msg::to_frame` for scale.
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench json_codec
//! cargo bench --bench json_codec -- --warm-up-time 1 --measurement-time 3   # shorter
//! ```
//!
//! Criterion prints messages per second (`elem/s`) and JSON bytes per second.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard::protocol::Msg;
use switchboard::protocol::json::{JsonLimits, frame_to_json, json_to_frame};
use switchboard::protocol::messages::{Deliver, Send, content, role};

fn body(len: usize) -> String {
    "Where is my order? It was due on Monday — 谢谢! "
        .chars()
        .cycle()
        .scan(0, |n, c| {
            *n += c.len_utf8();
            (*n <= len).then_some(c)
        })
        .collect()
}

fn messages(len: usize) -> [(&'static str, Msg, u32); 2] {
    [
        (
            "deliver",
            Deliver {
                sender_role: role::AGENT,
                content_type: content::TEXT,
                flags: 0,
                conversation: 1_234_567_890_123,
                seq: 42,
                time_ms: 1_767_225_600_000,
                client_msg_id: 77,
                sender: "agent-17".into(),
                body: body(len),
            }
            .into(),
            0,
        ),
        (
            "send",
            Send {
                content_type: content::TEXT,
                conversation: 1_234_567_890_123,
                client_msg_id: 9_007_199_254_740_993,
                group: String::new(),
                body: body(len),
            }
            .into(),
            7,
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let limits = JsonLimits::default();
    for len in [100, 4096] {
        let mut g = c.benchmark_group(format!("json_codec/body_{len}B"));
        for (name, msg, rid) in messages(len) {
            let frame = msg.to_frame(rid);
            let json = frame_to_json(&frame).unwrap();
            g.throughput(Throughput::Elements(1));
            g.bench_function(format!("{name}/to_frame (binary encode)"), |b| {
                b.iter(|| black_box(msg.to_frame(black_box(rid))))
            });
            g.bench_function(format!("{name}/frame_to_json"), |b| {
                b.iter(|| black_box(frame_to_json(black_box(&frame)).unwrap()))
            });
            g.bench_function(format!("{name}/json_to_frame"), |b| {
                b.iter(|| black_box(json_to_frame(black_box(&json), &limits).unwrap()))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
