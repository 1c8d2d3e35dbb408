//! Minting the tokens `storm` logs in with (protocol mode).
//!
//! HS256 JWTs signed with the secret in `--secret-file` (the HMAC key is the file's
//! text, trimmed, exactly as the daemon reads `secret_file` keys and its development
//! secret). With `--kid` the token's header names that key; without, it carries no
//! `kid` and the server checks it against its first key (or the development secret).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use switchboard::auth::Claims;
use switchboard::config::MIN_SECRET_BYTES;

/// Why tokens cannot be minted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The secret file could not be read.
    #[error(
        "cannot read the token secret {path}: {source} (start the daemon once to create its \
         development secret, or pass --secret-file)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The secret is shorter than the daemon accepts.
    #[error("the secret in {path} is {len} bytes; the daemon requires at least {MIN_SECRET_BYTES}")]
    Short {
        /// The file.
        path: PathBuf,
        /// Its trimmed length.
        len: usize,
    },
    /// Signing failed.
    #[error("cannot mint a token: {0}")]
    Sign(String),
}

/// Mints visitor tokens with one HS256 key.
pub struct Minter {
    key: EncodingKey,
    kid: Option<String>,
    ttl: Duration,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Minter {
    /// A minter from secret bytes; tokens live `ttl`.
    pub fn new(secret: &[u8], kid: Option<String>, ttl: Duration) -> Self {
        Self {
            key: EncodingKey::from_secret(secret),
            kid,
            ttl,
        }
    }

    /// Reads the secret file (trimmed) and checks its length.
    pub fn from_file(path: &Path, kid: Option<String>, ttl: Duration) -> Result<Self, TokenError> {
        let bytes = std::fs::read(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        let secret = bytes.trim_ascii();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(TokenError::Short {
                path: path.to_owned(),
                len: secret.len(),
            });
        }
        Ok(Self::new(secret, kid, ttl))
    }

    /// A visitor token for `sub`.
    pub fn visitor(&self, sub: &str) -> Result<String, TokenError> {
        self.token(sub, "visitor", &[], None)
    }

    /// A token for `sub` in `role` (`visitor`, `agent`, `bot`, `admin`), listing
    /// `groups`, with `max_concurrent` when given.
    pub fn token(
        &self,
        sub: &str,
        role: &str,
        groups: &[&str],
        max_concurrent: Option<u32>,
    ) -> Result<String, TokenError> {
        let mut claims = Claims::new(sub, role, SystemTime::now(), self.ttl);
        claims.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        claims.max_concurrent = max_concurrent;
        claims
            .identity()
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid.clone_from(&self.kid);
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| TokenError::Sign(e.to_string()))
    }
}

/// The user id of connection `index` of process `proc_index`: `storm-<proc>-<i>`.
pub fn sub(proc_index: usize, index: u64) -> String {
    format!("storm-{proc_index}-{index}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard::Config;
    use switchboard::auth::Verifier;
    use switchboard::config::AuthKey;
    use switchboard::protocol::messages::role;

    const SECRET: &str = "storm-test-secret-0123456789abcdef0123456789";

    fn verifier(kid: &str) -> Verifier {
        let mut c = Config::default();
        c.auth.keys = vec![AuthKey {
            kid: kid.into(),
            secret: Some(SECRET.into()),
            secret_file: None,
        }];
        Verifier::from_config(&c).unwrap()
    }

    #[test]
    fn minted_tokens_verify_with_and_without_kid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("  {SECRET}\n")).unwrap();
        let ttl = Duration::from_secs(60);
        for kid in [Some("k1".to_owned()), None] {
            let m = Minter::from_file(&path, kid, ttl).unwrap();
            let t = m.visitor(&sub(1, 42)).unwrap();
            let id = verifier("k1").verify(&t, SystemTime::now()).unwrap();
            assert_eq!((id.user.as_str(), id.role), ("storm-1-42", role::VISITOR));
        }
        let wrong = Minter::from_file(&path, Some("other".into()), ttl).unwrap();
        let t = wrong.visitor("x").unwrap();
        assert!(verifier("k1").verify(&t, SystemTime::now()).is_err());
    }

    #[test]
    fn missing_or_short_secret_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Minter::from_file(&dir.path().join("nope"), None, Duration::ZERO);
        assert!(missing.unwrap_err().to_string().contains("--secret-file"));
        let short = dir.path().join("short");
        std::fs::write(&short, "tiny\n").unwrap();
        let err = Minter::from_file(&short, None, Duration::ZERO).unwrap_err();
        assert!(matches!(err, TokenError::Short { len: 4, .. }), "{err}");
    }
}
