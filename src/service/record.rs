//! Conversation events as journal records: what a shard writes so that replaying the
//! journal rebuilds every conversation (events in, state derived).
//!
//! A record is `(conversation, seq, time_ms, kind, body)`; the journal frames and
//! checksums it, this module gives the body its meaning. Bodies are rkyv archives of
//! one flat [`Body`] (validated with bytecheck when read back, like wire payloads).
//! The layout is part of the journal format (`proto-spec/JOURNAL.md`): fields may only
//! be appended, never reordered.

use rkyv::rancor;
use rkyv::util::AlignedVec;
use thiserror::Error;

use crate::protocol::messages::Entry;

/// What a record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordKind {
    /// A conversation was opened (no sequence number: `seq` is 0).
    Opened = 1,
    /// A transcript entry (message, assignment, close, rating) with its `seq`.
    Entry = 2,
    /// The conversation lost its agent and waits again (`seq`: the last entry's).
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
    /// Group queued or assigned in (`Opened`, `Requeued`, and `Entry` of `Assigned`).
    pub group: String,
    /// `Send.client_msg_id` of a message entry (idempotency survives restarts).
    pub client_msg_id: u64,
    /// The transcript entry (`Entry`).
    pub entry: Entry,
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
        body: encode(body).into(),
    }
}

/// Archives a body (cannot fail for this plain-data type; an empty body if it did).
/// Written straight into the `Vec` the record keeps: the same bytes as an aligned
/// archive (positions count from the start either way), without a copy.
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
