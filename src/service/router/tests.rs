//! Router unit tests: deterministic, no threads; frames are decoded back to messages.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::*;
use crate::handoff::{Command, ConnId};
use crate::protocol::ErrorCode;
use crate::protocol::messages::{self, MAX_WATCHED, Msg, Queued, presence, role};
use crate::service::{
    Assignment, Effect, Principal, RouterMsg, Sender, ShardControl, ShardMsg, UserRef,
};

const GRACE: u64 = 30_000;
const VISITOR_GRACE: u64 = 60_000;

fn settings() -> RouterSettings {
    RouterSettings {
        default_group: "general".into(),
        default_capacity: 3,
        bot_capacity: 10,
        agent_grace_ms: GRACE,
        visitor_grace_ms: VISITOR_GRACE,
    }
}

fn conn(slot: u32) -> ConnId {
    ConnId {
        reactor: (slot % 3) as u16,
        slot,
        generation: 1,
    }
}

fn who(tenant: &str, user: &str) -> UserRef {
    UserRef {
        tenant: tenant.into(),
        user: user.into(),
    }
}

fn groups(gs: &[&str]) -> Vec<String> {
    gs.iter().map(|g| (*g).to_owned()).collect()
}

/// A session's principal as `RouterMsg::Connected` carries it.
fn principal(tenant: &str, user: &str, name: &str, role: u8, gs: &[&str]) -> Arc<Principal> {
    Arc::new(Principal {
        who: who(tenant, user),
        name: name.into(),
        role,
        groups: groups(gs).into(),
        addr: None,
    })
}

fn sender(tenant: &str, user: &str, role: u8, gs: &[&str], c: ConnId) -> Sender {
    Sender {
        id: Arc::new(Principal {
            who: who(tenant, user),
            name: format!("{user} name").into(),
            role,
            groups: groups(gs).into(),
            addr: None,
        }),
        conn: c,
        rid: 7,
    }
}

/// A test bench: the router, a clock and the effects of the last step.
struct Bench {
    r: Router,
    now: u64,
    /// `Availability` frames of the last step, per connection (kept apart from the
    /// step's effects so tests about routing see only routing).
    told: Vec<(ConnId, messages::GroupAvailability)>,
    /// `ShardControl::GroupOnline` of the last step, as (tenant, group, online).
    shards_told: Vec<(String, String, bool)>,
}

impl Bench {
    fn new() -> Self {
        Bench {
            r: Router::new(settings()),
            now: 1_000,
            told: Vec::new(),
            shards_told: Vec::new(),
        }
    }

    /// Applies `msg`; an `Open` it makes is stored by its shard at once (the shard's
    /// `Opened` is handled too, and its effects follow).
    fn handle(&mut self, msg: RouterMsg) -> Vec<Effect> {
        let mut out = Vec::new();
        self.r.handle(msg, Mono::from_ms(self.now), &mut out);
        check_invariants(&self.r);
        if let Some(conversation) = opened(&out) {
            self.r.handle(
                RouterMsg::Opened { conversation },
                Mono::from_ms(self.now),
                &mut out,
            );
            check_invariants(&self.r);
        }
        self.split_availability(out)
    }

    fn tick(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        self.r.tick(Mono::from_ms(self.now), &mut out);
        check_invariants(&self.r);
        self.split_availability(out)
    }

    /// Moves the `Availability` frames of `out` to `self.told`, and what the shards
    /// are told of groups going online or offline to `self.shards_told`.
    fn split_availability(&mut self, out: Vec<Effect>) -> Vec<Effect> {
        self.told.clear();
        self.shards_told.clear();
        let mut rest = Vec::with_capacity(out.len());
        for e in out {
            if let Effect::AllShards(ShardControl::GroupOnline {
                tenant,
                group,
                online,
            }) = e
            {
                self.shards_told.push((tenant, group, online));
                continue;
            }
            let told = frames(std::slice::from_ref(&e))
                .into_iter()
                .filter_map(|(c, rid, m)| match m {
                    Msg::Availability(a) => {
                        assert_eq!(rid, 0);
                        Some((c, a))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>();
            if told.is_empty() {
                rest.push(e);
            }
            for (c, a) in told {
                self.told.extend(a.groups.into_iter().map(|g| (c, g)));
            }
        }
        rest
    }

    /// What `c` was told in the last step, as (group, online, wait).
    fn told_to(&self, c: ConnId) -> Vec<(String, bool, u64)> {
        self.told
            .iter()
            .filter(|(to, _)| *to == c)
            .map(|(_, g)| (g.group.clone(), g.online, g.estimated_wait_ms))
            .collect()
    }

    fn connect(
        &mut self,
        c: ConnId,
        tenant: &str,
        user: &str,
        role: u8,
        gs: &[&str],
        capacity: Option<u32>,
    ) -> Vec<Effect> {
        self.handle(RouterMsg::Connected {
            conn: c,
            principal: principal(tenant, user, &format!("{user} name"), role, gs),
            capacity,
        })
    }

    fn agent(&mut self, c: ConnId, tenant: &str, user: &str, gs: &[&str], cap: u32) -> Vec<Effect> {
        self.connect(c, tenant, user, role::AGENT, gs, Some(cap))
    }

    fn visitor(&mut self, c: ConnId, tenant: &str, user: &str) -> Vec<Effect> {
        self.connect(c, tenant, user, role::VISITOR, &[], None)
    }

    /// The visitor `user` (connected on `c`) sends its first message to `group`.
    fn open(&mut self, c: ConnId, tenant: &str, user: &str, group: &str) -> Vec<Effect> {
        self.handle(RouterMsg::Open {
            from: sender(tenant, user, role::VISITOR, &[], c),
            send: messages::Send {
                content_type: messages::content::TEXT,
                conversation: 0,
                client_msg_id: 1,
                group: group.into(),
                body: "hello".into(),
            },
        })
    }

    /// The visitor `user` connects on `c` and opens a conversation in `group`: its id.
    fn visitor_opens(&mut self, c: ConnId, tenant: &str, user: &str, group: &str) -> u64 {
        self.visitor(c, tenant, user);
        opened(&self.open(c, tenant, user, group)).expect("the open makes a conversation")
    }

    fn close(&mut self, id: u64) -> Vec<Effect> {
        self.handle(RouterMsg::Closed { conversation: id })
    }

    fn presence(&mut self, from: Sender, status: u8) -> Vec<Effect> {
        self.handle(RouterMsg::Presence { from, status })
    }

    /// The agent `user` (in `gs`) sets its presence on `c`.
    fn agent_presence(
        &mut self,
        c: ConnId,
        tenant: &str,
        user: &str,
        gs: &[&str],
        status: u8,
    ) -> Vec<Effect> {
        self.presence(sender(tenant, user, role::AGENT, gs, c), status)
    }

    /// `from` hands `conversation` (in `group`) on to `to_agent` or `to_group`
    /// (empty: not named), with `note`.
    fn transfer(
        &mut self,
        conversation: u64,
        group: &str,
        from: UserRef,
        to_agent: &str,
        to_group: &str,
        note: &str,
    ) -> Vec<Effect> {
        self.handle(RouterMsg::Transfer {
            conversation,
            group: group.into(),
            from,
            to_agent: to_agent.into(),
            to_group: to_group.into(),
            note: note.into(),
        })
    }
}

/// The common start: agent `a` (conn 1, `capacity`) serves `group`, and visitor `v`
/// (conn 10) has opened a conversation there. Returns the bench, `v`'s connection
/// and the conversation.
fn agent_a_serves_visitor_v(group: &str, capacity: u32) -> (Bench, ConnId, u64) {
    let mut b = Bench::new();
    b.agent(conn(1), "t", "a", &[group], capacity);
    let v = conn(10);
    let id = b.visitor_opens(v, "t", "v", group);
    (b, v, id)
}

/// Every frame in `out`, per target connection: (conn, request id, message).
fn frames(out: &[Effect]) -> Vec<(ConnId, u32, Msg)> {
    let mut all = Vec::new();
    let mut push = |conns: &[ConnId], bytes: &bytes::Bytes| {
        let d = crate::frame::decode(bytes, crate::frame::MAX_PAYLOAD_LIMIT)
            .unwrap()
            .unwrap();
        assert_eq!(d.consumed, bytes.len());
        let msg = Msg::decode(d.header.kind, d.payload).unwrap();
        for c in conns {
            all.push((*c, d.header.request_id, msg.clone()));
        }
    };
    for e in out {
        match e {
            Effect::Reactor(Command::Send { conn, frame }) => push(&[*conn], frame),
            Effect::Broadcast(conns, frame) => push(conns, frame),
            Effect::Reactor(..) => panic!("unexpected command {e:?}"),
            Effect::Router(_)
            | Effect::Shard(_)
            | Effect::AllShards(_)
            | Effect::Session(..)
            | Effect::Files(_) => {}
        }
    }
    all
}

/// `Queued` frames sent to `c`.
fn queued_to(out: &[Effect], c: ConnId) -> Vec<Queued> {
    frames(out)
        .into_iter()
        .filter(|(to, _, _)| *to == c)
        .filter_map(|(_, rid, m)| match m {
            Msg::Queued(q) => {
                assert_eq!(rid, 0);
                Some(q)
            }
            _ => None,
        })
        .collect()
}

/// The queue positions told to `c`, in order.
fn positions_told(out: &[Effect], c: ConnId) -> Vec<u32> {
    queued_to(out, c).iter().map(|q| q.position).collect()
}

/// Error codes sent in `out`, with their request ids.
fn errors(out: &[Effect]) -> Vec<(u16, u32)> {
    frames(out)
        .into_iter()
        .filter_map(|(_, rid, m)| match m {
            Msg::Error(e) => Some((e.code, rid)),
            _ => None,
        })
        .collect()
}

/// (conversation, agent user id, note) of every `Assign` in `out`.
fn assigns(out: &[Effect]) -> Vec<(u64, String, String)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Shard(ShardMsg::Assign(Assignment {
                conversation,
                agent,
                note,
                ..
            })) => Some((*conversation, agent.user.clone(), note.clone())),
            _ => None,
        })
        .collect()
}

/// (conversation, group) of every `Requeued` in `out`.
fn requeued(out: &[Effect]) -> Vec<(u64, String)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Shard(ShardMsg::Requeued {
                conversation,
                group,
            }) => Some((*conversation, group.clone())),
            _ => None,
        })
        .collect()
}

/// The id of the conversation an `Open` in `out` created.
fn opened(out: &[Effect]) -> Option<u64> {
    out.iter().find_map(|e| match e {
        Effect::Shard(ShardMsg::Open(o)) => Some(o.conversation),
        _ => None,
    })
}

/// The router's structural invariants (module docs).
fn check_invariants(r: &Router) {
    let mut in_queues: BTreeMap<u64, usize> = BTreeMap::new();
    for (tname, t) in &r.tenants {
        for (gname, g) in &t.groups {
            for id in &g.queue {
                *in_queues.entry(*id).or_default() += 1;
                let conv = r.convs.get(id).expect("queued conversation exists");
                assert_eq!(&conv.tenant, tname, "queue of another tenant");
                assert_eq!(&conv.group, gname, "conversation {id} in a foreign queue");
                assert!(
                    conv.agent.is_none(),
                    "queued conversation {id} has an agent"
                );
            }
            // Nobody who could take the head idles while the queue waits.
            if !g.queue.is_empty() {
                for uid in &g.members {
                    let u = &t.users[uid.as_str()];
                    assert!(!u.available(), "{uid} idles while {gname} has a queue");
                }
            }
            for uid in &g.members {
                let u = t.users.get(uid.as_str()).expect("member exists");
                assert!(u.is_staff() && u.groups.contains(gname));
            }
            // Watchers know what is true now (the step told them of any change).
            let watching = t
                .users
                .values()
                .filter(|u| u.watching.contains(gname))
                .count();
            assert_eq!(
                g.watchers as usize, watching,
                "{gname}: watchers miscounted"
            );
            for uid in &g.listeners {
                let u = t.users.get(uid.as_str()).expect("listener exists");
                assert!(u.watching.contains(gname) && !u.watch_conns.is_empty());
            }
            if g.watchers > 0 {
                // (as of the last look: the head's wait grows with time alone).
                assert_eq!(
                    g.told,
                    Some(r.current_at(t, g, g.told_at)),
                    "{gname}: watchers not told"
                );
            }
            assert!(!g.unused(), "{gname} kept for nothing");
            assert!(r.dirty.is_empty());
        }
        for (uid, u) in &t.users {
            let uid: &str = uid;
            assert!(u.watching.len() <= MAX_WATCHED, "{uid} watches too much");
            for g in &u.watching {
                let listens = t.groups[g].listeners.contains(uid);
                assert_eq!(listens, !u.watch_conns.is_empty(), "{uid} listener of {g}");
            }
            for c in &u.watch_conns {
                assert!(u.conns.contains(c), "{uid} watches on a closed connection");
            }
            assert!(
                u.assigned.len() <= u.capacity as usize,
                "{uid} over capacity"
            );
            for id in &u.assigned {
                let conv = r.convs.get(id).expect("assigned conversation exists");
                assert_eq!(conv.agent.as_deref(), Some(uid));
                assert_eq!(&conv.tenant, tname);
            }
            for id in &u.open {
                let conv = r.convs.get(id).expect("open conversation exists");
                assert_eq!(&conv.visitor, uid);
                assert_eq!(&conv.tenant, tname);
            }
            for c in &u.conns {
                assert_eq!(r.directory.get(c).map(|p| &p.who), Some(&who(tname, uid)));
            }
            if let Some(d) = u.grace {
                assert!(u.conns.is_empty());
                assert!(r.graces.contains(&(d, who(tname, uid))));
            }
            if let Some(d) = u.abandon_at {
                assert!(u.conns.is_empty() && !u.open.is_empty());
                assert!(r.abandons.contains(&(d, who(tname, uid))));
            }
            if u.is_staff() {
                for g in &u.groups {
                    assert!(t.groups[g].members.contains(uid));
                }
            }
            assert!(
                !u.forgettable() || u.grace.is_some() || u.abandon_at.is_some(),
                "{uid} kept for nothing"
            );
        }
    }
    for (d, w) in &r.graces {
        let u = r.user(&w.tenant, &w.user).expect("grace of a known user");
        assert_eq!(u.grace, Some(*d));
    }
    for (d, w) in &r.abandons {
        let u = r
            .user(&w.tenant, &w.user)
            .expect("abandonment of a known user");
        assert_eq!(u.abandon_at, Some(*d));
    }
    for (c, w) in &r.directory {
        let u = r
            .user(&w.who.tenant, &w.who.user)
            .expect("directory names a user");
        assert_eq!(u.conns.iter().filter(|x| *x == c).count(), 1);
    }
    for (id, conv) in &r.convs {
        let visitor = r
            .user(&conv.tenant, &conv.visitor)
            .expect("visitor is known");
        assert!(visitor.open.contains(id));
        match &conv.agent {
            None if conv.pending => assert!(!in_queues.contains_key(id), "pending {id} queued"),
            None => assert_eq!(in_queues.get(id), Some(&1), "{id} not queued once"),
            Some(a) => {
                assert_eq!(in_queues.get(id), None);
                let agent = r.user(&conv.tenant, a).expect("agent is known");
                assert!(agent.assigned.contains(id));
            }
        }
    }
}

#[test]
fn least_loaded_agent_then_longest_idle() {
    let mut b = Bench::new();
    b.agent(conn(1), "t", "alice", &["sales"], 5);
    b.now += 10;
    b.agent(conn(2), "t", "bob", &["sales"], 5);
    b.now += 10;
    b.agent(conn(3), "t", "carol", &["sales"], 5);
    let mut got = Vec::new();
    for i in 0..6 {
        let v = conn(100 + i);
        b.visitor(v, "t", &format!("v{i}"));
        let out = b.open(v, "t", &format!("v{i}"), "sales");
        got.extend(assigns(&out).into_iter().map(|(_, a, _)| a));
    }
    // Equal load: alice idled longest, then bob, then carol; then round again.
    assert_eq!(got, ["alice", "bob", "carol", "alice", "bob", "carol"]);

    // Carol finishes one: she is least loaded now.
    b.now += 10;
    b.close(3);
    let v = conn(200);
    b.visitor(v, "t", "w1");
    let out = b.open(v, "t", "w1", "sales");
    assert_eq!(assigns(&out)[0].1, "carol");

    // Bob and alice each finish one, bob first: alice has idled less, bob gets the next.
    b.now += 10;
    b.close(2); // bob
    b.now += 10;
    b.close(1); // alice
    let v = conn(201);
    b.visitor(v, "t", "w2");
    let out = b.open(v, "t", "w2", "sales");
    assert_eq!(assigns(&out)[0].1, "bob");
    assert_eq!(b.r.active_count(&who("t", "bob")), 2);
    assert_eq!(b.r.active_count(&who("t", "alice")), 1);
    assert_eq!(b.r.online_agents(), 3);
}

#[test]
fn open_emits_open_with_its_message_and_reuses_the_group_conversation() {
    let mut b = Bench::new();
    let v = conn(1);
    b.visitor(v, "t", "v");
    let out = b.open(v, "t", "v", "");
    let id = opened(&out).unwrap();
    assert_eq!(id, 1);
    match &out[..1] {
        [Effect::Shard(ShardMsg::Open(o))] => {
            assert_eq!(o.group, "general");
            assert_eq!(o.visitor_conns, &[v]);
            assert_eq!(o.visitor, who("t", "v"));
            assert_eq!(o.send.conversation, 1);
        }
        other => panic!("{other:?}"),
    }
    // Nobody serves "general": queued, told position 1.
    assert_eq!(positions_told(&out, v), [1]);
    assert_eq!(b.r.queue_len("t", "general"), 1);

    // The same group again: forwarded to conversation 1, nothing new.
    let out = b.open(v, "t", "v", "general");
    assert!(opened(&out).is_none());
    match &out[..] {
        [
            Effect::Shard(ShardMsg::Request {
                msg: Msg::Send(s), ..
            }),
        ] => {
            assert_eq!(s.conversation, 1)
        }
        other => panic!("{other:?}"),
    }
    // Another group: a second conversation.
    let out = b.open(v, "t", "v", "billing");
    assert_eq!(opened(&out), Some(2));

    // The visitor's token group is the default for it.
    let out = b.handle(RouterMsg::Open {
        from: sender("t", "v", role::VISITOR, &["vip"], v),
        send: messages::Send {
            body: "x".into(),
            ..Default::default()
        },
    });
    assert_eq!(opened(&out), Some(3));
    assert_eq!(b.r.queue_len("t", "vip"), 1);

    // Agents may not open.
    let out = b.handle(RouterMsg::Open {
        from: sender("t", "a", role::AGENT, &["vip"], conn(9)),
        send: messages::Send::default(),
    });
    assert_eq!(errors(&out), [(403, 7)]);
}

#[test]
fn visitors_are_bounded_in_open_conversations() {
    let mut b = Bench::new();
    let v = conn(1);
    b.visitor(v, "t", "v");
    for i in 0..MAX_OPEN_PER_VISITOR {
        assert!(opened(&b.open(v, "t", "v", &format!("g{i}"))).is_some());
    }
    let out = b.open(v, "t", "v", "one-more");
    assert_eq!(errors(&out), [(ErrorCode::RateLimited.as_u16(), 7)]);
    // An existing group still works.
    assert!(!b.open(v, "t", "v", "g0").is_empty());
}

#[test]
fn capacity_is_respected_and_queue_positions_are_told_once() {
    let mut b = Bench::new();
    for a in 0..10 {
        b.agent(conn(a), "t", &format!("a{a}"), &["g"], 3);
    }
    let mut told: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut visitor_conn: BTreeMap<u64, ConnId> = BTreeMap::new();
    let mut assigned = 0;
    for i in 0..100u32 {
        let v = conn(1000 + i);
        b.visitor(v, "t", &format!("v{i}"));
        let out = b.open(v, "t", &format!("v{i}"), "g");
        let id = opened(&out).unwrap();
        visitor_conn.insert(id, v);
        assigned += assigns(&out).len();
        for q in queued_to(&out, v) {
            told.entry(q.conversation).or_default().push(q.position);
        }
        // Agents hear about each one that entered, in one broadcast frame.
        let broadcasts = out
            .iter()
            .filter(|e| matches!(e, Effect::Broadcast(..)))
            .count();
        assert_eq!(broadcasts, usize::from(i >= 30), "visitor {i}");
    }
    assert_eq!(assigned, 30);
    for a in 0..10 {
        assert_eq!(b.r.active_count(&who("t", &format!("a{a}"))), 3);
    }
    assert_eq!(b.r.queue_len("t", "g"), 70);
    // Ids 31..=100 wait, positions 1..=70, each told exactly once.
    for (k, id) in (31..=100u64).enumerate() {
        assert_eq!(told[&id], [k as u32 + 1], "conversation {id}");
    }
    assert_eq!(told.len(), 70);

    // a0 closes conversation 1 (its first): the head (31) goes to a0, everyone else
    // moves up one and hears it once.
    let out = b.close(1);
    assert_eq!(assigns(&out), [(31, "a0".to_owned(), String::new())]);
    for id in 32..=100u64 {
        let q = queued_to(&out, visitor_conn[&id]);
        assert_eq!(q.len(), 1, "conversation {id}");
        assert_eq!(q[0].position, (id - 31) as u32);
        assert_eq!(q[0].group, "g");
    }
    assert!(queued_to(&out, visitor_conn[&31]).is_empty());
    // The agents are told 31 left (position 0), in one frame to all ten.
    let staff: Vec<_> = frames(&out)
        .into_iter()
        .filter(|(c, _, m)| c.slot < 10 && matches!(m, Msg::Queued(_)))
        .collect();
    assert_eq!(staff.len(), 10);
    assert!(
        staff.iter().all(
            |(_, _, m)| matches!(m, Msg::Queued(q) if q.position == 0 && q.conversation == 31)
        )
    );

    // A queued conversation closing moves only those behind it.
    let out = b.close(50);
    for id in 32..50u64 {
        assert!(queued_to(&out, visitor_conn[&id]).is_empty());
    }
    for id in 51..=100u64 {
        assert_eq!(
            queued_to(&out, visitor_conn[&id])[0].position,
            (id - 32) as u32
        );
    }
    assert!(assigns(&out).is_empty());
    assert_eq!(b.r.queue_len("t", "g"), 68);

    // Closing everything drains the queue without ever exceeding capacity.
    let mut id = 2;
    while b.r.queue_len("t", "g") > 0 {
        b.close(id);
        id += 1;
    }
    assert_eq!(b.r.conversations(), 30);
}

#[test]
fn a_present_bot_is_served_first() {
    let mut b = Bench::new();
    b.agent(conn(1), "t", "human", &["g"], 3);
    b.connect(conn(2), "t", "bot", role::BOT, &["g"], None);
    // Bot capacity defaults to bot_capacity (10): the bot takes 10 before the human.
    let mut got = Vec::new();
    for i in 0..12 {
        let v = conn(100 + i);
        b.visitor(v, "t", &format!("w{i}"));
        got.extend(
            assigns(&b.open(v, "t", &format!("w{i}"), "g"))
                .into_iter()
                .map(|a| a.1),
        );
    }
    assert_eq!(got[..10], vec!["bot"; 10]);
    assert_eq!(got[10..], ["human", "human"]);

    // An away bot is passed over.
    let mut b = Bench::new();
    b.agent(conn(1), "t", "human", &["g"], 3);
    b.connect(conn(2), "t", "bot", role::BOT, &["g"], Some(2));
    b.presence(
        sender("t", "bot", role::BOT, &["g"], conn(2)),
        presence::AWAY,
    );
    let v = conn(10);
    b.visitor(v, "t", "v");
    assert_eq!(assigns(&b.open(v, "t", "v", "g"))[0].1, "human");
}

#[test]
fn away_agents_get_nothing_new_and_online_fills_them() {
    let (mut b, v, first) = agent_a_serves_visitor_v("g", 2);
    assert_eq!(b.r.active_count(&who("t", "a")), 1);
    let out = b.agent_presence(conn(1), "t", "a", &["g"], presence::AWAY);
    assert!(out.is_empty());
    assert_eq!(b.r.online_agents(), 0);
    // Keeps the current one, takes no new one.
    assert_eq!(b.r.active_count(&who("t", "a")), 1);
    for i in 0..3 {
        let w = conn(20 + i);
        b.visitor(w, "t", &format!("w{i}"));
        assert!(assigns(&b.open(w, "t", &format!("w{i}"), "g")).is_empty());
    }
    assert_eq!(b.r.queue_len("t", "g"), 3);
    // A client's "offline" while connected is "away" too.
    b.agent_presence(conn(1), "t", "a", &["g"], presence::OFFLINE);
    // Another connection of an away agent keeps it away...
    assert!(assigns(&b.agent(conn(2), "t", "a", &["g"], 2)).is_empty());
    // ...until it says online: it fills up to capacity, oldest first.
    let out = b.agent_presence(conn(1), "t", "a", &["g"], presence::ONLINE);
    assert_eq!(
        assigns(&out).iter().map(|a| a.0).collect::<Vec<_>>(),
        [first + 1]
    );
    assert_eq!(b.r.queue_len("t", "g"), 2);
    // Visitors may not set presence.
    let out = b.presence(sender("t", "v", role::VISITOR, &[], v), presence::ONLINE);
    assert_eq!(errors(&out), [(403, 7)]);
}

#[test]
fn away_then_reconnect_from_offline_is_online() {
    let mut b = Bench::new();
    b.agent(conn(1), "t", "a", &["g"], 2);
    b.agent_presence(conn(1), "t", "a", &["g"], presence::AWAY);
    b.handle(RouterMsg::Disconnected { conn: conn(1) });
    let v = conn(10);
    b.visitor(v, "t", "v");
    b.open(v, "t", "v", "g");
    let out = b.agent(conn(2), "t", "a", &["g"], 2);
    assert_eq!(assigns(&out).len(), 1);
}

#[test]
fn claim_succeeds_and_refuses_with_the_right_codes() {
    let mut b = Bench::new();
    let v = conn(10);
    let id = b.visitor_opens(v, "t", "v", "g");
    let w = conn(11);
    let id2 = b.visitor_opens(w, "t", "w", "g");
    // An agent at capacity 1, already busy via a different group.
    b.agent(conn(1), "t", "busy", &["other"], 1);
    let u = conn(12);
    b.visitor(u, "t", "u");
    b.open(u, "t", "u", "other");
    assert_eq!(b.r.active_count(&who("t", "busy")), 1);
    // A claimer in "g" whose capacity is 0, so routing never gives it anything.
    b.agent(conn(2), "t", "claimer", &["g"], 0);
    b.agent(conn(3), "t", "claimer2", &["g"], 0);

    let claim = |tenant: &str, user: &str, role: u8, gs: &[&str], c: ConnId, conversation| {
        RouterMsg::Claim {
            from: sender(tenant, user, role, gs, c),
            conversation,
        }
    };
    // Unknown conversation; another tenant's.
    assert_eq!(
        errors(&b.handle(claim("t", "claimer", role::AGENT, &["g"], conn(2), 999))),
        [(404, 7)]
    );
    assert_eq!(
        errors(&b.handle(claim("x", "claimer", role::AGENT, &["g"], conn(2), id))),
        [(404, 7)]
    );
    // Not staff; not in the group.
    assert_eq!(
        errors(&b.handle(claim("t", "v", role::VISITOR, &["g"], v, id))),
        [(403, 7)]
    );
    assert_eq!(
        errors(&b.handle(claim("t", "busy", role::AGENT, &["other"], conn(1), id))),
        [(403, 7)]
    );
    // In the group but at capacity.
    assert_eq!(
        errors(&b.handle(claim("t", "claimer", role::AGENT, &["g"], conn(2), id))),
        [(409, 7)]
    );

    // Give claimer room, as a token with a higher capacity would.
    let out = b.agent(conn(4), "t", "claimer", &["g"], 1);
    // Connecting with room fills from the queue: it takes the oldest (id).
    assert_eq!(assigns(&out), [(id, "claimer".to_owned(), String::new())]);
    // Not queued any more.
    assert_eq!(
        errors(&b.handle(claim("t", "claimer2", role::AGENT, &["g"], conn(3), id))),
        [(409, 7)]
    );
    // claimer2 gets room but is away: routing skips it, a claim still works.
    b.agent_presence(conn(3), "t", "claimer2", &["g"], presence::AWAY);
    b.agent(conn(5), "t", "claimer2", &["g"], 1);
    assert_eq!(b.r.queue_len("t", "g"), 1);
    let out = b.handle(claim("t", "claimer2", role::AGENT, &["g"], conn(3), id2));
    assert!(errors(&out).is_empty());
    assert_eq!(assigns(&out), [(id2, "claimer2".to_owned(), String::new())]);
    assert_eq!(b.r.queue_len("t", "g"), 0);
    // The visitor's Queued stream got nothing for the claim; the agents heard "left".
    let left: Vec<_> = frames(&out)
        .into_iter()
        .filter_map(|(c, _, m)| match m {
            Msg::Queued(q) => Some((c, q.position, q.conversation)),
            _ => None,
        })
        .collect();
    assert!(left.iter().all(|(_, p, c)| *p == 0 && *c == id2));
    assert_eq!(left.len(), 4); // claimer (2 conns) and claimer2 (2 conns)
    // A closed conversation is gone.
    b.close(id2);
    assert_eq!(
        errors(&b.handle(claim("t", "claimer2", role::AGENT, &["g"], conn(3), id2))),
        [(404, 7)]
    );
}

#[test]
fn transfer_to_an_agent_a_group_and_an_unavailable_agent() {
    let (mut b, v, id) = agent_a_serves_visitor_v("sales", 2);
    b.agent(conn(2), "t", "b", &["support"], 2);
    b.agent(conn(3), "t", "c", &["support"], 2);

    // To agent c directly (not even in sales), with the note.
    let out = b.transfer(id, "sales", who("t", "a"), "c", "", "wants a refund");
    assert_eq!(
        assigns(&out),
        [(id, "c".to_owned(), "wants a refund".to_owned())]
    );
    assert!(requeued(&out).is_empty());
    assert_eq!(b.r.active_count(&who("t", "a")), 0);
    assert_eq!(b.r.active_count(&who("t", "c")), 1);

    // A stale transfer (a is no longer the agent) is ignored.
    let stale = b.transfer(id, "sales", who("t", "a"), "", "support", "");
    assert!(stale.is_empty());

    // To a group: someone else there (b), not c itself.
    let out = b.transfer(id, "sales", who("t", "c"), "", "support", "n2");
    assert_eq!(requeued(&out), [(id, "support".to_owned())]);
    assert_eq!(assigns(&out), [(id, "b".to_owned(), "n2".to_owned())]);
    match &out[..] {
        [
            Effect::Shard(ShardMsg::Requeued { .. }),
            Effect::Shard(ShardMsg::Assign(Assignment { group, .. })),
        ] => {
            assert_eq!(group, "support")
        }
        other => panic!("{other:?}"),
    }

    // To an unavailable agent (away): requeued in the current group, note kept.
    b.agent_presence(conn(1), "t", "a", &["sales"], presence::AWAY);
    b.agent_presence(conn(3), "t", "c", &["support"], presence::AWAY);
    let out = b.transfer(id, "support", who("t", "b"), "a", "", "kept");
    assert_eq!(requeued(&out), [(id, "support".to_owned())]);
    // Nobody else in support has room: the giver's freed capacity takes it back,
    // note included, rather than leaving it waiting next to an idle agent.
    assert_eq!(assigns(&out), [(id, "b".to_owned(), "kept".to_owned())]);
    assert_eq!(b.r.queue_len("t", "support"), 0);
    assert_eq!(b.r.active_count(&who("t", "b")), 1);

    // With b away too, the transfer waits and the note goes to whoever comes next.
    b.agent_presence(conn(2), "t", "b", &["support"], presence::AWAY);
    let out = b.transfer(
        id,
        "support",
        who("t", "b"),
        "nobody",
        "",
        "for the next one",
    );
    assert_eq!(requeued(&out), [(id, "support".to_owned())]);
    assert!(assigns(&out).is_empty());
    assert_eq!(b.r.queue_len("t", "support"), 1);
    assert_eq!(positions_told(&out, v), [1]);
    let out = b.agent(conn(4), "t", "d", &["support"], 1);
    assert_eq!(
        assigns(&out),
        [(id, "d".to_owned(), "for the next one".to_owned())]
    );
}

#[test]
fn transfer_hands_back_the_note_when_the_giver_refills() {
    // The exact behaviour the previous test relies on, in isolation.
    let (mut b, _, id) = agent_a_serves_visitor_v("g", 1);
    let out = b.transfer(id, "g", who("t", "a"), "", "", "n");
    // Requeued, offered to nobody else, then refilled to a with the note.
    assert_eq!(requeued(&out), [(id, "g".to_owned())]);
    assert_eq!(assigns(&out), [(id, "a".to_owned(), "n".to_owned())]);
}

#[test]
fn agent_disconnect_grace_requeues_at_the_front() {
    let mut b = Bench::new();
    b.agent(conn(1), "t", "a", &["g"], 2);
    let v1 = conn(10);
    let v2 = conn(11);
    let v3 = conn(12);
    b.visitor(v1, "t", "v1");
    b.visitor(v2, "t", "v2");
    b.visitor(v3, "t", "v3");
    let c1 = opened(&b.open(v1, "t", "v1", "g")).unwrap();
    let c2 = opened(&b.open(v2, "t", "v2", "g")).unwrap();
    let c3 = opened(&b.open(v3, "t", "v3", "g")).unwrap();
    assert_eq!(b.r.queue_len("t", "g"), 1);
    assert_eq!(b.r.next_deadline(), None);

    let out = b.handle(RouterMsg::Disconnected { conn: conn(1) });
    // Only the connection lists change.
    assert!(
        out.iter()
            .all(|e| matches!(e, Effect::Shard(ShardMsg::Conns { conns, .. }) if conns.is_empty()))
    );
    assert_eq!(out.len(), 2);
    assert_eq!(b.r.next_deadline(), Some(Mono::from_ms(b.now + GRACE)));
    b.now += GRACE - 1;
    assert!(b.tick().is_empty());
    assert_eq!(b.r.active_count(&who("t", "a")), 2);

    b.now += 1;
    let out = b.tick();
    assert_eq!(requeued(&out), [(c1, "g".to_owned()), (c2, "g".to_owned())]);
    assert_eq!(b.r.active_count(&who("t", "a")), 0);
    assert_eq!(b.r.queue_len("t", "g"), 3);
    assert_eq!(b.r.next_deadline(), None);
    // c1, c2 ahead of c3, which moves from 1 to 3.
    assert_eq!(queued_to(&out, v1)[0].position, 1);
    assert_eq!(queued_to(&out, v2)[0].position, 2);
    assert_eq!(queued_to(&out, v3)[0].position, 3);
    let g = b.r.group("t", "g").unwrap();
    assert_eq!(g.queue.iter().copied().collect::<Vec<_>>(), [c1, c2, c3]);

    // A new agent takes them in that order.
    let out = b.agent(conn(2), "t", "b", &["g"], 3);
    assert_eq!(
        assigns(&out).iter().map(|a| a.0).collect::<Vec<_>>(),
        [c1, c2, c3]
    );
}

#[test]
fn grace_expiry_goes_to_another_agent_when_one_is_free() {
    let (mut b, v, c) = agent_a_serves_visitor_v("g", 1);
    b.handle(RouterMsg::Disconnected { conn: conn(1) });
    b.agent(conn(2), "t", "b", &["g"], 1);
    b.now += GRACE;
    let out = b.tick();
    assert_eq!(requeued(&out), [(c, "g".to_owned())]);
    assert_eq!(assigns(&out), [(c, "b".to_owned(), String::new())]);
    assert!(queued_to(&out, v).is_empty());
}

#[test]
fn reconnect_within_grace_cancels_it() {
    let (mut b, _, c) = agent_a_serves_visitor_v("g", 2);
    b.handle(RouterMsg::Disconnected { conn: conn(1) });
    // Not assignable while gone.
    let w = conn(11);
    let c2 = b.visitor_opens(w, "t", "w", "g");
    assert_eq!(b.r.queue_len("t", "g"), 1);
    b.now += GRACE / 2;
    let out = b.agent(conn(2), "t", "a", &["g"], 2);
    assert_eq!(b.r.next_deadline(), None);
    // Conns for the kept conversation, then the waiting one is filled.
    assert!(out.iter().any(|e| matches!(e,
        Effect::Shard(ShardMsg::Conns { conversation, conns, .. }) if *conversation == c && conns == &[conn(2)])));
    assert_eq!(assigns(&out), [(c2, "a".to_owned(), String::new())]);
    b.now += GRACE;
    assert!(b.tick().is_empty());
    assert_eq!(b.r.active_count(&who("t", "a")), 2);
}

#[test]
fn multi_connection_users_get_every_connection_in_conns() {
    let (mut b, v, c) = agent_a_serves_visitor_v("g", 2);

    let conns_of = |out: &[Effect], user: &str| -> Vec<Vec<ConnId>> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Shard(ShardMsg::Conns {
                    conversation,
                    who,
                    conns,
                }) if who.user == user => {
                    assert_eq!(*conversation, c);
                    Some(conns.clone())
                }
                _ => None,
            })
            .collect()
    };
    let out = b.agent(conn(2), "t", "a", &["g"], 2);
    assert_eq!(conns_of(&out, "a"), [vec![conn(1), conn(2)]]);
    let out = b.visitor(conn(11), "t", "v");
    assert_eq!(conns_of(&out, "v"), [vec![v, conn(11)]]);
    let out = b.handle(RouterMsg::Disconnected { conn: conn(1) });
    assert_eq!(conns_of(&out, "a"), [vec![conn(2)]]);
    // Still connected: no grace.
    assert_eq!(b.r.next_deadline(), None);
    let out = b.handle(RouterMsg::Disconnected { conn: v });
    assert_eq!(conns_of(&out, "v"), [vec![conn(11)]]);
    let out = b.handle(RouterMsg::Disconnected { conn: conn(11) });
    assert_eq!(conns_of(&out, "v"), [Vec::<ConnId>::new()]);
    // A visitor's disconnect changes nothing else.
    assert_eq!(out.len(), 1);
    // Unknown connections are ignored.
    assert!(
        b.handle(RouterMsg::Disconnected { conn: conn(77) })
            .is_empty()
    );
    // Assign carries every connection too.
    let w = conn(12);
    b.visitor(w, "t", "w");
    b.agent(conn(3), "t", "a", &["g"], 2);
    let out = b.open(w, "t", "w", "g");
    let agent_conns = out.iter().find_map(|e| match e {
        Effect::Shard(ShardMsg::Assign(Assignment { agent_conns, .. })) => {
            Some(agent_conns.clone())
        }
        _ => None,
    });
    assert_eq!(agent_conns, Some(vec![conn(2), conn(3)]));
}

#[test]
fn a_waiting_visitor_reconnecting_is_told_its_position() {
    let mut b = Bench::new();
    let v = conn(10);
    b.visitor(v, "t", "v");
    b.open(v, "t", "v", "g");
    b.handle(RouterMsg::Disconnected { conn: v });
    let out = b.visitor(conn(11), "t", "v");
    assert_eq!(positions_told(&out, conn(11)), [1]);
}

#[test]
fn tenants_never_see_each_other() {
    let mut b = Bench::new();
    b.agent(conn(1), "A", "agent", &["g"], 5);
    let v = conn(10);
    b.visitor(v, "B", "visitor");
    let out = b.open(v, "B", "visitor", "g");
    assert!(assigns(&out).is_empty());
    assert_eq!(b.r.queue_len("B", "g"), 1);
    assert_eq!(b.r.queue_len("A", "g"), 0);
    // A's agent heard nothing about B's queue.
    assert!(queued_to(&out, conn(1)).is_empty());
    // The same user id in B is another person.
    let out = b.agent(conn(2), "B", "agent", &["g"], 1);
    let a = &assigns(&out);
    assert_eq!(a.len(), 1);
    let agent = out.iter().find_map(|e| match e {
        Effect::Shard(ShardMsg::Assign(Assignment { agent, .. })) => Some(agent.clone()),
        _ => None,
    });
    assert_eq!(agent, Some(who("B", "agent")));
    assert_eq!(b.r.active_count(&who("A", "agent")), 0);

    // A notice from A's admin reaches only A.
    let out = b.handle(RouterMsg::Notice {
        from: sender("A", "boss", role::ADMIN, &[], conn(30)),
        notice: messages::Notice {
            text: "maintenance".into(),
            ..Default::default()
        },
    });
    let to: Vec<ConnId> = frames(&out).into_iter().map(|f| f.0).collect();
    assert_eq!(to, [conn(1)]);
}

#[test]
fn notices_go_to_a_group_or_to_everyone() {
    let mut b = Bench::new();
    b.agent(conn(1), "t", "a", &["sales"], 1);
    b.agent(conn(2), "t", "a", &["sales"], 1);
    b.agent(conn(3), "t", "b", &["support"], 1);
    b.connect(conn(4), "t", "bot", role::BOT, &["sales"], None);
    b.visitor(conn(5), "t", "v");
    b.connect(conn(6), "t", "boss", role::ADMIN, &["sales"], None);
    b.agent(conn(7), "other", "x", &["sales"], 1);

    let notice = |group: &str| RouterMsg::Notice {
        from: sender("t", "boss", role::ADMIN, &[], conn(6)),
        notice: messages::Notice {
            time_ms: 1_767_225_600_000,
            group: group.into(),
            from: String::new(),
            text: "lunch".into(),
        },
    };
    let out = b.handle(notice("sales"));
    // Encoded once, broadcast.
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0], Effect::Broadcast(..)));
    let f = frames(&out);
    let to: BTreeSet<ConnId> = f.iter().map(|x| x.0).collect();
    assert_eq!(to, BTreeSet::from([conn(1), conn(2), conn(4)]));
    match &f[0].2 {
        Msg::Notice(n) => {
            assert_eq!(n.from, "boss");
            assert_eq!(n.group, "sales");
            assert_eq!(n.text, "lunch");
            assert_eq!(
                n.time_ms, 1_767_225_600_000,
                "the session's clock, not the router's"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f[0].1, 0);

    let out = b.handle(notice(""));
    let to: BTreeSet<ConnId> = frames(&out).iter().map(|x| x.0).collect();
    assert_eq!(
        to,
        BTreeSet::from([conn(1), conn(2), conn(3), conn(4), conn(5), conn(6)])
    );
    // A group nobody is in: nothing.
    assert!(b.handle(notice("nobody")).is_empty());
    // Only admins.
    let out = b.handle(RouterMsg::Notice {
        from: sender("t", "a", role::AGENT, &["sales"], conn(1)),
        notice: messages::Notice::default(),
    });
    assert_eq!(errors(&out), [(403, 7)]);
}

#[test]
fn users_are_forgotten_when_nothing_is_left() {
    let (mut b, v, c) = agent_a_serves_visitor_v("g", 1);
    b.handle(RouterMsg::Disconnected { conn: v });
    b.handle(RouterMsg::Disconnected { conn: conn(1) });
    assert!(b.r.next_deadline().is_some());
    b.close(c);
    // Closing the agent's last conversation during the grace ends the grace.
    assert_eq!(b.r.next_deadline(), None);
    assert!(b.r.tenants.is_empty());
    assert!(b.r.directory.is_empty());
    assert!(b.r.convs.is_empty());
}

/// xorshift64*: a tiny deterministic PRNG.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[test]
fn random_traffic_keeps_the_invariants() {
    struct Who {
        tenant: &'static str,
        user: &'static str,
        role: u8,
        groups: &'static [&'static str],
        capacity: Option<u32>,
    }
    const fn person(
        tenant: &'static str,
        user: &'static str,
        role: u8,
        groups: &'static [&'static str],
        capacity: Option<u32>,
    ) -> Who {
        Who {
            tenant,
            user,
            role,
            groups,
            capacity,
        }
    }
    let people = [
        person("t", "a1", role::AGENT, &["g0"], Some(2)),
        person("t", "a2", role::AGENT, &["g0", "g1"], Some(3)),
        person("t", "a3", role::AGENT, &["g1"], None),
        person("t", "bot", role::BOT, &["g1"], Some(2)),
        person("t", "boss", role::ADMIN, &[], None),
        person("u", "a1", role::AGENT, &["g0"], Some(1)),
        person("t", "v1", role::VISITOR, &[], None),
        person("t", "v2", role::VISITOR, &["g1"], None),
        person("t", "v3", role::VISITOR, &[], None),
        person("t", "v4", role::VISITOR, &[], None),
        person("u", "v1", role::VISITOR, &[], None),
        person("u", "v5", role::VISITOR, &[], None),
    ];
    let groups_any = ["", "g0", "g1", "g2", "general"];

    // How often each interesting path ran, over all seeds (a test that never queues or
    // never expires a grace would prove little).
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in 1..=5u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut r = Router::new(RouterSettings {
            default_group: "general".into(),
            default_capacity: 2,
            bot_capacity: 4,
            agent_grace_ms: 5_000,
            visitor_grace_ms: 7_000,
        });
        let mut now = 0u64;
        let mut live: Vec<(ConnId, usize)> = Vec::new();
        let mut next_slot = 0u32;
        let mut closed: BTreeSet<u64> = BTreeSet::new();
        let mut assigned_to: BTreeMap<u64, UserRef> = BTreeMap::new();
        let mut opened_in: BTreeMap<u64, String> = BTreeMap::new();
        let mut out = Vec::new();

        for step in 0..4_000 {
            now += rng.below(400) as u64;
            let op = rng.below(100);
            // Claims mostly come from agents and bots (else they are all 403s).
            let pi = if (63..=70).contains(&op) && rng.below(4) > 0 {
                *rng.pick(&[0, 1, 2, 3, 5])
            } else {
                rng.below(people.len())
            };
            let p = &people[pi];
            let pconn = live
                .iter()
                .find(|(_, i)| *i == pi)
                .map_or(conn(9_999), |l| l.0);
            let from = Sender {
                id: Arc::new(Principal {
                    who: who(p.tenant, p.user),
                    name: p.user.into(),
                    role: p.role,
                    groups: groups(p.groups).into(),
                    addr: None,
                }),
                conn: pconn,
                rid: step,
            };
            let max_id = r.next_id + 1;
            let msg = match op {
                0..=14 => {
                    next_slot += 1;
                    let c = ConnId {
                        reactor: 0,
                        slot: next_slot,
                        generation: 1,
                    };
                    live.push((c, pi));
                    Some(RouterMsg::Connected {
                        conn: c,
                        principal: principal(p.tenant, p.user, p.user, p.role, p.groups),
                        capacity: p.capacity,
                    })
                }
                15..=26 if !live.is_empty() => {
                    let i = rng.below(live.len());
                    let (c, _) = live.swap_remove(i);
                    Some(RouterMsg::Disconnected { conn: c })
                }
                27..=46 => Some(RouterMsg::Open {
                    from: from.clone(),
                    send: messages::Send {
                        content_type: messages::content::TEXT,
                        conversation: 0,
                        client_msg_id: step as u64,
                        group: (*rng.pick(&groups_any)).into(),
                        body: "hi".into(),
                    },
                }),
                47..=62 => Some(RouterMsg::Closed {
                    conversation: rng.next() % max_id,
                }),
                63..=70 => {
                    // Half the time a conversation that is waiting somewhere.
                    let waiting = r
                        .convs
                        .iter()
                        .filter(|(_, c)| c.agent.is_none() && p.groups.contains(&c.group.as_str()))
                        .map(|(id, _)| *id)
                        .min();
                    let conversation = match waiting {
                        Some(id) if rng.below(2) == 0 => id,
                        _ => rng.next() % max_id,
                    };
                    Some(RouterMsg::Claim {
                        from: from.clone(),
                        conversation,
                    })
                }
                71..=80 => {
                    let conversation = rng.next() % max_id;
                    // Mostly what a shard would authorize (the real agent), sometimes stale.
                    let giver = match r
                        .convs
                        .get(&conversation)
                        .and_then(|c| c.agent.as_ref().map(|a| who(&c.tenant, a)))
                    {
                        Some(a) if rng.below(4) > 0 => a,
                        _ => who(p.tenant, p.user),
                    };
                    let target = people[rng.below(people.len())].user;
                    Some(RouterMsg::Transfer {
                        conversation,
                        group: String::new(),
                        from: giver,
                        to_agent: if rng.below(2) == 0 {
                            target.into()
                        } else {
                            String::new()
                        },
                        to_group: (*rng.pick(&groups_any)).into(),
                        note: format!("note {step}"),
                    })
                }
                81..=88 => Some(RouterMsg::Presence {
                    from: from.clone(),
                    status: 1 + rng.below(3) as u8,
                }),
                92..=94 => Some(RouterMsg::Watch {
                    from: from.clone(),
                    group: (*rng.pick(&groups_any)).into(),
                }),
                89..=91 => Some(RouterMsg::Notice {
                    from: from.clone(),
                    notice: messages::Notice {
                        group: (*rng.pick(&groups_any)).into(),
                        text: "n".into(),
                        ..Default::default()
                    },
                }),
                _ => None,
            };
            let was_closed = match &msg {
                Some(RouterMsg::Closed { conversation }) => {
                    r.convs.contains_key(conversation).then_some(*conversation)
                }
                _ => None,
            };
            let claim = matches!(msg, Some(RouterMsg::Claim { .. }));
            out.clear();
            match msg {
                Some(m) => r.handle(m, Mono::from_ms(now), &mut out),
                None => r.tick(Mono::from_ms(now), &mut out),
            }
            // The shard stores the opening message, or (sometimes) the abuse filter
            // refuses it.
            if let Some(conversation) = opened(&out) {
                check_invariants(&r);
                let answer = if rng.below(6) == 0 {
                    RouterMsg::OpenRefused { conversation }
                } else {
                    RouterMsg::Opened { conversation }
                };
                r.handle(answer, Mono::from_ms(now), &mut out);
            }
            if let Some(id) = was_closed {
                closed.insert(id);
            }
            check_invariants(&r);
            // Effects agree with the state and the history.
            for (_, _, m) in frames(&out) {
                let kind = match m {
                    Msg::Queued(q) if q.position == 0 => "left queue",
                    Msg::Queued(_) => "queued",
                    Msg::Error(e) => match e.code {
                        403 => "403",
                        404 => "404",
                        409 => "409",
                        _ => "other error",
                    },
                    Msg::Notice(_) => "notice",
                    _ => "other frame",
                };
                *seen.entry(kind).or_default() += 1;
            }
            for e in &out {
                let kind = match e {
                    Effect::Shard(ShardMsg::Open { .. }) => "open",
                    Effect::Shard(ShardMsg::Assign(Assignment { note, .. }))
                        if !note.is_empty() =>
                    {
                        "assign with note"
                    }
                    Effect::Shard(ShardMsg::Assign(Assignment { .. })) => "assign",
                    Effect::Shard(ShardMsg::Requeued { .. }) => "requeued",
                    Effect::Shard(ShardMsg::SystemClose { .. }) => "abandoned",
                    Effect::Shard(ShardMsg::Conns { .. }) => "conns",
                    _ => "other",
                };
                *seen.entry(kind).or_default() += 1;
            }
            if claim && errors(&out).is_empty() {
                *seen.entry("claimed").or_default() += 1;
            }
            if !r.graces.is_empty() {
                *seen.entry("grace pending").or_default() += 1;
            }
            for e in &out {
                match e {
                    Effect::Shard(ShardMsg::Open(o)) => {
                        assert!(
                            opened_in
                                .insert(o.conversation, o.visitor.tenant.clone())
                                .is_none()
                        );
                    }
                    Effect::Shard(ShardMsg::Assign(Assignment {
                        conversation,
                        agent,
                        ..
                    })) => {
                        assert!(!closed.contains(conversation));
                        assert_eq!(opened_in.get(conversation), Some(&agent.tenant));
                        assigned_to.insert(*conversation, agent.clone());
                    }
                    Effect::Shard(ShardMsg::Requeued { conversation, .. }) => {
                        assert!(assigned_to.remove(conversation).is_some());
                    }
                    Effect::Shard(ShardMsg::SystemClose { conversation, .. }) => {
                        // Only a conversation waiting in a queue is abandoned.
                        assert!(!assigned_to.contains_key(conversation));
                        assert!(!r.convs.contains_key(conversation));
                        closed.insert(*conversation);
                    }
                    Effect::Shard(ShardMsg::Request { msg, .. }) => {
                        let id = crate::service::request_conversation(msg);
                        assert!(opened_in.contains_key(&id) && !closed.contains(&id));
                    }
                    _ => {}
                }
            }
            for id in &closed {
                assert!(!r.convs.contains_key(id));
            }
            // The router's view of who serves what matches what it told the shards.
            for (id, c) in &r.convs {
                let told = assigned_to.get(id).filter(|_| c.agent.is_some());
                assert_eq!(told.map(|w| &w.user), c.agent.as_ref(), "conversation {id}");
            }
            assigned_to.retain(|id, _| r.convs.get(id).is_some_and(|c| c.agent.is_some()));
        }
        // Drain: everyone leaves, graces expire, every conversation closes.
        for (c, _) in live.drain(..) {
            r.handle(
                RouterMsg::Disconnected { conn: c },
                Mono::from_ms(now),
                &mut out,
            );
        }
        now += 10_000;
        r.tick(Mono::from_ms(now), &mut out);
        check_invariants(&r);
        let ids: Vec<u64> = r.convs.keys().copied().collect();
        for id in ids {
            r.handle(
                RouterMsg::Closed { conversation: id },
                Mono::from_ms(now),
                &mut out,
            );
        }
        check_invariants(&r);
        assert!(r.tenants.is_empty(), "seed {seed}: {:?}", r.tenants);
        assert!(r.graces.is_empty() && r.abandons.is_empty() && r.directory.is_empty());
    }
    println!("{seen:?}");
    for kind in [
        "open",
        "assign",
        "assign with note",
        "requeued",
        "conns",
        "queued",
        "left queue",
        "403",
        "404",
        "409",
        "notice",
        "grace pending",
        "abandoned",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) >= 20,
            "{kind}: {seen:?}"
        );
    }
}

/// A visitor gone for `visitor_grace` abandons its waiting conversations: they leave
/// the queue (position 0 to the group's staff) and are closed by the shard; one that
/// an agent serves stays; a visitor back within the grace keeps everything.
#[test]
fn a_visitor_gone_past_its_grace_abandons_its_waiting_conversations() {
    let mut b = Bench::new();
    let (v, w, a) = (conn(1), conn(2), conn(3));
    b.visitor(v, "t", "v");
    b.visitor(w, "t", "w");
    let out = b.open(v, "t", "v", "sales");
    let waiting = opened(&out).unwrap();
    b.agent(a, "t", "alice", &["support"], 3);
    let out = b.open(v, "t", "v", "support");
    let served = opened(&out).unwrap();
    assert_eq!(
        assigns(&out)
            .into_iter()
            .map(|(id, agent, _)| (id, agent))
            .collect::<Vec<_>>(),
        vec![(served, "alice".to_owned())]
    );
    let out = b.open(w, "t", "w", "sales");
    let kept = opened(&out).unwrap();

    // W comes back within its grace: nothing happens to it.
    b.handle(RouterMsg::Disconnected { conn: v });
    b.handle(RouterMsg::Disconnected { conn: w });
    b.now += VISITOR_GRACE - 1;
    assert!(b.tick().is_empty());
    b.visitor(conn(4), "t", "w");
    b.now += 1;
    let out = b.tick();
    let closed: Vec<(u64, String)> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Shard(ShardMsg::SystemClose {
                conversation,
                reason,
            }) => Some((*conversation, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![(waiting, ABANDONED.to_owned())]);
    assert_eq!(b.r.queue_len("t", "sales"), 1, "only W's is left");
    assert!(b.r.convs.contains_key(&served) && b.r.convs.contains_key(&kept));
    // V is still away: its served conversation is requeued when Alice's grace runs
    // out, and abandoned at V's next look.
    b.handle(RouterMsg::Disconnected { conn: a });
    b.now += GRACE;
    b.tick();
    assert_eq!(b.r.queue_len("t", "support"), 1);
    b.now += VISITOR_GRACE;
    let out = b.tick();
    assert!(out.iter().any(|e| matches!(e,
        Effect::Shard(ShardMsg::SystemClose { conversation, .. }) if *conversation == served)));
    assert_eq!(b.r.queue_len("t", "support"), 0);
    assert!(b.r.user("t", "v").is_none(), "V is forgotten");
}

/// A visitor watching on `c`: the `Watch` with an empty group (its own groups).
fn watch(b: &mut Bench, c: ConnId, tenant: &str, user: &str, group: &str) -> Vec<Effect> {
    b.handle(RouterMsg::Watch {
        from: sender(tenant, user, role::VISITOR, &[], c),
        group: group.into(),
    })
}

#[test]
fn availability_goes_only_to_connections_that_watch() {
    let mut b = Bench::new();
    b.visitor(conn(1), "t", "v");
    b.visitor(conn(2), "t", "v");
    assert!(b.told.is_empty(), "nothing unasked at connect");
    watch(&mut b, conn(1), "t", "v", "");
    assert_eq!(b.told_to(conn(1)), [("general".to_owned(), false, 0)]);
    assert!(
        b.told_to(conn(2)).is_empty(),
        "the other connection did not ask"
    );
    // An agent of the group comes online: the watcher hears it, the other does not.
    b.agent(conn(10), "t", "a", &["general"], 2);
    assert_eq!(b.told_to(conn(1)), [("general".to_owned(), true, 0)]);
    assert!(b.told_to(conn(2)).is_empty());
    // ...and goes again.
    b.handle(RouterMsg::Disconnected { conn: conn(10) });
    assert_eq!(b.told_to(conn(1)), [("general".to_owned(), false, 0)]);
    // A closed connection is no longer a watcher.
    b.handle(RouterMsg::Disconnected { conn: conn(1) });
    b.agent(conn(11), "t", "a", &["general"], 2);
    assert!(b.told.is_empty());
}

#[test]
fn a_full_queue_is_told_as_a_wait_and_only_other_tenants_groups_stay_apart() {
    let mut b = Bench::new();
    b.agent(conn(10), "t", "a", &["sales"], 1);
    b.visitor(conn(1), "t", "v1");
    watch(&mut b, conn(1), "t", "v1", "sales");
    // v1's watch names a group besides its own ("general").
    assert_eq!(
        b.told_to(conn(1)),
        [
            ("general".to_owned(), false, 0),
            ("sales".to_owned(), true, 0)
        ]
    );
    b.visitor(conn(3), "u", "v3");
    watch(&mut b, conn(3), "u", "v3", "sales");
    assert_eq!(
        b.told_to(conn(3)),
        [
            ("general".to_owned(), false, 0),
            ("sales".to_owned(), false, 0)
        ],
        "tenant u has nobody"
    );
    // The only agent is taken: a conversation opened now waits at least 15 s.
    b.visitor(conn(2), "t", "v2");
    b.open(conn(2), "t", "v2", "sales");
    assert_eq!(b.told_to(conn(1)), [("sales".to_owned(), true, 15_000)]);
    assert!(b.told_to(conn(3)).is_empty(), "another tenant's sales");
    // Someone queues and waits nearly 3 minutes: the head's wait shows.
    b.visitor(conn(4), "t", "v4");
    b.open(conn(4), "t", "v4", "sales");
    b.now += 170_000;
    b.tick();
    assert_eq!(b.told_to(conn(1)), [("sales".to_owned(), true, 180_000)]);
    // The agent's first conversation closes and the queued one is assigned: the
    // estimate is now what it waited, the same step, so nothing new is told.
    let mut ids: Vec<u64> = b.r.convs.keys().copied().collect();
    ids.sort_unstable();
    b.close(ids[0]);
    assert!(b.told.is_empty(), "{:?}", b.told);
    // The agent is free with nobody waiting: no wait at all.
    b.close(ids[1]);
    assert_eq!(b.told_to(conn(1)), [("sales".to_owned(), true, 0)]);
}

#[test]
fn a_watch_past_max_watched_groups_is_refused() {
    let mut b = Bench::new();
    b.visitor(conn(1), "t", "v");
    // The default group is one already.
    for i in 1..MAX_WATCHED {
        let out = watch(&mut b, conn(1), "t", "v", &format!("g{i}"));
        assert!(errors(&out).is_empty(), "{i}");
    }
    let out = watch(&mut b, conn(1), "t", "v", "one too many");
    assert_eq!(errors(&out), [(429, 7)]);
    let out = watch(&mut b, conn(1), "t", "v", "g3");
    assert!(errors(&out).is_empty(), "a group it watches already");
    assert_eq!(b.told_to(conn(1)).len(), MAX_WATCHED);
}

#[test]
fn a_watched_queue_wakes_the_router_to_refresh_its_wait() {
    let mut b = Bench::new();
    assert_eq!(b.r.next_deadline(), None);
    b.agent(conn(10), "t", "a", &["sales"], 1);
    b.visitor(conn(1), "t", "v1");
    watch(&mut b, conn(1), "t", "v1", "sales");
    b.visitor(conn(2), "t", "v2");
    b.open(conn(2), "t", "v2", "sales");
    assert_eq!(b.r.next_deadline(), None, "assigned at once: no queue");
    b.visitor(conn(3), "t", "v3");
    b.open(conn(3), "t", "v3", "sales");
    let at = b.r.next_deadline().expect("a queue with a watcher");
    assert!(at <= Mono::from_ms(b.now + 1_500), "{at:?}");
    // Time alone moves the head's wait: the router looks again at that deadline.
    b.now += 20_000;
    b.tick();
    assert_eq!(b.told_to(conn(1)), [("sales".to_owned(), true, 30_000)]);
}

/// The shards learn when a group gets its first online agent or bot and when its
/// last goes away or offline; conversations opened meanwhile carry it.
#[test]
fn shards_are_told_when_a_group_goes_online_and_offline() {
    let mut b = Bench::new();
    let v = conn(10);
    b.visitor(v, "t", "v");
    let out = b.open(v, "t", "v", "g");
    assert!(offline_opening(&out), "nobody online: an offline opening");
    assert!(b.shards_told.is_empty());
    // Both of a's groups, in (tenant, group) order.
    let both: Vec<(String, String, bool)> = vec![
        ("t".into(), "g".into(), true),
        ("t".into(), "h".into(), true),
    ];
    b.agent(conn(1), "t", "a", &["g", "h"], 1);
    assert_eq!(b.shards_told, both);
    // A second agent changes nothing the shards know.
    b.agent(conn(2), "t", "b", &["g"], 1);
    assert!(b.shards_told.is_empty());
    b.agent_presence(conn(1), "t", "a", &["g", "h"], presence::AWAY);
    assert_eq!(b.shards_told, vec![("t".into(), "h".into(), false)]);
    let w = conn(11);
    b.visitor(w, "t", "w");
    assert!(!offline_opening(&b.open(w, "t", "w", "g")), "b is online");
    b.handle(RouterMsg::Disconnected { conn: conn(2) });
    assert_eq!(b.shards_told, vec![("t".into(), "g".into(), false)]);
    b.agent_presence(conn(1), "t", "a", &["g", "h"], presence::ONLINE);
    assert_eq!(b.shards_told, both);
}

/// Whether the `Open` in `out` says nobody of its group was online.
fn offline_opening(out: &[Effect]) -> bool {
    out.iter()
        .find_map(|e| match e {
            Effect::Shard(ShardMsg::Open(o)) => Some(o.offline),
            _ => None,
        })
        .expect("an Open")
}

/// A conversation whose visitor left an offline message is not abandoned when the
/// visitor stays away: it waits, and the first agent to come online gets it.
#[test]
fn an_offline_message_is_kept_until_an_agent_comes() {
    let mut b = Bench::new();
    let (v, w) = (conn(10), conn(11));
    let kept = b.visitor_opens(v, "t", "v", "g");
    let gone = b.visitor_opens(w, "t", "w", "g");
    // The shard stored V's opening as an offline message (W's too, but its
    // `Offline` is lost here: W's conversation is abandoned as before).
    b.handle(RouterMsg::Offline { conversation: kept });
    b.handle(RouterMsg::Disconnected { conn: v });
    b.handle(RouterMsg::Disconnected { conn: w });
    b.now += VISITOR_GRACE;
    let out = b.tick();
    let closed: Vec<u64> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Shard(ShardMsg::SystemClose { conversation, .. }) => Some(*conversation),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![gone]);
    // Looked at again every grace: still kept.
    b.now += VISITOR_GRACE * 3;
    assert!(b.tick().is_empty());
    assert_eq!(b.r.queue_len("t", "g"), 1);
    let out = b.agent(conn(1), "t", "a", &["g"], 2);
    assert_eq!(
        assigns(&out)
            .into_iter()
            .map(|(id, agent, _)| (id, agent))
            .collect::<Vec<_>>(),
        vec![(kept, "a".to_owned())]
    );
}

/// A new staff connection is told what already waits in its groups (positions from
/// the head), then what routing gives it at once.
#[test]
fn a_new_agent_connection_is_told_the_waiting_conversations() {
    let mut b = Bench::new();
    let ids: Vec<u64> = (0..3)
        .map(|i| b.visitor_opens(conn(10 + i), "t", &format!("v{i}"), "g"))
        .collect();
    let other = b.visitor_opens(conn(20), "t", "w", "elsewhere");
    let a = conn(1);
    let out = b.agent(a, "t", "a", &["g"], 1);
    let told: Vec<(u64, u32)> = queued_to(&out, a)
        .into_iter()
        .map(|q| (q.conversation, q.position))
        .collect();
    assert_eq!(
        told,
        vec![(ids[0], 1), (ids[1], 2), (ids[2], 3), (ids[0], 0)],
        "the queue of g, then the head leaving it for a"
    );
    assert!(!told.iter().any(|(id, _)| *id == other));
    assert_eq!(assigns(&out)[0].0, ids[0]);
    // A second connection of the same agent hears the two still waiting.
    let out = b.agent(conn(2), "t", "a", &["g"], 1);
    let told: Vec<(u64, u32)> = queued_to(&out, conn(2))
        .into_iter()
        .map(|q| (q.conversation, q.position))
        .collect();
    assert_eq!(told, vec![(ids[1], 1), (ids[2], 2)]);
}

/// The snapshot a new staff connection gets stops at `MAX_QUEUE_SNAPSHOT` per group,
/// from the head.
#[test]
fn the_queue_snapshot_is_bounded() {
    let mut b = Bench::new();
    let n = messages::MAX_QUEUE_SNAPSHOT + 5;
    let ids: Vec<u64> = (0..n)
        .map(|i| b.visitor_opens(conn(100 + i as u32), "t", &format!("v{i}"), "g"))
        .collect();
    let a = conn(1);
    // Capacity 0: online, given nothing, so only the snapshot comes.
    let out = b.agent(a, "t", "a", &["g"], 0);
    let told: Vec<(u64, u32)> = queued_to(&out, a)
        .into_iter()
        .map(|q| (q.conversation, q.position))
        .collect();
    let want: Vec<(u64, u32)> = ids
        .iter()
        .take(messages::MAX_QUEUE_SNAPSHOT)
        .enumerate()
        .map(|(i, id)| (*id, i as u32 + 1))
        .collect();
    assert_eq!(told, want);
}

#[test]
fn an_idle_visitor_keeps_no_more_and_listens_only_once_it_watches() {
    let mut b = Bench::new();
    b.visitor(conn(1), "t", "v");
    let user = b.r.user("t", "v").expect("the visitor is known");
    assert!(user.more.is_none(), "an idle visitor has no `More`");
    let g =
        b.r.group("t", "general")
            .expect("the default group is watched");
    assert_eq!((g.watchers, g.listeners.len()), (1, 0));
    watch(&mut b, conn(1), "t", "v", "");
    let g = b.r.group("t", "general").expect("watched");
    assert!(g.listeners.contains("v"));
    assert!(b.r.user("t", "v").is_some_and(|u| u.more.is_none()));
    b.handle(RouterMsg::Disconnected { conn: conn(1) });
    assert!(b.r.user("t", "v").is_none(), "forgotten");
    assert!(b.r.group("t", "general").is_none(), "unused: forgotten");
}

#[test]
fn a_visitor_that_becomes_an_agent_gets_capacity_and_work() {
    let mut b = Bench::new();
    b.visitor(conn(1), "t", "u");
    // A second connection of the same user with an agent's token.
    b.agent(conn(2), "t", "u", &["general"], 2);
    let user = b.r.user("t", "u").expect("known");
    assert_eq!((user.capacity, user.idle_since), (2, b.now));
    let id = b.visitor_opens(conn(10), "t", "v", "general");
    assert!(b.r.user("t", "u").is_some_and(|u| u.assigned.contains(&id)));
}

#[test]
fn a_name_equal_to_the_user_id_is_not_kept_twice() {
    let mut b = Bench::new();
    let mut out = Vec::new();
    let p = principal("t", "v", "v", role::VISITOR, &[]);
    b.r.handle(
        RouterMsg::Connected {
            conn: conn(1),
            principal: p,
            capacity: None,
        },
        Mono::from_ms(b.now),
        &mut out,
    );
    let user = b.r.user("t", "v").expect("known");
    assert!(user.name.is_none());
    assert_eq!(user.name("v"), "v");
    b.visitor(conn(2), "t", "v");
    let user = b.r.user("t", "v").expect("known");
    assert_eq!(user.name("v"), "v name", "a later token's name is kept");
}
