//! End-to-end runs of the real `storm` binary's `chat` and `fanout` scenarios against
//! an in-process server: small runs (a few seconds each) checking that messages and
//! notices are delivered, in order and without loss, and the JSON report's extra
//! fields.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod util;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use util::{TEST_SECRET, TestServer, wait_child};

/// A run never takes longer than this (they take a few seconds).
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs storm against `server` with `args` plus the protocol flags and `--json -q`;
/// returns the JSON (panicking with stderr when there is none or it failed).
fn storm(server: &TestServer, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{TEST_SECRET}\n")).unwrap();
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let addr = server.addr().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_storm"))
        .args(["--target", &addr, "--kid", "test", "--secret-file"])
        .arg(&secret)
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
    assert!(status.success(), "storm {args:?} failed: {stderr}");
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout}\n{stderr}"))
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_f64()
        .unwrap_or_else(|| panic!("{path:?} not a number: {v}"))
}

fn check_chat(v: &Value, n: u64) {
    assert_eq!(v["scenario"], "chat", "{v}");
    assert_eq!(
        v["errors"],
        serde_json::json!({}),
        "no lost, out_of_order, ...: {v}"
    );
    assert_eq!(v["connections"], n, "{v}");
    assert_eq!(v["connections_open_at_end"], n, "{v}");
    assert!(v["messages"].as_u64().unwrap() > 0, "{v}");
    assert!(num(v, &["messages_per_s"]) > 0.0, "{v}");
    let accepted = v["counters"]["accepted"].as_u64().unwrap();
    assert!(accepted > 0, "{v}");
    assert_eq!(v["counters"]["delivered"], accepted, "{v}");
    for k in ["latency_us", "latency_v2a_us", "latency_a2v_us"] {
        assert!(num(v, &[k, "count"]) > 0.0, "{k}: {v}");
        assert!(num(v, &[k, "p50"]) > 0.0, "{k}: {v}");
        assert!(num(v, &[k, "p99"]) <= num(v, &[k, "max"]), "{k}: {v}");
    }
    assert_eq!(
        num(v, &["latency_us", "count"]),
        num(v, &["latency_v2a_us", "count"]) + num(v, &["latency_a2v_us", "count"]),
        "{v}"
    );
}

#[test]
fn chat_visitors_and_agents_exchange_messages_in_order() {
    let server = TestServer::start(|_| {});
    // 4 agents (capacity 6 by default) and 20 visitors, 10 messages/s per conversation.
    let v = storm(
        &server,
        &[
            "--scenario",
            "chat",
            "-n",
            "24",
            "--agents",
            "4",
            "--rate",
            "10",
            "--duration",
            "2",
            "--size",
            "100",
        ],
    );
    check_chat(&v, 24);
    // 20 conversations × 10/s × 2 s ≈ 400 messages in the window.
    let m = v["messages"].as_u64().unwrap();
    assert!((100..=500).contains(&m), "{v}");
}

#[test]
fn chat_over_two_processes() {
    let server = TestServer::start(|_| {});
    let v = storm(
        &server,
        &[
            "--scenario",
            "chat",
            "-n",
            "24",
            "--agents",
            "4",
            "--rate",
            "10",
            "--duration",
            "1",
            "--procs",
            "2",
        ],
    );
    check_chat(&v, 24);
    assert_eq!(v["procs"], 2, "{v}");
}

fn check_fanout(v: &Value, members: u64, notices: u64) {
    assert_eq!(v["scenario"], "fanout", "{v}");
    assert_eq!(v["errors"], serde_json::json!({}), "{v}");
    assert_eq!(v["connections"], members + 1, "members and the admin: {v}");
    assert_eq!(v["counters"]["notices_sent"], notices, "{v}");
    assert_eq!(v["counters"]["members"], members, "{v}");
    assert_eq!(v["counters"]["delivered"], members * notices, "{v}");
    assert_eq!(v["messages"], members * notices, "{v}");
    // One latency sample per notice: the time to reach every member.
    assert_eq!(num(v, &["latency_us", "count"]), notices as f64, "{v}");
    assert!(num(v, &["latency_us", "p50"]) > 0.0, "{v}");
    assert_eq!(
        num(v, &["latency_delivery_us", "count"]),
        (members * notices) as f64,
        "{v}"
    );
    assert!(
        num(v, &["latency_delivery_us", "max"]) <= num(v, &["latency_us", "max"]) * 1.01,
        "{v}"
    );
}

#[test]
fn fanout_reaches_every_agent_of_the_group() {
    let server = TestServer::start(|_| {});
    let v = storm(
        &server,
        &[
            "--scenario",
            "fanout",
            "-n",
            "50",
            "--count",
            "3",
            "--rate",
            "5",
        ],
    );
    check_fanout(&v, 50, 3);
}

#[test]
fn fanout_to_visitors_over_two_processes() {
    let server = TestServer::start(|_| {});
    let v = storm(
        &server,
        &[
            "--scenario",
            "fanout",
            "-n",
            "50",
            "--count",
            "3",
            "--rate",
            "5",
            "--visitors",
            "--procs",
            "2",
        ],
    );
    check_fanout(&v, 50, 3);
}
