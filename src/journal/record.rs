//! Record framing: a 40-byte little-endian header, the body, zero padding to 8 bytes.
//!
//! ```text
//! 0   u32 crc32c over bytes 4 .. 40+len (header after the CRC, then the body)
//! 4   u32 len (body bytes)
//! 8   u8  kind
//! 9   [u8; 7] reserved, zero
//! 16  u64 conversation
//! 24  u64 seq
//! 32  u64 time_ms
//! 40  body, then zeros up to the next multiple of 8
//! ```
//! An all-zero header marks the end of the written part of a segment (segments are
//! preallocated with zeros, and the CRC of a zero header is never zero).

use bytes::Bytes;

/// Bytes in a record header.
pub(crate) const RECORD_HEADER_LEN: usize = 40;
/// Records start on multiples of this.
pub(crate) const RECORD_ALIGN: usize = 8;
/// The kind of a *filler* record: written by salvage over a damaged range so the
/// segment reads cleanly again (conversation 0, seq 0, a zero body). The journal skips
/// fillers; callers never see them and may not use this kind.
pub(crate) const FILLER_KIND: u8 = 0xFF;

/// One journal record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Conversation the record belongs to.
    pub conversation: u64,
    /// Sequence number within the conversation (not checked by the journal).
    pub seq: u64,
    /// Wall-clock time in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Record type, chosen by the caller.
    pub kind: u8,
    /// Opaque payload, at most `journal.max_record_bytes`.
    pub body: Bytes,
}

/// One journal record borrowed from a segment map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordRef<'a> {
    /// Conversation the record belongs to.
    pub conversation: u64,
    /// Sequence number within the conversation.
    pub seq: u64,
    /// Wall-clock time in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Record type.
    pub kind: u8,
    /// Payload.
    pub body: &'a [u8],
}

#[cfg(test)]
impl Record {
    /// The record as a borrowed view (tests replay owned records).
    pub(crate) fn borrowed(&self) -> RecordRef<'_> {
        RecordRef {
            conversation: self.conversation,
            seq: self.seq,
            time_ms: self.time_ms,
            kind: self.kind,
            body: &self.body,
        }
    }
}

impl RecordRef<'_> {
    /// Copies the record out of the map.
    pub(crate) fn to_record(self) -> Record {
        Record {
            conversation: self.conversation,
            seq: self.seq,
            time_ms: self.time_ms,
            kind: self.kind,
            body: Bytes::copy_from_slice(self.body),
        }
    }
}

/// Bytes a record with `body_len` bytes of body occupies on disk, padding included.
pub(crate) const fn frame_len(body_len: usize) -> usize {
    (RECORD_HEADER_LEN + body_len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// Appends the framed record to `buf`. The caller bounds the body length (it must fit
/// in a `u32`; `journal.max_record_bytes` is far below that).
pub(crate) fn encode_into(buf: &mut Vec<u8>, r: &Record) {
    let start = buf.len();
    let len = r.body.len();
    buf.reserve(frame_len(len));
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.push(r.kind);
    buf.extend_from_slice(&[0; 7]);
    buf.extend_from_slice(&r.conversation.to_le_bytes());
    buf.extend_from_slice(&r.seq.to_le_bytes());
    buf.extend_from_slice(&r.time_ms.to_le_bytes());
    buf.extend_from_slice(&r.body);
    let crc = buf.get(start + 4..).map_or(0, crc32c::crc32c);
    if let Some(slot) = buf.get_mut(start..start + 4) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    buf.resize(start + frame_len(len), 0);
}

/// The kind of a *seal* record: the last record of every segment but the last
/// (format version 2), written when the segment is sealed, so that a sealed segment
/// whose end went missing is told from one that simply ended (conversation 0, seq 0;
/// body: the segment's record count, u64 little-endian). Skipped like fillers.
pub(crate) const SEAL_KIND: u8 = 0xFE;
/// Bytes a seal record takes.
pub(crate) const SEAL_FRAME: usize = frame_len(8);

/// Whether records of `kind` belong to the journal itself (never handed to callers).
pub(crate) const fn is_journal_kind(kind: u8) -> bool {
    kind == FILLER_KIND || kind == SEAL_KIND
}

/// A journal-level record (conversation 0, seq 0) of `kind` with `body`, framed.
fn journal_record(kind: u8, body: Bytes, time_ms: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(frame_len(body.len()));
    let r = Record {
        conversation: 0,
        seq: 0,
        time_ms,
        kind,
        body,
    };
    encode_into(&mut buf, &r);
    buf
}

/// A seal record for a segment of `records` records.
pub(crate) fn seal(records: u64, time_ms: u64) -> Vec<u8> {
    let body = Bytes::copy_from_slice(&records.to_le_bytes());
    journal_record(SEAL_KIND, body, time_ms)
}

/// A filler frame of exactly `len` bytes (`len` a multiple of 8, at least a header).
pub(crate) fn filler(len: usize, time_ms: u64) -> Vec<u8> {
    let body = vec![0u8; len.saturating_sub(RECORD_HEADER_LEN)];
    journal_record(FILLER_KIND, Bytes::from(body), time_ms)
}

/// What lies at the start of a byte slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A valid record and the bytes its frame occupies.
    Record(RecordRef<'a>, usize),
    /// Zeros: the end of the written part.
    End,
    /// A torn or corrupt frame.
    Invalid,
}

/// Decodes the frame at the start of `buf` (the rest of the segment). Never panics.
pub(crate) fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some((header, rest)) = buf.split_first_chunk::<RECORD_HEADER_LEN>() else {
        return if buf.iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Invalid
        };
    };
    if header.iter().all(|&b| b == 0) {
        return Decoded::End;
    }
    let (crc, h) = split4(header);
    let (len, h) = split4(h);
    let len = u32::from_le_bytes(len) as usize;
    let Some((&kind, h)) = h.split_first() else {
        return Decoded::Invalid;
    };
    let Some((reserved, h)) = h.split_first_chunk::<7>() else {
        return Decoded::Invalid;
    };
    let (conversation, h) = split8(h);
    let (seq, h) = split8(h);
    let (time_ms, _) = split8(h);
    let Some(body) = rest.get(..len) else {
        return Decoded::Invalid;
    };
    if *reserved != [0; 7] {
        return Decoded::Invalid;
    }
    let covered = header.get(4..).map_or(0, crc32c::crc32c);
    if crc32c::crc32c_append(covered, body) != u32::from_le_bytes(crc) {
        return Decoded::Invalid;
    }
    // The whole frame, padding included, must be there: the length returned is where
    // the next record starts, never past the end of what was read (found by fuzzing).
    if buf.len() < frame_len(len) {
        return Decoded::Invalid;
    }
    Decoded::Record(
        RecordRef {
            conversation: u64::from_le_bytes(conversation),
            seq: u64::from_le_bytes(seq),
            time_ms: u64::from_le_bytes(time_ms),
            kind,
            body,
        },
        frame_len(len),
    )
}

fn split4(b: &[u8]) -> ([u8; 4], &[u8]) {
    match b.split_first_chunk::<4>() {
        Some((a, rest)) => (*a, rest),
        None => ([0; 4], &[]),
    }
}

fn split8(b: &[u8]) -> ([u8; 8], &[u8]) {
    match b.split_first_chunk::<8>() {
        Some((a, rest)) => (*a, rest),
        None => ([0; 8], &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(body: &[u8]) -> Record {
        Record {
            conversation: 7,
            seq: 9,
            time_ms: 1_700_000_000_000,
            kind: 3,
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn layout_is_padded_and_aligned() {
        let mut buf = Vec::new();
        encode_into(&mut buf, &rec(b"hello"));
        assert_eq!(buf.len(), 48);
        assert_eq!(frame_len(0), 40);
        assert_eq!(frame_len(1), 48);
        assert_eq!(&buf[4..8], &5u32.to_le_bytes());
        assert_eq!(buf[8], 3);
        assert_eq!(&buf[40..45], b"hello");
        assert_eq!(&buf[45..], &[0, 0, 0]);
    }

    #[test]
    fn zeros_are_end_and_garbage_is_invalid() {
        assert_eq!(decode(&[0; 100]), Decoded::End);
        assert_eq!(decode(&[0; 3]), Decoded::End);
        assert_eq!(decode(&[]), Decoded::End);
        assert_eq!(decode(&[1; 100]), Decoded::Invalid);
        let mut buf = Vec::new();
        encode_into(&mut buf, &rec(b""));
        buf[20] ^= 1;
        assert_eq!(decode(&buf), Decoded::Invalid);
    }

    #[test]
    fn fillers_have_the_length_asked_for() {
        for len in [40usize, 48, 4096, 65_536 + 8] {
            let f = filler(len, 9);
            assert_eq!(f.len(), len);
            match decode(&f) {
                Decoded::Record(r, n) => {
                    assert_eq!((r.kind, r.conversation, n), (FILLER_KIND, 0, len));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn round_trip(conv: u64, seq: u64, t: u64, kind: u8,
                      body in proptest::collection::vec(any::<u8>(), 0..300),
                      tail in proptest::collection::vec(any::<u8>(), 0..20)) {
            let r = Record { conversation: conv, seq, time_ms: t, kind, body: Bytes::from(body) };
            let mut buf = Vec::new();
            encode_into(&mut buf, &r);
            prop_assert_eq!(buf.len() % RECORD_ALIGN, 0);
            buf.extend_from_slice(&tail);
            match decode(&buf) {
                Decoded::Record(got, n) => {
                    prop_assert_eq!(got.to_record(), r);
                    prop_assert_eq!(n, frame_len(got.body.len()));
                }
                other => prop_assert!(false, "decoded {:?}", other),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Decoded::Record(r, n) = decode(&bytes) {
                prop_assert!(n <= bytes.len() + RECORD_ALIGN);
                prop_assert!(r.body.len() + RECORD_HEADER_LEN <= bytes.len());
            }
        }

        #[test]
        fn any_single_bit_flip_is_detected(body in proptest::collection::vec(any::<u8>(), 0..64),
                                           bit in 0usize..(8 * (RECORD_HEADER_LEN + 64))) {
            let mut buf = Vec::new();
            encode_into(&mut buf, &rec(&body));
            let covered = RECORD_HEADER_LEN + body.len();
            let bit = bit % (8 * covered);
            buf[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(!matches!(decode(&buf), Decoded::Record(..)));
        }
    }
}
