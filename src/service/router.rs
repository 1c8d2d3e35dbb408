//! The router: a sans-IO state machine that owns users, presence, capacity, load and
//! the per-group FIFO queues, and decides which agent serves which conversation.
//!
//! It never sees message traffic, only lifecycle events ([`RouterMsg`]); everything it
//! wants done comes out as [`Effect`]s: [`ShardMsg`]s for the conversation shards and
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
use super::{
    Assignment, Effect, Opening, RouterMsg, Sender, ShardMsg, UserRef, is_staff_role, refuse,
    to_all,
};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::fasthash::{ClientMap, ServerMap};
use crate::handoff::ConnId;
use crate::metrics::RouterMetrics;
use crate::protocol::ErrorCode;
use crate::protocol::messages::{self, Msg, presence, role};

/// Most non-closed conversations one visitor may hold at once (one per group): a
/// visitor naming a fresh group per `Send` would otherwise allocate without bound.
pub(crate) const MAX_OPEN_PER_VISITOR: usize = 32;

/// The `Close` reason of a conversation whose visitor went away while it waited.
pub(crate) const ABANDONED: &str = "abandoned";

/// Routing knobs (from the config).
#[derive(Debug, Clone)]
pub(crate) struct RouterSettings {
    /// Group for visitors who name none and whose token has none.
    pub default_group: String,
    /// Capacity of agents whose token carries no `capacity` claim.
    pub default_capacity: u32,
    /// Capacity of bots whose token carries no `capacity` claim.
    pub bot_capacity: u32,
    /// How long an agent's conversations stay with it after its last connection goes.
    pub agent_grace_ms: u64,
    /// How long a visitor may be gone (no connection) before its queued
    /// conversations are closed as abandoned (0: never).
    pub visitor_grace_ms: u64,
}

impl RouterSettings {
    /// Router settings from a configuration.
    pub(crate) fn from_config(config: &crate::config::Config) -> Self {
        let r = &config.routing;
        Self {
            default_group: r.default_group.clone(),
            default_capacity: r.default_capacity,
            bot_capacity: r.bot_capacity,
            agent_grace_ms: crate::clock::millis(r.agent_grace),
            visitor_grace_ms: crate::clock::millis(r.visitor_grace),
        }
    }
}

/// One user of a tenant, as the router knows it.
#[derive(Debug)]
struct User {
    /// Live connections, in connect order.
    conns: Vec<ConnId>,
    /// Display name (from the latest token).
    name: String,
    /// Role code (from the latest token).
    role: u8,
    /// Groups, deduplicated, in token order.
    groups: Vec<String>,
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
    /// Groups whose availability the user's watching connections are told (a
    /// visitor's token groups or the default group, those its conversations opened
    /// or moved to, and those a `Watch` named); at most `MAX_WATCHED`.
    watching: Vec<String>,
    /// The connections that sent `Watch`: only they are sent `Availability`.
    watch_conns: Vec<ConnId>,
}

impl User {
    /// A user with no connection yet, idle since `now_ms`.
    fn new(name: String, role: u8, now_ms: u64) -> Self {
        User {
            conns: Vec::new(),
            name,
            role,
            groups: Vec::new(),
            capacity: 0,
            away: false,
            assigned: BTreeSet::new(),
            open: BTreeSet::new(),
            idle_since: now_ms,
            grace: None,
            abandon_at: None,
            watching: Vec::new(),
            watch_conns: Vec::new(),
        }
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

/// A group of a tenant: its queue, its agent/bot members, and the visitors who are
/// told its availability.
#[derive(Debug, Default)]
struct Group {
    /// Conversation ids waiting, oldest first.
    queue: VecDeque<u64>,
    /// User ids of the agents and bots whose token lists this group.
    members: BTreeSet<String>,
    /// User ids of the visitors watching the group's availability.
    watchers: BTreeSet<String>,
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
        self.members.is_empty() && self.queue.is_empty() && self.watchers.is_empty()
    }
}

/// Everything of one tenant; tenants never share state.
#[derive(Debug, Default)]
struct Tenant {
    users: ClientMap<String, User>,
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
}

/// What a connection's token says about its user.
struct Token {
    name: String,
    role: u8,
    groups: Vec<String>,
    capacity: Option<u32>,
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
    /// Connection → user.
    directory: ServerMap<ConnId, UserRef>,
    tenants: ClientMap<String, Tenant>,
    convs: ServerMap<u64, Conv>,
    /// Pending agent graces, soonest first.
    graces: BTreeSet<(u64, UserRef)>,
    /// Pending visitor graces (abandonment), soonest first.
    abandons: BTreeSet<(u64, UserRef)>,
    /// Groups (tenant, group) whose availability may have changed since visitors
    /// were last told.
    dirty: BTreeSet<(String, String)>,
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

    /// Applies one message at time `now_ms` (milliseconds, any monotonic origin).
    pub fn handle(&mut self, msg: RouterMsg, now_ms: u64, out: &mut Vec<Effect>) {
        self.now_ms = now_ms;
        match msg {
            RouterMsg::Connected {
                conn,
                who,
                name,
                role,
                groups,
                capacity,
            } => {
                let token = Token {
                    name,
                    role,
                    groups,
                    capacity,
                };
                self.connected(conn, who, token, now_ms, out)
            }
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
            RouterMsg::OpenRefused { conversation } => self.open_refused(conversation),
            RouterMsg::Notice { from, notice } => self.notice(&from, notice, out),
            RouterMsg::Disconnect { from, user, reason } => {
                self.disconnect(&from, &user, reason, out)
            }
            RouterMsg::Settings(s) => self.settings = s,
        }
        self.announce(out);
    }

    /// The id the next new conversation gets (tests).
    #[cfg(test)]
    pub fn next_conversation_id(&self) -> u64 {
        self.next_id
    }

    /// Rebuilds the router's view after a restart from the conversations the shards
    /// recovered (oldest first): queued ones wait in their groups' queues in that
    /// order; assigned ones stay with their agents, who are offline now and get the
    /// usual grace to come back before their conversations are requeued.
    pub fn restore(&mut self, convs: Vec<OpenConversation>, next_id: u64, now_ms: u64) {
        self.next_id = self.next_id.max(next_id);
        let deadline = now_ms.saturating_add(self.settings.agent_grace_ms);
        for c in convs {
            let tenant = self.tenants.entry(c.visitor.tenant.clone()).or_default();
            tenant
                .users
                .entry(c.visitor.user.clone())
                .or_insert_with(|| User::new(String::new(), role::VISITOR, now_ms))
                .open
                .insert(c.id);
            match &c.agent {
                Some(agent) => {
                    let user = tenant
                        .users
                        .entry(agent.clone())
                        .or_insert_with(|| User::new(String::new(), role::AGENT, now_ms));
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
                },
            );
            // Nobody is connected after a restart: visitors get their grace too.
            self.watch_absent(&visitor, now_ms);
        }
    }

    /// Fires due deadlines (agent grace expiry, visitor abandonment).
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        self.now_ms = now_ms;
        while let Some((deadline, _)) = self.graces.first() {
            if *deadline > now_ms {
                break;
            }
            let Some((deadline, who)) = self.graces.pop_first() else {
                break;
            };
            self.grace_expired(&who, deadline, now_ms, out);
        }
        while let Some((deadline, _)) = self.abandons.first() {
            if *deadline > now_ms {
                break;
            }
            let Some((deadline, who)) = self.abandons.pop_first() else {
                break;
            };
            self.abandoned(&who, deadline, now_ms, out);
        }
        self.refresh_queues();
        self.announce(out);
    }

    /// The next deadline, if any, for the thread's sleep.
    pub fn next_deadline(&self) -> Option<u64> {
        let grace = self.graces.first().map(|(d, _)| *d);
        let abandon = self.abandons.first().map(|(d, _)| *d);
        // A watched queue's head waits longer with time alone: look again even when
        // nothing else happens.
        let refresh = self.watched_queue.then_some(self.next_refresh_ms);
        [grace, abandon, refresh].into_iter().flatten().min()
    }

    /// Starts a visitor's grace when it has no connection left but conversations
    /// open: past it, those still waiting in a queue are closed as abandoned.
    fn watch_absent(&mut self, who: &UserRef, now_ms: u64) {
        let grace = self.settings.visitor_grace_ms;
        let Some(user) = self.user_mut(&who.tenant, &who.user) else {
            return;
        };
        if grace == 0 || !user.conns.is_empty() || user.open.is_empty() || user.abandon_at.is_some()
        {
            return;
        }
        let deadline = now_ms.saturating_add(grace);
        user.abandon_at = Some(deadline);
        self.abandons.insert((deadline, who.clone()));
    }

    /// A visitor stayed away past its grace: its conversations waiting in a queue
    /// are closed as abandoned. Assigned ones stay (their agent may close them); while
    /// the visitor stays away it is looked at again every grace.
    fn abandoned(&mut self, who: &UserRef, deadline: u64, now_ms: u64, out: &mut Vec<Effect>) {
        if !self.expired(who, deadline, |u| &mut u.abandon_at) {
            return;
        }
        let Some(user) = self.user(&who.tenant, &who.user) else {
            return;
        };
        let open: Vec<u64> = user.open.iter().copied().collect();
        for id in open {
            let waiting = self
                .convs
                .get(&id)
                .is_some_and(|c| c.agent.is_none() && !c.pending);
            if waiting {
                if let (Some(m), Some(c)) = (&self.metrics, self.convs.get(&id)) {
                    m.by_group.group(&c.group).abandoned.inc();
                }
                self.remove_from_queue(id, out);
                self.convs.remove(&id);
                if let Some(user) = self.user_mut(&who.tenant, &who.user) {
                    user.open.remove(&id);
                }
                out.push(Effect::Shard(ShardMsg::SystemClose {
                    conversation: id,
                    reason: ABANDONED.to_owned(),
                }));
            }
        }
        self.watch_absent(who, now_ms);
        self.forget_if_idle(who);
    }

    /// Conversations waiting in `group` of `tenant`.
    #[cfg(test)]
    pub fn queue_len(&self, tenant: &str, group: &str) -> usize {
        self.group(tenant, group).map_or(0, |g| g.queue.len())
    }

    /// Conversations `who` serves as agent.
    #[cfg(test)]
    pub fn active_count(&self, who: &UserRef) -> usize {
        self.user(&who.tenant, &who.user)
            .map_or(0, |u| u.assigned.len())
    }

    /// Agents and bots that are connected and not away.
    pub fn online_agents(&self) -> usize {
        self.tenants
            .values()
            .flat_map(|t| t.users.values())
            .filter(|u| u.online())
            .count()
    }

    /// Non-closed conversations.
    #[allow(dead_code, reason = "read by tests")]
    pub fn conversations(&self) -> usize {
        self.convs.len()
    }

    /// Snapshot for metrics: (agents online, conversations queued, assigned, queue
    /// length per (tenant, group)).
    pub fn gauges(&self) -> (usize, usize, usize, Vec<(String, String, u64)>) {
        let assigned = self.convs.values().filter(|c| c.agent.is_some()).count();
        let mut queues = Vec::new();
        for (tenant, t) in &self.tenants {
            for (group, g) in &t.groups {
                queues.push((tenant.clone(), group.clone(), g.queue.len() as u64));
            }
        }
        let queued = queues.iter().map(|q| q.2 as usize).sum();
        (self.online_agents(), queued, assigned, queues)
    }

    /// A user's record.
    fn user(&self, tenant: &str, user: &str) -> Option<&User> {
        self.tenants.get(tenant)?.users.get(user)
    }

    /// A user's record, to change.
    fn user_mut(&mut self, tenant: &str, user: &str) -> Option<&mut User> {
        self.tenants.get_mut(tenant)?.users.get_mut(user)
    }

    /// A group of a tenant.
    fn group(&self, tenant: &str, group: &str) -> Option<&Group> {
        self.tenants.get(tenant)?.groups.get(group)
    }

    /// A session completed its handshake: record the connection, refresh the user
    /// from its token, end any grace, and put a newly free agent to work.
    fn connected(
        &mut self,
        conn: ConnId,
        who: UserRef,
        token: Token,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let Token {
            name,
            role,
            groups,
            capacity,
        } = token;
        if let Some(prev) = self.directory.get(&conn) {
            if *prev == who {
                return;
            }
            // A reused id for someone else: the old session is over.
            self.disconnected(conn, now_ms, out);
        }
        self.directory.insert(conn, who.clone());
        let capacity = capacity.unwrap_or(match role {
            role::AGENT => self.settings.default_capacity,
            role::BOT => self.settings.bot_capacity,
            _ => 0,
        });
        let mut unique: Vec<String> = Vec::with_capacity(groups.len());
        for g in groups {
            if !unique.contains(&g) {
                unique.push(g);
            }
        }

        let tenant = self.tenants.entry(who.tenant.clone()).or_default();
        let user = tenant
            .users
            .entry(who.user.clone())
            .or_insert_with(|| User::new(name.clone(), role, now_ms));
        let old_index = if user.is_staff() {
            std::mem::take(&mut user.groups)
        } else {
            Vec::new()
        };
        if user.conns.is_empty() {
            // Back from offline: online again whatever it said before.
            user.away = false;
            user.idle_since = now_ms;
        }
        user.conns.push(conn);
        user.name = name;
        user.role = role;
        user.groups = unique;
        user.capacity = capacity;
        if let Some(deadline) = user.grace.take() {
            self.graces.remove(&(deadline, who.clone()));
        }
        if let Some(deadline) = user.abandon_at.take() {
            self.abandons.remove(&(deadline, who.clone()));
        }
        let new_index = if user.is_staff() {
            user.groups.clone()
        } else {
            Vec::new()
        };
        let staff = user.is_staff();
        let watch = if staff {
            Vec::new()
        } else if user.groups.is_empty() {
            vec![self.settings.default_group.clone()]
        } else {
            user.groups.clone()
        };
        for g in old_index.iter().chain(&new_index) {
            self.dirty.insert((who.tenant.clone(), g.clone()));
        }
        if old_index != new_index {
            for g in &old_index {
                if let Some(group) = tenant.groups.get_mut(g) {
                    group.members.remove(&who.user);
                    if group.unused() {
                        tenant.groups.remove(g);
                    }
                }
            }
            for g in new_index {
                tenant
                    .groups
                    .entry(g)
                    .or_default()
                    .members
                    .insert(who.user.clone());
            }
        }

        self.push_conns(&who, out);
        self.tell_positions_to(&who, conn, out);
        self.fill(&who, out);
        if !staff {
            self.watch(&who, &watch, out);
        }
    }

    /// A session ended: an agent losing its last connection keeps its conversations
    /// for `agent_grace_ms` (a reconnect within it changes nothing).
    fn disconnected(&mut self, conn: ConnId, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(who) = self.directory.remove(&conn) else {
            return;
        };
        let grace_ms = self.settings.agent_grace_ms;
        let Some(user) = self.user_mut(&who.tenant, &who.user) else {
            return;
        };
        user.conns.retain(|c| *c != conn);
        user.watch_conns.retain(|c| *c != conn);
        let grace = if user.conns.is_empty() && user.is_staff() && !user.assigned.is_empty() {
            let deadline = now_ms.saturating_add(grace_ms);
            user.grace = Some(deadline);
            Some(deadline)
        } else {
            None
        };
        if let Some(deadline) = grace {
            self.graces.insert((deadline, who.clone()));
        }
        self.staff_changed(&who);
        self.watch_absent(&who, now_ms);
        self.push_conns(&who, out);
        self.forget_if_idle(&who);
    }

    /// Whether `deadline` is still `who`'s (the field `slot` picks, cleared now) and
    /// `who` is still away: a deadline that a reconnect cancelled or a later one
    /// replaced does nothing.
    fn expired(
        &mut self,
        who: &UserRef,
        deadline: u64,
        slot: fn(&mut User) -> &mut Option<u64>,
    ) -> bool {
        let Some(user) = self.user_mut(&who.tenant, &who.user) else {
            return false;
        };
        let field = slot(user);
        if *field != Some(deadline) {
            return false;
        }
        *field = None;
        user.conns.is_empty()
    }

    /// An agent stayed away past its grace: its conversations go back to the front.
    fn grace_expired(&mut self, who: &UserRef, deadline: u64, now_ms: u64, out: &mut Vec<Effect>) {
        if !self.expired(who, deadline, |u| &mut u.grace) {
            return;
        }
        let Some(user) = self.user_mut(&who.tenant, &who.user) else {
            return;
        };
        let ids = std::mem::take(&mut user.assigned);
        user.idle_since = now_ms;
        self.staff_changed(who);
        // Oldest first: they get the first chance at an agent and the head of the queue.
        let mut ids: Vec<(u64, u64)> = ids
            .into_iter()
            .filter_map(|id| self.convs.get(&id).map(|c| (c.since, id)))
            .collect();
        ids.sort_unstable();
        for (_, id) in &ids {
            if let Some(conv) = self.convs.get_mut(id) {
                conv.agent = None;
                out.push(Effect::Shard(ShardMsg::Requeued {
                    conversation: *id,
                    group: conv.group.clone(),
                }));
            }
        }
        let mut waiting = Vec::new();
        for (_, id) in ids {
            if !self.try_assign(id, None, out) {
                waiting.push(id);
            }
        }
        self.enqueue_front(&waiting, out);
        self.forget_if_idle(who);
    }

    /// An agent or bot sets its presence.
    fn presence(&mut self, from: &Sender, status: u8, out: &mut Vec<Effect>) {
        if !is_staff_role(from.role) {
            refuse(out, from, ErrorCode::Forbidden, 0);
            return;
        }
        let away = match status {
            presence::ONLINE => false,
            // A connected client cannot be offline: it means "take nothing new".
            presence::AWAY | presence::OFFLINE => true,
            _ => {
                refuse(out, from, ErrorCode::BadRequest, 0);
                return;
            }
        };
        let Some(user) = self.user_mut(&from.who.tenant, &from.who.user) else {
            return;
        };
        user.away = away;
        self.staff_changed(&from.who);
        if !away {
            self.fill(&from.who, out);
        }
    }

    /// A visitor's first `Send`: continue its conversation in the group, or open one.
    fn open(&mut self, from: Sender, send: messages::Send, now_ms: u64, out: &mut Vec<Effect>) {
        if from.role != role::VISITOR {
            refuse(out, &from, ErrorCode::Forbidden, 0);
            return;
        }
        let group = if !send.group.is_empty() {
            send.group.clone()
        } else if let Some(g) = from.groups.first() {
            g.clone()
        } else {
            self.settings.default_group.clone()
        };
        let tenant = self.tenants.entry(from.who.tenant.clone()).or_default();
        // Sessions announce themselves before any request; this only guards the order.
        let user = tenant
            .users
            .entry(from.who.user.clone())
            .or_insert_with(|| User::new(from.name.clone(), from.role, now_ms));
        let existing = user
            .open
            .iter()
            .copied()
            .find(|id| self.convs.get(id).is_some_and(|c| c.group == group));
        if let Some(id) = existing {
            let msg = Msg::Send(messages::Send {
                conversation: id,
                ..send
            });
            out.push(Effect::Shard(ShardMsg::Request { from, msg }));
            return;
        }
        if user.open.len() >= MAX_OPEN_PER_VISITOR {
            refuse(out, &from, ErrorCode::RateLimited, 0);
            return;
        }
        let watched = user.watching.contains(&group);
        let id = self.next_id;
        self.next_id += 1;
        user.open.insert(id);
        let visitor_conns = user.conns.clone();
        let visitor_name = user.name.clone();
        self.convs.insert(
            id,
            Conv {
                tenant: from.who.tenant.clone(),
                group: group.clone(),
                visitor: from.who.user.clone(),
                agent: None,
                note: String::new(),
                told: 0,
                since: now_ms,
                queued_at: now_ms,
                pending: true,
            },
        );
        if !watched {
            self.watch(&from.who, std::slice::from_ref(&group), out);
        }
        // The shard screens and stores the opening message first; routing waits for
        // its `Opened` (a refused opener must leave nothing behind, not even a
        // `Queued` frame to the group's staff).
        out.push(Effect::Shard(ShardMsg::Open(Box::new(Opening {
            conversation: id,
            visitor: from.who.clone(),
            visitor_name,
            group,
            visitor_conns,
            send: messages::Send {
                conversation: id,
                ..send
            },
            opener: from,
        }))));
    }

    /// The shard stored the opening message: offer the conversation to an agent, or
    /// queue it.
    fn opened(&mut self, id: u64, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(conv) = self.convs.get_mut(&id).filter(|c| c.pending) else {
            return;
        };
        conv.pending = false;
        conv.since = now_ms;
        let figures = self.metrics.as_ref().map(|m| m.by_group.group(&conv.group));
        if let Some(f) = &figures {
            f.opened.inc();
        }
        if self.try_assign(id, None, out) {
            // Taken at once: a wait of 0 (the histogram counts every assignment
            // from a queue or at opening).
            if let Some(f) = figures {
                f.queue_wait.observe_ms(0);
            }
        } else {
            self.enqueue_back(id, out);
        }
    }

    /// The shard refused the opening message: the conversation never existed.
    fn open_refused(&mut self, id: u64) {
        if !self.convs.get(&id).is_some_and(|c| c.pending) {
            return;
        }
        let Some(conv) = self.convs.remove(&id) else {
            return;
        };
        let visitor = UserRef {
            tenant: conv.tenant,
            user: conv.visitor,
        };
        if let Some(user) = self.user_mut(&visitor.tenant, &visitor.user) {
            user.open.remove(&id);
        }
        self.forget_if_idle(&visitor);
    }

    /// An agent picks a waiting conversation out of the queue.
    fn claim(&mut self, from: &Sender, id: u64, out: &mut Vec<Effect>) {
        let Some(conv) = self.convs.get(&id) else {
            refuse(out, from, ErrorCode::NotFound, id);
            return;
        };
        if conv.tenant != from.who.tenant {
            refuse(out, from, ErrorCode::NotFound, id);
            return;
        }
        if !is_staff_role(from.role) || !from.groups.contains(&conv.group) {
            refuse(out, from, ErrorCode::Forbidden, id);
            return;
        }
        if conv.pending {
            // Not stored yet (and maybe never): nothing to claim.
            refuse(out, from, ErrorCode::NotFound, id);
            return;
        }
        let queued = conv.agent.is_none();
        // Unknown or gone from the router's view: it could not deliver to this agent.
        let Some(user) = self
            .user(&from.who.tenant, &from.who.user)
            .filter(|u| u.is_staff() && !u.conns.is_empty())
        else {
            refuse(out, from, ErrorCode::Forbidden, id);
            return;
        };
        if !queued || !user.has_room() {
            refuse(out, from, ErrorCode::Conflict, id);
            return;
        }
        if let Some(waited) = self.remove_from_queue(id, out) {
            self.waited(id, waited);
        }
        self.assign(id, &from.who.user, out);
    }

    /// The assigned agent hands a conversation to another agent or group.
    fn transfer(
        &mut self,
        id: u64,
        shard_group: &str,
        from: &UserRef,
        to: Target,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let Some(conv) = self.convs.get_mut(&id) else {
            return;
        };
        // The shard authorized it against its view; ignore it if routing moved on since
        // (e.g. the agent's grace expired and the conversation was requeued).
        if conv.tenant != from.tenant || conv.agent.as_deref() != Some(from.user.as_str()) {
            tracing::debug!(conversation = id, "ignoring a stale transfer");
            return;
        }
        if conv.group != shard_group {
            // The router's group wins; a mismatch means a Requeued/Assign is in flight.
            tracing::debug!(conversation = id, router = %conv.group, shard = %shard_group, "transfer names another group");
        }
        let Target {
            agent: to_agent,
            group: to_group,
            note,
        } = to;
        let target = if to_group.is_empty() {
            conv.group.clone()
        } else {
            to_group
        };
        let visitor = UserRef {
            tenant: conv.tenant.clone(),
            user: conv.visitor.clone(),
        };
        conv.agent = None;
        conv.note = note;
        if let Some(user) = self.user_mut(&from.tenant, &from.user) {
            user.assigned.remove(&id);
            user.idle_since = now_ms;
        }
        let direct = !to_agent.is_empty()
            && to_agent != from.user
            && self
                .user(&from.tenant, &to_agent)
                .is_some_and(User::available);
        if direct {
            if let Some(conv) = self.convs.get_mut(&id) {
                conv.group = target;
            }
            self.assign(id, &to_agent, out);
        } else {
            out.push(Effect::Shard(ShardMsg::Requeued {
                conversation: id,
                group: target.clone(),
            }));
            if let Some(conv) = self.convs.get_mut(&id) {
                conv.group = target;
                conv.since = now_ms;
            }
            // Someone else: handing it straight back to the giver would defeat the transfer.
            if !self.try_assign(id, Some(&from.user), out) {
                self.enqueue_back(id, out);
            }
        }
        self.fill(from, out);
        self.forget_if_idle(from);
        let moved = self.convs.get(&id).map(|c| c.group.clone());
        if let Some(group) = moved {
            self.watch(&visitor, &[group], out);
        }
    }

    /// A shard closed a conversation: free its queue slot or its agent.
    fn closed(&mut self, id: u64, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(queued) = self.convs.get(&id).map(|c| c.agent.is_none() && !c.pending) else {
            return;
        };
        if queued {
            self.remove_from_queue(id, out);
        }
        let Some(conv) = self.convs.remove(&id) else {
            return;
        };
        if let Some(agent) = conv.agent {
            let who = UserRef {
                tenant: conv.tenant.clone(),
                user: agent,
            };
            if let Some(user) = self.user_mut(&who.tenant, &who.user) {
                user.assigned.remove(&id);
                user.idle_since = now_ms;
            }
            self.fill(&who, out);
            self.forget_if_idle(&who);
        }
        let visitor = UserRef {
            tenant: conv.tenant,
            user: conv.visitor,
        };
        if let Some(user) = self.user_mut(&visitor.tenant, &visitor.user) {
            user.open.remove(&id);
        }
        self.forget_if_idle(&visitor);
    }

    /// An admin's broadcast to a group's agents and bots, or to the whole tenant.
    fn notice(&mut self, from: &Sender, notice: messages::Notice, out: &mut Vec<Effect>) {
        if from.role != role::ADMIN {
            refuse(out, from, ErrorCode::Forbidden, 0);
            return;
        }
        let Some(tenant) = self.tenants.get(&from.who.tenant) else {
            return;
        };
        let mut conns: Vec<ConnId> = Vec::new();
        if notice.group.is_empty() {
            for user in tenant.users.values() {
                conns.extend_from_slice(&user.conns);
            }
        } else if let Some(group) = tenant.groups.get(&notice.group) {
            for uid in &group.members {
                if let Some(user) = tenant.users.get(uid).filter(|u| u.is_staff()) {
                    conns.extend_from_slice(&user.conns);
                }
            }
        }
        if conns.is_empty() {
            return;
        }
        // Deterministic order whatever the map's.
        conns.sort_unstable();
        let frame = Msg::from(messages::Notice {
            time_ms: notice.time_ms,
            group: notice.group,
            from: from.who.user.clone(),
            text: notice.text,
        })
        .to_frame(0);
        to_all(out, &conns, frame);
    }

    /// An admin ends every session of `user` (of the admin's tenant): each gets an
    /// `Error` 206 carrying `reason` and is closed; the admin is told how many.
    fn disconnect(&mut self, from: &Sender, user: &str, reason: String, out: &mut Vec<Effect>) {
        if from.role != role::ADMIN {
            refuse(out, from, ErrorCode::Forbidden, 0);
            return;
        }
        let conns: Vec<ConnId> = self
            .user(&from.who.tenant, user)
            .map(|u| u.conns.clone())
            .unwrap_or_default();
        let reply = Msg::from(messages::Disconnected {
            sessions: u32::try_from(conns.len()).unwrap_or(u32::MAX),
            user: user.to_owned(),
        });
        super::send(out, from.conn, reply.to_frame(from.rid));
        let code = ErrorCode::Disconnected;
        let farewell = Msg::from(messages::Error {
            code: code.as_u16(),
            retryable: code.retryable(),
            conversation: 0,
            message: if reason.is_empty() {
                code.name().to_owned()
            } else {
                reason
            },
        })
        .to_frame(0);
        for conn in conns {
            tracing::info!(?conn, user, admin = %from.who.user, "session ended by an admin");
            out.push(Effect::Reactor(crate::handoff::Command::Close {
                conn,
                code: Some(code),
                farewell: Some(farewell.clone()),
            }));
        }
    }

    /// Tells every conversation `who` takes part in its new connection list.
    fn push_conns(&self, who: &UserRef, out: &mut Vec<Effect>) {
        let Some(user) = self.user(&who.tenant, &who.user) else {
            return;
        };
        for id in user.assigned.iter().chain(user.open.iter()) {
            out.push(Effect::Shard(ShardMsg::Conns {
                conversation: *id,
                who: who.clone(),
                conns: user.conns.clone(),
            }));
        }
    }

    /// A visitor's new connection learns where its waiting conversations stand.
    fn tell_positions_to(&self, who: &UserRef, conn: ConnId, out: &mut Vec<Effect>) {
        let Some(tenant) = self.tenants.get(&who.tenant) else {
            return;
        };
        let Some(user) = tenant.users.get(&who.user) else {
            return;
        };
        for id in &user.open {
            let Some(conv) = self.convs.get(id).filter(|c| c.agent.is_none()) else {
                continue;
            };
            let position = tenant
                .groups
                .get(&conv.group)
                .and_then(|g| g.queue.iter().position(|q| q == id));
            if let Some(index) = position {
                let frame = queued_frame(*id, position_of(index), &conv.group);
                to_all(out, &[conn], frame);
            }
        }
    }

    /// Forgets a user with no connection, no conversation and no pending grace.
    fn forget_if_idle(&mut self, who: &UserRef) {
        let Some(tenant) = self.tenants.get_mut(&who.tenant) else {
            return;
        };
        if !tenant.users.get(&who.user).is_some_and(User::forgettable) {
            return;
        }
        let Some(user) = tenant.users.remove(&who.user) else {
            return;
        };
        if let Some(deadline) = user.grace {
            self.graces.remove(&(deadline, who.clone()));
        }
        if let Some(deadline) = user.abandon_at {
            self.abandons.remove(&(deadline, who.clone()));
        }
        if user.is_staff() {
            for g in &user.groups {
                if let Some(group) = tenant.groups.get_mut(g) {
                    group.members.remove(&who.user);
                    if group.unused() {
                        tenant.groups.remove(g);
                    }
                }
            }
        }
        for g in &user.watching {
            if let Some(group) = tenant.groups.get_mut(g) {
                group.watchers.remove(&who.user);
                if group.unused() {
                    tenant.groups.remove(g);
                }
            }
        }
        if tenant.users.is_empty() && tenant.groups.is_empty() {
            self.tenants.remove(&who.tenant);
        }
    }

    /// The best available agent of a group: a bot first, then the fewest active
    /// conversations, then the longest idle, then the user id (determinism).
    fn pick(&self, tenant: &str, group: &str, exclude: Option<&str>) -> Option<String> {
        let t = self.tenants.get(tenant)?;
        let g = t.groups.get(group)?;
        let mut best: Option<(bool, usize, u64, &String)> = None;
        for uid in &g.members {
            if exclude == Some(uid.as_str()) {
                continue;
            }
            let Some(user) = t.users.get(uid).filter(|u| u.available()) else {
                continue;
            };
            let key = (
                user.role != role::BOT,
                user.assigned.len(),
                user.idle_since,
                uid,
            );
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        best.map(|(_, _, _, uid)| uid.clone())
    }

    /// Gives a conversation without an agent to the best available agent of its group.
    fn try_assign(&mut self, id: u64, exclude: Option<&str>, out: &mut Vec<Effect>) -> bool {
        let Some(conv) = self.convs.get(&id) else {
            return false;
        };
        match self.pick(&conv.tenant, &conv.group, exclude) {
            Some(agent) => self.assign(id, &agent, out),
            None => false,
        }
    }

    /// Records `agent` (of the conversation's tenant) as serving `id` and tells the shard.
    /// The caller has checked capacity and taken `id` out of any queue.
    fn assign(&mut self, id: u64, agent: &str, out: &mut Vec<Effect>) -> bool {
        let Some(conv) = self.convs.get_mut(&id) else {
            return false;
        };
        let Some(user) = self
            .tenants
            .get_mut(&conv.tenant)
            .and_then(|t| t.users.get_mut(agent))
        else {
            return false;
        };
        user.assigned.insert(id);
        conv.agent = Some(agent.to_owned());
        conv.told = 0;
        for g in &user.groups {
            self.dirty.insert((conv.tenant.clone(), g.clone()));
        }
        out.push(Effect::Shard(ShardMsg::Assign(Assignment {
            conversation: id,
            agent: UserRef {
                tenant: conv.tenant.clone(),
                user: agent.to_owned(),
            },
            agent_name: user.name.clone(),
            agent_conns: user.conns.clone(),
            group: conv.group.clone(),
            note: std::mem::take(&mut conv.note),
        })));
        true
    }

    /// Fills an agent's free capacity from the queues of its groups, oldest head first.
    fn fill(&mut self, who: &UserRef, out: &mut Vec<Effect>) {
        self.staff_changed(who);
        loop {
            let Some(tenant) = self.tenants.get(&who.tenant) else {
                return;
            };
            let Some(user) = tenant.users.get(&who.user).filter(|u| u.available()) else {
                return;
            };
            let mut oldest: Option<(u64, u64)> = None;
            for g in &user.groups {
                let head = tenant.groups.get(g).and_then(|g| g.queue.front());
                if let Some(c) = head.and_then(|id| self.convs.get(id).map(|c| (c.since, *id)))
                    && oldest.is_none_or(|o| c < o)
                {
                    oldest = Some(c);
                }
            }
            let Some((_, id)) = oldest else {
                return;
            };
            if let Some(waited) = self.remove_from_queue(id, out) {
                self.waited(id, waited);
            }
            if !self.assign(id, &who.user, out) {
                return;
            }
        }
    }

    /// Appends a new waiting conversation to its group's queue.
    fn enqueue_back(&mut self, id: u64, out: &mut Vec<Effect>) {
        let Some(conv) = self.convs.get(&id) else {
            return;
        };
        let (tenant, group) = (conv.tenant.clone(), conv.group.clone());
        let queue = &mut self
            .tenants
            .entry(tenant.clone())
            .or_default()
            .groups
            .entry(group.clone())
            .or_default()
            .queue;
        queue.push_back(id);
        let index = queue.len() - 1;
        self.entered_queue(id);
        self.tell_staff(&tenant, &group, id, position_of(index), out);
        self.tell_positions(&tenant, &group, index, out);
    }

    /// Puts conversations that had been waiting back at the heads of their queues,
    /// keeping their order (`ids` oldest first).
    fn enqueue_front(&mut self, ids: &[u64], out: &mut Vec<Effect>) {
        let mut touched: Vec<(String, String)> = Vec::new();
        for id in ids.iter().rev() {
            let Some(conv) = self.convs.get(id) else {
                continue;
            };
            let key = (conv.tenant.clone(), conv.group.clone());
            self.tenants
                .entry(key.0.clone())
                .or_default()
                .groups
                .entry(key.1.clone())
                .or_default()
                .queue
                .push_front(*id);
            self.entered_queue(*id);
            if !touched.contains(&key) {
                touched.push(key);
            }
        }
        for id in ids {
            let Some(conv) = self.convs.get(id) else {
                continue;
            };
            let (tenant, group) = (conv.tenant.clone(), conv.group.clone());
            let index = self
                .group(&tenant, &group)
                .and_then(|g| g.queue.iter().position(|q| q == id));
            if let Some(index) = index {
                self.tell_staff(&tenant, &group, *id, position_of(index), out);
            }
        }
        for (tenant, group) in touched {
            self.tell_positions(&tenant, &group, 0, out);
        }
    }

    /// Takes a conversation out of its queue (assigned, claimed or closed); how long
    /// it waited there, if it was in one.
    fn remove_from_queue(&mut self, id: u64, out: &mut Vec<Effect>) -> Option<u64> {
        let now_ms = self.now_ms;
        let conv = self.convs.get_mut(&id)?;
        conv.told = 0;
        let waited = now_ms.saturating_sub(conv.queued_at);
        let (tenant, group) = (conv.tenant.clone(), conv.group.clone());
        let g = self
            .tenants
            .get_mut(&tenant)
            .and_then(|t| t.groups.get_mut(&group))?;
        let index = g.queue.iter().position(|q| *q == id)?;
        g.queue.remove(index);
        self.tell_staff(&tenant, &group, id, 0, out);
        self.tell_positions(&tenant, &group, index, out);
        self.dirty.insert((tenant.clone(), group.clone()));
        if let Some(t) = self.tenants.get_mut(&tenant)
            && t.groups.get(&group).is_some_and(Group::unused)
        {
            t.groups.remove(&group);
        }
        Some(waited)
    }

    /// Tells each visitor waiting at `from` or later its position, when it changed.
    fn tell_positions(&mut self, tenant: &str, group: &str, from: usize, out: &mut Vec<Effect>) {
        let Some(t) = self.tenants.get(tenant) else {
            return;
        };
        let Some(g) = t.groups.get(group) else {
            return;
        };
        for (index, id) in g.queue.iter().enumerate().skip(from) {
            let Some(conv) = self.convs.get_mut(id) else {
                continue;
            };
            let position = position_of(index);
            if conv.told == position {
                continue;
            }
            conv.told = position;
            if let Some(visitor) = t.users.get(&conv.visitor) {
                to_all(out, &visitor.conns, queued_frame(*id, position, group));
            }
        }
    }

    /// Tells the group's connected agents and bots that a conversation entered the
    /// queue at `position`, or left it (0); one frame for all of them.
    fn tell_staff(&self, tenant: &str, group: &str, id: u64, position: u32, out: &mut Vec<Effect>) {
        let Some(t) = self.tenants.get(tenant) else {
            return;
        };
        let Some(g) = t.groups.get(group) else {
            return;
        };
        let conns: Vec<ConnId> = g
            .members
            .iter()
            .filter_map(|uid| t.users.get(uid))
            .filter(|u| u.is_staff())
            .flat_map(|u| u.conns.iter().copied())
            .collect();
        if !conns.is_empty() {
            to_all(out, &conns, queued_frame(id, position, group));
        }
    }
}

/// 1-based queue position of `index` (saturating; a queue that long is not real).
fn position_of(index: usize) -> u32 {
    u32::try_from(index.saturating_add(1)).unwrap_or(u32::MAX)
}

/// A `Queued` frame (unsolicited: request id 0).
fn queued_frame(conversation: u64, position: u32, group: &str) -> bytes::Bytes {
    Msg::from(messages::Queued {
        position,
        conversation,
        group: group.to_owned(),
    })
    .to_frame(0)
}

#[path = "router_availability.rs"]
mod availability;

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
