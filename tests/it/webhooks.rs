//! Webhooks from the journal, end to end with real parts: the daemon binary POSTs to a
//! Python `http.server` receiver (`tests/webhooks/receiver.py`) that answers 500, hangs
//! past the timeout, drops connections, and takes deliveries but loses the answer, at
//! random (seeded; the seed is printed).
//! Visitors write a few thousand messages; the daemon is killed with SIGKILL while it
//! delivers, restarted on the same state directory, and more messages follow. Then
//! (`tests/webhooks/check.py`, with PyPI `standardwebhooks`): every signature
//! verifies, a `webhook-id` seen twice carries the same body, batches arrive in journal
//! order; and here: every accepted message arrived as a `message.created` event, in
//! order per conversation, and no event is in two distinct batches.
//!
//! Needs Python with `standardwebhooks`: `$SWITCHBOARD_WEBHOOKS_PYTHON`, or else
//! `python3`. Without it the test prints "skipped: ..." and passes, unless
//! `SWITCHBOARD_REQUIRE_WEBHOOKS=1` (CI sets it, `.ci/run` installs the package).

use crate::util;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::util::{Daemon, daemon_toml};
use switchboard::client::{Client, ClientConfig};
use switchboard::protocol::messages::{self, Msg};

/// The Standard Webhooks specification's example secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Visitors, one conversation each.
const VISITORS: usize = 3;
/// Messages each visitor writes before the kill, and after the restart.
const BEFORE: u64 = 500;
const AFTER: u64 = 200;
/// Requests in flight per visitor.
const WINDOW: usize = 16;

/// The Python to run, if it has `standardwebhooks`; panics when it is required.
fn python() -> Option<String> {
    util::python_with(
        "standardwebhooks",
        "SWITCHBOARD_WEBHOOKS_PYTHON",
        "SWITCHBOARD_REQUIRE_WEBHOOKS",
    )
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/webhooks")
        .join(name)
}

/// The misbehaving receiver, killed on drop.
struct Receiver {
    child: Child,
    port: u16,
}

impl Receiver {
    fn start(py: &str, out: &Path, seed: u64) -> Self {
        let (child, port) = util::spawn_listening(
            Command::new(py)
                .arg(script("receiver.py"))
                .args(["--seed", &seed.to_string(), "--out"])
                .arg(out)
                .args(["--fail", "0.2", "--slow", "0.03", "--slow-seconds", "1.5"])
                .args(["--drop", "0.05", "--lost", "0.05"]),
            "receiver",
        );
        Self { child, port }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(state_dir: &Path, port: u16) -> String {
    format!(
        "{}[[webhooks]]\nid = \"it\"\nurl = \"http://127.0.0.1:{port}/hooks\"\n\
         secret = \"{SECRET}\"\nmax_batch = 40\ntimeout = \"1s\"\nmax_backoff = \"200ms\"\n",
        daemon_toml(state_dir)
    )
}

fn visitor(addr: SocketAddr, sub: &str) -> Client {
    let config = ClientConfig {
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        ..ClientConfig::new(addr.to_string(), util::token(sub, "visitor"))
    };
    Client::connect(config).unwrap()
}

/// One visitor's messages: its conversation, ids accepted (id -> seq), ids to send.
struct Writer {
    sub: String,
    conversation: u64,
    accepted: BTreeMap<u64, u64>,
    todo: Vec<u64>,
    in_flight: BTreeMap<u32, u64>,
}

impl Writer {
    fn post(&mut self, c: &mut Client, id: u64) -> bool {
        let sent = c.post(messages::Send {
            conversation: self.conversation,
            client_msg_id: id,
            content_type: messages::content::TEXT,
            group: String::new(),
            body: format!("{} m{id}", self.sub),
        });
        match sent {
            Ok(rid) => {
                self.in_flight.insert(rid, id);
                true
            }
            Err(_) => {
                self.todo.push(id);
                false
            }
        }
    }

    /// Handles one incoming frame; false once the connection is gone.
    fn recv(&mut self, c: &mut Client) -> bool {
        match c.recv(Duration::from_millis(5)) {
            Ok(Some(m)) => {
                if let Some(id) = self.in_flight.remove(&m.request_id) {
                    match m.msg {
                        Msg::Accepted(a) => {
                            if self.conversation == 0 {
                                self.conversation = a.conversation;
                            }
                            self.accepted.insert(id, a.seq);
                        }
                        other => panic!("{}: message {id}: {other:?}", self.sub),
                    }
                }
                true
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }
}

/// Lines (deliveries) the receiver accepted so far.
fn deliveries(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// (conversation, seq) of every message.created event received.
fn messages_received(out: &Path) -> BTreeSet<(u64, u64)> {
    let mut got = BTreeSet::new();
    for d in deliveries(out) {
        let Some(body) = d["body"].as_str() else {
            continue;
        };
        let events: Vec<serde_json::Value> = serde_json::from_str(body).unwrap();
        for e in events {
            if e["type"] == "message.created" {
                let conv = e["data"]["conversation"].as_str().unwrap().parse().unwrap();
                let seq = e["data"]["seq"].as_str().unwrap().parse().unwrap();
                got.insert((conv, seq));
            }
        }
    }
    got
}

/// Drives every writer until each has `upto` ids accepted, or `kill` says to stop
/// (then the daemon is killed and what was in flight goes back to `todo`).
fn write(
    daemon: &Daemon,
    writers: &mut [Writer],
    next_id: &mut u64,
    upto: u64,
    mut kill: impl FnMut() -> bool,
) -> bool {
    let mut clients: Vec<Client> = writers
        .iter()
        .map(|w| visitor(daemon.client_addr(), &w.sub))
        .collect();
    // Open the conversations first (one message each, answered).
    for (w, c) in writers.iter_mut().zip(clients.iter_mut()) {
        if w.conversation == 0 {
            *next_id += 1;
            assert!(w.post(c, *next_id));
            let deadline = Instant::now() + Duration::from_secs(10);
            while w.conversation == 0 {
                assert!(Instant::now() < deadline, "no Accepted for the opener");
                assert!(w.recv(c));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "writing stuck");
        let mut done = true;
        for (w, c) in writers.iter_mut().zip(clients.iter_mut()) {
            while w.in_flight.len() < WINDOW && (w.accepted.len() as u64) < upto {
                let id = w.todo.pop().unwrap_or_else(|| {
                    *next_id += 1;
                    *next_id
                });
                if !w.post(c, id) {
                    break;
                }
            }
            if !w.recv(c) {
                return false;
            }
            done &= w.accepted.len() as u64 >= upto && w.in_flight.is_empty();
        }
        if kill() {
            daemon.signal(libc::SIGKILL);
            for w in writers.iter_mut() {
                let lost: Vec<u64> = std::mem::take(&mut w.in_flight).into_values().collect();
                w.todo.extend(lost);
            }
            return false;
        }
        if done {
            return true;
        }
    }
}

#[test]
fn every_event_arrives_signed_in_order_across_failures_and_sigkill() {
    let Some(py) = python() else {
        return;
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000;
    eprintln!("receiver seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let out = dir.path().join("deliveries.jsonl");
    let receiver = Receiver::start(&py, &out, seed);
    let toml = config(&state_dir, receiver.port);

    let mut writers: Vec<Writer> = (0..VISITORS)
        .map(|i| Writer {
            sub: format!("hook-visitor-{i}"),
            conversation: 0,
            accepted: BTreeMap::new(),
            todo: Vec::new(),
            in_flight: BTreeMap::new(),
        })
        .collect();
    let mut next_id = 0;

    // Round 1: killed once some batches are delivered, while more are on their way.
    let mut daemon = Daemon::spawn(|_| toml.clone());
    let mut killed = false;
    let finished = write(&daemon, &mut writers, &mut next_id, BEFORE, || {
        deliveries(&out).len() >= 3
    });
    if finished {
        // Everything was written before 3 batches got through: kill now, mid-delivery.
        let waited = util::wait_until(Duration::from_secs(30), || deliveries(&out).len() >= 3);
        assert!(waited, "no delivery at all: {:?}", daemon.log_lines());
        daemon.signal(libc::SIGKILL);
    }
    killed |= daemon.wait(Duration::from_secs(5)).is_some();
    assert!(killed, "daemon did not die");
    let before_restart = deliveries(&out).len();

    // Round 2: the same state directory; resend what the kill left unanswered, then more.
    let daemon = Daemon::spawn(|_| toml.clone());
    assert!(write(
        &daemon,
        &mut writers,
        &mut next_id,
        BEFORE + AFTER,
        || false
    ));
    let want: BTreeSet<(u64, u64)> = writers
        .iter()
        .flat_map(|w| w.accepted.values().map(|s| (w.conversation, *s)))
        .collect();
    let all_in = util::wait_until(Duration::from_secs(120), || {
        want.is_subset(&messages_received(&out))
    });
    let received = messages_received(&out);
    let missing: Vec<_> = want.difference(&received).take(10).collect();
    assert!(
        all_in,
        "events never arrived, e.g. {missing:?}; log: {:?}",
        daemon.log_lines()
    );

    let checked = Command::new(&py)
        .arg(script("check.py"))
        .arg(&out)
        .arg(SECRET)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "check.py: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    let events = summary["events"].as_array().unwrap();
    // No event in two distinct batches; per conversation, in sequence order.
    let mut seen = BTreeSet::new();
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    for e in events {
        let (conv, seq, kind) = (
            e[0].as_str().unwrap().to_owned(),
            e[1].as_str().unwrap().parse::<u64>().unwrap(),
            e[2].as_str().unwrap().to_owned(),
        );
        assert!(
            seen.insert((conv.clone(), seq, kind.clone())),
            "{conv}/{seq} {kind} in two batches with different ids"
        );
        let last = last_seq.entry(conv.clone()).or_insert(0);
        assert!(
            seq >= *last,
            "conversation {conv}: seq {seq} after {last} (order)"
        );
        *last = seq;
    }
    let opened = events
        .iter()
        .filter(|e| e[2] == "conversation.opened")
        .count();
    assert_eq!(opened, VISITORS, "one conversation.opened per conversation");
    let deliveries = summary["deliveries"].as_u64().unwrap();
    let distinct = summary["distinct"].as_u64().unwrap();
    eprintln!(
        "{} messages, {} events in {distinct} batches, {deliveries} deliveries accepted \
         ({before_restart} before the kill)",
        want.len(),
        events.len(),
    );
}

/// A receiver that answers every POST `410 Gone`; counts the POSTs.
fn gone_receiver() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let posts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = posts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = conn.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < head_end + 4 + len {
                        continue;
                    }
                    buf.drain(..head_end + 4 + len);
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = conn.write_all(b"HTTP/1.1 410 Gone\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    (port, posts)
}

/// `410 Gone` disables the endpoint: one POST, then nothing, also after a restart
/// (the cursor file says so); the metric shows it.
#[test]
fn gone_disables_the_endpoint_for_good() {
    use std::sync::atomic::Ordering;
    use switchboard::config::WebhookConfig;
    let (port, posts) = gone_receiver();
    let dir = tempfile::tempdir().unwrap();
    let mut config = util::test_config(dir.path());
    config.webhooks = vec![WebhookConfig {
        id: "gone".into(),
        url: format!("http://127.0.0.1:{port}/"),
        secret: Some(SECRET.into()),
        secret_file: None,
        events: Vec::new(),
        tenant: None,
        include_notes: false,
        max_batch: 10,
        timeout: Duration::from_secs(5),
        max_backoff: Duration::from_millis(100),
    }];
    let server = switchboard::Server::start(&config).unwrap();
    let mut c = visitor(server.client_addr(), "gone-visitor");
    let reply = c
        .request(
            messages::Send {
                conversation: 0,
                client_msg_id: 1,
                content_type: messages::content::TEXT,
                group: String::new(),
                body: "hello".into(),
            },
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(matches!(reply, Msg::Accepted(_)), "{reply:?}");
    let hook = server.metrics().webhooks[0].clone();
    assert!(util::wait_until(Duration::from_secs(20), || hook
        .disabled
        .get()
        == 1));
    assert!(server.shutdown().clean);
    assert_eq!(posts.load(Ordering::SeqCst), 1, "one POST, then disabled");
    assert_eq!(hook.attempts[1].get(), 1, "counted as gone");
    let cursor = std::fs::read(config.state_dir.join("outbox").join("gone.cursor")).unwrap();
    // Binary slots around the JSON.
    let cursor = String::from_utf8_lossy(&cursor);
    assert!(cursor.contains("\"status\":410"), "{cursor}");

    // Restarted: still disabled, nothing sent (the thread ends before any POST).
    let server = switchboard::Server::start(&config).unwrap();
    let hook = server.metrics().webhooks[0].clone();
    assert!(util::wait_until(Duration::from_secs(20), || hook
        .disabled
        .get()
        == 1));
    assert!(server.shutdown().clean);
    assert_eq!(posts.load(Ordering::SeqCst), 1);
    assert_eq!(hook.attempts.iter().map(|a| a.get()).sum::<u64>(), 0);
}

/// A cursor file that does not parse stops the start, naming the file (rather than
/// guessing where delivery stood).
#[test]
fn a_damaged_cursor_refuses_the_start() {
    use switchboard::config::WebhookConfig;
    let dir = tempfile::tempdir().unwrap();
    let mut config = util::test_config(dir.path());
    config.webhooks = vec![WebhookConfig {
        id: "crm".into(),
        url: "http://127.0.0.1:9/".into(),
        secret: Some(SECRET.into()),
        secret_file: None,
        events: Vec::new(),
        tenant: None,
        include_notes: false,
        max_batch: 10,
        timeout: Duration::from_secs(5),
        max_backoff: Duration::from_secs(1),
    }];
    let outbox = config.state_dir.join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::write(outbox.join("crm.cursor"), b"{\"version\":1,\"next\":[1,").unwrap();
    let err = match switchboard::Server::start(&config) {
        Ok(_) => panic!("started with a damaged cursor"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("crm.cursor") && err.contains("not valid"),
        "{err}"
    );
}
