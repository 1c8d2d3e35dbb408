//! RFC 6455 frame headers: parsing (the receive side of [`super::endpoint`]) and
//! encoding of unmasked server frames, plus masked client frames for tests and load
//! generators.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use bytes::{BufMut, Bytes, BytesMut};

/// Longest payload of a control frame (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Longest frame header: 2 bytes, an 8-byte extended length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: the next fragment of a data message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: the closing handshake.
    Close,
    /// 0x9: a ping (answered with a pong carrying the same payload).
    Ping,
    /// 0xA: a pong.
    Pong,
}

impl Opcode {
    /// The opcode for the low four bits of a frame's first byte; `None` for the
    /// reserved ones (0x3-0x7, 0xB-0xF).
    pub fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The opcode's four bits.
    pub fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong.
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// A parsed frame header, not yet checked against the protocol's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The FIN bit.
    pub fin: bool,
    /// The three RSV bits (as bits 6..4 of the first byte, shifted down to 2..0).
    pub rsv: u8,
    /// The raw opcode bits.
    pub opcode: u8,
    /// The mask key, if the MASK bit was set.
    pub mask: Option<[u8; 4]>,
    /// The payload length as announced (may have the top bit set: a protocol error).
    pub len: u64,
    /// Bytes of the header itself (2 to 14).
    pub header_len: usize,
}

/// Parses the frame header at the start of `buf`; `None` until all of it is there.
pub fn parse_header(buf: &[u8]) -> Option<Header> {
    let [b0, b1, rest @ ..] = buf else {
        return None;
    };
    let (len, rest, ext) = match b1 & 0x7f {
        126 => {
            let (n, rest) = rest.split_first_chunk::<2>()?;
            (u64::from(u16::from_be_bytes(*n)), rest, 2)
        }
        127 => {
            let (n, rest) = rest.split_first_chunk::<8>()?;
            (u64::from_be_bytes(*n), rest, 8)
        }
        n => (u64::from(n), rest, 0),
    };
    let (mask, mask_len) = if b1 & 0x80 != 0 {
        (Some(*rest.first_chunk::<4>()?), 4)
    } else {
        (None, 0)
    };
    Some(Header {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x7,
        opcode: b0 & 0x0f,
        mask,
        len,
        header_len: 2usize.saturating_add(ext).saturating_add(mask_len),
    })
}

/// Header of an unmasked server frame with FIN set: up to 10 bytes; the second value
/// is how many of them are used.
pub fn server_header(op: Opcode, len: usize) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    let b0 = 0x80 | op.bits();
    let used = {
        let mut w = &mut out[..];
        w.put_u8(b0);
        if len < 126 {
            w.put_u8(len as u8);
            2
        } else if let Ok(short) = u16::try_from(len) {
            w.put_u8(126);
            w.put_u16(short);
            4
        } else {
            w.put_u8(127);
            w.put_u64(len as u64);
            10
        }
    };
    (out, used)
}

/// A whole unmasked server frame with FIN set: header and payload.
pub fn server_frame(op: Opcode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    put_server_frame(&mut out, op, payload);
    out.freeze()
}

/// [`server_frame`] appended to `out` (several frames leave in one write).
pub fn put_server_frame(out: &mut BytesMut, op: Opcode, payload: &[u8]) {
    let (head, used) = server_header(op, payload.len());
    out.reserve(used.saturating_add(payload.len()));
    out.put_slice(head.get(..used).unwrap_or_default());
    out.put_slice(payload);
}

/// A Close frame with `code` and `reason`, the reason cut at a char boundary so the
/// payload fits a control frame (123 bytes of reason).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let max = MAX_CONTROL_PAYLOAD.saturating_sub(2);
    let mut cut = reason.len().min(max);
    while !reason.is_char_boundary(cut) {
        cut = cut.saturating_sub(1);
    }
    let reason = reason.get(..cut).unwrap_or_default();
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    let len = {
        let mut w = &mut payload[..];
        w.put_u16(code);
        w.put_slice(reason.as_bytes());
        reason.len().saturating_add(2)
    };
    server_frame(Opcode::Close, payload.get(..len).unwrap_or_default())
}

/// A masked client frame (tests, load generators): `op`'s low four bits are the
/// opcode and bits 4-6 the RSV bits, so tests can send reserved ones too.
pub fn client_frame(fin: bool, op: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_HEADER_LEN.saturating_add(payload.len()));
    push_client_frame(&mut out, fin, op, payload, mask);
    out
}

/// [`client_frame`] appended to `out` (no allocation beyond `out`'s growth).
pub fn push_client_frame(out: &mut Vec<u8>, fin: bool, op: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(if fin { 0x80 } else { 0 } | (op & 0x7f));
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(body) = out.get_mut(start..) {
        apply_mask(body, mask);
    }
}

/// XORs `buf` with the repeating `mask` (masking and unmasking are the same), a word
/// at a time.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let [m0, m1, m2, m3] = mask;
    let wide = u64::from_ne_bytes([m0, m1, m2, m3, m0, m1, m2, m3]);
    let mut words = buf.chunks_exact_mut(8);
    for w in &mut words {
        if let Ok(bytes) = <[u8; 8]>::try_from(&*w) {
            w.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
        }
    }
    // The remainder starts at a multiple of 8, so the mask starts over at its byte 0.
    for (b, m) in words.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *b ^= m;
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    reason = "tests compute small offsets"
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn server_headers_at_length_boundaries() {
        for (len, want) in [
            (0usize, &[0x81u8, 0][..]),
            (125, &[0x81, 125]),
            (126, &[0x81, 126, 0, 126]),
            (65535, &[0x81, 126, 0xff, 0xff]),
            (65536, &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let (h, n) = server_header(Opcode::Text, len);
            assert_eq!(&h[..n], want, "{len}");
            let parsed = parse_header(&h[..n]).unwrap();
            assert_eq!(
                (parsed.len, parsed.header_len, parsed.mask),
                (len as u64, n, None)
            );
            assert!(parsed.fin && parsed.rsv == 0 && parsed.opcode == 1);
            assert_eq!(parse_header(&h[..n - 1]), None);
        }
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 5.7: a single-frame unmasked text message "Hello".
        assert_eq!(
            &server_frame(Opcode::Text, b"Hello")[..],
            b"\x81\x05\x48\x65\x6c\x6c\x6f"
        );
        // ... and masked, from a client.
        assert_eq!(
            client_frame(true, 1, b"Hello", [0x37, 0xfa, 0x21, 0x3d]),
            b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
        );
        // An unmasked Pong with "Hello".
        assert_eq!(&server_frame(Opcode::Pong, b"Hello")[..], b"\x8a\x05Hello");
    }

    #[test]
    fn close_frame_cuts_reason_at_char_boundary() {
        let f = close_frame(1000, "");
        assert_eq!(&f[..], b"\x88\x02\x03\xe8");
        let long = "é".repeat(100); // 200 bytes
        let f = close_frame(1001, &long);
        assert_eq!(f[1] as usize, 2 + 122);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
        let ascii = "a".repeat(200);
        assert_eq!(close_frame(1001, &ascii)[1], 125);
    }

    #[test]
    fn opcodes() {
        for bits in 0u8..16 {
            match Opcode::from_bits(bits) {
                Some(op) => assert_eq!(op.bits(), bits),
                None => assert!(matches!(bits, 3..=7 | 0xb..=0xf)),
            }
        }
        assert!(Opcode::Ping.is_control() && !Opcode::Continuation.is_control());
    }

    proptest! {
        #[test]
        fn masking_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..300),
                               mask in any::<[u8; 4]>(), fin: bool, op in 0u8..16) {
            let frame = client_frame(fin, op, &payload, mask);
            let h = parse_header(&frame).unwrap();
            prop_assert_eq!((h.fin, h.opcode, h.mask, h.len), (fin, op, Some(mask), payload.len() as u64));
            let mut body = frame[h.header_len..].to_vec();
            // Byte-wise reference masking.
            for (i, b) in body.iter().enumerate() {
                prop_assert_eq!(*b, payload[i] ^ mask[i % 4]);
            }
            apply_mask(&mut body, mask);
            prop_assert_eq!(body, payload);
        }

        #[test]
        fn headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Some(h) = parse_header(&bytes) {
                prop_assert!(h.header_len <= bytes.len() && h.header_len <= MAX_HEADER_LEN);
            }
        }
    }
}
