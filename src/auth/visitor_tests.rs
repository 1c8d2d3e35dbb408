use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::config::{AuthKey, Config};
use crate::protocol::messages::role;

const SECRET: &str = "shop-visitor-secret-0123456789abcdef";
const IDENTITY: &str = "shop-identity-secret-0123456789abcdef";
/// The worked example of proto-spec/JSON.md, computed with openssl:
/// `printf '%s' 'switchboard-visitor:shop:AAAAAAAAAAAAAAAAAAAAAA' | openssl dgst -sha256
/// -hmac "$SECRET" -binary | basenc --base64url | tr -d =`.
const ZERO_ID: &str = "AAAAAAAAAAAAAAAAAAAAAA";
const ZERO_ID_KEY: &str = "MqS6IkYARm1IydCVhNO5Ncv4xCCSuLj8wWC6z-8Y0PM";
/// `printf '%s' user-42 | openssl dgst -sha256 -hmac "$IDENTITY"`.
const USER_42_HASH: &str = "ca8bef6c3c5648c0fa717d65b4f511e78fe1a9880526468f3885591daac4fed1";
const NOW: UnixMs = UnixMs(1_800_000_000_000);

fn verifier() -> Verifier {
    let mut config = Config::default();
    config.auth.keys = vec![AuthKey {
        kid: "k1".into(),
        secret: Some("token-key-0123456789abcdef0123456789abcdef".into()),
        secret_file: None,
    }];
    Verifier::from_config(&config).unwrap()
}

fn shop() -> Site {
    Site::new(
        "shop",
        "sales",
        "acme",
        Some(SECRET.as_bytes()),
        Some(IDENTITY.as_bytes()),
    )
}

fn run(site: &Site, body: &str) -> Result<Issued, VisitorError> {
    let v = verifier();
    let signing = Signing {
        verifier: &v,
        ttl: Duration::from_secs(3600),
    };
    issue(site, body.as_bytes(), NOW, [0; 16], signing)
}

#[test]
fn the_worked_example_reproduces() {
    assert_eq!(shop().visitor_key(ZERO_ID).unwrap(), ZERO_ID_KEY);
    assert!(shop().hash_matches("user-42", USER_42_HASH));
    assert!(shop().hash_matches("user-42", &USER_42_HASH.to_ascii_uppercase()));
}

#[test]
fn a_new_visitor_gets_an_id_a_key_and_a_token_the_daemon_accepts() {
    let issued = run(&shop(), "{}").unwrap();
    assert_eq!(issued.outcome, Outcome::IssuedAnonymous);
    assert_eq!(issued.visitor_id, ZERO_ID, "the random bytes, base64url");
    assert_eq!(issued.visitor_key.as_deref(), Some(ZERO_ID_KEY));
    assert_eq!(issued.user, format!("v:shop:{ZERO_ID}"));
    assert_eq!(issued.expires_ms, "1800003600000");
    let at = UNIX_EPOCH + Duration::from_millis(NOW.get());
    let who = verifier().verify(&issued.token, at).unwrap();
    assert_eq!(who.user, issued.user);
    assert_eq!(who.role, role::VISITOR);
    assert_eq!(who.name, "Visitor AAAA");
    assert_eq!(who.tenant, "acme");
    assert_eq!(who.groups, vec!["sales".to_owned()]);
    // Expired an hour later (and the leeway).
    let later = at + Duration::from_secs(3600) + Config::default().auth.leeway;
    assert!(verifier().verify(&issued.token, later).is_err());
    let json: serde_json::Value = serde_json::from_slice(&issued.to_json()).unwrap();
    assert_eq!(json["expires_ms"], "1800003600000");
    assert_eq!(json["visitor_key"], ZERO_ID_KEY);
    assert!(json.get("outcome").is_none());
}

#[test]
fn a_known_visitor_keeps_its_id_with_the_right_key_only() {
    let body = format!(r#"{{"visitor_id":"{ZERO_ID}","visitor_key":"{ZERO_ID_KEY}"}}"#);
    let again = run(&shop(), &body).unwrap();
    assert_eq!(again.user, format!("v:shop:{ZERO_ID}"));
    assert_eq!(again.visitor_key.as_deref(), Some(ZERO_ID_KEY));
    // Another id with that key, a changed key, a key of another site: refused.
    let mut forged = ZERO_ID_KEY.to_owned();
    forged.replace_range(0..1, "N");
    for (id, key) in [
        ("AAAAAAAAAAAAAAAAAAAAAB", ZERO_ID_KEY),
        (ZERO_ID, forged.as_str()),
        (ZERO_ID, "not base64 !"),
        (ZERO_ID, ""),
    ] {
        let body = format!(r#"{{"visitor_id":"{id}","visitor_key":"{key}"}}"#);
        let e = run(&shop(), &body).unwrap_err();
        assert!(matches!(e, VisitorError::BadKey), "{id} {key}: {e:?}");
        assert_eq!((e.status(), e.outcome()), (403, Outcome::BadKey));
    }
    let blog = Site::new("blog", "g", "", Some(SECRET.as_bytes()), None);
    let blog_key = blog.visitor_key(ZERO_ID).unwrap();
    assert_ne!(blog_key, ZERO_ID_KEY, "the site is in the key");
    let body = format!(r#"{{"visitor_id":"{ZERO_ID}","visitor_key":"{blog_key}"}}"#);
    assert!(matches!(run(&shop(), &body), Err(VisitorError::BadKey)));
}

#[test]
fn identified_users_need_the_right_hash() {
    let body = format!(r#"{{"user_id":"user-42","user_hash":"{USER_42_HASH}","name":"Ann"}}"#);
    let issued = run(&shop(), &body).unwrap();
    assert_eq!(issued.outcome, Outcome::IssuedIdentified);
    assert_eq!(issued.user, "u:shop:user-42");
    assert_eq!(issued.visitor_key, None);
    let json: serde_json::Value = serde_json::from_slice(&issued.to_json()).unwrap();
    assert!(json.get("visitor_key").is_none(), "{json}");
    let who = verifier()
        .verify(&issued.token, UNIX_EPOCH + Duration::from_millis(NOW.get()))
        .unwrap();
    assert_eq!((who.name.as_str(), who.role), ("Ann", role::VISITOR));
    // Someone else's id with user-42's hash; a hash one digit off; not hex.
    let mut off = USER_42_HASH.to_owned();
    off.replace_range(0..1, "d");
    for (id, hash) in [
        ("user-43", USER_42_HASH),
        ("user-42", off.as_str()),
        ("user-42", "zz"),
        ("user-42", "abc"),
        ("user-42", ""),
    ] {
        let body = format!(r#"{{"user_id":"{id}","user_hash":"{hash}"}}"#);
        let e = run(&shop(), &body).unwrap_err();
        assert!(matches!(e, VisitorError::BadHash), "{id} {hash}: {e:?}");
        assert_eq!((e.status(), e.outcome()), (403, Outcome::BadHash));
    }
}

#[test]
fn a_site_refuses_the_kinds_it_has_off() {
    let identified_only = Site::new("shop", "g", "", None, Some(IDENTITY.as_bytes()));
    let e = run(&identified_only, "{}").unwrap_err();
    assert!(matches!(e, VisitorError::AnonymousOff));
    assert_eq!((e.status(), e.outcome()), (403, Outcome::NotAllowed));
    let anonymous_only = Site::new("shop", "g", "", Some(SECRET.as_bytes()), None);
    let body = format!(r#"{{"user_id":"user-42","user_hash":"{USER_42_HASH}"}}"#);
    let e = run(&anonymous_only, &body).unwrap_err();
    assert!(matches!(e, VisitorError::IdentifiedOff));
    assert_eq!(e.status(), 403);
}

#[test]
fn bad_bodies_are_400() {
    let long = "x".repeat(MAX_ID_BYTES + 1);
    let long_name = "n".repeat(MAX_NAME_BYTES + 1);
    let long_email = "e".repeat(MAX_EMAIL_BYTES + 1);
    let cases = [
        String::new(),
        "not json".into(),
        "[]".into(),
        r#"{"visitor_id": 5, "visitor_key": "k"}"#.into(),
        r#"{"colour": "blue"}"#.into(),
        format!(r#"{{"visitor_id":"{ZERO_ID}"}}"#),
        format!(r#"{{"visitor_key":"{ZERO_ID_KEY}"}}"#),
        format!(r#"{{"visitor_id":"{long}","visitor_key":"k"}}"#),
        r#"{"visitor_id":"a b","visitor_key":"k"}"#.into(),
        r#"{"visitor_id":"","visitor_key":"k"}"#.into(),
        r#"{"name":"Ann"}"#.into(),
        r#"{"user_id":"user-42"}"#.into(),
        format!(r#"{{"user_hash":"{USER_42_HASH}"}}"#),
        format!(r#"{{"user_id":"","user_hash":"{USER_42_HASH}"}}"#),
        format!(r#"{{"user_id":"{long}","user_hash":"{USER_42_HASH}"}}"#),
        format!(r#"{{"user_id":"user-42","user_hash":"{USER_42_HASH}","name":"{long_name}"}}"#),
        format!(r#"{{"user_id":"user-42","user_hash":"{USER_42_HASH}","email":"{long_email}"}}"#),
        format!(r#"{{"user_id":"a\nb","user_hash":"{USER_42_HASH}"}}"#),
        format!(r#"{{"user_id":"user-42","user_hash":"{USER_42_HASH}","visitor_id":"{ZERO_ID}"}}"#),
        format!(r#"{{"visitor_id":"{ZERO_ID}","visitor_id":"{ZERO_ID}","visitor_key":"k"}}"#),
    ];
    for body in cases {
        let e = run(&shop(), &body).unwrap_err();
        assert_eq!(
            (e.status(), e.outcome()),
            (400, Outcome::BadRequest),
            "{body}: {e}"
        );
    }
}

#[test]
fn parser_reasons_are_cut_short() {
    let body = format!(r#"{{"{}": 1}}"#, "k".repeat(3000));
    let e = run(&shop(), &body).unwrap_err();
    assert!(e.to_string().len() < 200, "{e}");
    assert_eq!(shorten("añb", 2), "a");
}

#[test]
fn hex_is_pairs_of_digits() {
    assert_eq!(from_hex("00ff7A"), Some(vec![0, 255, 0x7a]));
    assert_eq!(from_hex(""), Some(vec![]));
    assert_eq!(from_hex("0"), None);
    assert_eq!(from_hex("0g"), None);
    assert_eq!(from_hex("+1"), None);
}

#[test]
fn the_rate_table_gives_a_burst_then_one_per_interval() {
    let mut t = RateTable::new(10, 16);
    let t0 = Mono::from_ms(1_000);
    for i in 0..10 {
        assert_eq!(t.take(1u64, t0), Ok(()), "token {i} of the burst");
    }
    // The 11th waits one interval (6 s at 10 a minute).
    assert_eq!(t.take(1, t0), Err(Duration::from_secs(6)));
    assert_eq!(t.take(1, t0.plus_ms(5_999)), Err(Duration::from_millis(1)));
    // A neighbour is unaffected.
    assert_eq!(t.take(2, t0), Ok(()));
    assert_eq!(t.take(1, t0.plus_ms(6_000)), Ok(()));
    assert!(t.take(1, t0.plus_ms(6_000)).is_err());
    // A minute of quiet refills the burst.
    let later = t0.plus_ms(6_000 + 60_000);
    for _ in 0..10 {
        assert_eq!(t.take(1, later), Ok(()));
    }
    assert!(t.take(1, later).is_err());
}

#[test]
fn the_rate_table_is_bounded_and_forgets_the_nearest_to_full() {
    let mut t = RateTable::new(2, 3);
    let t0 = Mono::from_ms(0);
    // Address 1 uses its burst at once; 2 and 3 one token each, later.
    assert!(t.take(1u64, t0).is_ok());
    assert!(t.take(1, t0).is_ok());
    assert!(t.take(1, t0).is_err());
    assert!(t.take(2, t0.plus_ms(1)).is_ok());
    assert!(t.take(3, t0.plus_ms(2)).is_ok());
    assert_eq!(t.len(), 3);
    // A fourth address evicts the one whose bucket refills first (2), not 1.
    assert!(t.take(4, t0.plus_ms(3)).is_ok());
    assert_eq!(t.len(), 3);
    assert!(t.take(1, t0.plus_ms(3)).is_err(), "1 is still limited");
    // Once buckets are full again they are dropped before anything else.
    let much_later = t0.plus_ms(10 * 60_000);
    assert!(t.take(5, much_later).is_ok());
    assert_eq!(t.len(), 1);
}
