//! The token payload ([`Claims`]) and what a verified token proves ([`Identity`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};

use super::error::AuthError;
use crate::protocol::messages::role;

/// Longest `sub` (user id) accepted, in bytes.
pub const MAX_SUB_BYTES: usize = 256;

/// The `role` claim values and their protocol codes
/// ([`crate::protocol::messages::role`]).
pub const ROLE_NAMES: [(&str, u8); 4] = [
    ("visitor", role::VISITOR),
    ("agent", role::AGENT),
    ("bot", role::BOT),
    ("admin", role::ADMIN),
];

/// The protocol role code for a `role` claim value (`"agent"` → `role::AGENT`).
pub fn role_code(name: &str) -> Option<u8> {
    ROLE_NAMES.iter().find(|(n, _)| *n == name).map(|&(_, c)| c)
}

/// The `role` claim value for a protocol role code (only the four token roles).
pub fn role_name(code: u8) -> Option<&'static str> {
    ROLE_NAMES.iter().find(|(_, c)| *c == code).map(|&(n, _)| n)
}

/// The JWT payload Switchboard reads (after the signature verified) and writes
/// ([`super::Verifier::mint`]). Other claims (`iss`, `aud`, `jti`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id; required, 1 to [`MAX_SUB_BYTES`] bytes.
    pub sub: String,
    /// One of `visitor`, `agent`, `bot`, `admin`; required.
    pub role: String,
    /// Display name; defaults to `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Groups (skills, departments) the user belongs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Tenant the user belongs to; defaults to `""`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// An agent's capacity: conversations served at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// Expiry, seconds since the Unix epoch; required.
    #[serde(deserialize_with = "numeric_date")]
    pub exp: u64,
    /// Not valid before, seconds since the Unix epoch.
    #[serde(
        default,
        deserialize_with = "opt_numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the Unix epoch (informational).
    #[serde(
        default,
        deserialize_with = "opt_numeric_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub iat: Option<u64>,
}

impl Claims {
    /// Claims for `sub` in `role` issued at `now` and expiring `ttl` later; the
    /// optional claims are left unset.
    pub fn new(
        sub: impl Into<String>,
        role: impl Into<String>,
        now: SystemTime,
        ttl: Duration,
    ) -> Self {
        let iat = unix_seconds(now);
        Self {
            sub: sub.into(),
            role: role.into(),
            name: None,
            groups: Vec::new(),
            tenant: None,
            max_concurrent: None,
            exp: iat.saturating_add(ttl.as_secs()),
            nbf: None,
            iat: Some(iat),
        }
    }

    /// The identity these claims prove, or [`AuthError::BadClaims`] when `sub` or
    /// `role` is unacceptable. Time claims are not checked here.
    pub fn identity(&self) -> Result<Identity, AuthError> {
        if self.sub.is_empty() {
            return Err(AuthError::BadClaims("`sub` is empty".into()));
        }
        if self.sub.len() > MAX_SUB_BYTES {
            return Err(AuthError::BadClaims(format!(
                "`sub` is {} bytes; at most {MAX_SUB_BYTES}",
                self.sub.len()
            )));
        }
        let Some(role) = role_code(&self.role) else {
            return Err(AuthError::BadClaims(
                "`role` must be one of visitor, agent, bot, admin".into(),
            ));
        };
        Ok(Identity {
            user: self.sub.clone(),
            name: self.name.clone().unwrap_or_else(|| self.sub.clone()),
            role,
            tenant: self.tenant.clone().unwrap_or_default(),
            groups: self.groups.clone(),
            max_concurrent: self.max_concurrent,
        })
    }
}

/// Who a verified token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id (`sub`).
    pub user: String,
    /// Display name (`name`, else `sub`).
    pub name: String,
    /// Role code, one of [`role::VISITOR`], [`role::AGENT`], [`role::BOT`],
    /// [`role::ADMIN`].
    pub role: u8,
    /// Tenant (`tenant`, else `""`).
    pub tenant: String,
    /// Groups (`groups`, else empty).
    pub groups: Vec<String>,
    /// An agent's capacity (`max_concurrent`), when the token gives one.
    pub max_concurrent: Option<u32>,
}

/// Seconds since the Unix epoch; 0 for times before it.
pub(super) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A JWT NumericDate: non-negative seconds, integral or not (fractions are dropped).
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(v) = n.as_u64() {
        return Ok(v);
    }
    match n.as_f64() {
        // `u64::MAX as f64` rounds up to 2^64, so `<` keeps the cast exact-or-below.
        Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(f as u64),
        _ => Err(serde::de::Error::custom(
            "a time claim must be a non-negative number of seconds",
        )),
    }
}

fn opt_numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "numeric_date")] u64);
    Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Claims, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn role_names_round_trip() {
        for (name, code) in ROLE_NAMES {
            assert_eq!(role_code(name), Some(code));
            assert_eq!(role_name(code), Some(name));
        }
        assert_eq!(role_code("Agent"), None);
        assert_eq!(role_name(role::SYSTEM), None);
    }

    #[test]
    fn optional_claims_default() {
        let c = parse(r#"{"sub":"u1","role":"visitor","exp":10}"#).unwrap();
        let id = c.identity().unwrap();
        assert_eq!(
            id,
            Identity {
                user: "u1".into(),
                name: "u1".into(),
                role: role::VISITOR,
                tenant: String::new(),
                groups: vec![],
                max_concurrent: None,
            }
        );
    }

    #[test]
    fn time_claims_accept_fractions_and_reject_negatives_and_strings() {
        let c =
            parse(r#"{"sub":"u","role":"bot","exp":1700000000.75,"nbf":5,"iat":null}"#).unwrap();
        assert_eq!((c.exp, c.nbf, c.iat), (1_700_000_000, Some(5), None));
        assert!(parse(r#"{"sub":"u","role":"bot","exp":-1}"#).is_err());
        assert!(parse(r#"{"sub":"u","role":"bot","exp":"10"}"#).is_err());
        assert!(parse(r#"{"sub":"u","role":"bot","exp":10,"nbf":"x"}"#).is_err());
        assert!(parse(r#"{"sub":"u","role":"bot"}"#).is_err());
    }

    #[test]
    fn sub_bounds_and_role_are_checked() {
        let mut c = Claims::new("", "agent", UNIX_EPOCH, Duration::from_secs(1));
        assert!(matches!(c.identity(), Err(AuthError::BadClaims(_))));
        c.sub = "x".repeat(MAX_SUB_BYTES);
        assert!(c.identity().is_ok());
        c.sub.push('x');
        assert!(matches!(c.identity(), Err(AuthError::BadClaims(_))));
        c.sub = "alice".into();
        c.role = "root".into();
        assert!(matches!(c.identity(), Err(AuthError::BadClaims(_))));
    }

    #[test]
    fn new_sets_iat_and_exp() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let c = Claims::new("a", "agent", now, Duration::from_secs(60));
        assert_eq!((c.iat, c.exp, c.nbf), (Some(1000), 1060, None));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("name") && !json.contains("groups"), "{json}");
    }
}
