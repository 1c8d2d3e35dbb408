//! Visitors without a back end: the gateway issues tokens for a site's visitors
//! (`POST /web/v1/sites/{site}/visitor-token`, see `proto-spec/JSON.md`).
//!
//! - Anonymous visitors get a random visitor id and a *visitor key*,
//!   `base64url(HMAC-SHA256(site secret, "switchboard-visitor:" + site + ":" + id))`:
//!   a capability the page keeps beside the id, so a reload or a second tab gets a
//!   token for the same id (the same user, so the same open conversation).
//! - Identified users: the site's back end computes
//!   `hex(HMAC-SHA256(identity secret, user_id))` and the page posts it with the id,
//!   so a visitor cannot claim someone else's id (as Intercom and Chatwoot do).
//!
//! Sans-IO: [`issue`] is a pure function of the site, the body, the wall-clock time
//! and the random bytes it is given; [`RateTable`] is a per-address token bucket on a
//! [`Mono`] clock the caller passes in.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::claims::Claims;
use super::error::AuthError;
use super::verify::Verifier;
use crate::clock::{Mono, UnixMs};
use crate::config::{SiteSecretError, WebSite};

type HmacSha256 = Hmac<Sha256>;

/// Largest request body of the endpoint, in bytes (413 past it).
pub const MAX_BODY_BYTES: usize = 4096;
/// Longest `visitor_id` or `user_id`, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Longest `name`, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest `email`, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Random bytes of a new visitor id (128 bits).
pub const VISITOR_ID_RANDOM_BYTES: usize = 16;

/// What the key of a visitor key is computed over, before the site and the id.
const KEY_CONTEXT: &str = "switchboard-visitor:";

/// One site as the gateway serves it: `[[web.sites]]` with its secrets read.
/// `Debug` never shows a secret.
pub struct Site {
    /// The site's id (in the path and in its users' ids).
    pub id: String,
    /// Routing group of its visitors' conversations.
    pub group: String,
    /// Tenant of its visitors.
    pub tenant: String,
    /// Key of visitor keys; `Some` when anonymous visitors are on.
    secret: Option<Vec<u8>>,
    /// Key of user hashes; `Some` when identified users are on.
    identity_secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("id", &self.id)
            .field("group", &self.group)
            .field("tenant", &self.tenant)
            .field("anonymous", &self.secret.is_some())
            .field("identified", &self.identity_secret.is_some())
            .finish()
    }
}

impl Site {
    /// The site `cfg` describes (reads its secret files); `default_group` is
    /// `routing.default_group`.
    pub fn from_config(cfg: &WebSite, default_group: &str) -> Result<Self, SiteSecretError> {
        let secret = cfg.secret_bytes()?;
        Ok(Self {
            id: cfg.id.clone(),
            group: cfg.group_or(default_group).to_owned(),
            tenant: cfg.tenant.clone(),
            secret: if cfg.anonymous { secret } else { None },
            identity_secret: cfg.identity_secret_bytes()?,
        })
    }

    /// A site from its parts (tests, tools).
    pub fn new(
        id: &str,
        group: &str,
        tenant: &str,
        secret: Option<&[u8]>,
        identity_secret: Option<&[u8]>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            group: group.to_owned(),
            tenant: tenant.to_owned(),
            secret: secret.map(<[u8]>::to_vec),
            identity_secret: identity_secret.map(<[u8]>::to_vec),
        }
    }

    /// The visitor key of `visitor_id` (`None`: anonymous visitors are off).
    pub fn visitor_key(&self, visitor_id: &str) -> Option<String> {
        let mac = self.key_mac(visitor_id)?;
        Some(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    fn key_mac(&self, visitor_id: &str) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(self.secret.as_deref()?).ok()?;
        mac.update(KEY_CONTEXT.as_bytes());
        mac.update(self.id.as_bytes());
        mac.update(b":");
        mac.update(visitor_id.as_bytes());
        Some(mac)
    }

    /// Whether `key` is the visitor key of `visitor_id` (constant-time compare).
    fn key_matches(&self, visitor_id: &str, key: &str) -> bool {
        let (Some(mac), Ok(given)) = (self.key_mac(visitor_id), URL_SAFE_NO_PAD.decode(key)) else {
            return false;
        };
        mac.verify_slice(&given).is_ok()
    }

    /// Whether `hash` (hex, either case) is `HMAC-SHA256(identity secret, user_id)`
    /// (constant-time compare).
    fn hash_matches(&self, user_id: &str, hash: &str) -> bool {
        let Some(secret) = self.identity_secret.as_deref() else {
            return false;
        };
        let (Ok(mut mac), Some(given)) = (HmacSha256::new_from_slice(secret), from_hex(hash))
        else {
            return false;
        };
        mac.update(user_id.as_bytes());
        mac.verify_slice(&given).is_ok()
    }
}

/// The bytes of a hex string (`None` unless it is all hex digit pairs).
fn from_hex(s: &str) -> Option<Vec<u8>> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
            _ => None,
        })
        .collect()
}

/// What a request of the endpoint came to (the `outcome` label of
/// `switchboard_visitor_tokens_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A token for an anonymous visitor.
    IssuedAnonymous,
    /// A token for an identified user.
    IssuedIdentified,
    /// A visitor key that does not match its id.
    BadKey,
    /// A user hash that does not match its id.
    BadHash,
    /// Too many tokens for one address (429).
    RateLimited,
    /// The site does not allow it: a foreign `Origin`, or a kind of visitor the site
    /// has off (403).
    NotAllowed,
    /// Not a request the endpoint takes: unknown site, method, length, type, body.
    BadRequest,
    /// The gateway could not sign or draw random bytes (500).
    Failed,
}

impl Outcome {
    /// Every outcome, in metric slot order.
    pub const ALL: [Outcome; 8] = [
        Self::IssuedAnonymous,
        Self::IssuedIdentified,
        Self::BadKey,
        Self::BadHash,
        Self::RateLimited,
        Self::NotAllowed,
        Self::BadRequest,
        Self::Failed,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::IssuedAnonymous => "issued_anonymous",
            Self::IssuedIdentified => "issued_identified",
            Self::BadKey => "bad_key",
            Self::BadHash => "bad_hash",
            Self::RateLimited => "rate_limited",
            Self::NotAllowed => "not_allowed",
            Self::BadRequest => "bad_request",
            Self::Failed => "failed",
        }
    }

    /// The slot in [`Outcome::ALL`].
    pub fn slot(self) -> usize {
        Self::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// Why no token was issued for a body; [`VisitorError::status`] is the HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum VisitorError {
    /// Not JSON, or not the JSON of a request (wrong types, unknown fields) (400).
    #[error("bad request body: {0}")]
    BadBody(String),
    /// A field over its bound (400).
    #[error("`{field}` is longer than {max} bytes")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its bound.
        max: usize,
    },
    /// Fields that do not go together, or an empty or ill-formed id (400).
    #[error("{0}")]
    Invalid(&'static str),
    /// The site has anonymous visitors off (403).
    #[error("this site gives no tokens to anonymous visitors")]
    AnonymousOff,
    /// The site has identified users off (403).
    #[error("this site identifies no users")]
    IdentifiedOff,
    /// The visitor key is not the one of the visitor id (403).
    #[error("the visitor key does not belong to the visitor id")]
    BadKey,
    /// The user hash is not the one of the user id (403).
    #[error("the user hash does not match the user id")]
    BadHash,
    /// No random bytes, or the token could not be signed (500).
    #[error("cannot issue a token: {0}")]
    Failed(String),
}

impl VisitorError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadBody(_) | Self::TooLong { .. } | Self::Invalid(_) => 400,
            Self::AnonymousOff | Self::IdentifiedOff | Self::BadKey | Self::BadHash => 403,
            Self::Failed(_) => 500,
        }
    }

    /// The metric outcome.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::BadBody(_) | Self::TooLong { .. } | Self::Invalid(_) => Outcome::BadRequest,
            Self::AnonymousOff | Self::IdentifiedOff => Outcome::NotAllowed,
            Self::BadKey => Outcome::BadKey,
            Self::BadHash => Outcome::BadHash,
            Self::Failed(_) => Outcome::Failed,
        }
    }
}

impl From<AuthError> for VisitorError {
    fn from(e: AuthError) -> Self {
        Self::Failed(e.to_string())
    }
}

/// A request body: `{}`, `{visitor_id, visitor_key}` or `{user_id, user_hash, name?,
/// email?}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    visitor_id: Option<String>,
    visitor_key: Option<String>,
    user_id: Option<String>,
    user_hash: Option<String>,
    name: Option<String>,
    email: Option<String>,
}

/// A token issued: the response body's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issued {
    /// The visitor id (anonymous) or the user id (identified).
    pub visitor_id: String,
    /// The visitor key (anonymous only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_key: Option<String>,
    /// The JWT, for `Hello.token`.
    pub token: String,
    /// When the token expires, Unix milliseconds, as a decimal string.
    pub expires_ms: String,
    /// The user id the token proves (`v:<site>:<id>` or `u:<site>:<user_id>`).
    pub user: String,
    /// Which kind was issued.
    #[serde(skip)]
    pub outcome: Outcome,
}

impl Issued {
    /// The response body.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// How tokens are signed.
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    /// Mints with its first key (or the development secret).
    pub verifier: &'a Verifier,
    /// `web.visitor_token_ttl`.
    pub ttl: Duration,
}

/// The token `body` asks for from `site` at wall-clock time `now`; `random` is the
/// new visitor id's entropy (used only when the body carries no visitor id).
pub fn issue(
    site: &Site,
    body: &[u8],
    now: UnixMs,
    random: [u8; VISITOR_ID_RANDOM_BYTES],
    signing: Signing<'_>,
) -> Result<Issued, VisitorError> {
    let body: Body = serde_json::from_slice(body).map_err(|e| {
        // serde_json's message names the field and the position; it may quote a
        // value of the wrong type (the client's own text, never a secret of ours),
        // so it is cut short for the answer and the log.
        VisitorError::BadBody(shorten(&e.to_string(), MAX_REASON_BYTES))
    })?;
    bound("visitor_id", body.visitor_id.as_deref(), MAX_ID_BYTES)?;
    bound("visitor_key", body.visitor_key.as_deref(), MAX_ID_BYTES)?;
    bound("user_id", body.user_id.as_deref(), MAX_ID_BYTES)?;
    bound("user_hash", body.user_hash.as_deref(), MAX_ID_BYTES)?;
    bound("name", body.name.as_deref(), MAX_NAME_BYTES)?;
    bound("email", body.email.as_deref(), MAX_EMAIL_BYTES)?;
    let identified = body.user_id.is_some() || body.user_hash.is_some();
    if identified {
        identified_user(site, body, now, signing)
    } else {
        anonymous(site, body, now, random, signing)
    }
}

/// Longest reason quoted from the JSON parser.
const MAX_REASON_BYTES: usize = 160;

/// `s` cut to at most `max` bytes on a character boundary.
fn shorten(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or_default().to_owned()
}

fn bound(field: &'static str, v: Option<&str>, max: usize) -> Result<(), VisitorError> {
    match v {
        Some(s) if s.len() > max => Err(VisitorError::TooLong { field, max }),
        Some(s) if s.chars().any(char::is_control) => {
            Err(VisitorError::Invalid("a field holds a control character"))
        }
        _ => Ok(()),
    }
}

fn anonymous(
    site: &Site,
    body: Body,
    now: UnixMs,
    random: [u8; VISITOR_ID_RANDOM_BYTES],
    signing: Signing<'_>,
) -> Result<Issued, VisitorError> {
    if body.name.is_some() || body.email.is_some() {
        return Err(VisitorError::Invalid(
            "`name` and `email` come only with `user_id` and `user_hash`",
        ));
    }
    if site.secret.is_none() {
        return Err(VisitorError::AnonymousOff);
    }
    let visitor_id = match (body.visitor_id, body.visitor_key) {
        (None, None) => URL_SAFE_NO_PAD.encode(random),
        (Some(id), Some(key)) => {
            let id_ok = !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !id_ok {
                return Err(VisitorError::Invalid(
                    "`visitor_id` is 1 to 128 characters of A-Z a-z 0-9 _ -",
                ));
            }
            if !site.key_matches(&id, &key) {
                return Err(VisitorError::BadKey);
            }
            id
        }
        _ => {
            return Err(VisitorError::Invalid(
                "`visitor_id` and `visitor_key` come together",
            ));
        }
    };
    let key = site.visitor_key(&visitor_id);
    let user = format!("v:{}:{visitor_id}", site.id);
    let short: String = visitor_id.chars().take(4).collect();
    let name = format!("Visitor {short}");
    let (token, expires_ms) = mint(site, &user, name, now, signing)?;
    Ok(Issued {
        visitor_id,
        visitor_key: key,
        token,
        expires_ms: expires_ms.to_string(),
        user,
        outcome: Outcome::IssuedAnonymous,
    })
}

fn identified_user(
    site: &Site,
    body: Body,
    now: UnixMs,
    signing: Signing<'_>,
) -> Result<Issued, VisitorError> {
    if body.visitor_id.is_some() || body.visitor_key.is_some() {
        return Err(VisitorError::Invalid(
            "`visitor_id`/`visitor_key` and `user_id`/`user_hash` do not go together",
        ));
    }
    let (Some(user_id), Some(hash)) = (body.user_id, body.user_hash) else {
        return Err(VisitorError::Invalid(
            "`user_id` and `user_hash` come together",
        ));
    };
    if user_id.is_empty() {
        return Err(VisitorError::Invalid("`user_id` is empty"));
    }
    if site.identity_secret.is_none() {
        return Err(VisitorError::IdentifiedOff);
    }
    if !site.hash_matches(&user_id, &hash) {
        return Err(VisitorError::BadHash);
    }
    let user = format!("u:{}:{user_id}", site.id);
    let name = body
        .name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| user_id.clone());
    let (token, expires_ms) = mint(site, &user, name, now, signing)?;
    Ok(Issued {
        visitor_id: user_id,
        visitor_key: None,
        token,
        expires_ms: expires_ms.to_string(),
        user,
        outcome: Outcome::IssuedIdentified,
    })
}

/// A visitor token for `user`; returns it and its expiry in Unix milliseconds.
fn mint(
    site: &Site,
    user: &str,
    name: String,
    now: UnixMs,
    signing: Signing<'_>,
) -> Result<(String, u64), VisitorError> {
    let iat = now.get() / 1000;
    let exp = iat.saturating_add(signing.ttl.as_secs());
    let claims = Claims {
        sub: user.to_owned(),
        role: "visitor".into(),
        name: Some(name),
        groups: vec![site.group.clone()],
        tenant: (!site.tenant.is_empty()).then(|| site.tenant.clone()),
        max_concurrent: None,
        exp,
        nbf: None,
        iat: Some(iat),
    };
    let token = signing.verifier.mint(&claims, None)?;
    Ok((token, exp.saturating_mul(1000)))
}

/// Per-address token buckets (GCRA): `per_minute` tokens a minute, a burst of the
/// same; at most `max_entries` addresses remembered (then the one whose bucket
/// refills first is forgotten: it is the nearest to a fresh one).
#[derive(Debug)]
pub struct RateTable<K> {
    /// Time one token takes to come back.
    interval: Duration,
    /// How far ahead of now an address's "theoretical arrival time" may run.
    tolerance: Duration,
    max_entries: usize,
    /// When each address's bucket is full again.
    full_at: HashMap<K, Mono>,
}

impl<K: Hash + Eq + Copy> RateTable<K> {
    /// A table for `per_minute` tokens a minute (and as many at once) per address,
    /// remembering at most `max_entries` addresses.
    pub fn new(per_minute: u32, max_entries: usize) -> Self {
        let per_minute = per_minute.max(1);
        let interval = Duration::from_secs(60) / per_minute;
        Self {
            interval,
            tolerance: interval.saturating_mul(per_minute.saturating_sub(1)),
            max_entries: max_entries.max(1),
            full_at: HashMap::new(),
        }
    }

    /// Takes a token for `key` at `now`, or says how long until one is back.
    pub fn take(&mut self, key: K, now: Mono) -> Result<(), Duration> {
        let tat = self.full_at.get(&key).copied().unwrap_or(now).max(now);
        let ahead = tat.since(now);
        if ahead > self.tolerance {
            return Err(ahead.saturating_sub(self.tolerance));
        }
        if !self.full_at.contains_key(&key) && self.full_at.len() >= self.max_entries {
            self.make_room(now);
        }
        self.full_at.insert(key, tat.plus(self.interval));
        Ok(())
    }

    /// Forgets full buckets, or else the one that refills first.
    fn make_room(&mut self, now: Mono) {
        self.full_at.retain(|_, at| *at > now);
        if self.full_at.len() >= self.max_entries
            && let Some(k) = self
                .full_at
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| *k)
        {
            self.full_at.remove(&k);
        }
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.full_at.len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.full_at.is_empty()
    }
}

#[cfg(test)]
#[path = "visitor_tests.rs"]
mod tests;
