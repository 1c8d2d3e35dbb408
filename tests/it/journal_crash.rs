//! Crash safety of the journal with `fsync = "always"`, on the real daemon binary: a
//! visitor streams messages and records every `Accepted`; the daemon is killed with
//! SIGKILL at a random moment, several times, and restarted on the same state
//! directory. Afterwards the transcript (read with `History`) holds every accepted
//! message at the sequence number it was accepted with, exactly once per
//! `client_msg_id`, with no gap — including resends, after a restart, of the messages
//! whose `Accepted` the crash swallowed.

use crate::util;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::util::{Daemon, daemon_toml};
use switchboard::client::{Client, ClientConfig};
use switchboard::protocol::Kind;
use switchboard::protocol::messages::{self, Entry, Msg};

const ROUNDS: usize = 4;
/// Requests in flight at once.
const WINDOW: usize = 32;

fn visitor(addr: SocketAddr) -> Client {
    let config = ClientConfig {
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        ..ClientConfig::new(addr.to_string(), util::token("vera", "visitor"))
    };
    Client::connect(config).unwrap()
}

fn send(c: &mut Client, conversation: u64, id: u64) -> u32 {
    c.post(messages::Send {
        conversation,
        client_msg_id: id,
        content_type: messages::content::TEXT,
        group: String::new(),
        body: format!("m{id}"),
    })
    .unwrap()
}

/// The whole transcript, oldest first, paging back with `History`.
fn transcript(c: &mut Client, conversation: u64) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut before = 0;
    loop {
        let page = c
            .request(
                messages::History {
                    conversation,
                    before_seq: before,
                    limit: 200,
                },
                Duration::from_secs(5),
            )
            .unwrap();
        let Msg::HistoryPage(page) = page else {
            panic!("not a page: {page:?}");
        };
        let Some(first) = page.entries.first() else {
            break;
        };
        before = first.seq;
        let more = page.more;
        entries.splice(0..0, page.entries);
        if !more {
            break;
        }
    }
    entries
}

#[test]
fn every_accepted_message_survives_sigkill_exactly_once_and_in_order() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("state");
    let mut rng = util::Rng::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    let mut accepted: BTreeMap<u64, u64> = BTreeMap::new();
    let mut unanswered: BTreeSet<u64> = BTreeSet::new();
    let mut conversation = 0;
    let mut next_id = 1;

    for round in 0..ROUNDS {
        let mut daemon = Daemon::spawn(|_| daemon_toml(&state_dir));
        let mut c = visitor(daemon.client_addr());
        if conversation == 0 {
            let rid = send(&mut c, 0, next_id);
            let reply = loop {
                let m = c.recv(Duration::from_secs(5)).unwrap().unwrap();
                if m.request_id == rid {
                    break m.msg;
                }
            };
            let Msg::Accepted(a) = reply else {
                panic!("{reply:?}")
            };
            conversation = a.conversation;
            accepted.insert(next_id, a.seq);
            next_id += 1;
        }
        // Resend first what the last crash left unanswered: stored at most once.
        let mut queue: Vec<u64> = std::mem::take(&mut unanswered).into_iter().collect();
        let kill_at = Instant::now() + Duration::from_millis(100 + rng.next_u64() % 400);
        let mut in_flight: BTreeMap<u32, u64> = BTreeMap::new();
        let mut killed = false;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "round {round} stuck");
            if !killed && Instant::now() >= kill_at {
                daemon.signal(libc::SIGKILL);
                killed = true;
            }
            while in_flight.len() < WINDOW {
                let id = queue.pop().unwrap_or_else(|| {
                    next_id += 1;
                    next_id - 1
                });
                match c.post(messages::Send {
                    conversation,
                    client_msg_id: id,
                    content_type: messages::content::TEXT,
                    group: String::new(),
                    body: format!("m{id}"),
                }) {
                    Ok(rid) => {
                        in_flight.insert(rid, id);
                    }
                    Err(_) => {
                        unanswered.insert(id);
                        break;
                    }
                }
            }
            match c.recv(Duration::from_millis(20)) {
                Ok(Some(m)) => {
                    if let Some(id) = in_flight.remove(&m.request_id) {
                        match m.msg {
                            Msg::Accepted(a) => {
                                if let Some(prev) = accepted.insert(id, a.seq) {
                                    assert_eq!(prev, a.seq, "message {id} accepted twice");
                                }
                            }
                            other => panic!("message {id}: {other:?}"),
                        }
                    }
                }
                Ok(None) => {}
                // The daemon is gone.
                Err(_) => break,
            }
        }
        unanswered.extend(in_flight.into_values());
        assert!(
            daemon.wait(Duration::from_secs(5)).is_some(),
            "daemon did not die"
        );
    }

    let daemon = Daemon::spawn(|_| daemon_toml(&state_dir));
    let mut c = visitor(daemon.client_addr());
    let entries = transcript(&mut c, conversation);
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (1..=entries.len() as u64).collect();
    assert_eq!(seqs, want, "sequence numbers without gaps");
    let mut bodies = BTreeSet::new();
    for e in &entries {
        if e.kind == Kind::Send.as_u8() {
            assert!(bodies.insert(e.body.clone()), "{} stored twice", e.body);
        }
    }
    assert!(accepted.len() > 1, "the test sent something: {accepted:?}");
    for (id, seq) in &accepted {
        let e = entries
            .get(*seq as usize - 1)
            .unwrap_or_else(|| panic!("accepted message {id} (seq {seq}) lost"));
        assert_eq!(e.body, format!("m{id}"), "seq {seq} holds another message");
    }
    eprintln!(
        "{} accepted over {ROUNDS} kills, {} stored",
        accepted.len(),
        entries.len()
    );
}
