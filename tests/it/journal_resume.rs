//! Resume after a reconnect (PROTOCOL.md section 10): a client that drops mid-
//! conversation and comes back with its cursor gets exactly the events it missed, as
//! replays, then live traffic with no gap; too large a gap, or a cursor of somebody
//! else's conversation, is answered `recovered = false` and replays nothing.

use crate::util;

use crate::util::peer::{Peer, RawPeer, service_server};
use switchboard::protocol::messages::{self, Cursor, Msg, flags};

/// A visitor and an agent in an assigned conversation; the agent has sent `n`
/// messages the visitor received. Returns (agent, visitor, conversation, last seq).
fn conversation(addr: std::net::SocketAddr, n: u64) -> (Peer, Peer, u64, u64) {
    let mut alice = Peer::connect(addr, &util::agent_token("alice", &["support"]), "alice");
    let mut vera = Peer::connect(addr, &util::token("vera", "visitor"), "vera");
    let conv = vera.send_accepted(0, 1, "hello").conversation;
    alice.assigned(conv);
    let mut last = vera.assigned(conv).seq;
    for i in 0..n {
        alice.send_accepted(conv, 100 + i, &format!("a{i}"));
        last = vera.deliver(conv).seq;
    }
    (alice, vera, conv, last)
}

#[test]
fn a_reconnecting_visitor_gets_exactly_what_it_missed_then_live_traffic() {
    let server = service_server(|_| {});
    let addr = server.addr();
    let (mut alice, vera, conv, seen) = conversation(addr, 3);
    vera.close();
    let mut missed = Vec::new();
    for i in 3..7 {
        missed.push(alice.send_accepted(conv, 100 + i, &format!("a{i}")).seq);
    }

    let cursor = Cursor {
        conversation: conv,
        last_seq: seen,
    };
    let (mut raw, welcome) =
        RawPeer::connect_resuming(addr, &util::token("vera", "visitor"), vec![cursor]);
    assert_eq!(
        welcome.resumed,
        vec![messages::Resumed {
            conversation: conv,
            from_seq: seen,
            recovered: true
        }]
    );
    raw.sync(50);
    let replayed = raw.delivers(conv);
    let seqs: Vec<u64> = replayed.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, missed, "exactly the missed events, in order");
    for (d, i) in replayed.iter().zip(3..) {
        assert_eq!(d.body, format!("a{i}"));
        assert_eq!(d.sender, "alice");
        assert_eq!(d.client_msg_id, 100 + i);
        assert_ne!(d.flags & flags::REPLAY, 0, "replays carry REPLAY: {d:?}");
    }

    // Live traffic follows the replay with no gap and no REPLAY flag.
    let next = alice.send_accepted(conv, 200, "live").seq;
    assert_eq!(next, missed.last().unwrap() + 1);
    raw.read_until(|_, m| matches!(m, Msg::Deliver(d) if d.seq == next));
    let all = raw.delivers(conv);
    let live = all.last().unwrap();
    assert_eq!(
        (live.body.as_str(), live.flags & flags::REPLAY),
        ("live", 0)
    );
    let seqs: Vec<u64> = all.iter().map(|d| d.seq).collect();
    let want: Vec<u64> = (seen + 1..=next).collect();
    assert_eq!(seqs, want, "no gap and no duplicate around the replay");
}

#[test]
fn events_between_the_replay_and_going_live_are_not_lost() {
    let server = service_server(|_| {});
    let addr = server.addr();
    let (mut alice, vera, conv, seen) = conversation(addr, 1);
    vera.close();
    // The agent keeps sending while the visitor reconnects; every message must reach
    // it exactly once, whether by replay, by catch-up or live.
    let sender = std::thread::spawn(move || {
        let mut seqs = Vec::new();
        for i in 0..200u64 {
            alice.send_with_id(conv, 1_000 + i, &format!("burst{i}"));
            if i % 20 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        for i in 0..200u64 {
            let a = alice.wait_for("Accepted", util::REPLY_TIMEOUT, |m| match &m.msg {
                Msg::Accepted(a) if a.client_msg_id == 1_000 + i => Some(a.seq),
                _ => None,
            });
            seqs.push(a);
        }
        seqs
    });
    let cursor = Cursor {
        conversation: conv,
        last_seq: seen,
    };
    let (mut raw, welcome) =
        RawPeer::connect_resuming(addr, &util::token("vera", "visitor"), vec![cursor]);
    assert!(welcome.resumed[0].recovered, "{welcome:?}");
    let accepted = sender.join().unwrap();
    let last = *accepted.last().unwrap();
    raw.read_until(|_, m| matches!(m, Msg::Deliver(d) if d.seq == last));
    let seqs: Vec<u64> = raw.delivers(conv).iter().map(|d| d.seq).collect();
    let want: Vec<u64> = (seen + 1..=last).collect();
    assert_eq!(
        seqs, want,
        "every event after the cursor exactly once, in order"
    );
}

#[test]
fn too_large_a_gap_or_a_foreign_cursor_is_not_recovered() {
    let server = service_server(|c| c.journal.max_replay = 2);
    let addr = server.addr();
    let (mut alice, vera, conv, seen) = conversation(addr, 1);
    vera.close();
    for i in 0..3 {
        alice.send_accepted(conv, 500 + i, "x");
    }
    let cursors = vec![
        Cursor {
            conversation: conv,
            last_seq: seen,
        },
        // Somebody else's view of the same conversation: an unrelated visitor.
        Cursor {
            conversation: conv,
            last_seq: 0,
        },
    ];
    let (mut raw, welcome) =
        RawPeer::connect_resuming(addr, &util::token("vera", "visitor"), cursors.clone());
    assert_eq!(
        welcome
            .resumed
            .iter()
            .map(|r| r.recovered)
            .collect::<Vec<_>>(),
        vec![false, false],
        "3 and 6 missed events exceed max_replay = 2"
    );
    raw.sync(60);
    assert!(raw.delivers(conv).is_empty(), "nothing replayed");

    let (mut mallory, welcome) =
        RawPeer::connect_resuming(addr, &util::token("mallory", "visitor"), cursors);
    assert!(welcome.resumed.iter().all(|r| !r.recovered), "{welcome:?}");
    mallory.sync(61);
    assert!(
        mallory.delivers(conv).is_empty(),
        "nothing of a foreign conversation"
    );
}
