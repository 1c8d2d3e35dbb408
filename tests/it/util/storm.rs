//! Runs the real `storm` load generator and reads its one-line JSON report.
//!
//! storm is its own workspace package (`storm/`), so cargo gives this package no
//! `CARGO_BIN_EXE_storm`: the binary is found in the same target directory as this
//! test executable (`target/debug/storm` beside `target/debug/deps/it-…`), which plain
//! `cargo test` at the workspace root builds. `STORM_BIN` names another one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{TEST_SECRET, TestServer, wait_child};

/// A run never takes longer than this (the tests' runs take a few seconds).
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// What one storm run left behind.
pub struct Run {
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its report, when stdout held one.
    pub json: Option<Value>,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Run {
    /// The report of a run that succeeded (panics with stderr otherwise).
    pub fn ok(self) -> Value {
        assert_eq!(self.code, Some(0), "storm failed: {}", self.stderr);
        self.json
            .unwrap_or_else(|| panic!("no JSON report; stderr: {}", self.stderr))
    }
}

/// The storm binary: `$STORM_BIN`, else `storm` in this test executable's target
/// directory. Panics with the command that builds it when it is missing.
pub fn bin() -> PathBuf {
    let storm = match std::env::var_os("STORM_BIN") {
        Some(p) => PathBuf::from(p),
        // target/<profile>/deps/it-<hash> -> target/<profile>/storm
        None => std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .join("storm"),
    };
    assert!(
        storm.is_file(),
        "{} is missing: storm is the workspace package `storm/`; build it with \
         `cargo build -p storm` (plain `cargo test` at the workspace root does), \
         or set STORM_BIN",
        storm.display()
    );
    storm
}

/// Runs storm with `args` plus `--json -q`, bounded by a timeout.
pub fn run(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let mut child = Command::new(bin())
        .args(args)
        .args(["--json", "-q"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("spawn storm");
    let status = wait_child(&mut child, RUN_TIMEOUT)
        .unwrap_or_else(|| panic!("storm {args:?} did not finish within {RUN_TIMEOUT:?}"));
    let stdout = std::fs::read_to_string(&out).unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let json = match lines.as_slice() {
        [] => None,
        [one] => Some(serde_json::from_str(one).unwrap_or_else(|e| {
            panic!("stdout is not one JSON object ({e}): {stdout}\nstderr: {stderr}")
        })),
        more => panic!("stdout has {} lines, expected one: {stdout}", more.len()),
    };
    Run {
        code: status.code(),
        json,
        stderr,
    }
}

/// Runs storm against `server`'s protocol listener, signing tokens with `secret`
/// under the `test` key id.
pub fn run_against(server: &TestServer, secret: &str, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let addr = server.addr().to_string();
    let mut all = vec![
        "--target",
        &addr,
        "--kid",
        "test",
        "--secret-file",
        secret_file.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    run(&all)
}

/// The report of a successful run against `server` with the test key.
pub fn report(server: &TestServer, args: &[&str]) -> Value {
    run_against(server, TEST_SECRET, args).ok()
}

/// `v` at `path`, as a number (panics naming the path otherwise).
pub fn num(v: &Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(v, |x, p| &x[*p])
        .as_f64()
        .unwrap_or_else(|| panic!("{path:?} not a number: {v}"))
}
