//! Who is connected: the directory of connections, presence, agent and visitor
//! graces, and the connection lists the shards are told.

use std::sync::Arc;

use super::{Router, User};
use crate::handoff::ConnId;
use crate::protocol::ErrorCode;
use crate::protocol::messages::{self, Msg, presence, role};
use crate::service::{Effect, Principal, Sender, ShardMsg, UserRef, is_staff_role, refuse, to_all};

impl Router {
    /// A session completed its handshake: record the connection, refresh the user
    /// from its token (`principal`; `capacity`: the token's, if any), end any grace,
    /// and put a newly free agent to work.
    pub(super) fn connected(
        &mut self,
        conn: ConnId,
        principal: Arc<Principal>,
        capacity: Option<u32>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        if let Some(prev) = self.directory.get(&conn) {
            if prev.who == principal.who {
                return;
            }
            // A reused id for someone else: the old session is over.
            self.disconnected(conn, now_ms, out);
        }
        self.directory.insert(conn, Arc::clone(&principal));
        let who = &principal.who;
        let role = principal.role;
        let capacity = capacity.unwrap_or(match role {
            role::AGENT => self.settings.default_capacity,
            role::BOT => self.settings.bot_capacity,
            _ => 0,
        });
        let mut unique: Vec<String> = Vec::with_capacity(principal.groups.len());
        for g in &principal.groups {
            if !unique.contains(g) {
                unique.push(g.clone());
            }
        }

        let tenant = self.tenants.entry(who.tenant.clone()).or_default();
        let user = tenant
            .users
            .entry(who.user.as_str().into())
            // The name is set below (for a new user as for a known one).
            .or_insert_with(|| User::new(role, now_ms));
        let old_index = if user.is_staff() {
            std::mem::take(&mut user.groups).into_vec()
        } else {
            Vec::new()
        };
        let back = user.conns.is_empty();
        // Exact: most users hold one connection (a `Vec` would start at four).
        super::push_conn(&mut user.conns, conn);
        user.set_name(principal.display_name(), &who.user);
        user.role = role;
        user.groups = unique.into_boxed_slice();
        // An idle visitor's record stays without its `More` (all defaults).
        let more = if is_staff_role(role) || capacity != 0 {
            Some(user.more_at(now_ms))
        } else {
            user.more.as_deref_mut()
        };
        let (mut grace, mut abandon_at) = (None, None);
        if let Some(more) = more {
            if back {
                // Back from offline: online again whatever it said before.
                more.away = false;
                more.idle_since = now_ms;
            }
            more.capacity = capacity;
            grace = more.grace.take();
            abandon_at = more.abandon_at.take();
        }
        if let Some(deadline) = grace {
            self.graces.remove(&(deadline, who.clone()));
        }
        if let Some(deadline) = abandon_at {
            self.abandons.remove(&(deadline, who.clone()));
        }
        let new_index = if user.is_staff() {
            user.groups.to_vec()
        } else {
            Vec::new()
        };
        let staff = user.is_staff();
        let watch = if staff {
            Vec::new()
        } else if user.groups.is_empty() {
            vec![self.settings.default_group.clone()]
        } else {
            user.groups.to_vec()
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

        self.push_conns(who, out);
        self.tell_positions_to(who, conn, out);
        // Before routing fills it: what it takes leaves the queue with a position 0.
        self.tell_queues_to(who, conn, out);
        self.fill(who, out);
        if !staff {
            self.watch(who, &watch, out);
        }
    }

    /// A session ended: an agent losing its last connection keeps its conversations
    /// for `agent_grace_ms` (a reconnect within it changes nothing).
    pub(super) fn disconnected(&mut self, conn: ConnId, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(principal) = self.directory.remove(&conn) else {
            return;
        };
        let who = &principal.who;
        let grace_ms = self.settings.agent_grace_ms;
        let Some(user) = self.user_mut(&who.tenant, &who.user) else {
            return;
        };
        super::remove_conn(&mut user.conns, conn);
        let listened = !user.watch_conns.is_empty();
        super::remove_conn(&mut user.watch_conns, conn);
        let unheard = listened && user.watch_conns.is_empty();
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
        if unheard {
            self.listening(who, false);
        }
        self.staff_changed(who);
        self.watch_absent(who, now_ms);
        self.push_conns(who, out);
        self.forget_if_idle(who);
    }

    /// Whether `deadline` is still `who`'s (the field `slot` picks, cleared now) and
    /// `who` is still away: a deadline that a reconnect cancelled or a later one
    /// replaced does nothing.
    pub(super) fn expired(
        &mut self,
        who: &UserRef,
        deadline: u64,
        slot: fn(&mut User) -> &mut Option<u64>,
    ) -> bool {
        // A user without a `More` has no deadline (and is not given one here).
        let Some(user) = self
            .user_mut(&who.tenant, &who.user)
            .filter(|u| u.more.is_some())
        else {
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
    pub(super) fn grace_expired(
        &mut self,
        who: &UserRef,
        deadline: u64,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
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

    /// Starts a visitor's grace when it has no connection left but conversations
    /// open: past it, those still waiting in a queue are closed as abandoned.
    pub(super) fn watch_absent(&mut self, who: &UserRef, now_ms: u64) {
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

    /// An agent or bot sets its presence.
    pub(super) fn presence(&mut self, from: &Sender, status: u8, out: &mut Vec<Effect>) {
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

    /// An admin's broadcast to a group's agents and bots, or to the whole tenant.
    pub(super) fn notice(
        &mut self,
        from: &Sender,
        notice: messages::Notice,
        out: &mut Vec<Effect>,
    ) {
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
                if let Some(user) = tenant.users.get(uid.as_str()).filter(|u| u.is_staff()) {
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
    pub(super) fn disconnect(
        &mut self,
        from: &Sender,
        user: &str,
        reason: String,
        out: &mut Vec<Effect>,
    ) {
        if from.role != role::ADMIN {
            refuse(out, from, ErrorCode::Forbidden, 0);
            return;
        }
        let conns: Vec<ConnId> = self
            .user(&from.who.tenant, user)
            .map(|u| u.conns.to_vec())
            .unwrap_or_default();
        let reply = Msg::from(messages::Disconnected {
            sessions: u32::try_from(conns.len()).unwrap_or(u32::MAX),
            user: user.to_owned(),
        });
        crate::service::send(out, from.conn, reply.to_frame(from.rid));
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
    pub(super) fn push_conns(&self, who: &UserRef, out: &mut Vec<Effect>) {
        let Some(user) = self.user(&who.tenant, &who.user) else {
            return;
        };
        for id in user.assigned.iter().chain(user.open.iter()) {
            out.push(Effect::Shard(ShardMsg::Conns {
                conversation: *id,
                who: who.clone(),
                conns: user.conns.to_vec(),
            }));
        }
    }

    /// Conversation `id` is over for its visitor (`tenant`, `user`): off the
    /// visitor's open list, and the visitor forgotten if nothing else holds it.
    pub(super) fn visitor_left(&mut self, tenant: String, user: String, id: u64) {
        let visitor = UserRef { tenant, user };
        if let Some(more) = self
            .user_mut(&visitor.tenant, &visitor.user)
            .and_then(|u| u.more.as_deref_mut())
        {
            more.open.remove(&id);
        }
        self.forget_if_idle(&visitor);
    }

    /// Forgets a user with no connection, no conversation and no pending grace.
    pub(super) fn forget_if_idle(&mut self, who: &UserRef) {
        let Some(tenant) = self.tenants.get_mut(&who.tenant) else {
            return;
        };
        if !tenant
            .users
            .get(who.user.as_str())
            .is_some_and(|u| u.forgettable())
        {
            return;
        }
        let Some(user) = tenant.users.remove(who.user.as_str()) else {
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
                group.watchers = group.watchers.saturating_sub(1);
                group.listeners.remove(&who.user);
                if group.unused() {
                    tenant.groups.remove(g);
                }
            }
        }
        if tenant.users.is_empty() && tenant.groups.is_empty() {
            self.tenants.remove(&who.tenant);
        }
    }

    /// Agents and bots that are connected and not away.
    pub fn online_agents(&self) -> usize {
        self.tenants
            .values()
            .flat_map(|t| t.users.values())
            .filter(|u| u.online())
            .count()
    }
}

impl Router {
    /// Measurement only (`service::session_memory`): drops the router's state piece
    /// by piece and names the heap bytes each piece held (`live`: the allocator's
    /// live bytes).
    pub(crate) fn dismantle(self, live: &dyn Fn() -> i64) -> Vec<(String, i64)> {
        use crate::service::session_memory::{freed, table_bytes};
        let Router {
            directory,
            tenants,
            convs,
            graces,
            abandons,
            dirty,
            ..
        } = self;
        let mut parts = Vec::new();
        let table = table_bytes::<(ConnId, Arc<Principal>)>(directory.capacity());
        let all = freed(directory, live);
        parts.push((
            format!(
                "router: directory map ConnId -> Arc<Principal>, {} B a bucket + 1",
                std::mem::size_of::<(ConnId, Arc<Principal>)>()
            ),
            table,
        ));
        parts.push((
            "router: Arc<Principal> (shared with the worker, freed with the last) and its strings"
                .to_owned(),
            all - table,
        ));
        let (mut groups, mut users, mut users_table) = (0, 0, 0);
        let tenants_table = table_bytes::<(String, super::Tenant)>(tenants.capacity());
        let mut rest = 0;
        for (name, t) in tenants {
            let super::Tenant {
                users: u,
                groups: g,
            } = t;
            groups += freed(g, live);
            users_table += table_bytes::<(Box<str>, Box<User>)>(u.capacity());
            users += freed(u, live);
            rest += freed(name, live);
        }
        parts.push((
            format!(
                "router: users map Box<str> -> Box<User>, {} B a bucket + 1",
                std::mem::size_of::<(Box<str>, Box<User>)>()
            ),
            users_table,
        ));
        parts.push((
            format!(
                "router: User ({} B) and its key, name, conns, watching",
                std::mem::size_of::<User>()
            ),
            users - users_table,
        ));
        parts.push((
            "router: groups (the default group: a watcher count, no listeners)".to_owned(),
            groups,
        ));
        parts.push(("router: tenants map".to_owned(), tenants_table + rest));
        let others =
            freed(convs, live) + freed(graces, live) + freed(abandons, live) + freed(dirty, live);
        parts.push((
            "router: conversations, graces, abandons, dirty".to_owned(),
            others,
        ));
        parts
    }
}
