//! What marks a visitor's message as being about something other than the library's
//! subject, beside the background topics' similarity ([`super::faq`]): the name of
//! another company's service the answering entry does not mention ("my *netflix*
//! subscription", 怎么注销*微信*账号), and words of the background's vocabulary no
//! entry has ("how long to *boil* an *egg*", "my *home wifi* password").
//!
//! Both come from the built-in background file and are off with it
//! (`background = false`).

use aho_corasick::{AhoCorasick, MatchKind};
use rustc_hash::FxHashSet;

use super::normalize::{is_cjk, normalize};
use super::tfidf::Gram;

/// Names of other services found in normalised text, Latin names on word bounds.
#[derive(Debug, Default)]
pub(crate) struct ServiceNames {
    ac: Option<AhoCorasick>,
    /// Patterns from this number on are neutral.
    neutral: u32,
}

impl ServiceNames {
    /// An automaton over `names` and `neutral` ones (normalised; empty ones
    /// skipped): a neutral name ("微信支付", "apple pay") found where a service's
    /// name is (leftmost-longest) hides it.
    pub(crate) fn new(names: &[String], neutral: &[String]) -> Result<Self, String> {
        let norm = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|n| normalize(n))
                .filter(|n| !n.is_empty())
                .collect()
        };
        let mut names = norm(names);
        let first_neutral = u32::try_from(names.len()).unwrap_or(u32::MAX);
        names.extend(norm(neutral));
        if names.is_empty() {
            return Ok(Self::default());
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&names)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            ac: Some(ac),
            neutral: first_neutral,
        })
    }

    /// The names (their numbers, sorted, deduplicated) in `text`.
    pub(crate) fn find(&self, text: &str) -> Vec<u32> {
        let Some(ac) = &self.ac else {
            return Vec::new();
        };
        let norm = normalize(text);
        let mut out: Vec<u32> = ac
            .find_iter(&norm)
            .filter(|m| {
                let before = norm.get(..m.start()).and_then(|t| t.chars().next_back());
                let after = norm.get(m.end()..).and_then(|t| t.chars().next());
                let first = norm.get(m.start()..).and_then(|t| t.chars().next());
                let last = norm.get(..m.end()).and_then(|t| t.chars().next_back());
                // A Latin edge must be a word edge ("line" is not in "online").
                let edge = |c: Option<char>, side: Option<char>| {
                    c.is_some_and(is_cjk) || side.is_none_or(|s| !s.is_alphanumeric() || is_cjk(s))
                };
                edge(first, before) && edge(last, after)
            })
            .map(|m| m.pattern().as_u32())
            .filter(|&p| p < self.neutral)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Content grams of the background's vocabulary that no entry of the library has.
#[derive(Debug, Default)]
pub(crate) struct ForeignWords(FxHashSet<Gram>);

impl ForeignWords {
    /// `background` less `library` (content grams).
    pub(crate) fn new(
        background: impl IntoIterator<Item = Gram>,
        library: &FxHashSet<Gram>,
    ) -> Self {
        Self(
            background
                .into_iter()
                .filter(|g| !library.contains(g))
                .collect(),
        )
    }

    /// Whether `g` is a background word the library lacks.
    pub(crate) fn contains(&self, g: Gram) -> bool {
        self.0.contains(&g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_on_word_bounds_and_in_chinese() {
        let s = ServiceNames::new(
            &["Netflix".into(), "微信".into(), "line".into()],
            &["微信支付".into()],
        )
        .unwrap();
        assert_eq!(s.find("my NETFLIX subscription"), vec![0]);
        assert_eq!(s.find("怎么注销微信账号"), vec![1]);
        assert_eq!(s.find("微信 and netflix, netflix"), vec![0, 1]);
        assert!(s.find("online netflixer").is_empty());
        assert_eq!(s.find("line"), vec![2]);
        // A payment method is not a foreign service.
        assert!(s.find("能用微信支付吗").is_empty());
        assert_eq!(s.find("微信支付和微信"), vec![1]);
        assert!(
            ServiceNames::new(&[], &[])
                .unwrap()
                .find("netflix")
                .is_empty()
        );
    }

    proptest::proptest! {
        /// Any visitor text: no panic; service numbers only (never a neutral one),
        /// sorted and distinct.
        #[test]
        fn any_text_gives_sorted_service_numbers(text in "\\PC{0,80}") {
            let s = ServiceNames::new(
                &["netflix".into(), "微信".into(), "qq".into()],
                &["微信支付".into(), "paypal".into()],
            )
            .unwrap();
            let found = s.find(&text);
            proptest::prop_assert!(found.iter().all(|&n| n < 3), "{found:?}");
            proptest::prop_assert!(found.windows(2).all(|w| w[0] < w[1]), "{found:?}");
        }
    }
}
