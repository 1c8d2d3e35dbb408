//! End-to-end runs of the real `storm` binary over WebSocket transports
//! (`--transport ws-json|ws-bin`) against an in-process server: the protocol
//! scenarios through the client port's WebSocket upgrade, echo against the WebSocket
//! echo listener, and an upgrade that fails reported as errors. Short runs, no timing
//! asserts; the figures are checked like the TCP runs' (`storm_smoke`, `storm_chat`).

use crate::storm_chat::{check_chat, check_fanout};
use crate::storm_smoke::check_clean;
use crate::util::storm::{report, run as storm, run_against};
use crate::util::{TEST_SECRET, TestServer, with_echo, with_ws_echo, words};

const TRANSPORTS: [&str; 2] = ["ws-json", "ws-bin"];

#[test]
fn connect_and_ping_over_both_websocket_dialects() {
    let server = TestServer::start(|_| {});
    for t in TRANSPORTS {
        let mut cmd = words("--scenario connect -n 20 --rate 400 --transport");
        cmd.push(t);
        let run = run_against(&server, TEST_SECRET, &cmd);
        let v = check_clean(&run, "connect", 20);
        assert_eq!(
            (v["wire"].as_str(), v["transport"].as_str()),
            (Some("protocol"), Some(t))
        );
        assert_eq!(v["messages"], 20, "{v}");

        let mut cmd = words("--scenario ping -n 10 --duration 0.5 --size 100 --transport");
        cmd.push(t);
        let run = run_against(&server, TEST_SECRET, &cmd);
        let v = check_clean(&run, "ping", 10);
        assert!(v["messages"].as_u64().unwrap() > 10, "{t}: {v}");
    }
}

#[test]
fn idle_sessions_hold_over_websocket() {
    let server = TestServer::start(|_| {});
    let run = run_against(
        &server,
        TEST_SECRET,
        &words("--scenario idle -n 30 --duration 0.5 --transport ws-json --procs 2"),
    );
    let v = run.ok();
    assert_eq!(v["errors"], serde_json::json!({}), "{v}");
    assert_eq!(v["connections_open_at_end"], 30, "{v}");
    assert_eq!(v["transport"], "ws-json");
}

#[test]
fn chat_and_fanout_over_websocket() {
    let server = TestServer::start(|_| {});
    for t in TRANSPORTS {
        let mut cmd = words("--scenario chat -n 24 --agents 4 --rate 10 --duration 1 --transport");
        cmd.push(t);
        check_chat(&report(&server, &cmd), 24);
    }
    for t in TRANSPORTS {
        let server = TestServer::start(|_| {});
        let mut cmd = words("--scenario fanout -n 30 --count 3 --rate 5 --transport");
        cmd.push(t);
        check_fanout(&report(&server, &cmd), 30, 3);
    }
}

#[test]
fn echo_over_websocket_messages() {
    let server = TestServer::start(with_ws_echo);
    let echo = server.echo_addr().to_string();
    for mode in ["pingpong", "flood"] {
        let mut cmd = words("--scenario echo -n 20 --size 1000 --duration 0.5 --transport ws");
        cmd.extend(["--target", &echo, "--mode", mode]);
        let run = storm(&cmd);
        let v = check_clean(&run, "echo", 20);
        assert_eq!(v["transport"], "ws-bin");
        // Each message comes back whole, with a frame header of 4 bytes (126..65535).
        let bytes = v["bytes"].as_u64().unwrap();
        assert!(
            bytes >= v["messages"].as_u64().unwrap() * 1004,
            "{mode}: {v}"
        );
    }
}

#[test]
fn a_failed_upgrade_is_reported_as_errors() {
    // A plain TCP echo listener sends the request back: not an HTTP response.
    let server = TestServer::start(with_echo);
    let echo = server.echo_addr().to_string();
    let mut cmd = words("--scenario connect --raw -n 5 --transport ws-bin --connect-timeout 5");
    cmd.extend(["--target", &echo]);
    let run = storm(&cmd);
    assert_ne!(run.code, Some(0), "{}", run.stderr);
    let v = run.json.expect("a report");
    assert_eq!(v["connections"], 0, "{v}");
    assert_eq!(v["errors"]["ws_upgrade_malformed"], 5, "{v}");
}
