//! A deterministic simulator of the service core: one router and several shards
//! exchanging messages through FIFO queues, driven single-threaded in a seeded random
//! interleaving, with every frame sent to a connection decoded and recorded. Used by
//! scenario tests and by the randomized invariant test below.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use super::conversation::{Shard, ShardSettings};
use super::router::{Router, RouterSettings};
use super::{Effect, RouterMsg, Sender, ShardControl, ShardMsg, UserRef, shard_of};
use crate::clock::{Mono, UnixMs};
use crate::frame;
use crate::handoff::{Command, ConnId};
use crate::protocol::messages::{self, Msg, role};

/// A small xorshift PRNG: deterministic, no dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A frame a connection received, decoded.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    /// The frame's request id.
    #[allow(dead_code, reason = "kept for debugging failed schedules")]
    pub rid: u32,
    /// The decoded message.
    pub msg: Msg,
}

pub(crate) struct Sim {
    pub router: Router,
    pub shards: Vec<Shard>,
    to_router: VecDeque<RouterMsg>,
    to_shard: Vec<VecDeque<ShardMsg>>,
    /// What each connection received, in order.
    pub inbox: BTreeMap<ConnId, Vec<Got>>,
    /// Who holds each connection (for the "only participants" check).
    pub owner: HashMap<ConnId, UserRef>,
    /// Each connection's role.
    pub roles: HashMap<ConnId, u8>,
    /// Connections that sent `Watch` (only they may get `Availability`).
    pub watchers: HashSet<ConnId>,
    pub now: u64,
    rng: Rng,
    /// Journal records each shard produced, in order.
    pub records: Vec<Vec<super::record::Record>>,
    /// Connections a shard asked to close, with the code.
    pub closes: Vec<(ConnId, Option<crate::protocol::ErrorCode>)>,
}

pub(crate) fn settings() -> (RouterSettings, ShardSettings) {
    (
        RouterSettings {
            default_group: "support".into(),
            default_capacity: 3,
            bot_capacity: 50,
            agent_grace_ms: 1_000,
            visitor_grace_ms: 3_000,
        },
        ShardSettings::for_tests(500),
    )
}

impl Sim {
    pub fn new(shards: usize, seed: u64) -> Self {
        let (r, s) = settings();
        Self {
            router: Router::new(r),
            shards: (0..shards).map(|_| Shard::new(s.clone())).collect(),
            to_router: VecDeque::new(),
            to_shard: (0..shards).map(|_| VecDeque::new()).collect(),
            records: (0..shards).map(|_| Vec::new()).collect(),
            closes: Vec::new(),
            inbox: BTreeMap::new(),
            owner: HashMap::new(),
            roles: HashMap::new(),
            watchers: HashSet::new(),
            now: 1_000,
            rng: Rng::new(seed),
        }
    }

    pub fn conn(slot: u32) -> ConnId {
        ConnId {
            reactor: (slot % 2) as u16,
            slot,
            generation: 1,
        }
    }

    pub fn user(name: &str) -> UserRef {
        UserRef {
            tenant: String::new(),
            user: name.into(),
        }
    }

    pub fn sender(&self, conn: ConnId, role: u8, groups: &[&str], rid: u32) -> Sender {
        let who = self
            .owner
            .get(&conn)
            .cloned()
            .unwrap_or_else(|| Self::user("?"));
        Sender {
            id: std::sync::Arc::new(super::Principal {
                name: who.user.clone().into(),
                who,
                role,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                addr: None,
            }),
            conn,
            rid,
        }
    }

    /// A session completing its handshake.
    pub fn connect(&mut self, conn: ConnId, who: UserRef, role: u8, groups: &[&str]) {
        self.owner.insert(conn, who.clone());
        self.roles.insert(conn, role);
        self.to_router.push_back(RouterMsg::Connected {
            conn,
            principal: std::sync::Arc::new(crate::service::Principal {
                name: who.user.clone().into(),
                who,
                role,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                addr: None,
            }),
            capacity: None,
        });
    }

    pub fn disconnect(&mut self, conn: ConnId) {
        self.to_router.push_back(RouterMsg::Disconnected { conn });
    }

    /// What a session does with a decoded request (mirrors `service::session::route`).
    pub fn request(&mut self, from: Sender, msg: Msg) {
        match msg {
            Msg::Send(send) if send.conversation == 0 => {
                self.to_router.push_back(RouterMsg::Open { from, send })
            }
            Msg::Claim(c) => self.to_router.push_back(RouterMsg::Claim {
                from,
                conversation: c.conversation,
            }),
            Msg::Presence(p) => self.to_router.push_back(RouterMsg::Presence {
                from,
                status: p.status,
            }),
            Msg::Notice(notice) => self.to_router.push_back(RouterMsg::Notice { from, notice }),
            Msg::Watch(w) => {
                self.watchers.insert(from.conn);
                self.to_router.push_back(RouterMsg::Watch {
                    from,
                    group: w.group,
                })
            }
            msg => {
                // The worker whose sessions hold the connection (the slot stands in
                // for the reactor's hash).
                let worker = from.conn.slot as usize % self.shards.len().max(1);
                let msg = ShardMsg::Request { from, msg };
                let shard = shard_of(msg.conversation(), self.shards.len());
                if shard != worker {
                    return self.effect(Effect::Shard(msg));
                }
                // As a worker does with a request for its own shard: handled in place,
                // after what that shard's queue holds now.
                for _ in 0..self.to_shard.get(shard).map_or(0, VecDeque::len) {
                    if let Some(queued) = self.to_shard[shard].pop_front() {
                        self.on_shard(shard, queued);
                    }
                }
                self.on_shard(shard, msg);
            }
        }
    }

    /// Shard `i` handles `m`; everything is durable at once here.
    fn on_shard(&mut self, i: usize, m: ShardMsg) {
        let mut out = Vec::new();
        self.shards[i].handle(m, UnixMs(self.now), &mut out);
        // Nothing to take back.
        self.shards[i].durable(u64::MAX);
        let recs = self.shards[i].take_records();
        self.records[i].extend(recs);
        for e in out {
            self.effect(e);
        }
    }

    fn effect(&mut self, e: Effect) {
        match e {
            Effect::Router(m) => self.to_router.push_back(m),
            Effect::Shard(m) => {
                let n = self.shards.len();
                if let Some(q) = self.to_shard.get_mut(shard_of(m.conversation(), n)) {
                    q.push_back(m);
                }
            }
            Effect::Reactor(
                Command::Send { conn, frame } | Command::SendCharged { conn, frame },
            ) => self.record(conn, &frame),
            Effect::Reactor(Command::Close { conn, code, .. }) => self.closes.push((conn, code)),
            Effect::Reactor(..) => {}
            Effect::AllShards(c) => {
                let mut out = Vec::new();
                for s in &mut self.shards {
                    s.control(c.clone(), &mut out);
                }
                for e in out {
                    self.effect(e);
                }
            }
            // The simulator has no sessions to answer.
            Effect::Session(..) | Effect::Files(_) => {}
            Effect::Broadcast(conns, frame) => {
                for c in conns {
                    self.record(c, &frame);
                }
            }
        }
    }

    fn record(&mut self, conn: ConnId, bytes: &[u8]) {
        let d = frame::decode(bytes, u32::MAX)
            .ok()
            .flatten()
            .expect("service frames are well framed");
        // An HTTP API request's answer (`service::api_ack`) is a bare status frame.
        let msg = if d.payload.is_empty() && d.header.kind == crate::protocol::Kind::Pong.as_u8() {
            Msg::Pong(messages::Pong::default())
        } else {
            Msg::decode(d.header.kind, d.payload).expect("service frames decode")
        };
        self.inbox.entry(conn).or_default().push(Got {
            rid: d.header.request_id,
            msg,
        });
    }

    /// Delivers one pending message from a random non-empty queue; false when idle.
    pub fn step(&mut self) -> bool {
        let mut ready: Vec<usize> = Vec::new();
        if !self.to_router.is_empty() {
            ready.push(usize::MAX);
        }
        for (i, q) in self.to_shard.iter().enumerate() {
            if !q.is_empty() {
                ready.push(i);
            }
        }
        if ready.is_empty() {
            return false;
        }
        let pick = ready[self.rng.below(ready.len() as u64) as usize];
        if pick != usize::MAX {
            if let Some(m) = self.to_shard[pick].pop_front() {
                self.on_shard(pick, m);
            }
            return true;
        }
        let mut out = Vec::new();
        if let Some(m) = self.to_router.pop_front() {
            self.router.handle(m, Mono::from_ms(self.now), &mut out);
        }
        for e in out {
            self.effect(e);
        }
        true
    }

    /// Whether no message is in flight.
    pub fn idle(&self) -> bool {
        self.to_router.is_empty() && self.to_shard.iter().all(VecDeque::is_empty)
    }

    /// Runs until every queue is empty.
    pub fn settle(&mut self) {
        let mut n = 0;
        while self.step() {
            n += 1;
            assert!(n < 1_000_000, "the service does not settle");
        }
    }

    /// Advances time and fires the router's deadlines.
    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
        let mut out = Vec::new();
        self.router.tick(Mono::from_ms(self.now), &mut out);
        for e in out {
            self.effect(e);
        }
    }

    pub fn take(&mut self, conn: ConnId) -> Vec<Got> {
        self.inbox.remove(&conn).unwrap_or_default()
    }

    /// Takes what `conn` got and returns the conversation of its `Accepted` (panics
    /// without one).
    pub fn take_accepted(&mut self, conn: ConnId) -> u64 {
        self.take(conn)
            .iter()
            .find_map(|g| match &g.msg {
                Msg::Accepted(a) => Some(a.conversation),
                _ => None,
            })
            .expect("an Accepted")
    }

    /// What a worker does every turn: retries the `History` requests its shard holds
    /// back.
    pub fn retry_deferred(&mut self) {
        let mut out = Vec::new();
        for s in &mut self.shards {
            s.retry_deferred(&mut out);
        }
        for e in out {
            self.effect(e);
        }
    }

    /// Applies a configuration reload's shard settings to every shard.
    pub fn set_shard_settings(&mut self, settings: &ShardSettings) {
        for s in &mut self.shards {
            let msg = ShardControl::Settings(settings.clone());
            s.control(msg, &mut Vec::new());
        }
    }
}

pub(crate) fn send_msg(conversation: u64, id: u64, body: &str) -> Msg {
    messages::Send {
        content_type: messages::content::TEXT,
        conversation,
        client_msg_id: id,
        group: String::new(),
        body: body.into(),
    }
    .into()
}

#[cfg(test)]
#[path = "deferred_tests.rs"]
mod deferred_tests;

#[cfg(test)]
#[path = "profile_tests.rs"]
mod profile_tests;

#[cfg(test)]
#[path = "unjournaled_tests.rs"]
mod unjournaled_tests;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::service::conversation::GroupEvent;

    fn accepted(got: &[Got]) -> Vec<(u64, u64)> {
        got.iter()
            .filter_map(|g| match &g.msg {
                Msg::Accepted(a) => Some((a.conversation, a.seq)),
                _ => None,
            })
            .collect()
    }

    /// Offline messages and replies the visitor was away for carry their flags in
    /// the transcript: visitor messages while nobody of the group is online are
    /// `OFFLINE` (the opening one too), and so are none once an agent is; an agent's
    /// message is `VISITOR_AWAY` only while the visitor has no connection.
    #[test]
    fn offline_and_visitor_away_flags() {
        use messages::flags::{OFFLINE, VISITOR_AWAY};
        let mut s = Sim::new(2, 11);
        let (v, a) = (Sim::conn(1), Sim::conn(2));
        s.connect(v, Sim::user("visitor"), role::VISITOR, &[]);
        s.settle();
        let from = s.sender(v, role::VISITOR, &[], 1);
        s.request(from, send_msg(0, 100, "anyone?"));
        s.settle();
        let conv = accepted(&s.take(v))[0].0;
        let from = s.sender(v, role::VISITOR, &[], 2);
        s.request(from, send_msg(conv, 101, "call me back"));
        s.settle();
        // What the router gets after a restart: never abandoned while it waits.
        let open = s.shards[shard_of(conv, s.shards.len())].open_conversations();
        assert!(open.iter().any(|c| c.id == conv && c.offline), "{open:?}");
        check_restore(&s);
        s.connect(a, Sim::user("alice"), role::AGENT, &["support"]);
        s.settle();
        let from = s.sender(a, role::AGENT, &["support"], 3);
        s.request(from, send_msg(conv, 200, "hello, here now"));
        s.settle();
        let from = s.sender(v, role::VISITOR, &[], 4);
        s.request(from, send_msg(conv, 102, "great"));
        s.settle();
        s.disconnect(v);
        s.settle();
        let from = s.sender(a, role::AGENT, &["support"], 5);
        s.request(from, send_msg(conv, 201, "your order shipped"));
        s.settle();
        let shard = &s.shards[shard_of(conv, s.shards.len())];
        let flags: Vec<(String, u8)> = shard
            .transcript(conv)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == crate::protocol::Kind::Send.as_u8())
            .map(|e| (e.body, e.flags & (OFFLINE | VISITOR_AWAY)))
            .collect();
        assert!(shard.open_conversations().iter().all(|c| !c.offline));
        check_restore(&s);
        assert_eq!(
            flags,
            vec![
                ("anyone?".into(), OFFLINE),
                ("call me back".into(), OFFLINE),
                ("hello, here now".into(), 0),
                ("great".into(), 0),
                ("your order shipped".into(), VISITOR_AWAY),
            ]
        );
    }

    /// The whole life of one conversation: queue → assign → exchange in order →
    /// transfer → close → rate.
    #[test]
    fn queue_assign_exchange_transfer_close_rate() {
        let mut s = Sim::new(3, 7);
        let (v, a1, a2) = (Sim::conn(1), Sim::conn(2), Sim::conn(3));
        s.connect(v, Sim::user("visitor"), role::VISITOR, &[]);
        s.settle();
        let from = s.sender(v, role::VISITOR, &[], 1);
        s.request(from, send_msg(0, 100, "hello?"));
        s.settle();
        let got = s.take(v);
        let conv = accepted(&got)[0].0;
        assert!(
            got.iter()
                .any(|g| matches!(&g.msg, Msg::Queued(q) if q.position == 1)),
            "{got:?}"
        );

        s.connect(a1, Sim::user("alice"), role::AGENT, &["support"]);
        s.settle();
        let got = s.take(a1);
        assert!(
            got.iter()
                .any(|g| matches!(&g.msg, Msg::Assigned(x) if x.conversation == conv))
        );
        assert!(s.take(v).iter().any(|g| matches!(&g.msg, Msg::Assigned(_))));

        for i in 0..5u64 {
            let from = s.sender(v, role::VISITOR, &[], 10 + i as u32);
            s.request(from, send_msg(conv, 200 + i, &format!("v{i}")));
            let from = s.sender(a1, role::AGENT, &["support"], 20 + i as u32);
            s.request(from, send_msg(conv, 300 + i, &format!("a{i}")));
        }
        s.settle();
        let to_agent: Vec<String> = s
            .take(a1)
            .into_iter()
            .filter_map(|g| match g.msg {
                Msg::Deliver(d) => Some(d.body),
                _ => None,
            })
            .collect();
        assert_eq!(to_agent, vec!["v0", "v1", "v2", "v3", "v4"]);

        s.connect(a2, Sim::user("bob"), role::AGENT, &["support"]);
        s.settle();
        let from = s.sender(a1, role::AGENT, &["support"], 40);
        s.request(
            from,
            messages::Transfer {
                conversation: conv,
                to_agent: "bob".into(),
                to_group: String::new(),
                note: "VIP".into(),
            }
            .into(),
        );
        s.settle();
        let got_b = s.take(a2);
        assert!(
            got_b
                .iter()
                .any(|g| matches!(&g.msg, Msg::Assigned(x) if x.agent == "bob"))
        );
        assert!(
            got_b
                .iter()
                .any(|g| matches!(&g.msg, Msg::Transfer(t) if t.note == "VIP"))
        );
        assert!(
            !s.take(v).iter().any(|g| matches!(&g.msg, Msg::Transfer(_))),
            "the visitor never sees the note"
        );

        let from = s.sender(a2, role::AGENT, &["support"], 50);
        s.request(
            from,
            messages::Close {
                conversation: conv,
                seq: 0,
                reason: "solved".into(),
            }
            .into(),
        );
        s.settle();
        assert!(s.take(v).iter().any(|g| matches!(&g.msg, Msg::Close(_))));
        let from = s.sender(v, role::VISITOR, &[], 60);
        s.request(
            from,
            messages::Rate {
                score: 5,
                conversation: conv,
                comment: "great".into(),
            }
            .into(),
        );
        s.settle();
        let shard = &s.shards[shard_of(conv, 3)];
        let t = shard.transcript(conv).expect("conversation exists");
        for (i, e) in t.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1, "gap-free sequence");
        }
        assert_eq!(t.last().map(|e| e.content_type), Some(5), "rating stored");
        // The shard counted what its worker publishes, and nothing else.
        let stats = s.shards[shard_of(conv, 3)].stats_mut();
        assert_eq!(stats.closed, 1);
        let groups: Vec<_> = stats
            .groups
            .iter()
            .map(|g| match g {
                GroupEvent::FirstReply(group, _) => format!("first reply {group}"),
                GroupEvent::Rated(group, score) => format!("rated {group} {score}"),
                GroupEvent::Inactive(group) => format!("inactive {group}"),
            })
            .collect();
        assert_eq!(groups, ["first reply support", "rated support 5"]);
    }

    /// A request a worker hands its own shard in place still comes after what the
    /// client learned from elsewhere: the router requeues a conversation (to the
    /// shard's queue) and tells the group's staff at once; an agent who reads the
    /// `Queued` frame and asks for the history is answered as by the queued
    /// conversation, not refused as by the one still assigned to its first agent.
    /// An HTTP API request with no reply of its own (a `Transfer` here) is answered
    /// only once the conversation's shard shows what it did, in every interleaving:
    /// a back end that lists the queue right after the answer finds the transfer
    /// there. (The answer used to leave the router at once, while the router's
    /// `Requeued` could still wait in the shard's queue.)
    #[test]
    fn an_api_transfer_is_answered_once_the_shard_shows_it() {
        for seed in 1..=64 {
            let mut s = Sim::new(3, seed);
            let (v, a1, api) = (Sim::conn(1), Sim::conn(2), Sim::conn(9));
            s.connect(a1, Sim::user("alice"), role::AGENT, &["support"]);
            s.connect(v, Sim::user("visitor"), role::VISITOR, &[]);
            s.settle();
            let from = s.sender(v, role::VISITOR, &[], 1);
            s.request(from, send_msg(0, 100, "hello?"));
            s.settle();
            let conv = s.take_accepted(v);
            let shard = shard_of(conv, 3);
            assert_eq!(s.shards[shard].queued_in(conv), None, "assigned to alice");
            // What the session does with the API's transfer: the request, then the
            // acknowledgement queued right behind it to the same owner.
            let from = s.sender(a1, role::AGENT, &["support"], 7);
            s.request(
                from,
                messages::Transfer {
                    conversation: conv,
                    to_agent: String::new(),
                    to_group: "billing".into(),
                    note: String::new(),
                }
                .into(),
            );
            s.effect(Effect::Shard(ShardMsg::Ack {
                conversation: conv,
                conn: api,
                rid: 7,
            }));
            let mut answered = false;
            while s.step() {
                if !answered && s.inbox.contains_key(&api) {
                    answered = true;
                    assert_eq!(
                        s.shards[shard].queued_in(conv),
                        Some("billing"),
                        "seed {seed}: answered before the shard showed the transfer"
                    );
                }
            }
            let got = s.take(api);
            assert!(
                matches!(got.as_slice(), [g] if g.rid == 7 && matches!(g.msg, Msg::Pong(_))),
                "seed {seed}: {got:?}"
            );
        }
    }

    #[test]
    fn an_in_place_request_comes_after_what_its_client_saw() {
        // One shard: every request is its session worker's own.
        let mut s = Sim::new(1, 5);
        let (v, a1, a2) = (Sim::conn(1), Sim::conn(2), Sim::conn(3));
        s.connect(v, Sim::user("visitor"), role::VISITOR, &[]);
        s.connect(a1, Sim::user("alice"), role::AGENT, &["support"]);
        s.connect(a2, Sim::user("bob"), role::AGENT, &["support"]);
        s.settle();
        // Bob takes nothing new, so the conversation stays with Alice, then queued.
        let away: Msg = messages::Presence {
            status: messages::presence::AWAY,
            user: String::new(),
        }
        .into();
        s.request(s.sender(a2, role::AGENT, &["support"], 1), away);
        s.settle();
        s.request(s.sender(v, role::VISITOR, &[], 2), send_msg(0, 1, "hello?"));
        s.settle();
        let conv = accepted(&s.take(v))[0].0;
        assert!(
            s.take(a1)
                .iter()
                .any(|g| matches!(&g.msg, Msg::Assigned(_)))
        );
        s.take(a2);
        // Alice goes and her grace runs out: the router requeues the conversation.
        s.disconnect(a1);
        s.settle();
        s.advance(2_000);
        assert!(!s.idle(), "the requeue waits in the shard's queue");
        assert!(
            s.take(a2)
                .iter()
                .any(|g| matches!(&g.msg, Msg::Queued(q) if q.conversation == conv)),
            "bob is told at once"
        );
        let history = messages::History {
            limit: 10,
            conversation: conv,
            before_seq: 0,
        };
        s.request(s.sender(a2, role::AGENT, &["support"], 3), history.into());
        let got = s.take(a2);
        assert!(
            matches!(got.as_slice(), [Got { msg: Msg::HistoryPage(p), .. }] if p.conversation == conv),
            "{got:?}"
        );
    }

    /// A journal failure takes back every batch that is not durable: whatever mix of
    /// messages, assignments, requeues, closes and ratings they held, the shard is left
    /// exactly as it was after the last durable batch.
    /// A visitor's `History` over a run of notes reads a bounded number of entries
    /// (8 pages' worth) and answers short with `more`; the next page goes on.
    #[test]
    fn a_visitor_page_over_many_notes_is_short_not_endless() {
        let mut s = Sim::new(1, 3);
        let (v, a) = (Sim::conn(1), Sim::conn(2));
        s.connect(a, Sim::user("alice"), role::AGENT, &["support"]);
        s.connect(v, Sim::user("visitor"), role::VISITOR, &[]);
        s.settle();
        s.request(s.sender(v, role::VISITOR, &[], 1), send_msg(0, 1, "hello"));
        s.settle();
        let conv = accepted(&s.take(v))[0].0;
        for i in 0..100u64 {
            let note = messages::Note {
                conversation: conv,
                client_msg_id: 10 + i,
                body: format!("note {i}"),
            };
            s.request(s.sender(a, role::AGENT, &["support"], 2), note.into());
        }
        s.settle();
        let page = |s: &mut Sim, before_seq: u64| {
            let h = messages::History {
                limit: 5,
                conversation: conv,
                before_seq,
            };
            s.request(s.sender(v, role::VISITOR, &[], 3), h.into());
            s.settle();
            s.take(v)
                .into_iter()
                .find_map(|g| match g.msg {
                    Msg::HistoryPage(p) => Some(p),
                    _ => None,
                })
                .expect("a page")
        };
        // Newest first: 40 notes read (8 × 5), none shown.
        let first = page(&mut s, 0);
        assert!(first.entries.is_empty() && first.more, "{first:?}");
        // From the oldest end: the opening message (and the assignment) come back.
        let oldest = page(&mut s, 6);
        assert!(
            oldest.entries.iter().any(|e| e.body == "hello"),
            "{oldest:?}"
        );
        assert!(oldest.entries.iter().all(|e| e.kind != 21));
    }

    #[test]
    fn rollback_restores_the_state_after_the_last_durable_batch() {
        for seed in 1..=40u64 {
            rollback_random(seed);
        }
    }

    fn rollback_random(seed: u64) {
        let (_, settings) = settings();
        let mut shard = Shard::new(settings);
        let mut rng = Rng::new(seed);
        let mut out = Vec::new();
        let from = |who: UserRef, role: u8, slot: u32| Sender {
            id: std::sync::Arc::new(super::super::Principal {
                name: who.user.clone().into(),
                who,
                role,
                groups: Box::new(["support".into()]),
                addr: None,
            }),
            conn: Sim::conn(slot),
            rid: 1,
        };
        let visitor = |id: u64| Sim::user(&format!("v{id}"));
        let agent = |n: u64| Sim::user(&format!("a{n}"));
        let mut now = 1_000;
        let mut next_conv = 1u64;
        let state = |s: &Shard| (s.digest(), s.open_conversations());
        let mut snapshots = vec![(0u64, state(&shard))];
        let mut durable = 0u64;
        for epoch in 1..=8u64 {
            shard.set_epoch(epoch);
            for _ in 0..rng.below(12) {
                now += 1;
                let conv = 1 + rng.below(next_conv);
                let msg = match rng.below(10) {
                    0 => {
                        next_conv += 1;
                        let id = next_conv - 1;
                        ShardMsg::Open(Box::new(super::super::Opening {
                            conversation: id,
                            visitor: visitor(id),
                            visitor_name: "V".into(),
                            group: "support".into(),
                            visitor_conns: vec![Sim::conn(next_conv as u32)],
                            opener: from(visitor(id), role::VISITOR, id as u32),
                            send: messages::Send {
                                content_type: messages::content::TEXT,
                                conversation: id,
                                client_msg_id: 0,
                                group: String::new(),
                                body: "opening".into(),
                            },
                            offline: rng.below(2) == 0,
                        }))
                    }
                    1 => ShardMsg::Assign(super::super::Assignment {
                        conversation: conv,
                        agent: agent(rng.below(3)),
                        agent_name: "A".into(),
                        agent_conns: vec![Sim::conn(1_000 + rng.below(3) as u32)],
                        group: ["support", "sales"][rng.below(2) as usize].into(),
                        note: String::new(),
                    }),
                    2 => ShardMsg::Requeued {
                        conversation: conv,
                        group: "sales".into(),
                    },
                    3 => ShardMsg::Request {
                        from: from(agent(rng.below(3)), role::AGENT, 1_000),
                        msg: messages::Close {
                            conversation: conv,
                            seq: 0,
                            reason: "done".into(),
                        }
                        .into(),
                    },
                    4 => ShardMsg::Request {
                        from: from(visitor(conv), role::VISITOR, conv as u32),
                        msg: messages::Rate {
                            score: 4,
                            conversation: conv,
                            comment: String::new(),
                        }
                        .into(),
                    },
                    5 | 6 => ShardMsg::Request {
                        from: from(visitor(conv), role::VISITOR, conv as u32),
                        msg: send_msg(conv, rng.below(6), "hi"),
                    },
                    // Profiles: what rollback takes back of the transcript, it takes
                    // back of the merged profile too.
                    7 => ShardMsg::Request {
                        from: from(visitor(conv), role::VISITOR, conv as u32),
                        msg: messages::Send {
                            content_type: messages::content::PROFILE,
                            conversation: conv,
                            client_msg_id: 10 + rng.below(6),
                            group: String::new(),
                            body: format!(
                                r#"{{"name":"n{now}","fields":{{"k{}":"v"}}}}"#,
                                rng.below(4)
                            ),
                        }
                        .into(),
                    },
                    // Attachments: what rollback takes back of the transcript, it
                    // takes back of the conversation's files too.
                    _ => ShardMsg::Request {
                        from: from(agent(rng.below(3)), role::AGENT, 1_000),
                        msg: messages::Send {
                            content_type: messages::content::ATTACHMENT,
                            conversation: conv,
                            client_msg_id: rng.below(6),
                            group: String::new(),
                            body: crate::files::message_body(
                                &format!("{now:064x}"),
                                "f.png",
                                3,
                                "image/png",
                            ),
                        }
                        .into(),
                    },
                };
                shard.handle(msg, UnixMs(now), &mut out);
                // Batches become durable while later ones fill, as in `worker`.
                if rng.below(6) == 0 && durable + 1 < epoch {
                    durable += 1 + rng.below(epoch - durable - 1);
                    shard.durable(durable);
                }
                shard.check_undo();
            }
            snapshots.push((epoch, state(&shard)));
        }
        shard.rollback();
        let expected = snapshots
            .iter()
            .find(|(e, _)| *e == durable)
            .map(|(_, d)| d.clone());
        assert_eq!(
            Some(state(&shard)),
            expected,
            "seed {seed}, durable {durable}"
        );
        shard.check_invariants();
    }

    /// Thousands of random events; after every step: no agent past capacity, no seq gap,
    /// nothing delivered to a non-participant.
    #[test]
    fn random_schedules_keep_the_invariants() {
        for seed in 1..=6u64 {
            run_random(seed, 3_000);
        }
    }

    /// A random schedule of `steps` events, checked after each; returns the simulator
    /// (its journal records are a realistic workload for recovery tests).
    pub(crate) fn run_random(seed: u64, steps: usize) -> Sim {
        let mut s = Sim::new(3, seed);
        let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let agents = ["a0", "a1", "a2", "a3"];
        let visitors: Vec<String> = (0..12).map(|i| format!("v{i}")).collect();
        let mut next_slot = 1u32;
        let mut live: Vec<(ConnId, String, u8)> = Vec::new();
        let mut convs: Vec<u64> = Vec::new();
        let mut rid = 0u32;
        for _ in 0..steps {
            rid += 1;
            match rng.below(10) {
                0 | 1 => {
                    let (name, r) = if rng.below(3) == 0 {
                        (agents[rng.below(4) as usize].to_string(), role::AGENT)
                    } else {
                        (visitors[rng.below(12) as usize].clone(), role::VISITOR)
                    };
                    let c = Sim::conn(next_slot);
                    next_slot += 1;
                    s.connect(c, Sim::user(&name), r, &["support"]);
                    live.push((c, name, r));
                }
                2 if !live.is_empty() => {
                    let (c, _, _) = live.swap_remove(rng.below(live.len() as u64) as usize);
                    s.disconnect(c);
                }
                3..=5 if !live.is_empty() => {
                    let (c, _, r) = live[rng.below(live.len() as u64) as usize].clone();
                    let conv = if r == role::VISITOR && (convs.is_empty() || rng.below(3) == 0) {
                        0
                    } else {
                        convs
                            .get(rng.below(convs.len().max(1) as u64) as usize)
                            .copied()
                            .unwrap_or(0)
                    };
                    let from = s.sender(c, r, &["support"], rid);
                    let id = rng.below(50);
                    // Every fifth a profile (stored only from the conversation's
                    // visitor, refused past 32 fields), chosen by `rid` so that the
                    // random draws, and so the schedules, stay as they were.
                    let msg = if conv != 0 && rid.is_multiple_of(5) {
                        let value = if rid.is_multiple_of(7) {
                            "null"
                        } else {
                            "\"x\""
                        };
                        let body = format!(r#"{{"fields":{{"k{}":{value}}}}}"#, rid % 40);
                        messages::Send {
                            content_type: messages::content::PROFILE,
                            conversation: conv,
                            client_msg_id: id,
                            group: String::new(),
                            body,
                        }
                        .into()
                    } else {
                        send_msg(conv, id, "x")
                    };
                    s.request(from, msg);
                }
                6 if !live.is_empty() && !convs.is_empty() => {
                    let (c, _, r) = live[rng.below(live.len() as u64) as usize].clone();
                    let conv = convs[rng.below(convs.len() as u64) as usize];
                    let from = s.sender(c, r, &["support"], rid);
                    let msg: Msg = match rng.below(3) {
                        0 => messages::Close {
                            conversation: conv,
                            seq: 0,
                            reason: String::new(),
                        }
                        .into(),
                        1 => messages::Claim { conversation: conv }.into(),
                        _ => messages::Transfer {
                            conversation: conv,
                            to_agent: agents[rng.below(4) as usize].into(),
                            to_group: String::new(),
                            note: String::new(),
                        }
                        .into(),
                    };
                    s.request(from, msg);
                }
                7 => s.advance(rng.below(800)),
                8 if !live.is_empty() && !convs.is_empty() => {
                    // A private note, from whoever: only an assigned agent's is stored.
                    let (c, _, r) = live[rng.below(live.len() as u64) as usize].clone();
                    let conv = convs[rng.below(convs.len() as u64) as usize];
                    let from = s.sender(c, r, &["support"], rid);
                    let note = messages::Note {
                        conversation: conv,
                        client_msg_id: rng.below(50),
                        body: NOTE.into(),
                    };
                    s.request(from, note.into());
                }
                9 if !live.is_empty() => {
                    let (c, _, r) = live[rng.below(live.len() as u64) as usize].clone();
                    let from = s.sender(c, r, &["support"], rid);
                    let msg: Msg = match (rng.below(3), convs.is_empty()) {
                        (0, false) => messages::History {
                            limit: 50,
                            conversation: convs[rng.below(convs.len() as u64) as usize],
                            before_seq: 0,
                        }
                        .into(),
                        (1, _) => messages::Watch {
                            group: "sales".into(),
                        }
                        .into(),
                        _ => messages::Watch {
                            group: String::new(),
                        }
                        .into(),
                    };
                    s.request(from, msg);
                }
                _ => {}
            }
            // Let a random amount of the pending traffic through.
            for _ in 0..rng.below(8) {
                s.step();
            }
            collect_convs(&s, &mut convs);
            check(&s);
        }
        s.settle();
        check(&s);
        check_restore(&s);
        s
    }

    /// Replaying each shard's records into a fresh shard rebuilds the same state.
    fn check_restore(s: &Sim) {
        let (_, settings) = settings();
        for (shard, records) in s.shards.iter().zip(&s.records) {
            // As written, and as compaction leaves it: the oldest records copied
            // after the newer ones.
            let cut = records.len() / 3;
            let compacted = records.iter().skip(cut).chain(records.iter().take(cut));
            for order in [records.iter().collect::<Vec<_>>(), compacted.collect()] {
                let mut fresh = Shard::new(settings.clone());
                for r in order {
                    fresh.restore(r.borrowed(), None).unwrap();
                }
                fresh.finish_restore();
                assert_eq!(fresh.digest(), shard.digest());
                assert_eq!(fresh.open_conversations(), shard.open_conversations());
            }
        }
    }

    fn collect_convs(s: &Sim, convs: &mut Vec<u64>) {
        for got in s.inbox.values() {
            for g in got {
                if let Msg::Accepted(a) = &g.msg
                    && !convs.contains(&a.conversation)
                {
                    convs.push(a.conversation);
                }
            }
        }
    }

    fn check(s: &Sim) {
        // No agent past capacity (settings: 3) — checked when nothing is in flight,
        // when the shards' view equals the router's.
        if !s.idle() {
            return check_deliveries(s);
        }
        let mut load: HashMap<String, usize> = HashMap::new();
        for shard in &s.shards {
            for (agent, n) in shard.agent_loads() {
                *load.entry(agent).or_default() += n;
            }
        }
        for (agent, n) in &load {
            assert!(*n <= 3, "{agent} serves {n} conversations");
        }
        check_deliveries(s);
    }

    /// The body of every note the random schedule writes.
    const NOTE: &str = "private: staff only";

    fn check_deliveries(s: &Sim) {
        for shard in &s.shards {
            shard.check_invariants();
        }
        for (conn, got) in &s.inbox {
            // A visitor never sees a note: not live, not in a page, not replayed.
            if s.roles.get(conn) == Some(&role::VISITOR) {
                for g in got {
                    let leaked = match &g.msg {
                        Msg::Deliver(d) => {
                            d.body == NOTE || d.flags & messages::flags::PRIVATE != 0
                        }
                        Msg::HistoryPage(p) => p.entries.iter().any(|e| {
                            e.kind == 21
                                || e.body == NOTE
                                || e.flags & messages::flags::PRIVATE != 0
                        }),
                        _ => false,
                    };
                    assert!(
                        !leaked,
                        "visitor connection {conn:?} got a note: {:?}",
                        g.msg
                    );
                }
            }
            // Availability only where it was asked for.
            if got.iter().any(|g| matches!(g.msg, Msg::Availability(_))) {
                assert!(s.watchers.contains(conn), "{conn:?} never sent Watch");
            }
        }
        if s.idle() {
            // What a watching connection heard last of each group is what holds now.
            for (conn, got) in &s.inbox {
                if !s.router.watches(*conn) {
                    continue;
                }
                let mut last: BTreeMap<&str, (bool, u64)> = BTreeMap::new();
                for g in got {
                    if let Msg::Availability(a) = &g.msg {
                        for x in &a.groups {
                            last.insert(&x.group, (x.online, x.estimated_wait_ms));
                        }
                    }
                }
                for (group, heard) in last {
                    assert_eq!(Some(heard), s.router.told("", group), "{conn:?} on {group}");
                }
            }
        }
        // Nothing delivered to a non-participant: every Deliver a connection got is in
        // a conversation its user is (or was) a participant of.
        for (conn, got) in &s.inbox {
            let Some(who) = s.owner.get(conn) else {
                continue;
            };
            for g in got {
                if let Msg::Deliver(d) = &g.msg {
                    let shard = &s.shards[shard_of(d.conversation, s.shards.len())];
                    assert!(
                        shard.was_participant(d.conversation, who),
                        "{who:?} got a message of conversation {}",
                        d.conversation
                    );
                }
            }
        }
    }
}
