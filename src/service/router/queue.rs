//! The per-group FIFO queues: opening a conversation, queueing and requeueing it,
//! abandonment, and the positions visitors and staff are told.

use super::{ABANDONED, Conv, Group, MAX_OPEN_PER_VISITOR, Router, User};
use crate::handoff::ConnId;
use crate::protocol::ErrorCode;
use crate::protocol::messages::{self, Msg, role};
use crate::service::{Effect, Opening, Sender, ShardMsg, UserRef, refuse, to_all};

impl Router {
    /// A visitor's first `Send`: continue its conversation in the group, or open one.
    pub(super) fn open(
        &mut self,
        from: Sender,
        send: messages::Send,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
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
            .entry(from.who.user.as_str().into())
            .or_insert_with(|| {
                let mut user = User::new(from.role, now_ms);
                user.set_name(from.display_name(), &from.who.user);
                user
            });
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
        let offline = !self
            .online
            .contains(&(from.who.tenant.clone(), group.clone()));
        let id = self.next_id;
        self.next_id += 1;
        user.more_at(now_ms).open.insert(id);
        let visitor_conns = user.conns.to_vec();
        let visitor_name = user.name(&from.who.user).to_owned();
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
                offline: false,
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
            offline,
        }))));
    }

    /// The shard stored the opening message: offer the conversation to an agent, or
    /// queue it.
    pub(super) fn opened(&mut self, id: u64, now_ms: u64, out: &mut Vec<Effect>) {
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
    pub(super) fn open_refused(&mut self, id: u64) {
        if !self.convs.get(&id).is_some_and(|c| c.pending) {
            return;
        }
        let Some(conv) = self.convs.remove(&id) else {
            return;
        };
        self.visitor_left(conv.tenant, conv.visitor, id);
    }

    /// A visitor stayed away past its grace: its conversations waiting in a queue
    /// are closed as abandoned. Assigned ones stay (their agent may close them), and
    /// so do offline ones (it left a message while nobody could answer: it waits for
    /// an agent); while the visitor stays away it is looked at again every grace.
    pub(super) fn abandoned(
        &mut self,
        who: &UserRef,
        deadline: u64,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
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
                .is_some_and(|c| c.agent.is_none() && !c.pending && !c.offline);
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

    /// Appends a new waiting conversation to its group's queue.
    pub(super) fn enqueue_back(&mut self, id: u64, out: &mut Vec<Effect>) {
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
    pub(super) fn enqueue_front(&mut self, ids: &[u64], out: &mut Vec<Effect>) {
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
    pub(super) fn remove_from_queue(&mut self, id: u64, out: &mut Vec<Effect>) -> Option<u64> {
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
    pub(super) fn tell_positions(
        &mut self,
        tenant: &str,
        group: &str,
        from: usize,
        out: &mut Vec<Effect>,
    ) {
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
            if let Some(visitor) = t.users.get(conv.visitor.as_str()) {
                to_all(out, &visitor.conns, queued_frame(*id, position, group));
            }
        }
    }

    /// A visitor's new connection learns where its waiting conversations stand.
    pub(super) fn tell_positions_to(&self, who: &UserRef, conn: ConnId, out: &mut Vec<Effect>) {
        let Some(tenant) = self.tenants.get(&who.tenant) else {
            return;
        };
        let Some(user) = tenant.users.get(who.user.as_str()) else {
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

    /// A new connection of an agent or bot gets, once, the conversations waiting in
    /// its groups' queues (at most `MAX_QUEUE_SNAPSHOT` per group, from the head), so
    /// it can claim what waited before it connected.
    pub(super) fn tell_queues_to(&self, who: &UserRef, conn: ConnId, out: &mut Vec<Effect>) {
        let Some(tenant) = self.tenants.get(&who.tenant) else {
            return;
        };
        let Some(user) = tenant.users.get(who.user.as_str()).filter(|u| u.is_staff()) else {
            return;
        };
        for name in &user.groups {
            let Some(g) = tenant.groups.get(name) else {
                continue;
            };
            let waiting = g.queue.iter().take(messages::MAX_QUEUE_SNAPSHOT);
            for (index, id) in waiting.enumerate() {
                super::super::send(out, conn, queued_frame(*id, position_of(index), name));
            }
        }
    }

    /// Tells the group's connected agents and bots that a conversation entered the
    /// queue at `position`, or left it (0); one frame for all of them.
    pub(super) fn tell_staff(
        &self,
        tenant: &str,
        group: &str,
        id: u64,
        position: u32,
        out: &mut Vec<Effect>,
    ) {
        let Some(t) = self.tenants.get(tenant) else {
            return;
        };
        let Some(g) = t.groups.get(group) else {
            return;
        };
        let conns: Vec<ConnId> = g
            .members
            .iter()
            .filter_map(|uid| t.users.get(uid.as_str()))
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
