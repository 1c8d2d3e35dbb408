//! End-to-end runs of the real `storm` binary's `chat` and `fanout` scenarios against
//! an in-process server: small runs (a few seconds each) checking that messages and
//! notices are delivered, in order and without loss, and the JSON report's extra
//! fields.

use serde_json::Value;

use crate::util::TestServer;
use crate::util::storm::{num, report as storm};
use crate::util::words;

/// storm run with the command line `line` against a fresh server: its report.
fn storm_on_a_server(line: &str) -> Value {
    let server = TestServer::start(|_| {});
    storm(&server, &words(line))
}

pub(crate) fn check_chat(v: &Value, n: u64) {
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
    // 4 agents (capacity 6 by default) and 20 visitors, 10 messages/s per conversation.
    let v = storm_on_a_server("--scenario chat -n 24 --agents 4 --rate 10 --duration 2 --size 100");
    check_chat(&v, 24);
    // Paced at 10/s per conversation: 20 conversations send at most 200 a second of the
    // window, plus a tick each. No lower bound: a starved run on a busy machine sends
    // fewer, and check_chat has already seen messages arrive.
    let m = num(&v, &["messages"]);
    let d = num(&v, &["duration_s"]);
    assert!(m <= 200.0 * d + 20.0, "{v}");
}

#[test]
fn chat_over_two_processes() {
    let v = storm_on_a_server("--scenario chat -n 24 --agents 4 --rate 10 --duration 1 --procs 2");
    check_chat(&v, 24);
    assert_eq!(v["procs"], 2, "{v}");
}

pub(crate) fn check_fanout(v: &Value, members: u64, notices: u64) {
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
    let v = storm_on_a_server("--scenario fanout -n 50 --count 3 --rate 5");
    check_fanout(&v, 50, 3);
}

#[test]
fn fanout_to_visitors_over_two_processes() {
    let v = storm_on_a_server("--scenario fanout -n 50 --count 3 --rate 5 --visitors --procs 2");
    check_fanout(&v, 50, 3);
}
