//! The 16-byte frame header and a sans-IO frame decoder (see `proto-spec/FRAMING.md`).
//!
//! Bytes in, frames or a typed error out. The decoder never allocates and never panics
//! on input: an oversize length is rejected from the header alone, before anything is
//! buffered for the frame.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use bytes::{BufMut, Bytes, BytesMut};

/// Length of the fixed frame header.
pub const HEADER_LEN: usize = 16;
/// Payloads are padded with zero bytes to a multiple of this, so archives stay aligned.
pub const ALIGN: usize = 16;
/// The two magic bytes every frame starts with: ASCII `SB`.
pub const MAGIC: [u8; 2] = *b"SB";
/// The framing version this build speaks.
pub const VERSION: u8 = 1;
/// Hard ceiling for `limits.max_frame_bytes` (64 MiB), whatever the config says.
pub const MAX_PAYLOAD_LIMIT: u32 = 64 * 1024 * 1024;

/// A decoded frame header.
///
/// Layout (little-endian): magic `[u8;2]`, version `u8`, kind `u8`, flags `u16`,
/// status `u16`, payload length `u32`, request id `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameHeader {
    /// Message kind (see `proto-spec/`); the framing layer does not interpret it.
    pub kind: u8,
    /// Flag bits; none are defined in version 1, senders send zero, receivers ignore them.
    pub flags: u16,
    /// Error code on `Error` and `Bye` frames, zero otherwise.
    pub status: u16,
    /// Payload length in bytes, before padding.
    pub len: u32,
    /// Chosen by the requester and echoed in the reply; zero for unsolicited frames.
    pub request_id: u32,
}

/// Why bytes could not be framed. Each maps to an error code the client can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The stream does not start with `SB`: not our protocol, or out of sync.
    #[error("bad magic bytes")]
    BadMagic,
    /// The frame's version byte is not one this build speaks.
    #[error("unsupported framing version {0}")]
    UnsupportedVersion(u8),
    /// The header announces a payload over the configured limit.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced payload length.
        len: u32,
        /// Configured maximum.
        max: u32,
    },
    /// A padding byte after the payload is not zero.
    #[error("non-zero padding byte")]
    BadPadding,
}

/// Rounds a payload length up to the padded length on the wire.
pub fn padded_len(len: u32) -> usize {
    let len = len as usize;
    len.next_multiple_of(ALIGN)
}

impl FrameHeader {
    /// A header for a payload of `len` bytes.
    pub fn new(kind: u8, len: u32, request_id: u32) -> Self {
        Self {
            kind,
            len,
            request_id,
            ..Self::default()
        }
    }

    /// Total bytes of the frame on the wire: header, payload and padding.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN.saturating_add(padded_len(self.len))
    }

    /// The header's 16 wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let mut w = &mut out[..];
        w.put_slice(&MAGIC);
        w.put_u8(VERSION);
        w.put_u8(self.kind);
        w.put_u16_le(self.flags);
        w.put_u16_le(self.status);
        w.put_u32_le(self.len);
        w.put_u32_le(self.request_id);
        out
    }

    /// Parses a header and checks it against `max_payload`.
    pub fn parse(raw: &[u8; HEADER_LEN], max_payload: u32) -> Result<Self, FrameError> {
        let [
            m0,
            m1,
            version,
            kind,
            f0,
            f1,
            s0,
            s1,
            l0,
            l1,
            l2,
            l3,
            r0,
            r1,
            r2,
            r3,
        ] = *raw;
        if [m0, m1] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        if len > max_payload {
            return Err(FrameError::TooLarge {
                len,
                max: max_payload,
            });
        }
        Ok(Self {
            kind,
            flags: u16::from_le_bytes([f0, f1]),
            status: u16::from_le_bytes([s0, s1]),
            len,
            request_id: u32::from_le_bytes([r0, r1, r2, r3]),
        })
    }
}

/// One complete frame found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The parsed header.
    pub header: FrameHeader,
    /// The payload without padding.
    pub payload: &'a [u8],
    /// Bytes of the buffer this frame occupied (header + padded payload).
    pub consumed: usize,
}

/// Looks for one frame at the start of `buf`.
///
/// `Ok(None)` means more bytes are needed. Errors are reported as early as the bytes
/// allow: a wrong magic or version from the first bytes, an oversize length from the
/// header, before the payload has arrived.
pub fn decode(buf: &[u8], max_payload: u32) -> Result<Option<Decoded<'_>>, FrameError> {
    let Some(raw) = buf.first_chunk::<HEADER_LEN>() else {
        check_prefix(buf)?;
        return Ok(None);
    };
    let header = FrameHeader::parse(raw, max_payload)?;
    let total = header.wire_len();
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    let body = frame.get(HEADER_LEN..).unwrap_or_default();
    let (payload, padding) = body.split_at(body.len().min(header.len as usize));
    if padding.iter().any(|&b| b != 0) {
        return Err(FrameError::BadPadding);
    }
    Ok(Some(Decoded {
        header,
        payload,
        consumed: total,
    }))
}

/// Frames a byte stream incrementally.
///
/// `spill` holds the start of a frame that has not fully arrived (empty between
/// frames). The spilled frame is completed from the front of `data`, taking only the
/// bytes it needs; the rest of `data` is framed in place, without copying, and an
/// incomplete tail is copied into `spill`. Each complete frame is passed to
/// `on_frame`; returning false stops (the remaining input is dropped). The spill is
/// left empty and unallocated whenever no partial frame remains, so a connection
/// between frames owns no buffer. An error leaves `spill` unspecified: the stream is
/// unusable after one.
pub fn deframe(
    spill: &mut Vec<u8>,
    mut data: &[u8],
    max_payload: u32,
    mut on_frame: impl FnMut(FrameHeader, &[u8]) -> bool,
) -> Result<(), FrameError> {
    if !spill.is_empty() {
        while decode(spill, max_payload)?.is_none() {
            if data.is_empty() {
                return Ok(());
            }
            let want = match spill.first_chunk::<HEADER_LEN>() {
                Some(raw) => FrameHeader::parse(raw, max_payload)?.wire_len(),
                None => HEADER_LEN,
            };
            let take = want.saturating_sub(spill.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            spill.extend_from_slice(head);
            data = rest;
        }
        let whole = std::mem::take(spill);
        if let Some(f) = decode(&whole, max_payload)?
            && !on_frame(f.header, f.payload)
        {
            return Ok(());
        }
    }
    while !data.is_empty() {
        let Some(f) = decode(data, max_payload)? else {
            *spill = data.to_vec();
            break;
        };
        if !on_frame(f.header, f.payload) {
            return Ok(());
        }
        data = data.get(f.consumed..).unwrap_or_default();
    }
    Ok(())
}

/// Rejects a short prefix that can already be seen not to be a frame.
fn check_prefix(buf: &[u8]) -> Result<(), FrameError> {
    for (seen, want) in buf.iter().zip(MAGIC.iter()) {
        if seen != want {
            return Err(FrameError::BadMagic);
        }
    }
    match buf.get(2) {
        Some(&v) if v != VERSION => Err(FrameError::UnsupportedVersion(v)),
        _ => Ok(()),
    }
}

/// Encodes a whole frame (header, payload, zero padding) into one buffer.
///
/// `header.len` is overwritten with the payload's length. Payloads longer than
/// `u32::MAX` cannot be framed; callers bound their payloads far below that.
pub fn encode(mut header: FrameHeader, payload: &[u8]) -> Bytes {
    header.len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let payload = payload.get(..header.len as usize).unwrap_or(payload);
    let mut out = BytesMut::with_capacity(header.wire_len());
    out.put_slice(&header.to_bytes());
    out.put_slice(payload);
    out.resize(header.wire_len(), 0);
    out.freeze()
}

/// Encodes a payload-less frame carrying only a status code (used for `Error`/`Bye`
/// from the connection layer, which knows no message bodies).
pub fn encode_status(kind: u8, status: u16, request_id: u32) -> Bytes {
    let header = FrameHeader {
        kind,
        status,
        request_id,
        ..FrameHeader::default()
    };
    Bytes::copy_from_slice(&header.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = FrameHeader {
            kind: 7,
            flags: 0x0102,
            status: 300,
            len: 1234,
            request_id: 0xdead_beef,
        };
        let raw = h.to_bytes();
        assert_eq!(&raw[..4], &[b'S', b'B', 1, 7]);
        assert_eq!(FrameHeader::parse(&raw, u32::MAX).unwrap(), h);
    }

    #[test]
    fn padding_keeps_sixteen_alignment() {
        assert_eq!(padded_len(0), 0);
        assert_eq!(padded_len(1), 16);
        assert_eq!(padded_len(16), 16);
        assert_eq!(padded_len(17), 32);
        let f = encode(FrameHeader::new(3, 0, 9), b"hello");
        assert_eq!(f.len(), 32);
        assert!(f[21..].iter().all(|&b| b == 0));
    }

    #[test]
    fn decode_needs_whole_frame_and_reports_consumed() {
        let f = encode(FrameHeader::new(3, 0, 9), b"hello");
        for cut in 0..f.len() {
            assert_eq!(decode(&f[..cut], 1024), Ok(None), "cut at {cut}");
        }
        let d = decode(&f, 1024).unwrap().unwrap();
        assert_eq!(d.payload, b"hello");
        assert_eq!(d.consumed, 32);
        assert_eq!(d.header.request_id, 9);
    }

    #[test]
    fn oversize_rejected_from_header_alone() {
        let raw = FrameHeader::new(3, 10_000, 0).to_bytes();
        assert_eq!(
            decode(&raw, 4096),
            Err(FrameError::TooLarge {
                len: 10_000,
                max: 4096
            })
        );
    }

    #[test]
    fn garbage_rejected_early() {
        assert_eq!(decode(b"G", 1024), Err(FrameError::BadMagic));
        assert_eq!(
            decode(b"GET / HTTP/1.1\r\n", 1024),
            Err(FrameError::BadMagic)
        );
        assert_eq!(
            decode(b"SB\x02", 1024),
            Err(FrameError::UnsupportedVersion(2))
        );
        assert_eq!(decode(b"SB", 1024), Ok(None));
    }

    #[test]
    fn nonzero_padding_rejected() {
        let mut f = encode(FrameHeader::new(3, 0, 0), b"x").to_vec();
        f[20] = 1;
        assert_eq!(decode(&f, 1024), Err(FrameError::BadPadding));
    }

    #[test]
    fn deframe_at_every_split_yields_the_same_frames() {
        let mut stream = Vec::new();
        for (i, body) in [&b""[..], b"a", b"sixteen bytes!!!", b"seventeen bytes!!"]
            .iter()
            .enumerate()
        {
            stream.extend_from_slice(&encode(FrameHeader::new(3, 0, i as u32), body));
        }
        let whole = collect(&[&stream]);
        assert_eq!(whole.len(), 4);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(collect(&[a, b]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(collect(&bytes), whole);
    }

    fn collect(chunks: &[&[u8]]) -> Vec<(u32, Vec<u8>)> {
        let mut spill = Vec::new();
        let mut out = Vec::new();
        for c in chunks {
            deframe(&mut spill, c, 1024, |h, p| {
                out.push((h.request_id, p.to_vec()));
                true
            })
            .unwrap();
        }
        assert!(spill.is_empty() && spill.capacity() == 0);
        out
    }

    #[test]
    fn status_frame_is_header_only() {
        let f = encode_status(5, 102, 4);
        assert_eq!(f.len(), HEADER_LEN);
        let d = decode(&f, 0).unwrap().unwrap();
        assert_eq!(
            (d.header.kind, d.header.status, d.header.request_id),
            (5, 102, 4)
        );
    }
}
