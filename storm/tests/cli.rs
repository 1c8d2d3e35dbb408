//! The storm binary's command line: refusals happen while parsing, before anything
//! is sent. (Runs against a server are in the switchboard package's integration
//! tests, `cargo test --test it storm`, which run this same binary.)
//!
//! Having an integration test also makes `cargo test` build `target/<profile>/storm`,
//! which those tests look for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output, Stdio};

/// Runs storm with `args`; every case here exits while parsing flags, so it cannot hang.
fn storm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_storm"))
        .args(args)
        .args(["--json", "-q"])
        .stdin(Stdio::null())
        .output()
        .expect("spawn storm")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn refuses_non_loopback_targets_and_bad_flags_before_connecting() {
    let o = storm(&["--target", "192.0.2.1:7700"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "no report");
    assert!(stderr(&o).contains("--allow-remote"), "{}", stderr(&o));
    let o = storm(&["--scenario", "ping", "--raw"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = storm(&["--secret-file", "/nonexistent/storm-secret"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--secret-file"), "{}", stderr(&o));
}

#[test]
fn help_lists_every_scenario() {
    let o = Command::new(env!("CARGO_BIN_EXE_storm"))
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .expect("spawn storm");
    assert!(o.status.success(), "{}", stderr(&o));
    let help = String::from_utf8_lossy(&o.stdout);
    for s in ["connect", "idle", "echo", "ping", "chat", "fanout"] {
        assert!(help.contains(s), "{s} missing from --help: {help}");
    }
}
