//! Fuzz target for the visitor-token endpoint's body
//! (`POST /web/v1/sites/{site}/visitor-token`, `switchboard::auth::visitor::issue`).
//!
//! The first byte picks the case: bit 0 set, a string `visitor_id` in a JSON-object
//! body gets its right `visitor_key`; bit 1 set, a string `user_id` gets its right
//! `user_hash` (so the fuzzer reaches what follows the HMAC checks); bit 2 set, the
//! site has anonymous visitors off; bit 3 set, identified users off. The rest is the
//! body. The target asserts that:
//! - a refusal is answered 400 or 403 (never 500) with a bounded message;
//! - an issued token verifies (at the same time) as a visitor of the site's tenant and
//!   group, for the user and expiry the answer names, and the answer is JSON;
//! - an anonymous visitor's key is the key of its id, an identified user has none.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sha2::Sha256;
use switchboard::auth::Verifier;
use switchboard::auth::visitor::{Outcome, Signing, Site, issue};
use switchboard::bench_support::UnixMs;
use switchboard::config::{AuthKey, Config};
use switchboard::protocol::messages::role;

const SECRET: &str = "shop-visitor-secret-0123456789abcdef";
const IDENTITY: &str = "shop-identity-secret-0123456789abcdef";
const NOW_MS: u64 = 1_800_000_000_000;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let mut config = Config::default();
        config.auth.keys = vec![AuthKey {
            kid: "k1".into(),
            secret: Some("token-key-0123456789abcdef0123456789abcdef".into()),
            secret_file: None,
        }];
        Verifier::from_config(&config).unwrap()
    })
}

fn user_hash(user_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(IDENTITY.as_bytes()).unwrap();
    mac.update(user_id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let site = Site::new(
        "shop",
        "sales",
        "acme",
        (mode & 4 == 0).then_some(SECRET.as_bytes()),
        (mode & 8 == 0).then_some(IDENTITY.as_bytes()),
    );
    let mut body = rest.to_vec();
    if mode & 3 != 0
        && let Ok(Value::Object(mut o)) = serde_json::from_slice::<Value>(rest)
    {
        let full = Site::new("shop", "sales", "acme", Some(SECRET.as_bytes()), None);
        if mode & 1 != 0
            && let Some(Value::String(id)) = o.get("visitor_id")
        {
            let key = full.visitor_key(id).unwrap();
            o.insert("visitor_key".into(), Value::String(key));
        }
        if mode & 2 != 0
            && let Some(Value::String(user)) = o.get("user_id")
        {
            let hash = user_hash(user);
            o.insert("user_hash".into(), Value::String(hash));
        }
        body = serde_json::to_vec(&o).unwrap();
    }
    let v = verifier();
    let signing = Signing {
        verifier: v,
        ttl: Duration::from_secs(3600),
    };
    match issue(&site, &body, UnixMs(NOW_MS), [7; 16], signing) {
        Ok(issued) => {
            let now = UNIX_EPOCH + Duration::from_millis(NOW_MS);
            let verified = v.verify_token(&issued.token, now).unwrap();
            let id = &verified.identity;
            assert_eq!(id.role, role::VISITOR);
            assert_eq!(id.user, issued.user);
            assert_eq!(id.tenant, "acme");
            assert_eq!(id.groups, ["sales"]);
            assert_eq!(issued.expires_ms, verified.exp_ms.to_string());
            match issued.outcome {
                Outcome::IssuedAnonymous => {
                    assert_eq!(issued.visitor_key, site.visitor_key(&issued.visitor_id));
                    assert_eq!(issued.user, format!("v:shop:{}", issued.visitor_id));
                }
                Outcome::IssuedIdentified => {
                    assert_eq!(issued.visitor_key, None);
                    assert_eq!(issued.user, format!("u:shop:{}", issued.visitor_id));
                }
                other => panic!("issued with outcome {other:?}"),
            }
            let _: Value = serde_json::from_slice(&issued.to_json()).unwrap();
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 403), "{e:?}");
            assert!(e.to_string().len() <= 256, "{e}");
        }
    }
});
