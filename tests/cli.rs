//! The command line: `switchboard check-config FILE` exits 0 for a valid file (the
//! shipped reference config among them) and 2 with a message naming the bad key for an
//! unknown key or an out-of-range value; `--version` works.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod util;

use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(10);

fn check(dir: &Path, name: &str, body: &str) -> (Option<i32>, String, String) {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    let (status, out, err) = util::run_bin(&["check-config", path.to_str().unwrap()], LIMIT);
    (status.code(), out, err)
}

#[test]
fn valid_file_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = check(
        dir.path(),
        "ok.toml",
        "[limits]\nmax_frame_bytes = 65536\n[heartbeat]\nidle_timeout = \"2m\"\n",
    );
    assert_eq!(code, Some(0), "stdout {out:?} stderr {err:?}");
    assert!(out.contains("ok"), "{out:?}");
}

#[test]
fn empty_file_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = check(dir.path(), "empty.toml", "");
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn shipped_reference_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/switchboard.toml");
    let (status, out, err) = util::run_bin(&["check-config", path.to_str().unwrap()], LIMIT);
    assert_eq!(status.code(), Some(0), "stdout {out:?} stderr {err:?}");
}

#[test]
fn unknown_key_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = check(dir.path(), "typo.toml", "[limits]\nmax_frame_byts = 10\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("max_frame_byts"),
        "message must name the key: {err:?}"
    );
}

#[test]
fn zero_max_frame_bytes_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = check(dir.path(), "zero.toml", "[limits]\nmax_frame_bytes = 0\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("limits.max_frame_bytes"),
        "message must name the key: {err:?}"
    );
}

#[test]
fn idle_not_longer_than_interval_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = check(
        dir.path(),
        "idle.toml",
        "[heartbeat]\ninterval = \"2s\"\nidle_timeout = \"1s\"\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("heartbeat.idle_timeout"), "{err:?}");
}

#[test]
fn a_record_limit_below_the_largest_message_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB cannot hold the record of a 65,536-byte Send body.
    let (code, _, err) = check(
        dir.path(),
        "small.toml",
        "[journal]\nmax_record_bytes = 65536\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("journal.max_record_bytes"), "{err:?}");
    let (code, _, err) = check(
        dir.path(),
        "enough.toml",
        "[journal]\nmax_record_bytes = 65879\n",
    );
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn an_admin_listener_off_loopback_is_a_warning_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = check(
        dir.path(),
        "open.toml",
        "[admin]\naddr = \"0.0.0.0:7701\"\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ok"), "{out:?}");
    assert!(
        err.contains("warning") && err.contains("admin.addr") && err.contains("authentication"),
        "{err:?}"
    );
    let (code, _, err) = check(
        dir.path(),
        "loopback.toml",
        "[admin]\naddr = \"[::1]:7701\"\n",
    );
    assert_eq!((code, err.as_str()), (Some(0), ""));
}

/// `run` logs the same warning when it starts. (The client port is taken here, so the
/// daemon stops before it binds anything: nothing listens off loopback.)
#[test]
fn run_logs_the_admin_listener_warning() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let path = dir.path().join("run.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = {:?}\n[listeners.client]\naddr = \"{}\"\n\
             [admin]\naddr = \"0.0.0.0:0\"\n",
            dir.path().join("state").display().to_string(),
            taken.local_addr().unwrap()
        ),
    )
    .unwrap();
    let (status, _, err) = util::run_bin(&["run", "--config", path.to_str().unwrap()], LIMIT);
    assert!(
        err.contains("WARN") && err.contains("admin.addr") && err.contains("authentication"),
        "{err}"
    );
    assert!(err.contains("cannot start"), "{err}");
    assert!(!status.success());
}

#[test]
fn missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let (status, _, err) = util::run_bin(&["check-config", missing.to_str().unwrap()], LIMIT);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("nope.toml"), "{err:?}");
}

#[test]
fn version_flag_prints_the_version() {
    let (status, out, _) = util::run_bin(&["--version"], LIMIT);
    assert!(status.success());
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out:?}");
}
