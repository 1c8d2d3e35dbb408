//! Word-level analysis for the FAQ matcher, between normalisation and n-grams:
//! English words stemmed (Snowball, `rust-stemmers`), words and phrases that say
//! nothing about the question dropped (stop words, Chinese particles and filler), and
//! synonyms, including English–Chinese pairs, folded to one form, so "can I get my
//! money back", 我要退钱 and 能退 refund 吗 share the grams of "refund".
//!
//! The lexicon is built in (`lexicon.toml`: stop words and core synonyms), with a broader
//! cross-lingual customer-service thesaurus (`thesaurus.toml`: concept groups across shops,
//! delivery, accounts, payments, subscriptions, telecoms, travel, education, software); a
//! FAQ file adds synonym groups, which win over both.

use aho_corasick::{AhoCorasick, MatchKind};
use rust_stemmers::{Algorithm, Stemmer};
use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::normalize::{is_cjk, normalize_into};

/// The built-in lexicon (stop words, synonym groups).
const LEXICON: &str = include_str!("lexicon.toml");
/// The built-in thesaurus (synonym groups only), read after the lexicon's groups.
const THESAURUS: &str = include_str!("thesaurus.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThesaurusFile {
    synonyms: Vec<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LexiconFile {
    stop: Vec<String>,
    synonyms: Vec<Vec<String>>,
}

/// Why synonym groups cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LexiconError {
    /// A term has no letters or digits, or a group is empty.
    #[error("synonym group {0}: every term needs letters or digits")]
    EmptyTerm(usize),
    /// The automaton could not be built.
    #[error("synonyms: {0}")]
    Build(String),
}

/// Stems, drops stop words and folds synonyms. Immutable once built.
pub(crate) struct Analyzer {
    stemmer: Stemmer,
    /// Stop words and synonym terms, in their stemmed form.
    terms: Option<AhoCorasick>,
    /// What each term becomes (empty for a stop word).
    replace: Vec<String>,
    /// Words of the library (stemmed), for typo correction.
    vocab: rustc_hash::FxHashSet<Box<str>>,
    /// Each library word with one character deleted -> the word (first learnt wins).
    deletes: FxHashMap<Box<str>, Box<str>>,
}

/// Shortest word typo correction looks at: shorter words have too many neighbours.
const MIN_TYPO_WORD: usize = 5;

/// `w` with its `i`-th character removed.
fn delete_at(w: &str, i: usize) -> String {
    w.chars()
        .enumerate()
        .filter(|&(j, _)| j != i)
        .map(|(_, c)| c)
        .collect()
}

/// Whether `a` and `b` are one edit apart: one character inserted or deleted, one
/// changed, or two neighbours swapped.
fn one_edit(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let pre = short
        .iter()
        .zip(long.iter())
        .take_while(|(x, y)| x == y)
        .count();
    match long.len() - short.len() {
        0 => {
            let diff: Vec<usize> = (0..a.len()).filter(|&i| a.get(i) != b.get(i)).collect();
            match diff[..] {
                [_] => true,
                [i, j] => j == i + 1 && a.get(i) == b.get(j) && a.get(j) == b.get(i),
                _ => false,
            }
        }
        1 => short.get(pre..) == long.get(pre + 1..),
        _ => false,
    }
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("terms", &self.replace.len())
            .finish()
    }
}

impl Analyzer {
    /// The built-in lexicon plus `extra` synonym groups (each folded to its first term).
    pub(crate) fn new(extra: &[Vec<String>]) -> Result<Self, LexiconError> {
        let builtin: LexiconFile =
            toml::from_str(LEXICON).map_err(|e| LexiconError::Build(e.to_string()))?;
        let thesaurus: ThesaurusFile =
            toml::from_str(THESAURUS).map_err(|e| LexiconError::Build(e.to_string()))?;
        let mut me = Self {
            stemmer: Stemmer::create(Algorithm::English),
            terms: None,
            replace: Vec::new(),
            vocab: Default::default(),
            deletes: Default::default(),
        };
        let mut patterns: Vec<String> = Vec::new();
        let mut seen = rustc_hash::FxHashSet::default();
        let mut learnt = Vec::new();
        let mut scratch = String::new();
        // File groups first: on a clash the library's own grouping wins; then the
        // lexicon's, then the thesaurus's (a term keeps the first group it is in).
        let groups = extra
            .iter()
            .chain(builtin.synonyms.iter())
            .chain(thesaurus.synonyms.iter());
        for (i, group) in groups.enumerate() {
            let mut canon = None;
            for term in group {
                scratch.clear();
                me.stage(term, true, &mut scratch);
                let stemmed = scratch.trim().to_owned();
                if stemmed.is_empty() {
                    return Err(LexiconError::EmptyTerm(i + 1));
                }
                let c = canon.get_or_insert_with(|| stemmed.clone()).clone();
                // Typo targets: the library's and the lexicon's terms, not the
                // thesaurus's (its many words would take real words for typos: "back"
                // for "black" of "black screen").
                if i < extra.len() + builtin.synonyms.len() {
                    learnt.push(term.clone());
                }
                if seen.insert(stemmed.clone()) {
                    patterns.push(stemmed);
                    me.replace.push(c);
                }
            }
            if canon.is_none() {
                return Err(LexiconError::EmptyTerm(i + 1));
            }
        }
        for w in &builtin.stop {
            scratch.clear();
            me.stage(w, true, &mut scratch);
            let stemmed = scratch.trim().to_owned();
            if !stemmed.is_empty() && seen.insert(stemmed.clone()) {
                patterns.push(stemmed);
                me.replace.push(String::new());
            }
        }
        me.learn(&learnt);
        me.terms = Some(
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .map_err(|e| LexiconError::Build(e.to_string()))?,
        );
        Ok(me)
    }

    /// Learns the Latin words of library text (question variants), so a query word
    /// one edit (deletion, insertion or substitution) away from a library word of at
    /// least [`MIN_TYPO_WORD`] letters is read as that word.
    pub(crate) fn learn(&mut self, texts: &[String]) {
        let mut staged = String::new();
        for t in texts {
            staged.clear();
            // As written: a library word is never a typo of another one learnt before
            // it ("charged" is not "changed").
            self.stage(t, false, &mut staged);
            for w in staged.split(' ') {
                let n = w.chars().count();
                if n < MIN_TYPO_WORD || !w.chars().all(char::is_alphabetic) || w.chars().any(is_cjk)
                {
                    continue;
                }
                if self.vocab.insert(w.into()) {
                    // Typos rarely touch the first letter; and "border" is not "order".
                    for i in 1..n {
                        self.deletes
                            .entry(delete_at(w, i).into())
                            .or_insert_with(|| w.into());
                    }
                }
            }
        }
    }

    /// The library word `w` is a typo of, if any (see [`Self::learn`]): one letter
    /// missing, one too many, one different or two neighbours swapped (checked: two
    /// words sharing a one-letter deletion may be two edits apart, "chain"/"chang").
    fn correct(&self, w: &str) -> Option<&str> {
        if self.vocab.is_empty() || self.vocab.contains(w) {
            return None;
        }
        let n = w.chars().count();
        if n < MIN_TYPO_WORD - 1 || !w.chars().all(char::is_alphabetic) {
            return None;
        }
        let near = |v: &&str| one_edit(w, v);
        // A letter missing from `w`.
        if let Some(v) = self.deletes.get(w).map(|v| &**v).filter(near) {
            return Some(v);
        }
        for i in 1..n {
            let d = delete_at(w, i);
            // A letter too many in `w`; or one letter different, or two swapped.
            if let Some(v) = self.vocab.get(d.as_str()).map(|v| &**v).filter(near) {
                return Some(v);
            }
            if let Some(v) = self.deletes.get(d.as_str()).map(|v| &**v).filter(near) {
                return Some(v);
            }
        }
        None
    }

    /// Normalises `text`, splits Latin from CJK runs with a space and stems the
    /// Latin words (correcting typos of library words if `correct`), appending to `out`.
    fn stage(&self, text: &str, correct: bool, out: &mut String) {
        let mut norm = String::with_capacity(text.len());
        normalize_into(text, &mut norm);
        let mut word = String::new();
        let mut last_cjk = None;
        let flush = |word: &mut String, out: &mut String| {
            if !word.is_empty() {
                let stem = self.stemmer.stem(word);
                let fixed = if correct { self.correct(&stem) } else { None };
                out.push_str(fixed.unwrap_or(&stem));
                word.clear();
            }
        };
        for c in norm.chars() {
            if c == ' ' {
                flush(&mut word, out);
                out.push(' ');
                last_cjk = None;
                continue;
            }
            let cjk = is_cjk(c);
            if last_cjk.is_some_and(|l| l != cjk) {
                flush(&mut word, out);
                out.push(' ');
            }
            last_cjk = Some(cjk);
            if cjk {
                out.push(c);
            } else {
                word.push(c);
            }
        }
        flush(&mut word, out);
    }

    /// The analysed form of `text`, appended to `out`: words separated by spaces,
    /// synonyms folded, stop words gone.
    pub(crate) fn analyze_into(&self, text: &str, out: &mut String) {
        let mut staged = String::with_capacity(text.len() + 8);
        self.stage(text, true, &mut staged);
        let Some(ac) = &self.terms else {
            out.push_str(&staged);
            return;
        };
        let mut at = 0;
        for m in ac.find_iter(&staged) {
            let (s, e) = (m.start(), m.end());
            let before = staged.get(..s).and_then(|t| t.chars().next_back());
            let after = staged.get(e..).and_then(|t| t.chars().next());
            let first = staged.get(s..).and_then(|t| t.chars().next());
            let last = staged.get(..e).and_then(|t| t.chars().next_back());
            let bound = |edge: Option<char>, side: Option<char>| {
                edge.is_some_and(is_cjk) || side.is_none_or(|c| c == ' ' || is_cjk(c))
            };
            if !(bound(first, before) && bound(last, after)) {
                continue;
            }
            out.push_str(staged.get(at..s).unwrap_or(""));
            out.push(' ');
            out.push_str(self.replace.get(m.pattern().as_usize()).map_or("", |r| r));
            out.push(' ');
            at = e;
        }
        out.push_str(staged.get(at..).unwrap_or(""));
    }

    /// The analysed form of `text` (see [`Self::analyze_into`]).
    #[cfg(test)]
    pub(crate) fn analyze(&self, text: &str) -> String {
        let mut out = String::new();
        self.analyze_into(text, &mut out);
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_drops_stop_words_and_folds_synonyms() {
        let a = Analyzer::new(&[]).unwrap();
        assert_eq!(a.analyze("How do I get my money back?"), "refund");
        assert_eq!(a.analyze("我要退钱"), "refund");
        assert_eq!(a.analyze("能開 invoice 嗎"), "能开 invoic");
        assert_eq!(a.analyze("the vase arrived smashed"), "vase receiv broken");
        assert_eq!(a.analyze("do you have job openings?"), "job open");
        assert_eq!(a.analyze("what are your opening hours"), "open hour");
        assert_eq!(a.analyze("hi"), "");
    }

    /// The thesaurus joins paraphrases that share no word, across the languages.
    #[test]
    fn the_thesaurus_joins_paraphrases_without_a_shared_word() {
        let a = Analyzer::new(&[]).unwrap();
        assert_eq!(a.analyze("the vase came smashed"), "vase came broken");
        assert_eq!(a.analyze("衣服不喜欢，我要退钱"), "cloth dissatisfi refund");
        assert_eq!(
            a.analyze("我不满意，能 refund 吗"),
            "我 dissatisfi 能 refund"
        );
        assert_eq!(a.analyze("收据"), a.analyze("bill"));
        assert_eq!(a.analyze("视频一直加载"), "video 一直 buffer");
        assert_eq!(a.analyze("平板"), a.analyze("laptop"));
        // A term of the lexicon keeps its group there; a library group wins over both.
        assert_eq!(a.analyze("退款"), "refund");
        let b = Analyzer::new(&[vec!["bill".into(), "账单".into()]]).unwrap();
        assert_eq!(b.analyze("账单"), "bill");
    }

    #[test]
    fn typos_of_library_words_are_corrected() {
        let mut a = Analyzer::new(&[]).unwrap();
        a.learn(&["Where is my parcel?".into(), "damaged screen".into()]);
        for typo in ["pasword", "passwrod", "passsword", "pazsword"] {
            assert_eq!(a.analyze(typo), "password", "{typo}");
        }
        assert_eq!(
            a.analyze("my parcle and the damagd screan"),
            "parcel broken screen"
        );
        // A letter missing from a five-letter word is found; shorter words stay.
        assert_eq!(a.analyze("ordr"), "order");
        assert_eq!(a.analyze("shp"), "shp");
        // A library word one letter from another learnt earlier stays itself.
        let mut a = Analyzer::new(&[]).unwrap();
        a.learn(&["change my email".into(), "I was charged twice".into()]);
        assert_eq!(a.analyze("charged twice"), "charg twice");
        assert_eq!(a.analyze("chargd"), "charg");
        // Sharing a deletion is not enough: "chain" is two edits from "chang(e)".
        assert_eq!(a.analyze("chain"), "chain");
        assert_eq!(a.analyze("cahrged"), "charg");
    }

    #[test]
    fn one_edit_apart() {
        for (a, b) in [
            ("chang", "chanq"),
            ("chang", "cahng"),
            ("chang", "changs"),
            ("chang", "hang"),
        ] {
            assert!(one_edit(a, b) && one_edit(b, a), "{a} {b}");
        }
        for (a, b) in [
            ("chain", "chang"),
            ("chang", "chang"),
            ("chang", "ch"),
            ("abcd", "badc"),
        ] {
            assert!(!one_edit(a, b), "{a} {b}");
        }
    }

    #[test]
    fn latin_terms_only_on_word_bounds() {
        let a = Analyzer::new(&[]).unwrap();
        // "order" inside "border" and "pay" inside "paypal" stay (a wallet's name
        // is folded as a whole).
        assert_eq!(a.analyze("border paypal"), "border ewallet");
    }

    #[test]
    fn library_groups_come_first_and_empty_terms_are_refused() {
        let a = Analyzer::new(&[vec!["fapiao".into(), "tax form".into()]]).unwrap();
        assert_eq!(a.analyze("tax form"), "fapiao");
        assert!(matches!(
            Analyzer::new(&[vec!["??".into()]]),
            Err(LexiconError::EmptyTerm(1))
        ));
        assert!(matches!(
            Analyzer::new(&[vec![]]),
            Err(LexiconError::EmptyTerm(1))
        ));
    }
}
