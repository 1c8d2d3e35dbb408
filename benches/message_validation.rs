//! Message bodies: rkyv validation and decode (`Msg::decode`: bytecheck, deserialize,
//! protocol bounds) and encode (`Msg::to_frame`: serialize, frame, pad) for every
//! message kind, with realistic payloads.
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench message_validation
//! cargo bench --bench message_validation -- --warm-up-time 1 --measurement-time 3
//! cargo bench --bench message_validation -- decode/Send      # one kind
//! ```
//!
//! The payloads are what a busy support desk sends: a ~300-byte JWT and three resume
//! cursors in `Hello`, a two-sentence mixed Chinese/English chat message in `Send` and
//! `Deliver`, a 50-entry `HistoryPage`, five canned replies in `Suggestions`, and so
//! on (see `messages()`). Decode input sits in a 16-aligned buffer, as a complete frame
//! in the reactor's read buffer does; `decode_unaligned/Send` measures the copy to an
//! aligned buffer that a misaligned payload costs. Throughput is payload bytes and
//! messages per second.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rkyv::util::AlignedVec;
use switchboard::frame;
use switchboard::protocol::Msg;
use switchboard::protocol::messages::{
    Accepted, Assigned, Bye, Claim, Close, Cursor, Deliver, Entry, Error, Hello, History,
    HistoryPage, Notice, Ping, Pong, Presence, Queued, Rate, Receipt, Resumed, Send, Suggest,
    Suggestion, Suggestions, Transfer, Typing, Welcome, content, flags, presence, receipt, role,
};

/// Server time used in every timestamp (2026-11-22).
const NOW_MS: u64 = 1_795_000_000_000;
/// A chat message: two sentences, mixed scripts (UTF-8, 100-odd bytes).
const CHAT: &str = "你好，我的订单 #4411-2098 昨天显示已发货，但是物流信息一直没有更新。Could you check where it is? Thanks!";

/// A JWT of realistic size (header.claims.signature, base64url).
fn jwt() -> String {
    let header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InByaW1hcnktMjAyNiJ9";
    let claims = "eyJzdWIiOiJ2aXNpdG9yLThmM2EyYzkxIiwibmFtZSI6Ilpob3UgTGVpIiwicm9sZSI6InZpc2l0b3IiLCJ0ZW5hbnQiOiJhY21lLXNob3AiLCJncm91cHMiOlsiYmlsbGluZyIsInNoaXBwaW5nIl0sImlhdCI6MTc5NDk5OTkwMCwiZXhwIjoxNzk1MDAzNTAwfQ";
    let sig = "tR0m3a9Yq8cK2xVZ5sF1bH7nJ4wL6pD0eG9uQ3iO2kM";
    format!("{header}.{claims}.{sig}")
}

/// One realistic message of every kind.
fn messages() -> Vec<Msg> {
    let history: Vec<Entry> = (0..50u64)
        .map(|i| Entry {
            seq: 100 + i,
            time_ms: NOW_MS - (50 - i) * 20_000,
            kind: 16,
            sender_role: if i % 2 == 0 {
                role::VISITOR
            } else {
                role::AGENT
            },
            content_type: content::TEXT,
            flags: 0,
            sender: if i % 2 == 0 {
                "visitor-8f3a2c91".into()
            } else {
                "agent-li.na".into()
            },
            body: CHAT.chars().take(20 + (i as usize * 7) % 50).collect(),
        })
        .collect();
    vec![
        Hello {
            protocol: 1,
            token: jwt(),
            client: "switchboard-sdk-rust/0.1.0 (linux; x86_64)".into(),
            resume: (0..3)
                .map(|i| Cursor {
                    conversation: 88_000 + i,
                    last_seq: 140 + i * 3,
                })
                .collect(),
        }
        .into(),
        Welcome {
            protocol: 1,
            role: role::AGENT,
            heartbeat_ms: 30_000,
            idle_timeout_ms: 90_000,
            max_frame: 1 << 20,
            session: 0x1f2e_3d4c_5b6a_7988,
            server_time_ms: NOW_MS,
            user: "agent-li.na".into(),
            name: "Li Na".into(),
            tenant: "acme-shop".into(),
            groups: vec!["billing".into(), "shipping".into()],
            resumed: (0..3)
                .map(|i| Resumed {
                    conversation: 88_000 + i,
                    from_seq: 140 + i * 3,
                    recovered: true,
                })
                .collect(),
        }
        .into(),
        Ping {
            stamp: NOW_MS,
            data: vec![0x5a; 16],
        }
        .into(),
        Pong {
            stamp: NOW_MS,
            data: vec![0x5a; 16],
        }
        .into(),
        Error {
            code: 403,
            retryable: false,
            conversation: 88_001,
            message: "conversation 88001 is assigned to another agent".into(),
        }
        .into(),
        Bye {
            code: 501,
            message: "server shutting down".into(),
        }
        .into(),
        Send {
            content_type: content::TEXT,
            conversation: 88_001,
            client_msg_id: 0x0000_0193_5d2a_77f1,
            group: String::new(),
            body: CHAT.into(),
        }
        .into(),
        Accepted {
            client_msg_id: 0x0000_0193_5d2a_77f1,
            conversation: 88_001,
            seq: 151,
            time_ms: NOW_MS,
        }
        .into(),
        Deliver {
            sender_role: role::VISITOR,
            content_type: content::TEXT,
            flags: flags::FLAGGED,
            conversation: 88_001,
            seq: 151,
            time_ms: NOW_MS,
            client_msg_id: 0x0000_0193_5d2a_77f1,
            sender: "visitor-8f3a2c91".into(),
            body: CHAT.into(),
        }
        .into(),
        Receipt {
            status: receipt::READ,
            conversation: 88_001,
            seq: 151,
            user: "agent-li.na".into(),
        }
        .into(),
        Typing {
            typing: true,
            conversation: 88_001,
            user: "agent-li.na".into(),
        }
        .into(),
        Queued {
            position: 4,
            conversation: 88_002,
            group: "shipping".into(),
        }
        .into(),
        Assigned {
            conversation: 88_002,
            seq: 2,
            agent: "agent-li.na".into(),
            agent_name: "Li Na".into(),
            group: "shipping".into(),
            visitor: "visitor-8f3a2c91".into(),
            visitor_name: "Zhou Lei".into(),
        }
        .into(),
        Transfer {
            conversation: 88_002,
            to_agent: String::new(),
            to_group: "billing".into(),
            note: "Customer asks for a refund of the shipping fee; order #4411-2098.".into(),
        }
        .into(),
        Claim {
            conversation: 88_003,
        }
        .into(),
        Close {
            conversation: 88_002,
            seq: 0,
            reason: "resolved".into(),
        }
        .into(),
        Rate {
            score: 5,
            conversation: 88_002,
            comment: "很快就解决了，谢谢！".into(),
        }
        .into(),
        Presence {
            status: presence::AWAY,
            user: "agent-li.na".into(),
        }
        .into(),
        History {
            limit: 50,
            conversation: 88_001,
            before_seq: 0,
        }
        .into(),
        HistoryPage {
            more: true,
            conversation: 88_001,
            entries: history,
        }
        .into(),
        Suggest {
            limit: 5,
            faq: false,
            conversation: 88_001,
            prefix: "物流".into(),
        }
        .into(),
        Suggestions {
            prefix: "物流".into(),
            items: (0..5u32)
                .map(|i| Suggestion {
                    id: 300 + i,
                    uses: 1_000 / (i + 1),
                    text: format!("物流信息通常在发货后 24 小时内更新（模板 {i}），请耐心等待。"),
                })
                .collect(),
        }
        .into(),
        Notice {
            time_ms: NOW_MS,
            group: String::new(),
            from: "admin-ops".into(),
            text: "Scheduled maintenance tonight 02:00-02:30 UTC+8: conversations stay open, \
                   history may load slowly. 今晚 02:00-02:30 系统维护，会话不受影响。"
                .into(),
        }
        .into(),
    ]
}

/// A message's name (its kind) for the benchmark id.
fn name(m: &Msg) -> String {
    format!("{:?}", m.kind())
}

/// The archived payload of `m`, in a 16-aligned buffer.
fn aligned_payload(m: &Msg) -> AlignedVec<16> {
    let f = m.to_frame(7);
    let d = frame::decode(&f, u32::MAX)
        .expect("own frame")
        .expect("whole frame");
    let mut v = AlignedVec::<16>::with_capacity(d.payload.len());
    v.extend_from_slice(d.payload);
    v
}

fn bench_decode(c: &mut Criterion, msgs: &[Msg]) {
    let mut g = c.benchmark_group("msg/decode");
    for m in msgs {
        let kind = m.kind().as_u8();
        let payload = aligned_payload(m);
        assert_eq!(&Msg::decode(kind, &payload).expect("valid"), m);
        g.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: payload.len() as u64,
        });
        g.bench_with_input(BenchmarkId::from_parameter(name(m)), &payload, |b, p| {
            b.iter(|| Msg::decode(black_box(kind), black_box(&p[..])).expect("valid"));
        });
    }
    g.finish();

    // The same Send payload one byte off alignment: decode copies it first.
    let mut g = c.benchmark_group("msg/decode_unaligned");
    let send = msgs
        .iter()
        .find(|m| matches!(m, Msg::Send(_)))
        .expect("a Send");
    let payload = aligned_payload(send);
    let mut shifted = AlignedVec::<16>::with_capacity(payload.len() + 1);
    shifted.push(0);
    shifted.extend_from_slice(&payload);
    let off = &shifted[1..];
    assert_eq!(&Msg::decode(send.kind().as_u8(), off).expect("valid"), send);
    g.throughput(Throughput::ElementsAndBytes {
        elements: 1,
        bytes: payload.len() as u64,
    });
    g.bench_function(name(send), |b| {
        b.iter(|| Msg::decode(black_box(send.kind().as_u8()), black_box(off)).expect("valid"));
    });
    g.finish();
}

fn bench_encode(c: &mut Criterion, msgs: &[Msg]) {
    let mut g = c.benchmark_group("msg/to_frame");
    for m in msgs {
        let wire = m.to_frame(7).len();
        g.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: wire as u64,
        });
        g.bench_with_input(BenchmarkId::from_parameter(name(m)), m, |b, m| {
            b.iter(|| black_box(m).to_frame(black_box(7)));
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let msgs = messages();
    bench_decode(c, &msgs);
    bench_encode(c, &msgs);
}

criterion_group!(validation, benches);
criterion_main!(validation);
