//! Presence and connections through the SDK: an agent that drops keeps its
//! conversations for `routing.agent_grace`, after which they go to another online
//! agent; one that reconnects within the grace keeps them; an agent that says it is
//! away takes nothing new; users with several connections get every event on each.

use crate::util;

use std::time::{Duration, Instant};

use crate::util::peer::{Peer, service_server};
use switchboard::protocol::messages::{self, Msg, presence};

const GRACE: Duration = Duration::from_millis(500);

fn support_agent(addr: std::net::SocketAddr, sub: &str) -> Peer {
    Peer::connect(addr, &util::agent_token(sub, &["support"]), sub)
}

fn visitor(addr: std::net::SocketAddr, sub: &str) -> Peer {
    Peer::connect(addr, &util::token(sub, "visitor"), sub)
}

/// `p` says it is `status` (a `presence::` code); the request id.
fn set_presence(p: &mut Peer, status: u8) -> u32 {
    p.post(messages::Presence {
        status,
        user: String::new(),
    })
}

/// Each of `peers` is delivered the message `body` at `seq` in `conv`; what each got,
/// by peer name.
fn each_gets(
    peers: &mut [&mut Peer],
    conv: u64,
    body: &str,
    seq: u64,
) -> Vec<(String, messages::Deliver)> {
    peers
        .iter_mut()
        .map(|p| {
            let d = p.deliver(conv);
            assert_eq!((d.body.as_str(), d.seq), (body, seq), "{}", p.name);
            (p.name.clone(), d)
        })
        .collect()
}

/// Alice (support) is away; Vera's new conversation waits at position 1.
fn away_alice_and_waiting_vera(addr: std::net::SocketAddr) -> (Peer, Peer, u64) {
    let mut alice = support_agent(addr, "alice");
    set_presence(&mut alice, presence::AWAY);
    alice.router_barrier();
    let mut vera = visitor(addr, "vera");
    let conv = vera.send_accepted(0, 1, "hi").conversation;
    vera.queued_at(conv, 1);
    (alice, vera, conv)
}

fn is_assigned(m: &Msg) -> bool {
    matches!(m, Msg::Assigned(_))
}

/// Alice serves Vera's new conversation; Bob (same group) is online and free.
fn alice_serves_vera(addr: std::net::SocketAddr) -> (Peer, Peer, Peer, u64) {
    let mut alice = support_agent(addr, "alice");
    let mut vera = visitor(addr, "vera");
    let conv = vera.send_accepted(0, 1, "hi").conversation;
    assert_eq!(alice.assigned(conv).agent, "alice");
    vera.assigned(conv);
    let bob = support_agent(addr, "bob");
    (alice, vera, bob, conv)
}

#[test]
fn a_dropped_agents_conversation_moves_on_only_after_the_grace() {
    let server = service_server(|c| c.routing.agent_grace = GRACE);
    let (alice, mut vera, mut bob, conv) = alice_serves_vera(server.addr());

    let gone = Instant::now();
    alice.close();
    // During the grace the conversation stays Alice's: Vera can still post to it,
    // and Bob hears nothing of it.
    vera.send_accepted(conv, 2, "are you still there?");
    // Whatever the router sent Bob is here after a barrier; if the grace has not
    // ended yet (a starved machine may take longer), none of it is about the
    // conversation.
    bob.router_barrier();
    if gone.elapsed() < GRACE {
        let early = bob.logged(|m| (is_assigned(m) || matches!(m, Msg::Deliver(_))).then_some(()));
        assert!(
            early.is_empty(),
            "Bob heard of the conversation within the grace"
        );
    }

    // After it, Bob gets it, and both sides are told; never before the grace (no
    // upper bound: how late is the machine's business).
    let to_bob = bob.assigned(conv);
    let waited = gone.elapsed();
    assert!(
        waited >= GRACE,
        "reassigned after {waited:?}, before the {GRACE:?} grace"
    );
    assert_eq!(to_bob.agent, "bob");
    let to_vera = vera.assigned(conv);
    assert_eq!(to_vera, to_bob);
    // And the conversation works with Bob.
    bob.send_accepted(conv, 1, "Bob here, how can I help?");
    assert_eq!(vera.deliver(conv).body, "Bob here, how can I help?");
    vera.send_accepted(conv, 3, "thanks");
    assert_eq!(bob.deliver(conv).body, "thanks");
}

#[test]
fn an_agent_back_within_the_grace_keeps_its_conversation() {
    let server = service_server(|c| c.routing.agent_grace = GRACE);
    let addr = server.addr();
    let (alice, mut vera, mut bob, conv) = alice_serves_vera(addr);

    let gone = Instant::now();
    alice.close();
    // The server learns of the close when the socket is gone, which may be after a
    // quick reconnect; let the disconnect land first, well within the grace.
    std::thread::sleep(Duration::from_millis(100));
    let mut alice = support_agent(addr, "alice");
    // Wait well past when the grace would have ended.
    let past = (GRACE + Duration::from_millis(300)).saturating_sub(gone.elapsed());
    bob.expect_none("an assignment", past, is_assigned);
    vera.expect_none("a new assignment", Duration::ZERO, is_assigned);
    alice.expect_none("a new assignment", Duration::ZERO, is_assigned);

    // Alice's new connection is in the conversation both ways.
    vera.send_accepted(conv, 2, "still there?");
    assert_eq!(alice.deliver(conv).body, "still there?");
    alice.send_accepted(conv, 1, "yes, sorry, my network dropped");
    assert_eq!(vera.deliver(conv).body, "yes, sorry, my network dropped");
    bob.expect_none("the conversation's messages", Duration::ZERO, |m| {
        matches!(m, Msg::Deliver(_))
    });
}

#[test]
fn an_away_agent_takes_nothing_new_until_online_again() {
    let server = service_server(|_| {});
    let (mut alice, mut vera, conv) = away_alice_and_waiting_vera(server.addr());
    alice.router_barrier();
    alice.expect_none("an assignment while away", Duration::ZERO, is_assigned);

    let rid = set_presence(&mut alice, presence::ONLINE);
    assert_eq!(alice.assigned(conv).agent, "alice");
    assert_eq!(vera.assigned(conv).agent, "alice");
    alice.no_reply(rid, Duration::ZERO);
}

#[test]
fn every_connection_of_a_user_gets_the_conversation() {
    let server = service_server(|_| {});
    let addr = server.addr();
    let vera_token = util::token("vera", "visitor");
    let alice_token = util::agent_token("alice", &["support"]);
    let mut v1 = Peer::connect(addr, &vera_token, "vera#1");
    let mut v2 = Peer::connect(addr, &vera_token, "vera#2");
    let mut a1 = Peer::connect(addr, &alice_token, "alice#1");
    let mut a2 = Peer::connect(addr, &alice_token, "alice#2");

    let conv = v1.send_accepted(0, 1, "hello").conversation;
    let assigned: Vec<messages::Assigned> = [&mut v1, &mut v2, &mut a1, &mut a2]
        .into_iter()
        .map(|p| p.assigned(conv))
        .collect();
    assert!(assigned.windows(2).all(|w| w[0] == w[1]), "{assigned:?}");
    // The visitor's first message also reached her other connection.
    assert_eq!(v2.deliver(conv).body, "hello");

    // The agent's messages reach both visitor connections, and the agent's other one.
    let sent = a1.send_accepted(conv, 10, "from alice#1");
    each_gets(
        &mut [&mut v1, &mut v2, &mut a2],
        conv,
        "from alice#1",
        sent.seq,
    );
    let sent = a2.send_accepted(conv, 11, "from alice#2");
    each_gets(
        &mut [&mut v1, &mut v2, &mut a1],
        conv,
        "from alice#2",
        sent.seq,
    );
    // The visitor's messages reach both agent connections, and her other one.
    let sent = v2.send_accepted(conv, 20, "from vera#2");
    for (p, d) in each_gets(
        &mut [&mut a1, &mut a2, &mut v1],
        conv,
        "from vera#2",
        sent.seq,
    ) {
        assert_eq!(d.client_msg_id, 20, "{p}");
    }

    // A connection opened mid-conversation joins it; one that left is not missed.
    let mut v3 = Peer::connect(addr, &vera_token, "vera#3");
    v1.close();
    let sent = a1.send_accepted(conv, 12, "anyone?");
    each_gets(&mut [&mut v2, &mut v3, &mut a2], conv, "anyone?", sent.seq);
    // Closing reaches every connection.
    a2.post(messages::Close {
        conversation: conv,
        seq: 0,
        reason: "bye".into(),
    });
    for p in [&mut v2, &mut v3, &mut a1, &mut a2] {
        p.closed(conv);
    }
}

#[test]
fn every_connection_of_a_waiting_visitor_learns_its_position() {
    let server = service_server(|_| {});
    let addr = server.addr();
    let token = util::token("vera", "visitor");
    let mut v1 = Peer::connect(addr, &token, "vera#1");
    let mut v2 = Peer::connect(addr, &token, "vera#2");
    // Nobody serves "sales": it waits.
    let rid = v1.post(messages::Send {
        group: "sales".into(),
        ..util::peer::text(0, 1, "a question about prices")
    });
    let conv = v1.reply_to(rid, |m| match m {
        Msg::Accepted(a) => Some(a.conversation),
        _ => None,
    });
    assert_eq!(v1.queued_at(conv, 1).group, "sales");
    v2.queued_at(conv, 1);
    // A connection opened later is told where the conversation stands.
    let mut v3 = Peer::connect(addr, &token, "vera#3");
    v3.queued_at(conv, 1);
}

#[test]
fn after_the_grace_with_nobody_online_the_conversation_waits_at_the_head() {
    let server = service_server(|c| {
        c.routing.agent_grace = GRACE;
        c.routing.default_capacity = 1;
    });
    let addr = server.addr();
    let mut alice = support_agent(addr, "alice");
    let mut vera = visitor(addr, "vera");
    let first = vera.send_accepted(0, 1, "hi").conversation;
    alice.assigned(first);
    vera.assigned(first);
    // Alice is full (capacity 1 by default here): Walt waits behind.
    let mut walt = visitor(addr, "walt");
    let second = walt.send_accepted(0, 1, "hello").conversation;
    walt.queued_at(second, 1);

    alice.close();
    // Vera's conversation, older than Walt's, goes back to the head of the queue.
    vera.queued_at(first, 1);
    walt.queued_at(second, 2);
    // When an agent comes, the head is served first.
    let mut bob = support_agent(addr, "bob");
    assert_eq!(bob.assigned(first).agent, "bob");
    assert_eq!(vera.assigned(first).agent, "bob");
    walt.queued_at(second, 1);
    walt.router_barrier();
    walt.expect_none("an assignment", Duration::ZERO, is_assigned);
}

#[test]
fn an_away_agent_can_still_claim_a_waiting_conversation() {
    let server = service_server(|_| {});
    let (mut alice, mut vera, conv) = away_alice_and_waiting_vera(server.addr());
    // The group's agents are told what waits, and may read it before claiming.
    alice.queued_at(conv, 1);
    let page = alice.history(conv);
    assert_eq!(page.entries.first().map(|e| e.body.as_str()), Some("hi"));
    let rid = alice.post(messages::Claim { conversation: conv });
    assert_eq!(alice.assigned(conv).agent, "alice");
    assert_eq!(vera.assigned(conv).agent, "alice");
    alice.no_reply(rid, Duration::ZERO);
    // Claimed once is claimed: a second claim is a conflict.
    let rid = alice.post(messages::Claim { conversation: conv });
    alice.expect_error(rid, 409);
}

/// Every event of a conversation reaches its participants in order, also when an
/// agent's grace runs out; the requeue is a transcript event of its own (PROTOCOL.md
/// sections 10.1 and 13.9) which travels live only as `Queued` positions, so the live
/// numbers skip exactly its `seq`, and `History` shows it there.
#[test]
fn live_events_skip_only_the_requeue_which_history_shows() {
    let server = service_server(|c| c.routing.agent_grace = Duration::from_millis(100));
    let (alice, mut vera, mut bob, conv) = alice_serves_vera(server.addr());
    let sent = vera.send_accepted(conv, 2, "are you still there?");
    assert_eq!(sent.seq, 3);
    alice.close();
    let to_bob = bob.assigned(conv);
    let to_vera = vera.assigned(conv);
    assert_eq!(to_vera.seq, to_bob.seq);
    // Vera saw events 1 (her Accepted), 2 (Alice assigned), 3 (her Accepted); 4 is
    // the requeue when Alice's grace ran out, 5 Bob's assignment.
    assert_eq!(to_vera.seq, sent.seq + 2);
    let events: Vec<(u64, u8, String)> = vera
        .history(conv)
        .entries
        .iter()
        .map(|e| (e.seq, e.kind, e.body.clone()))
        .collect();
    assert_eq!(
        events.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(),
        vec![(1, 16), (2, 33), (3, 16), (4, 32), (5, 33)]
    );
    assert_eq!(events[3].2, "support", "a requeue's body is its group");
}
