//! The visitor's profile as PROFILE events (content type 6) update it: a JSON object
//! `{"name"?: str|null, "email"?: str|null, "fields"?: {...}}` where a present member
//! replaces, `null` removes. Mail needs only the name and the email address; anything
//! else (custom fields, unknown members, wrong types) is ignored.

use serde::Deserialize;
use serde_json::Value;

/// What mail knows of a visitor from its PROFILE events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Profile {
    /// The visitor's name, if given.
    pub name: Option<String>,
    /// The visitor's email address, if given (not checked here).
    pub email: Option<String>,
}

/// One PROFILE body, tolerantly: each member absent, null or a string.
#[derive(Debug, Deserialize)]
struct Update {
    #[serde(default, deserialize_with = "member")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "member")]
    email: Option<Option<String>>,
}

/// A present member: `Some(Some(s))` for a string, `Some(None)` for `null`, and `None`
/// (as if absent) for any other value.
fn member<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Null => None,
        // Not a string: treated as absent by the caller.
        _ => return Ok(Option::None),
    }))
}

impl Profile {
    /// Applies one PROFILE body; a body that is not a JSON object changes nothing.
    pub(crate) fn apply(&mut self, body: &str) {
        let Ok(update) = serde_json::from_str::<Update>(body) else {
            return;
        };
        if let Some(name) = update.name {
            self.name = name.filter(|n| !n.trim().is_empty());
        }
        if let Some(email) = update.email {
            self.email = email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_replace_null_removes_absent_keeps() {
        let mut p = Profile::default();
        p.apply(r#"{"name":"Ann","email":" ann@example.com ","fields":{"plan":"pro"}}"#);
        assert_eq!(p.name.as_deref(), Some("Ann"));
        assert_eq!(p.email.as_deref(), Some("ann@example.com"));
        p.apply(r#"{"email":"ann@work.example"}"#);
        assert_eq!(p.name.as_deref(), Some("Ann"));
        assert_eq!(p.email.as_deref(), Some("ann@work.example"));
        p.apply(r#"{"name":null}"#);
        assert_eq!(p.name, None);
        assert_eq!(p.email.as_deref(), Some("ann@work.example"));
    }

    #[test]
    fn what_it_does_not_understand_is_ignored() {
        let mut p = Profile::default();
        p.apply(r#"{"email":"a@example.com"}"#);
        for body in ["", "[1]", "not json", r#"{"email":5}"#, r#"{"other":{}}"#] {
            p.apply(body);
            assert_eq!(p.email.as_deref(), Some("a@example.com"), "{body}");
        }
    }
}
