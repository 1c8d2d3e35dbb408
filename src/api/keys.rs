//! API keys: the credential format, the table built from `[[api.keys]]`, and the
//! check of a presented key.
//!
//! A credential is `sbk_<id>_<secret>`, sent as `Authorization: Bearer <credential>`
//! (never in a URL: URLs end up in logs). The gateway stores only the SHA-256 of the
//! secret: the secret is 256 random bits, so a fast hash is as good as a slow one
//! against guessing, and checking a key costs one hash, not an argon2 run per request.
//! Anything else after `Bearer ` is taken for a JWT.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{Scope, Scopes};

/// What starts every API key credential.
pub const KEY_PREFIX: &str = "sbk_";

/// Why a request carries no usable credential; every case is answered 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no credential: send Authorization: Bearer <API key or admin JWT>")]
    Missing,
    /// An `Authorization` header that is not `Bearer <credential>`.
    #[error("Authorization must be: Bearer <API key or admin JWT>")]
    NotBearer,
    /// No key has this id, or the secret is not its secret (not told apart).
    #[error("unknown API key or wrong secret")]
    BadKey,
}

/// A credential as presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// An API key: its id and secret.
    Key {
        /// The key's id.
        id: &'a str,
        /// The secret part.
        secret: &'a str,
    },
    /// Anything else: a JWT for the token verifier.
    Jwt(&'a str),
}

/// Reads an `Authorization` header value.
pub fn credential(header: Option<&str>) -> Result<Credential<'_>, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let (scheme, value) = header.split_once(' ').ok_or(AuthError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let value = value.trim();
    if value.is_empty() {
        return Err(AuthError::NotBearer);
    }
    Ok(match value.strip_prefix(KEY_PREFIX) {
        Some(rest) => match rest.split_once('_') {
            Some((id, secret)) => Credential::Key { id, secret },
            None => Credential::Key {
                id: rest,
                secret: "",
            },
        },
        None => Credential::Jwt(value),
    })
}

/// Who a valid key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHolder {
    /// The key's id.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// What it may do.
    pub scopes: Scopes,
}

#[derive(Debug, Clone)]
struct Key {
    holder: KeyHolder,
    hash: [u8; 32],
}

/// The keys in force (rebuilt by a reload).
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<Key>,
}

/// 64 lower-case hex digits → the 32 bytes they spell.
pub fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let (hi, lo) = match pair {
            [h, l] => (digit(*h)?, digit(*l)?),
            _ => return None,
        };
        *byte = (hi << 4) | lo;
    }
    Some(out)
}

/// The SHA-256 of a secret, as config holds it.
pub fn hash_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new credential for key `id` and the SHA-256 of its secret for the config:
/// `(credential, secret_sha256)`. The secret is 32 bytes of `random`, base64url.
pub fn new_key(id: &str, random: &[u8; 32]) -> (String, String) {
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
    (format!("{KEY_PREFIX}{id}_{secret}"), hash_hex(&secret))
}

impl ApiKeys {
    /// The table of keys (`crate::config::ApiConfig::key_table` builds it from
    /// `[[api.keys]]`): `(id, tenant, secret_sha256, scopes)`. Entries whose hash does
    /// not parse are left out (config validation has refused them already).
    pub fn new<'a>(
        keys: impl IntoIterator<Item = (&'a str, &'a str, &'a str, &'a [Scope])>,
    ) -> Self {
        Self {
            keys: keys
                .into_iter()
                .filter_map(|(id, tenant, hash, scopes)| {
                    Some(Key {
                        holder: KeyHolder {
                            id: id.to_owned(),
                            tenant: tenant.to_owned(),
                            scopes: Scopes::of(scopes),
                        },
                        hash: parse_hash(hash)?,
                    })
                })
                .collect(),
        }
    }

    /// Checks a presented key: its id must name a key and its secret hash to that
    /// key's hash (compared in constant time).
    pub fn check(&self, id: &str, secret: &str) -> Result<&KeyHolder, AuthError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.holder.id == id)
            .ok_or(AuthError::BadKey)?;
        let got = Sha256::digest(secret.as_bytes());
        let diff = got
            .iter()
            .zip(key.hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(&key.holder)
        } else {
            Err(AuthError::BadKey)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(secret: &str) -> ApiKeys {
        let hash = hash_hex(secret);
        ApiKeys::new([(
            "crm",
            "acme",
            hash.as_str(),
            &[Scope::ConversationsRead][..],
        )])
    }

    #[test]
    fn credentials_are_read_from_bearer_headers() {
        assert_eq!(credential(None), Err(AuthError::Missing));
        assert_eq!(credential(Some("Basic abc")), Err(AuthError::NotBearer));
        assert_eq!(credential(Some("Bearer")), Err(AuthError::NotBearer));
        assert_eq!(credential(Some("Bearer  ")), Err(AuthError::NotBearer));
        assert_eq!(
            credential(Some("bearer sbk_crm_s3cr_et")),
            Ok(Credential::Key {
                id: "crm",
                secret: "s3cr_et"
            })
        );
        assert_eq!(
            credential(Some("Bearer sbk_crm")),
            Ok(Credential::Key {
                id: "crm",
                secret: ""
            })
        );
        assert_eq!(
            credential(Some("Bearer a.b.c")),
            Ok(Credential::Jwt("a.b.c"))
        );
    }

    #[test]
    fn a_new_key_checks_and_a_wrong_secret_or_id_does_not() {
        let (cred, hash) = new_key("crm", &[7; 32]);
        let header = format!("Bearer {cred}");
        let Ok(Credential::Key { id, secret }) = credential(Some(&header)) else {
            panic!("not a key: {cred}");
        };
        assert_eq!(id, "crm");
        assert_eq!(hash, hash_hex(secret));
        let keys = table(secret);
        let holder = keys.check("crm", secret).unwrap();
        assert_eq!(holder.tenant, "acme");
        assert!(holder.scopes.grants(Scope::ConversationsRead));
        assert!(!holder.scopes.grants(Scope::MessagesWrite));
        assert_eq!(keys.check("crm", "x"), Err(AuthError::BadKey));
        assert_eq!(keys.check("other", secret), Err(AuthError::BadKey));
    }

    #[test]
    fn hashes_parse_only_as_64_lower_case_hex_digits() {
        let h = hash_hex("x");
        assert!(parse_hash(&h).is_some());
        assert!(parse_hash(&h.to_uppercase()).is_none());
        assert!(parse_hash(&h[1..]).is_none());
        assert!(parse_hash(&format!("{}g", &h[1..])).is_none());
    }
}
