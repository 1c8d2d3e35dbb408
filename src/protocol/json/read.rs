//! A strict pull reader over one JSON text (RFC 8259), driven by the message schema.
//!
//! The caller asks for the value it expects next (an object, a string, an integer...);
//! anything else is a [`Problem`]. Only `fields` is ever skipped ([`Reader::skip_value`]:
//! of an unknown kind, or to be read once `kind` is known when it comes first); the
//! skip recurses, but no deeper than the pre-scan ([`check_depth`]) allowed, and the
//! typed reading never nests deeper than the schema.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::borrow::Cow;

use super::problem::Problem;
use super::write::find_special;

/// Position in a JSON text and the primitives to read it.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Byte offset of the next unread byte (for error messages).
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Moves to `pos` (a position this reader reported before).
    pub(crate) fn seek(&mut self, pos: usize) {
        self.pos = pos;
    }

    fn bump(&mut self) {
        self.pos = self.pos.saturating_add(1);
    }

    /// The next byte after white space, not consumed.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.buf.get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.bump();
            } else {
                return Some(b);
            }
        }
        None
    }

    /// Only white space is left.
    pub(crate) fn end(&mut self) -> Result<(), Problem> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(Problem::Syntax("trailing bytes after the message")),
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn eat_literal(&mut self, lit: &[u8]) -> bool {
        let end = self.pos.saturating_add(lit.len());
        if self.buf.get(self.pos..end) == Some(lit) {
            self.pos = end;
            true
        } else {
            false
        }
    }

    /// `{`, else a wrong-type problem naming `field`.
    pub(crate) fn begin_object(&mut self, field: &'static str) -> Result<(), Problem> {
        if self.eat(b'{') {
            Ok(())
        } else {
            Err(self.wrong(field, "an object"))
        }
    }

    /// The next key of an object (and its `:`), or `None` at its `}`. `first` is true
    /// before the first key and is cleared here.
    pub(crate) fn next_key(&mut self, first: &mut bool) -> Result<Option<Cow<'a, str>>, Problem> {
        // A `}` right after a comma is refused below (a key is expected there).
        if self.eat(b'}') {
            return Ok(None);
        }
        if !*first && !self.eat(b',') {
            return Err(Problem::Syntax("expected `,` or `}` in an object"));
        }
        *first = false;
        if self.peek() != Some(b'"') {
            return Err(Problem::Syntax("expected a string key"));
        }
        let key = self.string_raw()?;
        if !self.eat(b':') {
            return Err(Problem::Syntax("expected `:` after a key"));
        }
        Ok(Some(key))
    }

    /// `[`, else a wrong-type problem naming `field`.
    pub(crate) fn begin_array(&mut self, field: &'static str) -> Result<(), Problem> {
        if self.eat(b'[') {
            Ok(())
        } else {
            Err(self.wrong(field, "an array"))
        }
    }

    /// Whether another element follows (consuming its `,`), false at the `]`.
    pub(crate) fn next_element(&mut self, first: &mut bool) -> Result<bool, Problem> {
        if self.eat(b']') {
            return Ok(false);
        }
        if !*first && !self.eat(b',') {
            return Err(Problem::Syntax("expected `,` or `]` in an array"));
        }
        *first = false;
        if self.peek() == Some(b']') {
            return Err(Problem::Syntax("comma before `]`"));
        }
        Ok(true)
    }

    /// A JSON string value for `field`.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<Cow<'a, str>, Problem> {
        if self.peek() == Some(b'"') {
            self.string_raw()
        } else {
            Err(self.wrong(field, "a string"))
        }
    }

    /// `true` or `false`.
    pub(crate) fn boolean(&mut self, field: &'static str) -> Result<bool, Problem> {
        if self.peek() == Some(b't') && self.eat_literal(b"true") {
            Ok(true)
        } else if self.peek() == Some(b'f') && self.eat_literal(b"false") {
            Ok(false)
        } else {
            Err(self.wrong(field, "true or false"))
        }
    }

    /// Whether the next value is a JSON number (without reading it).
    pub(crate) fn at_number(&mut self) -> bool {
        matches!(self.peek(), Some(b'-' | b'0'..=b'9'))
    }

    /// A JSON number that must be a non-negative integer no larger than `max`.
    pub(crate) fn integer(&mut self, field: &'static str, max: u64) -> Result<u64, Problem> {
        if !self.at_number() {
            return Err(self.wrong(field, "a number"));
        }
        let negative = self.eat(b'-');
        let digits_start = self.pos;
        let mut value: Option<u64> = Some(0);
        match self.buf.get(self.pos) {
            Some(b'0') => self.bump(),
            Some(b'1'..=b'9') => {
                while let Some(&d @ b'0'..=b'9') = self.buf.get(self.pos) {
                    value = value
                        .and_then(|v| v.checked_mul(10))
                        .and_then(|v| v.checked_add(u64::from(d.wrapping_sub(b'0'))));
                    self.bump();
                }
            }
            _ => return Err(Problem::Syntax("bad number")),
        }
        if self.pos == digits_start.saturating_add(1)
            && matches!(self.buf.get(self.pos), Some(b'0'..=b'9'))
        {
            return Err(Problem::Syntax("leading zero in a number"));
        }
        let mut fraction = false;
        if self.buf.get(self.pos) == Some(&b'.') {
            self.bump();
            fraction = true;
            self.digits()?;
        }
        if matches!(self.buf.get(self.pos), Some(b'e' | b'E')) {
            self.bump();
            if matches!(self.buf.get(self.pos), Some(b'+' | b'-')) {
                self.bump();
            }
            fraction = true;
            self.digits()?;
        }
        if negative || fraction {
            return Err(Problem::NotAnInteger { field });
        }
        match value {
            Some(v) if v <= max => Ok(v),
            _ => Err(Problem::OutOfRange { field, max }),
        }
    }

    fn digits(&mut self) -> Result<(), Problem> {
        let from = self.pos;
        while matches!(self.buf.get(self.pos), Some(b'0'..=b'9')) {
            self.bump();
        }
        if self.pos == from {
            Err(Problem::Syntax("bad number"))
        } else {
            Ok(())
        }
    }

    /// Skips one value of any type, checking its syntax. Its nesting was bounded by
    /// the pre-scan, and so is the recursion.
    pub(crate) fn skip_value(&mut self) -> Result<(), Problem> {
        match self.peek() {
            Some(b'{') => {
                self.bump();
                let mut first = true;
                while self.next_key(&mut first)?.is_some() {
                    self.skip_value()?;
                }
                Ok(())
            }
            Some(b'[') => {
                self.bump();
                let mut first = true;
                while self.next_element(&mut first)? {
                    self.skip_value()?;
                }
                Ok(())
            }
            Some(b'"') => self.string_raw().map(drop),
            Some(b't') if self.eat_literal(b"true") => Ok(()),
            Some(b'f') if self.eat_literal(b"false") => Ok(()),
            Some(b'n') if self.eat_literal(b"null") => Ok(()),
            Some(b'-' | b'0'..=b'9') => match self.integer("fields", u64::MAX) {
                Ok(_) | Err(Problem::NotAnInteger { .. } | Problem::OutOfRange { .. }) => Ok(()),
                Err(e) => Err(e),
            },
            _ => Err(Problem::Syntax("expected a value")),
        }
    }

    /// A wrong-type problem, or a syntax one when no value starts here at all.
    fn wrong(&mut self, field: &'static str, want: &'static str) -> Problem {
        match self.peek() {
            Some(b'{' | b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
                Problem::WrongType { field, want }
            }
            None => Problem::Syntax("unexpected end of text"),
            Some(_) => Problem::Syntax("expected a value"),
        }
    }

    /// The string at `pos` (which holds its opening quote): borrowed when it has no
    /// escapes, otherwise unescaped into a new one.
    fn string_raw(&mut self) -> Result<Cow<'a, str>, Problem> {
        self.bump();
        let start = self.pos;
        let rest = self.buf.get(start..).unwrap_or_default();
        let Some(stop) = find_special(rest) else {
            return Err(Problem::Syntax("unterminated string"));
        };
        let (plain, tail) = rest.split_at(stop);
        if tail.first() == Some(&b'"') {
            self.pos = start.saturating_add(stop).saturating_add(1);
            return std::str::from_utf8(plain)
                .map(Cow::Borrowed)
                .map_err(|_| Problem::Utf8);
        }
        let mut out = Vec::with_capacity(
            rest.len()
                .min(plain.len().saturating_mul(2).saturating_add(16)),
        );
        out.extend_from_slice(plain);
        self.pos = start.saturating_add(stop);
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(Problem::Syntax("unterminated string"));
            };
            self.bump();
            match b {
                b'"' => break,
                b'\\' => self.escape(&mut out)?,
                _ => return Err(Problem::Syntax("control character in a string")),
            }
            // Copy the run up to the next quote, backslash or control at once.
            let rest = self.buf.get(self.pos..).unwrap_or_default();
            let run = find_special(rest).unwrap_or(rest.len());
            out.extend_from_slice(rest.get(..run).unwrap_or_default());
            self.pos = self.pos.saturating_add(run);
        }
        String::from_utf8(out)
            .map(Cow::Owned)
            .map_err(|_| Problem::Utf8)
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Problem> {
        let Some(&e) = self.buf.get(self.pos) else {
            return Err(Problem::Syntax("unterminated string"));
        };
        self.bump();
        let simple = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hi = self.hex4()?;
                let c = match hi {
                    0xd800..=0xdbff => {
                        if !self.eat_literal(b"\\u") {
                            return Err(Problem::LoneSurrogate);
                        }
                        let lo = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&lo) {
                            return Err(Problem::LoneSurrogate);
                        }
                        let high = u32::from(hi).wrapping_sub(0xd800).wrapping_shl(10);
                        let code = 0x10000u32
                            .wrapping_add(high)
                            .wrapping_add(u32::from(lo).wrapping_sub(0xdc00));
                        char::from_u32(code).ok_or(Problem::LoneSurrogate)?
                    }
                    0xdc00..=0xdfff => return Err(Problem::LoneSurrogate),
                    _ => char::from_u32(u32::from(hi)).ok_or(Problem::LoneSurrogate)?,
                };
                let mut tmp = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                return Ok(());
            }
            _ => return Err(Problem::Syntax("bad escape in a string")),
        };
        out.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u16, Problem> {
        let mut v: u32 = 0;
        for _ in 0..4 {
            let d = self
                .buf
                .get(self.pos)
                .and_then(|&c| char::from(c).to_digit(16))
                .ok_or(Problem::Syntax("bad \\u escape"))?;
            v = v.wrapping_shl(4) | d;
            self.bump();
        }
        Ok(u16::try_from(v).unwrap_or(u16::MAX))
    }
}

/// Refuses a text nesting deeper than `max_depth` with one cheap pass, before any
/// parsing (strings are skipped, so brackets inside them do not count).
pub(crate) fn check_depth(text: &[u8], max_depth: usize) -> Result<(), usize> {
    let mut depth = 0usize;
    let mut i = 0usize;
    while let Some(&b) = text.get(i) {
        i = i.saturating_add(1);
        match b {
            b'"' => loop {
                // Skip the string: to its closing quote, stepping over escapes.
                let rest = text.get(i..).unwrap_or_default();
                let Some(p) = find_special(rest) else {
                    return Ok(()); // unterminated: the parser refuses it
                };
                i = i.saturating_add(p);
                match text.get(i) {
                    Some(b'"') => {
                        i = i.saturating_add(1);
                        break;
                    }
                    Some(b'\\') => i = i.saturating_add(2),
                    _ => i = i.saturating_add(1),
                }
            },
            b'{' | b'[' => {
                depth = depth.saturating_add(1);
                if depth > max_depth {
                    return Err(depth);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}
