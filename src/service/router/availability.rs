//! The router's side of availability: which groups changed, what their visitors
//! are told, and when (see `service/availability.rs` for the estimate itself).

use super::{Group, Router, UserRef, refuse};
use crate::handoff::ConnId;
use crate::protocol::ErrorCode;
use crate::protocol::messages::{self, MAX_WATCHED, Msg};
use crate::service::availability::{self, Availability};
use crate::service::{Effect, Sender, ShardControl, to_all};

/// How often a group with a queue has its availability looked at again without an
/// event (the head's wait grows with time alone); a tenth of the shortest step.
const REFRESH_MS: u64 = 1_500;

/// Whether a connection listens to `g`'s availability (a watcher with a connection
/// that sent `Watch`).
fn listened(g: &Group) -> bool {
    !g.listeners.is_empty()
}

impl Router {
    /// An agent's or bot's online state or free capacity may have changed: each of
    /// its groups is looked at again before the step ends.
    pub(super) fn staff_changed(&mut self, who: &UserRef) {
        let Some(user) = self
            .tenants
            .get(&who.tenant)
            .and_then(|t| t.users.get(who.user.as_str()))
            .filter(|u| u.is_staff())
        else {
            return;
        };
        for g in &user.groups {
            self.dirty.insert((who.tenant.clone(), g.clone()));
        }
    }

    /// A conversation entered its group's queue now.
    pub(super) fn entered_queue(&mut self, id: u64) {
        let now_ms = self.now_ms;
        let Some(conv) = self.convs.get_mut(&id) else {
            return;
        };
        conv.queued_at = now_ms;
        let (tenant, group) = (conv.tenant.clone(), conv.group.clone());
        let listened = self
            .tenants
            .get(&tenant)
            .is_some_and(|t| t.groups.get(&group).is_some_and(listened));
        self.watched_queue |= listened;
        self.dirty.insert((tenant, group));
    }

    /// A conversation left its group's queue for an agent after `waited_ms`.
    pub(super) fn waited(&mut self, id: u64, waited_ms: u64) {
        let Some(conv) = self.convs.get(&id) else {
            return;
        };
        let (tenant, group) = (conv.tenant.clone(), conv.group.clone());
        if let Some(g) = self
            .tenants
            .get_mut(&tenant)
            .and_then(|t| t.groups.get_mut(&group))
        {
            g.estimate.record(waited_ms);
        }
        if let Some(m) = &self.metrics {
            m.by_group.group(&group).queue_wait.observe_ms(waited_ms);
        }
        self.dirty.insert((tenant, group));
    }

    /// A `Watch`: from now on `from`'s connection is told the availability of the
    /// named group (or the user's own) and of every group its user watches, all of
    /// which it is sent at once.
    pub(super) fn watch_request(&mut self, from: &Sender, group: String, out: &mut Vec<Effect>) {
        // A connection already gone (its `Disconnected` came first) watches nothing.
        let Some(user) = self
            .user(&from.who.tenant, &from.who.user)
            .filter(|u| u.conns.contains(&from.conn))
        else {
            return;
        };
        let groups = if !group.is_empty() {
            vec![group]
        } else if !user.groups.is_empty() {
            user.groups.to_vec()
        } else if user.is_staff() {
            Vec::new()
        } else {
            vec![self.settings.default_group.clone()]
        };
        let new = groups.iter().filter(|g| !user.watching.contains(g)).count();
        if user.watching.len() + new > MAX_WATCHED {
            tracing::debug!(user = %from.who.user, "Watch refused: MAX_WATCHED groups watched");
            refuse(out, from, ErrorCode::RateLimited, 0);
            return;
        }
        self.watch(&from.who, &groups, out);
        if let Some(user) = self.user_mut(&from.who.tenant, &from.who.user)
            && !user.watch_conns.contains(&from.conn)
        {
            let first = user.watch_conns.is_empty();
            super::push_conn(&mut user.watch_conns, from.conn);
            if first {
                self.listening(&from.who, true);
            }
        }
        self.tell_availability(&from.who, from.conn, out);
    }

    /// `who` is told the availability of `groups` from now on (up to `MAX_WATCHED`
    /// in all); those it did not watch yet are sent to its watching connections at
    /// once.
    pub(super) fn watch(&mut self, who: &UserRef, groups: &[String], out: &mut Vec<Effect>) {
        let mut added = Vec::new();
        for g in groups {
            let Some(user) = self.user_mut(&who.tenant, &who.user) else {
                return;
            };
            if user.watching.contains(g) || user.watching.len() >= MAX_WATCHED {
                continue;
            }
            let listens = !user.watch_conns.is_empty();
            // Exact, and boxed: most users watch one group. (Built at its final size:
            // a push onto the empty slice would allocate room for four, then shrink.)
            let mut watching = Vec::with_capacity(user.watching.len() + 1);
            watching.extend(std::mem::take(&mut user.watching));
            watching.push(g.clone());
            user.watching = watching.into_boxed_slice();
            let tenant = self.tenants.entry(who.tenant.clone()).or_default();
            tenant.groups.entry(g.clone()).or_default();
            // Current for the others before this visitor joins them.
            self.refresh(&who.tenant, g, out);
            let Some(group) = self
                .tenants
                .get_mut(&who.tenant)
                .and_then(|t| t.groups.get_mut(g))
            else {
                continue;
            };
            group.watchers = group.watchers.saturating_add(1);
            // Only a user with a watching connection is told (below): a visitor
            // joining its default group at connect builds nothing to drop.
            if listens {
                group.listeners.insert(who.user.clone());
                added.push(group.told.unwrap_or_default().to_message(g));
            }
        }
        let Some(user) = self.user(&who.tenant, &who.user) else {
            return;
        };
        if !added.is_empty() && !user.watch_conns.is_empty() {
            let frame = Msg::from(messages::Availability { groups: added }).to_frame(0);
            to_all(out, &user.watch_conns, frame);
        }
    }

    /// `who` gained its first watching connection (`on`) or lost its last: it joins
    /// or leaves the listeners of every group it watches.
    pub(super) fn listening(&mut self, who: &UserRef, on: bool) {
        let Some(t) = self.tenants.get_mut(&who.tenant) else {
            return;
        };
        let Some(user) = t.users.get(who.user.as_str()) else {
            return;
        };
        for g in &user.watching {
            if let Some(group) = t.groups.get_mut(g) {
                if on {
                    group.listeners.insert(who.user.clone());
                } else {
                    group.listeners.remove(&who.user);
                }
            }
        }
    }

    /// Sends a connection the availability of every group its user watches.
    pub(super) fn tell_availability(&mut self, who: &UserRef, conn: ConnId, out: &mut Vec<Effect>) {
        let Some(user) = self.user(&who.tenant, &who.user) else {
            return;
        };
        let watching = user.watching.clone();
        let mut groups = Vec::with_capacity(watching.len());
        for g in &watching {
            if self.group(&who.tenant, g).is_none_or(|g| g.told.is_none()) {
                self.refresh(&who.tenant, g, out);
            }
            let told = self.group(&who.tenant, g).and_then(|g| g.told);
            groups.push(told.unwrap_or_default().to_message(g));
        }
        let frame = Msg::from(messages::Availability { groups }).to_frame(0);
        super::super::send(out, conn, frame);
    }

    /// Tells the watchers of every group that may have changed during this step what
    /// changed.
    pub(super) fn announce(&mut self, out: &mut Vec<Effect>) {
        while let Some((tenant, group)) = self.dirty.pop_first() {
            let online = self.refresh(&tenant, &group, out);
            self.tell_shards_online(tenant, group, online, out);
        }
    }

    /// Tells every shard when a group went online or offline (`online`, as
    /// [`Router::refresh`] found it; a forgotten group has no staff: offline), so the
    /// visitor messages they store while it is offline are offline messages.
    fn tell_shards_online(
        &mut self,
        tenant: String,
        group: String,
        online: bool,
        out: &mut Vec<Effect>,
    ) {
        let key = (tenant, group);
        if online == self.online.contains(&key) {
            return;
        }
        if online {
            self.online.insert(key.clone());
        } else {
            self.online.remove(&key);
        }
        let (tenant, group) = key;
        out.push(Effect::AllShards(ShardControl::GroupOnline {
            tenant,
            group,
            online,
        }));
    }

    /// Recomputes a group's availability; when it differs from what its watchers
    /// were told, tells them (one frame for all). Whether any of its agents or bots
    /// is online (false for a group no longer known).
    fn refresh(&mut self, tenant: &str, group: &str, out: &mut Vec<Effect>) -> bool {
        let Some(t) = self.tenants.get(tenant) else {
            return false;
        };
        let Some(g) = t.groups.get(group) else {
            return false;
        };
        let now = self.current_at(t, g, self.now_ms);
        if g.told == Some(now) {
            if let Some(g) = self
                .tenants
                .get_mut(tenant)
                .and_then(|t| t.groups.get_mut(group))
            {
                g.told_at = self.now_ms;
            }
            return now.online;
        }
        let conns: Vec<ConnId> = g
            .listeners
            .iter()
            .filter_map(|uid| t.users.get(uid.as_str()))
            .flat_map(|u| u.watch_conns.iter().copied())
            .collect();
        if let Some(g) = self
            .tenants
            .get_mut(tenant)
            .and_then(|t| t.groups.get_mut(group))
        {
            g.told = Some(now);
            g.told_at = self.now_ms;
        }
        if !conns.is_empty() {
            let frame = Msg::from(messages::Availability {
                groups: vec![now.to_message(group)],
            })
            .to_frame(0);
            to_all(out, &conns, frame);
        }
        now.online
    }

    /// Every few seconds, groups with a queue are looked at again: the wait of the
    /// queue's head counts in the estimate, and it grows without any event.
    pub(super) fn refresh_queues(&mut self) {
        if self.now_ms < self.next_refresh_ms {
            return;
        }
        self.next_refresh_ms = self.now_ms.saturating_add(REFRESH_MS);
        self.watched_queue = false;
        for (tname, t) in &self.tenants {
            for (gname, g) in &t.groups {
                if !g.queue.is_empty() && g.watchers > 0 {
                    self.dirty.insert((tname.clone(), gname.clone()));
                    self.watched_queue |= listened(g);
                }
            }
        }
    }

    /// What the watchers of `group` were told last, as (online, estimated wait).
    #[cfg(test)]
    pub(crate) fn told(&self, tenant: &str, group: &str) -> Option<(bool, u64)> {
        let told = self.group(tenant, group)?.told?;
        Some((told.online, told.wait_ms))
    }

    /// Whether `conn` gets `Availability` (it sent `Watch` and is still connected).
    #[cfg(test)]
    pub(crate) fn watches(&self, conn: ConnId) -> bool {
        self.tenants
            .values()
            .flat_map(|t| t.users.values())
            .any(|u| u.watch_conns.contains(&conn))
    }

    /// A group's availability at `now_ms`.
    pub(super) fn current_at(&self, t: &super::Tenant, g: &Group, now_ms: u64) -> Availability {
        let mut online = false;
        let mut room = false;
        for uid in &g.members {
            if let Some(u) = t.users.get(uid.as_str()) {
                online |= u.online();
                room |= u.available();
            }
        }
        let head_waited = g
            .queue
            .front()
            .and_then(|id| self.convs.get(id))
            .map_or(0, |c| now_ms.saturating_sub(c.queued_at));
        availability::availability(
            online,
            room && g.queue.is_empty(),
            g.estimate.expected(head_waited),
            g.told,
        )
    }
}
