//! A conversation's whole life through the SDK over loopback: a visitor's first
//! `Send` opens it and queues it while no agent is online; an agent connects and both
//! get `Assigned`; 50 messages each way arrive in order with gap-free sequence
//! numbers matching the `Accepted` ones; a resend is stored and delivered once; a
//! transfer with a note reaches the next agent (the visitor never sees the note); a
//! close reaches both; the visitor rates once, and only once.

use crate::util;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::util::peer::{Peer, RawPeer, service_server, text};
use switchboard::protocol::Kind;
use switchboard::protocol::messages::{self, Msg, role};

const N: usize = 50;

#[test]
fn queue_assign_exchange_transfer_close_rate() {
    let server = service_server(|_| {});
    let addr = server.addr();

    // --- queue: nobody is online, so the first Send opens a queued conversation.
    let mut visitor = Peer::connect(addr, &util::token("vera", "visitor"), "visitor");
    let first = visitor.send_accepted(0, 1, "hello, is anyone there?");
    let conv = first.conversation;
    assert_ne!(conv, 0, "a new conversation gets a non-zero id");
    assert_eq!((first.client_msg_id, first.seq), (1, 1), "{first:?}");
    let q = visitor.queued_at(conv, 1);
    assert_eq!(q.group, "support", "the default group");

    // A resend of the opening Send (conversation 0, same id) is the same message.
    let again = visitor.send_accepted(0, 1, "hello, is anyone there?");
    assert_eq!(again, first, "the opening Send is idempotent");

    // --- assign: an agent of the group comes online and takes it.
    let mut alice = Peer::connect(addr, &util::agent_token("alice", &["support"]), "alice");
    let a_agent = alice.assigned(conv);
    let a_visitor = visitor.assigned(conv);
    assert_eq!(a_agent, a_visitor, "both sides see the same assignment");
    assert_eq!(a_agent.agent, "alice");
    assert_eq!(
        (a_agent.visitor.as_str(), a_agent.group.as_str()),
        ("vera", "support")
    );
    assert_eq!(
        a_agent.seq, 2,
        "the assignment is event 2, after the first message"
    );
    // A second connection of the agent that decodes frames itself: it sees exactly
    // what went over the wire, without the SDK's deduplication.
    let mut raw = RawPeer::connect(addr, &util::agent_token("alice", &["support"]));

    // --- exchange: 50 messages each way, interleaved, without waiting.
    for i in 0..N {
        visitor.send_with_id(conv, 100 + i as u64, &format!("v{i}"));
        alice.send_with_id(conv, 200 + i as u64, &format!("a{i}"));
    }
    let v_accepted = accepted_seqs(&mut visitor, conv, 100);
    let a_accepted = accepted_seqs(&mut alice, conv, 200);
    let to_alice = delivered(&mut alice, conv);
    let to_vera = delivered(&mut visitor, conv);
    for (side, got, prefix, accepted, sender) in [
        ("alice", &to_alice, "v", &v_accepted, "vera"),
        ("visitor", &to_vera, "a", &a_accepted, "alice"),
    ] {
        let bodies: Vec<String> = got.iter().map(|d| d.body.clone()).collect();
        let want: Vec<String> = (0..N).map(|i| format!("{prefix}{i}")).collect();
        assert_eq!(bodies, want, "{side}: messages out of order or missing");
        assert!(
            got.windows(2).all(|w| w[0].seq < w[1].seq),
            "{side}: sequence numbers not increasing"
        );
        for d in got.iter() {
            assert_eq!(d.sender, sender);
            assert_eq!(
                accepted.get(&d.client_msg_id),
                Some(&d.seq),
                "{side}: Deliver seq differs from the sender's Accepted seq: {d:?}"
            );
        }
    }
    let all: BTreeSet<u64> = v_accepted
        .values()
        .chain(a_accepted.values())
        .copied()
        .collect();
    let want: BTreeSet<u64> = (3..3 + 2 * N as u64).collect();
    assert_eq!(
        all, want,
        "100 messages take sequence numbers 3..=102, no gap, no repeat"
    );
    assert!(
        to_alice.iter().all(|d| d.sender_role == role::VISITOR)
            && to_vera.iter().all(|d| d.sender_role == role::AGENT),
        "sender roles"
    );

    // --- resend: the same client_msg_id gets the same seq and is not delivered again.
    let resent = visitor.send_accepted(conv, 110, "v10");
    assert_eq!(
        resent.seq, v_accepted[&110],
        "a resend gets the first Accepted's seq"
    );
    let next = visitor.send_accepted(conv, 999, "after the resend");
    assert_eq!(
        next.seq,
        3 + 2 * N as u64,
        "the resend took no sequence number"
    );
    assert_eq!(alice.deliver(conv).body, "after the resend");
    raw.read_until(|_, m| matches!(m, Msg::Deliver(d) if d.body == "after the resend"));
    let raw_110: Vec<u64> = raw
        .log
        .iter()
        .filter_map(|(_, m)| match m {
            Msg::Deliver(d) if d.client_msg_id == 110 => Some(d.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        raw_110,
        vec![v_accepted[&110]],
        "delivered once on the wire"
    );
    let raw_seqs: Vec<u64> = raw
        .log
        .iter()
        .filter_map(|(_, m)| match m {
            Msg::Deliver(d) => Some(d.seq),
            _ => None,
        })
        .collect();
    assert!(
        raw_seqs.windows(2).all(|w| w[0] < w[1]),
        "the agent's second connection saw seqs out of order or repeated: {raw_seqs:?}"
    );

    // --- transfer to a second agent, with a note for her only.
    let mut bob = Peer::connect(addr, &util::agent_token("bob", &["support"]), "bob");
    let note = "VIP, asked about order 42";
    let rid = alice.post(messages::Transfer {
        conversation: conv,
        to_agent: "bob".into(),
        to_group: String::new(),
        note: note.into(),
    });
    let b_assigned = bob.assigned(conv);
    assert_eq!(
        (b_assigned.agent.as_str(), b_assigned.visitor.as_str()),
        ("bob", "vera")
    );
    let handed = bob.wait_event("the transfer note", |m| match m {
        Msg::Transfer(t) if t.conversation == conv => Some(t.clone()),
        _ => None,
    });
    assert_eq!(handed.note, note);
    let v_assigned = visitor.assigned(conv);
    assert_eq!(v_assigned.agent, "bob");
    assert_eq!(v_assigned.seq, b_assigned.seq);
    assert!(
        v_assigned.seq > next.seq,
        "the transfer's assignment is a later event"
    );
    // Traffic now flows between the visitor and the new agent only.
    visitor.send_accepted(conv, 1000, "thanks bob");
    assert_eq!(bob.deliver(conv).body, "thanks bob");
    let bob_reply = bob.send_accepted(conv, 2000, "you're welcome");
    assert_eq!(visitor.deliver(conv).body, "you're welcome");
    alice.shard_barrier(conv);
    alice.expect_none(
        "more traffic after the transfer",
        Duration::ZERO,
        |m| matches!(m, Msg::Deliver(d) if d.conversation == conv && d.seq > next.seq),
    );
    alice.no_reply(rid, Duration::ZERO);

    // --- close: both sides are told.
    let rid = bob.post(messages::Close {
        conversation: conv,
        seq: 0,
        reason: "resolved".into(),
    });
    let c_bob = bob.closed(conv);
    let c_vera = visitor.closed(conv);
    assert_eq!(c_bob, c_vera);
    assert_eq!(c_bob.reason, "resolved");
    assert_eq!(c_bob.seq, bob_reply.seq + 1, "the close is the next event");
    bob.no_reply(rid, Duration::ZERO);
    let after_close = visitor.post(text(conv, 3000, "one more thing"));
    visitor.expect_error(after_close, 409);

    // --- rate: no reply; the transcript records it; a second rating is a conflict.
    let rid = visitor.post(messages::Rate {
        score: 5,
        conversation: conv,
        comment: "great".into(),
    });
    // History goes to the same shard after the Rate: once its page is here, so
    // would be any answer to the Rate.
    let page = visitor.history(conv);
    visitor.no_reply(rid, Duration::ZERO);
    let last = page.entries.last().expect("a transcript");
    assert_eq!(
        (last.kind, last.content_type, last.body.as_str()),
        (Kind::Rate.as_u8(), 5, "great"),
        "the rating is the last event: {last:?}"
    );
    let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "transcript seqs have gaps: {seqs:?}"
    );
    // The visitor never saw the transfer note, anywhere.
    assert!(
        visitor
            .logged(|m| matches!(m, Msg::Transfer(_)).then_some(()))
            .is_empty(),
        "the visitor received a Transfer"
    );
    assert!(
        page.entries.iter().all(|e| !e.body.contains(note)),
        "the note is in the visitor's transcript"
    );
    let second = visitor.post(messages::Rate {
        score: 1,
        conversation: conv,
        comment: String::new(),
    });
    visitor.expect_error(second, 409);
    visitor.ping();

    visitor.close();
    alice.close();
    bob.close();
}

/// Collects the `Accepted` of the `N` sends with ids `base..base + N`: id → seq.
fn accepted_seqs(p: &mut Peer, conv: u64, base: u64) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    while out.len() < N {
        let a = p.wait_for("Accepted", util::REPLY_TIMEOUT, |i| match &i.msg {
            Msg::Accepted(a) if a.client_msg_id >= base && a.client_msg_id < base + N as u64 => {
                Some(a.clone())
            }
            _ => None,
        });
        assert_eq!(a.conversation, conv);
        assert!(
            out.insert(a.client_msg_id, a.seq).is_none(),
            "{}: two Accepted for {}",
            p.name,
            a.client_msg_id
        );
    }
    out
}

/// Collects `N` `Deliver`s of `conv`, in arrival order.
fn delivered(p: &mut Peer, conv: u64) -> Vec<messages::Deliver> {
    (0..N).map(|_| p.deliver(conv)).collect()
}

/// A visitor who goes away while its conversation waits abandons it after
/// `routing.visitor_grace`: it leaves the queue (the group's staff are told position
/// 0), an agent who comes later is not given it, and its transcript ends with a
/// `Close` by the server, reason `abandoned`.
#[test]
fn a_waiting_conversation_whose_visitor_left_is_abandoned() {
    let server = service_server(|c| c.routing.visitor_grace = Duration::from_millis(200));
    let addr = server.addr();
    // Bob is online (so Vera's message is no offline message) but takes nothing.
    let mut full = Peer::connect(addr, &full_agent("bob"), "bob");
    full.router_barrier();
    let mut vera = Peer::connect(addr, &util::token("vera", "visitor"), "vera");
    let rid = vera.post(messages::Send {
        group: "sales".into(),
        ..text(0, 1, "hello?")
    });
    let conv = vera.reply_to(rid, |m| match m {
        Msg::Accepted(a) => Some(a.conversation),
        _ => None,
    });
    assert_eq!(full.queued_at(conv, 1).position, 1);
    vera.close();
    // The group's staff hear that it left the queue.
    assert_eq!(full.queued_at(conv, 0).position, 0);
    // Carol, online now with room, is not given it; Vera, back, reads how it ended.
    let mut carol = Peer::connect(addr, &util::agent_token("carol", &["sales"]), "carol");
    carol.router_barrier();
    assert!(
        carol
            .logged(|m| matches!(m, Msg::Assigned(_)).then_some(()))
            .is_empty()
    );
    let mut vera = Peer::connect(addr, &util::token("vera", "visitor"), "vera");
    let page = vera.history(conv);
    let last = page.entries.last().unwrap();
    assert_eq!(
        (
            last.kind,
            last.sender_role,
            last.sender.as_str(),
            last.body.as_str()
        ),
        (Kind::Close.as_u8(), role::SYSTEM, "", "abandoned")
    );
    let sales = server.metrics().router.by_group.group("sales");
    assert_eq!((sales.opened.get(), sales.abandoned.get()), (1, 1));
    // A new message opens a new conversation.
    let rid = vera.post(messages::Send {
        group: "sales".into(),
        ..text(0, 2, "hello again")
    });
    let again = vera.reply_to(rid, |m| match m {
        Msg::Accepted(a) => Some(a.conversation),
        _ => None,
    });
    assert_ne!(again, conv);
}

/// An agent token in `sales` with capacity 0: online, but never given a conversation.
fn full_agent(sub: &str) -> String {
    util::token_with(
        sub,
        "agent",
        &util::TokenClaims {
            groups: &["sales"],
            max_concurrent: Some(0),
            ..util::TokenClaims::default()
        },
    )
}

/// A visitor who writes while nobody of the group is online leaves an offline
/// message (flag `OFFLINE`): its conversation is not abandoned when it goes away, and
/// the first agent online gets it. One who writes while an agent is online (if busy)
/// abandons as before.
#[test]
fn an_offline_message_waits_for_an_agent() {
    let server = service_server(|c| c.routing.visitor_grace = Duration::from_millis(200));
    let addr = server.addr();
    let mut bob = Peer::connect(addr, &util::agent_token("bob", &["sales"]), "bob");
    bob.post(messages::Presence {
        status: messages::presence::AWAY,
        user: String::new(),
    });
    bob.router_barrier();
    let open = |who: &str, body: &str| {
        let mut p = Peer::connect(addr, &util::token(who, "visitor"), who);
        let rid = p.post(messages::Send {
            group: "sales".into(),
            ..text(0, 1, body)
        });
        let conv = p.reply_to(rid, |m| match m {
            Msg::Accepted(a) => Some(a.conversation),
            _ => None,
        });
        p.close();
        conv
    };
    let offline = open("vera", "please call me back");
    // Carol comes online but takes nothing: Walt's message is no offline message.
    let mut carol = Peer::connect(addr, &full_agent("carol"), "carol");
    carol.router_barrier();
    let walt = open("walt", "hello?");
    // Walt's conversation is abandoned; Vera's grace ran out before his.
    assert_eq!(carol.queued_at(walt, 0).position, 0);
    carol.router_barrier();
    bob.post(messages::Presence {
        status: messages::presence::ONLINE,
        user: String::new(),
    });
    assert_eq!(bob.assigned(offline).conversation, offline);
    let flags: Vec<(String, u8)> = bob
        .history(offline)
        .entries
        .into_iter()
        .filter(|e| e.kind == Kind::Send.as_u8())
        .map(|e| (e.body, e.flags))
        .collect();
    assert_eq!(
        flags,
        vec![("please call me back".into(), messages::flags::OFFLINE)]
    );
    let mut admin = Peer::connect(addr, &util::token("root", "admin"), "root");
    let walt_end = admin.history(walt).entries;
    assert_eq!(walt_end[0].flags, 0, "Carol was online");
    assert_eq!(walt_end.last().unwrap().body, "abandoned");
    let sales = server.metrics().router.by_group.group("sales");
    assert_eq!((sales.opened.get(), sales.abandoned.get()), (2, 1));
}

/// With `routing.inactivity_close`, an open conversation in which nothing happens for
/// that long is closed by the server: both sides get `Close`, reason `inactive`.
#[test]
fn an_idle_conversation_is_closed_as_inactive() {
    let server = service_server(|c| c.routing.inactivity_close = Duration::from_millis(300));
    let addr = server.addr();
    let mut alice = Peer::connect(addr, &util::agent_token("alice", &["support"]), "alice");
    let mut vera = Peer::connect(addr, &util::token("vera", "visitor"), "vera");
    let conv = vera.send_accepted(0, 1, "hi").conversation;
    alice.assigned(conv);
    let to_alice = alice.closed(conv);
    let to_vera = vera.closed(conv);
    assert_eq!(
        (to_alice.reason.as_str(), to_vera.seq),
        ("inactive", to_alice.seq)
    );
    let support = server.metrics().router.by_group.group("support");
    assert_eq!(support.inactive.get(), 1);
    let rid = vera.post(text(conv, 2, "too late"));
    vera.expect_error(rid, 409);
}

/// Idempotency keys of consecutive ids are kept as runs (one byte per message, a mark
/// every 256): a resend far back in a long run, past the in-memory tail and across
/// marks, still gets its first `Accepted` (same `seq`, same `time_ms`), and the
/// other side's messages in between (distances of 2) are counted right.
#[test]
fn resends_far_back_in_a_long_numbered_run_get_their_first_accepted() {
    let server = service_server(|_| {});
    let addr = server.addr();
    let mut visitor = Peer::connect(addr, &util::token("rita", "visitor"), "visitor");
    let conv = visitor.send_accepted(0, 1, "hello").conversation;
    let mut alice = Peer::connect(addr, &util::agent_token("alice", &["support"]), "alice");
    alice.assigned(conv);
    let mut first = BTreeMap::new();
    for i in 0..600u64 {
        let id = 5_000 + i;
        first.insert(id, alice.send_accepted(conv, id, &format!("a{i}")));
        if i % 3 == 0 {
            // The visitor between two of them: the agent's next seq is 2 further.
            visitor.send_accepted(conv, 2 + i, &format!("v{i}"));
        }
    }
    for id in [5_000, 5_001, 5_255, 5_256, 5_257, 5_512, 5_598, 5_599] {
        let again = alice.send_accepted(conv, id, "resent");
        assert_eq!(again, first[&id], "resend of {id}");
    }
    let next = alice.send_accepted(conv, 5_600, "next");
    assert_eq!(
        next.seq,
        first[&5_599].seq + 1,
        "the resends took no sequence number"
    );
}
