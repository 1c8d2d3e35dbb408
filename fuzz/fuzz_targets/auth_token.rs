//! Fuzz target for the credentials a client presents: HS256 tokens
//! (`switchboard::auth::Verifier::verify_token`, the `Hello.token` of the client port
//! and the admin JWTs of the HTTP API) and the API's `Authorization` header
//! (`switchboard::api::keys::credential` and `ApiKeys::check`).
//!
//! The first byte picks the mode: bit 0 clear, the rest is the token text; bit 0 set,
//! the rest is `header JSON ‖ 0xFF ‖ claims JSON` (no 0xFF: the rest is the claims
//! under `{"alg":"HS256","kid":"k1"}`), base64url-encoded and signed with the key of
//! `k1` (bit 1 clear) or `k2` (bit 1 set), so the fuzzer reaches what follows a good
//! signature. The target asserts that:
//! - a refusal is a token verdict (protocol codes 200-203), never a deployment error;
//! - a verified token's identity is within the claims' bounds, its claims (read back
//!   from the token) give the same identity, and minting those claims again gives a
//!   token that verifies to the same `VerifiedToken`;
//! - the rest as an `Authorization` header value reads as a key whose id has no `_`
//!   and whose credential, written back, reads the same, or as a trimmed non-empty
//!   JWT; a key never passes the check unless it is the configured one.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use switchboard::api::Scope;
use switchboard::api::keys::{ApiKeys, Credential, credential, hash_hex};
use switchboard::auth::{AuthError, Claims, MAX_SUB_BYTES, Verifier};
use switchboard::config::{AuthKey, Config};

const K1: &str = "token-key-0123456789abcdef0123456789abcdef";
const K2: &str = "second-key-0123456789abcdef0123456789abcd";
/// The clock: 2027-01-15.
const NOW: u64 = 1_800_000_000;
const KEY_SECRET: &str = "s3cret-of-the-ops-key";

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let mut config = Config::default();
        config.auth.keys = [("k1", K1), ("k2", K2)]
            .into_iter()
            .map(|(kid, secret)| AuthKey {
                kid: kid.into(),
                secret: Some(secret.into()),
                secret_file: None,
            })
            .collect();
        Verifier::from_config(&config).unwrap()
    })
}

fn signed(key: &str, header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{sig}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let key = if mode & 2 == 0 { K1 } else { K2 };
        match rest.iter().position(|&b| b == 0xFF) {
            Some(at) => signed(key, &rest[..at], &rest[at + 1..]),
            None => signed(key, br#"{"alg":"HS256","kid":"k1"}"#, rest),
        }
    };
    let v = verifier();
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    match v.verify_token(&token, now) {
        Ok(verified) => {
            let id = &verified.identity;
            assert!(!id.user.is_empty() && id.user.len() <= MAX_SUB_BYTES);
            assert!(verified.valid_until_ms >= verified.exp_ms);
            assert!(verified.valid_until_ms > NOW * 1000);
            let payload = token.split('.').nth(1).unwrap();
            let bytes = URL_SAFE_NO_PAD.decode(payload).unwrap();
            // As the verifier reads them: an object, a repeated name's last value
            // (RFC 7519 section 4 allows that or a refusal).
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&bytes).unwrap();
            let claims: Claims = serde_json::from_value(object.into()).unwrap();
            assert_eq!(&claims.identity().unwrap(), id);
            let again = v.mint(&claims, Some("k2")).unwrap();
            assert_eq!(v.verify_token(&again, now).unwrap(), verified);
        }
        Err(e) => {
            assert!(
                matches!(
                    e,
                    AuthError::Malformed
                        | AuthError::BadSignature
                        | AuthError::WrongAlgorithm
                        | AuthError::Expired
                        | AuthError::NotYetValid
                        | AuthError::UnknownKey { .. }
                        | AuthError::BadClaims(_)
                ),
                "{e:?}"
            );
            assert!((200..=203).contains(&(e.code() as u16)), "{e:?}");
        }
    }

    let header = String::from_utf8_lossy(rest);
    let keys = ApiKeys::new([(
        "ops",
        "acme",
        &*hash_hex(KEY_SECRET),
        &[Scope::ConversationsRead][..],
    )]);
    match credential(Some(&header)) {
        Ok(Credential::Key { id, secret }) => {
            assert!(!id.contains('_'));
            let again = format!("Bearer sbk_{id}_{secret}");
            assert_eq!(credential(Some(&again)), Ok(Credential::Key { id, secret }));
            if keys.check(id, secret).is_ok() {
                assert_eq!((id, secret), ("ops", KEY_SECRET));
            }
        }
        Ok(Credential::Jwt(t)) => {
            assert!(!t.is_empty() && t == t.trim() && !t.starts_with("sbk_"));
        }
        Err(_) => {}
    }
});
