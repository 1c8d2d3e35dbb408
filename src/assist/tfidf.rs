//! Character n-gram TF-IDF with an inverted index and cosine similarity: the
//! matcher behind FAQ auto-reply and spam-sample similarity. No tokenizer, so it works
//! the same for Chinese and English: Latin-script text gives character trigrams over
//! words padded with spaces (digit runs fold to one `#`), CJK text gives character
//! unigrams and bigrams.

use std::cell::RefCell;

use rustc_hash::FxHashMap;

use super::analyze::Analyzer;
use super::normalize::{is_cjk, normalize_into};

/// Up to three characters packed into 63 bits (21 bits each; 0 = absent). Latin
/// trigrams always have three non-zero characters, CJK unigrams and bigrams one or
/// two, so the kinds never collide.
pub(crate) type Gram = u64;

fn pack(a: char, b: Option<char>, c: Option<char>) -> Gram {
    u64::from(u32::from(a))
        | u64::from(b.map_or(0, u32::from)) << 21
        | u64::from(c.map_or(0, u32::from)) << 42
}

/// Tag of a whole-word gram (Latin words of analysed text): bit 63, which packed
/// characters never set.
const WORD: Gram = 1 << 63;

/// A Latin word as a gram.
fn word_gram(w: &[char]) -> Gram {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    w.hash(&mut h);
    WORD | (h.finish() >> 1)
}

/// Appends whole-word grams of the Latin words in `latin` (space-separated).
fn word_grams_of(latin: &[char], out: &mut Vec<Gram>) {
    out.extend(
        latin
            .split(|&c| c == ' ')
            .filter(|w| w.len() > 1)
            .map(word_gram),
    );
}

/// Appends the n-grams of normalised text to `out` (unsorted, repeated).
fn grams_of(norm: &str, latin: &mut Vec<char>, out: &mut Vec<Gram>) {
    latin.clear();
    latin.push(' ');
    let mut prev: Option<char> = None;
    let gap = |latin: &mut Vec<char>, ch: char| {
        if latin.last() != Some(&ch) {
            latin.push(ch);
        }
    };
    for c in norm.chars() {
        if is_cjk(c) {
            out.push(pack(c, None, None));
            if let Some(p) = prev {
                out.push(pack(p, Some(c), None));
            }
            prev = Some(c);
            gap(latin, ' ');
        } else {
            prev = None;
            if c == ' ' {
                gap(latin, ' ');
            } else if c.is_numeric() {
                // Order numbers, amounts, dates: the shape matters, not the digits.
                gap(latin, '#');
            } else {
                latin.push(c);
            }
        }
    }
    gap(latin, ' ');
    out.extend(latin.windows(3).filter_map(|w| match *w {
        [a, b, c] => Some(pack(a, Some(b), Some(c))),
        _ => None,
    }));
}

/// A text's n-grams with their counts, sorted by gram.
#[derive(Debug, Default, Clone)]
pub(crate) struct Grams(Vec<(Gram, u32)>);

impl Grams {
    /// Normalises `text` and counts its n-grams.
    pub(crate) fn of(text: &str) -> Self {
        Self::of_all(std::slice::from_ref(&text))
    }

    /// The n-grams of several texts counted together (none spans two texts).
    pub(crate) fn of_all<S: AsRef<str>>(texts: &[S]) -> Self {
        let mut norm = String::new();
        let mut latin = Vec::new();
        let mut all = Vec::new();
        for t in texts {
            norm.clear();
            normalize_into(t.as_ref(), &mut norm);
            grams_of(&norm, &mut latin, &mut all);
        }
        Self::count(all)
    }

    /// The grams of several texts after word analysis (see [`Analyzer`]): Latin
    /// trigrams plus whole words, CJK unigrams and bigrams.
    pub(crate) fn analyzed<S: AsRef<str>>(analyzer: &Analyzer, texts: &[S]) -> Self {
        let mut norm = String::new();
        let mut latin = Vec::new();
        let mut all = Vec::new();
        for t in texts {
            norm.clear();
            analyzer.analyze_into(t.as_ref(), &mut norm);
            grams_of(&norm, &mut latin, &mut all);
            word_grams_of(&latin, &mut all);
        }
        Self::count(all)
    }

    /// Counts sorted-or-not grams.
    fn count(mut all: Vec<Gram>) -> Self {
        all.sort_unstable();
        let mut counted: Vec<(Gram, u32)> = Vec::with_capacity(all.len());
        for g in all {
            match counted.last_mut() {
                Some((last, n)) if *last == g => *n += 1,
                _ => counted.push((g, 1)),
            }
        }
        Self(counted)
    }

    /// The grams that stand for a word or more: whole Latin words and CJK bigrams
    /// (not trigrams or single characters), sorted.
    pub(crate) fn content(&self) -> impl Iterator<Item = Gram> + '_ {
        self.0.iter().map(|&(g, _)| g).filter(|&g| is_content(g))
    }

    /// The content grams ([`Self::content`]) with their counts, sorted by gram.
    pub(crate) fn content_counts(&self) -> impl Iterator<Item = (Gram, u32)> + '_ {
        self.0.iter().copied().filter(|&(g, _)| is_content(g))
    }

    /// No n-gram at all (the text had no letters or digits).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether `g` stands for a word or more: a whole Latin word or a CJK bigram.
fn is_content(g: Gram) -> bool {
    g & WORD != 0 || (g >> 42 == 0 && (g >> 21) & 0x1F_FFFF != 0)
}

/// Sub-linear term frequency.
pub(crate) fn tf(count: u32) -> f32 {
    1.0 + (count as f32).ln()
}

#[derive(Debug, Clone, Copy)]
struct Posting {
    idf: f32,
    /// Largest weight in the list: bounds what this n-gram can add to any score.
    max_w: f32,
    start: u32,
    end: u32,
}

/// An immutable TF-IDF index over a set of documents (numbered from 0 in build order).
#[derive(Debug, Default)]
pub(crate) struct TfIdf {
    postings: FxHashMap<Gram, Posting>,
    /// Posting lists, back to back: document numbers and their L2-normalised weights.
    docs: Vec<u32>,
    weights: Vec<f32>,
    n_docs: u32,
    /// Weight of a query gram no document has (that of a gram in one unit): such
    /// grams lower the similarity, which keeps unrelated questions below the
    /// threshold. (Measured on the FAQ dev split against the df = 0 weight: a little
    /// better F1.)
    unseen_idf: f32,
}

thread_local! {
    /// Per-thread score accumulator (one slot per document), reused across queries.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl TfIdf {
    /// Indexes `docs`; document `i` is the `i`-th item. Document frequencies count
    /// units, not documents: `unit[i]` names the unit of document `i` (e.g. the FAQ
    /// entry its question belongs to; a unit's documents are contiguous), so the words
    /// an entry repeats across its variants are not taken for common words.
    pub(crate) fn build(docs: &[Grams], unit: impl Fn(usize) -> u32) -> Self {
        let n = u32::try_from(docs.len()).unwrap_or(u32::MAX);
        // gram -> (units holding it, last unit seen, documents holding it)
        let mut df: FxHashMap<Gram, (u32, u32, u32)> = FxHashMap::default();
        let mut units = 0u32;
        let mut last_unit = None;
        for (i, d) in docs.iter().enumerate() {
            let u = unit(i);
            if last_unit != Some(u) {
                units += 1;
                last_unit = Some(u);
            }
            for &(g, _) in &d.0 {
                let e = df.entry(g).or_insert((0, u32::MAX, 0));
                if e.1 != u {
                    e.0 += 1;
                    e.1 = u;
                }
                e.2 += 1;
            }
        }
        let idf = |df: u32| ((units as f32 + 1.0) / (df as f32 + 1.0)).ln() + 1.0;
        let mut postings = FxHashMap::with_capacity_and_hasher(df.len(), Default::default());
        let mut next = 0u32;
        for (&g, &(in_units, _, count)) in &df {
            postings.insert(
                g,
                Posting {
                    idf: idf(in_units),
                    max_w: 0.0,
                    start: next,
                    end: next,
                },
            );
            next = next.saturating_add(count);
        }
        let total = next as usize;
        let mut doc_ids = vec![0u32; total];
        let mut weights = vec![0f32; total];
        let mut row: Vec<(usize, f32)> = Vec::new();
        for (i, d) in docs.iter().enumerate().take(n as usize) {
            row.clear();
            let mut norm2 = 0f32;
            for &(g, c) in &d.0 {
                if let Some(p) = postings.get_mut(&g) {
                    let w = tf(c) * p.idf;
                    norm2 += w * w;
                    row.push((p.end as usize, w));
                    p.end += 1;
                }
            }
            let inv = if norm2 > 0.0 {
                norm2.sqrt().recip()
            } else {
                0.0
            };
            for &(slot, w) in &row {
                if let (Some(id), Some(wt)) = (doc_ids.get_mut(slot), weights.get_mut(slot)) {
                    *id = i as u32;
                    *wt = w * inv;
                }
            }
        }
        for p in postings.values_mut() {
            let ws = weights.get(p.start as usize..p.end as usize).unwrap_or(&[]);
            p.max_w = ws.iter().copied().fold(0.0, f32::max);
        }
        Self {
            postings,
            docs: doc_ids,
            weights,
            n_docs: n,
            unseen_idf: idf(1),
        }
    }

    /// The IDF of `g` in this index (that of a gram in one unit when no document has
    /// it, as queries weigh unseen grams).
    pub(crate) fn idf(&self, g: Gram) -> f32 {
        self.postings.get(&g).map_or(self.unseen_idf, |p| p.idf)
    }

    /// The most similar document and its cosine similarity, if any shares an n-gram.
    pub(crate) fn best(&self, query: &Grams) -> Option<(u32, f32)> {
        self.top2(query).map(|t| t.best)
    }

    /// The two most similar documents and their cosine similarities, if any shares
    /// an n-gram.
    ///
    /// Max-score pruning keeps long queries against large indexes cheap: query
    /// n-grams are taken in decreasing order of the most they can add to a score;
    /// once what the rest can add together is below [`PRUNE`], their (long, low-IDF)
    /// posting lists are not scanned. Instead the documents that could still be best
    /// get those contributions by binary search (lists are sorted by document), so
    /// the best is exact except that documents reachable only through the skipped
    /// n-grams (whose score is below [`PRUNE`]) are not considered; the runner-up may
    /// be short of its exact score by less than [`PRUNE`].
    pub(crate) fn top2(&self, query: &Grams) -> Option<Top2> {
        if query.is_empty() || self.n_docs == 0 {
            return None;
        }
        let mut norm2 = 0f32;
        // (query weight, most it can add, posting list)
        let mut hits: Vec<(f32, f32, Posting)> = Vec::with_capacity(query.0.len());
        for &(g, c) in &query.0 {
            match self.postings.get(&g) {
                Some(p) => {
                    let w = tf(c) * p.idf;
                    norm2 += w * w;
                    hits.push((w, w * p.max_w, *p));
                }
                None => {
                    let w = tf(c) * self.unseen_idf;
                    norm2 += w * w;
                }
            }
        }
        if hits.is_empty() || norm2 <= 0.0 {
            return None;
        }
        let inv = norm2.sqrt().recip();
        hits.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        // The scanned prefix: stop once the rest can add less than PRUNE.
        let mut rest: f32 = hits.iter().map(|h| h.1).sum();
        let mut scanned = 0;
        for h in &hits {
            if rest * inv < PRUNE {
                break;
            }
            rest -= h.1;
            scanned += 1;
        }
        let (head, tail) = hits.split_at(scanned);
        // Summed afresh (not by subtraction) so it is exactly 0 with no tail.
        let rest: f32 = tail.iter().map(|h| h.1).sum();
        let lists = |p: &Posting| {
            let r = p.start as usize..p.end as usize;
            (
                self.docs.get(r.clone()).unwrap_or(&[]),
                self.weights.get(r).unwrap_or(&[]),
            )
        };
        let n = self.n_docs as usize;
        let run = |acc: &mut Vec<f32>| -> Option<Top2> {
            acc.clear();
            acc.resize(n, 0.0);
            for (qw, _, p) in head {
                let (ds, ws) = lists(p);
                for (&d, &w) in ds.iter().zip(ws) {
                    if let Some(a) = acc.get_mut(d as usize) {
                        *a += qw * w;
                    }
                }
            }
            let top = acc.iter().copied().fold(0f32, f32::max);
            if top <= 0.0 {
                return None;
            }
            // Only documents within `rest` of the leader can still overtake it. Give
            // them the tail's contributions by binary search, or, when they are so
            // many that this costs more, scan the tail lists like the head.
            let near = acc.iter().filter(|&&a| a > 0.0 && a + rest >= top).count();
            let scan_cost: usize = tail
                .iter()
                .map(|(_, _, p)| (p.end - p.start) as usize)
                .sum();
            let search_cost: usize = tail
                .iter()
                .map(|(_, _, p)| (p.end - p.start).max(1).ilog2() as usize + 1)
                .sum::<usize>()
                .saturating_mul(near);
            let mut top2 = Ranking::default();
            if scan_cost <= search_cost {
                for (qw, _, p) in tail {
                    let (ds, ws) = lists(p);
                    for (&d, &w) in ds.iter().zip(ws) {
                        if let Some(a) = acc.get_mut(d as usize) {
                            *a += qw * w;
                        }
                    }
                }
                for (d, &a) in acc.iter().enumerate() {
                    top2.offer(d as u32, a);
                }
                return top2.done(inv);
            }
            for (d, &a) in acc.iter().enumerate() {
                if a <= 0.0 {
                    continue;
                }
                if a + rest < top {
                    // Cannot lead; its partial score may still be the runner-up's.
                    top2.offer_second(d as u32, a);
                    continue;
                }
                let mut score = a;
                for (qw, _, p) in tail {
                    let (ds, ws) = lists(p);
                    if let Ok(i) = ds.binary_search(&(d as u32)) {
                        score += qw * ws.get(i).copied().unwrap_or(0.0);
                    }
                }
                top2.offer(d as u32, score);
            }
            top2.done(inv)
        };
        SCRATCH
            .with(|s| s.try_borrow_mut().ok().map(|mut acc| run(&mut acc)))
            .unwrap_or_else(|| run(&mut Vec::new()))
    }
}

/// The best document of a query and the runner-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Top2 {
    /// Document and cosine similarity.
    pub(crate) best: (u32, f32),
    /// The second most similar document, if another shares an n-gram.
    pub(crate) second: Option<(u32, f32)>,
}

/// Running top two (first offered wins ties).
#[derive(Default)]
struct Ranking {
    best: Option<(u32, f32)>,
    second: Option<(u32, f32)>,
}

impl Ranking {
    fn offer(&mut self, d: u32, a: f32) {
        if a <= 0.0 {
            return;
        }
        match self.best {
            Some((_, b)) if a <= b => self.offer_second(d, a),
            _ => {
                if let Some((bd, ba)) = self.best {
                    self.offer_second(bd, ba);
                }
                self.best = Some((d, a));
            }
        }
    }

    fn offer_second(&mut self, d: u32, a: f32) {
        if a > 0.0 && self.second.is_none_or(|(_, s)| a > s) {
            self.second = Some((d, a));
        }
    }

    fn done(self, inv: f32) -> Option<Top2> {
        let best = self.best?;
        let second = self.second.filter(|s| s.0 != best.0);
        Some(Top2 {
            best: (best.0, best.1 * inv),
            second: second.map(|(d, s)| (d, s * inv)),
        })
    }
}

/// Score below which n-grams may be skipped by [`TfIdf::best`]'s pruning (far below
/// any useful FAQ or spam threshold).
const PRUNE: f32 = 0.02;

#[cfg(test)]
mod tests {
    use super::*;

    fn index(texts: &[&str]) -> TfIdf {
        TfIdf::build(
            &texts.iter().map(|t| Grams::of(t)).collect::<Vec<_>>(),
            |i| i as u32,
        )
    }

    #[test]
    fn identical_text_scores_one() {
        let ix = index(&["How do I reset my password?", "退款多久到账"]);
        let (d, s) = ix.best(&Grams::of("how do i RESET my password")).unwrap();
        assert_eq!(d, 0);
        assert!((s - 1.0).abs() < 1e-4, "{s}");
        let (d, s) = ix.best(&Grams::of("退款多久到账？")).unwrap();
        assert_eq!(d, 1);
        assert!((s - 1.0).abs() < 1e-4, "{s}");
    }

    #[test]
    fn paraphrase_beats_unrelated_and_unseen_grams_lower_the_score() {
        let ix = index(&[
            "reset my password",
            "track my order",
            "申请退款",
            "修改收货地址",
        ]);
        let (d, s1) = ix
            .best(&Grams::of("forgot password, how to reset"))
            .unwrap();
        assert_eq!(d, 0);
        let (d, s2) = ix.best(&Grams::of("我想退款")).unwrap();
        assert_eq!(d, 2);
        let s3 = ix
            .best(&Grams::of(
                "reset my password and also tell me a joke about elephants",
            ))
            .unwrap()
            .1;
        assert!(s3 < s1.max(0.99), "{s3} {s1}");
        assert!(s2 > 0.3, "{s2}");
        assert!(ix.best(&Grams::of("完全无关")).is_none());
        assert!(ix.best(&Grams::of("!!!")).is_none());
    }

    /// Exhaustive cosine over every posting (no pruning).
    fn best_exact(ix: &TfIdf, q: &Grams) -> Option<(u32, f32)> {
        let mut acc = vec![0f32; ix.n_docs as usize];
        let mut norm2 = 0f32;
        for &(g, c) in &q.0 {
            let Some(p) = ix.postings.get(&g) else {
                norm2 += (tf(c) * ix.unseen_idf).powi(2);
                continue;
            };
            let w = tf(c) * p.idf;
            norm2 += w * w;
            for i in p.start as usize..p.end as usize {
                acc[ix.docs[i] as usize] += w * ix.weights[i];
            }
        }
        let inv = norm2.sqrt().recip();
        let mut best: Option<(u32, f32)> = None;
        for (d, &a) in acc.iter().enumerate() {
            if a > 0.0 && best.is_none_or(|(_, b)| a > b) {
                best = Some((d as u32, a));
            }
        }
        best.map(|(d, a)| (d, a * inv))
    }

    #[test]
    fn pruned_search_finds_the_exact_best() {
        let words = [
            "order", "refund", "ship", "track", "where", "how", "my", "is", "the", "parcel",
            "退款", "订单", "物流", "怎么", "发货", "the", "a", "do", "i",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut sentence = |n: usize| -> String {
            (0..n)
                .map(|_| words[(next() % words.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let docs: Vec<Grams> = (0..2000).map(|i| Grams::of(&sentence(3 + i % 9))).collect();
        let ix = TfIdf::build(&docs, |i| i as u32);
        for n in [2, 5, 12, 40, 120] {
            for _ in 0..20 {
                let q = Grams::of(&sentence(n));
                let (got, want) = (ix.best(&q), best_exact(&ix, &q));
                match (got, want) {
                    (Some((_, gs)), Some((_, ws))) if ws >= PRUNE => {
                        assert!((gs - ws).abs() < 1e-4, "{gs} vs {ws}");
                    }
                    (None, Some((_, ws))) => assert!(ws < PRUNE),
                    (g, w) => assert!(w.is_none_or(|(_, ws)| ws < PRUNE), "{g:?} {w:?}"),
                }
            }
        }
    }

    #[test]
    fn digits_fold_so_order_numbers_do_not_matter() {
        assert_eq!(Grams::of("order 123456").0, Grams::of("order 98").0);
    }

    #[test]
    fn grams_of_mixed_text() {
        let mut latin = Vec::new();
        let mut out = Vec::new();
        grams_of("ab 退款", &mut latin, &mut out);
        // " ab " -> " ab", "ab "; 退, 款, 退款.
        assert_eq!(out.len(), 5);
        assert!(out.contains(&pack('退', Some('款'), None)));
        assert!(out.contains(&pack(' ', Some('a'), Some('b'))));
    }

    #[test]
    fn empty_index_and_empty_query() {
        let ix = TfIdf::build(&[], |i| i as u32);
        assert!(ix.best(&Grams::of("anything")).is_none());
    }
}
