//! What is wrong inside a refused JSON text.

/// What is wrong inside a JSON text (the detail of [`super::JsonError::Malformed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not JSON (RFC 8259), or more than one value.
    #[error("syntax: {0}")]
    Syntax(&'static str),
    /// A string is not valid UTF-8.
    #[error("invalid UTF-8 in a string")]
    Utf8,
    /// A `\u` escape names half of a surrogate pair without the other half.
    #[error("lone surrogate escape in a string")]
    LoneSurrogate,
    /// The text is a JSON value but not an object.
    #[error("the message is not a JSON object")]
    NotObject,
    /// The message has no `kind`.
    #[error("no \"kind\"")]
    MissingKind,
    /// A key the message (or element) does not have.
    #[error("unknown field {0:?}")]
    UnknownField(String),
    /// A key given twice in one object.
    #[error("duplicate key {0:?}")]
    DuplicateKey(String),
    /// A value of the wrong JSON type.
    #[error("{field}: expected {want}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        want: &'static str,
    },
    /// A number with a sign, fraction or exponent where an unsigned integer belongs.
    #[error("{field}: not a non-negative integer")]
    NotAnInteger {
        /// The field.
        field: &'static str,
    },
    /// An integer beyond its field's type.
    #[error("{field}: larger than {max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The type's maximum.
        max: u64,
    },
    /// A u64 sent as a JSON number beyond 2^53 − 1 (it may have lost precision).
    #[error("{field}: a number beyond 2^53 - 1; send u64 values as decimal strings")]
    UnsafeNumber {
        /// The field.
        field: &'static str,
    },
    /// A u64 string that is not a canonical decimal in range.
    #[error("{field}: not a decimal u64 string")]
    BadU64String {
        /// The field.
        field: &'static str,
    },
    /// An array with more than [`super::MAX_ELEMENTS`] elements.
    #[error("{field}: more than {max} elements")]
    TooManyElements {
        /// The field.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// A bytes field that is not padded standard base64.
    #[error("{field}: not standard padded base64")]
    BadBase64 {
        /// The field.
        field: &'static str,
    },
}

/// Longest key quoted back in an error.
const MAX_QUOTED_KEY: usize = 64;

pub(super) fn quoted(key: &str) -> String {
    let mut end = key.len().min(MAX_QUOTED_KEY);
    while !key.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    key.get(..end).unwrap_or_default().to_owned()
}

impl Problem {
    pub(super) fn unknown_field(key: &str) -> Self {
        Self::UnknownField(quoted(key))
    }

    pub(super) fn duplicate_key(key: &str) -> Self {
        Self::DuplicateKey(quoted(key))
    }
}
