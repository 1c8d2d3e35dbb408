//! Routing under load through the SDK: 100 visitors and 10 agents of capacity 3 (a
//! token claim). 30 conversations are assigned, no agent above 3; 70 wait, each
//! visitor told its FIFO rank; as agents close conversations the head of the queue is
//! assigned and everyone behind it moves up.

use crate::util;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::util::peer::{Peer, service_server};
use crate::util::{TokenClaims, token_with};
use switchboard::protocol::messages::{self, Msg};

const AGENTS: usize = 10;
const VISITORS: usize = 100;
const CAPACITY: usize = 3;

/// The position in the last `Queued` a visitor received for `conv`.
fn last_position(p: &Peer, conv: u64) -> Option<u32> {
    p.logged(|m| match m {
        Msg::Queued(q) if q.conversation == conv => Some(q.position),
        _ => None,
    })
    .last()
    .copied()
}

/// The visitors behind the first `ahead` (in the order their conversations opened),
/// each with its conversation and the queue position it should have.
fn waiting_behind<'a>(
    visitors: &'a mut [Peer],
    convs: &'a [u64],
    ahead: usize,
) -> impl Iterator<Item = (&'a mut Peer, u64, u32)> {
    visitors
        .iter_mut()
        .zip(convs)
        .enumerate()
        .skip(ahead)
        .map(move |(rank, (v, conv))| (v, *conv, (rank - ahead + 1) as u32))
}

/// After a barrier, none of `peers` has been sent an `Assigned` (`what` names it).
fn none_assigned(peers: &mut [Peer], what: &str) {
    for p in peers {
        p.router_barrier();
        p.expect_none(what, Duration::ZERO, |m| matches!(m, Msg::Assigned(_)));
    }
}

#[test]
fn capacity_is_respected_and_the_queue_moves_in_fifo_order() {
    // The default capacity is 5: the claim of 3 is what limits them.
    let server = service_server(|c| c.routing.default_capacity = 5);
    let addr = server.addr();
    let mut agents: Vec<Peer> = (0..AGENTS)
        .map(|i| {
            let token = token_with(
                &format!("agent{i:02}"),
                "agent",
                &TokenClaims {
                    groups: &["support"],
                    max_concurrent: Some(CAPACITY as u32),
                    ..TokenClaims::default()
                },
            );
            Peer::connect(addr, &token, &format!("agent{i:02}"))
        })
        .collect();

    // Visitors open conversations one after the other, so the FIFO order is theirs.
    let mut visitors = Vec::with_capacity(VISITORS);
    let mut convs = Vec::with_capacity(VISITORS);
    for i in 0..VISITORS {
        let name = format!("visitor{i:03}");
        let mut v = Peer::connect(addr, &util::token(&name, "visitor"), &name);
        let a = v.send_accepted(0, 1, &format!("help {i}"));
        convs.push(a.conversation);
        visitors.push(v);
    }
    for w in convs.windows(2) {
        assert!(w[0] < w[1], "conversation ids count up: {convs:?}");
    }

    // The first 30 are assigned; the agents share them out, 3 each.
    let mut owner: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, v) in visitors.iter_mut().enumerate().take(AGENTS * CAPACITY) {
        let a = v.assigned(convs[i]);
        let agent: usize = a.agent.trim_start_matches("agent").parse().unwrap();
        owner.insert(convs[i], agent);
    }
    for v in visitors.iter().take(AGENTS * CAPACITY) {
        assert!(
            v.logged(|m| matches!(m, Msg::Queued(_)).then_some(()))
                .is_empty(),
            "{}: assigned at once, yet told a queue position",
            v.name
        );
    }
    let mut load = [0usize; AGENTS];
    for (i, agent) in agents.iter_mut().enumerate() {
        for _ in 0..CAPACITY {
            let a = agent.any_assigned();
            assert_eq!(owner.get(&a.conversation), Some(&i), "{a:?}");
            load[i] += 1;
        }
    }
    assert_eq!(load, [CAPACITY; AGENTS]);

    // The other 70 wait, each told its rank; none is assigned.
    for (v, conv, want) in waiting_behind(&mut visitors, &convs, AGENTS * CAPACITY) {
        v.queued_at(conv, want);
    }
    none_assigned(&mut agents, "a fourth conversation");
    for (v, conv, want) in waiting_behind(&mut visitors, &convs, AGENTS * CAPACITY) {
        v.router_barrier();
        v.expect_none("an assignment while queued", Duration::ZERO, |m| {
            matches!(m, Msg::Assigned(_))
        });
        assert_eq!(
            last_position(v, conv),
            Some(want),
            "{}: latest Queued position",
            v.name
        );
    }

    // Each agent closes one conversation: the head of the queue goes to it.
    for (k, agent) in agents.iter_mut().enumerate() {
        let mine = *owner.iter().find(|(_, a)| **a == k).unwrap().0;
        agent.post(messages::Close {
            conversation: mine,
            seq: 0,
            reason: "done".into(),
        });
        agent.closed(mine);
        let head = AGENTS * CAPACITY + k;
        let a = agent.any_assigned();
        assert_eq!(
            a.conversation, convs[head],
            "{}: the head of the queue is assigned next",
            agent.name
        );
        let v = &mut visitors[head];
        assert_eq!(v.assigned(convs[head]).agent, agent.name);
        owner.remove(&mine);
        owner.insert(convs[head], k);
    }

    // Everyone still waiting moved up by 10, and was told so.
    let ahead = AGENTS * CAPACITY + AGENTS;
    for (v, conv, want) in waiting_behind(&mut visitors, &convs, ahead) {
        v.queued_at(conv, want);
    }
    // Anything sent after those would be a wrong update: the router's answer to a
    // barrier comes after it.
    for (v, conv, want) in waiting_behind(&mut visitors, &convs, ahead) {
        v.router_barrier();
        v.settle(Duration::ZERO);
        assert_eq!(last_position(v, conv), Some(want), "{}", v.name);
        let positions = v.logged(|m| match m {
            Msg::Queued(q) if q.conversation == conv => Some(q.position),
            _ => None,
        });
        assert!(
            positions.windows(2).all(|w| w[0] > w[1]),
            "{}: positions only move up: {positions:?}",
            v.name
        );
    }
    // Still no agent above its capacity.
    none_assigned(&mut agents, "an assignment over capacity");
}

#[test]
fn a_visitor_leaving_the_queue_moves_those_behind_it_up() {
    let server = service_server(|_| {});
    let addr = server.addr();
    let mut waiting: Vec<(Peer, u64)> = (0..4)
        .map(|i| {
            let name = format!("visitor{i}");
            let mut v = Peer::connect(addr, &util::token(&name, "visitor"), &name);
            let conv = v.send_accepted(0, 1, "anyone?").conversation;
            v.queued_at(conv, i + 1);
            (v, conv)
        })
        .collect();
    // The second one gives up.
    let (v, conv) = &mut waiting[1];
    v.post(messages::Close {
        conversation: *conv,
        seq: 0,
        reason: "no time".into(),
    });
    v.closed(*conv);
    let (v, conv) = &mut waiting[2];
    v.queued_at(*conv, 2);
    let (v, conv) = &mut waiting[3];
    v.queued_at(*conv, 3);
    let (v, conv) = &mut waiting[0];
    v.router_barrier();
    v.expect_none(
        "a new position",
        Duration::ZERO,
        |m| matches!(m, Msg::Queued(q) if q.conversation == *conv && q.position != 1),
    );
    // An agent with room for one takes the head, then, once free, the next.
    let token = token_with(
        "alice",
        "agent",
        &TokenClaims {
            groups: &["support"],
            max_concurrent: Some(1),
            ..TokenClaims::default()
        },
    );
    let mut alice = Peer::connect(addr, &token, "alice");
    let head = waiting[0].1;
    assert_eq!(alice.any_assigned().conversation, head, "the head first");
    let (v, conv) = &mut waiting[3];
    v.queued_at(*conv, 2);
    alice.post(messages::Close {
        conversation: head,
        seq: 0,
        reason: "done".into(),
    });
    alice.closed(head);
    assert_eq!(
        alice.any_assigned().conversation,
        waiting[2].1,
        "then the next"
    );
    let (v, conv) = &mut waiting[3];
    v.queued_at(*conv, 1);
    alice.router_barrier();
    alice.expect_none("more than its capacity", Duration::ZERO, |m| {
        matches!(m, Msg::Assigned(_))
    });
}
