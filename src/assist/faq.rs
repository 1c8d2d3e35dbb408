//! FAQ auto-reply: a knowledge base of question variants and answers, global and per
//! group, matched by character n-gram TF-IDF cosine similarity (see [`super::tfidf`]).
//!
//! Each entry is one document: its question variants joined, so its vector is the
//! sum of theirs (a centroid). Measured on the dev split (`tests/data/faq_dev.jsonl`)
//! against one document per variant scored by the best variant: best F1 0.86 vs 0.74,
//! with precision 1.0 at the chosen threshold. Also measured there and dropped: CJK
//! bigrams without unigrams (F1 0.74), Latin whole words added to trigrams (0.82).

use std::path::Path;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::config::AssistConfig;
use super::load::{self, Format, LoadError};
use super::tfidf::{Grams, TfIdf};

const WHAT: &str = "FAQ";
/// Longest entry id, in bytes.
const MAX_ID: usize = 128;
/// Longest question variant, in bytes (the protocol's short-text bound).
const MAX_QUESTION: usize = 1024;
/// Longest answer, in bytes (it is sent as a message body).
const MAX_ANSWER: usize = crate::protocol::messages::MAX_BODY;

/// The file: `[[entry]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaqFile {
    entry: Vec<FaqEntryFile>,
}

/// One knowledge-base entry as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaqEntryFile {
    /// Stable id (for logs and metrics).
    id: String,
    /// Group it answers for; absent or empty: every group.
    #[serde(default)]
    group: String,
    /// Ways visitors ask it.
    questions: Vec<String>,
    /// The automatic reply.
    answer: String,
}

/// The share of `assist.faq_threshold` an entry's similarity must reach to be shown
/// to an agent as a hint (`Suggest` with `faq`).
pub const HINT_FRACTION: f32 = 0.6;

/// A knowledge-base answer good enough to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaqMatch<'a> {
    /// The entry's id.
    pub id: &'a str,
    /// The answer to send.
    pub answer: &'a str,
    /// Cosine similarity of the message with the entry's closest question, 0–1.
    pub score: f32,
}

#[derive(Debug)]
struct Entry {
    id: String,
    answer: String,
}

/// One group's (or the global) questions.
#[derive(Debug, Default)]
struct Scope {
    index: TfIdf,
    /// Entry number of each indexed document.
    entry_of: Vec<u32>,
}

impl Scope {
    fn best(&self, q: &Grams) -> Option<(u32, f32)> {
        let (doc, score) = self.index.best(q)?;
        Some((*self.entry_of.get(doc as usize)?, score))
    }
}

/// The loaded knowledge base. Immutable: reload builds a new one (share it with `Arc`).
#[derive(Debug)]
pub struct FaqIndex {
    entries: Vec<Entry>,
    global: Scope,
    groups: FxHashMap<String, Scope>,
    threshold: f32,
    max_chars: usize,
    questions: usize,
}

impl FaqIndex {
    /// Loads the knowledge base at `path` (JSON if it ends in `.json`, else TOML),
    /// bounded by `cfg.max_file_bytes` and `cfg.max_entries`, matching at
    /// `cfg.faq_threshold`.
    pub fn from_file(path: &Path, cfg: &AssistConfig) -> Result<Self, LoadError> {
        let text = load::read_bounded(path, cfg.max_file_bytes)?;
        Self::from_str(&text, Format::of_path(path), cfg)
    }

    /// Builds the knowledge base from file text.
    pub fn from_str(text: &str, format: Format, cfg: &AssistConfig) -> Result<Self, LoadError> {
        let file: FaqFile = load::parse_bounded(text, format, WHAT, cfg.max_file_bytes)?;
        load::check_count(WHAT, file.entry.len(), cfg.max_entries)?;
        let mut entries = Vec::with_capacity(file.entry.len());
        let mut seen: FxHashMap<&str, ()> = FxHashMap::default();
        // Per scope: the variants' grams and their entry numbers.
        let mut scopes: FxHashMap<&str, (Vec<Grams>, Vec<u32>)> = FxHashMap::default();
        let mut questions = 0usize;
        for (i, e) in file.entry.iter().enumerate() {
            let invalid = |reason: String| LoadError::Invalid {
                what: WHAT,
                index: i + 1,
                reason,
            };
            if e.id.is_empty() || e.id.len() > MAX_ID {
                return Err(invalid(format!("id must be 1 to {MAX_ID} bytes")));
            }
            if seen.insert(&e.id, ()).is_some() {
                return Err(invalid(format!("duplicate id {:?}", e.id)));
            }
            if e.answer.trim().is_empty() || e.answer.len() > MAX_ANSWER {
                return Err(invalid(format!("answer must be 1 to {MAX_ANSWER} bytes")));
            }
            if e.questions.is_empty() {
                return Err(invalid("no questions".into()));
            }
            for q in &e.questions {
                if q.len() > MAX_QUESTION || Grams::of(q).is_empty() {
                    return Err(invalid(format!(
                        "question {q:?} must have letters or digits and at most {MAX_QUESTION} bytes"
                    )));
                }
                questions += 1;
            }
            // Joined with a separator so no n-gram spans two variants.
            let (docs, owners) = scopes.entry(e.group.as_str()).or_default();
            docs.push(Grams::of_all(&e.questions));
            owners.push(i as u32);
            entries.push(Entry {
                id: e.id.clone(),
                answer: e.answer.clone(),
            });
        }
        let mut global = Scope::default();
        let mut groups = FxHashMap::default();
        for (group, (docs, entry_of)) in scopes {
            let scope = Scope {
                index: TfIdf::build(&docs, |i| entry_of.get(i).copied().unwrap_or(0)),
                entry_of,
            };
            if group.is_empty() {
                global = scope;
            } else {
                groups.insert(group.to_owned(), scope);
            }
        }
        Ok(Self {
            entries,
            global,
            groups,
            threshold: cfg.faq_threshold,
            max_chars: cfg.faq_max_chars,
            questions,
        })
    }

    /// Entries loaded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never true: an empty file is a load error.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Question variants loaded.
    pub fn questions(&self) -> usize {
        self.questions
    }

    /// The best answer for a visitor's message in `group` (that group's entries and
    /// the global ones), if its similarity reaches the threshold and the message is
    /// at most `assist.faq_max_chars` characters long.
    pub fn best_match(&self, group: &str, text: &str) -> Option<FaqMatch<'_>> {
        self.closest(group, text)
            .filter(|m| m.score >= self.threshold)
    }

    /// An entry worth showing an agent as a hint for a visitor's question: the
    /// closest, if its similarity reaches [`HINT_FRACTION`] of the auto-reply
    /// threshold (a hint is read by a person, so it may be less sure than a reply).
    pub fn hint(&self, group: &str, text: &str) -> Option<FaqMatch<'_>> {
        self.closest(group, text)
            .filter(|m| m.score >= self.threshold * HINT_FRACTION)
    }

    /// The closest entry whatever its score (for evaluation and debugging); none for
    /// messages over `assist.faq_max_chars` characters.
    pub fn closest(&self, group: &str, text: &str) -> Option<FaqMatch<'_>> {
        if text.chars().nth(self.max_chars).is_some() {
            return None;
        }
        let q = Grams::of(text);
        let global = self.global.best(&q);
        let local = self.groups.get(group).and_then(|s| s.best(&q));
        let (entry, score) = match (global, local) {
            (Some(g), Some(l)) => {
                if l.1 >= g.1 {
                    l
                } else {
                    g
                }
            }
            (g, l) => g.or(l)?,
        };
        let e = self.entries.get(entry as usize)?;
        Some(FaqMatch {
            id: &e.id,
            answer: &e.answer,
            score,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KB: &str = r#"
[[entry]]
id = "reset-password"
questions = ["How do I reset my password?", "I forgot my password", "忘记密码怎么办", "怎么重置密码"]
answer = "Use 'Forgot password' on the sign-in page."

[[entry]]
id = "refund"
questions = ["How do I get a refund?", "Can I return an item for a refund?", "怎么申请退款", "退款多久到账"]
answer = "Refunds: Orders > Request refund."

[[entry]]
id = "invoice"
group = "billing"
questions = ["How can I download an invoice?", "我要开发票"]
answer = "Invoices are under Billing > Invoices."
"#;

    fn kb() -> FaqIndex {
        FaqIndex::from_str(KB, Format::Toml, &AssistConfig::default()).unwrap()
    }

    #[test]
    fn matches_paraphrases_in_english_and_chinese() {
        let kb = kb();
        assert_eq!(kb.len(), 3);
        assert_eq!(kb.questions(), 10);
        let m = kb
            .best_match("support", "how can i reset the password??")
            .unwrap();
        assert_eq!(m.id, "reset-password");
        assert!(m.answer.starts_with("Use"));
        assert_eq!(
            kb.best_match("support", "密码忘记了怎么办").unwrap().id,
            "reset-password"
        );
        assert_eq!(kb.best_match("x", "申请退款").unwrap().id, "refund");
    }

    #[test]
    fn group_entries_only_in_their_group() {
        let kb = kb();
        assert_eq!(
            kb.best_match("billing", "download my invoice").unwrap().id,
            "invoice"
        );
        let other = kb.best_match("support", "download my invoice");
        assert!(other.is_none_or(|m| m.id != "invoice"));
    }

    #[test]
    fn unrelated_messages_do_not_match() {
        let kb = kb();
        for text in [
            "What is the weather like in Paris tomorrow?",
            "今天天气怎么样",
            "hi",
            "?!",
        ] {
            assert!(kb.best_match("support", text).is_none(), "{text}");
        }
        assert!(kb.closest("support", "?!").is_none());
    }

    #[test]
    fn json_works_too() {
        let json = r#"{"entry": [{"id": "a", "questions": ["where is my parcel"], "answer": "Tracking page."}]}"#;
        let kb = FaqIndex::from_str(json, Format::Json, &AssistConfig::default()).unwrap();
        assert_eq!(kb.best_match("", "where is my parcel?").unwrap().id, "a");
    }

    #[test]
    fn typed_load_errors() {
        let cfg = AssistConfig::default();
        let err = |t: &str| FaqIndex::from_str(t, Format::Toml, &cfg).unwrap_err();
        assert!(matches!(err("entry = []"), LoadError::Empty(_)));
        assert!(matches!(err("entry = 3"), LoadError::Parse { .. }));
        let dup = "[[entry]]\nid='a'\nquestions=['q']\nanswer='x'\n[[entry]]\nid='a'\nquestions=['r']\nanswer='y'";
        assert!(matches!(err(dup), LoadError::Invalid { index: 2, .. }));
        let blank = "[[entry]]\nid='a'\nquestions=['??']\nanswer='x'";
        assert!(matches!(err(blank), LoadError::Invalid { index: 1, .. }));
        let small = AssistConfig {
            max_entries: 1,
            ..AssistConfig::default()
        };
        assert!(matches!(
            FaqIndex::from_str(KB, Format::Toml, &small),
            Err(LoadError::TooMany { count: 3, .. })
        ));
        let tiny = AssistConfig {
            max_file_bytes: 10,
            ..AssistConfig::default()
        };
        assert!(FaqIndex::from_str(KB, Format::Toml, &tiny).is_err());
    }

    #[test]
    fn from_file_reads_the_format_from_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kb.toml");
        std::fs::write(&p, KB).unwrap();
        let kb = FaqIndex::from_file(&p, &AssistConfig::default()).unwrap();
        assert_eq!(kb.len(), 3);
    }
}
