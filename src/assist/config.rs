//! `[assist]`: switches, library files and bounds of the three agent assistants.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why an `[assist]` section cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for `assist.{key}`: {reason}")]
pub struct AssistConfigError {
    /// The offending key under `[assist]`.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Agent assistants: FAQ auto-reply, canned-reply suggestions, spam and abuse filter.
///
/// An assistant runs only when it is enabled **and** its file is set.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AssistConfig {
    /// FAQ auto-reply on/off. Default `true` (still off while `faq` is unset).
    pub faq_enabled: bool,
    /// FAQ knowledge base, TOML (or JSON when the name ends in `.json`). Default unset.
    pub faq: Option<PathBuf>,
    /// Cosine similarity (0–1) a visitor message must reach for its FAQ answer to be
    /// sent (the answer's confidence). Default `0.2` (chosen with `faq_margin` on
    /// `tests/data/faq_dev.jsonl`: the most recall at precision >= 0.92; scores of a
    /// paraphrase against a whole entry are low in absolute terms). Reloadable.
    pub faq_threshold: f32,
    /// How far (cosine similarity, 0–1) the best FAQ entry must lead the second best
    /// for its answer to be sent: two entries scoring alike is a guess, left to a
    /// person. Default `0.05` (chosen with `faq_threshold` on `tests/data/faq_dev.jsonl`). Reloadable.
    pub faq_margin: f32,
    /// Longest visitor message (characters) the FAQ looks at; longer ones are left to
    /// a person (an FAQ question is short) and cost nothing. Default `300`.
    pub faq_max_chars: usize,
    /// Canned-reply suggestions on/off. Default `true` (still off while `canned` is unset).
    pub suggest_enabled: bool,
    /// Canned-reply library, TOML or JSON. Default unset.
    pub canned: Option<PathBuf>,
    /// Suggestions returned when `Suggest.limit` is 0. Default `5`.
    pub suggest_top_k: u8,
    /// Most suggestions returned whatever `Suggest.limit` asks. Default `20`.
    pub suggest_max_k: u8,
    /// Largest edit distance (characters) for typo-tolerant suggestions; the distance
    /// used also shrinks with short prefixes (0 below 3 characters, 1 below 6). Default `2`.
    pub suggest_max_edit_distance: u8,
    /// Spam and abuse filter on/off. Default `true` (rules apply only while `spam` is
    /// set; the rate limit applies whenever the filter is on).
    pub spam_enabled: bool,
    /// Spam rules and samples, TOML or JSON. Default unset.
    pub spam: Option<PathBuf>,
    /// Per-tenant spam rule files: a tenant named here (the token's `tenant`) is
    /// checked against its own file instead of `spam` (TOML or JSON, same format).
    /// Default empty. Reloadable.
    pub spam_tenants: std::collections::BTreeMap<String, PathBuf>,
    /// A visitor sending the same message (after normalisation) this many times
    /// within `repeat_window` is flooding: a signal of the abuse filter (flagged on its
    /// own). `0` turns it off. Default `3`.
    pub repeat_limit: u32,
    /// See `repeat_limit`. Default `1m`. Both are read when a worker's filter is made
    /// (at start), like the rate limit.
    #[serde(with = "humantime_serde")]
    pub repeat_window: Duration,
    /// Visitor messages per second each visitor may send in the long run (token refill
    /// rate). `0` turns the rate limit off. Default `0` (off: chat widgets and load
    /// tests legitimately burst; turn it on per deployment, e.g. `2.0`).
    pub rate_per_second: f32,
    /// Messages a visitor may send in a burst (token bucket size). Default `10`.
    pub rate_burst: u32,
    /// Most visitors whose token bucket is tracked, and most whose recent messages
    /// are remembered for `repeat_limit` (each per worker); past it the longest-idle
    /// are forgotten (they start again with a full bucket and no history; counted in
    /// the filter's `buckets_evicted` / `recent_evicted`). Default `100000`.
    pub rate_max_visitors: usize,
    /// How long a `block` rule blocks a subject when the rule names no duration.
    /// Default `10m`.
    #[serde(with = "humantime_serde")]
    pub block_duration: Duration,
    /// Most subjects blocked at once; past it the block ending soonest is lifted
    /// early (and logged). Default `100000`.
    pub max_blocked: usize,
    /// Largest FAQ, canned or spam file accepted, in bytes. Default `16777216` (16 MiB).
    pub max_file_bytes: u64,
    /// Most entries (FAQ entries, canned replies, spam rules plus samples) in one
    /// file. Default `200000`.
    pub max_entries: usize,
}

impl Default for AssistConfig {
    fn default() -> Self {
        Self {
            faq_enabled: true,
            faq: None,
            faq_threshold: 0.2,
            faq_margin: 0.05,
            faq_max_chars: 300,
            suggest_enabled: true,
            canned: None,
            suggest_top_k: 5,
            suggest_max_k: 20,
            suggest_max_edit_distance: 2,
            spam_enabled: true,
            spam: None,
            spam_tenants: Default::default(),
            repeat_limit: 3,
            repeat_window: Duration::from_secs(60),
            rate_per_second: 0.0,
            rate_burst: 10,
            rate_max_visitors: 100_000,
            block_duration: Duration::from_secs(600),
            max_blocked: 100_000,
            max_file_bytes: 16 * 1024 * 1024,
            max_entries: 200_000,
        }
    }
}

impl AssistConfig {
    /// Checks ranges serde cannot express.
    pub fn validate(&self) -> Result<(), AssistConfigError> {
        let bad = |key, reason| Err(AssistConfigError { key, reason });
        if !(self.faq_threshold > 0.0 && self.faq_threshold <= 1.0) {
            return bad("faq_threshold", "must be in (0, 1]");
        }
        if !(self.faq_margin >= 0.0 && self.faq_margin < 1.0) {
            return bad("faq_margin", "must be in [0, 1)");
        }
        if self.faq_max_chars == 0 || self.faq_max_chars > super::normalize::MAX_CHARS {
            return bad("faq_max_chars", "must be in 1..=2048");
        }
        if self.suggest_max_k == 0 {
            return bad("suggest_max_k", "must be positive");
        }
        if self.suggest_top_k == 0 || self.suggest_top_k > self.suggest_max_k {
            return bad("suggest_top_k", "must be in 1..=suggest_max_k");
        }
        if self.suggest_max_edit_distance > 4 {
            return bad("suggest_max_edit_distance", "at most 4");
        }
        if !self.rate_per_second.is_finite() || self.rate_per_second < 0.0 {
            return bad("rate_per_second", "must be a finite number >= 0");
        }
        if self.rate_burst == 0 {
            return bad("rate_burst", "must be positive");
        }
        if self.rate_max_visitors == 0 {
            return bad("rate_max_visitors", "must be positive");
        }
        if self.max_blocked == 0 {
            return bad("max_blocked", "must be positive");
        }
        if self.max_file_bytes == 0 {
            return bad("max_file_bytes", "must be positive");
        }
        if self.max_entries == 0 {
            return bad("max_entries", "must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_parse_from_empty() {
        let c: AssistConfig = toml::from_str("").unwrap();
        assert_eq!(c, AssistConfig::default());
        c.validate().unwrap();
    }

    #[test]
    fn parses_durations_and_rejects_unknown_keys() {
        let c: AssistConfig = toml::from_str("block_duration = \"1h\"\nfaq = \"kb.toml\"").unwrap();
        assert_eq!(c.block_duration, Duration::from_secs(3600));
        assert_eq!(c.faq, Some(PathBuf::from("kb.toml")));
        assert!(toml::from_str::<AssistConfig>("nope = 1").is_err());
    }

    #[test]
    fn validate_rejects_out_of_range() {
        let mut c = AssistConfig {
            faq_threshold: 0.0,
            ..AssistConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "faq_threshold");
        c.faq_threshold = 0.5;
        c.suggest_top_k = 50;
        assert_eq!(c.validate().unwrap_err().key, "suggest_top_k");
        c.suggest_top_k = 5;
        c.rate_per_second = f32::NAN;
        assert_eq!(c.validate().unwrap_err().key, "rate_per_second");
    }
}
