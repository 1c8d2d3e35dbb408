//! What a shard counts: plain numbers the shard fills as it handles messages and its
//! worker publishes (and resets) after each one, so the state machine holds no
//! metric handles and tests read the counts without a metrics registry.

/// A shard's counts since its worker last took them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ShardStats {
    /// Conversations closed (a close a journal failure takes back stays counted).
    pub closed: u64,
    /// New visitor messages the abuse filter flagged (delivered with `FLAGGED`).
    pub flagged: u64,
    /// ... it dropped (403).
    pub dropped: u64,
    /// ... it refused over the visitor's message rate (429).
    pub rate_limited: u64,
    /// ... it refused while the sender is blocked (205).
    pub blocked: u64,
    /// FAQ answers sent automatically.
    pub auto_replies: u64,
    /// Visitor messages the FAQ looked at, by bucket of the best entry's score
    /// ([`crate::metrics::CONFIDENCE_BUCKETS`]).
    pub faq_confidence: [u64; crate::metrics::CONFIDENCE_BUCKETS.len() + 1],
    /// Sum of those scores, in thousandths.
    pub faq_confidence_milli: u64,
    /// Automatic replies agents marked wrong (`WrongReply`).
    pub faq_wrong: u64,
    /// Visitor profile updates (`PROFILE`) refused because the merged profile would
    /// pass its 32 fields.
    pub profiles_refused: u64,
    /// `History` requests held back behind their connection's output.
    pub history_deferred: u64,
    /// `History` requests held back now (a level, not a count; `None`: unchanged).
    pub history_waiting: Option<u64>,
    /// Per-group events, in the order they happened.
    pub groups: Vec<GroupEvent>,
}

/// Something counted per group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GroupEvent {
    /// A conversation of the group closed for `routing.inactivity_close`.
    Inactive(String),
    /// The first agent or bot message of a conversation came this many
    /// milliseconds after its opening.
    FirstReply(String, u64),
    /// A visitor rated a conversation of the group (score 1–5).
    Rated(String, u8),
}

impl ShardStats {
    /// Counts the confidence of one FAQ look-up.
    pub fn observe_faq(&mut self, score: f32) {
        let i = crate::metrics::ConfidenceHistogram::bucket(score);
        if let Some(n) = self.faq_confidence.get_mut(i) {
            *n += 1;
        }
        self.faq_confidence_milli += (score.clamp(0.0, 1.0) * 1000.0).round() as u64;
    }

    /// Whether there is nothing to publish.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
