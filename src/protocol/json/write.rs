//! Writing JSON values straight into one output buffer (no intermediate tree).
//!
//! The output is canonical (proto-spec/JSON.md section 3): no white space, strings
//! escaped only where JSON requires it (`"`, `\`, and the controls below U+0020, as
//! `\b \t \n \f \r` or `\u00xx` with lowercase hex), everything else literal UTF-8.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A JSON string.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len().saturating_add(2));
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => {
                out.extend_from_slice(bytes.get(from..i).unwrap_or_default());
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                let lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
                from = i.saturating_add(1);
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(bytes.get(from..i).unwrap_or_default());
        out.extend_from_slice(esc);
        from = i.saturating_add(1);
    }
    out.extend_from_slice(bytes.get(from..).unwrap_or_default());
    out.push(b'"');
}

/// An unsigned integer as a JSON number.
pub(crate) fn number(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A u64 as a decimal JSON string (JavaScript numbers are exact only to 2^53 − 1).
pub(crate) fn u64_string(out: &mut Vec<u8>, v: u64) {
    out.push(b'"');
    number(out, v);
    out.push(b'"');
}

/// Bytes as a base64 JSON string (RFC 4648 section 4 alphabet, with padding).
pub(crate) fn base64(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'"');
    let start = out.len();
    let len = data.len().div_ceil(3).saturating_mul(4);
    out.resize(start.saturating_add(len), 0);
    if let Some(dst) = out.get_mut(start..) {
        // The slice is exactly the encoded length, so this cannot fail.
        let written = STANDARD.encode_slice(data, dst).unwrap_or(0);
        out.truncate(start.saturating_add(written));
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_like_serde_json() {
        for s in [
            "",
            "plain",
            "quote \" back \\ slash /",
            "\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f}\u{7f}",
            "你好 😀 \u{2028}",
        ] {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn base64_pads() {
        for (data, want) in [
            (&b""[..], "\"\""),
            (b"f", "\"Zg==\""),
            (b"fo", "\"Zm8=\""),
            (b"foo", "\"Zm9v\""),
            (&[0xff, 0xfe, 0xfd, 0xfc], "\"//79/A==\""),
        ] {
            let mut out = Vec::new();
            base64(&mut out, data);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
