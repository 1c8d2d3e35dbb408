//! Which messages a full router or shard queue may refuse.
//!
//! A client's request can be answered "busy" and resent; a fact (a connection came or
//! went, the router assigned a conversation, a shard closed one) cannot be refused
//! without the router and shards disagreeing, so facts always go through. Each fact is
//! caused by a bounded input — a connection's arrival or departure, or a request that
//! was itself admitted — so a queue holds at most its bound of requests plus a few
//! facts per connection and per admitted request.

use super::{RouterMsg, Sender, ShardMsg};

impl RouterMsg {
    /// The client request this message carries, if it may be refused.
    pub(crate) fn client_request(&self) -> Option<&Sender> {
        match self {
            Self::Presence { from, .. }
            | Self::Watch { from, .. }
            | Self::Open { from, .. }
            | Self::Claim { from, .. }
            | Self::Notice { from, .. }
            | Self::Disconnect { from, .. } => Some(from),
            _ => None,
        }
    }
}

impl ShardMsg {
    /// The client request this message carries, if it may be refused. A
    /// `ListConversations` goes to every shard and waits for each answer, so its
    /// per-shard parts are not refused (a connection holds at most a few).
    pub(crate) fn client_request(&self) -> Option<&Sender> {
        match self {
            Self::Request { from, .. }
            | Self::Upload { from, .. }
            | Self::Download { from, .. } => Some(from),
            _ => None,
        }
    }
}
