//! How each wire type reads from and writes to JSON (proto-spec/JSON.md section 3),
//! and the macros that give every message struct its JSON object form.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::problem::Problem;
use super::read::Reader;
use super::write;
use crate::protocol::messages::{
    ConversationInfo, Cursor, Entry, GroupAvailability, Resumed, Suggestion, with_every_message,
};

/// Largest u64 a JSON number may carry (2^53 − 1, exact in an IEEE double).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A wire type's JSON form.
pub(crate) trait JsonField: Sized {
    /// Appends the value's JSON text.
    fn write_json(&self, out: &mut Vec<u8>);
    /// Reads one value for `field` (its name, for errors).
    fn read_json(r: &mut Reader<'_>, field: &'static str) -> Result<Self, Problem>;
    /// A value drawn from `src`, covering the edges of the JSON form (tests only).
    #[cfg(test)]
    fn sample(src: &mut dyn FnMut() -> u64) -> Self;
}

/// Most elements one array may hold (above any page the server sends: a
/// `HistoryPage` has at most `routing.history_page_max` <= 65535 entries). Bounds
/// the memory a small text can make the converter allocate.
pub const MAX_ELEMENTS: usize = u16::MAX as usize;

/// Element types of vectors (`vec<u8>` is not one: it travels as base64).
pub(crate) trait JsonElem: JsonField {}

macro_rules! small_int {
    ($($t:ty),*) => {$(
        impl JsonField for $t {
            fn write_json(&self, out: &mut Vec<u8>) {
                write::number(out, u64::from(*self));
            }
            fn read_json(r: &mut Reader<'_>, field: &'static str) -> Result<Self, Problem> {
                let v = r.integer(field, u64::from(<$t>::MAX))?;
                <$t>::try_from(v).map_err(|_| Problem::OutOfRange { field, max: u64::from(<$t>::MAX) })
            }
            #[cfg(test)]
            fn sample(src: &mut dyn FnMut() -> u64) -> Self {
                match src() % 4 {
                    0 => 0,
                    1 => <$t>::MAX,
                    _ => src() as $t,
                }
            }
        }
    )*};
}
small_int!(u8, u16, u32);

impl JsonField for u64 {
    fn write_json(&self, out: &mut Vec<u8>) {
        write::u64_string(out, *self);
    }
    fn read_json(r: &mut Reader<'_>, field: &'static str) -> Result<Self, Problem> {
        if r.at_number() {
            return r.integer(field, MAX_SAFE_INTEGER).map_err(|e| match e {
                Problem::OutOfRange { .. } => Problem::UnsafeNumber { field },
                e => e,
            });
        }
        let s = r.string(field).map_err(|e| match e {
            Problem::WrongType { field, .. } => Problem::WrongType {
                field,
                want: "a decimal string (or a number up to 2^53 - 1)",
            },
            e => e,
        })?;
        parse_u64(&s).ok_or(Problem::BadU64String { field })
    }
    #[cfg(test)]
    fn sample(src: &mut dyn FnMut() -> u64) -> Self {
        match src() % 6 {
            0 => 0,
            1 => u64::MAX,
            2 => MAX_SAFE_INTEGER,
            3 => MAX_SAFE_INTEGER + 1,
            _ => src(),
        }
    }
}

/// A canonical decimal u64: `0`, or 1 to 20 digits without a leading zero, no sign,
/// no white space, at most 18446744073709551615.
fn parse_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 20 || (b.len() > 1 && b.first() == Some(&b'0')) {
        return None;
    }
    if !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.parse().ok()
}

impl JsonField for bool {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
    fn read_json(r: &mut Reader<'_>, field: &'static str) -> Result<Self, Problem> {
        r.boolean(field)
    }
    #[cfg(test)]
    fn sample(src: &mut dyn FnMut() -> u64) -> Self {
        src() % 2 == 1
    }
}

impl JsonField for String {
    fn write_json(&self, out: &mut Vec<u8>) {
        write::string(out, self);
    }
    fn read_json(r: &mut Reader<'_>, field: &'static str) -> Result<Self, Problem> {
        r.string(field).map(std::borrow::Cow::into_owned)
    }
    #[cfg(test)]
    fn sample(src: &mut dyn FnMut() -> u64) -> Self {
        const PIECES: &[&str] = &[
            "", "a", "hello", "你好", "😀", "\"", "\\", "/", "\u{0}", "\n", "\u{1f}", "\u{7f}",
            "\u{2028}", "\u{fffd}", " ", "{}[]:,",
        ];
        let n = src() % 6;
        (0..n)
            .map(|_| PIECES[(src() % PIECES.len() as u64) as usize])
            .collect()
    }
}

impl JsonField for Vec<u8> {
    fn write_json(&self, out: &mut Vec<u8>) {
        write::base64(out, self);
    }
    fn read_json(r: &mut Reader<'_>, field: &'static str) -> Result<Self, Problem> {
        let s = r.string(field).map_err(|e| match e {
            Problem::WrongType { field, .. } => Problem::WrongType {
                field,
                want: "a base64 string",
            },
            e => e,
        })?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(|_| Problem::BadBase64 { field })
    }
    #[cfg(test)]
    fn sample(src: &mut dyn FnMut() -> u64) -> Self {
        let n = src() % 8;
        (0..n).map(|_| src() as u8).collect()
    }
}

impl<T: JsonElem> JsonField for Vec<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, e) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            e.write_json(out);
        }
        out.push(b']');
    }
    fn read_json(r: &mut Reader<'_>, field: &'static str) -> Result<Self, Problem> {
        r.begin_array(field)?;
        let mut v = Vec::new();
        let mut first = true;
        while r.next_element(&mut first)? {
            if v.len() >= MAX_ELEMENTS {
                return Err(Problem::TooManyElements {
                    field,
                    max: MAX_ELEMENTS,
                });
            }
            v.push(T::read_json(r, field)?);
        }
        Ok(v)
    }
    #[cfg(test)]
    fn sample(src: &mut dyn FnMut() -> u64) -> Self {
        let n = src() % 4;
        (0..n).map(|_| T::sample(src)).collect()
    }
}

impl JsonElem for String {}

/// Gives a struct of the message schema its JSON object form: every field, in
/// declaration order, by name; on input any order, each at most once, absent = zero
/// or empty, anything else refused.
macro_rules! json_object {
    ($name:ident { $first:ident $(, $field:ident)* $(,)? }) => {
        impl $crate::protocol::json::field::JsonField for $crate::protocol::messages::$name {
            fn write_json(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(concat!("{\"", stringify!($first), "\":").as_bytes());
                $crate::protocol::json::field::JsonField::write_json(&self.$first, out);
                $(
                    out.extend_from_slice(concat!(",\"", stringify!($field), "\":").as_bytes());
                    $crate::protocol::json::field::JsonField::write_json(&self.$field, out);
                )*
                out.push(b'}');
            }

            fn read_json(
                r: &mut $crate::protocol::json::read::Reader<'_>,
                field: &'static str,
            ) -> Result<Self, $crate::protocol::json::problem::Problem> {
                const NAMES: &[&str] = &[stringify!($first) $(, stringify!($field))*];
                let mut m = Self::default();
                let mut seen = 0u64;
                r.begin_object(field)?;
                let mut first = true;
                while let Some(key) = r.next_key(&mut first)? {
                    let key: &str = &key;
                    let Some(i) = NAMES.iter().position(|n| *n == key) else {
                        return Err($crate::protocol::json::problem::Problem::unknown_field(key));
                    };
                    let bit = 1u64.checked_shl(i as u32).unwrap_or(0);
                    if seen & bit != 0 {
                        return Err($crate::protocol::json::problem::Problem::duplicate_key(key));
                    }
                    seen |= bit;
                    if key == stringify!($first) {
                        m.$first = $crate::protocol::json::field::JsonField::read_json(r, stringify!($first))?;
                    }
                    $( else if key == stringify!($field) {
                        m.$field = $crate::protocol::json::field::JsonField::read_json(r, stringify!($field))?;
                    } )*
                }
                Ok(m)
            }

            #[cfg(test)]
            fn sample(src: &mut dyn FnMut() -> u64) -> Self {
                Self {
                    $first: $crate::protocol::json::field::JsonField::sample(src),
                    $( $field: $crate::protocol::json::field::JsonField::sample(src), )*
                }
            }
        }
    };
}
pub(crate) use json_object;

/// The JSON form of every message (called by `messages::with_every_message!` with
/// each struct and its fields): each struct's object form, the kind names, and the
/// per-kind dispatch over [`crate::protocol::Msg`] (`write_fields`, `read_fields`).
macro_rules! json_messages {
    ($( $name:ident { $($field:ident),* } )*) => {
        $( $crate::protocol::json::field::json_object!($name { $($field),* }); )*

        impl $crate::protocol::Kind {
            /// The kind's name (`"Send"`), as in PROTOCOL.md section 2 and the JSON
            /// form's `kind`.
            pub fn name(self) -> &'static str {
                match self { $( $crate::protocol::Kind::$name => stringify!($name), )* }
            }

            /// The kind of a name, if this build knows it (exact, case-sensitive).
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $( stringify!($name) => Some($crate::protocol::Kind::$name), )*
                    _ => None,
                }
            }
        }

        /// Appends the JSON object of the message's fields.
        pub(super) fn write_fields(msg: &$crate::protocol::Msg, out: &mut Vec<u8>) {
            match msg {
                $( $crate::protocol::Msg::$name(m) =>
                    $crate::protocol::json::field::JsonField::write_json(m, out), )*
            }
        }

        /// Reads the JSON object of a `kind` message's fields.
        pub(super) fn read_fields(
            kind: $crate::protocol::Kind,
            r: &mut $crate::protocol::json::read::Reader<'_>,
        ) -> Result<$crate::protocol::Msg, $crate::protocol::json::problem::Problem> {
            Ok(match kind {
                $( $crate::protocol::Kind::$name => $crate::protocol::Msg::$name(
                    $crate::protocol::json::field::JsonField::read_json(r, "fields")?
                ), )*
            })
        }

        /// A message of `kind` drawn from `src` (tests only).
        #[cfg(test)]
        pub(super) fn sample(
            kind: $crate::protocol::Kind,
            src: &mut dyn FnMut() -> u64,
        ) -> $crate::protocol::Msg {
            match kind {
                $( $crate::protocol::Kind::$name => $crate::protocol::Msg::$name(
                    $crate::protocol::json::field::JsonField::sample(src)
                ), )*
            }
        }
    };
}
pub(crate) use json_messages;

json_object!(Cursor {
    conversation,
    last_seq
});
json_object!(Resumed {
    conversation,
    from_seq,
    recovered
});
json_object!(Entry {
    seq,
    time_ms,
    kind,
    sender_role,
    content_type,
    flags,
    sender,
    body
});
json_object!(Suggestion { id, uses, text });
json_object!(GroupAvailability {
    online,
    estimated_wait_ms,
    group
});
json_object!(ConversationInfo {
    conversation,
    opened_ms,
    updated_ms,
    last_seq,
    state,
    group,
    visitor,
    visitor_name,
    agent
});

with_every_message!();

impl JsonElem for Cursor {}
impl JsonElem for Resumed {}
impl JsonElem for Entry {}
impl JsonElem for Suggestion {}
impl JsonElem for GroupAvailability {}
impl JsonElem for ConversationInfo {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_strings_are_canonical_decimals() {
        for (s, want) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("00", None),
            ("07", None),
            ("", None),
            ("-1", None),
            ("+1", None),
            (" 1", None),
            ("1.0", None),
            ("1e3", None),
            ("０", None),
        ] {
            assert_eq!(parse_u64(s), want, "{s:?}");
        }
    }
}
