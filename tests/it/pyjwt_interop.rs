//! Interoperability with a third-party JWT library, PyJWT, standing in for a
//! customer's back end: tokens it mints with HS256 (with and without `kid`, and with the
//! development secret's text as the key) verify to the right [`Identity`]; its HS384
//! tokens are refused; and it accepts the tokens [`Verifier::mint`] makes.
//!
//! Without PyJWT (`python3 -c 'import jwt'` fails) each test prints
//! "skipped: PyJWT not installed" and passes, unless `SWITCHBOARD_REQUIRE_PYJWT=1` is
//! set (CI sets it), in which case it fails.

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use switchboard::Config;
use switchboard::auth::{AuthError, Claims, Identity, Verifier};
use switchboard::config::AuthKey;
use switchboard::protocol::messages::role;

const SECRET_1: &str = "pyjwt-interop-secret-one-0123456789abcdef0123456789abcdef";
const SECRET_2: &str = "pyjwt-interop-secret-two-0123456789abcdef0123456789abcdef";

/// Whether PyJWT can be used; panics when it cannot but is required.
fn pyjwt_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import jwt"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("SWITCHBOARD_REQUIRE_PYJWT").as_deref() == Ok("1") {
            panic!(
                "PyJWT is required (SWITCHBOARD_REQUIRE_PYJWT=1) but `python3 -c 'import jwt'` \
                 fails; install it with `python3 -m pip install pyjwt`"
            );
        }
        println!("skipped: PyJWT not installed (python3 -m pip install pyjwt to run this test)");
    }
    ok
}

/// Runs a Python snippet with `args` as `sys.argv[1:]` and returns its stdout, trimmed.
fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A token minted by PyJWT: `jwt.encode(payload, secret, algorithm=alg, headers=headers)`.
fn pyjwt_encode(
    payload: &serde_json::Value,
    secret: &str,
    alg: &str,
    headers: &serde_json::Value,
) -> String {
    const SCRIPT: &str = "import json, sys, jwt\n\
        payload, secret, alg, headers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]\n\
        print(jwt.encode(json.loads(payload), secret, algorithm=alg, headers=json.loads(headers)))";
    python(
        SCRIPT,
        &[&payload.to_string(), secret, alg, &headers.to_string()],
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key(kid: &str, secret: &str) -> AuthKey {
    AuthKey {
        kid: kid.into(),
        secret: Some(secret.into()),
        secret_file: None,
    }
}

fn verifier() -> Verifier {
    let mut config = Config::default();
    config.auth.keys = vec![key("k2", SECRET_2), key("k1", SECRET_1)];
    config.validate().unwrap();
    Verifier::from_config(&config).unwrap()
}

#[test]
fn pyjwt_hs256_tokens_verify_to_the_right_identity() {
    if !pyjwt_available() {
        return;
    }
    let v = verifier();
    let payload = json!({
        "sub": "agent-7",
        "role": "agent",
        "name": "Zoë 客服",
        "groups": ["sales", "support"],
        "tenant": "acme",
        "max_concurrent": 4,
        "exp": unix_now() + 300,
        "iat": unix_now(),
        "nbf": unix_now() - 5,
    });
    let token = pyjwt_encode(&payload, SECRET_1, "HS256", &json!({"kid": "k1"}));
    assert_eq!(
        v.verify(&token, SystemTime::now()).unwrap(),
        Identity {
            user: "agent-7".into(),
            name: "Zoë 客服".into(),
            role: role::AGENT,
            tenant: "acme".into(),
            groups: vec!["sales".into(), "support".into()],
            max_concurrent: Some(4),
        }
    );

    // No kid: checked against the first key (k2).
    let minimal = json!({"sub": "v1", "role": "visitor", "exp": unix_now() + 60});
    let token = pyjwt_encode(&minimal, SECRET_2, "HS256", &json!({}));
    let id = v.verify(&token, SystemTime::now()).unwrap();
    assert_eq!(
        (id.user.as_str(), id.name.as_str(), id.role),
        ("v1", "v1", role::VISITOR)
    );
    let token = pyjwt_encode(&minimal, SECRET_1, "HS256", &json!({}));
    assert!(matches!(
        v.verify(&token, SystemTime::now()),
        Err(AuthError::BadSignature)
    ));

    // Expired by PyJWT's reckoning is expired by ours.
    let old = json!({"sub": "v1", "role": "visitor", "exp": unix_now() - 120});
    let token = pyjwt_encode(&old, SECRET_1, "HS256", &json!({"kid": "k1"}));
    let err = v.verify(&token, SystemTime::now()).unwrap_err();
    assert_eq!(err.code().as_u16(), 201, "{err:?}");
}

#[test]
fn pyjwt_hs384_and_unknown_kid_are_refused() {
    if !pyjwt_available() {
        return;
    }
    let v = verifier();
    let payload = json!({"sub": "u", "role": "bot", "exp": unix_now() + 60});
    let hs384 = pyjwt_encode(&payload, SECRET_1, "HS384", &json!({"kid": "k1"}));
    let err = v.verify(&hs384, SystemTime::now()).unwrap_err();
    assert!(matches!(err, AuthError::WrongAlgorithm), "{err:?}");
    assert_eq!(err.code().as_u16(), 200);

    let hs512 = pyjwt_encode(&payload, SECRET_1, "HS512", &json!({}));
    assert_eq!(
        v.verify(&hs512, SystemTime::now())
            .unwrap_err()
            .code()
            .as_u16(),
        200
    );

    let stranger = pyjwt_encode(&payload, SECRET_1, "HS256", &json!({"kid": "k9"}));
    let err = v.verify(&stranger, SystemTime::now()).unwrap_err();
    assert_eq!(err.code().as_u16(), 202, "{err:?}");
}

#[test]
fn pyjwt_can_use_the_dev_secret_file_text() {
    if !pyjwt_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        state_dir: dir.path().to_owned(),
        ..Config::default()
    };
    let v = Verifier::from_config(&config).unwrap();
    let path = v.dev_secret().unwrap().to_str().unwrap().to_owned();
    const SCRIPT: &str = "import json, sys, jwt\n\
        print(jwt.encode(json.loads(sys.argv[1]), open(sys.argv[2]).read(), algorithm='HS256'))";
    let payload = json!({"sub": "dev-user", "role": "admin", "exp": unix_now() + 60});
    let token = python(SCRIPT, &[&payload.to_string(), &path]);
    let id = v.verify(&token, SystemTime::now()).unwrap();
    assert_eq!((id.user.as_str(), id.role), ("dev-user", role::ADMIN));
}

#[test]
fn pyjwt_accepts_minted_tokens() {
    if !pyjwt_available() {
        return;
    }
    let v = verifier();
    let mut claims = Claims::new(
        "carol",
        "agent",
        SystemTime::now(),
        Duration::from_secs(600),
    );
    claims.groups = vec!["vip".into()];
    claims.max_concurrent = Some(2);
    let token = v.mint(&claims, Some("k1")).unwrap();
    const SCRIPT: &str = "import json, sys, jwt\n\
        h = jwt.get_unverified_header(sys.argv[1])\n\
        c = jwt.decode(sys.argv[1], sys.argv[2], algorithms=['HS256'])\n\
        print(json.dumps({'kid': h.get('kid'), 'claims': c}))";
    let out: serde_json::Value =
        serde_json::from_str(&python(SCRIPT, &[&token, SECRET_1])).unwrap();
    assert_eq!(out["kid"], "k1");
    assert_eq!(out["claims"]["sub"], "carol");
    assert_eq!(out["claims"]["role"], "agent");
    assert_eq!(out["claims"]["groups"], json!(["vip"]));
    assert_eq!(out["claims"]["max_concurrent"], 2);
    assert_eq!(out["claims"]["exp"], claims.exp);

    // And PyJWT refuses it with the other key, so the check above meant something.
    const WRONG: &str = "import sys, jwt\n\
        try:\n    jwt.decode(sys.argv[1], sys.argv[2], algorithms=['HS256'])\n    print('accepted')\n\
        except jwt.InvalidSignatureError:\n    print('refused')";
    assert_eq!(python(WRONG, &[&token, SECRET_2]), "refused");
}
