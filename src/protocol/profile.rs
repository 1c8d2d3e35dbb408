//! The body of a `PROFILE` message (content type 6, PROTOCOL.md section 5.2a): a
//! JSON object that updates the visitor profile of a conversation — `name`,
//! `email` and custom `fields` — and the merged profile it updates.
//!
//! Sans-IO and strict: [`ProfileUpdate::parse`] takes the body text and returns a
//! typed error for anything but the documented object (unknown or repeated members,
//! wrong types, bounds, control characters), so the decoder, the HTTP API and the
//! shard all refuse the same bodies with the same words.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};

/// Largest body in bytes.
pub const MAX_BODY: usize = 4096;
/// Longest `name` in characters.
pub const MAX_NAME: usize = 128;
/// Longest `email` in characters (bytes: it is ASCII).
pub const MAX_EMAIL: usize = 254;
/// Longest local part of an `email` (before the `@`).
pub const MAX_EMAIL_LOCAL: usize = 64;
/// Longest domain of an `email` (after the `@`).
pub const MAX_EMAIL_DOMAIN: usize = 253;
/// Most members of `fields` in one update, and in a merged profile.
pub const MAX_FIELDS: usize = 32;
/// Longest key of `fields`.
pub const MAX_KEY: usize = 64;
/// Longest value of `fields` in characters.
pub const MAX_VALUE: usize = 512;

/// Why a `PROFILE` body is refused (400 `bad_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// More than [`MAX_BODY`] bytes.
    #[error("longer than 4096 bytes")]
    TooLarge,
    /// Not JSON, not an object, an unknown or repeated member, or a member of the
    /// wrong type (the JSON parser's words).
    #[error("not a profile object ({{name, email, fields}}): {0}")]
    Json(String),
    /// An object without any member.
    #[error("no member: name, email or fields is needed")]
    Empty,
    /// `name` longer than [`MAX_NAME`] characters.
    #[error("name: more than 128 characters")]
    Name,
    /// `email` that is not a plain `local@domain` address.
    #[error("email: not a plain address local@domain (at most 254 characters)")]
    Email,
    /// A control character in `name` or a `fields` value.
    #[error("a control character in a string")]
    Control,
    /// A `fields` key that is not 1 to [`MAX_KEY`] of `A-Z a-z 0-9 _ . -`.
    #[error("fields: a key is 1 to 64 of A-Z a-z 0-9 _ . -")]
    Key,
    /// A `fields` value longer than [`MAX_VALUE`] characters.
    #[error("fields: a value is at most 512 characters")]
    Value,
    /// More than [`MAX_FIELDS`] members in `fields`.
    #[error("fields: more than 32 members")]
    TooManyFields,
    /// The profile would hold more than [`MAX_FIELDS`] fields after the merge.
    #[error("the visitor profile would hold more than 32 fields")]
    MergedTooMany,
}

impl ProfileError {
    /// A fixed description (for [`crate::protocol::DecodeError::Bound`]).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "longer than 4096 bytes",
            Self::Json(_) => "not a profile object {name, email, fields}",
            Self::Empty => "no member: name, email or fields is needed",
            Self::Name => "name: more than 128 characters",
            Self::Email => "email: not a plain address local@domain",
            Self::Control => "a control character in a string",
            Self::Key => "fields: a key is 1 to 64 of A-Z a-z 0-9 _ . -",
            Self::Value => "fields: a value is at most 512 characters",
            Self::TooManyFields => "fields: more than 32 members",
            Self::MergedTooMany => "the visitor profile would hold more than 32 fields",
        }
    }
}

/// One `PROFILE` body: what it changes. A member that is `None` leaves the
/// profile's value alone; `Some(None)` (JSON `null`) removes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfileUpdate {
    /// The visitor's name.
    pub name: Option<Option<String>>,
    /// The visitor's email address.
    pub email: Option<Option<String>>,
    /// Custom fields by key: a value replaces, `None` removes (`fields` absent:
    /// `None`; `{}` is `Some` of an empty map and changes nothing).
    pub fields: Option<BTreeMap<String, Option<String>>>,
}

/// The merged visitor profile of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    /// The visitor's name.
    pub name: Option<String>,
    /// The visitor's email address.
    pub email: Option<String>,
    /// Custom fields (at most [`MAX_FIELDS`]).
    pub fields: BTreeMap<String, String>,
}

impl ProfileUpdate {
    /// Parses and checks a `PROFILE` body.
    pub fn parse(body: &str) -> Result<Self, ProfileError> {
        if body.len() > MAX_BODY {
            return Err(ProfileError::TooLarge);
        }
        let raw: Raw = serde_json::from_str(body).map_err(|e| ProfileError::Json(e.to_string()))?;
        let Raw {
            name,
            email,
            fields,
        } = raw;
        if name.is_none() && email.is_none() && fields.is_none() {
            return Err(ProfileError::Empty);
        }
        if let Some(Some(n)) = &name {
            if n.chars().count() > MAX_NAME {
                return Err(ProfileError::Name);
            }
            no_control(n)?;
        }
        if let Some(Some(e)) = &email
            && !valid_email(e)
        {
            return Err(ProfileError::Email);
        }
        if let Some(f) = &fields {
            if f.len() > MAX_FIELDS {
                return Err(ProfileError::TooManyFields);
            }
            for (k, v) in f {
                if !valid_key(k) {
                    return Err(ProfileError::Key);
                }
                if let Some(v) = v {
                    if v.chars().count() > MAX_VALUE {
                        return Err(ProfileError::Value);
                    }
                    no_control(v)?;
                }
            }
        }
        Ok(Self {
            name,
            email,
            fields,
        })
    }

    /// The body text of this update (members in a fixed order; parses back to it).
    pub fn to_json(&self) -> String {
        let mut m = serde_json::Map::new();
        let opt = |v: &Option<String>| v.clone().map_or(serde_json::Value::Null, Into::into);
        if let Some(n) = &self.name {
            m.insert("name".into(), opt(n));
        }
        if let Some(e) = &self.email {
            m.insert("email".into(), opt(e));
        }
        if let Some(f) = &self.fields {
            let f: serde_json::Map<String, serde_json::Value> =
                f.iter().map(|(k, v)| (k.clone(), opt(v))).collect();
            m.insert("fields".into(), f.into());
        }
        serde_json::Value::Object(m).to_string()
    }
}

impl Profile {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.email.is_none() && self.fields.is_empty()
    }

    /// Merges `u` in: a member present replaces, `null` removes, `fields` key by
    /// key. Refused, changing nothing, when more than [`MAX_FIELDS`] fields would
    /// result.
    pub fn apply(&mut self, u: &ProfileUpdate) -> Result<(), ProfileError> {
        if let Some(f) = &u.fields {
            let mut count = self.fields.len();
            for (k, v) in f {
                match (self.fields.contains_key(k), v.is_some()) {
                    (false, true) => count += 1,
                    (true, false) => count -= 1,
                    _ => {}
                }
            }
            if count > MAX_FIELDS {
                return Err(ProfileError::MergedTooMany);
            }
            for (k, v) in f {
                match v {
                    Some(v) => self.fields.insert(k.clone(), v.clone()),
                    None => self.fields.remove(k),
                };
            }
        }
        if let Some(n) = &u.name {
            self.name = n.clone();
        }
        if let Some(e) = &u.email {
            self.email = e.clone();
        }
        Ok(())
    }

    /// The JSON object `{name, email, fields}`, each member only when set.
    pub fn to_value(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if let Some(n) = &self.name {
            m.insert("name".into(), n.clone().into());
        }
        if let Some(e) = &self.email {
            m.insert("email".into(), e.clone().into());
        }
        if !self.fields.is_empty() {
            let f: serde_json::Map<String, serde_json::Value> = self
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            m.insert("fields".into(), f.into());
        }
        serde_json::Value::Object(m)
    }
}

/// A profile with `update` merged in (`None`: empty), as a conversation keeps it:
/// `Ok(None)` when nothing is left set.
pub fn merged(
    profile: Option<&Profile>,
    update: &ProfileUpdate,
) -> Result<Option<Box<Profile>>, ProfileError> {
    let mut p = profile.cloned().unwrap_or_default();
    p.apply(update)?;
    Ok((!p.is_empty()).then(|| Box::new(p)))
}

fn no_control(s: &str) -> Result<(), ProfileError> {
    if s.chars().any(char::is_control) {
        return Err(ProfileError::Control);
    }
    Ok(())
}

/// A plain addr-spec: one `@`, a local part of 1 to 64 and a domain of 1 to 253
/// printable ASCII characters other than space and `<>()[]\,;:"`, the domain without
/// an empty label.
pub fn valid_email(s: &str) -> bool {
    if s.len() > MAX_EMAIL {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let ok = |b: u8| b.is_ascii_graphic() && !b"<>()[]\\,;:\"@".contains(&b);
    (1..=MAX_EMAIL_LOCAL).contains(&local.len())
        && (1..=MAX_EMAIL_DOMAIN).contains(&domain.len())
        && local.bytes().all(ok)
        && domain.bytes().all(ok)
        && domain.split('.').all(|label| !label.is_empty())
}

fn valid_key(k: &str) -> bool {
    (1..=MAX_KEY).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The body's structure: members and their JSON types, before the bounds.
struct Raw {
    name: Option<Option<String>>,
    email: Option<Option<String>>,
    fields: Option<BTreeMap<String, Option<String>>>,
}

impl<'de> de::Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with name, email, fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut raw = Raw {
            name: None,
            email: None,
            fields: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            let repeated = match key.as_str() {
                "name" => raw.name.replace(map.next_value()?).is_some(),
                "email" => raw.email.replace(map.next_value()?).is_some(),
                "fields" => raw.fields.replace(map.next_value::<Fields>()?.0).is_some(),
                other => {
                    return Err(de::Error::custom(format_args!(
                        "unknown member `{other}` (name, email, fields)"
                    )));
                }
            };
            if repeated {
                return Err(de::Error::custom(format_args!("repeated member `{key}`")));
            }
        }
        Ok(raw)
    }
}

/// The `fields` object: string keys, string or `null` values, no key twice.
struct Fields(BTreeMap<String, Option<String>>);

impl<'de> de::Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of strings or nulls")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: Option<String> = map.next_value()?;
            if fields.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "fields: repeated key `{key}`"
                )));
            }
            fields.insert(key, value);
        }
        Ok(Fields(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<ProfileUpdate, ProfileError> {
        ProfileUpdate::parse(s)
    }

    #[test]
    fn accepts_the_documented_object() {
        let u = parse(
            r#"{"name":"Ann Lee","email":"ann@example.com","fields":{"plan":"pro","old":null}}"#,
        )
        .unwrap();
        assert_eq!(u.name, Some(Some("Ann Lee".into())));
        assert_eq!(u.email, Some(Some("ann@example.com".into())));
        let f = u.fields.unwrap();
        assert_eq!(f.get("plan"), Some(&Some("pro".into())));
        assert_eq!(f.get("old"), Some(&None));
        let u = parse(r#"{"email":null}"#).unwrap();
        assert_eq!(u.email, Some(None));
        assert_eq!(u.name, None);
        assert!(parse(r#"{"fields":{}}"#).is_ok());
        assert!(parse(&format!(r#"{{"name":"{}"}}"#, "é".repeat(MAX_NAME))).is_ok());
        assert!(
            parse(&format!(
                r#"{{"email":"{}@{}"}}"#,
                "a".repeat(64),
                "b".repeat(189)
            ))
            .is_ok()
        );
    }

    #[test]
    fn refuses_everything_else_with_its_reason() {
        let long_value = format!(r#"{{"fields":{{"k":"{}"}}}}"#, "x".repeat(MAX_VALUE + 1));
        let many: Vec<String> = (0..=MAX_FIELDS).map(|i| format!(r#""k{i}":"v""#)).collect();
        let many = format!(r#"{{"fields":{{{}}}}}"#, many.join(","));
        let cases: Vec<(String, ProfileError)> = vec![
            ("{}".into(), ProfileError::Empty),
            (
                format!(r#"{{"name":"{}"}}"#, "x".repeat(MAX_NAME + 1)),
                ProfileError::Name,
            ),
            (r#"{"name":"a\u0007b"}"#.into(), ProfileError::Control),
            (r#"{"fields":{"k":"a\nb"}}"#.into(), ProfileError::Control),
            (r#"{"email":"ann"}"#.into(), ProfileError::Email),
            (r#"{"email":"a@b@c"}"#.into(), ProfileError::Email),
            (r#"{"email":"@b"}"#.into(), ProfileError::Email),
            (r#"{"email":"a@"}"#.into(), ProfileError::Email),
            (r#"{"email":"a b@c"}"#.into(), ProfileError::Email),
            (r#"{"email":"a@b..c"}"#.into(), ProfileError::Email),
            (r#"{"email":"a@.c"}"#.into(), ProfileError::Email),
            (r#"{"email":"a@c."}"#.into(), ProfileError::Email),
            (r#"{"email":"<a>@c"}"#.into(), ProfileError::Email),
            (r#"{"email":"ä@c"}"#.into(), ProfileError::Email),
            (r#"{"email":""}"#.into(), ProfileError::Email),
            (
                format!(r#"{{"email":"{}@b"}}"#, "a".repeat(65)),
                ProfileError::Email,
            ),
            (r#"{"fields":{"a b":"v"}}"#.into(), ProfileError::Key),
            (r#"{"fields":{"":"v"}}"#.into(), ProfileError::Key),
            (
                format!(r#"{{"fields":{{"{}":"v"}}}}"#, "k".repeat(65)),
                ProfileError::Key,
            ),
            (long_value, ProfileError::Value),
            (many, ProfileError::TooManyFields),
            (
                format!(r#"{{"name":"{}"}}"#, "x".repeat(MAX_BODY)),
                ProfileError::TooLarge,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse(&body), Err(want), "{body}");
        }
        for body in [
            "",
            "null",
            "[]",
            r#""name""#,
            r#"{"name":1}"#,
            r#"{"nick":"x"}"#,
            r#"{"name":"a","name":"b"}"#,
            r#"{"fields":{"k":"a","k":"b"}}"#,
            r#"{"fields":{"k":1}}"#,
            r#"{"fields":[]}"#,
            r#"{"fields":null}"#,
            r#"{"name":"a"} x"#,
            r#"{"name":"a""#,
        ] {
            assert!(
                matches!(parse(body), Err(ProfileError::Json(_))),
                "{body}: {:?}",
                parse(body)
            );
        }
    }

    #[test]
    fn merging_replaces_removes_and_stays_bounded() {
        let mut p = Profile::default();
        p.apply(&parse(r#"{"name":"Ann","fields":{"a":"1","b":"2"}}"#).unwrap())
            .unwrap();
        p.apply(&parse(r#"{"email":"ann@x.org","fields":{"a":null,"c":"3"}}"#).unwrap())
            .unwrap();
        assert_eq!(
            p.to_value(),
            serde_json::json!({"name":"Ann","email":"ann@x.org","fields":{"b":"2","c":"3"}})
        );
        p.apply(&parse(r#"{"name":null}"#).unwrap()).unwrap();
        assert_eq!(p.name, None);
        // 32 fields, then one more is refused and changes nothing; a swap is fine.
        let full: Vec<String> = (0..MAX_FIELDS - 2)
            .map(|i| format!(r#""f{i}":"v""#))
            .collect();
        p.apply(&parse(&format!(r#"{{"fields":{{{}}}}}"#, full.join(","))).unwrap())
            .unwrap();
        assert_eq!(p.fields.len(), MAX_FIELDS);
        let before = p.clone();
        let more = parse(r#"{"name":"Bo","fields":{"new":"x"}}"#).unwrap();
        assert_eq!(p.apply(&more), Err(ProfileError::MergedTooMany));
        assert_eq!(p, before);
        p.apply(&parse(r#"{"fields":{"b":null,"new":"x"}}"#).unwrap())
            .unwrap();
        assert_eq!(p.fields.len(), MAX_FIELDS);
        let none = merged(
            None,
            &parse(r#"{"name":null,"fields":{"x":null}}"#).unwrap(),
        );
        assert_eq!(none, Ok(None));
        assert_eq!(Profile::default().to_value(), serde_json::json!({}));
    }

    fn text(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..max).prop_map(|v| v.into_iter().collect())
    }

    fn update() -> impl Strategy<Value = ProfileUpdate> {
        let email = "[a-z0-9.+_-]{1,20}@[a-z0-9-]{1,10}(\\.[a-z]{1,5}){0,2}";
        let key = "[A-Za-z0-9_.-]{1,64}";
        let value = proptest::option::of("[^\\p{Cc}]{0,40}");
        (
            proptest::option::of(proptest::option::of("[^\\p{Cc}]{0,128}")),
            proptest::option::of(proptest::option::of(email)),
            proptest::option::of(proptest::collection::btree_map(key, value, 0..6)),
        )
            .prop_filter_map("one member", |(name, email, fields)| {
                let u = ProfileUpdate {
                    name,
                    email,
                    fields,
                };
                (u != ProfileUpdate::default() && u.to_json().len() <= MAX_BODY).then_some(u)
            })
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips_what_it_accepts(s in text(300)) {
            if let Ok(u) = parse(&s) {
                prop_assert_eq!(parse(&u.to_json()), Ok(u));
            }
        }

        #[test]
        fn near_misses_never_panic(
            name in text(20),
            key in text(8),
            value in text(20),
            member in "(name|email|fields|nick)",
        ) {
            for body in [
                format!(r#"{{"{member}":{}}}"#, serde_json::Value::from(name.clone())),
                format!(r#"{{"fields":{{{}:{}}}}}"#,
                    serde_json::Value::from(key.clone()), serde_json::Value::from(value.clone())),
                format!(r#"{{"email":{}}}"#, serde_json::Value::from(format!("{name}@{value}"))),
            ] {
                if let Ok(u) = parse(&body) {
                    prop_assert_eq!(parse(&u.to_json()), Ok(u));
                }
            }
        }

        #[test]
        fn every_valid_update_round_trips(u in update()) {
            prop_assert_eq!(parse(&u.to_json()), Ok(u));
        }
    }
}
