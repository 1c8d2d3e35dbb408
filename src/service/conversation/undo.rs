//! Taking back what the journal did not make durable: per journal batch (epoch) and
//! conversation, the state before the batch first changed it.

use super::{Conversation, Shard, State};
use crate::fasthash::ServerMap;
use crate::handoff::ConnId;
use crate::protocol::messages::Msg;
use crate::service::{Effect, ShardMsg, UserRef};

/// What [`Shard::rollback`] restores of a conversation: its transcript length and,
/// unless its batch only appended messages to it, the rest of its state.
#[derive(Debug, Clone)]
pub(super) struct Undo {
    events: u64,
    /// The visitor profile then (it changes with appended `PROFILE` messages).
    profile: Option<Box<crate::protocol::profile::Profile>>,
    /// `None` while the batch only appended (`Send`): nothing else changed, so the
    /// copy is taken only when a later message of the same batch changes more.
    fields: Option<Box<UndoFields>>,
}

/// A conversation's undos not yet dropped: how many, and the newest one's epoch and
/// position in [`Shard::undo`] (counted from the first undo ever taken).
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    count: u32,
    epoch: u64,
    at: u64,
}

/// The state besides the transcript that [`Undo`] restores.
#[derive(Debug, Clone)]
pub(super) struct UndoFields {
    state: State,
    agent: Option<UserRef>,
    agent_conns: Vec<ConnId>,
    group: String,
    rated: bool,
    since_ms: u64,
}

impl Undo {
    /// What takes `c` back to now; `appends_only` when the change to come only
    /// appends to the transcript.
    fn of(c: &Conversation, appends_only: bool) -> Self {
        Undo {
            events: c.events.len(),
            profile: c.profile.clone(),
            fields: (!appends_only).then(|| UndoFields::of(c)),
        }
    }

    /// Takes back what was appended after this undo was taken.
    fn truncate(&self, c: &mut Conversation) {
        c.events.truncate(self.events);
        c.sent.retain_up_to(self.events);
        c.files.retain(|f| f.seq <= self.events);
        c.profile.clone_from(&self.profile);
    }
}

impl UndoFields {
    fn of(c: &Conversation) -> Box<Self> {
        Box::new(UndoFields {
            state: c.state,
            agent: c.agent.clone(),
            agent_conns: c.agent_conns.clone(),
            group: c.group.clone(),
            rated: c.rated,
            since_ms: c.since_ms,
        })
    }

    fn apply(self, c: &mut Conversation) {
        c.state = self.state;
        c.agent = self.agent;
        c.agent_conns = self.agent_conns;
        c.group = self.group;
        c.rated = self.rated;
        c.since_ms = self.since_ms;
    }
}

impl Shard {
    /// Applies `msg` with the journal on: notes how to take back what it changes
    /// until its batch is durable, and whether its effects must wait for that.
    pub(super) fn apply_undoable(&mut self, msg: ShardMsg, now_ms: u64, out: &mut Vec<Effect>) {
        let id = msg.conversation();
        let pending = if matches!(msg, ShardMsg::Resume(_)) {
            // Never replay what is not durable yet.
            !self.undo.is_empty()
        } else {
            self.pending.contains_key(&id)
        };
        // A `Send` only appends: its undo needs no copy of the rest of the state.
        let appends_only = matches!(
            &msg,
            ShardMsg::Request {
                msg: Msg::Send(_),
                ..
            }
        );
        // This batch's undo of the conversation, if it took one already.
        let taken = self
            .pending
            .get(&id)
            .filter(|p| p.epoch == self.epoch)
            .and_then(|p| p.at.checked_sub(self.undo_base))
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.undo.get_mut(i))
            .map(|(_, _, u)| u);
        let before = match taken {
            None => Some(self.convs.get(&id).map(|c| Undo::of(c, appends_only))),
            // This batch only appended so far: the state now is the state before it.
            Some(Some(u)) if u.fields.is_none() && !appends_only => {
                u.fields = self.convs.get(&id).map(UndoFields::of);
                None
            }
            Some(_) => None,
        };
        let logged = self.log.len();
        self.apply(msg, now_ms, out);
        let changed = self.log.len() > logged;
        if let (true, Some(before)) = (changed, before) {
            let at = self.undo_base + self.undo.len() as u64;
            self.undo.push_back((self.epoch, id, before));
            let epoch = self.epoch;
            let p = self.pending.entry(id).or_insert(Pending {
                count: 0,
                epoch,
                at,
            });
            (p.count, p.epoch, p.at) = (p.count + 1, epoch, at);
        }
        self.dependent = changed || pending;
    }

    /// Starts journal batch `epoch`: changes from now on belong to it.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// Every batch up to `epoch` is durable: its changes can no longer be taken back.
    pub fn durable(&mut self, epoch: u64) {
        while let Some(&(e, id, _)) = self.undo.front() {
            if e > epoch {
                break;
            }
            self.undo.pop_front();
            self.undo_base += 1;
            if let Some(p) = self.pending.get_mut(&id) {
                p.count -= 1;
                if p.count == 0 {
                    self.pending.remove(&id);
                }
            }
        }
    }

    /// The journal failed: takes back every change that is not durable, restoring
    /// each conversation as it was before its oldest pending batch.
    pub fn rollback(&mut self) {
        // Per conversation, in batch order: the oldest pending batch's undo has the
        // transcript length to go back to; the rest of the state comes from the oldest
        // one that copied it (the batches before it only appended).
        let mut done: ServerMap<u64, (bool, bool)> = ServerMap::default();
        self.pending.clear();
        self.undo_base += self.undo.len() as u64;
        for (_, id, undo) in std::mem::take(&mut self.undo) {
            let (truncated, restored) = done.entry(id).or_insert((false, false));
            match undo {
                None if !*truncated => {
                    self.convs.remove(&id);
                    (*truncated, *restored) = (true, true);
                }
                None => {}
                Some(u) => {
                    let Some(c) = self.convs.get_mut(&id) else {
                        continue;
                    };
                    if !*truncated {
                        u.truncate(c);
                        *truncated = true;
                    }
                    if !*restored && let Some(fields) = u.fields {
                        fields.apply(c);
                        *restored = true;
                    }
                }
            }
        }
        self.log.clear();
    }

    /// Panics if the undo queue and `pending` disagree (tests): epochs in order, one
    /// undo per (epoch, conversation), and per conversation the count and the newest
    /// undo's epoch and position `pending` says.
    #[cfg(test)]
    pub fn check_undo(&self) {
        let mut seen: ServerMap<u64, Pending> = ServerMap::default();
        let mut last_epoch = 0;
        for (i, &(epoch, id, _)) in self.undo.iter().enumerate() {
            assert!(epoch >= last_epoch, "undo epochs out of order");
            last_epoch = epoch;
            let at = self.undo_base + i as u64;
            let p = seen.entry(id).or_insert(Pending {
                count: 0,
                epoch: 0,
                at: 0,
            });
            assert!(
                p.count == 0 || p.epoch < epoch,
                "two undos of {id} in epoch {epoch}"
            );
            (p.count, p.epoch, p.at) = (p.count + 1, epoch, at);
        }
        assert_eq!(seen.len(), self.pending.len(), "pending conversations");
        for (id, p) in &seen {
            let q = self
                .pending
                .get(id)
                .expect("a conversation with undos is pending");
            assert_eq!(
                (p.count, p.epoch, p.at),
                (q.count, q.epoch, q.at),
                "pending {id}"
            );
        }
    }

    /// Whether the last [`Shard::handle`] changed state, or answered from changes not
    /// yet durable: its effects must wait for the journal.
    pub fn last_dependent(&self) -> bool {
        self.dependent
    }
}
