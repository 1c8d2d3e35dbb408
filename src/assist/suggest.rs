//! Canned-reply suggestions: a library of replies (global and per group) searched by
//! what the agent has typed.
//!
//! Each scope keeps its replies' normalised texts (and short titles), cut to
//! [`DEPTH`] characters, in one sorted array. A prefix is a binary search to a
//! contiguous range, ranked by usage. When that yields fewer than asked, the same
//! array is walked as an implicit trie (children = runs of equal characters, found by
//! binary search) carrying a Levenshtein row, so typo-tolerant matches cost the
//! branches within the edit bound rather than the library size.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::config::AssistConfig;
use super::load::{self, Format, LoadError};
use super::normalize::normalize;
use crate::protocol::messages::{MAX_BODY, Suggestion};

const WHAT: &str = "canned replies";
/// Characters of each reply (and of a prefix) the index keeps; longer prefixes are
/// checked against the full text of the few replies that share these.
const DEPTH: usize = 40;
/// Longest title/shortcut, in bytes.
const MAX_TITLE: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CannedFile {
    reply: Vec<ReplyFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyFile {
    /// Library id (sent in `Suggestion.id`), unique in the file.
    id: u32,
    /// Group whose agents see it; absent or empty: every group.
    #[serde(default)]
    group: String,
    /// Optional shortcut, e.g. `refund` or `/ty`, matched like the text.
    #[serde(default)]
    title: String,
    /// The reply.
    text: String,
    /// Starting usage count (e.g. carried from another system).
    #[serde(default)]
    uses: u32,
}

#[derive(Debug)]
struct Reply {
    id: u32,
    text: String,
    title: String,
}

/// One searchable key: a reply's text or title, normalised and cut to [`DEPTH`].
#[derive(Debug, Clone, Copy)]
struct Key {
    start: u32,
    len: u32,
    reply: u32,
    title: bool,
}

/// One scope's sorted keys over a character arena.
#[derive(Debug, Default)]
struct Keys {
    arena: Vec<char>,
    keys: Vec<Key>,
}

impl Keys {
    fn push(&mut self, norm: &str, reply: u32, title: bool) {
        let start = self.arena.len() as u32;
        self.arena.extend(norm.chars().take(DEPTH));
        let len = self.arena.len() as u32 - start;
        self.keys.push(Key {
            start,
            len,
            reply,
            title,
        });
    }

    fn chars(&self, k: &Key) -> &[char] {
        self.arena
            .get(k.start as usize..(k.start + k.len) as usize)
            .unwrap_or(&[])
    }

    fn sort(&mut self) {
        let mut keys = std::mem::take(&mut self.keys);
        keys.sort_unstable_by(|a, b| self.chars(a).cmp(self.chars(b)));
        self.keys = keys;
    }

    /// Keys starting with `p` (at most [`DEPTH`] characters): a contiguous range.
    fn prefix_range(&self, p: &[char]) -> (usize, usize) {
        let lo = self.keys.partition_point(|k| self.chars(k) < p);
        let hi = lo
            + self
                .keys
                .get(lo..)
                .unwrap_or(&[])
                .partition_point(|k| self.chars(k).starts_with(p));
        (lo, hi)
    }

    fn char_at(&self, i: usize, depth: usize) -> Option<char> {
        self.keys
            .get(i)
            .and_then(|k| self.chars(k).get(depth).copied())
    }

    /// Depth-first walk of the implicit trie under keys `lo..hi` (which share their
    /// first `depth` characters), reporting `(lo, hi, distance)` for every subtree
    /// whose path is within `max` edits of `q`.
    fn walk(
        &self,
        q: &[char],
        max: u8,
        (depth, lo, hi): (usize, usize, usize),
        prev: &[u8],
        out: &mut Vec<(usize, usize, u8)>,
    ) {
        let mut i = lo;
        // Keys that end here sort first; they have no child.
        while i < hi && self.char_at(i, depth).is_none() {
            i += 1;
        }
        let mut row = vec![0u8; prev.len()];
        while i < hi {
            let Some(c) = self.char_at(i, depth) else {
                break;
            };
            let j = i + self
                .keys
                .get(i..hi)
                .unwrap_or(&[])
                .partition_point(|k| self.chars(k).get(depth).is_some_and(|&x| x <= c));
            let j = j.max(i + 1);
            // Levenshtein row for the path extended by `c`.
            let mut best = u8::MAX;
            for x in 0..row.len() {
                let v = if x == 0 {
                    prev.first().map_or(u8::MAX, |p| p.saturating_add(1))
                } else {
                    let sub = prev.get(x - 1).map_or(u8::MAX, |&p| {
                        p.saturating_add(u8::from(q.get(x - 1) != Some(&c)))
                    });
                    let del = prev.get(x).map_or(u8::MAX, |p| p.saturating_add(1));
                    let ins = row.get(x - 1).map_or(u8::MAX, |p| p.saturating_add(1));
                    sub.min(del).min(ins)
                };
                if let Some(r) = row.get_mut(x) {
                    *r = v;
                }
                best = best.min(v);
            }
            let last = row.last().copied().unwrap_or(u8::MAX);
            if last <= max {
                out.push((i, j, last));
            } else if best <= max && depth + 1 < DEPTH {
                self.walk(q, max, (depth + 1, i, j), &row, out);
            }
            i = j;
        }
    }
}

/// Best-first suggestions, at most `k`, one per reply.
struct TopK {
    k: usize,
    /// (distance, usage reversed, id) — smaller is better — and the reply index.
    items: Vec<((u8, u32, u32), u32)>,
}

impl TopK {
    fn offer(&mut self, rank: (u8, u32, u32), reply: u32) {
        if let Some(pos) = self.items.iter().position(|&(_, r)| r == reply) {
            if self.items.get(pos).is_some_and(|&(old, _)| old <= rank) {
                return;
            }
            self.items.remove(pos);
        }
        if self.items.len() >= self.k && self.items.last().is_some_and(|&(w, _)| w <= rank) {
            return;
        }
        let at = self.items.partition_point(|&(r, _)| r <= rank);
        self.items.insert(at, (rank, reply));
        self.items.truncate(self.k);
    }

    /// Whether a candidate at `dist` with `uses` could enter (cheap pre-check, so
    /// scanning a large range mostly costs one usage load per key).
    fn admits(&self, dist: u8, uses: u32) -> bool {
        self.items.len() < self.k
            || self
                .items
                .last()
                .is_some_and(|&((d, inv, _), _)| (dist, u32::MAX - uses) <= (d, inv))
    }

    fn has(&self, reply: u32) -> bool {
        self.items.iter().any(|&(_, r)| r == reply)
    }
}

/// The canned-reply library. Texts are immutable; usage counts are atomics, so one
/// library can be shared (`Arc`) by every worker.
#[derive(Debug)]
pub struct CannedLibrary {
    replies: Vec<Reply>,
    uses: Vec<AtomicU32>,
    by_id: FxHashMap<u32, u32>,
    global: Keys,
    groups: FxHashMap<String, Keys>,
    top_k: usize,
    max_k: usize,
    max_edit: u8,
}

impl CannedLibrary {
    /// Loads the library at `path` (JSON if it ends in `.json`, else TOML), bounded by
    /// `cfg.max_file_bytes` and `cfg.max_entries`.
    pub fn from_file(path: &Path, cfg: &AssistConfig) -> Result<Self, LoadError> {
        let text = load::read_bounded(path, cfg.max_file_bytes)?;
        Self::from_str(&text, Format::of_path(path), cfg)
    }

    /// Builds the library from file text.
    pub fn from_str(text: &str, format: Format, cfg: &AssistConfig) -> Result<Self, LoadError> {
        let file: CannedFile = load::parse_bounded(text, format, WHAT, cfg.max_file_bytes)?;
        load::check_count(WHAT, file.reply.len(), cfg.max_entries)?;
        let mut lib = Self {
            replies: Vec::with_capacity(file.reply.len()),
            uses: Vec::with_capacity(file.reply.len()),
            by_id: FxHashMap::default(),
            global: Keys::default(),
            groups: FxHashMap::default(),
            top_k: usize::from(cfg.suggest_top_k),
            max_k: usize::from(cfg.suggest_max_k),
            max_edit: cfg.suggest_max_edit_distance,
        };
        for (i, r) in file.reply.into_iter().enumerate() {
            let invalid = |reason: String| LoadError::Invalid {
                what: WHAT,
                index: i + 1,
                reason,
            };
            let norm = normalize(&r.text);
            if norm.is_empty() || r.text.len() > MAX_BODY {
                return Err(invalid(format!(
                    "text must have letters or digits and at most {MAX_BODY} bytes"
                )));
            }
            if r.title.len() > MAX_TITLE {
                return Err(invalid(format!("title longer than {MAX_TITLE} bytes")));
            }
            let n = i as u32;
            if lib.by_id.insert(r.id, n).is_some() {
                return Err(invalid(format!("duplicate id {}", r.id)));
            }
            let keys = if r.group.is_empty() {
                &mut lib.global
            } else {
                lib.groups.entry(r.group).or_default()
            };
            keys.push(&norm, n, false);
            let title = normalize(&r.title);
            if !title.is_empty() {
                keys.push(&title, n, true);
            }
            lib.uses.push(AtomicU32::new(r.uses));
            lib.replies.push(Reply {
                id: r.id,
                text: r.text,
                title,
            });
        }
        lib.global.sort();
        for keys in lib.groups.values_mut() {
            keys.sort();
        }
        Ok(lib)
    }

    /// Replies loaded.
    pub fn len(&self) -> usize {
        self.replies.len()
    }

    /// Never true: an empty file is a load error.
    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    /// Counts one use of reply `id` (an agent sent it); false if the id is unknown.
    pub fn record_use(&self, id: u32) -> bool {
        let Some(u) = self.by_id.get(&id).and_then(|&n| self.uses.get(n as usize)) else {
            return false;
        };
        let _ = u.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_add(1))
        });
        true
    }

    /// After a reload: keeps the higher of the file's and `old`'s usage count for every
    /// id both hold, so rankings survive SIGHUP.
    pub fn carry_uses_from(&self, old: &CannedLibrary) {
        for (r, u) in old.replies.iter().zip(&old.uses) {
            if let Some(mine) = self
                .by_id
                .get(&r.id)
                .and_then(|&n| self.uses.get(n as usize))
            {
                mine.fetch_max(u.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }

    fn uses_of(&self, reply: u32) -> u32 {
        self.uses
            .get(reply as usize)
            .map_or(0, |u| u.load(Ordering::Relaxed))
    }

    fn rank(&self, dist: u8, reply: u32) -> (u8, u32, u32) {
        let id = self.replies.get(reply as usize).map_or(u32::MAX, |r| r.id);
        (dist, u32::MAX - self.uses_of(reply), id)
    }

    /// Up to `k` replies (`k` 0: `assist.suggest_top_k`; never more than
    /// `assist.suggest_max_k`) for what the agent typed in a conversation of `group`,
    /// from that group's and the global library: replies (or titles) starting with
    /// `prefix` after normalisation, most used first; then, if fewer than `k`, replies
    /// whose start is within a small edit distance of it, closest first.
    pub fn suggest(&self, group: &str, prefix: &str, k: usize) -> Vec<Suggestion> {
        let k = if k == 0 {
            self.top_k
        } else {
            k.min(self.max_k)
        };
        let norm = normalize(prefix);
        let p: Vec<char> = norm.chars().collect();
        let cut = p.get(..DEPTH).unwrap_or(&p);
        let scopes = [Some(&self.global), self.groups.get(group)];
        let mut top = TopK {
            k,
            items: Vec::with_capacity(k + 1),
        };
        for keys in scopes.into_iter().flatten() {
            let (lo, hi) = keys.prefix_range(cut);
            for key in keys.keys.get(lo..hi).unwrap_or(&[]) {
                if !top.admits(0, self.uses_of(key.reply))
                    || (p.len() > DEPTH && !self.full_match(key, &norm))
                {
                    continue;
                }
                top.offer(self.rank(0, key.reply), key.reply);
            }
        }
        let max = self.edit_bound(p.len());
        if top.items.len() < k && max > 0 {
            let mut hits = Vec::new();
            let row: Vec<u8> = (0..=cut.len()).map(|x| x as u8).collect();
            for keys in scopes.into_iter().flatten() {
                hits.clear();
                keys.walk(cut, max, (0, 0, keys.keys.len()), &row, &mut hits);
                for &(lo, hi, dist) in &hits {
                    for key in keys.keys.get(lo..hi).unwrap_or(&[]) {
                        if dist > 0
                            && top.admits(dist, self.uses_of(key.reply))
                            && !top.has(key.reply)
                        {
                            top.offer(self.rank(dist, key.reply), key.reply);
                        }
                    }
                }
            }
        }
        top.items
            .iter()
            .filter_map(|&(_, n)| {
                let r = self.replies.get(n as usize)?;
                Some(Suggestion {
                    id: r.id,
                    uses: self.uses_of(n),
                    text: r.text.clone(),
                })
            })
            .collect()
    }

    /// Edits allowed for a prefix of `len` characters: none for very short ones,
    /// where one edit matches nearly everything.
    fn edit_bound(&self, len: usize) -> u8 {
        let by_len = match len {
            0..=2 => 0,
            3..=5 => 1,
            _ => 2,
        };
        self.max_edit.min(by_len)
    }

    /// Whether the whole normalised text (or title) of `key`'s reply starts with `norm`.
    fn full_match(&self, key: &Key, norm: &str) -> bool {
        self.replies.get(key.reply as usize).is_some_and(|r| {
            if key.title {
                r.title.starts_with(norm)
            } else {
                normalize(&r.text).starts_with(norm)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIB: &str = r#"
[[reply]]
id = 1
title = "hello"
text = "Hello! How can I help you today?"
uses = 5

[[reply]]
id = 2
text = "Hello, thanks for waiting. Let me check that for you."
uses = 9

[[reply]]
id = 3
title = "refund"
text = "Your refund has been issued; it takes 3-5 business days to arrive."

[[reply]]
id = 4
group = "billing"
text = "Here is your invoice: Billing > Invoices > Download."

[[reply]]
id = 5
text = "您好，请问有什么可以帮您？"
uses = 2

[[reply]]
id = 6
text = "Thank you for contacting us, have a nice day!"
"#;

    fn lib() -> CannedLibrary {
        CannedLibrary::from_str(LIB, Format::Toml, &AssistConfig::default()).unwrap()
    }

    fn ids(v: &[Suggestion]) -> Vec<u32> {
        v.iter().map(|s| s.id).collect()
    }

    #[test]
    fn prefix_matches_rank_by_usage() {
        let lib = lib();
        assert_eq!(ids(&lib.suggest("support", "hel", 5)), vec![2, 1]);
        assert!(lib.record_use(1));
        for _ in 0..5 {
            lib.record_use(1);
        }
        let s = lib.suggest("support", "HELLO", 5);
        assert_eq!(ids(&s), vec![1, 2]);
        assert_eq!(s[0].uses, 11);
        assert!(!lib.record_use(99));
    }

    #[test]
    fn titles_groups_and_chinese() {
        let lib = lib();
        assert_eq!(ids(&lib.suggest("support", "refu", 5)), vec![3]);
        assert_eq!(ids(&lib.suggest("support", "your ref", 5)), vec![3]);
        assert_eq!(ids(&lib.suggest("billing", "here is", 5)), vec![4]);
        assert!(lib.suggest("support", "here is", 5).is_empty());
        assert_eq!(ids(&lib.suggest("support", "您好", 5)), vec![5]);
    }

    #[test]
    fn typos_fill_in_after_exact_matches() {
        let lib = lib();
        assert_eq!(ids(&lib.suggest("support", "thnak you", 5)), vec![6]);
        assert_eq!(ids(&lib.suggest("support", "refnd", 5)), vec![3]);
        // Two-letter prefixes get no fuzzy matches.
        assert!(lib.suggest("support", "xy", 5).is_empty());
        // Exact first, then fuzzy.
        let s = ids(&lib.suggest("support", "helo", 5));
        assert_eq!(s, vec![2, 1]);
    }

    #[test]
    fn k_defaults_and_is_capped() {
        let lib = lib();
        assert_eq!(lib.suggest("support", "", 0).len(), 5);
        assert_eq!(lib.suggest("support", "", 1).len(), 1);
        assert_eq!(ids(&lib.suggest("support", "", 1)), vec![2]);
        let cfg = AssistConfig {
            suggest_max_k: 2,
            suggest_top_k: 2,
            ..AssistConfig::default()
        };
        let small = CannedLibrary::from_str(LIB, Format::Toml, &cfg).unwrap();
        assert_eq!(small.suggest("support", "", 50).len(), 2);
    }

    #[test]
    fn long_prefixes_check_the_full_text() {
        let lib = lib();
        let long = "Your refund has been issued; it takes 3-5 business days";
        assert_eq!(ids(&lib.suggest("support", long, 5)), vec![3]);
        let wrong = "Your refund has been issued; it takes 3-5 business weeks";
        assert!(lib.suggest("support", wrong, 5).iter().all(|s| s.id == 3));
    }

    #[test]
    fn uses_survive_a_reload() {
        let old = lib();
        old.record_use(3);
        let new = lib();
        new.carry_uses_from(&old);
        assert_eq!(new.suggest("support", "refund", 1)[0].uses, 1);
    }

    #[test]
    fn typed_load_errors() {
        let cfg = AssistConfig::default();
        let err = |t: &str| CannedLibrary::from_str(t, Format::Toml, &cfg).unwrap_err();
        assert!(matches!(err("reply = []"), LoadError::Empty(_)));
        assert!(matches!(
            err("[[reply]]\nid=1\ntext='a'\nextra=1"),
            LoadError::Parse { .. }
        ));
        assert!(matches!(
            err("[[reply]]\nid=1\ntext='a'\n[[reply]]\nid=1\ntext='b'"),
            LoadError::Invalid { index: 2, .. }
        ));
        assert!(matches!(
            err("[[reply]]\nid=1\ntext='...'"),
            LoadError::Invalid { .. }
        ));
    }

    #[test]
    fn matches_a_brute_force_edit_distance_scan() {
        // Every reply whose start is within the bound must be found when k is large.
        let mut text = String::new();
        let words = [
            "order", "refund", "ship", "track", "return", "invoice", "hello",
        ];
        for i in 0..300u32 {
            let a = words[(i % 7) as usize];
            let b = words[((i / 7) % 7) as usize];
            text.push_str(&format!(
                "[[reply]]\nid = {i}\ntext = \"{a} {b} number {i}\"\n"
            ));
        }
        let cfg = AssistConfig {
            suggest_max_k: 255,
            ..AssistConfig::default()
        };
        let lib = CannedLibrary::from_str(&text, Format::Toml, &cfg).unwrap();
        for q in ["refnd ship", "odrer", "trac retur", "helo invoic"] {
            let got: std::collections::BTreeSet<u32> =
                ids(&lib.suggest("", q, 255)).into_iter().collect();
            let qn: Vec<char> = normalize(q).chars().collect();
            let max = lib.edit_bound(qn.len());
            for r in &lib.replies {
                let t: Vec<char> = normalize(&r.text).chars().collect();
                let d = (0..=t.len().min(DEPTH))
                    .map(|n| levenshtein(&qn, &t[..n]))
                    .min()
                    .unwrap();
                if d <= usize::from(max) {
                    assert!(got.contains(&r.id), "{q:?} missed {:?} (d={d})", r.text);
                }
            }
        }
    }

    fn levenshtein(a: &[char], b: &[char]) -> usize {
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut row = vec![i + 1; b.len() + 1];
            for (j, cb) in b.iter().enumerate() {
                row[j + 1] = (prev[j] + usize::from(ca != cb))
                    .min(prev[j + 1] + 1)
                    .min(row[j] + 1);
            }
            prev = row;
        }
        prev[b.len()]
    }
}
