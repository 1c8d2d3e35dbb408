//! `[api]`: the HTTP API on the client port (`/api/v1/…`) and its `[[api.keys]]`.

use serde::{Deserialize, Serialize};

use crate::api::Scope;

/// The HTTP API for back ends.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Largest request body, in bytes (`Content-Length` or chunked); larger is
    /// answered 413 and the connection closed.
    pub max_body_bytes: usize,
    /// API requests one reactor may have waiting for the workers at once; past it a
    /// request is answered 503 with `Retry-After`.
    pub max_in_flight: usize,
    /// Largest transcript export (`GET /conversations/{id}/export`), in bytes of
    /// JSON Lines: the reactor gathers it before answering; larger is answered 413
    /// (page through `/messages` instead).
    pub max_export_bytes: usize,
    /// Largest attachment (`POST /conversations/{id}/attachments`), in bytes: the
    /// body limit of that route instead of `max_body_bytes` (413 and close past it).
    pub max_attachment_bytes: usize,
    /// Media types an attachment may have (its `Content-Type`); others: 415.
    pub attachment_types: Vec<String>,
    /// Uploads one reactor may have reading their body or waiting for the service at
    /// once (each may hold `max_attachment_bytes`); past it: 503 with `Retry-After`.
    pub max_uploads_in_flight: usize,
    /// Keys a back end authenticates with (`Authorization: Bearer sbk_<id>_<secret>`).
    /// None by default: only admin JWTs are accepted.
    pub keys: Vec<ApiKeyConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_in_flight: 1024,
            max_export_bytes: 64 * 1024 * 1024,
            max_attachment_bytes: 10 * 1024 * 1024,
            attachment_types: [
                "image/png",
                "image/jpeg",
                "image/gif",
                "image/webp",
                "application/pdf",
                "text/plain",
            ]
            .map(String::from)
            .to_vec(),
            max_uploads_in_flight: 16,
            keys: Vec::new(),
        }
    }
}

/// One API key: the secret itself is never stored, only its SHA-256.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The key's name, the part of the credential before the secret: 1 to 64
    /// characters of `A-Z a-z 0-9 -` (no `_`, which ends it).
    pub id: String,
    /// The tenant whose data the key reaches (default: the empty tenant).
    #[serde(default)]
    pub tenant: String,
    /// Lower-case hex SHA-256 of the secret part of the credential (64 characters),
    /// as `switchboard api-key` prints it.
    #[serde(skip_serializing)]
    pub secret_sha256: String,
    /// What the key may do.
    pub scopes: Vec<Scope>,
}

impl std::fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Most `[[api.keys]]` entries (each is a label value of a metric).
pub const MAX_API_KEYS: usize = 256;

/// `1..=64` characters of `A-Z a-z 0-9 -`.
pub fn valid_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `type/subtype` of lower-case RFC 6838 name characters, at most 127 bytes.
pub fn valid_media_type(t: &str) -> bool {
    let name = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&-^_.+".contains(&b))
    };
    t.len() <= 127 && t.split_once('/').is_some_and(|(a, b)| name(a) && name(b))
}

impl ApiConfig {
    /// The keys in force, as the session workers check them.
    pub fn key_table(&self) -> crate::api::keys::ApiKeys {
        crate::api::keys::ApiKeys::new(self.keys.iter().map(|k| {
            (
                k.id.as_str(),
                k.tenant.as_str(),
                k.secret_sha256.as_str(),
                k.scopes.as_slice(),
            )
        }))
    }

    /// Checks every value; `Err((key, why))`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(("api.max_body_bytes", "from 1024 to 67108864".into()));
        }
        if !(1..=65_536).contains(&self.max_in_flight) {
            return Err(("api.max_in_flight", "from 1 to 65536".into()));
        }
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.max_export_bytes) {
            return Err(("api.max_export_bytes", "from 65536 to 1073741824".into()));
        }
        if !(1..=1024 * 1024 * 1024).contains(&self.max_attachment_bytes) {
            return Err(("api.max_attachment_bytes", "from 1 to 1073741824".into()));
        }
        if !(1..=4096).contains(&self.max_uploads_in_flight) {
            return Err(("api.max_uploads_in_flight", "from 1 to 4096".into()));
        }
        if self.attachment_types.len() > 256 {
            return Err(("api.attachment_types", "at most 256 media types".into()));
        }
        for t in &self.attachment_types {
            if !valid_media_type(t) {
                return Err((
                    "api.attachment_types",
                    format!("{t:?}: a media type `type/subtype` in lower case, without parameters"),
                ));
            }
        }
        if self.keys.len() > MAX_API_KEYS {
            return Err(("api.keys", format!("at most {MAX_API_KEYS} keys")));
        }
        for (i, key) in self.keys.iter().enumerate() {
            let id = &key.id;
            if !valid_key_id(id) {
                return Err((
                    "api.keys.id",
                    format!("{id:?}: 1 to 64 characters of A-Z a-z 0-9 -"),
                ));
            }
            if self
                .keys
                .get(..i)
                .unwrap_or_default()
                .iter()
                .any(|k| k.id == *id)
            {
                return Err(("api.keys.id", format!("{id:?} appears more than once")));
            }
            if crate::api::keys::parse_hash(&key.secret_sha256).is_none() {
                return Err((
                    "api.keys.secret_sha256",
                    format!("key {id:?}: 64 lower-case hex digits (run `switchboard api-key`)"),
                ));
            }
            if key.scopes.is_empty() {
                return Err(("api.keys.scopes", format!("key {id:?}: at least one scope")));
            }
            if key.tenant.len() > 1024 {
                return Err(("api.keys.tenant", format!("key {id:?}: at most 1024 bytes")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_keys_are_checked() {
        assert_eq!(ApiConfig::default().validate(), Ok(()));
        for t in ["image/png", "application/vnd.ms-excel", "text/x-c++src"] {
            assert!(valid_media_type(t), "{t}");
        }
        for t in [
            "",
            "png",
            "Image/PNG",
            "text/plain; charset=utf-8",
            "a/b/c",
            "/x",
            "x/",
        ] {
            assert!(!valid_media_type(t), "{t}");
        }
        let bad = |f: fn(&mut ApiConfig)| {
            let mut c = ApiConfig::default();
            f(&mut c);
            c.validate().unwrap_err().0
        };
        assert_eq!(
            bad(|c| c.max_attachment_bytes = 0),
            "api.max_attachment_bytes"
        );
        assert_eq!(
            bad(|c| c.max_uploads_in_flight = 0),
            "api.max_uploads_in_flight"
        );
        assert_eq!(
            bad(|c| c.attachment_types = vec!["text/html; x=1".into()]),
            "api.attachment_types"
        );
    }
}
