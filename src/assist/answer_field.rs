//! The FAQ entries' answers as a second, weaker field (document expansion): an answer
//! names its entry's subject in many more words than the question variants ("unlimited
//! is $40 a month", "scan the QR code"), so a message sharing words with one entry's
//! answer and not its sibling's leans towards that entry.
//!
//! Only content grams (whole Latin words, CJK bigrams) are kept: an answer's character
//! trigrams and single characters are mostly boilerplate, and whole words keep the
//! field small (about 40 grams for a 250-character answer). IDF is over the library's
//! answers, each vector L2-normalised on its own, so a long answer is not diluted
//! against a short one.

use rustc_hash::FxHashMap;

use super::tfidf::{Gram, Grams, tf};

/// Answers' content-gram vectors, one per entry, and their IDF.
#[derive(Debug, Default)]
pub(crate) struct AnswerField {
    idf: FxHashMap<Gram, f32>,
    /// Per entry: (gram, normalised weight), sorted by gram.
    vectors: Vec<Box<[(Gram, f32)]>>,
    /// IDF of a gram no answer has.
    unseen_idf: f32,
}

/// A message's content grams weighted by the answers' IDF, normalised.
pub(crate) struct AnswerQuery(Vec<(Gram, f32)>);

impl AnswerField {
    /// Builds the field from each entry's answer grams, in entry order, leaving out
    /// the content grams of the entry's own questions (`questions(i)`, sorted): the
    /// field adds what the questions do not say. (An answer restating its question's
    /// word, "Refunds: request a refund …", would otherwise count that word twice for
    /// one sibling of two that both have it.)
    pub(crate) fn build<'a>(answers: &[Grams], questions: impl Fn(usize) -> &'a [Gram]) -> Self {
        let new = |i: usize| {
            let own = questions(i);
            answers
                .get(i)
                .into_iter()
                .flat_map(|a| a.content_counts())
                .filter(move |(g, _)| own.binary_search(g).is_err())
        };
        let mut df: FxHashMap<Gram, u32> = FxHashMap::default();
        for i in 0..answers.len() {
            for (g, _) in new(i) {
                *df.entry(g).or_default() += 1;
            }
        }
        let n = answers.len() as f32;
        let idf_of = |d: u32| ((n + 1.0) / (d as f32 + 1.0)).ln() + 1.0;
        let idf: FxHashMap<Gram, f32> = df.iter().map(|(&g, &d)| (g, idf_of(d))).collect();
        let vectors = (0..answers.len())
            .map(|i| {
                let mut v: Vec<(Gram, f32)> = new(i)
                    .map(|(g, c)| (g, tf(c) * idf.get(&g).copied().unwrap_or(0.0)))
                    .collect();
                normalise(&mut v);
                v.into_boxed_slice()
            })
            .collect();
        Self {
            idf,
            vectors,
            unseen_idf: idf_of(1),
        }
    }

    /// Bytes it holds on the heap (approximate: the IDF table's slots and the vectors).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(Gram, f32)>() + 1;
        self.idf.capacity() * slot
            + self
                .vectors
                .iter()
                .map(|v| std::mem::size_of_val(&**v) + std::mem::size_of::<Box<[(Gram, f32)]>>())
                .sum::<usize>()
    }

    /// The message's vector in this field.
    pub(crate) fn query(&self, q: &Grams) -> AnswerQuery {
        let mut v: Vec<(Gram, f32)> = q
            .content_counts()
            .map(|(g, c)| {
                (
                    g,
                    tf(c) * self.idf.get(&g).copied().unwrap_or(self.unseen_idf),
                )
            })
            .collect();
        normalise(&mut v);
        AnswerQuery(v)
    }

    /// Cosine similarity of the message with entry `entry`'s answer, 0–1.
    pub(crate) fn similarity(&self, q: &AnswerQuery, entry: u32) -> f32 {
        let Some(a) = self.vectors.get(entry as usize) else {
            return 0.0;
        };
        // Both sorted by gram: a merge.
        let (mut i, mut j, mut dot) = (0, 0, 0f32);
        while let (Some(&(qg, qw)), Some(&(ag, aw))) = (q.0.get(i), a.get(j)) {
            match qg.cmp(&ag) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    dot += qw * aw;
                    i += 1;
                    j += 1;
                }
            }
        }
        dot.min(1.0)
    }
}

fn normalise(v: &mut [(Gram, f32)]) {
    let n2: f32 = v.iter().map(|&(_, w)| w * w).sum();
    if n2 > 0.0 {
        let inv = n2.sqrt().recip();
        for (_, w) in v {
            *w *= inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assist::analyze::Analyzer;

    fn grams(text: &str) -> Grams {
        Grams::analyzed(&Analyzer::new(&[]).unwrap(), &[text])
    }

    /// A realistic answer (30 words and 30 characters, as in the blind sets) costs
    /// well under 1 KiB in the field: a 10,000-entry library adds a few MB at most.
    #[test]
    fn an_answer_costs_under_a_kibibyte() {
        let words = [
            "plan",
            "data",
            "roaming",
            "bill",
            "account",
            "app",
            "store",
            "unlimited",
        ];
        let han: Vec<char> = "套餐流量话费账单营业厅号码实名宽带安装漫游充值"
            .chars()
            .collect();
        let mut x = 7u64;
        let mut next = move |n: usize| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as usize % n
        };
        let answers: Vec<Grams> = (0..1000)
            .map(|i| {
                let en: Vec<String> = (0..30)
                    .map(|_| format!("{}{}", words[next(words.len())], next(300)))
                    .collect();
                let zh: String = (0..30).map(|_| han[next(han.len())]).collect();
                grams(&format!("answer {i}: {} {zh}", en.join(" ")))
            })
            .collect();
        let f = AnswerField::build(&answers, |_| &[]);
        let per_entry = f.heap_bytes() / answers.len();
        println!("answer field: {per_entry} bytes per entry");
        assert!(per_entry < 1024, "{per_entry}");
    }

    #[test]
    fn a_message_is_closest_to_the_answer_naming_its_words() {
        let answers = [
            grams("Scan the QR code in the app to install the eSIM."),
            grams("Unlimited data is 40 a month."),
            grams("Unlimited calls and texts."),
        ];
        let f = AnswerField::build(&answers, |_| &[]);
        let q = f.query(&grams("where is the qr code"));
        assert!(f.similarity(&q, 0) > 0.0);
        assert_eq!(f.similarity(&q, 1), 0.0);
        let q = f.query(&grams("unlimited data price"));
        assert!(f.similarity(&q, 1) > f.similarity(&q, 2));
        assert!(f.similarity(&q, 1) <= 1.0);
        // No such entry, no message: nothing.
        assert_eq!(f.similarity(&q, 9), 0.0);
        assert_eq!(f.similarity(&f.query(&grams("")), 0), 0.0);
        // Words of the entry's own questions are left out.
        let own: Vec<Gram> = grams("install esim").content().collect();
        let f = AnswerField::build(&answers, |i| if i == 0 { &own } else { &[] });
        assert_eq!(f.similarity(&f.query(&grams("install esim")), 0), 0.0);
        assert!(f.similarity(&f.query(&grams("qr code")), 0) > 0.0);
    }
}
