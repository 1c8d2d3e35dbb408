//! `log.format = "json"`: the daemon binary writes one JSON object per line on stderr,
//! and by default logs neither secrets (keys, tokens) nor message bodies.

use crate::util;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::{Client, TEST_SECRET, bin, daemon_toml, wait_child};

const BODY_MARKER: &[u8] = b"BODY-MARKER-5f1c";

#[test]
fn json_lines_without_secrets_or_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_toml(&dir.path().join("state"))
        .replace("format = \"text\"", "format = \"json\"")
        .replace(
            "[heartbeat]",
            "[limits]\nmax_connections_per_ip = 1\n[heartbeat]",
        );
    assert!(config.contains("format = \"json\"") && config.contains("max_connections_per_ip"));
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr: SocketAddr = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no listening line; got {lines:?}"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        lines.push(line);
        if v["fields"]["message"] == "switchboard listening" {
            // The effective reactor backend (the file leaves the default, epoll).
            assert_eq!(v["fields"]["backend"], "epoll", "{v}");
            break v["fields"]["client_addr"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
        }
    };
    let mut c = Client::established(addr);
    c.ping(1, BODY_MARKER);
    // A second connection from the same address is refused and logged.
    let _refused = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    util::kill(child.id(), libc::SIGTERM);
    let status = wait_child(&mut child, Duration::from_secs(10)).unwrap();
    assert!(status.success());
    lines.extend(rx.try_iter());
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
        lines.push(l);
    }
    let mut messages = Vec::new();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        assert!(!line.contains(TEST_SECRET), "secret in log: {line}");
        assert!(!line.contains("eyJ"), "a JWT in log: {line}");
        let marker = std::str::from_utf8(BODY_MARKER).unwrap();
        assert!(!line.contains(marker), "message body in log: {line}");
    }
    for want in [
        "connection refused by a limit",
        "signal received",
        "stopped",
    ] {
        assert!(
            messages.iter().any(|m| m == want),
            "{want:?} not logged: {messages:?}"
        );
    }
}
