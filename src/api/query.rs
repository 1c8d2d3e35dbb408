//! Query strings (`application/x-www-form-urlencoded`): strict, bounded parsing into
//! named parameters. An unknown or repeated parameter, a broken percent escape or
//! bytes that are not UTF-8 are errors, not silently dropped: a back end that
//! misspells `limit` learns it at once.

use std::borrow::Cow;

/// Most parameters in one query.
pub const MAX_PARAMS: usize = 16;

/// Why a query string is refused (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A `%` not followed by two hex digits, or a decoded value that is not UTF-8.
    #[error("query parameter {0:?} is not valid percent-encoded UTF-8")]
    Encoding(String),
    /// A parameter the route does not take.
    #[error("unknown query parameter {0:?}")]
    Unknown(String),
    /// The same parameter twice.
    #[error("query parameter {0:?} given twice")]
    Repeated(String),
    /// More than [`MAX_PARAMS`] parameters.
    #[error("more than {MAX_PARAMS} query parameters")]
    TooMany,
    /// A value that is not what the parameter takes.
    #[error("query parameter {name:?}: {why}")]
    Value {
        /// The parameter.
        name: &'static str,
        /// What it takes.
        why: &'static str,
    },
}

/// Decodes one `+`/percent-encoded component.
fn decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (bytes.next()? as char).to_digit(16)?;
                let lo = (bytes.next()? as char).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// The parameters of `query` that a route takes, by the position of their name in
/// `names`; each at most once.
pub fn params<'q>(
    query: Option<&'q str>,
    names: &[&'static str],
) -> Result<Vec<Option<Cow<'q, str>>>, QueryError> {
    let mut values: Vec<Option<Cow<'q, str>>> = vec![None; names.len()];
    let Some(query) = query else {
        return Ok(values);
    };
    for (n, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
        if n >= MAX_PARAMS {
            return Err(QueryError::TooMany);
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name).ok_or_else(|| QueryError::Encoding(name.to_owned()))?;
        let value = decode(value).ok_or_else(|| QueryError::Encoding(name.to_string()))?;
        let i = names
            .iter()
            .position(|known| *known == name)
            .ok_or_else(|| QueryError::Unknown(name.to_string()))?;
        let slot = values
            .get_mut(i)
            .ok_or_else(|| QueryError::Unknown(name.to_string()))?;
        if slot.is_some() {
            return Err(QueryError::Repeated(name.to_string()));
        }
        *slot = Some(value);
    }
    Ok(values)
}

/// An unsigned integer parameter (decimal, no sign), at most `max`.
pub fn number(
    value: Option<&str>,
    name: &'static str,
    max: u64,
    why: &'static str,
) -> Result<Option<u64>, QueryError> {
    let Some(v) = value else {
        return Ok(None);
    };
    let bad = QueryError::Value { name, why };
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    match v.parse::<u64>() {
        Ok(n) if n <= max => Ok(Some(n)),
        _ => Err(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded_by_name() {
        let v = params(Some("b=x%20y&a=1+2&&c"), &["a", "b", "c", "d"]).unwrap();
        assert_eq!(v[0].as_deref(), Some("1 2"));
        assert_eq!(v[1].as_deref(), Some("x y"));
        assert_eq!(v[2].as_deref(), Some(""));
        assert_eq!(v[3], None);
        assert_eq!(params(None, &["a"]).unwrap(), vec![None]);
    }

    #[test]
    fn bad_queries_are_refused() {
        assert_eq!(
            params(Some("x=1"), &["a"]),
            Err(QueryError::Unknown("x".into()))
        );
        assert_eq!(
            params(Some("a=1&a=2"), &["a"]),
            Err(QueryError::Repeated("a".into()))
        );
        assert!(matches!(
            params(Some("a=%zz"), &["a"]),
            Err(QueryError::Encoding(_))
        ));
        assert!(matches!(
            params(Some("a=%ff"), &["a"]),
            Err(QueryError::Encoding(_))
        ));
        assert!(matches!(
            params(Some("a=%4"), &["a"]),
            Err(QueryError::Encoding(_))
        ));
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=1")).collect();
        let names: Vec<&'static str> = (0..=MAX_PARAMS).map(|i| &*format!("p{i}").leak()).collect();
        assert_eq!(
            params(Some(&many.join("&")), &names),
            Err(QueryError::TooMany)
        );
    }

    #[test]
    fn numbers_are_plain_decimal_within_bounds() {
        assert_eq!(number(Some("42"), "n", 100, "x"), Ok(Some(42)));
        assert_eq!(number(None, "n", 100, "x"), Ok(None));
        for bad in [
            "",
            "-1",
            "+1",
            "1e3",
            "101",
            "99999999999999999999999",
            " 1",
        ] {
            assert!(number(Some(bad), "n", 100, "x").is_err(), "{bad}");
        }
        assert_eq!(
            number(Some("18446744073709551615"), "n", u64::MAX, "x"),
            Ok(Some(u64::MAX))
        );
    }
}
