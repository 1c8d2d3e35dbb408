//! Test-only queries of a shard's state.

use std::collections::HashMap;

use super::{Shard, State};
use crate::protocol::messages::Entry;
use crate::service::UserRef;

impl Shard {
    /// The transcript of a conversation (tests).
    pub fn transcript(&self, conversation: u64) -> Option<Vec<Entry>> {
        self.convs
            .get(&conversation)
            .map(|c| c.events.all(self.reader.as_ref()))
    }

    /// Whether a conversation waits in a queue, and in which group (tests).
    pub fn queued_in(&self, conversation: u64) -> Option<&str> {
        self.convs
            .get(&conversation)
            .filter(|c| c.state == State::Queued)
            .map(|c| c.group.as_str())
    }

    /// The `seq` a sender's `client_msg_id` was stored under, and whether the
    /// conversation is a hidden orphan (tests).
    pub fn sent_seq(&self, conversation: u64, sender: &str, id: u64) -> Option<(u64, bool)> {
        let c = self.convs.get(&conversation)?;
        Some((c.sent.get(sender, id)?, c.orphan))
    }

    /// The merged visitor profile of a conversation (tests).
    pub fn profile(&self, conversation: u64) -> Option<crate::protocol::profile::Profile> {
        self.convs.get(&conversation)?.profile.as_deref().cloned()
    }

    /// Whether the conversation exists here, and is a hidden orphan (tests).
    pub fn orphan(&self, conversation: u64) -> Option<bool> {
        self.convs.get(&conversation).map(|c| c.orphan)
    }

    /// Conversations currently served, per agent (tests).
    pub fn agent_loads(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for c in self.convs.values() {
            if let (State::Assigned, Some(a)) = (c.state, &c.agent) {
                *m.entry(a.user.clone()).or_default() += 1;
            }
        }
        m
    }

    /// Whether `who` is or was a participant (tests).
    pub fn was_participant(&self, conversation: u64, who: &UserRef) -> bool {
        self.convs
            .get(&conversation)
            .is_some_and(|c| c.visitor == *who || c.served_by.contains(who))
    }

    /// Everything recovery must rebuild, per conversation, comparable (tests).
    pub fn digest(&self) -> std::collections::BTreeMap<u64, String> {
        self.convs
            .iter()
            .map(|(id, c)| {
                let sent = c.sent.sorted();
                let d = format!(
                    "{:?} {} {:?} {:?} {} {:?} {:?} {} {:?} {:?}",
                    c.visitor,
                    c.visitor_name,
                    c.state,
                    c.agent,
                    c.group,
                    c.events.all(self.reader.as_ref()),
                    sent,
                    c.rated,
                    c.files,
                    c.profile,
                );
                (*id, d)
            })
            .collect()
    }

    /// Panics if a conversation's state is inconsistent (tests).
    pub fn check_invariants(&self) {
        for (id, c) in &self.convs {
            let mut files =
                super::Conversation::new(c.visitor.clone(), String::new(), String::new());
            for (i, e) in c.events.all(self.reader.as_ref()).iter().enumerate() {
                assert_eq!(e.seq, i as u64 + 1, "conversation {id}: sequence gap");
                files.note_file(e);
                files.note_profile(e);
            }
            assert_eq!(
                c.profile, files.profile,
                "conversation {id}: profile not its PROFILE messages'"
            );
            assert_eq!(
                c.files, files.files,
                "conversation {id}: files not its messages'"
            );
            match c.state {
                State::Assigned => assert!(c.agent.is_some(), "conversation {id}: no agent"),
                State::Queued => assert!(c.agent.is_none(), "conversation {id}: queued with agent"),
                State::Closed => {}
            }
        }
        self.check_undo();
    }
}
