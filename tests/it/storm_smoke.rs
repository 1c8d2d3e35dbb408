//! End-to-end runs of the real `storm` binary against an in-process server: the
//! `connect`, `ping` and `echo` scenarios with a few dozen connections for about a
//! second each, over one process and two, checking the JSON report's shape and
//! figures; plus the `.hgrm` output, `--server-pid`, and a bad token key. (Refusals
//! while parsing flags are storm's own tests, `storm/tests/cli.rs`.)

use serde_json::Value;

use crate::util::storm::{Run, run as storm, run_against};
use crate::util::{TEST_SECRET, TestServer, with_echo, words};

/// The report fields every bench script relies on, with their types.
pub(crate) fn check_shape(v: &Value) {
    let o = v.as_object().expect("an object");
    for k in ["scenario", "target", "wire"] {
        assert!(o[k].is_string(), "{k}: {v}");
    }
    for k in [
        "connections",
        "connections_requested",
        "connections_failed",
        "connections_open_at_end",
        "messages",
        "bytes",
        "bytes_sent",
    ] {
        assert!(o[k].is_u64(), "{k}: {v}");
    }
    for k in [
        "connect_rate_per_s",
        "messages_per_s",
        "bytes_per_s",
        "duration_s",
        "warmup_s",
    ] {
        assert!(o[k].is_f64(), "{k}: {v}");
    }
    for k in ["p50", "p90", "p99", "p999", "max"] {
        assert!(o["latency_us"][k].is_f64(), "latency_us.{k}: {v}");
    }
    assert!(o["errors"].is_object(), "errors: {v}");
}

/// storm run with the command line `line` against a fresh server, with its key.
fn storm_on_a_server(line: &str) -> Run {
    let server = TestServer::start(|_| {});
    run_against(&server, TEST_SECRET, &words(line))
}

/// The figures of a clean run with `n` connections.
pub(crate) fn check_clean(run: &Run, scenario: &str, n: u64) -> Value {
    let v = run
        .json
        .clone()
        .unwrap_or_else(|| panic!("no JSON; stderr: {}", run.stderr));
    check_shape(&v);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert_eq!(v["scenario"], scenario);
    assert_eq!(v["errors"], serde_json::json!({}), "{v}");
    assert_eq!(v["connections"], n, "{v}");
    assert_eq!(v["connections_requested"], n, "{v}");
    assert_eq!(v["connections_open_at_end"], n, "{v}");
    assert!(v["messages_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["latency_us"]["p50"].as_f64().unwrap() > 0.0, "{v}");
    assert!(
        v["latency_us"]["p50"].as_f64() <= v["latency_us"]["max"].as_f64(),
        "{v}"
    );
    v
}

#[test]
fn connect_storm_handshakes_every_connection() {
    let server = TestServer::start(|_| {});
    let run = run_against(
        &server,
        TEST_SECRET,
        &["--scenario", "connect", "-n", "40", "--rate", "400"],
    );
    let v = check_clean(&run, "connect", 40);
    assert_eq!(v["wire"], "protocol");
    // Handshakes are the connect scenario's messages.
    assert_eq!(v["messages"], 40);
    assert!(v["connect_rate_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["latency_us"]["count"], 40);
    assert!(v.get("server_rss").is_none());
}

#[test]
fn ping_round_trips_over_authenticated_sessions() {
    let run = storm_on_a_server("--scenario ping -n 30 --duration 1 --size 100");
    let v = check_clean(&run, "ping", 30);
    assert!(v["messages"].as_u64().unwrap() > 30, "{v}");
    // storm times its own window: never shorter than asked (the end is the machine's).
    assert!(v["duration_s"].as_f64().unwrap() >= 1.0, "{v}");
}

#[test]
fn ping_at_a_rate_with_warmup() {
    let run = storm_on_a_server("--scenario ping -n 20 --rate 20 --warmup 0.3 --duration 1");
    let v = check_clean(&run, "ping", 20);
    // Paced at 20/s per connection: 20 connections send at most 400 a second of the
    // window, plus a tick each. No lower bound: a starved run on a busy machine sends
    // fewer, and check_clean has already seen round trips.
    let m = v["messages"].as_f64().unwrap();
    let d = v["duration_s"].as_f64().unwrap();
    assert!(m <= 400.0 * d + 20.0, "{m}: {v}");
    assert_eq!(v["warmup_s"].as_f64(), Some(0.3));
}

#[test]
fn echo_pingpong_and_flood() {
    let server = TestServer::start(with_echo);
    let echo = server.echo_addr().to_string();
    for mode in ["pingpong", "flood"] {
        let mut cmd = words("--scenario echo -n 30 --size 256 --duration 1");
        cmd.extend(["--target", &echo, "--mode", mode]);
        let run = storm(&cmd);
        let v = check_clean(&run, "echo", 30);
        assert_eq!(
            (v["wire"].as_str(), v["mode"].as_str()),
            (Some("raw"), Some(mode))
        );
        // Every message is echoed whole: bytes back are at least messages × size.
        let bytes = v["bytes"].as_u64().unwrap();
        assert!(bytes >= v["messages"].as_u64().unwrap() * 256, "{v}");
        assert!(v["bytes_per_s"].as_f64().unwrap() > 0.0, "{v}");
    }
}

#[test]
fn two_processes_merge_into_one_report() {
    let run = storm_on_a_server("--scenario ping -n 21 --procs 2 --duration 0.5");
    let v = check_clean(&run, "ping", 21);
    assert_eq!(v["procs"], 2);
    // The merged histogram holds every process's samples.
    assert_eq!(v["latency_us"]["count"], v["messages"], "{v}");
    assert_eq!(v["connect_latency_us"]["count"], 21, "{v}");
}

#[test]
fn idle_with_server_rss_and_hgrm() {
    let server = TestServer::start(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let hgrm = dir.path().join("idle.hgrm");
    let pid = std::process::id().to_string();
    let mut cmd = words("--scenario idle -n 20 --duration 1.2");
    cmd.extend(["--server-pid", &pid, "--hgrm", hgrm.to_str().unwrap()]);
    let run = run_against(&server, TEST_SECRET, &cmd);
    // The test server's heartbeat is 1 s: every connection pings once in the window.
    let v = check_clean(&run, "idle", 20);
    let rss = &v["server_rss"];
    for k in ["start_kb", "peak_kb", "end_kb"] {
        assert!(rss[k].as_u64().unwrap() > 0, "{v}");
    }
    assert!(rss["growth_per_connection_bytes"].is_f64(), "{v}");
    assert!(rss["peak_kb"].as_u64() >= rss["end_kb"].as_u64());
    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
    assert!(text.contains("#[Max     ="), "{text}");
}

#[test]
fn a_wrong_key_is_reported_as_server_errors() {
    let server = TestServer::start(|_| {});
    let run = run_against(
        &server,
        &"w".repeat(40),
        &["--scenario", "connect", "-n", "5"],
    );
    let v = run.json.expect("a report even when everything failed");
    check_shape(&v);
    assert_eq!(run.code, Some(1), "nothing established is a failure");
    assert_eq!(v["connections"], 0);
    assert_eq!(v["connections_failed"], 5);
    assert_eq!(v["errors"]["server_error_200_token_invalid"], 5, "{v}");
}
