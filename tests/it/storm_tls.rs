//! The real `storm` binary over TLS (`--tls`) against an in-process server whose
//! client port has a certificate made in the test: connect with full handshakes and
//! with resumption (`--tls-resume`), chat over TLS (binary frames and WebSocket
//! JSON), and an untrusted certificate refused by storm with its error kind.

use serde_json::Value;

use crate::storm_chat::check_chat;
use crate::storm_smoke::check_clean;
use crate::util::storm::run_against;
use crate::util::tls::{Ca, single};
use crate::util::{TEST_SECRET, TestServer, words};

/// A TLS server for `localhost`, the CA file trusting it, and the directory holding both.
fn tls_server() -> (TestServer, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("storm test CA");
    let pair = ca.leaf(&["localhost"], false).write(dir.path(), "server");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let server = TestServer::start(|c| c.listeners.client.tls = Some(single(pair)));
    (server, ca_file.to_str().unwrap().to_owned(), dir)
}

/// storm with `line` and `--tls --ca-file CA --server-name localhost` against `server`.
fn storm_tls(server: &TestServer, ca_file: &str, line: &str) -> crate::util::storm::Run {
    let mut args = words(line);
    args.extend(["--tls", "--ca-file", ca_file, "--server-name", "localhost"]);
    run_against(server, TEST_SECRET, &args)
}

fn handshakes(server: &TestServer) -> u64 {
    server
        .metrics()
        .reactor_sum(|r| r.tls.handshakes.iter().map(|c| c.get()).sum())
}

fn counter(v: &Value, name: &str) -> u64 {
    v["counters"][name].as_u64().unwrap_or(0)
}

#[test]
fn connect_over_tls_full_and_resumed_handshakes() {
    let (server, ca, _dir) = tls_server();
    let run = storm_tls(&server, &ca, "--scenario connect -n 30 --rate 300");
    let v = check_clean(&run, "connect", 30);
    // Without --tls-resume every handshake is a full one, and the server saw each.
    assert_eq!(
        (counter(&v, "tls_full"), counter(&v, "tls_resumed")),
        (30, 0),
        "{v}"
    );
    assert_eq!(handshakes(&server), 30);

    // One thread, paced: the tickets of earlier connections are there for later ones.
    let run = storm_tls(
        &server,
        &ca,
        "--scenario connect -n 30 --rate 100 --threads 1 --tls-resume",
    );
    let v = check_clean(&run, "connect", 30);
    let (full, resumed) = (counter(&v, "tls_full"), counter(&v, "tls_resumed"));
    assert_eq!(full + resumed, 30, "{v}");
    assert!(resumed > 0 && full >= 1, "{v}");
    assert_eq!(handshakes(&server), 60);
}

#[test]
fn chat_over_tls_tcp_and_websocket() {
    let (server, ca, _dir) = tls_server();
    for transport in ["tcp", "ws-json"] {
        let line = format!(
            "--scenario chat -n 12 --agents 2 --rate 10 --duration 1 --transport {transport}"
        );
        let run = storm_tls(&server, &ca, &line);
        let v = run.ok();
        check_chat(&v, 12);
        assert_eq!(counter(&v, "tls_full"), 12, "{transport}: {v}");
    }
}

#[test]
fn an_untrusted_certificate_fails_every_connection() {
    let (server, _ca, dir) = tls_server();
    let other = Ca::new("another CA");
    let wrong = dir.path().join("other.pem");
    std::fs::write(&wrong, &other.pem).unwrap();
    let run = storm_tls(
        &server,
        wrong.to_str().unwrap(),
        "--scenario connect -n 5 --rate 100",
    );
    let v = run.json.clone().expect("a report");
    assert_eq!(v["connections"], 0, "{v}");
    assert_eq!(
        v["errors"]["tls_invalid_certificate_unknown_issuer"], 5,
        "{v}"
    );
    assert_ne!(run.code, Some(0));
}
