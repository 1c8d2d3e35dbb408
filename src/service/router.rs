//! The router: a sans-IO state machine that owns users, presence, capacity, load and
//! the per-group FIFO queues, and decides which agent serves which conversation.
//!
//! It never sees message traffic, only lifecycle events ([`RouterMsg`]); everything it
//! wants done comes out as [`Effect`]s: [`ShardMsg`](super::ShardMsg)s for the conversation shards and
//! frames (`Queued`, `Notice`, request errors) for connections.
//!
//! Invariants kept after every [`Router::handle`] and [`Router::tick`]:
//! - an agent's assigned set never exceeds its capacity;
//! - a conversation without an agent sits in exactly one queue, exactly once;
//! - an assigned conversation has one agent, and that agent lists it;
//! - a non-empty queue has no member that could take its head (online, free capacity),
//!   so filling an agent's freed capacity from its own groups' queues is enough.
//!
//! Closed conversations are forgotten (not tombstoned), so memory follows live
//! conversations; a later `Claim` of one is answered `NotFound`.

use std::collections::{BTreeSet, VecDeque};

use super::availability::{Availability, WaitEstimate};
use super::conversation::OpenConversation;
pub(crate) use super::settings::RouterSettings;
use super::{Effect, Principal, RouterMsg, UserRef, is_staff_role, refuse};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::clock::Mono;
use crate::fasthash::{ClientMap, ServerMap};
use crate::handoff::ConnId;
use crate::metrics::RouterMetrics;
use crate::protocol::messages::role;

/// Most non-closed conversations one visitor may hold at once (one per group): a
/// visitor naming a fresh group per `Send` would otherwise allocate without bound.
pub(crate) const MAX_OPEN_PER_VISITOR: usize = 32;

/// The `Close` reason of a conversation whose visitor went away while it waited.
pub(crate) const ABANDONED: &str = "abandoned";

mod agents;
mod assign;
mod availability;
mod directory;
#[cfg(test)]
mod inspect;
mod queue;
#[cfg(test)]
mod tests;

/// What the router's gauges show, as one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouterGauges {
    /// Agents and bots connected and not away.
    pub agents_online: usize,
    /// Conversations waiting in a queue.
    pub queued: usize,
    /// Conversations an agent serves.
    pub assigned: usize,
    /// Queue length per (tenant, group).
    pub queues: Vec<(String, String, u64)>,
}

/// Takes the soonest of `deadlines` out if it is due at `now_ms`.
fn pop_due(deadlines: &mut BTreeSet<(u64, UserRef)>, now_ms: u64) -> Option<(u64, UserRef)> {
    if deadlines.first()?.0 > now_ms {
        return None;
    }
    deadlines.pop_first()
}

/// One user of a tenant, as the router knows it: what every user has, here; what
/// only agents, bots and visitors with conversations need, in [`More`], allocated the
/// first time one of its fields is written. An idle visitor's record is 96 bytes
/// (mimalloc's 96-byte class), not 192 (README, "Memory per authenticated session").
/// Reads of `More`'s fields go through `Deref` (a user without one reads its
/// defaults); writes through `DerefMut` allocate it.
#[derive(Debug)]
struct User {
    /// Live connections, in connect order. `Box<str>`/`Box<[_]>` here and below:
    /// 8 bytes less each than `String`/`Vec`; most users hold one of each, grown
    /// exactly.
    conns: Box<[ConnId]>,
    /// Display name (from the latest token); `None` when it is the user id (a
    /// token without `name`), which then is not kept twice.
    name: Option<Box<str>>,
    /// Role code (from the latest token).
    role: u8,
    /// Groups, deduplicated, in token order.
    groups: Box<[String]>,
    /// Groups whose availability the user's watching connections are told (a
    /// visitor's token groups or the default group, those its conversations opened
    /// or moved to, and those a `Watch` named); at most `MAX_WATCHED`.
    watching: Box<[String]>,
    /// The connections that sent `Watch`: only they are sent `Availability`.
    watch_conns: Box<[ConnId]>,
    /// Capacity, conversations and deadlines; `None` while all are at their defaults.
    more: Option<Box<More>>,
}

/// The part of a [`User`] an idle visitor does not need.
#[derive(Debug)]
struct More {
    /// Most concurrent conversations as agent.
    capacity: u32,
    /// Said `away` (or `offline`) while connected: takes nothing new.
    away: bool,
    /// Conversations this user serves as agent or bot.
    assigned: BTreeSet<u64>,
    /// Non-closed conversations this user opened as visitor. Kept apart from
    /// `assigned` so a user whose role changes between tokens cannot mix them up.
    open: BTreeSet<u64>,
    /// When the user connected or last lost a conversation (tie-break: longest idle).
    idle_since: u64,
    /// When the grace after the last disconnect ends (an entry of `Router::graces`).
    grace: Option<u64>,
    /// When a visitor gone since its last disconnect counts as having abandoned its
    /// queued conversations (an entry of `Router::abandons`).
    abandon_at: Option<u64>,
}

impl More {
    /// Every field at its default, idle since `idle_since`.
    const fn new(idle_since: u64) -> Self {
        More {
            capacity: 0,
            away: false,
            assigned: BTreeSet::new(),
            open: BTreeSet::new(),
            idle_since,
            grace: None,
            abandon_at: None,
        }
    }
}

/// What a user without a [`More`] reads.
static NO_MORE: More = More::new(0);

impl std::ops::Deref for User {
    type Target = More;

    fn deref(&self) -> &More {
        self.more.as_deref().unwrap_or(&NO_MORE)
    }
}

impl std::ops::DerefMut for User {
    fn deref_mut(&mut self) -> &mut More {
        self.more.get_or_insert_with(|| Box::new(More::new(0)))
    }
}

impl User {
    /// A user with no connection yet, idle since `now_ms` (boxed, as
    /// [`Tenant::users`] keeps it). Agents and bots get their [`More`] at once.
    fn new(role: u8, now_ms: u64) -> Box<Self> {
        let mut user = Box::new(User {
            conns: Box::default(),
            name: None,
            role,
            groups: Box::default(),
            watching: Box::default(),
            watch_conns: Box::default(),
            more: None,
        });
        if user.is_staff() {
            user.more_at(now_ms);
        }
        user
    }

    /// The display name of this user, whose id is `id`.
    fn name<'a>(&'a self, id: &'a str) -> &'a str {
        self.name.as_deref().unwrap_or(id)
    }

    /// Keeps `name` as the display name of this user, whose id is `id`.
    fn set_name(&mut self, name: &str, id: &str) {
        if self.name(id) != name {
            self.name = (name != id).then(|| name.into());
        }
    }

    /// A user known only from a recovered conversation: no name until it connects.
    fn unnamed(role: u8, now_ms: u64) -> Box<Self> {
        let mut user = Self::new(role, now_ms);
        user.name = Some(Box::default());
        user
    }

    /// The user's [`More`], allocated idle since `now_ms` if it had none.
    fn more_at(&mut self, now_ms: u64) -> &mut More {
        self.more.get_or_insert_with(|| Box::new(More::new(now_ms)))
    }

    /// An agent or a bot.
    fn is_staff(&self) -> bool {
        is_staff_role(self.role)
    }

    /// Connected, not away.
    fn online(&self) -> bool {
        self.is_staff() && !self.conns.is_empty() && !self.away
    }

    /// Below capacity.
    fn has_room(&self) -> bool {
        self.assigned.len() < self.capacity as usize
    }

    /// May be given a new conversation by routing or transfer.
    fn available(&self) -> bool {
        self.online() && self.has_room()
    }

    /// Nothing left worth remembering.
    fn forgettable(&self) -> bool {
        self.conns.is_empty() && self.assigned.is_empty() && self.open.is_empty()
    }
}

/// Appends `c` to a list kept exact (`Box<[_]>`: most hold one).
fn push_conn(list: &mut Box<[ConnId]>, c: ConnId) {
    let mut v = std::mem::take(list).into_vec();
    v.reserve_exact(1);
    v.push(c);
    *list = v.into_boxed_slice();
}

/// Removes `c` from a list kept exact.
fn remove_conn(list: &mut Box<[ConnId]>, c: ConnId) {
    if list.contains(&c) {
        let mut v = std::mem::take(list).into_vec();
        v.retain(|x| *x != c);
        *list = v.into_boxed_slice();
    }
}

/// A group of a tenant: its queue, its agent/bot members, and the visitors who are
/// told its availability.
#[derive(Debug, Default)]
struct Group {
    /// Conversation ids waiting, oldest first.
    queue: VecDeque<u64>,
    /// User ids of the agents and bots whose token lists this group.
    members: BTreeSet<String>,
    /// How many users watch the group's availability (have it in `User::watching`):
    /// a count, not their ids, since most visitors never send `Watch` and a set entry
    /// with its copy of the id cost ~57 bytes per visitor (README, "Memory per
    /// authenticated session").
    watchers: u32,
    /// User ids of the watchers with a connection that sent `Watch`: those told.
    listeners: BTreeSet<String>,
    /// Recent queue waits.
    estimate: WaitEstimate,
    /// What the watchers were told last (`None`: not computed yet).
    told: Option<Availability>,
    /// When `told` was last computed (it may not have changed).
    told_at: u64,
}

impl Group {
    /// Nothing left worth keeping (its wait history goes with it).
    fn unused(&self) -> bool {
        self.members.is_empty() && self.queue.is_empty() && self.watchers == 0
    }
}

/// Everything of one tenant; tenants never share state.
#[derive(Debug, Default)]
struct Tenant {
    /// Boxed: the table keeps ~40% of its buckets empty (and, growing, its old
    /// tables for a while); a pointer a bucket keeps that slack at 8 bytes. The key
    /// a `Box<str>`: 24-byte buckets, not 32.
    users: ClientMap<Box<str>, Box<User>>,
    groups: ClientMap<String, Group>,
}

/// A non-closed conversation.
#[derive(Debug)]
struct Conv {
    tenant: String,
    /// Group it waits or is served in.
    group: String,
    /// Visitor's user id.
    visitor: String,
    /// Serving agent's user id; `None` while queued.
    agent: Option<String>,
    /// Transfer note for the next agent (empty for none).
    note: String,
    /// Last queue position the visitor was told (0: none since it last entered).
    told: u32,
    /// When it started waiting (orders queue heads across groups).
    since: u64,
    /// When it last entered its group's queue (for the wait estimate).
    queued_at: u64,
    /// Opened, but its shard has not yet stored the opening message (which the abuse
    /// filter may refuse): in no queue, assigned to nobody, not claimable.
    pending: bool,
    /// Its visitor left an offline message (`flags::OFFLINE`): never abandoned.
    offline: bool,
}

/// Where a transfer wants a conversation to go.
struct Target {
    /// Target agent's user id (empty: any agent of `group`).
    agent: String,
    /// Target group (empty: the conversation's group).
    group: String,
    /// Note for the next agent.
    note: String,
}

/// The router state machine (see the module docs).
#[derive(Debug)]
pub(crate) struct Router {
    settings: RouterSettings,
    /// Connection → who (the session's principal, shared with its worker).
    directory: ServerMap<ConnId, Arc<Principal>>,
    tenants: ClientMap<String, Tenant>,
    convs: ServerMap<u64, Conv>,
    /// Pending agent graces, soonest first.
    graces: BTreeSet<(u64, UserRef)>,
    /// Pending visitor graces (abandonment), soonest first.
    abandons: BTreeSet<(u64, UserRef)>,
    /// Groups (tenant, group) whose availability may have changed since visitors
    /// were last told.
    dirty: BTreeSet<(String, String)>,
    /// Groups the shards were last told have an agent or bot online
    /// (`ShardControl::GroupOnline`); any other group is offline.
    online: BTreeSet<(String, String)>,
    /// Time of the message being handled.
    now_ms: u64,
    /// When groups with a queue are next looked at again (availability).
    next_refresh_ms: u64,
    /// Some group with a queue has watchers (as of the last look, or since a
    /// conversation entered a queue): the router wakes for `next_refresh_ms`.
    watched_queue: bool,
    next_id: u64,
    /// Where per-group figures are counted (`None` in tests that need none).
    metrics: Option<Arc<CachePadded<RouterMetrics>>>,
}

impl Router {
    /// A router with no users and no conversations; ids start at 1.
    pub fn new(settings: RouterSettings) -> Self {
        Router {
            settings,
            directory: ServerMap::default(),
            tenants: ClientMap::default(),
            convs: ServerMap::default(),
            graces: BTreeSet::new(),
            abandons: BTreeSet::new(),
            dirty: BTreeSet::new(),
            online: BTreeSet::new(),
            now_ms: 0,
            next_refresh_ms: 0,
            watched_queue: false,
            next_id: 1,
            metrics: None,
        }
    }

    /// Counts per-group figures (opened, abandoned, queue waits) in `metrics` from
    /// now on.
    pub fn count_in(&mut self, metrics: Arc<CachePadded<RouterMetrics>>) {
        self.metrics = Some(metrics);
    }

    /// Applies one message at `now` (the router thread's monotonic clock).
    pub fn handle(&mut self, msg: RouterMsg, now: Mono, out: &mut Vec<Effect>) {
        let now_ms = now.as_ms();
        self.now_ms = now_ms;
        match msg {
            RouterMsg::Connected {
                conn,
                principal,
                capacity,
            } => self.connected(conn, principal, capacity, now_ms, out),
            RouterMsg::Disconnected { conn } => self.disconnected(conn, now_ms, out),
            RouterMsg::Presence { from, status } => self.presence(&from, status, out),
            RouterMsg::Watch { from, group } => self.watch_request(&from, group, out),
            RouterMsg::Open { from, send } => self.open(from, send, now_ms, out),
            RouterMsg::Claim { from, conversation } => self.claim(&from, conversation, out),
            RouterMsg::Transfer {
                conversation,
                group,
                from,
                to_agent,
                to_group,
                note,
            } => {
                let target = Target {
                    agent: to_agent,
                    group: to_group,
                    note,
                };
                self.transfer(conversation, &group, &from, target, now_ms, out)
            }
            RouterMsg::Closed { conversation } => self.closed(conversation, now_ms, out),
            RouterMsg::Opened { conversation } => self.opened(conversation, now_ms, out),
            RouterMsg::Offline { conversation } => {
                if let Some(c) = self.convs.get_mut(&conversation) {
                    c.offline = true;
                }
            }
            RouterMsg::OpenRefused { conversation } => self.open_refused(conversation),
            RouterMsg::Notice { from, notice } => self.notice(&from, notice, out),
            RouterMsg::Disconnect { from, user, reason } => {
                self.disconnect(&from, &user, reason, out)
            }
            RouterMsg::Settings(s) => self.settings = s,
            RouterMsg::Ack {
                conversation: 0,
                conn,
                rid,
            } => out.push(crate::service::api_ack(conn, rid)),
            RouterMsg::Ack {
                conversation,
                conn,
                rid,
            } => out.push(Effect::Shard(super::ShardMsg::Answer {
                conversation,
                conn,
                rid,
            })),
            RouterMsg::Assign {
                from,
                conversation,
                agent,
            } => self.assign_to(&from, conversation, &agent, out),
            RouterMsg::Agents { from, group } => {
                let body = self.agents_json(&from.who.tenant, &group);
                out.push(Effect::Reactor(crate::handoff::Command::Answer {
                    conn: from.conn,
                    rid: from.rid,
                    body,
                }));
            }
        }
        self.announce(out);
    }

    /// Rebuilds the router's view after a restart from the conversations the shards
    /// recovered (oldest first): queued ones wait in their groups' queues in that
    /// order; assigned ones stay with their agents, who are offline now and get the
    /// usual grace to come back before their conversations are requeued.
    pub fn restore(&mut self, convs: Vec<OpenConversation>, next_id: u64, now: Mono) {
        let now_ms = now.as_ms();
        self.next_id = self.next_id.max(next_id);
        let deadline = now_ms.saturating_add(self.settings.agent_grace_ms);
        for c in convs {
            let tenant = self.tenants.entry(c.visitor.tenant.clone()).or_default();
            tenant
                .users
                .entry(c.visitor.user.as_str().into())
                .or_insert_with(|| User::unnamed(role::VISITOR, now_ms))
                .open
                .insert(c.id);
            match &c.agent {
                Some(agent) => {
                    let user = tenant
                        .users
                        .entry(agent.as_str().into())
                        .or_insert_with(|| User::unnamed(role::AGENT, now_ms));
                    user.assigned.insert(c.id);
                    if user.grace.is_none() {
                        user.grace = Some(deadline);
                        self.graces.insert((
                            deadline,
                            UserRef {
                                tenant: c.visitor.tenant.clone(),
                                user: agent.clone(),
                            },
                        ));
                    }
                }
                None => tenant
                    .groups
                    .entry(c.group.clone())
                    .or_default()
                    .queue
                    .push_back(c.id),
            }
            let visitor = c.visitor.clone();
            self.convs.insert(
                c.id,
                Conv {
                    tenant: c.visitor.tenant,
                    group: c.group,
                    visitor: c.visitor.user,
                    agent: c.agent,
                    note: String::new(),
                    told: 0,
                    since: now_ms,
                    queued_at: now_ms,
                    pending: false,
                    offline: c.offline,
                },
            );
            // Nobody is connected after a restart: visitors get their grace too.
            self.watch_absent(&visitor, now_ms);
        }
    }

    /// Fires the deadlines due at `now` (agent grace expiry, visitor abandonment).
    pub fn tick(&mut self, now: Mono, out: &mut Vec<Effect>) {
        let now_ms = now.as_ms();
        self.now_ms = now_ms;
        while let Some((deadline, who)) = pop_due(&mut self.graces, now_ms) {
            self.grace_expired(&who, deadline, now_ms, out);
        }
        while let Some((deadline, who)) = pop_due(&mut self.abandons, now_ms) {
            self.abandoned(&who, deadline, now_ms, out);
        }
        self.refresh_queues();
        self.announce(out);
    }

    /// The next deadline, if any, for the thread's sleep.
    pub fn next_deadline(&self) -> Option<Mono> {
        let grace = self.graces.first().map(|(d, _)| *d);
        let abandon = self.abandons.first().map(|(d, _)| *d);
        // A watched queue's head waits longer with time alone: look again even when
        // nothing else happens.
        let refresh = self.watched_queue.then_some(self.next_refresh_ms);
        let ms = [grace, abandon, refresh].into_iter().flatten().min()?;
        Some(Mono::from_ms(ms))
    }

    /// A snapshot for the metrics.
    pub fn gauges(&self) -> RouterGauges {
        let assigned = self.convs.values().filter(|c| c.agent.is_some()).count();
        let mut queues = Vec::new();
        for (tenant, t) in &self.tenants {
            for (group, g) in &t.groups {
                queues.push((tenant.clone(), group.clone(), g.queue.len() as u64));
            }
        }
        let queued = queues.iter().map(|q| q.2 as usize).sum();
        RouterGauges {
            agents_online: self.online_agents(),
            queued,
            assigned,
            queues,
        }
    }

    /// A user's record.
    fn user(&self, tenant: &str, user: &str) -> Option<&User> {
        self.tenants.get(tenant)?.users.get(user).map(|u| &**u)
    }

    /// A user's record, to change.
    fn user_mut(&mut self, tenant: &str, user: &str) -> Option<&mut User> {
        self.tenants
            .get_mut(tenant)?
            .users
            .get_mut(user)
            .map(|u| &mut **u)
    }

    /// A group of a tenant.
    fn group(&self, tenant: &str, group: &str) -> Option<&Group> {
        self.tenants.get(tenant)?.groups.get(group)
    }
}
