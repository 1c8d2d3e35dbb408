//! Test-only queries of the router's state.

use super::Router;
use crate::service::UserRef;

impl Router {
    /// The id the next new conversation gets (tests).
    pub fn next_conversation_id(&self) -> u64 {
        self.next_id
    }

    /// Conversations waiting in `group` of `tenant`.
    pub fn queue_len(&self, tenant: &str, group: &str) -> usize {
        self.group(tenant, group).map_or(0, |g| g.queue.len())
    }

    /// Conversations `who` serves as agent.
    pub fn active_count(&self, who: &UserRef) -> usize {
        self.user(&who.tenant, &who.user)
            .map_or(0, |u| u.assigned.len())
    }

    /// Non-closed conversations.
    pub fn conversations(&self) -> usize {
        self.convs.len()
    }
}
