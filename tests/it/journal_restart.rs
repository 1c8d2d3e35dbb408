//! The journal across restarts of an in-process server on one state directory: open
//! conversations continue where they were (same ids, next sequence numbers, resends
//! recognised, history intact, resume across the restart), and retention drops old
//! closed conversations by deleting or compacting whole segments while the open ones
//! survive intact.

use crate::util;

use std::path::Path;
use std::time::Duration;

use crate::util::peer::{Peer, RawPeer};
use switchboard::protocol::messages::{Cursor, Msg};
use switchboard::{Config, Server};

fn config(dir: &Path) -> Config {
    let mut c = util::test_config(dir);
    c.heartbeat.interval = Duration::from_secs(10);
    c.heartbeat.idle_timeout = Duration::from_secs(60);
    c
}

fn bodies(page: &switchboard::protocol::messages::HistoryPage) -> Vec<(u64, String)> {
    page.entries
        .iter()
        .map(|e| (e.seq, e.body.clone()))
        .collect()
}

#[test]
fn a_restarted_daemon_continues_every_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let server = Server::start(&cfg).unwrap();
    let addr = server.client_addr();
    let mut alice = Peer::connect(addr, &util::agent_token("alice", &["support"]), "alice");
    let mut vera = Peer::connect(addr, &util::token("vera", "visitor"), "vera");
    let conv = vera.send_accepted(0, 1, "hello").conversation;
    alice.assigned(conv);
    for i in 0..5 {
        vera.send_accepted(conv, 10 + i, &format!("v{i}"));
        alice.send_accepted(conv, 20 + i, &format!("a{i}"));
    }
    // A second, queued conversation in another group (nobody serves it).
    let rid = vera.post(switchboard::protocol::messages::Send {
        group: "sales".into(),
        ..util::peer::text(0, 2, "anyone in sales?")
    });
    let queued = vera.reply_to(rid, |m| match m {
        Msg::Accepted(a) => Some(a.clone()),
        _ => None,
    });
    assert_ne!(queued.conversation, conv);
    let before = vera.history(conv);
    assert_eq!(before.entries.len(), 12);
    drop((alice, vera));
    assert!(server.shutdown().clean);

    let server = Server::start(&cfg).unwrap();
    let addr = server.client_addr();
    let mut vera = Peer::connect(addr, &util::token("vera", "visitor"), "vera");
    assert_eq!(
        bodies(&vera.history(conv)),
        bodies(&before),
        "history survives"
    );
    // A resend of a message from before the restart is recognised.
    let again = vera.send_accepted(conv, 13, "v3");
    assert_eq!(again.seq, before.entries[8].seq);
    // New messages continue the numbering; the agent still has the conversation.
    let next = vera.send_accepted(conv, 30, "after the restart");
    assert_eq!(next.seq, 13);
    let (mut alice, welcome) = RawPeer::connect_resuming(
        addr,
        &util::agent_token("alice", &["support"]),
        vec![Cursor {
            conversation: conv,
            last_seq: 12,
        }],
    );
    assert!(welcome.resumed[0].recovered, "{welcome:?}");
    alice.sync(9);
    let got = alice.delivers(conv);
    assert_eq!(
        got.iter()
            .map(|d| (d.seq, d.body.as_str()))
            .collect::<Vec<_>>(),
        vec![(13, "after the restart")],
        "the agent resumes across the restart"
    );
    // The queued conversation still waits; a new conversation gets a fresh id.
    assert_eq!(vera.history(queued.conversation).entries.len(), 1);
    let rid = vera.post(switchboard::protocol::messages::Send {
        group: "billing".into(),
        ..util::peer::text(0, 3, "another group")
    });
    let fresh = vera.reply_to(rid, |m| match m {
        Msg::Accepted(a) => Some(a.conversation),
        _ => None,
    });
    assert!(fresh > queued.conversation, "ids continue: {fresh}");
    drop(vera);
    assert!(server.shutdown().clean);
}

fn segments(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("state/journal"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    v.sort();
    v
}

/// Whether `conversation` is unknown to the server (History answers 404) within 15 s.
fn forgotten(p: &mut Peer, conversation: u64) -> bool {
    util::wait_until(Duration::from_secs(15), || {
        let rid = p.post(switchboard::protocol::messages::History {
            conversation,
            before_seq: 0,
            limit: 10,
        });
        let reply = p.wait_for("an answer to History", util::REPLY_TIMEOUT, |i| {
            (i.request_id == rid).then(|| i.msg.clone())
        });
        matches!(reply, Msg::Error(e) if e.code == 404)
    })
}

#[test]
fn retention_drops_old_closed_conversations_and_keeps_open_ones_intact() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.journal.segment_bytes = 256 * 1024;
    cfg.journal.retention = Duration::from_secs(1);
    let server = Server::start(&cfg).unwrap();
    let addr = server.client_addr();
    let pad = "x".repeat(2000);

    // An old closed conversation, interleaved with one that stays open.
    let mut alice = Peer::connect(addr, &util::agent_token("alice", &["support"]), "alice");
    let mut old = Peer::connect(addr, &util::token("olga", "visitor"), "olga");
    let mut keep = Peer::connect(addr, &util::token("karl", "visitor"), "karl");
    let closed = old.send_accepted(0, 1, "old").conversation;
    let open = keep.send_accepted(0, 1, "keep").conversation;
    for i in 0..150 {
        old.send_accepted(closed, 10 + i, &pad);
        keep.send_accepted(open, 10 + i, &format!("k{i} {pad}"));
    }
    alice.post(switchboard::protocol::messages::Close {
        conversation: closed,
        seq: 0,
        reason: "done".into(),
    });
    alice.closed(closed);
    let kept = keep.history(open);
    let first = segments(dir.path());
    assert!(
        first.len() >= 3,
        "traffic spans several segments: {first:?}"
    );

    // Retention runs every second: once the close is 1 s old a pass forgets the
    // conversation (404 from then on) and deletes the old segments. Wait for each
    // event: a segment may go first, on a slow machine where its records are older
    // than the retention before the close is.
    assert!(
        forgotten(&mut old, closed),
        "the closed conversation was never forgotten"
    );
    let gone = util::wait_until(Duration::from_secs(15), || {
        let now = segments(dir.path());
        now.first() != first.first()
    });
    assert!(gone, "no segment was deleted: {:?}", segments(dir.path()));
    assert_eq!(
        bodies(&keep.history(open)),
        bodies(&kept),
        "open one intact"
    );
    drop((alice, old, keep));
    assert!(server.shutdown().clean);

    // After a restart (records of the open conversation were copied forward, out of
    // their original order) it is still whole, and the closed one stays gone.
    let server = Server::start(&cfg).unwrap();
    let addr = server.client_addr();
    let mut keep = Peer::connect(addr, &util::token("karl", "visitor"), "karl");
    assert_eq!(bodies(&keep.history(open)), bodies(&kept));
    // The closed one is gone, at the latest after the first retention pass: its
    // records may have been copied forward before its close was old enough (a slow
    // machine), and recovery brings it back until a pass forgets it again.
    let mut old = Peer::connect(addr, &util::token("olga", "visitor"), "olga");
    assert!(
        forgotten(&mut old, closed),
        "the closed conversation came back after the restart"
    );
    drop((keep, old));
    assert!(server.shutdown().clean);
}
