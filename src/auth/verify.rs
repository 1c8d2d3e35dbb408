//! The key set: verifying tokens ([`Verifier::verify`]) and minting them
//! ([`Verifier::mint`]), HS256 only.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::SystemTime;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::claims::unix_seconds;
use super::claims::{Claims, Identity};
use super::dev_secret;
use super::error::AuthError;
use crate::config::{AuthKey, Config, MIN_SECRET_BYTES};

/// Longest token accepted, in bytes; longer ones are [`AuthError::Malformed`] without
/// being decoded.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Longest key id quoted back in [`AuthError::UnknownKey`].
const MAX_KID_SHOWN: usize = 64;

/// One HMAC key.
struct Key {
    /// `None` only for the development secret.
    kid: Option<String>,
    decoding: DecodingKey,
    encoding: EncodingKey,
}

impl Key {
    fn new(kid: Option<String>, secret: &[u8]) -> Self {
        Self {
            kid,
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
        }
    }
}

/// A token that verified: who it proves the client is, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Who the token says the client is.
    pub identity: Identity,
    /// The token's `exp`, in milliseconds since the Unix epoch.
    pub exp_ms: u64,
    /// The first Unix millisecond at which the token no longer verifies:
    /// `(exp + auth.leeway) × 1000`, since time claims count whole seconds.
    pub valid_until_ms: u64,
}

/// Checks (and mints) HS256 tokens with the configured keys.
///
/// Built once from the configuration; verifying is then pure and cheap enough to do on
/// a worker thread per `Hello`. `Debug` shows key ids only, never secrets.
pub struct Verifier {
    /// Never empty; the first key checks tokens without `kid` and mints by default.
    keys: Vec<Key>,
    /// `auth.leeway` in whole seconds.
    leeway: u64,
    /// HS256 only, `exp` required; time claims are checked by us against the given
    /// clock, not by the library against its own.
    validation: Validation,
    /// Where the development secret came from, when it is the key.
    dev_secret: Option<PathBuf>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<Option<&str>> = self.keys.iter().map(|k| k.kid.as_deref()).collect();
        f.debug_struct("Verifier")
            .field("kids", &kids)
            .field("leeway", &self.leeway)
            .field("dev_secret", &self.dev_secret)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier for `config`: the `[[auth.keys]]` in order (reading `secret_file`s),
    /// or, when there are none, the development secret `<state_dir>/dev-secret`
    /// (created if missing; a warning is logged the first time per process).
    ///
    /// Does not check listener addresses: the daemon also calls
    /// [`super::require_loopback_for_dev_secret`].
    pub fn from_config(config: &Config) -> Result<Self, AuthError> {
        let dev = |state_dir: &Path| dev_secret::load_or_create(state_dir).map(Some);
        let built = Self::build(config, dev)?;
        built.ok_or_else(|| AuthError::DevSecret {
            path: dev_secret::path(&config.state_dir),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }

    /// As [`Verifier::from_config`] but creating nothing (for `check-config`): `None`
    /// when the development secret would be used and does not exist yet. Secret
    /// files and an existing development secret are read and checked all the same.
    pub fn from_config_without_creating(config: &Config) -> Result<Option<Self>, AuthError> {
        Self::build(config, dev_secret::read_existing)
    }

    fn build(
        config: &Config,
        dev_secret: impl FnOnce(&Path) -> std::io::Result<Option<String>>,
    ) -> Result<Option<Self>, AuthError> {
        let auth = &config.auth;
        let mut keys = Vec::with_capacity(auth.keys.len().max(1));
        let mut dev = None;
        if auth.keys.is_empty() {
            let path = dev_secret::path(&config.state_dir);
            let secret = dev_secret(&config.state_dir).map_err(|source| AuthError::DevSecret {
                path: path.clone(),
                source,
            })?;
            let Some(secret) = secret else {
                return Ok(None);
            };
            static WARN_ONCE: Once = Once::new();
            WARN_ONCE.call_once(|| {
                tracing::warn!(
                    "no [auth] keys configured; using development secret at {} — for trying things out only",
                    path.display()
                );
            });
            keys.push(Key::new(None, secret.as_bytes()));
            dev = Some(path);
        }
        for (i, key) in auth.keys.iter().enumerate() {
            if auth.keys[..i].iter().any(|k| k.kid == key.kid) {
                return Err(AuthError::Key {
                    kid: key.kid.clone(),
                    reason: "key id appears more than once".into(),
                });
            }
            let secret = load_secret(key)?;
            keys.push(Key::new(Some(key.kid.clone()), &secret));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        Ok(Some(Self {
            keys,
            leeway: auth.leeway.as_secs(),
            validation,
            dev_secret: dev,
        }))
    }

    /// The development secret's path when it is the (only) key.
    pub fn dev_secret(&self) -> Option<&Path> {
        self.dev_secret.as_deref()
    }

    /// The configured key ids, in order (empty for the development secret).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref())
    }

    /// Checks `token` at time `now` and returns who it proves the client is.
    ///
    /// The header must say `alg: HS256`; its `kid` picks the key (no `kid`: the first
    /// key). After the signature: `exp` is required and must not be more than
    /// `auth.leeway` in the past, `nbf` (if present) not more than `auth.leeway` in the
    /// future; then `sub` and `role` are checked ([`Claims::identity`]).
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Identity, AuthError> {
        self.verify_token(token, now).map(|v| v.identity)
    }

    /// [`Verifier::verify`], also saying until when the token is good: what a
    /// session needs, which ends when its token would no longer verify.
    pub fn verify_token(&self, token: &str, now: SystemTime) -> Result<VerifiedToken, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::HS256 {
            return Err(AuthError::WrongAlgorithm);
        }
        let key = self.key(header.kid.as_deref())?;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &self.validation)
                .map_err(|e| match e.kind() {
                    ErrorKind::InvalidSignature => AuthError::BadSignature,
                    ErrorKind::InvalidAlgorithm => AuthError::WrongAlgorithm,
                    ErrorKind::MissingRequiredClaim(claim) => {
                        AuthError::BadClaims(format!("missing `{claim}`"))
                    }
                    _ => AuthError::Malformed,
                })?;
        let claims: Claims = serde_json::from_value(Value::Object(data.claims))
            .map_err(|e| AuthError::BadClaims(e.to_string()))?;
        let now = unix_seconds(now);
        let until = claims.exp.saturating_add(self.leeway);
        if now >= until {
            return Err(AuthError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| now.saturating_add(self.leeway) < nbf)
        {
            return Err(AuthError::NotYetValid);
        }
        Ok(VerifiedToken {
            identity: claims.identity()?,
            exp_ms: claims.exp.saturating_mul(1000),
            valid_until_ms: until.saturating_mul(1000),
        })
    }

    /// Signs `claims` with HS256: with key `kid`, or the first key when `None`. The
    /// header carries the key's id (none for the development secret).
    ///
    /// Claims that [`Verifier::verify`] would reject for their `sub` or `role` are
    /// refused here ([`AuthError::BadClaims`]); an unknown `kid` is
    /// [`AuthError::UnknownKey`].
    pub fn mint(&self, claims: &Claims, kid: Option<&str>) -> Result<String, AuthError> {
        claims.identity()?;
        let key = self.key(kid)?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid.clone_from(&key.kid);
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| AuthError::Mint(e.to_string()))
    }

    fn key(&self, kid: Option<&str>) -> Result<&Key, AuthError> {
        let found = match kid {
            None => self.keys.first(),
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
        };
        found.ok_or_else(|| AuthError::UnknownKey {
            kid: shorten(kid.unwrap_or_default()),
        })
    }
}

/// The HMAC key bytes of one configured key.
fn load_secret(key: &AuthKey) -> Result<Vec<u8>, AuthError> {
    let bad = |reason: String| AuthError::Key {
        kid: key.kid.clone(),
        reason,
    };
    let secret = match (&key.secret, &key.secret_file) {
        (Some(secret), None) => secret.as_bytes().to_vec(),
        (None, Some(path)) => {
            let bytes = std::fs::read(path).map_err(|source| AuthError::SecretFile {
                kid: key.kid.clone(),
                path: path.clone(),
                source,
            })?;
            bytes.trim_ascii().to_vec()
        }
        _ => return Err(bad("set exactly one of `secret` and `secret_file`".into())),
    };
    if secret.len() < MIN_SECRET_BYTES {
        return Err(bad(format!(
            "secret is {} bytes; at least {MIN_SECRET_BYTES} required",
            secret.len()
        )));
    }
    Ok(secret)
}

/// `s` cut to at most [`MAX_KID_SHOWN`] bytes on a character boundary.
fn shorten(s: &str) -> String {
    let mut end = s.len().min(MAX_KID_SHOWN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::protocol::ErrorCode;
    use crate::protocol::messages::role;

    const SECRET_A: &str = "secret-a-0123456789abcdef0123456789abcdef";
    const SECRET_B: &str = "secret-b-0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn key(kid: &str, secret: &str) -> AuthKey {
        AuthKey {
            kid: kid.into(),
            secret: Some(secret.into()),
            secret_file: None,
        }
    }

    fn verifier(keys: Vec<AuthKey>) -> Verifier {
        let mut config = Config::default();
        config.auth.keys = keys;
        config.validate().unwrap();
        Verifier::from_config(&config).unwrap()
    }

    fn one_key() -> Verifier {
        verifier(vec![key("a", SECRET_A)])
    }

    /// A token signed by the library directly (not by `mint`), so the tests do not
    /// only check `mint` against itself.
    fn sign(
        alg: Algorithm,
        kid: Option<&str>,
        secret: &str,
        payload: &serde_json::Value,
    ) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(
            &header,
            payload,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    /// A token whose three parts are given raw (header and payload JSON, signature).
    fn raw(header: &str, payload: &str, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    fn agent_payload(exp: u64) -> serde_json::Value {
        serde_json::json!({
            "sub": "alice",
            "role": "agent",
            "name": "Alice A.",
            "groups": ["sales", "support"],
            "tenant": "t1",
            "max_concurrent": 5,
            "exp": exp,
            "iss": "ignored",
            "aud": "ignored too",
        })
    }

    fn code(r: Result<Identity, AuthError>) -> u16 {
        r.unwrap_err().code().as_u16()
    }

    #[test]
    fn valid_token_gives_the_identity() {
        let v = one_key();
        let token = sign(
            Algorithm::HS256,
            Some("a"),
            SECRET_A,
            &agent_payload(NOW + 60),
        );
        let id = v.verify(&token, at(NOW)).unwrap();
        assert_eq!(
            id,
            Identity {
                user: "alice".into(),
                name: "Alice A.".into(),
                role: role::AGENT,
                tenant: "t1".into(),
                groups: vec!["sales".into(), "support".into()],
                max_concurrent: Some(5),
            }
        );
        // Without kid: the first key.
        let token = sign(Algorithm::HS256, None, SECRET_A, &agent_payload(NOW + 60));
        assert_eq!(v.verify(&token, at(NOW)).unwrap().user, "alice");
    }

    #[test]
    fn expiry_honours_the_leeway() {
        let v = one_key(); // leeway 30 s
        let expired_29s_ago = sign(Algorithm::HS256, None, SECRET_A, &agent_payload(NOW - 29));
        assert!(v.verify(&expired_29s_ago, at(NOW)).is_ok());
        let expired_31s_ago = sign(Algorithm::HS256, None, SECRET_A, &agent_payload(NOW - 31));
        let err = v.verify(&expired_31s_ago, at(NOW)).unwrap_err();
        assert!(matches!(err, AuthError::Expired), "{err:?}");
        assert_eq!(err.code(), ErrorCode::TokenExpired);
        assert_eq!(err.code().as_u16(), 201);
    }

    #[test]
    fn zero_leeway_expires_at_exp() {
        let mut config = Config::default();
        config.auth.keys = vec![key("a", SECRET_A)];
        config.auth.leeway = Duration::ZERO;
        let v = Verifier::from_config(&config).unwrap();
        let token = sign(Algorithm::HS256, None, SECRET_A, &agent_payload(NOW));
        assert!(v.verify(&token, at(NOW - 1)).is_ok());
        assert_eq!(code(v.verify(&token, at(NOW))), 201);
    }

    #[test]
    fn valid_until_is_the_first_millisecond_the_token_fails() {
        for leeway in [0, 30] {
            let mut config = Config::default();
            config.auth.keys = vec![key("a", SECRET_A)];
            config.auth.leeway = Duration::from_secs(leeway);
            let v = Verifier::from_config(&config).unwrap();
            let token = sign(Algorithm::HS256, None, SECRET_A, &agent_payload(NOW + 60));
            let t = v.verify_token(&token, at(NOW)).unwrap();
            assert_eq!(t.exp_ms, (NOW + 60) * 1000);
            assert_eq!(t.valid_until_ms, (NOW + 60 + leeway) * 1000);
            assert_eq!(t.identity, v.verify(&token, at(NOW)).unwrap());
            let ms = |m: u64| UNIX_EPOCH + Duration::from_millis(m);
            assert!(v.verify(&token, ms(t.valid_until_ms - 1)).is_ok());
            assert_eq!(code(v.verify(&token, ms(t.valid_until_ms))), 201);
        }
    }

    #[test]
    fn nbf_in_the_future_is_not_valid_yet() {
        let v = one_key();
        let mut payload = agent_payload(NOW + 3600);
        payload["nbf"] = (NOW + 31).into();
        let token = sign(Algorithm::HS256, None, SECRET_A, &payload);
        let err = v.verify(&token, at(NOW)).unwrap_err();
        assert!(matches!(err, AuthError::NotYetValid), "{err:?}");
        assert_eq!(err.code().as_u16(), 201);
        // Within the leeway, and later, it is fine.
        assert!(v.verify(&token, at(NOW + 1)).is_ok());
        assert!(v.verify(&token, at(NOW + 100)).is_ok());
    }

    #[test]
    fn wrong_signature_is_token_invalid() {
        let v = one_key();
        let token = sign(
            Algorithm::HS256,
            Some("a"),
            SECRET_B,
            &agent_payload(NOW + 60),
        );
        let err = v.verify(&token, at(NOW)).unwrap_err();
        assert!(matches!(err, AuthError::BadSignature), "{err:?}");
        assert_eq!(err.code().as_u16(), 200);
        // A good token with one payload byte changed.
        let good = sign(
            Algorithm::HS256,
            Some("a"),
            SECRET_A,
            &agent_payload(NOW + 60),
        );
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
        let at_alice = payload.windows(5).position(|w| w == b"alice").unwrap();
        payload[at_alice] = b'b';
        parts[1] = URL_SAFE_NO_PAD.encode(&payload);
        assert_eq!(code(v.verify(&parts.join("."), at(NOW))), 200);
    }

    #[test]
    fn other_algorithms_are_token_invalid() {
        let v = one_key();
        let payload = agent_payload(NOW + 60);
        // HS384 with the right secret: the signature is genuine, the algorithm is not.
        let hs384 = sign(Algorithm::HS384, Some("a"), SECRET_A, &payload);
        let err = v.verify(&hs384, at(NOW)).unwrap_err();
        assert!(matches!(err, AuthError::WrongAlgorithm), "{err:?}");
        assert_eq!(err.code().as_u16(), 200);
        let body = payload.to_string();
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"None","typ":"JWT"}"#,
            r#"{"alg":"RS256","typ":"JWT","kid":"a"}"#,
        ] {
            let forged = raw(header, &body, b"");
            assert_eq!(code(v.verify(&forged, at(NOW))), 200, "{header}");
            let forged = raw(header, &body, b"not a signature at all");
            assert_eq!(code(v.verify(&forged, at(NOW))), 200, "{header}");
        }
    }

    #[test]
    fn malformed_tokens_are_token_invalid() {
        let v = one_key();
        let too_long = "a".repeat(MAX_TOKEN_BYTES + 1);
        let not_json = raw(r#"{"alg":"HS256"}"#, "not json", b"x");
        for token in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "%%%.%%%.%%%",
            &too_long,
            &not_json,
        ] {
            let err = v.verify(token, at(NOW)).unwrap_err();
            assert_eq!(err.code().as_u16(), 200, "{token:?} gave {err:?}");
        }
        // Well signed, but the payload is not an object.
        let array = sign(Algorithm::HS256, None, SECRET_A, &serde_json::json!([1, 2]));
        assert_eq!(code(v.verify(&array, at(NOW))), 200);
    }

    #[test]
    fn unknown_kid_is_unknown_key() {
        let v = one_key();
        let token = sign(
            Algorithm::HS256,
            Some("zzz"),
            SECRET_A,
            &agent_payload(NOW + 60),
        );
        let err = v.verify(&token, at(NOW)).unwrap_err();
        assert!(
            matches!(&err, AuthError::UnknownKey { kid } if kid == "zzz"),
            "{err:?}"
        );
        assert_eq!(err.code().as_u16(), 202);
        let long = "é".repeat(100);
        let token = sign(
            Algorithm::HS256,
            Some(&long),
            SECRET_A,
            &agent_payload(NOW + 60),
        );
        let err = v.verify(&token, at(NOW)).unwrap_err();
        assert!(matches!(&err, AuthError::UnknownKey { kid } if kid.len() <= MAX_KID_SHOWN));
    }

    #[test]
    fn missing_or_bad_claims_are_bad_claims() {
        let v = one_key();
        let mut cases = Vec::new();
        for field in ["sub", "role", "exp"] {
            let mut p = agent_payload(NOW + 60);
            p.as_object_mut().unwrap().remove(field);
            cases.push((format!("no {field}"), p));
        }
        for (what, field, value) in [
            ("bad role", "role", serde_json::json!("superuser")),
            ("numeric role", "role", serde_json::json!(2)),
            ("empty sub", "sub", serde_json::json!("")),
            ("long sub", "sub", serde_json::json!("x".repeat(257))),
            ("numeric sub", "sub", serde_json::json!(42)),
            ("groups not a list", "groups", serde_json::json!("sales")),
            ("negative capacity", "max_concurrent", serde_json::json!(-1)),
            ("exp as string", "exp", serde_json::json!("soon")),
        ] {
            let mut p = agent_payload(NOW + 60);
            p[field] = value;
            cases.push((what.to_owned(), p));
        }
        for (what, payload) in cases {
            let token = sign(Algorithm::HS256, None, SECRET_A, &payload);
            let err = v.verify(&token, at(NOW)).unwrap_err();
            assert!(matches!(err, AuthError::BadClaims(_)), "{what}: {err:?}");
            assert_eq!(err.code().as_u16(), 203, "{what}");
        }
    }

    #[test]
    fn rotation_with_two_keys() {
        // The new key goes first; the old one stays until its tokens expired.
        let v = verifier(vec![key("new", SECRET_B), key("old", SECRET_A)]);
        let old = sign(
            Algorithm::HS256,
            Some("old"),
            SECRET_A,
            &agent_payload(NOW + 60),
        );
        let new = sign(
            Algorithm::HS256,
            Some("new"),
            SECRET_B,
            &agent_payload(NOW + 60),
        );
        assert!(v.verify(&old, at(NOW)).is_ok());
        assert!(v.verify(&new, at(NOW)).is_ok());
        // No kid: the first (new) key only.
        let bare_new = sign(Algorithm::HS256, None, SECRET_B, &agent_payload(NOW + 60));
        let bare_old = sign(Algorithm::HS256, None, SECRET_A, &agent_payload(NOW + 60));
        assert!(v.verify(&bare_new, at(NOW)).is_ok());
        assert_eq!(code(v.verify(&bare_old, at(NOW))), 200);
        // A kid naming the other key's secret does not verify.
        let crossed = sign(
            Algorithm::HS256,
            Some("new"),
            SECRET_A,
            &agent_payload(NOW + 60),
        );
        assert_eq!(code(v.verify(&crossed, at(NOW))), 200);
        // Old key removed: its tokens name an unknown key.
        let v = verifier(vec![key("new", SECRET_B)]);
        assert_eq!(code(v.verify(&old, at(NOW))), 202);
        assert!(v.verify(&new, at(NOW)).is_ok());
    }

    #[test]
    fn secret_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwt.key");
        std::fs::write(&file, format!("\n  {SECRET_A}\t\n")).unwrap();
        let v = verifier(vec![AuthKey {
            kid: "f".into(),
            secret: None,
            secret_file: Some(file),
        }]);
        let token = sign(
            Algorithm::HS256,
            Some("f"),
            SECRET_A,
            &agent_payload(NOW + 60),
        );
        assert_eq!(v.verify(&token, at(NOW)).unwrap().user, "alice");
        assert_eq!(v.kids().collect::<Vec<_>>(), ["f"]);
        assert!(v.dev_secret().is_none());
    }

    #[test]
    fn unreadable_or_short_secret_file_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        let missing = dir.path().join("missing.key");
        config.auth.keys = vec![AuthKey {
            kid: "gone".into(),
            secret: None,
            secret_file: Some(missing.clone()),
        }];
        let err = Verifier::from_config(&config).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, AuthError::SecretFile { .. }), "{err:?}");
        assert!(
            msg.contains("\"gone\"") && msg.contains("missing.key"),
            "{msg}"
        );

        let short = dir.path().join("short.key");
        std::fs::write(&short, "0123456789\n").unwrap();
        config.auth.keys[0].secret_file = Some(short);
        let err = Verifier::from_config(&config).unwrap_err();
        assert!(
            matches!(&err, AuthError::Key { kid, .. } if kid == "gone"),
            "{err:?}"
        );
        assert!(err.to_string().contains("at least 32"), "{err}");
    }

    #[test]
    fn dev_secret_is_used_without_keys() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            state_dir: dir.path().join("state"),
            ..Config::default()
        };
        let v = Verifier::from_config(&config).unwrap();
        let path = dev_secret::path(&config.state_dir);
        assert_eq!(v.dev_secret(), Some(path.as_path()));
        assert_eq!(v.kids().count(), 0);
        // The file's text is the HMAC key.
        let text = std::fs::read_to_string(&path).unwrap();
        let token = sign(Algorithm::HS256, None, &text, &agent_payload(NOW + 60));
        assert_eq!(v.verify(&token, at(NOW)).unwrap().user, "alice");
        // Any kid is unknown to the development secret.
        let token = sign(Algorithm::HS256, Some("a"), &text, &agent_payload(NOW + 60));
        assert_eq!(code(v.verify(&token, at(NOW))), 202);
        // A second verifier reuses the same secret.
        let again = Verifier::from_config(&config).unwrap();
        let token = again.mint(
            &Claims::new("bob", "visitor", at(NOW), Duration::from_secs(60)),
            None,
        );
        assert_eq!(v.verify(&token.unwrap(), at(NOW)).unwrap().user, "bob");
    }

    #[test]
    fn mint_round_trips_and_names_the_key() {
        let v = verifier(vec![key("new", SECRET_B), key("old", SECRET_A)]);
        let mut claims = Claims::new("carol", "admin", at(NOW), Duration::from_secs(600));
        claims.name = Some("Carol".into());
        claims.groups = vec!["ops".into()];
        claims.tenant = Some("t9".into());
        claims.max_concurrent = Some(3);
        let token = v.mint(&claims, None).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(),
            Some("new")
        );
        let id = v.verify(&token, at(NOW + 1)).unwrap();
        assert_eq!(id, claims.identity().unwrap());
        assert_eq!(id.role, role::ADMIN);
        assert_eq!(code(v.verify(&token, at(NOW + 600 + 30))), 201);

        let token = v.mint(&claims, Some("old")).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(),
            Some("old")
        );
        // Signed with the old secret, as a third party would check it.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        let decoded = jsonwebtoken::decode::<Claims>(
            &token,
            &DecodingKey::from_secret(SECRET_A.as_bytes()),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims, claims);

        assert!(matches!(
            v.mint(&claims, Some("nope")),
            Err(AuthError::UnknownKey { .. })
        ));
        claims.role = "root".into();
        assert!(matches!(
            v.mint(&claims, None),
            Err(AuthError::BadClaims(_))
        ));
    }

    #[test]
    fn debug_shows_no_secret() {
        let v = one_key();
        let shown = format!("{v:?}");
        assert!(
            !shown.contains(SECRET_A) && !shown.contains("secret-a"),
            "{shown}"
        );
        assert!(shown.contains("\"a\""), "{shown}");
    }
}
