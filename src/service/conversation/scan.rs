//! Questions asked of all a shard's conversations at once: the admin listing, the
//! inactivity sweep, retention, and what recovery hands the router.

use super::{Conversation, OpenConversation, Shard, State};
use crate::clock::UnixMs;
use crate::journal::JournalReader;
use crate::protocol::Kind;
use crate::protocol::messages::{self, flags, role};

impl Shard {
    /// Retention: forgets the conversations closed before `cutoff_ms` (Unix
    /// milliseconds) whose changes are all durable, and returns their ids so the
    /// journal can drop their records.
    pub fn forget_closed(&mut self, cutoff_ms: u64) -> Vec<u64> {
        let pending = &self.pending;
        let ids: Vec<u64> = self
            .convs
            .iter()
            .filter(|(id, c)| {
                c.state == State::Closed && c.closed_ms < cutoff_ms && !pending.contains_key(*id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.convs.remove(id);
        }
        ids
    }

    /// The conversations that are not closed, for the router after a restart.
    pub fn open_conversations(&self) -> Vec<OpenConversation> {
        let mut v: Vec<OpenConversation> = self
            .convs
            .iter()
            .filter(|(_, c)| c.state != State::Closed)
            .map(|(id, c)| OpenConversation {
                id: *id,
                visitor: c.visitor.clone(),
                group: c.group.clone(),
                agent: c.agent.as_ref().map(|a| a.user.clone()),
                since_ms: c.since_ms,
                offline: left_offline(c, self.reader.as_ref()),
            })
            .collect();
        v.sort_unstable_by_key(|c| (c.since_ms, c.id));
        v
    }

    /// The highest conversation id this shard knows or was told is taken (0: none).
    pub fn max_conversation(&self) -> u64 {
        let known = self.convs.keys().chain(self.held.keys()).copied().max();
        known.unwrap_or(0).max(self.reserved_max)
    }

    /// The conversations of `tenant` matching `q`, lowest ids first, at most `limit`
    /// (and whether more match).
    pub(super) fn list(
        &self,
        tenant: &str,
        q: &messages::ListConversations,
        limit: usize,
    ) -> (Vec<messages::ConversationInfo>, bool) {
        use messages::conversation_state as cs;
        let mut ids: Vec<u64> = self
            .convs
            .iter()
            .filter(|&(&id, c)| {
                let state = match c.state {
                    State::Queued => cs::QUEUED,
                    State::Assigned => cs::ASSIGNED,
                    State::Closed => cs::CLOSED,
                };
                let state_ok = match q.state {
                    cs::OPEN => state != cs::CLOSED,
                    cs::ANY => true,
                    s => s == state,
                };
                id > q.after
                    && c.tenant == tenant
                    && !c.orphan
                    && state_ok
                    && (q.group.is_empty() || c.group == q.group)
                    && (q.agent.is_empty() || c.agent.as_ref().is_some_and(|a| a.user == q.agent))
                    && c.updated_ms() >= q.updated_since_ms
            })
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        let more = ids.len() > limit;
        ids.truncate(limit);
        let items = ids
            .into_iter()
            .filter_map(|id| Some(Self::info_of(id, self.convs.get(&id)?)))
            .collect();
        (items, more)
    }

    /// A conversation's item of a `ConversationList`.
    pub(super) fn info_of(id: u64, c: &Conversation) -> messages::ConversationInfo {
        use messages::conversation_state as cs;
        messages::ConversationInfo {
            conversation: id,
            opened_ms: c.opened_ms,
            updated_ms: c.updated_ms(),
            last_seq: c.events.len(),
            state: match c.state {
                State::Queued => cs::QUEUED,
                State::Assigned => cs::ASSIGNED,
                State::Closed => cs::CLOSED,
            },
            group: c.group.clone(),
            visitor: c.visitor.user.clone(),
            visitor_name: c.visitor_name.clone(),
            agent: c.agent.as_ref().map(|a| a.user.clone()).unwrap_or_default(),
        }
    }

    /// How often [`Shard::inactive`] is worth asking: a tenth of
    /// `routing.inactivity_close` (within 1 s .. 60 s); `None` when it is off.
    pub fn sweep_every(&self) -> Option<std::time::Duration> {
        let idle = self.settings.inactivity_ms;
        (idle > 0).then(|| std::time::Duration::from_millis((idle / 10).clamp(1_000, 60_000)))
    }

    /// The open conversations with no new event since `now - inactivity` (none when
    /// `routing.inactivity_close` is off), to close as inactive.
    pub fn inactive(&self, now: UnixMs) -> Vec<u64> {
        let now_ms = now.get();
        let idle = self.settings.inactivity_ms;
        if idle == 0 {
            return Vec::new();
        }
        let cutoff = now_ms.saturating_sub(idle);
        let mut ids: Vec<u64> = self
            .convs
            .iter()
            .filter(|(_, c)| c.state != State::Closed && !c.orphan)
            .filter(|(_, c)| c.updated_ms() < cutoff)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// Most transcript entries [`left_offline`] reads back (from the end) per conversation.
const OFFLINE_SCAN: u64 = 1_000;

/// Whether a queued conversation's visitor left an offline message (`flags::OFFLINE`)
/// since it last entered the queue: after a restart the router must not abandon it.
/// Reads back at most [`OFFLINE_SCAN`] entries.
fn left_offline(c: &Conversation, reader: Option<&JournalReader>) -> bool {
    if c.state != State::Queued {
        return false;
    }
    let last = c.events.len();
    let first = last.saturating_sub(OFFLINE_SCAN).max(1);
    for seq in (first..=last).rev() {
        let Some(e) = c.events.get(seq, reader) else {
            return false;
        };
        match Kind::from_u8(e.kind) {
            Some(Kind::Assigned | Kind::Queued) => return false,
            Some(Kind::Send) if e.sender_role == role::VISITOR && e.flags & flags::OFFLINE != 0 => {
                return true;
            }
            _ => {}
        }
    }
    false
}
