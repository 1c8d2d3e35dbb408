//! Spam and abuse filter for visitor messages: keyword rules matched with
//! `aho-corasick` over normalised text, similarity to known spam samples (the FAQ's
//! TF-IDF machinery), a per-visitor token-bucket rate limit and a blocklist of
//! subjects with expiry.
//!
//! [`SpamRules`] is the immutable rule set loaded from a file (share it with `Arc`,
//! swap it on reload); [`SpamFilter`] holds the per-visitor state and counters (one per
//! worker). Log lines name the visitor, rule and action, never the message body.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aho_corasick::{AhoCorasick, MatchKind};
use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::config::AssistConfig;
use super::load::{self, Format, LoadError};
use super::normalize::{is_cjk, normalize, normalize_whole};
use super::tfidf::{Grams, TfIdf};
use crate::clock::millis;

const WHAT: &str = "spam rules";
/// Longest keyword, in bytes.
const MAX_KEYWORD: usize = 256;
/// Longest spam sample, in bytes.
const MAX_SAMPLE: usize = 4096;
/// Longest rule name, in bytes.
const MAX_NAME: usize = 128;

/// What a rule does to a message it matches, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Delivered, marked `FLAGGED` for the agent.
    Flag,
    /// Not delivered; the visitor gets an error code.
    Drop,
    /// Not delivered, and the visitor's subject is blocked for a while.
    Block,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::Flag => "flag",
            Self::Drop => "drop",
            Self::Block => "block",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpamFile {
    #[serde(default)]
    rule: Vec<RuleFile>,
    #[serde(default)]
    similarity: Option<SimilarityFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    /// Name used in verdicts, logs and metrics.
    name: String,
    action: Action,
    /// `block` only; default `assist.block_duration`.
    #[serde(default, with = "humantime_serde")]
    block_for: Option<Duration>,
    /// Match with every space removed too (catches "加 微 信", "c.a.s.i.n.o").
    #[serde(default)]
    compact: bool,
    keywords: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimilarityFile {
    #[serde(default = "similarity_name")]
    name: String,
    /// Cosine similarity (0–1) to the closest sample that triggers the action.
    threshold: f32,
    action: Action,
    #[serde(default, with = "humantime_serde")]
    block_for: Option<Duration>,
    samples: Vec<String>,
}

fn similarity_name() -> String {
    "similar-to-spam-sample".to_owned()
}

/// A rule that matched a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The rule's name.
    pub rule: Arc<str>,
    /// What to do.
    pub action: Action,
    /// How long a `block` lasts.
    pub block_for: Duration,
}

/// A keyword pattern: its rule and whether its ends must sit on word boundaries
/// (Latin-script ends do, so `sex` does not fire inside `Essex`).
#[derive(Debug, Clone, Copy)]
struct Pattern {
    rule: u32,
    bound_start: bool,
    bound_end: bool,
}

#[derive(Debug)]
struct Similarity {
    index: TfIdf,
    threshold: f32,
    hit: Hit,
}

/// The loaded rules and samples. Immutable.
#[derive(Debug)]
pub struct SpamRules {
    hits: Vec<Hit>,
    spaced: Option<(AhoCorasick, Vec<Pattern>)>,
    compact: Option<(AhoCorasick, Vec<Pattern>)>,
    similarity: Option<Similarity>,
}

fn automaton(patterns: &[String]) -> Result<Option<AhoCorasick>, LoadError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .build(patterns)
        .map(Some)
        .map_err(|e| LoadError::Parse {
            what: WHAT,
            reason: e.to_string(),
        })
}

fn is_boundary(c: Option<char>) -> bool {
    c.is_none_or(|c| c == ' ' || is_cjk(c))
}

impl SpamRules {
    /// Loads the rules at `path` (JSON if it ends in `.json`, else TOML), bounded by
    /// `cfg.max_file_bytes` and `cfg.max_entries` (keywords plus samples).
    pub fn from_file(path: &Path, cfg: &AssistConfig) -> Result<Self, LoadError> {
        let text = load::read_bounded(path, cfg.max_file_bytes)?;
        Self::from_str(&text, Format::of_path(path), cfg)
    }

    /// Builds the rules from file text; `block` rules without `block_for` last
    /// `cfg.block_duration`.
    pub fn from_str(text: &str, format: Format, cfg: &AssistConfig) -> Result<Self, LoadError> {
        let file: SpamFile = load::parse_bounded(text, format, WHAT, cfg.max_file_bytes)?;
        let count = file.rule.iter().map(|r| r.keywords.len()).sum::<usize>()
            + file.similarity.as_ref().map_or(0, |s| s.samples.len());
        load::check_count(WHAT, count, cfg.max_entries)?;
        let hit = |index: usize, name: String, action: Action, block_for: Option<Duration>| {
            let invalid = |reason: &str| LoadError::Invalid {
                what: WHAT,
                index,
                reason: reason.to_owned(),
            };
            if name.is_empty() || name.len() > MAX_NAME {
                return Err(invalid("name must be 1 to 128 bytes"));
            }
            if block_for.is_some() && action != Action::Block {
                return Err(invalid("block_for is only for action = \"block\""));
            }
            if block_for.is_some_and(|d| d.is_zero()) {
                return Err(invalid("block_for must be positive"));
            }
            Ok(Hit {
                rule: name.into(),
                action,
                block_for: block_for.unwrap_or(cfg.block_duration),
            })
        };
        let mut hits = Vec::with_capacity(file.rule.len() + 1);
        let (mut spaced, mut spaced_p) = (Vec::new(), Vec::new());
        let (mut compact, mut compact_p) = (Vec::new(), Vec::new());
        for (i, r) in file.rule.into_iter().enumerate() {
            let invalid = |reason: String| LoadError::Invalid {
                what: WHAT,
                index: i + 1,
                reason,
            };
            if r.keywords.is_empty() {
                return Err(invalid("no keywords".into()));
            }
            let n = hits.len() as u32;
            for k in &r.keywords {
                let norm = normalize(k);
                if norm.is_empty() || k.len() > MAX_KEYWORD {
                    return Err(invalid(format!(
                        "keyword {k:?} must have letters or digits and at most {MAX_KEYWORD} bytes"
                    )));
                }
                if r.compact {
                    compact.push(norm.replace(' ', ""));
                    compact_p.push(Pattern {
                        rule: n,
                        bound_start: false,
                        bound_end: false,
                    });
                } else {
                    let edge = |c: Option<char>| c.is_some_and(|c| !is_cjk(c));
                    spaced_p.push(Pattern {
                        rule: n,
                        bound_start: edge(norm.chars().next()),
                        bound_end: edge(norm.chars().next_back()),
                    });
                    spaced.push(norm);
                }
            }
            hits.push(hit(i + 1, r.name, r.action, r.block_for)?);
        }
        let similarity = match file.similarity {
            None => None,
            Some(s) => {
                let index = hits.len() + 1;
                let invalid = |reason: &str| LoadError::Invalid {
                    what: WHAT,
                    index,
                    reason: reason.to_owned(),
                };
                if !(s.threshold > 0.0 && s.threshold <= 1.0) {
                    return Err(invalid("similarity.threshold must be in (0, 1]"));
                }
                let mut docs = Vec::with_capacity(s.samples.len());
                for t in &s.samples {
                    let g = Grams::of(t);
                    if g.is_empty() || t.len() > MAX_SAMPLE {
                        return Err(invalid(
                            "samples need letters or digits, at most 4096 bytes",
                        ));
                    }
                    docs.push(g);
                }
                if docs.is_empty() {
                    return Err(invalid("similarity has no samples"));
                }
                Some(Similarity {
                    index: TfIdf::build(&docs, |i| i as u32),
                    threshold: s.threshold,
                    hit: hit(index, s.name, s.action, s.block_for)?,
                })
            }
        };
        Ok(Self {
            hits,
            spaced: automaton(&spaced)?.map(|a| (a, spaced_p)),
            compact: automaton(&compact)?.map(|a| (a, compact_p)),
            similarity,
        })
    }

    /// The most severe rule `text` breaks (first in the file among equals), keywords
    /// before samples.
    pub fn classify(&self, text: &str) -> Option<Hit> {
        let norm = normalize_whole(text);
        let mut best: Option<u32> = None;
        let mut consider = |rule: u32| {
            let sev = |r: u32| self.hits.get(r as usize).map(|h| h.action);
            if best.is_none_or(|b| sev(rule) > sev(b) || (sev(rule) == sev(b) && rule < b)) {
                best = Some(rule);
            }
        };
        if let Some((ac, pats)) = &self.spaced {
            for m in ac.find_overlapping_iter(&norm) {
                let Some(p) = pats.get(m.pattern().as_usize()) else {
                    continue;
                };
                let before = norm.get(..m.start()).and_then(|s| s.chars().next_back());
                let after = norm.get(m.end()..).and_then(|s| s.chars().next());
                if (!p.bound_start || is_boundary(before)) && (!p.bound_end || is_boundary(after)) {
                    consider(p.rule);
                }
            }
        }
        if let Some((ac, pats)) = &self.compact {
            let squeezed = norm.replace(' ', "");
            for m in ac.find_overlapping_iter(&squeezed) {
                if let Some(p) = pats.get(m.pattern().as_usize()) {
                    consider(p.rule);
                }
            }
        }
        let keyword = best.and_then(|r| self.hits.get(r as usize));
        if keyword.is_some_and(|h| h.action == Action::Block) {
            return keyword.cloned();
        }
        let sample = self.similarity.as_ref().and_then(|s| {
            let (_, score) = s.index.best(&Grams::of(text))?;
            (score >= s.threshold).then_some(&s.hit)
        });
        match (keyword, sample) {
            (Some(k), Some(s)) if s.action > k.action => Some(s.clone()),
            (k, s) => k.or(s).cloned(),
        }
    }
}

/// What to do with a visitor's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it.
    Allow,
    /// Deliver it with the `FLAGGED` bit.
    Flag {
        /// The rule that matched.
        rule: Arc<str>,
    },
    /// Do not deliver it; answer the visitor with an error.
    Drop {
        /// The rule that matched.
        rule: Arc<str>,
    },
    /// Do not deliver it; the subject is blocked until `until_ms` (this message broke
    /// a `block` rule, or the subject was already blocked).
    Block {
        /// The rule that blocked the subject.
        rule: Arc<str>,
        /// End of the block, in the caller's clock (ms).
        until_ms: u64,
    },
    /// Over the per-visitor rate; not delivered, the visitor may retry later.
    RateLimited,
}

/// Messages checked and what was done with them, since the filter was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpamCounters {
    /// Messages checked.
    pub checked: u64,
    /// Delivered unmarked.
    pub allowed: u64,
    /// Delivered with `FLAGGED`.
    pub flagged: u64,
    /// Dropped by a `drop` rule.
    pub dropped: u64,
    /// Subjects newly blocked by a `block` rule.
    pub blocks: u64,
    /// Messages refused because their subject was blocked.
    pub blocked_messages: u64,
    /// Messages refused by the rate limit.
    pub rate_limited: u64,
    /// Rate-limit buckets forgotten to stay within `assist.rate_max_visitors`.
    pub buckets_evicted: u64,
    /// Blocks lifted early to stay within `assist.max_blocked`.
    pub blocks_evicted: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
    /// Already over the limit (log only the first refusal of a streak).
    limited: bool,
}

#[derive(Debug, Clone)]
struct Blocked {
    until_ms: u64,
    rule: Arc<str>,
}

/// Per-worker filter state: rules (optional), token buckets, blocklist, counters.
#[derive(Debug)]
pub struct SpamFilter {
    rules: Option<Arc<SpamRules>>,
    buckets: FxHashMap<Box<str>, Bucket>,
    blocked: FxHashMap<Box<str>, Blocked>,
    per_ms: f64,
    burst: f64,
    max_visitors: usize,
    max_blocked: usize,
    counters: SpamCounters,
}

impl SpamFilter {
    /// A filter with the rate limit and bounds of `cfg` and the given rules (none:
    /// only the rate limit and existing blocks apply).
    pub fn new(cfg: &AssistConfig, rules: Option<Arc<SpamRules>>) -> Self {
        Self {
            rules,
            buckets: FxHashMap::default(),
            blocked: FxHashMap::default(),
            per_ms: f64::from(cfg.rate_per_second) / 1000.0,
            burst: f64::from(cfg.rate_burst),
            max_visitors: cfg.rate_max_visitors.max(1),
            max_blocked: cfg.max_blocked.max(1),
            counters: SpamCounters::default(),
        }
    }

    /// Swaps in reloaded rules; buckets, blocks and counters stay.
    pub fn set_rules(&mut self, rules: Option<Arc<SpamRules>>) {
        self.rules = rules;
    }

    /// Counters so far.
    pub fn counters(&self) -> &SpamCounters {
        &self.counters
    }

    /// Subjects blocked now (expired blocks may linger until looked up or evicted).
    pub fn blocked_len(&self) -> usize {
        self.blocked.len()
    }

    /// Visitors whose rate-limit bucket is tracked.
    pub fn tracked_visitors(&self) -> usize {
        self.buckets.len()
    }

    /// Decides on one visitor message. `visitor_key` identifies who is limited and
    /// blocked (the token's tenant and subject); `now_ms` is the caller's clock.
    pub fn check(&mut self, visitor_key: &str, text: &str, now_ms: u64) -> Verdict {
        self.counters.checked += 1;
        if let Some(refused) = self.admit(visitor_key, now_ms) {
            return refused;
        }
        let Some(hit) = self.rules.as_ref().and_then(|r| r.classify(text)) else {
            self.counters.allowed += 1;
            return Verdict::Allow;
        };
        tracing::info!(
            visitor = visitor_key,
            rule = &*hit.rule,
            action = hit.action.name(),
            "abuse filter"
        );
        match hit.action {
            Action::Flag => {
                self.counters.flagged += 1;
                Verdict::Flag { rule: hit.rule }
            }
            Action::Drop => {
                self.counters.dropped += 1;
                Verdict::Drop { rule: hit.rule }
            }
            Action::Block => {
                self.counters.blocks += 1;
                let until_ms = now_ms.saturating_add(millis(hit.block_for));
                self.block(visitor_key, hit.rule.clone(), until_ms, now_ms);
                Verdict::Block {
                    rule: hit.rule,
                    until_ms,
                }
            }
        }
    }

    /// Decides on a visitor's write that is not chat (a visitor profile update): its
    /// text is not classified and it is not counted as a message checked; it is
    /// refused only while the visitor is blocked or over its rate (it takes a token).
    pub fn gate(&mut self, visitor_key: &str, now_ms: u64) -> Verdict {
        self.admit(visitor_key, now_ms).unwrap_or(Verdict::Allow)
    }

    /// The refusal a visitor gets whatever it writes: blocked, or over its rate.
    fn admit(&mut self, visitor_key: &str, now_ms: u64) -> Option<Verdict> {
        if let Some(b) = self.blocked.get(visitor_key) {
            if b.until_ms > now_ms {
                self.counters.blocked_messages += 1;
                return Some(Verdict::Block {
                    rule: b.rule.clone(),
                    until_ms: b.until_ms,
                });
            }
            self.blocked.remove(visitor_key);
        }
        if !self.take_token(visitor_key, now_ms) {
            self.counters.rate_limited += 1;
            return Some(Verdict::RateLimited);
        }
        None
    }

    /// Blocks `subject` until `until_ms` (e.g. by an operator), evicting the block
    /// that ends soonest if the blocklist is full.
    pub fn block(&mut self, subject: &str, rule: Arc<str>, until_ms: u64, now_ms: u64) {
        if !self.blocked.contains_key(subject) && self.blocked.len() >= self.max_blocked {
            self.blocked.retain(|_, b| b.until_ms > now_ms);
            if self.blocked.len() >= self.max_blocked {
                let soonest = self
                    .blocked
                    .iter()
                    .min_by_key(|(_, b)| b.until_ms)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    tracing::warn!(
                        subject = &*k,
                        max = self.max_blocked,
                        "blocklist full: lifting the block that ends soonest"
                    );
                    self.blocked.remove(&k);
                    self.counters.blocks_evicted += 1;
                }
            }
        }
        let entry = self.blocked.entry(subject.into()).or_insert(Blocked {
            until_ms,
            rule: rule.clone(),
        });
        if entry.until_ms <= until_ms {
            *entry = Blocked { until_ms, rule };
        }
    }

    /// Token bucket: refills at `rate_per_second`, holds `rate_burst`.
    fn take_token(&mut self, key: &str, now_ms: u64) -> bool {
        if self.per_ms <= 0.0 {
            return true;
        }
        if let Some(b) = self.buckets.get_mut(key) {
            let elapsed = now_ms.saturating_sub(b.last_ms) as f64;
            b.tokens = (b.tokens + elapsed * self.per_ms).min(self.burst);
            b.last_ms = b.last_ms.max(now_ms);
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                b.limited = false;
                return true;
            }
            if !b.limited {
                b.limited = true;
                tracing::info!(visitor = key, "abuse filter: rate limited");
            }
            return false;
        }
        if self.buckets.len() >= self.max_visitors {
            self.evict(now_ms);
        }
        self.buckets.insert(
            key.into(),
            Bucket {
                tokens: self.burst - 1.0,
                last_ms: now_ms,
                limited: false,
            },
        );
        true
    }

    /// Forgets buckets that have refilled (same as absent), then, if still full, the
    /// longest-idle eighth, so eviction is amortised O(1) per new visitor.
    fn evict(&mut self, now_ms: u64) {
        let before = self.buckets.len();
        let (per_ms, burst) = (self.per_ms, self.burst);
        self.buckets
            .retain(|_, b| b.tokens + now_ms.saturating_sub(b.last_ms) as f64 * per_ms < burst);
        if self.buckets.len() >= self.max_visitors {
            let mut ages: Vec<u64> = self.buckets.values().map(|b| b.last_ms).collect();
            let nth = ages.len() / 8;
            let (_, cutoff, _) = ages.select_nth_unstable(nth);
            let cutoff = *cutoff;
            self.buckets.retain(|_, b| b.last_ms > cutoff);
        }
        self.counters.buckets_evicted += (before - self.buckets.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
[[rule]]
name = "gambling"
action = "drop"
keywords = ["online casino", "赌场", "sex"]

[[rule]]
name = "contact-bait"
action = "flag"
compact = true
keywords = ["加微信", "whatsapp me"]

[[rule]]
name = "threat"
action = "block"
block_for = "1h"
keywords = ["kill you", "炸了你们"]

[similarity]
threshold = 0.6
action = "drop"
samples = ["Cheap followers and likes, buy 10000 instagram followers now at our site"]
"#;

    fn rules() -> Arc<SpamRules> {
        Arc::new(SpamRules::from_str(RULES, Format::Toml, &AssistConfig::default()).unwrap())
    }

    fn rule(h: Option<Hit>) -> Option<(String, Action)> {
        h.map(|h| (h.rule.to_string(), h.action))
    }

    #[test]
    fn keywords_match_case_and_width_insensitively_on_word_bounds() {
        let r = rules();
        assert_eq!(
            rule(r.classify("Best ONLINE   Casino!!")),
            Some(("gambling".into(), Action::Drop))
        );
        assert_eq!(
            rule(r.classify("ｏｎｌｉｎｅ ｃａｓｉｎｏ")).unwrap().0,
            "gambling"
        );
        assert_eq!(rule(r.classify("网上赌场开业")).unwrap().0, "gambling");
        assert_eq!(rule(r.classify("I live in Essex")), None);
        assert_eq!(rule(r.classify("Where is my order?")), None);
    }

    #[test]
    fn compact_rules_see_through_spacing_and_most_severe_wins() {
        let r = rules();
        assert_eq!(
            rule(r.classify("加 微 信 了解 详情")),
            Some(("contact-bait".into(), Action::Flag))
        );
        assert_eq!(rule(r.classify("what's.app me")).unwrap().0, "contact-bait");
        assert_eq!(rule(r.classify("what's up, call me")), None);
        assert_eq!(
            rule(r.classify("w h a t s a p p  m e")).unwrap().0,
            "contact-bait"
        );
        let h = r.classify("加微信 or I will kill you").unwrap();
        assert_eq!((&*h.rule, h.action), ("threat", Action::Block));
        assert_eq!(h.block_for, Duration::from_secs(3600));
    }

    #[test]
    fn keywords_are_found_past_benign_padding() {
        let padded = format!("{} online casino", "hello there ".repeat(1000));
        assert_eq!(rule(rules().classify(&padded)).unwrap().0, "gambling");
    }

    #[test]
    fn similar_samples_match() {
        let r = rules();
        let h = r
            .classify("buy 5000 instagram followers and likes cheap at our site!")
            .unwrap();
        assert_eq!(&*h.rule, "similar-to-spam-sample");
        assert_eq!(r.classify("how do I follow my order on your site?"), None);
    }

    #[test]
    fn verdicts_counters_and_blocks() {
        let mut f = SpamFilter::new(&AssistConfig::default(), Some(rules()));
        assert_eq!(f.check("t/v1", "hello", 0), Verdict::Allow);
        assert!(matches!(f.check("t/v1", "加微信", 1), Verdict::Flag { .. }));
        assert!(matches!(
            f.check("t/v1", "online casino", 2),
            Verdict::Drop { .. }
        ));
        let Verdict::Block { until_ms, .. } = f.check("t/v1", "I will kill you", 3) else {
            panic!("not blocked")
        };
        assert_eq!(until_ms, 3 + 3_600_000);
        assert!(matches!(f.check("t/v1", "sorry", 4), Verdict::Block { .. }));
        assert_eq!(f.check("t/v2", "hello", 4), Verdict::Allow);
        assert_eq!(f.check("t/v1", "hello", until_ms), Verdict::Allow);
        let c = f.counters();
        assert_eq!(
            (
                c.checked,
                c.allowed,
                c.flagged,
                c.dropped,
                c.blocks,
                c.blocked_messages
            ),
            (7, 3, 1, 1, 1, 1)
        );
    }

    #[test]
    fn token_bucket_limits_bursts_and_refills() {
        let cfg = AssistConfig {
            rate_per_second: 1.0,
            rate_burst: 3,
            ..AssistConfig::default()
        };
        let mut f = SpamFilter::new(&cfg, None);
        for _ in 0..3 {
            assert_eq!(f.check("v", "hi", 1000), Verdict::Allow);
        }
        assert_eq!(f.check("v", "hi", 1000), Verdict::RateLimited);
        assert_eq!(f.check("v", "hi", 1500), Verdict::RateLimited);
        assert_eq!(f.check("v", "hi", 2000), Verdict::Allow);
        assert_eq!(f.counters().rate_limited, 2);
        let off = AssistConfig {
            rate_per_second: 0.0,
            ..AssistConfig::default()
        };
        let mut f = SpamFilter::new(&off, None);
        assert!((0..100).all(|_| f.check("v", "hi", 0) == Verdict::Allow));
    }

    #[test]
    fn maps_stay_bounded() {
        let cfg = AssistConfig {
            rate_per_second: 2.0,
            rate_max_visitors: 64,
            max_blocked: 4,
            ..AssistConfig::default()
        };
        let mut f = SpamFilter::new(&cfg, Some(rules()));
        for i in 0..1000u64 {
            f.check(&format!("v{i}"), "hello", i);
            assert!(f.tracked_visitors() <= 64);
        }
        assert!(f.counters().buckets_evicted > 0);
        for i in 0..10u64 {
            f.check(&format!("bad{i}"), "kill you", 2000 + i);
            assert!(f.blocked_len() <= 4);
        }
        assert_eq!(f.counters().blocks_evicted, 6);
        // The latest blocks survive.
        assert!(matches!(f.check("bad9", "hi", 3000), Verdict::Block { .. }));
    }

    #[test]
    fn reload_keeps_state() {
        let mut f = SpamFilter::new(&AssistConfig::default(), Some(rules()));
        assert!(matches!(f.check("v", "kill you", 0), Verdict::Block { .. }));
        f.set_rules(None);
        assert!(matches!(f.check("v", "hello", 1), Verdict::Block { .. }));
        assert_eq!(f.check("w", "kill you", 1), Verdict::Allow);
    }

    #[test]
    fn typed_load_errors() {
        let cfg = AssistConfig::default();
        let err = |t: &str| SpamRules::from_str(t, Format::Toml, &cfg).unwrap_err();
        assert!(matches!(err(""), LoadError::Empty(_)));
        assert!(matches!(
            err("[[rule]]\nname='a'\naction='explode'\nkeywords=['x']"),
            LoadError::Parse { .. }
        ));
        assert!(matches!(
            err("[[rule]]\nname='a'\naction='flag'\nblock_for='1h'\nkeywords=['x']"),
            LoadError::Invalid { index: 1, .. }
        ));
        assert!(matches!(
            err("[[rule]]\nname='a'\naction='flag'\nkeywords=['!!']"),
            LoadError::Invalid { index: 1, .. }
        ));
        assert!(matches!(
            err("[similarity]\nthreshold=2.0\naction='flag'\nsamples=['x']"),
            LoadError::Invalid { .. }
        ));
    }
}
