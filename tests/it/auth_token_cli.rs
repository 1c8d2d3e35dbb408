//! `switchboard token`: the real binary prints one JWT on stdout (and nothing else
//! there) that verifies with the same configuration — with a configured key, with a
//! chosen `--kid`, and with the development secret it creates; bad input exits 2 with
//! the problem on stderr and nothing on stdout.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use switchboard::Config;

use crate::util;
use switchboard::auth::{Identity, Verifier};
use switchboard::protocol::messages::role;

const LIMIT: Duration = Duration::from_secs(20);
const SECRET_NEW: &str = "new-secret-0123456789abcdef0123456789abcdef";
const SECRET_OLD: &str = "old-secret-0123456789abcdef0123456789abcdef";

/// Runs the binary in `dir` with `args`, killing it if it outlives [`LIMIT`].
fn run(dir: &Path, args: &[&str]) -> Output {
    let (status, stdout, stderr) = util::run_bin_in(dir, args, LIMIT);
    Output {
        status,
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The token from a successful run: exactly one line on stdout.
fn token_of(out: &Output) -> String {
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "status {:?}, stdout {stdout:?}, stderr {:?}",
        out.status,
        text(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout must hold the token only: {stdout:?}"
    );
    assert_eq!(lines[0].split('.').count(), 3, "{stdout:?}");
    lines[0].to_owned()
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn keyed_config(dir: &Path) -> PathBuf {
    let old_file = dir.join("old.key");
    std::fs::write(&old_file, format!("{SECRET_OLD}\n")).unwrap();
    write_config(
        dir,
        &format!(
            "state_dir = {state:?}\n\
             [auth]\nleeway = \"5s\"\n\
             [[auth.keys]]\nkid = \"new\"\nsecret = \"{SECRET_NEW}\"\n\
             [[auth.keys]]\nkid = \"old\"\nsecret_file = {old:?}\n",
            state = dir.join("state").to_str().unwrap(),
            old = old_file.to_str().unwrap(),
        ),
    )
}

fn verify(config: &Path, token: &str) -> Identity {
    let config = Config::load(config).unwrap();
    Verifier::from_config(&config)
        .unwrap()
        .verify(token, SystemTime::now())
        .unwrap()
}

fn kid_of(token: &str) -> Option<String> {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(header["alg"], "HS256", "{header}");
    header
        .get("kid")
        .and_then(|k| k.as_str())
        .map(str::to_owned)
}

#[test]
fn token_with_configured_key_verifies_with_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = keyed_config(dir.path());
    let out = run(
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "token",
            "--role",
            "agent",
            "--sub",
            "alice",
            "--groups",
            "sales,support",
            "--name",
            "Alice Liddell",
            "--tenant",
            "t1",
            "--max-concurrent",
            "5",
        ],
    );
    let token = token_of(&out);
    assert_eq!(
        kid_of(&token).as_deref(),
        Some("new"),
        "first key by default"
    );
    assert_eq!(
        verify(&config, &token),
        Identity {
            user: "alice".into(),
            name: "Alice Liddell".into(),
            role: role::AGENT,
            tenant: "t1".into(),
            groups: vec!["sales".into(), "support".into()],
            max_concurrent: Some(5),
        }
    );
    assert!(
        !dir.path().join("state/dev-secret").exists(),
        "no dev secret when keys are configured"
    );
}

#[test]
fn kid_picks_the_key_and_config_may_follow_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let config = keyed_config(dir.path());
    let out = run(
        dir.path(),
        &[
            "token",
            "--role",
            "visitor",
            "--sub",
            "v-42",
            "--kid",
            "old",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let token = token_of(&out);
    assert_eq!(kid_of(&token).as_deref(), Some("old"));
    let id = verify(&config, &token);
    assert_eq!((id.user.as_str(), id.name.as_str()), ("v-42", "v-42"));
    assert_eq!(id.role, role::VISITOR);
    assert!(id.groups.is_empty() && id.tenant.is_empty() && id.max_concurrent.is_none());

    // A verifier that no longer has the old key refuses it (202), so the kid mattered.
    let mut without_old = Config::load(&config).unwrap();
    without_old.auth.keys.retain(|k| k.kid != "old");
    let err = Verifier::from_config(&without_old)
        .unwrap()
        .verify(&token, SystemTime::now())
        .unwrap_err();
    assert_eq!(err.code().as_u16(), 202, "{err:?}");
}

#[test]
fn ttl_sets_the_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let config = keyed_config(dir.path());
    let cfg = config.to_str().unwrap();
    let out = run(
        dir.path(),
        &[
            "--config", cfg, "token", "--role", "bot", "--sub", "b", "--ttl", "2m",
        ],
    );
    let token = token_of(&out);
    let verifier = Verifier::from_config(&Config::load(&config).unwrap()).unwrap();
    let now = SystemTime::now();
    assert!(
        verifier
            .verify(&token, now + Duration::from_secs(100))
            .is_ok()
    );
    // Two minutes plus the configured 5 s leeway plus slack for a slow start.
    let err = verifier
        .verify(&token, now + Duration::from_secs(140))
        .unwrap_err();
    assert_eq!(err.code().as_u16(), 201, "{err:?}");
}

#[test]
fn without_keys_the_dev_secret_is_created_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = write_config(
        dir.path(),
        &format!("state_dir = {:?}\n", state.to_str().unwrap()),
    );
    let cfg = config.to_str().unwrap();
    let args = ["--config", cfg, "token", "--role", "admin", "--sub", "root"];
    let first = token_of(&run(dir.path(), &args));
    let secret_file = state.join("dev-secret");
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert_eq!(secret.len(), 64, "{secret:?}");
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert_eq!(kid_of(&first), None);
    assert_eq!(verify(&config, &first).role, role::ADMIN);

    // The second run reuses the secret rather than replacing it.
    let second = token_of(&run(dir.path(), &args));
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), secret);
    assert_eq!(verify(&config, &second).user, "root");
}

#[test]
fn without_config_the_dev_secret_lives_in_dot_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["token", "--role", "agent", "--sub", "a1"]);
    let token = token_of(&out);
    assert!(dir.path().join("data/dev-secret").exists());
    let config = Config {
        state_dir: dir.path().join("data"),
        ..Config::default()
    };
    let id = Verifier::from_config(&config)
        .unwrap()
        .verify(&token, SystemTime::now())
        .unwrap();
    assert_eq!(id.user, "a1");
}

fn assert_fails(dir: &Path, args: &[&str], stderr_has: &str) {
    let out = run(dir, args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr:?}");
    assert!(
        out.stdout.is_empty(),
        "{args:?}: stdout {:?}",
        text(&out.stdout)
    );
    assert!(stderr.contains(stderr_has), "{args:?}: stderr {stderr:?}");
}

#[test]
fn bad_requests_exit_2_with_nothing_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let config = keyed_config(dir.path());
    let cfg = config.to_str().unwrap();
    assert_fails(
        dir.path(),
        &[
            "--config", cfg, "token", "--role", "agent", "--sub", "a", "--kid", "nope",
        ],
        "nope",
    );
    assert_fails(
        dir.path(),
        &["--config", cfg, "token", "--role", "root", "--sub", "a"],
        "root",
    );
    assert_fails(
        dir.path(),
        &["--config", cfg, "token", "--role", "agent", "--sub", ""],
        "sub",
    );
    assert_fails(
        dir.path(),
        &[
            "--config", cfg, "token", "--role", "agent", "--sub", "a", "--ttl", "soon",
        ],
        "ttl",
    );
    assert_fails(
        dir.path(),
        &["--config", cfg, "token", "--sub", "a"],
        "--role",
    );

    let bad = write_config(
        dir.path(),
        "[[auth.keys]]\nkid = \"k\"\nsecret = \"too short\"\n",
    );
    assert_fails(
        dir.path(),
        &[
            "--config",
            bad.to_str().unwrap(),
            "token",
            "--role",
            "agent",
            "--sub",
            "a",
        ],
        "\"k\"",
    );
    let missing = write_config(
        dir.path(),
        "[[auth.keys]]\nkid = \"gone\"\nsecret_file = \"/nonexistent/switchboard.key\"\n",
    );
    assert_fails(
        dir.path(),
        &[
            "--config",
            missing.to_str().unwrap(),
            "token",
            "--role",
            "agent",
            "--sub",
            "a",
        ],
        "/nonexistent/switchboard.key",
    );
}
