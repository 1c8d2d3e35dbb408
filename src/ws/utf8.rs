//! Incremental UTF-8 validation of a text message across its fragments.
//!
//! A code point may be split between two frames; [`Utf8Stream`] keeps at most the
//! three bytes of an incomplete code point between pushes, and fails as soon as a byte
//! cannot continue valid UTF-8 ("fail fast"), not only at the end of the message. The
//! scanning is `simdutf8`'s; its `compat` errors tell an invalid sequence (`error_len`
//! is `Some`) from one that is merely cut short by the end of the input (`None`).
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use simdutf8::compat::from_utf8;

/// Text that is not UTF-8 (close code 1007).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("text is not valid UTF-8")]
pub struct Utf8Error;

/// Validation state between fragments: the bytes of a code point cut by a fragment
/// boundary (4 bytes, `Copy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Stream {
    tail: [u8; 3],
    tail_len: u8,
}

impl Utf8Stream {
    /// Validates the next piece of the message; `fin` ends it (an incomplete code point
    /// at the end is then an error). After an error the state is unspecified.
    pub fn push(&mut self, mut chunk: &[u8], fin: bool) -> Result<(), Utf8Error> {
        if self.tail_len > 0 {
            chunk = self.complete_tail(chunk)?;
            if self.tail_len > 0 {
                // The chunk ran out before the code point was complete.
                return if fin { Err(Utf8Error) } else { Ok(()) };
            }
        }
        match from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Utf8Error),
            Err(e) => {
                let rest = chunk.get(e.valid_up_to()..).unwrap_or_default();
                if fin || rest.len() > self.tail.len() {
                    return Err(Utf8Error);
                }
                self.keep(rest);
                Ok(())
            }
        }
    }

    /// Whether a code point is pending (the message so far ends inside one).
    pub fn pending(&self) -> bool {
        self.tail_len > 0
    }

    /// Takes the bytes the kept prefix needs from the front of `chunk`; returns the
    /// rest of the chunk.
    fn complete_tail<'a>(&mut self, chunk: &'a [u8]) -> Result<&'a [u8], Utf8Error> {
        let held = usize::from(self.tail_len);
        let lead = self.tail.first().copied().unwrap_or(0);
        let width: usize = match lead {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return Err(Utf8Error),
        };
        let need = width.saturating_sub(held).min(chunk.len());
        let (take, rest) = chunk.split_at(need);
        let mut buf = [0u8; 4];
        let total = held.saturating_add(need);
        for (dst, src) in buf.iter_mut().zip(self.tail.iter().take(held).chain(take)) {
            *dst = *src;
        }
        let seq = buf.get(..total).unwrap_or_default();
        match from_utf8(seq) {
            Ok(_) => {
                self.tail_len = 0;
                Ok(rest)
            }
            Err(e) if e.error_len().is_some() => Err(Utf8Error),
            Err(_) => {
                self.keep(seq);
                Ok(rest)
            }
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.tail.len());
        for (dst, src) in self.tail.iter_mut().zip(bytes) {
            *dst = *src;
        }
        self.tail_len = n as u8;
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

    fn split_validates(bytes: &[u8], cuts: &[usize]) -> Result<(), Utf8Error> {
        let mut s = Utf8Stream::default();
        let mut at = 0;
        for &c in cuts {
            s.push(&bytes[at..c], false)?;
            at = c;
        }
        s.push(&bytes[at..], true)
    }

    #[test]
    fn every_two_way_split_of_valid_text() {
        let text = "aé€𝄞z".as_bytes();
        for cut in 0..=text.len() {
            assert_eq!(split_validates(text, &[cut]), Ok(()), "cut {cut}");
        }
        // Byte by byte.
        let cuts: Vec<usize> = (1..text.len()).collect();
        assert_eq!(split_validates(text, &cuts), Ok(()));
    }

    #[test]
    fn fails_fast_inside_a_message() {
        // Autobahn 6.4.x style: the invalid byte arrives in a non-final fragment.
        let mut s = Utf8Stream::default();
        assert_eq!(s.push("κόσμε".as_bytes(), false), Ok(()));
        assert_eq!(s.push(b"\xf4\x90\x80\x80", false), Err(Utf8Error));
        // A surrogate is refused at its second byte, before the third arrives.
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(b"\xed", false), Ok(()));
        assert_eq!(s.push(b"\xa0", false), Err(Utf8Error));
        // A truncated code point followed by ASCII, across the boundary.
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(b"\xe2\x82", false), Ok(()));
        assert!(s.pending());
        assert_eq!(s.push(b"a", false), Err(Utf8Error));
        // Bytes that can never start UTF-8.
        for b in [0x80u8, 0xc0, 0xc1, 0xf5, 0xff] {
            assert_eq!(
                Utf8Stream::default().push(&[b], false),
                Err(Utf8Error),
                "{b:#x}"
            );
        }
    }

    #[test]
    fn incomplete_at_the_end_fails() {
        assert_eq!(
            Utf8Stream::default().push(b"a\xe2\x82", true),
            Err(Utf8Error)
        );
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(b"\xf0\x9d", false), Ok(()));
        assert_eq!(s.push(b"\x84", false), Ok(()));
        assert_eq!(s.push(b"", true), Err(Utf8Error));
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(b"\xf0\x9d", false), Ok(()));
        assert_eq!(s.push(b"\x84\x9e", true), Ok(()));
        assert!(!s.pending());
    }

    proptest! {
        #[test]
        fn split_anywhere_agrees_with_std(bytes in prop_oneof![
                any::<String>().prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..40),
                // Valid text with one byte flipped.
                (any::<String>(), any::<usize>(), any::<u8>()).prop_map(|(s, i, b)| {
                    let mut v = s.into_bytes();
                    if !v.is_empty() { let n = v.len(); v[i % n] = b; }
                    v
                })],
                cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let want = std::str::from_utf8(&bytes).is_ok();
            prop_assert_eq!(split_validates(&bytes, &cuts).is_ok(), want);
        }

        #[test]
        fn fails_no_later_than_the_fragment_with_the_bad_byte(
                s in any::<String>(), bad in prop_oneof![Just(0xffu8), Just(0x80), Just(0xc0)],
                cut in any::<usize>()) {
            // `s` ‖ bad byte ‖ "more": the push holding the bad byte must fail.
            let mut bytes = s.into_bytes();
            let bad_at = bytes.len();
            bytes.push(bad);
            bytes.extend_from_slice(b"more");
            let cut = cut % (bytes.len() + 1);
            let mut st = Utf8Stream::default();
            let first = st.push(&bytes[..cut], false);
            if cut > bad_at {
                prop_assert_eq!(first, Err(Utf8Error));
            } else {
                prop_assert_eq!(first, Ok(()));
                prop_assert_eq!(st.push(&bytes[cut..], false), Err(Utf8Error));
            }
        }
    }
}
