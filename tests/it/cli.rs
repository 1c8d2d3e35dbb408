//! The command line: `switchboard check-config FILE` exits 0 for a valid file (the
//! shipped reference config among them) and 2 with a message naming the bad key for an
//! unknown key or an out-of-range value; everything `run` refuses before binding
//! (secret files, the development secret, assistant libraries, listeners, `state_dir`)
//! `check-config` refuses too, and both exit 2 naming the problem; `check-config` takes
//! its file one way only; `--version` works.

use crate::util;

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

/// A config body for `dir`: state in `dir/state`, client and admin on loopback port 0
/// (so a `run` that wrongly got past its checks binds nothing in use), then `extra`.
fn body(dir: &Path, extra: &str) -> String {
    format!(
        "state_dir = {:?}\n[listeners.client]\naddr = \"127.0.0.1:0\"\n\
         [admin]\naddr = \"127.0.0.1:0\"\n{extra}",
        dir.join("state").display().to_string()
    )
}

/// `check-config FILE` and `run --config FILE` both refuse `body` with exit 2, and
/// both say every one of `needles`.
fn both_refuse(dir: &Path, name: &str, body: &str, needles: &[&str]) {
    let (code, out, err) = check(dir, name, body);
    assert_eq!(
        code,
        Some(2),
        "check-config {name}: stdout {out:?} stderr {err:?}"
    );
    for n in needles {
        assert!(err.contains(n), "check-config {name} must say {n:?}: {err}");
    }
    let path = dir.join(name);
    let (status, _, err) = util::run_bin(&["run", "--config", path.to_str().unwrap()], LIMIT);
    assert_eq!(status.code(), Some(2), "run {name}: {err}");
    for n in needles {
        assert!(err.contains(n), "run {name} must say {n:?}: {err}");
    }
}

const KEY: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn a_missing_or_short_secret_file_is_refused_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("missing.key");
    let keys = |file: &Path| {
        format!(
            "[[auth.keys]]\nkid = \"main\"\nsecret_file = {:?}\n",
            file.display().to_string()
        )
    };
    both_refuse(
        d,
        "missing.toml",
        &body(d, &keys(&missing)),
        &["\"main\"", "cannot read secret file", "missing.key"],
    );
    let short = d.join("short.key");
    std::fs::write(&short, "too-short\n").unwrap();
    both_refuse(
        d,
        "short.toml",
        &body(d, &keys(&short)),
        &["\"main\"", "secret is 9 bytes; at least 32 required"],
    );
    // Long enough: both checks pass.
    std::fs::write(&short, format!("{KEY}\n")).unwrap();
    let (code, _, err) = check(d, "long.toml", &body(d, &keys(&short)));
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_short_development_secret_is_refused_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("state")).unwrap();
    std::fs::write(d.join("state/dev-secret"), "short").unwrap();
    both_refuse(
        d,
        "dev.toml",
        &body(d, ""),
        &["dev-secret", "fewer than 32"],
    );
}

#[test]
fn a_missing_assistant_library_is_refused_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for key in ["faq", "canned", "spam"] {
        let file = d.join(format!("no-{key}.toml"));
        let extra = format!("[assist]\n{key} = {:?}\n", file.display().to_string());
        both_refuse(
            d,
            &format!("{key}.toml"),
            &body(d, &extra),
            &["cannot read", &format!("no-{key}.toml")],
        );
    }
    // Switched off, a missing file is not read.
    let extra = format!(
        "[assist]\nfaq_enabled = false\nfaq = {:?}\n",
        d.join("no-faq.toml").display().to_string()
    );
    let (code, _, err) = check(d, "off.toml", &body(d, &extra));
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_listener_off_loopback_without_keys_is_refused_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let open = format!(
        "state_dir = {:?}\n[listeners.client]\naddr = \"0.0.0.0:0\"\n\
         [admin]\naddr = \"127.0.0.1:0\"\n",
        d.join("state").display().to_string()
    );
    both_refuse(
        d,
        "open.toml",
        &open,
        &[
            "listeners.client",
            "non-loopback 0.0.0.0:0",
            "[[auth.keys]]",
        ],
    );
    let echo = body(d, "[listeners.echo]\naddr = \"0.0.0.0:0\"\n");
    both_refuse(d, "echo.toml", &echo, &["listeners.echo", "non-loopback"]);
    // With a key, the same listener is fine (plaintext off loopback only when it
    // says so: a proxy in front terminates TLS).
    let keyed = format!("{open}[[auth.keys]]\nkid = \"k\"\nsecret = {KEY:?}\n").replace(
        "addr = \"0.0.0.0:0\"\n",
        "addr = \"0.0.0.0:0\"\nallow_plaintext = true\n",
    );
    let (code, _, err) = check(
        d,
        "keyed.toml",
        &keyed.replace("allow_plaintext = true\n", ""),
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("allow_plaintext"), "{err}");
    let (code, _, err) = check(d, "keyed.toml", &keyed);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn two_listeners_on_one_address_are_refused_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = d.join("state").display().to_string();
    // Nothing binds: the checks refuse first, so these ports need not be free.
    let echo = format!(
        "state_dir = {state:?}\n[listeners.client]\naddr = \"127.0.0.1:20911\"\n\
         [listeners.echo]\naddr = \"127.0.0.1:20911\"\n[admin]\naddr = \"127.0.0.1:0\"\n"
    );
    both_refuse(
        d,
        "echo.toml",
        &echo,
        &[
            "`listeners.echo.addr`",
            "listeners.client.addr",
            "127.0.0.1:20911",
        ],
    );
    let admin = format!(
        "state_dir = {state:?}\n[listeners.client]\naddr = \"127.0.0.1:20912\"\n\
         [admin]\naddr = \"0.0.0.0:20912\"\n"
    );
    both_refuse(
        d,
        "admin.toml",
        &admin,
        &["`admin.addr`", "listeners.client.addr"],
    );
}

#[test]
fn an_unusable_state_dir_is_refused_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let at = |state: &Path| {
        format!(
            "state_dir = {:?}\n[listeners.client]\naddr = \"127.0.0.1:0\"\n\
             [admin]\naddr = \"127.0.0.1:0\"\n",
            state.display().to_string()
        )
    };
    both_refuse(
        d,
        "file.toml",
        &at(&file),
        &["state_dir", "not a directory"],
    );
    both_refuse(
        d,
        "below.toml",
        &at(&file.join("state")),
        &["state_dir", "a-file is not a directory"],
    );
    // A directory nobody may create files in, root included (procfs).
    let procfs = Path::new("/proc/sys/kernel");
    both_refuse(
        d,
        "procfs.toml",
        &at(procfs),
        &["state_dir /proc/sys/kernel: not writable by this process"],
    );
    both_refuse(
        d,
        "procfs-below.toml",
        &at(&procfs.join("switchboard")),
        &["does not exist and cannot be created in /proc/sys/kernel"],
    );
    // The journal directory inside it must take files too.
    let state = d.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("journal"), "x").unwrap();
    both_refuse(
        d,
        "journal.toml",
        &at(&state),
        &["journal", "not a directory"],
    );
}

#[test]
fn check_config_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = d.join("deep/state");
    let body = format!("state_dir = {:?}\n", state.display().to_string());
    let (code, out, err) = check(d, "fresh.toml", &body);
    assert_eq!(code, Some(0), "{out} {err}");
    assert!(!d.join("deep").exists(), "no state_dir, no dev-secret made");
}

#[test]
fn check_config_takes_its_file_one_way_only() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "").unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\nmax_frame_bytes = 0\n").unwrap();
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());
    // Two files: which one was meant is unclear, so neither is checked.
    for args in [
        ["check-config", "--config", bad, good],
        ["--config", bad, "check-config", good],
    ] {
        let (status, out, err) = util::run_bin(&args, LIMIT);
        assert_eq!(status.code(), Some(2), "{args:?}: {out} {err}");
        assert!(
            err.contains("two files") && err.contains(&format!("switchboard check-config {good}")),
            "{args:?}: {err}"
        );
        assert!(!out.contains("ok"), "{args:?}: {out}");
    }
    let (status, _, err) = util::run_bin(&["check-config", "--config", good], LIMIT);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("not with --config")
            && err.contains(&format!("switchboard check-config {good}")),
        "{err}"
    );
    let (status, _, err) = util::run_bin(&["check-config"], LIMIT);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("needs the file"), "{err}");
}

#[test]
fn proxy_keys_are_checked_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let listener = "[listeners.client]\naddr = \"127.0.0.1:7700\"\n";
    let cases = [
        (
            "proxy_protocol = true\n",
            "listeners.client.trusted_proxies",
        ),
        (
            "trusted_proxies = [\"10.0.0.0/8\"]\n",
            "listeners.client.proxy_protocol",
        ),
        (
            "proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "10.0.0.0/33",
        ),
    ];
    for (i, (keys, named)) in cases.into_iter().enumerate() {
        let (code, _, err) = check(
            dir.path(),
            &format!("p{i}.toml"),
            &format!("{listener}{keys}"),
        );
        assert_eq!(code, Some(2), "{keys}: {err}");
        assert!(err.contains(named), "{keys}: {err:?} must name {named}");
    }
    let (code, _, err) = check(
        dir.path(),
        "ok.toml",
        &format!("{listener}proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n"),
    );
    assert_eq!(code, Some(0), "{err}");
}

/// An FAQ library whose own questions look like the built-in background's off-topic
/// subjects (an internet provider's) gets a hint to turn it off: a warning, exit 0;
/// none once the file says `background = false`.
#[test]
fn an_faq_library_inside_the_background_gets_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let entries = "[[entry]]\nid = \"wifi\"\nquestions = [\"I forgot the wifi password\", \
                   \"the router keeps dropping the connection\"]\nanswer = \"See the sticker on the router.\"\n";
    for (name, faq, hint) in [
        ("isp", entries.to_owned(), true),
        ("isp-off", format!("background = false\n{entries}"), false),
    ] {
        let file = d.join(format!("{name}.toml"));
        std::fs::write(&file, faq).unwrap();
        let extra = format!("[assist]\nfaq = {:?}\n", file.display().to_string());
        let (code, out, err) = check(d, &format!("{name}-config.toml"), &body(d, &extra));
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("ok"), "{out:?}");
        let said = err.contains("warning: assist.faq")
            && err.contains("background = false")
            && err.contains("\"wifi\"");
        assert_eq!(said, hint, "{name}: {err:?}");
    }
}
