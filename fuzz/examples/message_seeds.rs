//! Writes the seed corpus of the `message_decode` fuzz target: for every message kind,
//! `seed-<kind>-default` (all fields zero/empty) and `seed-<kind>-full` (every field
//! set: non-ASCII strings on both sides of rkyv's 8-byte inline limit, vectors of two
//! or three elements), plus `seed-bad-*` messages that each break one protocol bound.
//! (The defaults of `Send`, `Rate`, `Receipt` and `Presence` break a bound too: their
//! zero codes or empty body are out of range.)
//! Each file is the kind byte followed by the archived payload (`Msg::to_payload`).
//!
//! Run by `../make_seeds.py`, or directly:
//! `cargo run --manifest-path fuzz/Cargo.toml --example message_seeds -- fuzz/corpus/message_decode`.
//! Deterministic: the same build writes the same bytes. Before writing, it checks
//! that each full seed decodes to its message, each bad one to `DecodeError::Bound` on
//! the expected field, and each default one to its message or a bound error. It rewrites only the files it names.

use std::path::PathBuf;

use switchboard::protocol::messages::{
    self as m, MAX_SHORT, content, flags, presence, receipt, role,
};
use switchboard::protocol::{DecodeError, Kind, Msg};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: message_seeds <corpus/message_decode directory>")?,
    );
    std::fs::create_dir_all(&out)?;
    if (INLINE_8.len(), OUT_9.len()) != (8, 9) {
        return Err("INLINE_8/OUT_9 must be 8 and 9 bytes long".into());
    }

    let mut seeds: Vec<(String, Msg)> = Vec::new();
    for kind in (0..=u8::MAX).filter_map(Kind::from_u8) {
        let name = format!("{kind:?}").to_lowercase();
        seeds.push((format!("{name}-default"), default_of(kind)));
        seeds.push((format!("{name}-full"), full_of(kind)));
    }
    for (name, msg, _) in bad() {
        seeds.push((name.to_string(), msg));
    }

    for (name, msg) in &seeds {
        let decoded = Msg::decode(msg.kind().as_u8(), &msg.to_payload());
        let expected = match &decoded {
            Ok(back) => !name.starts_with("bad-") && back == msg,
            // The defaults of kinds with bounds break them (an empty `Send.body`, a
            // zero `Rate.score`...): still good seeds for the paths around the checks.
            Err(DecodeError::Bound { field, .. }) => {
                name.ends_with("-default") || bad().iter().any(|(n, _, f)| n == name && f == field)
            }
            Err(_) => false,
        };
        if !expected {
            return Err(format!("seed {name} decodes as {decoded:?}").into());
        }
    }
    for (name, msg) in &seeds {
        let mut bytes = vec![msg.kind().as_u8()];
        bytes.extend_from_slice(&msg.to_payload());
        std::fs::write(out.join(format!("seed-{name}")), bytes)?;
    }
    let written = seeds.len();
    println!("wrote {written} seeds to {}", out.display());
    Ok(())
}

/// The all-default message of `kind` (exhaustive: a new kind needs seeds).
fn default_of(kind: Kind) -> Msg {
    match kind {
        Kind::Hello => m::Hello::default().into(),
        Kind::Welcome => m::Welcome::default().into(),
        Kind::Ping => m::Ping::default().into(),
        Kind::Pong => m::Pong::default().into(),
        Kind::Error => m::Error::default().into(),
        Kind::Bye => m::Bye::default().into(),
        Kind::Send => m::Send::default().into(),
        Kind::Accepted => m::Accepted::default().into(),
        Kind::Deliver => m::Deliver::default().into(),
        Kind::Receipt => m::Receipt::default().into(),
        Kind::Typing => m::Typing::default().into(),
        Kind::Queued => m::Queued::default().into(),
        Kind::Assigned => m::Assigned::default().into(),
        Kind::Transfer => m::Transfer::default().into(),
        Kind::Claim => m::Claim::default().into(),
        Kind::Close => m::Close::default().into(),
        Kind::Rate => m::Rate::default().into(),
        Kind::Presence => m::Presence::default().into(),
        Kind::History => m::History::default().into(),
        Kind::HistoryPage => m::HistoryPage::default().into(),
        Kind::Suggest => m::Suggest::default().into(),
        Kind::Suggestions => m::Suggestions::default().into(),
        Kind::Notice => m::Notice::default().into(),
        Kind::Refresh => m::Refresh::default().into(),
        Kind::Refreshed => m::Refreshed::default().into(),
        Kind::Note => m::Note::default().into(),
        Kind::Availability => m::Availability::default().into(),
        Kind::Watch => m::Watch::default().into(),
        Kind::WrongReply => m::WrongReply::default().into(),
        Kind::ListConversations => m::ListConversations::default().into(),
        Kind::ConversationList => m::ConversationList::default().into(),
        Kind::Disconnect => m::Disconnect::default().into(),
        Kind::Disconnected => m::Disconnected::default().into(),
    }
}

/// Strings around the 8-byte inline limit: 8 bytes (inline) and 9 bytes (out of line).
const INLINE_8: &str = "ağent-1"; // 8 bytes
const OUT_9: &str = "grüppe-1"; // 9 bytes

/// A message of `kind` with every field set (and within its bounds).
fn full_of(kind: Kind) -> Msg {
    let s = |v: &str| v.to_string();
    match kind {
        Kind::Hello => m::Hello {
            protocol: 1,
            token: s("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ2LTQyIn0.c2lnbmF0dXJl"),
            client: s("widget/2.3 (日本語)"),
            resume: vec![
                m::Cursor {
                    conversation: 7,
                    last_seq: 41,
                },
                m::Cursor {
                    conversation: u64::MAX,
                    last_seq: 0,
                },
            ],
        }
        .into(),
        Kind::Welcome => m::Welcome {
            protocol: 1,
            role: role::AGENT,
            heartbeat_ms: 25_000,
            idle_timeout_ms: 75_000,
            max_frame: 1 << 20,
            session: 0x0123_4567_89ab_cdef,
            server_time_ms: 1_767_225_600_000,
            user: s(INLINE_8),
            name: s("Zoë Ångström"),
            tenant: s("acme"),
            groups: vec![s("billing"), s(OUT_9), s("")],
            resumed: vec![
                m::Resumed {
                    conversation: 7,
                    from_seq: 41,
                    recovered: true,
                },
                m::Resumed {
                    conversation: 8,
                    from_seq: 0,
                    recovered: false,
                },
            ],
        }
        .into(),
        Kind::Ping => m::Ping {
            stamp: u64::MAX,
            data: b"\x00\x01load-test\xff".to_vec(),
        }
        .into(),
        Kind::Pong => m::Pong {
            stamp: 0x8000_0000_0000_0001,
            data: vec![0xa5; 9],
        }
        .into(),
        Kind::Error => m::Error {
            code: 403,
            retryable: true,
            conversation: 9,
            message: s("conversation 9 belongs to another agent — ¿otra vez?"),
        }
        .into(),
        Kind::Bye => m::Bye {
            code: 501,
            message: s("shutting down 🔧"),
        }
        .into(),
        Kind::Send => m::Send {
            content_type: content::MARKDOWN,
            conversation: 0,
            client_msg_id: 17,
            group: s(OUT_9),
            body: s("你好, **my order** #1234 never arrived 📦"),
        }
        .into(),
        Kind::Accepted => m::Accepted {
            client_msg_id: 17,
            conversation: 9,
            seq: 3,
            time_ms: 1_767_225_600_123,
        }
        .into(),
        Kind::Deliver => m::Deliver {
            sender_role: role::BOT,
            content_type: content::JSON,
            flags: flags::AUTO_REPLY | flags::REPLAY,
            conversation: 9,
            seq: 4,
            time_ms: 1_767_225_600_456,
            client_msg_id: 0,
            sender: s("faq-bot"),
            body: s(r#"{"card":"tracking","url":"https://example.com/t/1234"}"#),
        }
        .into(),
        Kind::Receipt => m::Receipt {
            status: receipt::READ,
            conversation: 9,
            seq: 4,
            user: s(INLINE_8),
        }
        .into(),
        Kind::Typing => m::Typing {
            typing: true,
            conversation: 9,
            user: s("visitor-ü"),
        }
        .into(),
        Kind::Queued => m::Queued {
            position: 3,
            conversation: 9,
            group: s("support-de"),
        }
        .into(),
        Kind::Assigned => m::Assigned {
            conversation: 9,
            seq: 5,
            agent: s("a-12"),
            agent_name: s("Søren K."),
            group: s(OUT_9),
            visitor: s("v-998877"),
            visitor_name: s("Гость"),
        }
        .into(),
        Kind::Transfer => m::Transfer {
            conversation: 9,
            to_agent: s(""),
            to_group: s("billing"),
            note: s("refund > 100 €, needs a supervisor"),
        }
        .into(),
        Kind::Claim => m::Claim { conversation: 9 }.into(),
        Kind::Close => m::Close {
            conversation: 9,
            seq: 12,
            reason: s("resolved ✓"),
        }
        .into(),
        Kind::Rate => m::Rate {
            score: 5,
            conversation: 9,
            comment: s("très bien"),
        }
        .into(),
        Kind::Presence => m::Presence {
            status: presence::AWAY,
            user: s(INLINE_8),
        }
        .into(),
        Kind::History => m::History {
            limit: 50,
            conversation: 9,
            before_seq: 100,
        }
        .into(),
        Kind::HistoryPage => m::HistoryPage {
            more: true,
            conversation: 9,
            entries: vec![
                m::Entry {
                    seq: 1,
                    time_ms: 1_767_225_600_000,
                    kind: Kind::Send.as_u8(),
                    sender_role: role::VISITOR,
                    content_type: content::TEXT,
                    flags: 0,
                    sender: s("v-998877"),
                    body: s("hallo, ist jemand da?"),
                },
                m::Entry {
                    seq: 2,
                    time_ms: 1_767_225_601_000,
                    kind: Kind::Assigned.as_u8(),
                    sender_role: role::SYSTEM,
                    content_type: 0,
                    flags: flags::FLAGGED,
                    sender: s(""),
                    body: s(INLINE_8),
                },
                m::Entry {
                    seq: 3,
                    time_ms: 1_767_225_602_000,
                    kind: Kind::Send.as_u8(),
                    sender_role: role::AGENT,
                    content_type: content::URL,
                    flags: 0,
                    sender: s("a-12"),
                    body: s("https://example.com/faq#versand"),
                },
            ],
        }
        .into(),
        Kind::Suggest => m::Suggest {
            limit: 5,
            faq: true,
            conversation: 9,
            prefix: s("where is"),
        }
        .into(),
        Kind::Suggestions => m::Suggestions {
            prefix: s("where is"),
            items: vec![
                m::Suggestion {
                    id: 1,
                    uses: 340,
                    text: s("Where is my order? Let me check the tracking for you."),
                },
                m::Suggestion {
                    id: 2,
                    uses: 12,
                    text: s(OUT_9),
                },
            ],
        }
        .into(),
        Kind::Notice => m::Notice {
            time_ms: 1_767_225_600_000,
            group: s(""),
            from: s("admin"),
            text: s("Maintenance at 22:00 UTC — 維護"),
        }
        .into(),
        Kind::Refresh => m::Refresh {
            token: s("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ2LTEifQ.c2ln"),
        }
        .into(),
        Kind::Refreshed => m::Refreshed {
            expires_ms: 1_767_229_200_000,
        }
        .into(),
        Kind::Note => m::Note {
            conversation: 9,
            client_msg_id: 77,
            body: s("VIP customer — offer the refund"),
        }
        .into(),
        Kind::Availability => m::Availability {
            groups: vec![
                m::GroupAvailability {
                    online: true,
                    estimated_wait_ms: 180_000,
                    group: s("billing"),
                },
                m::GroupAvailability {
                    online: false,
                    estimated_wait_ms: 0,
                    group: s(INLINE_8),
                },
            ],
        }
        .into(),
        Kind::Watch => m::Watch {
            group: s("billing"),
        }
        .into(),
        Kind::WrongReply => m::WrongReply {
            conversation: 7,
            seq: 3,
            comment: s("the answer was about refunds, not invoices"),
        }
        .into(),
        Kind::ListConversations => m::ListConversations {
            limit: 100,
            state: m::conversation_state::QUEUED,
            after: 41,
            updated_since_ms: 1_767_225_600_000,
            group: s("billing"),
            agent: s(OUT_9),
        }
        .into(),
        Kind::ConversationList => m::ConversationList {
            more: true,
            next_after: 42,
            items: vec![m::ConversationInfo {
                conversation: 42,
                opened_ms: 1_767_225_600_000,
                updated_ms: 1_767_225_660_000,
                last_seq: 7,
                state: m::conversation_state::ASSIGNED,
                group: s("billing"),
                visitor: s("v-998877"),
                visitor_name: s("Jürgen"),
                agent: s("a-12"),
            }],
        }
        .into(),
        Kind::Disconnect => m::Disconnect {
            user: s("a-12"),
            reason: s("offboarded"),
        }
        .into(),
        Kind::Disconnected => m::Disconnected {
            sessions: 2,
            user: s("a-12"),
        }
        .into(),
    }
}

/// Messages breaking one bound each (short enough to keep seeds under 4 KiB), with the
/// field the decoder must name.
fn bad() -> Vec<(&'static str, Msg, &'static str)> {
    let over = "ü".repeat(MAX_SHORT / 2) + "!"; // MAX_SHORT + 1 bytes
    vec![
        (
            "bad-hello-client-too-long",
            m::Hello {
                client: over.clone(),
                ..m::Hello::default()
            }
            .into(),
            "client",
        ),
        (
            "bad-send-empty-body",
            m::Send {
                content_type: content::TEXT,
                ..m::Send::default()
            }
            .into(),
            "body",
        ),
        (
            "bad-send-content-type-5",
            m::Send {
                content_type: 5,
                body: "hi".into(),
                ..m::Send::default()
            }
            .into(),
            "content_type",
        ),
        (
            "bad-watch-group-too-long",
            m::Watch {
                group: over.clone(),
            }
            .into(),
            "group",
        ),
        ("bad-note-empty-body", m::Note::default().into(), "body"),
        (
            "bad-list-state-5",
            m::ListConversations {
                state: 5,
                ..m::ListConversations::default()
            }
            .into(),
            "state",
        ),
        (
            "bad-disconnect-empty-user",
            m::Disconnect::default().into(),
            "user",
        ),
        (
            "bad-rate-score-0",
            m::Rate {
                score: 0,
                conversation: 9,
                comment: "meh".into(),
            }
            .into(),
            "score",
        ),
        (
            "bad-rate-comment-too-long",
            m::Rate {
                score: 3,
                conversation: 9,
                comment: over.clone(),
            }
            .into(),
            "comment",
        ),
        (
            "bad-receipt-status-3",
            m::Receipt {
                status: 3,
                ..m::Receipt::default()
            }
            .into(),
            "status",
        ),
        (
            "bad-presence-status-4",
            m::Presence {
                status: 4,
                user: INLINE_8.into(),
            }
            .into(),
            "status",
        ),
        (
            "bad-transfer-note-too-long",
            m::Transfer {
                note: over.clone(),
                ..m::Transfer::default()
            }
            .into(),
            "note",
        ),
        (
            "bad-close-reason-too-long",
            m::Close {
                reason: over.clone(),
                ..m::Close::default()
            }
            .into(),
            "reason",
        ),
        (
            "bad-suggest-prefix-too-long",
            m::Suggest {
                prefix: over.clone(),
                ..m::Suggest::default()
            }
            .into(),
            "prefix",
        ),
        (
            "bad-notice-group-too-long",
            m::Notice {
                group: over,
                ..m::Notice::default()
            }
            .into(),
            "group",
        ),
    ]
}
