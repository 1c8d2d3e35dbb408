//! Conversation events as journal records: what a shard writes so that replaying the
//! journal rebuilds every conversation (events in, state derived).
//!
//! A record is `(conversation, seq, time_ms, kind, body)`; the journal frames and
//! checksums it, this module gives the body its meaning. Bodies are rkyv archives of
//! one flat [`Body`] (validated with bytecheck when read back, like wire payloads).
//! The layout is part of the journal format (`proto-spec/JOURNAL.md`): fields may only
//! be appended, never reordered.

use bytes::Bytes;
use rkyv::rancor;
use rkyv::util::AlignedVec;
use thiserror::Error;

use crate::auth::MAX_SUB_BYTES;
use crate::protocol::messages::{Entry, MAX_BODY, MAX_SHORT};

/// What a record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordKind {
    /// A conversation was opened (no sequence number: `seq` is 0).
    Opened = 1,
    /// A transcript entry (message, assignment, close, rating) with its `seq`.
    Entry = 2,
    /// The conversation lost its agent and waits again (`seq`: the last entry's).
    /// Written before requeues became transcript entries (a `Queued` entry); still
    /// read.
    Requeued = 3,
    /// Written by salvage: sequence numbers `seq ..= seq + client_msg_id - 1` are a
    /// gap (the entry is a gap entry standing for all of them).
    Gap = 4,
    /// Written by salvage: conversation ids up to this record's `conversation` are
    /// taken (some may have been lost to damage); no conversation is opened.
    Reserved = 5,
    /// Written by salvage for a conversation whose `Opened` record was lost: it is
    /// rebuilt from its other records as a closed conversation no user may see (its
    /// tenant is unknown); the body's visitor and group are guesses from them.
    Orphaned = 6,
}

impl RecordKind {
    /// The kind stored in a record header, if known.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Opened),
            2 => Some(Self::Entry),
            3 => Some(Self::Requeued),
            4 => Some(Self::Gap),
            5 => Some(Self::Reserved),
            6 => Some(Self::Orphaned),
            _ => None,
        }
    }
}

/// The body of every record kind; fields a kind does not use stay empty.
#[derive(
    rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq, Default,
)]
pub(crate) struct Body {
    /// Tenant of the conversation (`Opened`).
    pub tenant: String,
    /// Visitor user id (`Opened`).
    pub visitor: String,
    /// Visitor display name (`Opened`).
    pub visitor_name: String,
    /// Group queued or assigned in (`Opened`, `Requeued`, and `Entry` of `Assigned`;
    /// a `Queued` entry carries its group as its body).
    pub group: String,
    /// `Send.client_msg_id` of a message entry (idempotency survives restarts).
    pub client_msg_id: u64,
    /// The transcript entry (`Entry`).
    pub entry: Entry,
}

/// Bytes of the archived [`Body`] root (the fixed part of every record body).
const ROOT_BYTES: usize = std::mem::size_of::<ArchivedBody>();

/// Most padding between the out-of-line strings and the root (aligned to its type).
const ROOT_PAD: usize = std::mem::align_of::<ArchivedBody>() - 1;

/// Most bytes a record body takes whose strings have `text` bytes together: the
/// strings' bytes (rkyv keeps strings of up to 8 bytes inside the root, so never
/// more), padding to the root's alignment, and the root.
pub(crate) const fn body_bytes_bound(text: usize) -> usize {
    text + ROOT_PAD + ROOT_BYTES
}

/// The most text one access token can put into the records: all its strings
/// together (`tenant`, `sub`, `name`, `groups`) are shorter than the token, which the
/// verifier takes up to [`crate::auth::MAX_TOKEN_BYTES`] long (the wire protocol
/// allows only [`crate::protocol::messages::MAX_TOKEN`] in `Hello`).
pub(crate) const MAX_TOKEN_TEXT: usize = crate::auth::MAX_TOKEN_BYTES;

/// The largest body of each record kind the service writes, as `(what, bytes)`,
/// derived from the protocol's bounds (PROTOCOL.md sections 4, 6.3 and 8), so that
/// `journal.max_record_bytes` can be checked to hold every message the protocol
/// accepts. Strings that come from one token share [`MAX_TOKEN_TEXT`].
pub(crate) const RECORD_MAXIMA: [(&str, usize); 7] = [
    // A visitor's or agent's message: user id and a `Send.body`.
    ("message entry", body_bytes_bound(MAX_SUB_BYTES + MAX_BODY)),
    // A FAQ auto-reply: no sender, an answer of at most MAX_BODY (assist::faq).
    ("auto-reply entry", body_bytes_bound(MAX_BODY)),
    // The agent's id and name (one token) and the group it serves in: the visitor
    // token's, a `Send.group`, a `Transfer.to_group` or `routing.default_group`.
    ("assignment entry", body_bytes_bound(2 * MAX_TOKEN_TEXT)),
    ("close entry", body_bytes_bound(MAX_SUB_BYTES + MAX_SHORT)),
    ("rating entry", body_bytes_bound(MAX_SUB_BYTES + MAX_SHORT)),
    // Tenant, visitor id, name and a group from the visitor's token, or a group of
    // at most MAX_SHORT from the `Send` or the configuration.
    ("opened", body_bytes_bound(MAX_TOKEN_TEXT + MAX_SHORT)),
    // A requeue: the group it waits in again, as the `Queued` entry's body.
    ("queued entry", body_bytes_bound(MAX_TOKEN_TEXT)),
];

/// The largest record body the service can write for input the protocol accepts:
/// `journal.max_record_bytes` must be at least this (checked at config load).
pub(crate) const MAX_RECORD_BODY: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < RECORD_MAXIMA.len() {
        if RECORD_MAXIMA[i].1 > max {
            max = RECORD_MAXIMA[i].1;
        }
        i += 1;
    }
    max
};

// The configuration's floor for `journal.max_record_bytes` is this figure, written
// out there so that the config depends on nothing above it.
const _: () = assert!(MAX_RECORD_BODY == crate::config::MIN_JOURNAL_RECORD_BYTES);

/// Most bytes the record body of a new message takes: `sender` is the user id,
/// `body` the `Send.body` (the shard stores exactly these two strings for it).
pub(crate) fn message_body_bytes(sender: &str, body: &str) -> usize {
    body_bytes_bound(sender.len() + body.len())
}

/// A record's place in its conversation's order: opened first, then by sequence
/// number, a (legacy) requeue after the entry it follows. A record whose key is not
/// above the conversation's last is a compaction copy (what the webhook
/// and mail threads skip).
pub(crate) fn order_key(kind: RecordKind, seq: u64) -> u64 {
    match kind {
        RecordKind::Opened | RecordKind::Reserved | RecordKind::Orphaned => 0,
        RecordKind::Entry | RecordKind::Gap => seq.saturating_mul(2).saturating_add(1),
        RecordKind::Requeued => seq.saturating_mul(2).saturating_add(2),
    }
}

/// A record ready for the journal (the journal's own type: no copy on the way).
pub(crate) use crate::journal::Record;

/// The smallest frame a conversation record takes in the journal (every field of
/// its body empty): a damaged range of `n` bytes held at most `n / MIN_FRAME` of them.
pub(crate) fn min_frame() -> u64 {
    crate::journal::frame_len(encode(&Body::default()).len()) as u64
}

/// A record body that cannot be read back.
#[derive(Debug, Error)]
pub(crate) enum RecordError {
    /// The kind code is not one this version writes.
    #[error("unknown conversation record kind {0}")]
    UnknownKind(u8),
    /// The body is not a valid archive.
    #[error("conversation record body does not validate")]
    BadBody,
}

/// A record of `kind` with `body`.
pub(crate) fn record(
    conversation: u64,
    seq: u64,
    time_ms: u64,
    kind: RecordKind,
    body: &Body,
) -> Record {
    Record {
        conversation,
        seq,
        time_ms,
        kind: kind as u8,
        body: encode_exact(body),
    }
}

/// Largest scratch buffer a thread keeps between [`record`] calls (a record body is
/// at most `journal.max_record_bytes`; a larger one is rare, and not kept).
const MAX_KEPT_SCRATCH: usize = 64 * 1024;

thread_local! {
    /// Where [`record`] archives bodies: reused, so a record costs one allocation of
    /// exactly its size.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Archives a body into the thread's scratch buffer, then copies it once into a
/// buffer of exactly its size. Archiving straight into a fresh `Vec` grew it five or
/// six times for a chat message (8, 16, ... 256 bytes) and, its length short of its
/// capacity, cost `Bytes` one more allocation for the shared header: seven
/// allocations per record, on the journal's per-message path.
fn encode_exact(body: &Body) -> Bytes {
    let mut scratch = SCRATCH.take();
    scratch.clear();
    let scratch =
        rkyv::api::high::to_bytes_in::<_, rancor::Error>(body, scratch).unwrap_or_default();
    let bytes = Bytes::copy_from_slice(&scratch);
    if scratch.capacity() <= MAX_KEPT_SCRATCH {
        SCRATCH.set(scratch);
    }
    bytes
}

/// Archives a body (cannot fail for this plain-data type; an empty body if it did):
/// the same bytes as an aligned archive (positions count from the start either way).
pub(crate) fn encode(body: &Body) -> Vec<u8> {
    rkyv::api::high::to_bytes_in::<_, rancor::Error>(body, Vec::new()).unwrap_or_default()
}

/// Validates and reads a body.
pub(crate) fn decode(kind: u8, bytes: &[u8]) -> Result<(RecordKind, Body), RecordError> {
    let kind = RecordKind::from_u8(kind).ok_or(RecordError::UnknownKind(kind))?;
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    let body =
        rkyv::from_bytes::<Body, rancor::Error>(&aligned).map_err(|_| RecordError::BadBody)?;
    Ok((kind, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip() {
        let body = Body {
            tenant: "acme".into(),
            visitor: "v1".into(),
            visitor_name: "访客".into(),
            group: "billing".into(),
            client_msg_id: 42,
            entry: Entry {
                seq: 3,
                time_ms: 5,
                kind: 16,
                sender_role: 1,
                content_type: 0,
                flags: 0,
                sender: "v1".into(),
                body: "hello".into(),
            },
        };
        let r = record(7, 3, 5, RecordKind::Entry, &body);
        let (kind, back) = decode(r.kind, &r.body).unwrap();
        assert_eq!(kind, RecordKind::Entry);
        assert_eq!(back, body);
    }

    proptest::proptest! {
        /// The reused scratch buffer leaves nothing behind: whatever came before (a
        /// longer body, a shorter one), a record's body is exactly its own archive.
        #[test]
        fn record_bodies_do_not_depend_on_earlier_records(
            bodies in proptest::collection::vec((".{0,40}", ".{0,300}", 0u64..u64::MAX), 1..8)
        ) {
            for (sender, text, id) in bodies {
                let body = Body {
                    group: sender.clone(),
                    client_msg_id: id,
                    entry: Entry { sender, body: text, ..Entry::default() },
                    ..Body::default()
                };
                let r = record(1, 2, 3, RecordKind::Entry, &body);
                proptest::prop_assert_eq!(&r.body[..], &encode(&body)[..]);
                proptest::prop_assert_eq!(decode(r.kind, &r.body).unwrap().1, body);
            }
        }
    }

    #[test]
    fn bodies_are_the_bytes_of_an_aligned_archive() {
        let body = Body {
            tenant: "t".into(),
            group: "g".repeat(40),
            client_msg_id: 9,
            entry: Entry {
                seq: 2,
                sender: "someone".into(),
                body: "x".repeat(100),
                ..Entry::default()
            },
            ..Body::default()
        };
        let aligned = rkyv::to_bytes::<rancor::Error>(&body).unwrap();
        assert_eq!(encode(&body), aligned.to_vec());
    }

    fn text(n: usize) -> String {
        "x".repeat(n)
    }

    fn entry(sender: usize, body: usize) -> Entry {
        Entry {
            seq: u64::MAX,
            time_ms: u64::MAX,
            kind: 16,
            sender_role: 3,
            content_type: 4,
            flags: 3,
            sender: text(sender),
            body: text(body),
        }
    }

    /// Every record kind at the protocol's maxima encodes within its entry of
    /// `RECORD_MAXIMA`, and the largest of them is the bound config checks.
    #[test]
    fn maximal_bodies_fit_the_derived_bounds() {
        let t = MAX_TOKEN_TEXT;
        let bodies = [
            Body {
                client_msg_id: u64::MAX,
                entry: entry(MAX_SUB_BYTES, MAX_BODY),
                ..Body::default()
            },
            Body {
                entry: entry(0, MAX_BODY),
                ..Body::default()
            },
            Body {
                group: text(t),
                entry: entry(MAX_SUB_BYTES, t - MAX_SUB_BYTES),
                ..Body::default()
            },
            Body {
                entry: entry(MAX_SUB_BYTES, MAX_SHORT),
                ..Body::default()
            },
            Body {
                entry: entry(MAX_SUB_BYTES, MAX_SHORT),
                ..Body::default()
            },
            Body {
                tenant: text(t / 2),
                visitor: text(MAX_SUB_BYTES),
                visitor_name: text(t / 2 - MAX_SUB_BYTES),
                group: text(MAX_SHORT),
                ..Body::default()
            },
            Body {
                group: text(t),
                ..Body::default()
            },
        ];
        for ((what, bound), body) in RECORD_MAXIMA.iter().zip(&bodies) {
            let len = encode(body).len();
            assert!(len <= *bound, "{what}: {len} > {bound}");
            assert!(
                len + ROOT_PAD >= *bound,
                "{what}: bound {bound} is loose ({len})"
            );
        }
        // The largest is a maximal message: 256-byte sender, 65536-byte body.
        let message = encode(&bodies[0]).len();
        assert_eq!(message, 65_872);
        assert_eq!(
            encode(&bodies[1]).len(),
            65_616,
            "auto-reply (JOURNAL.md 2.3)"
        );
        assert_eq!(
            MAX_RECORD_BODY, 65_879,
            "the bound JOURNAL.md and PROTOCOL.md give"
        );
        assert_eq!(MAX_RECORD_BODY, body_bytes_bound(MAX_SUB_BYTES + MAX_BODY));
        assert!(MAX_RECORD_BODY >= message);
        assert!(message_body_bytes(&bodies[0].entry.sender, &bodies[0].entry.body) >= message);
    }

    proptest::proptest! {
        /// The bound holds for any string lengths (short strings are inline).
        #[test]
        fn encoded_length_is_within_the_bound(
            lens in proptest::collection::vec(0usize..64, 6),
            id: u64,
        ) {
            let body = Body {
                tenant: text(lens[0]),
                visitor: text(lens[1]),
                visitor_name: text(lens[2]),
                group: text(lens[3]),
                client_msg_id: id,
                entry: entry(lens[4], lens[5]),
            };
            let len = encode(&body).len();
            proptest::prop_assert!(len <= body_bytes_bound(lens.iter().sum()));
            let message = Body {
                client_msg_id: id,
                entry: entry(lens[4], lens[5]),
                ..Body::default()
            };
            let len = encode(&message).len();
            let (sender, text) = (&message.entry.sender, &message.entry.body);
            proptest::prop_assert!(len <= message_body_bytes(sender, text));
        }
    }

    #[test]
    fn the_smallest_frame_is_an_empty_body() {
        let n = min_frame();
        assert!(n >= 40 + 40, "{n}");
        let r = record(1, 1, 1, RecordKind::Entry, &Body::default());
        assert_eq!(crate::journal::frame_len(r.body.len()) as u64, n);
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(matches!(decode(9, &[]), Err(RecordError::UnknownKind(9))));
        assert!(matches!(decode(2, &[1, 2, 3]), Err(RecordError::BadBody)));
        let r = record(1, 0, 0, RecordKind::Opened, &Body::default());
        let mut b = r.body.to_vec();
        if let Some(x) = b.last_mut() {
            *x ^= 0xff;
        }
        // Flipping the root's last byte breaks an offset or length: never a panic.
        let _ = decode(1, &b);
    }
}
