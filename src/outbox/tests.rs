//! The endpoint thread against a real journal and a loopback HTTP receiver: batches
//! follow journal order and `max_batch`, only committed records go, and a batch left
//! in flight by a stop goes again with the same `webhook-id` and body.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cursor::{self, Cursor};
use super::thread::{self, Endpoint};
use crate::config::WebhookConfig;
use crate::journal::{Journal, JournalConfig, segment_start};
use crate::metrics::webhooks::EndpointMetrics;
use crate::protocol::Kind;
use crate::protocol::messages::{Entry, role};
use crate::service::record::{Body, RecordKind, record};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One POST the receiver got: `webhook-id` and body.
type Post = (String, String);

/// A loopback receiver answering every POST with the status in `status`.
fn receiver(status: Arc<AtomicU16>) -> (u16, Arc<Mutex<Vec<Post>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let posts = Arc::new(Mutex::new(Vec::new()));
    let seen = posts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let (seen, status) = (seen.clone(), status.clone());
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Ok(n) = conn.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some(head) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let header = |name: &str| {
                        text[..head].lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                    };
                    let len: usize = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if buf.len() < head + 4 + len {
                        continue;
                    }
                    let body = String::from_utf8_lossy(&buf[head + 4..head + 4 + len]).into_owned();
                    let id = header("webhook-id").unwrap_or_default();
                    buf.drain(..head + 4 + len);
                    seen.lock().unwrap().push((id, body));
                    let s = status.load(Ordering::SeqCst);
                    let answer = format!("HTTP/1.1 {s} X\r\ncontent-length: 0\r\n\r\n");
                    if conn.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, posts)
}

fn message(conv: u64, seq: u64) -> crate::journal::Record {
    let body = Body {
        client_msg_id: seq,
        entry: Entry {
            seq,
            time_ms: 1_000 + seq,
            kind: Kind::Send.as_u8(),
            sender_role: role::VISITOR,
            content_type: 1,
            flags: 0,
            sender: "v".into(),
            body: format!("m{seq}"),
        },
        ..Body::default()
    };
    record(conv, seq, 1_000 + seq, RecordKind::Entry, &body)
}

/// Appends a conversation's opening and `n` messages, waiting for the commit.
fn append(j: &Journal, conv: u64, n: u64) {
    let opened = Body {
        tenant: "t".into(),
        visitor: "v".into(),
        ..Body::default()
    };
    let mut records = vec![record(conv, 0, 1_000, RecordKind::Opened, &opened)];
    records.extend((1..=n).map(|s| message(conv, s)));
    let (tx, rx) = crossbeam_channel::unbounded();
    j.handle.append(records, 1, &tx).unwrap();
    assert!(rx.recv().unwrap().result.is_ok());
}

struct Running {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    metrics: Arc<EndpointMetrics>,
}

impl Running {
    fn stop(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn start(j: &Journal, dir: &std::path::Path, port: u16, max_batch: usize) -> Running {
    let cfg = WebhookConfig {
        id: "t".into(),
        url: format!("http://127.0.0.1:{port}/"),
        secret: Some(SECRET.into()),
        secret_file: None,
        events: Vec::new(),
        tenant: None,
        include_notes: false,
        max_batch,
        timeout: Duration::from_secs(5),
        max_backoff: Duration::from_millis(100),
    };
    let (stop, stopped) = crossbeam_channel::bounded(0);
    let metrics = Arc::new(EndpointMetrics::new("t"));
    let ep = Endpoint {
        key: cfg.key().unwrap(),
        cfg,
        max_batch_bytes: 1 << 20,
        cursor_path: cursor::path(dir, "t"),
        cursor: cursor::CursorFile::open(&cursor::path(dir, "t")).unwrap(),
        reader: j.reader.clone(),
        journal: j.handle.clone(),
        metrics: metrics.clone(),
        stop: stopped,
    };
    Running {
        stop: Some(stop),
        thread: Some(std::thread::spawn(move || thread::run(ep))),
        metrics,
    }
}

fn wait(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not met in 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (conversation, seq) of each event in a POST body.
fn events(body: &str) -> Vec<(String, String)> {
    let v: Vec<serde_json::Value> = serde_json::from_str(body).unwrap();
    v.iter()
        .map(|e| {
            (
                e["data"]["conversation"].as_str().unwrap().to_owned(),
                e["data"]["seq"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn batches_follow_journal_order_and_max_batch() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&dir.path().join("j"), &JournalConfig::default(), |_, _| {}).unwrap();
    let status = Arc::new(AtomicU16::new(204));
    let (port, posts) = receiver(status);
    // From the journal's start (a new endpoint would start at its end).
    let first = j.reader.first_segment_from(0).unwrap();
    cursor::save(
        &cursor::path(dir.path(), "t"),
        &Cursor::at(segment_start(first)),
    )
    .unwrap();
    append(&j, 5, 6);
    let run = start(&j, dir.path(), port, 3);
    append(&j, 6, 2);
    // 7 + 3 events: batches of 3, 3, 3 and 1 (or fewer if the second append came
    // in between; never more than 3).
    wait(|| run.metrics.delivered.get() == 10);
    run.stop();
    let posts = posts.lock().unwrap().clone();
    let all: Vec<(String, String)> = posts.iter().flat_map(|(_, b)| events(b)).collect();
    let mut want: Vec<(String, String)> = (0..=6).map(|s| ("5".into(), s.to_string())).collect();
    want.extend((0..=2).map(|s| ("6".to_owned(), s.to_string())));
    assert_eq!(all, want, "every event once, in journal order");
    for (id, body) in &posts {
        let n = events(body).len();
        assert!(n <= 3, "{id}: {n} events");
        assert!(id.ends_with(&format!("_{n}")), "{id} names its {n} events");
    }
    let ids: std::collections::BTreeSet<&String> = posts.iter().map(|p| &p.0).collect();
    assert_eq!(ids.len(), posts.len(), "one id per batch");
    let saved = cursor::load(&cursor::path(dir.path(), "t"))
        .unwrap()
        .unwrap();
    assert_eq!(saved.in_flight, None);
    assert_eq!(
        saved.next.location(),
        j.reader.frontier.get(),
        "the cursor ends at the journal's end"
    );
}

/// A batch that failed until the thread stopped is in the cursor; the next start sends
/// it first, with the same id and the same bytes.
#[test]
fn a_batch_in_flight_at_a_stop_goes_again_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&dir.path().join("j"), &JournalConfig::default(), |_, _| {}).unwrap();
    let status = Arc::new(AtomicU16::new(500));
    let (port, posts) = receiver(status.clone());
    let first = j.reader.first_segment_from(0).unwrap();
    cursor::save(
        &cursor::path(dir.path(), "t"),
        &Cursor::at(segment_start(first)),
    )
    .unwrap();
    append(&j, 9, 4);
    let run = start(&j, dir.path(), port, 100);
    wait(|| run.metrics.failures.get() >= 2);
    run.stop();
    let failed = posts.lock().unwrap().clone();
    let (id, body) = failed[0].clone();
    assert!(
        failed.iter().all(|p| *p == (id.clone(), body.clone())),
        "retries are identical"
    );
    let saved = cursor::load(&cursor::path(dir.path(), "t"))
        .unwrap()
        .unwrap();
    assert!(saved.in_flight.is_some(), "{saved:?}");

    // More records meanwhile: they come after, in a batch of their own.
    append(&j, 10, 1);
    posts.lock().unwrap().clear();
    status.store(200, Ordering::SeqCst);
    let run = start(&j, dir.path(), port, 100);
    wait(|| run.metrics.delivered.get() == 5 + 2);
    run.stop();
    let after = posts.lock().unwrap().clone();
    assert_eq!(after[0], (id, body), "same id, same body after the restart");
    assert_eq!(
        events(&after[1].1),
        [("10".into(), "0".into()), ("10".into(), "1".into())]
    );
}

/// Retention deleted segments the endpoint had not read: it says so (metric, log)
/// and goes on with the oldest segment left; every record there makes its event.
#[test]
fn segments_deleted_before_they_were_read_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        segment_bytes: 4096,
        max_record_bytes: 1024,
        ..JournalConfig::default()
    };
    let j = Journal::open(&dir.path().join("j"), &cfg, |_, _| {}).unwrap();
    let first = j.reader.first_segment_from(0).unwrap();
    cursor::save(
        &cursor::path(dir.path(), "t"),
        &Cursor::at(segment_start(first)),
    )
    .unwrap();
    for conv in 1..=40 {
        append(&j, conv, 3);
    }
    let segments = j.handle.segments().unwrap();
    assert!(segments.len() >= 4, "{} segments", segments.len());
    j.handle
        .delete_segments(vec![segments[0].segment, segments[1].segment])
        .unwrap();
    let left: u64 = segments[2..].iter().map(|s| s.records).sum();
    let gone: std::collections::HashSet<u64> = segments[..2]
        .iter()
        .flat_map(|s| s.conversations.iter().copied())
        .collect();

    let (port, posts) = receiver(Arc::new(AtomicU16::new(204)));
    let run = start(&j, dir.path(), port, 100);
    wait(|| run.metrics.delivered.get() == left);
    let skipped = run.metrics.segments_skipped.get();
    run.stop();
    assert_eq!(skipped, 2);
    let posts = posts.lock().unwrap().clone();
    let convs: Vec<u64> = posts
        .iter()
        .flat_map(|(_, b)| events(b))
        .map(|(c, _)| c.parse().unwrap())
        .collect();
    assert_eq!(convs.len() as u64, left);
    // Conversations that straddle the cut show their surviving records only.
    let first_left = *convs.first().unwrap();
    assert!(convs.windows(2).all(|w| w[0] <= w[1]), "journal order");
    assert!(
        convs.iter().all(|c| !gone.contains(c) || *c == first_left),
        "no event from a deleted segment"
    );
}

/// Retention compaction copies old records to the end of the journal: the endpoint
/// reads the copies but sends nothing for them.
#[test]
fn compaction_copies_are_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        segment_bytes: 4096,
        max_record_bytes: 1024,
        ..JournalConfig::default()
    };
    let j = Journal::open(&dir.path().join("j"), &cfg, |_, _| {}).unwrap();
    let first = j.reader.first_segment_from(0).unwrap();
    cursor::save(
        &cursor::path(dir.path(), "t"),
        &Cursor::at(segment_start(first)),
    )
    .unwrap();
    for conv in 1..=12 {
        append(&j, conv, 3);
    }
    let (port, posts) = receiver(Arc::new(AtomicU16::new(204)));
    let run = start(&j, dir.path(), port, 100);
    wait(|| run.metrics.delivered.get() == 12 * 4);
    let moves = j.handle.copy_forward(first, |_| true).unwrap();
    assert!(!moves.is_empty());
    // A barrier behind the copies: conversation 99's events.
    append(&j, 99, 1);
    let has_99 = |posts: &Mutex<Vec<Post>>| {
        posts
            .lock()
            .unwrap()
            .iter()
            .any(|(_, b)| events(b).iter().any(|(c, _)| c == "99"))
    };
    wait(|| has_99(&posts));
    wait(|| run.metrics.delivered.get() >= 12 * 4 + 2);
    let delivered = run.metrics.delivered.get();
    run.stop();
    assert_eq!(delivered, 12 * 4 + 2, "{} copies sent again", moves.len());
}
