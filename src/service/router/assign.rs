//! Assignment: picking an agent, claims, transfers, and filling an agent's freed
//! capacity from its groups' queues.

use super::{Router, Target, User};
use crate::protocol::ErrorCode;
use crate::protocol::messages::role;
use crate::service::{Assignment, Effect, Sender, ShardMsg, UserRef, is_staff_role, refuse};

impl Router {
    /// An agent picks a waiting conversation out of the queue.
    pub(super) fn claim(&mut self, from: &Sender, id: u64, out: &mut Vec<Effect>) {
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

    /// An API request assigns a queued conversation to `agent`: a connected agent or
    /// bot of the tenant with room (409 otherwise; an assigned one is transferred,
    /// not assigned).
    pub(super) fn assign_to(&mut self, from: &Sender, id: u64, agent: &str, out: &mut Vec<Effect>) {
        let Some(conv) = self
            .convs
            .get(&id)
            .filter(|c| c.tenant == from.who.tenant && !c.pending)
        else {
            refuse(out, from, ErrorCode::NotFound, id);
            return;
        };
        if conv.agent.is_some() {
            refuse(out, from, ErrorCode::Conflict, id);
            return;
        }
        let ready = self
            .user(&from.who.tenant, agent)
            .is_some_and(|u| u.is_staff() && !u.conns.is_empty() && u.has_room());
        if !ready {
            refuse(out, from, ErrorCode::Conflict, id);
            return;
        }
        if let Some(waited) = self.remove_from_queue(id, out) {
            self.waited(id, waited);
        }
        self.assign(id, agent, out);
    }

    /// The assigned agent hands a conversation to another agent or group.
    pub(super) fn transfer(
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
    pub(super) fn closed(&mut self, id: u64, now_ms: u64, out: &mut Vec<Effect>) {
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
        self.visitor_left(conv.tenant, conv.visitor, id);
    }

    /// The best available agent of a group: a bot first, then the fewest active
    /// conversations, then the longest idle, then the user id (determinism).
    pub(super) fn pick(&self, tenant: &str, group: &str, exclude: Option<&str>) -> Option<String> {
        let t = self.tenants.get(tenant)?;
        let g = t.groups.get(group)?;
        let mut best: Option<(bool, usize, u64, &String)> = None;
        for uid in &g.members {
            if exclude == Some(uid.as_str()) {
                continue;
            }
            let Some(user) = t.users.get(uid.as_str()).filter(|u| u.available()) else {
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
    pub(super) fn try_assign(
        &mut self,
        id: u64,
        exclude: Option<&str>,
        out: &mut Vec<Effect>,
    ) -> bool {
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
    pub(super) fn assign(&mut self, id: u64, agent: &str, out: &mut Vec<Effect>) -> bool {
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
            agent_name: user.name(agent).to_owned(),
            agent_conns: user.conns.to_vec(),
            group: conv.group.clone(),
            note: std::mem::take(&mut conv.note),
        })));
        true
    }

    /// Fills an agent's free capacity from the queues of its groups, oldest head first.
    pub(super) fn fill(&mut self, who: &UserRef, out: &mut Vec<Effect>) {
        self.staff_changed(who);
        loop {
            let Some(tenant) = self.tenants.get(&who.tenant) else {
                return;
            };
            let Some(user) = tenant
                .users
                .get(who.user.as_str())
                .filter(|u| u.available())
            else {
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
}
