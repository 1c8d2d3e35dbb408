//! The knobs of the router and the conversation shards, from the configuration
//! (a reload sends new ones).

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

/// Tunables of the conversation core.
#[derive(Debug, Clone)]
pub(crate) struct ShardSettings {
    /// At most one "typing" relay per participant per this many milliseconds.
    pub typing_interval_ms: u64,
    /// Most entries in one `HistoryPage`.
    pub history_page_max: usize,
    /// Largest payload a `HistoryPage` may take (stay within the announced frame limit).
    pub max_frame: usize,
    /// `limits.max_pending_bytes`: while a connection owes this much output, its
    /// `HistoryPage`s wait (see [`super::deferred`]); it also bounds the bytes one
    /// reconnect is replayed.
    pub max_pending: u32,
    /// `limits.max_held_requests`: `History` requests one connection may have
    /// waiting.
    pub max_held: u32,
    /// Open conversations with no new event for this long are closed as inactive
    /// (0: never; see `Shard::inactive`).
    pub inactivity_ms: u64,
    /// Collect a journal record for every state change (`Shard::take_records`).
    pub journal: bool,
}

impl ShardSettings {
    /// Conversation shard settings from a configuration.
    pub(crate) fn from_config(config: &crate::config::Config) -> Self {
        let r = &config.routing;
        let millis = crate::clock::millis;
        Self {
            typing_interval_ms: millis(r.typing_interval),
            history_page_max: usize::from(r.history_page_max),
            max_frame: config.limits.max_frame_bytes as usize,
            max_pending: config.limits.max_pending_bytes,
            max_held: config.limits.max_held_requests,
            inactivity_ms: millis(r.inactivity_close),
            journal: config.journal.enabled,
        }
    }
}

#[cfg(test)]
impl ShardSettings {
    /// Settings for tests: a journal, no inactivity close, a 1 MiB frame and 4 MiB
    /// output budget, typing relayed at most every `typing_interval_ms`.
    pub(crate) fn for_tests(typing_interval_ms: u64) -> Self {
        Self {
            typing_interval_ms,
            history_page_max: 50,
            max_frame: 1 << 20,
            max_pending: 4 << 20,
            max_held: 1024,
            inactivity_ms: 0,
            journal: true,
        }
    }
}
