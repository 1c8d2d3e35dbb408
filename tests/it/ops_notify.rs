//! The daemon binary talks to systemd through a real `NOTIFY_SOCKET` (a Unix datagram
//! socket owned by the test): `READY=1` once listening, `WATCHDOG=1` while every loop
//! makes progress (with `WATCHDOG_USEC` set) and none while a reactor is stalled by
//! the test hook, `STOPPING=1` on SIGTERM.

use crate::util::http;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::util::{Daemon, daemon_toml};

/// The systemd side: a datagram socket collecting notifications.
struct Manager {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: String,
}

impl Manager {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        Self {
            socket,
            path: path.to_str().unwrap().to_owned(),
            _dir: dir,
        }
    }

    /// The next datagram within `wait`, as text.
    fn next(&self, wait: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }

    /// Waits for a datagram containing `line`; returns everything received before it.
    fn wait_for(&self, line: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {line:?} within {within:?}; got {seen:?}"
            );
            if let Some(msg) = self.next(left) {
                if msg.lines().any(|l| l == line) {
                    return seen;
                }
                seen.push(msg);
            }
        }
    }

    /// Datagrams received during `span`.
    fn collect(&self, span: Duration) -> Vec<String> {
        let deadline = Instant::now() + span;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return seen;
            }
            if let Some(msg) = self.next(left) {
                seen.push(msg);
            }
        }
    }
}

fn count(msgs: &[String], line: &str) -> usize {
    msgs.iter().filter(|m| m.lines().any(|l| l == line)).count()
}

#[test]
fn ready_status_and_stopping_on_sigterm() {
    let mgr = Manager::new();
    let mut daemon = Daemon::spawn_with_env(daemon_toml, &[("NOTIFY_SOCKET", &mgr.path)]);
    let ready = mgr.next(Duration::from_secs(10)).expect("a notification");
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    let addr = daemon.client_addr().to_string();
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=") && l.contains(&addr)),
        "{ready:?}"
    );
    daemon.signal(libc::SIGTERM);
    mgr.wait_for("STOPPING=1", Duration::from_secs(5));
    assert!(daemon.wait(Duration::from_secs(10)).unwrap().success());
    // Without WATCHDOG_USEC no watchdog pings were sent.
    assert_eq!(
        count(&mgr.collect(Duration::from_millis(50)), "WATCHDOG=1"),
        0
    );
}

#[test]
fn watchdog_pings_stop_while_a_reactor_is_stalled() {
    let mgr = Manager::new();
    // A 400 ms watchdog: checked every 200 ms, loops turn at least every 100 ms.
    let mut daemon = Daemon::spawn_with_env(
        |state| daemon_toml(state).replace("[reactor]\nthreads = 1\n", "[reactor]\nthreads = 2\n"),
        &[
            ("NOTIFY_SOCKET", &mgr.path),
            ("WATCHDOG_USEC", "400000"),
            ("SWITCHBOARD_TEST_HOOKS", "1"),
        ],
    );
    let admin = daemon.admin_addr().expect("admin listener");
    mgr.wait_for("READY=1", Duration::from_secs(10));
    // Pings flow while everything is idle.
    mgr.wait_for("WATCHDOG=1", Duration::from_secs(5));
    mgr.wait_for("WATCHDOG=1", Duration::from_secs(5));

    let r = http::get(admin, "/debug/stall?reactor=1&ms=3000");
    assert_eq!(r.status, 200, "{r:?}");
    // A ping already decided may still arrive; after one check period none may.
    let _ = mgr.collect(Duration::from_millis(500));
    let during = mgr.collect(Duration::from_millis(1500));
    assert_eq!(
        count(&during, "WATCHDOG=1"),
        0,
        "pings while reactor 1 was stalled: {during:?}"
    );
    // The stall ends after 3 s; the pings resume.
    mgr.wait_for("WATCHDOG=1", Duration::from_secs(5));
    daemon.signal(libc::SIGTERM);
    mgr.wait_for("STOPPING=1", Duration::from_secs(5));
    assert!(daemon.wait(Duration::from_secs(10)).unwrap().success());
}

#[test]
fn test_hooks_are_off_by_default() {
    let daemon = Daemon::spawn(daemon_toml);
    let admin = daemon.admin_addr().expect("admin listener");
    assert_eq!(http::get(admin, "/debug/stall?reactor=0&ms=10").status, 404);
}
