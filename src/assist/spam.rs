//! Spam and abuse filter for visitor messages: keyword rules matched with
//! `aho-corasick` over normalised text (also with leetspeak and look-alike letters
//! read as letters), similarity to known spam samples (the FAQ's TF-IDF machinery),
//! flooding (within a message, and the same message again and again from one
//! visitor), links to domains outside the site's own, a per-visitor token-bucket rate
//! limit and a blocklist of subjects with expiry.
//!
//! Refusing a customer's message is the costly mistake, so a `drop` or `block` rule
//! is carried out only when the evidence is strong: at least `refuse_signals`
//! (default 2) independent signals (distinct keywords, a spam sample, a foreign link,
//! flooding) and no sign that a customer is talking *about* spam or about an order
//! ("I got an SMS saying I won…", "the casino night decorations I ordered are
//! missing"). Otherwise the message is delivered flagged for an agent.
//!
//! Whether a message is flagged at all is an evidence score reaching the rule file's
//! `flag_score` (default 1): each signal counts 1, disguised words (mixed scripts,
//! leetspeak) ½ or 1, weak evidence ½ each (contact handles, money lures, shouting, an
//! ordinary foreign link), and a visitor reporting spam −1, one asking about a product
//! −½. Multi-word keywords also match with up to two words inserted in a clause.
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
use super::disguise::{disguised_words, join_spelled};
use super::load::{self, Format, LoadError};
use super::normalize::{is_cjk, normalize, normalize_whole};
use super::signals::{
    Cues, asking, deobfuscate, flooded, imitates_own, is_own, linked_hosts, suspicious,
    weak_evidence,
};
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
    /// The site's own domains (and their subdomains): links elsewhere are a signal.
    #[serde(default)]
    own_domains: Vec<String>,
    /// Signals a `drop` or `block` needs; with fewer the message is flagged.
    #[serde(default = "default_refuse_signals")]
    refuse_signals: u32,
    /// Evidence score (signals, weak evidence at half, less the cues of a customer)
    /// from which a message is flagged at least.
    #[serde(default = "default_flag_score")]
    flag_score: f32,
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

fn default_refuse_signals() -> u32 {
    2
}

fn default_flag_score() -> f32 {
    1.0
}

/// Words a multi-word Latin keyword may have inserted within one clause ("buy 5 star
/// reviews" for `buy reviews`).
const MAX_GAP: usize = 2;

/// Most links looked at in one message.
const MAX_LINKS: usize = 16;

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
    /// Each keyword as matched (spaced ones, then compact ones), to tell a keyword
    /// that is only a link's host name ("bit ly") from one of its own.
    keyword_text: Vec<String>,
    /// Latin keywords of several words by first word: `(keyword index, rule, the
    /// other words)`, matched with up to [`MAX_GAP`] words inserted.
    gapped: FxHashMap<String, Vec<(usize, u32, Vec<String>)>>,
    similarity: Option<Similarity>,
    own_domains: Vec<String>,
    refuse_signals: u32,
    flag_score: f32,
    cues: Option<Cues>,
}

/// Built-in signals: each flags on its own, and counts toward a rule's refusal.
fn signal_hit(name: &str) -> Hit {
    Hit {
        rule: name.into(),
        action: Action::Flag,
        block_for: Duration::ZERO,
    }
}

/// Rule name of a link to a domain outside `own_domains`.
pub const FOREIGN_LINK: &str = "foreign-link";
/// Rule name of a message repeating itself.
pub const FLOOD: &str = "flood";
/// Rule name of a visitor sending the same message again and again.
pub const REPEATED: &str = "repeated";
/// Rule name of words disguised to slip past keywords (mixed scripts, leetspeak).
pub const DISGUISED: &str = "disguised";
/// Rule name of weak evidence adding up (contact handles, money lures, shouting, an
/// ordinary foreign link) with no rule or signal of its own.
pub const WEAK_EVIDENCE: &str = "weak-evidence";

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

/// Whether the text after a Latin keyword ends its word there, allowing a plural
/// (`moron` matches "morons", `idiot` "idiots").
fn ends_word(after: &str) -> bool {
    let mut cs = after.chars();
    match cs.next() {
        Some('s') => is_boundary(cs.next()),
        c => is_boundary(c),
    }
}

/// `norm` without the spaces between two CJK characters.
fn squeeze_cjk(norm: &str) -> String {
    join_spaced_letters(&squeeze_cjk_only(norm))
}

/// Fewest single letters in a row read as one spelled-out word.
const SPELLED_OUT: usize = 3;

/// Runs of at least [`SPELLED_OUT`] single Latin letters separated by spaces (`c a s i
/// n o`, from `c-a-s-i-n-o` or `c.a.s.i.n.o` after normalisation) joined into one word,
/// so every rule sees a spelled-out keyword, not only `compact` ones.
fn join_spaced_letters(norm: &str) -> String {
    let words: Vec<&str> = norm.split(' ').collect();
    let single = |w: &str| w.len() == 1 && w.chars().all(|c| c.is_ascii_alphabetic());
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let run = words
            .get(i..)
            .unwrap_or(&[])
            .iter()
            .take_while(|w| single(w))
            .count();
        if run >= SPELLED_OUT {
            out.push(words.get(i..i + run).unwrap_or(&[]).concat());
            i += run;
        } else {
            out.push(words.get(i).copied().unwrap_or("").to_owned());
            i += 1;
        }
    }
    out.join(" ")
}

/// [`squeeze_cjk`] without joining spelled-out letters.
fn squeeze_cjk_only(norm: &str) -> String {
    let mut out = String::with_capacity(norm.len());
    let mut cs = norm.chars().peekable();
    let mut prev = None;
    while let Some(c) = cs.next() {
        if c == ' ' && prev.is_some_and(is_cjk) && cs.peek().is_some_and(|&n| is_cjk(n)) {
            continue;
        }
        out.push(c);
        prev = Some(c);
    }
    out
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
        if !(file.flag_score > 0.0 && file.flag_score <= 16.0) {
            return Err(LoadError::Invalid {
                what: WHAT,
                index: 0,
                reason: "flag_score must be in (0, 16]".into(),
            });
        }
        if file.refuse_signals == 0 {
            return Err(LoadError::Invalid {
                what: WHAT,
                index: 0,
                reason: "refuse_signals must be at least 1".into(),
            });
        }
        let own_domains = file
            .own_domains
            .iter()
            .map(|d| d.trim().trim_start_matches("www.").to_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        let mut gapped: FxHashMap<String, Vec<(usize, u32, Vec<String>)>> = FxHashMap::default();
        for (k, (kw, p)) in spaced.iter().zip(&spaced_p).enumerate() {
            let words: Vec<String> = kw.split(' ').map(str::to_owned).collect();
            if let [first, rest @ ..] = words.as_slice()
                && !rest.is_empty()
                && !kw.chars().any(is_cjk)
            {
                gapped
                    .entry(first.clone())
                    .or_default()
                    .push((k, p.rule, rest.to_vec()));
            }
        }
        let keyword_text = spaced.iter().chain(&compact).cloned().collect();
        Ok(Self {
            hits,
            keyword_text,
            gapped,
            spaced: automaton(&spaced)?.map(|a| (a, spaced_p)),
            compact: automaton(&compact)?.map(|a| (a, compact_p)),
            similarity,
            own_domains,
            refuse_signals: file.refuse_signals,
            flag_score: file.flag_score,
            cues: Cues::new(),
        })
    }

    /// The most severe rule `text` breaks (first in the file among equals; keywords,
    /// then samples, then the built-in signals), its action lowered to `flag` when the
    /// evidence is weak (see the module docs).
    pub fn classify(&self, text: &str) -> Option<Hit> {
        self.assess(text, false)
    }

    /// [`Self::classify`], with `repeated`: the visitor sent this text again and again
    /// (a signal of its own).
    fn assess(&self, text: &str, repeated: bool) -> Option<Hit> {
        let norm = normalize_whole(text);
        // Leetspeak and look-alikes read as letters, letters spelled out one by one
        // joined ("c a s i n o"), spaces between CJK characters gone (网 上 赌 场).
        let clear = squeeze_cjk(&normalize_whole(&deobfuscate(&join_spelled(text))));
        let mut best: Option<u32> = None;
        let mut consider = |rule: u32| {
            let sev = |r: u32| self.hits.get(r as usize).map(|h| h.action);
            if best.is_none_or(|b| sev(rule) > sev(b) || (sev(rule) == sev(b) && rule < b)) {
                best = Some(rule);
            }
        };
        // Distinct keywords seen (spaced ones, then compact ones after them).
        let mut seen: Vec<usize> = Vec::new();
        let spaced_len = self.spaced.as_ref().map_or(0, |(_, p)| p.len());
        for text in [&norm, &clear] {
            if let Some((ac, pats)) = &self.spaced {
                for m in ac.find_overlapping_iter(text.as_str()) {
                    let Some(p) = pats.get(m.pattern().as_usize()) else {
                        continue;
                    };
                    let before = text.get(..m.start()).and_then(|s| s.chars().next_back());
                    let after = text.get(m.end()..).unwrap_or("");
                    if (!p.bound_start || is_boundary(before)) && (!p.bound_end || ends_word(after))
                    {
                        consider(p.rule);
                        seen.push(m.pattern().as_usize());
                    }
                }
            }
            if let Some((ac, pats)) = &self.compact {
                let squeezed = text.replace(' ', "");
                for m in ac.find_overlapping_iter(&squeezed) {
                    if let Some(p) = pats.get(m.pattern().as_usize()) {
                        consider(p.rule);
                        seen.push(spaced_len + m.pattern().as_usize());
                    }
                }
            }
        }
        if !self.gapped.is_empty() {
            for (k, rule) in self.gapped_matches(text) {
                consider(rule);
                seen.push(k);
            }
        }
        seen.sort_unstable();
        seen.dedup();
        let (link, flood, again) = (
            signal_hit(FOREIGN_LINK),
            signal_hit(FLOOD),
            signal_hit(REPEATED),
        );
        let sample = self.similarity.as_ref().and_then(|s| {
            let (_, score) = s.index.best(&Grams::of(&clear))?;
            (score >= s.threshold).then_some(&s.hit)
        });
        let hosts = linked_hosts(text, MAX_LINKS);
        let foreign: Vec<&String> = hosts
            .iter()
            .filter(|h| !is_own(h, &self.own_domains))
            .collect();
        // A shortener, a TLD spam favours or an imitation of the site's own domain is
        // a signal; any other foreign link (a customer pasting a page) half of one.
        let bad_link = foreign
            .iter()
            .any(|h| suspicious(h) || imitates_own(h, &self.own_domains));
        if bad_link {
            // A keyword inside a counted link's host is the same evidence, not more.
            let linked: Vec<String> = foreign.iter().map(|h| normalize(h)).collect();
            let squeezed: Vec<String> = linked.iter().map(|h| h.replace(' ', "")).collect();
            seen.retain(|&k| {
                self.keyword_text.get(k).is_none_or(|kw| {
                    !linked
                        .iter()
                        .chain(&squeezed)
                        .any(|h| h.contains(kw.as_str()))
                })
            });
        }
        let others = [
            sample,
            bad_link.then_some(&link),
            flooded(&norm).then_some(&flood),
            repeated.then_some(&again),
        ];
        let mut signals = seen.len() as u32;
        let mut chosen: Option<&Hit> = best.and_then(|r| self.hits.get(r as usize));
        for h in others.into_iter().flatten() {
            signals += 1;
            if chosen.is_none_or(|c| h.action > c.action) {
                chosen = Some(h);
            }
        }
        // The evidence score: signals count one, weak evidence a half, and the cues of
        // a customer (reporting spam, talking of an order, asking about a product)
        // count against.
        let (mixed, leet) = disguised_words(text);
        let disguise = match (mixed, leet) {
            (0, 0) => 0.0,
            (0, 1) => 0.5,
            _ => 1.0,
        };
        let (contact, lure, shouting) = weak_evidence(text, &norm);
        let weak = [contact, lure, shouting, !foreign.is_empty() && !bad_link];
        let cues = self
            .cues
            .as_ref()
            .map(|c| c.found(&norm))
            .unwrap_or_default();
        let quoted = cues.any();
        let score = signals as f32 + disguise + 0.5 * weak.iter().filter(|&&w| w).count() as f32
            - if cues.report { 1.0 } else { 0.0 }
            - if asking(&norm) { 0.5 } else { 0.0 };
        if score < self.flag_score {
            return None;
        }
        let fallback = signal_hit(if disguise > 0.0 {
            DISGUISED
        } else {
            WEAK_EVIDENCE
        });
        let mut hit = chosen.unwrap_or(&fallback).clone();
        if hit.action > Action::Flag && (signals < self.refuse_signals || quoted) {
            hit.action = Action::Flag;
        }
        Some(hit)
    }
}

impl SpamRules {
    /// Multi-word Latin keywords found with up to [`MAX_GAP`] words inserted, within
    /// one clause (punctuation ends a clause): `(keyword index, rule)`.
    fn gapped_matches(&self, text: &str) -> Vec<(usize, u32)> {
        let mut found = Vec::new();
        let clauses = text.split([
            '.', ',', ';', ':', '!', '?', '\n', '。', '，', '；', '！', '？',
        ]);
        for clause in clauses {
            let clear = normalize_whole(&deobfuscate(clause));
            let words: Vec<&str> = clear.split(' ').collect();
            for (i, w) in words.iter().enumerate() {
                let Some(list) = self.gapped.get(*w) else {
                    continue;
                };
                for (k, rule, rest) in list {
                    let mut at = i + 1;
                    let mut gap = 0;
                    let all = rest.iter().all(|r| {
                        while let Some(w) = words.get(at) {
                            at += 1;
                            if w == r || w.strip_suffix('s') == Some(r.as_str()) {
                                return true;
                            }
                            gap += 1;
                            if gap > MAX_GAP {
                                return false;
                            }
                        }
                        false
                    });
                    if all {
                        found.push((*k, *rule));
                    }
                }
            }
        }
        found
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
    /// Visitors' recent-message memories forgotten to stay within
    /// `assist.rate_max_visitors`.
    pub recent_evicted: u64,
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
    /// Tenants with a rule file of their own (`assist.spam_tenants`).
    tenant_rules: TenantRules,
    buckets: FxHashMap<Box<str>, Bucket>,
    /// Fingerprints of each visitor's last messages, for repeats.
    recent: FxHashMap<Box<str>, Recent>,
    repeat_limit: u32,
    repeat_window_ms: u64,
    blocked: FxHashMap<Box<str>, Blocked>,
    per_ms: f64,
    burst: f64,
    max_visitors: usize,
    max_blocked: usize,
    counters: SpamCounters,
}

/// Rule sets of the tenants that have their own file, by tenant.
pub type TenantRules = std::collections::BTreeMap<String, Arc<SpamRules>>;

/// Messages remembered per visitor for repeats.
const RECENT: usize = 8;

/// A visitor's last messages: fingerprint and time (ms), oldest overwritten.
#[derive(Debug, Clone, Copy, Default)]
struct Recent {
    seen: [(u64, u64); RECENT],
    next: usize,
    last_ms: u64,
}

/// A message's fingerprint: its normalised text, hashed.
fn fingerprint(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    normalize(text).hash(&mut h);
    h.finish()
}

impl SpamFilter {
    /// A filter with the rate limit and bounds of `cfg` and the given rules (none:
    /// only the rate limit and existing blocks apply).
    pub fn new(cfg: &AssistConfig, rules: Option<Arc<SpamRules>>) -> Self {
        Self {
            rules,
            tenant_rules: TenantRules::new(),
            recent: FxHashMap::default(),
            repeat_limit: cfg.repeat_limit,
            repeat_window_ms: millis(cfg.repeat_window),
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

    /// Swaps in reloaded per-tenant rules: a tenant named here is checked against its
    /// own rules instead of the default ones.
    pub fn set_tenant_rules(&mut self, rules: TenantRules) {
        self.tenant_rules = rules;
    }

    /// Whether this visitor sent the same text `repeat_limit` times (this one
    /// included) within `repeat_window`; remembers it.
    fn repeated(&mut self, visitor_key: &str, text: &str, now_ms: u64) -> bool {
        if self.repeat_limit == 0 {
            return false;
        }
        let fp = fingerprint(text);
        if !self.recent.contains_key(visitor_key) && self.recent.len() >= self.max_visitors {
            let before = self.recent.len();
            let window = self.repeat_window_ms;
            self.recent
                .retain(|_, r| r.last_ms.saturating_add(window) > now_ms);
            if self.recent.len() >= self.max_visitors {
                let mut ages: Vec<u64> = self.recent.values().map(|r| r.last_ms).collect();
                let nth = ages.len() / 8;
                let (_, cutoff, _) = ages.select_nth_unstable(nth);
                let cutoff = *cutoff;
                self.recent.retain(|_, r| r.last_ms > cutoff);
            }
            self.counters.recent_evicted += (before - self.recent.len()) as u64;
        }
        let r = self.recent.entry(visitor_key.into()).or_default();
        let since = now_ms.saturating_sub(self.repeat_window_ms);
        let before = r
            .seen
            .iter()
            .filter(|&&(f, t)| f == fp && t != 0 && t >= since)
            .count();
        if let Some(slot) = r.seen.get_mut(r.next) {
            // Time 0 marks an empty slot: store at least 1.
            *slot = (fp, now_ms.max(1));
        }
        r.next = (r.next + 1) % RECENT;
        r.last_ms = now_ms;
        before + 1 >= self.repeat_limit as usize
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
        let repeated = self.repeated(visitor_key, text, now_ms);
        let tenant = visitor_key.split_once('/').map_or("", |(t, _)| t);
        let rules = self.tenant_rules.get(tenant).or(self.rules.as_ref());
        let hit = match rules {
            Some(r) => r.assess(text, repeated),
            // Without rules a visitor repeating itself is still worth a flag.
            None => repeated.then(|| signal_hit(REPEATED)),
        };
        let Some(hit) = hit else {
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
own_domains = ["example.com"]

[[rule]]
name = "gambling"
action = "drop"
keywords = ["online casino", "赌场", "sex", "free spins", "casino"]

[[rule]]
name = "contact-bait"
action = "flag"
compact = true
keywords = ["加微信", "whatsapp me"]

[[rule]]
name = "threat"
action = "block"
block_for = "1h"
keywords = ["kill you", "炸了你们", "burn your office"]

[[rule]]
name = "insult"
action = "flag"
keywords = ["moron", "shit"]

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

    fn cfg() -> AssistConfig {
        AssistConfig {
            repeat_limit: 0,
            ..AssistConfig::default()
        }
    }

    #[test]
    fn keywords_match_case_and_width_insensitively_on_word_bounds() {
        let r = rules();
        // Two keywords or more: strong enough to drop.
        assert_eq!(
            rule(r.classify("Best ONLINE   Casino!! free spins")),
            Some(("gambling".into(), Action::Drop))
        );
        assert_eq!(
            rule(r.classify("ｏｎｌｉｎｅ ｃａｓｉｎｏ")),
            Some(("gambling".into(), Action::Drop))
        );
        // One keyword: flagged for an agent.
        assert_eq!(
            rule(r.classify("网上赌场开业")),
            Some(("gambling".into(), Action::Flag))
        );
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
    fn one_signal_or_a_customer_quoting_spam_only_flags() {
        let r = rules();
        // A threat on its own is flagged, not blocked.
        assert_eq!(
            rule(r.classify("I will kill you")),
            Some(("threat".into(), Action::Flag))
        );
        // Keywords out of context: a customer talking about an order or a message.
        assert_eq!(
            rule(r.classify("the casino night decorations I ordered are missing")),
            Some(("gambling".into(), Action::Flag))
        );
        assert_eq!(
            rule(r.classify("I got an SMS: online casino, free spins! is this you?")),
            Some(("gambling".into(), Action::Flag))
        );
        // With `refuse_signals = 1` a single keyword drops, as a rule says.
        let strict = format!("refuse_signals = 1\n{RULES}");
        let r = SpamRules::from_str(&strict, Format::Toml, &AssistConfig::default()).unwrap();
        assert_eq!(
            rule(r.classify("网上赌场开业")),
            Some(("gambling".into(), Action::Drop))
        );
    }

    #[test]
    fn leetspeak_look_alikes_and_spaced_chinese_are_seen_through() {
        let r = rules();
        assert_eq!(rule(r.classify("you m0rons")).unwrap().0, "insult");
        assert_eq!(rule(r.classify("sh!t service")).unwrap().0, "insult");
        assert_eq!(rule(r.classify("оnline саsino")).unwrap().0, "gambling");
        assert_eq!(rule(r.classify("网 上 赌 场")).unwrap().0, "gambling");
        // Spelled-out letters are one word for every rule, not only compact ones.
        assert_eq!(
            rule(r.classify("c a s i n o 注册送")).unwrap().0,
            "gambling"
        );
        assert_eq!(join_spaced_letters("plan a b or c"), "plan a b or c");
        assert_eq!(join_spaced_letters("x c-a-s-i-n-o y"), "x c-a-s-i-n-o y");
        assert_eq!(join_spaced_letters("xx c a s i n o yy"), "xx casino yy");
        // Digits in numbers stay digits.
        assert_eq!(rule(r.classify("order 1 of 3 arrived")), None);
    }

    #[test]
    fn floods_and_links_are_signals() {
        let r = rules();
        assert_eq!(
            rule(r.classify("free money free money free money free money")),
            Some((FLOOD.into(), Action::Flag))
        );
        assert_eq!(
            rule(r.classify("在吗在吗在吗在吗在吗在吗")),
            Some((FLOOD.into(), Action::Flag))
        );
        // A shortener or a spammy TLD flags; an ordinary or own link does not.
        assert_eq!(
            rule(r.classify("click bit.ly/x3f")),
            Some((FOREIGN_LINK.into(), Action::Flag))
        );
        assert_eq!(rule(r.classify("see https://shop.example.com/p/1")), None);
        assert_eq!(rule(r.classify("I paid on paypal.com")), None);
        // A keyword plus a foreign link: two signals, the rule's action.
        assert_eq!(
            rule(r.classify("online casino at www.win-big.xyz")),
            Some(("gambling".into(), Action::Drop))
        );
    }

    #[test]
    fn weak_evidence_disguise_and_spelling_add_up() {
        let r = rules();
        // Mixed scripts in a word flag on their own; one leet word does not.
        assert_eq!(
            rule(r.classify("Сheap Rоlex replicas, best price")),
            Some((DISGUISED.into(), Action::Flag))
        );
        assert_eq!(rule(r.classify("my n3ighbour says hi")), None);
        // Two kinds of weak evidence make one signal; one kind alone does not.
        assert_eq!(
            rule(r.classify("earn $5000 a week, message me on telegram @richfast")),
            Some((WEAK_EVIDENCE.into(), Action::Flag))
        );
        assert_eq!(rule(r.classify("please call me back on +1 555 0100")), None);
        assert_eq!(rule(r.classify("I WANT MY MONEY BACK NOW")), None);
        // Letters spelled out one by one are read as the word.
        assert_eq!(
            rule(r.classify("c a s i n o 注册送 bonus")).unwrap().0,
            "gambling"
        );
        assert_eq!(rule(r.classify("fr.ee sp.ins")).unwrap().0, "gambling");
    }

    #[test]
    fn customers_reporting_or_asking_are_not_flagged_on_one_keyword() {
        let r = rules();
        assert_eq!(
            rule(r.classify("I'm reporting a user who keeps posting casino links")),
            None
        );
        assert_eq!(
            rule(r.classify("where can I find the casino theme party kit?")),
            None
        );
        // An angry customer's insult about an order is still flagged.
        assert_eq!(
            rule(r.classify("you m0rons lost my parcel AGAIN")),
            Some(("insult".into(), Action::Flag))
        );
    }

    #[test]
    fn links_imitating_the_site_and_keywords_that_are_a_link() {
        let r = rules();
        assert_eq!(
            rule(r.classify("log in at https://example-verify.help/login now")),
            Some((FOREIGN_LINK.into(), Action::Flag))
        );
        assert_eq!(
            rule(r.classify("log in at https://www.example.com/login")),
            None
        );
        // "bit ly" is the shortener's host: one signal with the link, not two.
        let phish = "[[rule]]\nname='phish'\naction='drop'\nkeywords=['bit ly', 'claim']";
        let p = SpamRules::from_str(phish, Format::Toml, &AssistConfig::default()).unwrap();
        assert_eq!(
            rule(p.classify("the lecture shows bit.ly/xyz, is it safe?")),
            Some(("phish".into(), Action::Flag))
        );
        assert_eq!(
            rule(p.classify("claim now at bit.ly/xyz")),
            Some(("phish".into(), Action::Drop))
        );
    }

    #[test]
    fn flag_score_is_the_tenants_to_set() {
        let strict = format!("flag_score = 2.0\n{RULES}");
        let r = SpamRules::from_str(&strict, Format::Toml, &AssistConfig::default()).unwrap();
        assert_eq!(rule(r.classify("网上赌场开业")), None);
        assert_eq!(
            rule(r.classify("网上赌场开业 www.amxx88.xyz")),
            Some(("gambling".into(), Action::Drop))
        );
        let bad = format!("flag_score = 0.0\n{RULES}");
        assert!(matches!(
            SpamRules::from_str(&bad, Format::Toml, &AssistConfig::default()),
            Err(LoadError::Invalid { .. })
        ));
    }

    #[test]
    fn multi_word_keywords_allow_inserted_words_within_a_clause() {
        let r = rules();
        assert_eq!(
            rule(r.classify("200 free bonus spins today")).unwrap().0,
            "gambling"
        );
        assert_eq!(
            rule(r.classify("the online live casino")).unwrap().0,
            "gambling"
        );
        // Three words inserted, or a clause boundary between: no match.
        assert_eq!(rule(r.classify("free trial, extra spins")), None);
        assert_eq!(rule(r.classify("free for a few more spins")), None);
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
        let mut f = SpamFilter::new(&cfg(), Some(rules()));
        assert_eq!(f.check("t/v1", "hello", 0), Verdict::Allow);
        assert!(matches!(f.check("t/v1", "加微信", 1), Verdict::Flag { .. }));
        assert!(matches!(
            f.check("t/v1", "online casino, free spins", 2),
            Verdict::Drop { .. }
        ));
        let Verdict::Block { until_ms, .. } = f.check("t/v1", "kill you, burn your office", 3)
        else {
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
    fn a_visitor_repeating_itself_is_flagged_within_the_window() {
        let c = AssistConfig {
            repeat_limit: 3,
            repeat_window: Duration::from_secs(60),
            ..AssistConfig::default()
        };
        let mut f = SpamFilter::new(&c, Some(rules()));
        assert_eq!(f.check("t/v", "anyone there?", 0), Verdict::Allow);
        assert_eq!(f.check("t/v", "Anyone there??", 1_000), Verdict::Allow);
        assert_eq!(f.check("t/w", "anyone there?", 1_500), Verdict::Allow);
        assert_eq!(
            f.check("t/v", "anyone there", 2_000),
            Verdict::Flag {
                rule: REPEATED.into()
            }
        );
        // Outside the window it starts again.
        assert_eq!(f.check("t/v", "anyone there", 200_000), Verdict::Allow);
        // Without rules too.
        let mut bare = SpamFilter::new(&c, None);
        for t in 0..2 {
            assert_eq!(bare.check("t/v", "hi", t), Verdict::Allow);
        }
        assert!(matches!(bare.check("t/v", "hi", 2), Verdict::Flag { .. }));
    }

    #[test]
    fn tenants_with_their_own_rules() {
        let mut f = SpamFilter::new(&cfg(), Some(rules()));
        let own =
            "refuse_signals = 1\n[[rule]]\nname='no-pets'\naction='drop'\nkeywords=['kitten']";
        let own = SpamRules::from_str(own, Format::Toml, &AssistConfig::default()).unwrap();
        f.set_tenant_rules(TenantRules::from([("pets".to_owned(), Arc::new(own))]));
        assert!(matches!(
            f.check("pets/v", "a kitten", 0),
            Verdict::Drop { .. }
        ));
        assert_eq!(f.check("pets/v", "online casino", 0), Verdict::Allow);
        assert_eq!(f.check("shop/v", "a kitten", 0), Verdict::Allow);
        assert!(matches!(
            f.check("shop/v", "a casino", 0),
            Verdict::Flag { .. }
        ));
    }

    #[test]
    fn token_bucket_limits_bursts_and_refills() {
        let cfg = AssistConfig {
            rate_per_second: 1.0,
            rate_burst: 3,
            ..cfg()
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
            ..super::tests::cfg()
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
            repeat_limit: 3,
            ..AssistConfig::default()
        };
        let mut f = SpamFilter::new(&cfg, Some(rules()));
        for i in 0..1000u64 {
            f.check(&format!("v{i}"), "hello", i);
            assert!(f.tracked_visitors() <= 64);
            assert!(f.recent.len() <= 64);
        }
        assert!(f.counters().buckets_evicted > 0);
        assert!(f.counters().recent_evicted > 0);
        for i in 0..10u64 {
            f.check(&format!("bad{i}"), "kill you, burn your office", 2000 + i);
            assert!(f.blocked_len() <= 4);
        }
        assert_eq!(f.counters().blocks_evicted, 6);
        // The latest blocks survive.
        assert!(matches!(f.check("bad9", "hi", 3000), Verdict::Block { .. }));
    }

    #[test]
    fn reload_keeps_state() {
        let mut f = SpamFilter::new(&cfg(), Some(rules()));
        let threat = "kill you, burn your office";
        assert!(matches!(f.check("v", threat, 0), Verdict::Block { .. }));
        f.set_rules(None);
        assert!(matches!(f.check("v", "hello", 1), Verdict::Block { .. }));
        assert_eq!(f.check("w", threat, 1), Verdict::Allow);
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
        assert!(matches!(
            err("refuse_signals = 0\n[[rule]]\nname='a'\naction='flag'\nkeywords=['x']"),
            LoadError::Invalid { .. }
        ));
    }

    proptest::proptest! {
        /// Any visitor text: no panic; a refusal only with a rule behind it.
        #[test]
        fn any_text_gets_a_verdict(text in "\\PC{0,200}") {
            let r = rules();
            if let Some(h) = r.classify(&text) {
                proptest::prop_assert!(!h.rule.is_empty());
            }
            let mut f = SpamFilter::new(&AssistConfig::default(), Some(r));
            for t in 0..3 {
                let _ = f.check("t/v", &text, t);
            }
        }

        /// Joining spelled-out letters only removes spaces, and never between two
        /// words of two letters or more.
        #[test]
        fn spelled_out_letters_only_lose_spaces(text in "[a-c ]{0,40}|\\PC{0,80}") {
            let norm = crate::assist::normalize::normalize_whole(&text);
            let out = join_spaced_letters(&norm);
            proptest::prop_assert_eq!(out.replace(' ', ""), norm.replace(' ', ""));
            let long = |s: &str| s.split(' ').filter(|w| w.chars().count() > 1).count();
            proptest::prop_assert!(long(&out) >= long(&norm));
        }
    }
}
