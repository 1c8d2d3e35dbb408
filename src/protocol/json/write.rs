//! Writing JSON values straight into one output buffer (no intermediate tree).
//!
//! The output is canonical (proto-spec/JSON.md section 3): no white space, strings
//! escaped only where JSON requires it (`"`, `\`, and the controls below U+0020, as
//! `\b \t \n \f \r` or `\u00xx` with lowercase hex), everything else literal UTF-8.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Index of the first byte of `b` that is `"`, `\` or a control below 0x20 (what a
/// JSON string cannot hold as is), eight bytes at a time.
pub(crate) fn find_special(b: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Whether some byte of `x` is below `n` (n <= 0x80; exact as a yes/no).
    let below = |x: u64, n: u64| x.wrapping_sub(LO.wrapping_mul(n)) & !x & HI != 0;
    let mut skipped = 0usize;
    for chunk in b.chunks_exact(8) {
        let x = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or_default());
        let quote = x ^ LO.wrapping_mul(u64::from(b'"'));
        let backslash = x ^ LO.wrapping_mul(u64::from(b'\\'));
        if below(quote, 1) || below(backslash, 1) || below(x, 0x20) {
            break;
        }
        skipped = skipped.saturating_add(8);
    }
    let rest = b.get(skipped..)?;
    let p = rest
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    Some(skipped.saturating_add(p))
}

/// A JSON string.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len().saturating_add(2));
    out.push(b'"');
    let mut rest = s.as_bytes();
    while let Some(i) = find_special(rest) {
        let (run, tail) = rest.split_at(i);
        out.extend_from_slice(run);
        let Some((&b, tail)) = tail.split_first() else {
            break;
        };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                let lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
            }
        }
        rest = tail;
    }
    out.extend_from_slice(rest);
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
    fn find_special_finds_the_first_at_any_offset() {
        for len in 0..40 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0, 0x1f] {
                    let mut v: Vec<u8> = (0..len).map(|i| b"a\x7f\xc3\xa9 ~!#"[i % 8]).collect();
                    let want = (at < len).then(|| {
                        v[at] = special;
                        at
                    });
                    assert_eq!(find_special(&v), want, "len {len} at {at} byte {special}");
                }
            }
        }
        assert_eq!(find_special(b"\x20\x21\x23\x5b\x5d\xff\x80\x7f!!"), None);
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
