//! Evaluation of the agent assistants on labelled data in `tests/data/`:
//! precision, recall and F1 of the FAQ auto-reply at the configured threshold and of
//! the spam filter, printed (`cargo test --test it assist_eval -- --nocapture`) and held
//! to floors so a regression fails.
//!
//! Tuning (the FAQ threshold, n-gram choices, spam rules and sample threshold) was done
//! on the `*_dev.jsonl` splits only; the `*_eval.jsonl` items were never used to tune.

use std::path::PathBuf;

use serde::Deserialize;
use switchboard::bench_support::{
    Action, AssistConfig, CannedLibrary, FaqIndex, Format, SpamRules,
};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn lines<T: for<'de> Deserialize<'de>>(name: &str) -> Vec<T> {
    std::fs::read_to_string(data(name))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
        .collect()
}

#[derive(Debug, Deserialize)]
struct FaqItem {
    group: String,
    text: String,
    expect: Option<String>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Scores {
    tp: u32,
    fp: u32,
    fn_: u32,
}

impl Scores {
    fn precision(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.fp).max(1))
    }
    fn recall(&self) -> f64 {
        f64::from(self.tp) / f64::from((self.tp + self.fn_).max(1))
    }
    fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

/// A reply is a true positive when it is the expected entry; any other reply (wrong
/// entry, or an answer to an out-of-scope question) is a false positive; an in-scope
/// question without its entry's reply is a false negative.
fn faq_scores(kb: &FaqIndex, items: &[FaqItem], threshold: f32, verbose: bool) -> Scores {
    let mut s = Scores::default();
    for it in items {
        let m = kb
            .closest(&it.group, &it.text)
            .filter(|m| m.score >= threshold);
        let got = m.map(|m| m.id);
        match (&it.expect, got) {
            (Some(e), Some(g)) if e == g => s.tp += 1,
            (e, g) => {
                if g.is_some() {
                    s.fp += 1;
                }
                if e.is_some() {
                    s.fn_ += 1;
                }
                if verbose && (g.is_some() || e.is_some()) {
                    let best = kb.closest(&it.group, &it.text);
                    println!(
                        "  miss: {:?} expected {:?}, closest {:?} {:.3}",
                        it.text,
                        e,
                        best.map(|b| b.id),
                        best.map_or(0.0, |b| b.score)
                    );
                }
            }
        }
    }
    s
}

fn faq() -> (FaqIndex, AssistConfig) {
    let cfg = AssistConfig::default();
    (FaqIndex::from_file(&data("faq.toml"), &cfg).unwrap(), cfg)
}

#[test]
fn faq_threshold_was_chosen_on_the_dev_split() {
    let (kb, cfg) = faq();
    let dev: Vec<FaqItem> = lines("faq_dev.jsonl");
    println!("FAQ dev split ({} items): threshold sweep", dev.len());
    let mut best = (0.0f64, 0.0f32);
    for t in (5..=80).step_by(5).map(|t| t as f32 / 100.0) {
        let s = faq_scores(&kb, &dev, t, false);
        println!(
            "  t={t:.2} P={:.3} R={:.3} F1={:.3}",
            s.precision(),
            s.recall(),
            s.f1()
        );
        if s.f1() > best.0 {
            best = (s.f1(), t);
        }
    }
    let at = faq_scores(&kb, &dev, cfg.faq_threshold, true);
    println!(
        "  default t={:.2}: F1={:.3}; best t={:.2}: F1={:.3}",
        cfg.faq_threshold,
        at.f1(),
        best.1,
        best.0
    );
    assert!(
        at.f1() >= best.0 - 0.05,
        "default threshold far from the dev optimum"
    );
}

#[test]
fn faq_precision_and_recall_on_held_out_questions() {
    let (kb, cfg) = faq();
    let eval: Vec<FaqItem> = lines("faq_eval.jsonl");
    let in_scope = eval.iter().filter(|i| i.expect.is_some()).count();
    let s = faq_scores(&kb, &eval, cfg.faq_threshold, true);
    println!(
        "FAQ eval: {} entries, {} questions ({} in scope, {} out of scope), threshold {:.2}: \
         TP={} FP={} FN={} precision={:.3} recall={:.3} F1={:.3}",
        kb.len(),
        eval.len(),
        in_scope,
        eval.len() - in_scope,
        cfg.faq_threshold,
        s.tp,
        s.fp,
        s.fn_,
        s.precision(),
        s.recall(),
        s.f1()
    );
    assert!(eval.len() >= 100);
    assert!(s.precision() >= 0.85, "FAQ precision {:.3}", s.precision());
    assert!(s.recall() >= 0.60, "FAQ recall {:.3}", s.recall());
}

#[derive(Debug, Deserialize)]
struct SpamItem {
    text: String,
    spam: bool,
}

/// Positive = the filter acts (flag, drop or block). Also counts ham that would not
/// be delivered at all (drop/block), the costly kind of false positive.
fn spam_scores(rules: &SpamRules, items: &[SpamItem], verbose: bool) -> (Scores, u32) {
    let mut s = Scores::default();
    let mut ham_lost = 0;
    for it in items {
        let hit = rules.classify(&it.text);
        match (it.spam, &hit) {
            (true, Some(_)) => s.tp += 1,
            (false, None) => {}
            (true, None) => {
                s.fn_ += 1;
                if verbose {
                    println!("  missed spam: {:?}", it.text);
                }
            }
            (false, Some(h)) => {
                s.fp += 1;
                if h.action != Action::Flag {
                    ham_lost += 1;
                }
                if verbose {
                    println!("  ham hit by {} ({:?}): {:?}", h.rule, h.action, it.text);
                }
            }
        }
    }
    (s, ham_lost)
}

fn spam_rules_with_threshold(t: Option<f32>) -> SpamRules {
    let text = std::fs::read_to_string(data("spam.toml")).unwrap();
    let text = match t {
        Some(t) => text
            .lines()
            .map(|l| {
                if l.starts_with("threshold = ") {
                    format!("threshold = {t}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect(),
        None => text,
    };
    SpamRules::from_str(&text, Format::Toml, &AssistConfig::default()).unwrap()
}

#[test]
fn spam_sample_threshold_was_chosen_on_the_dev_split() {
    let dev: Vec<SpamItem> = lines("spam_dev.jsonl");
    println!(
        "spam dev split ({} items): sample-similarity threshold sweep",
        dev.len()
    );
    let mut best = 0.0f64;
    for t in (15..=90).step_by(5).map(|t| t as f32 / 100.0) {
        let (s, lost) = spam_scores(&spam_rules_with_threshold(Some(t)), &dev, false);
        println!(
            "  t={t:.2} P={:.3} R={:.3} F1={:.3} ham not delivered={lost}",
            s.precision(),
            s.recall(),
            s.f1()
        );
        best = best.max(s.f1());
    }
    let (s, _) = spam_scores(&spam_rules_with_threshold(None), &dev, true);
    println!("  file threshold: F1={:.3}; best F1={best:.3}", s.f1());
    assert!(
        s.f1() >= best - 0.05,
        "file threshold far from the dev optimum"
    );
}

#[test]
fn spam_precision_and_recall_on_held_out_messages() {
    let rules = spam_rules_with_threshold(None);
    let eval: Vec<SpamItem> = lines("spam_eval.jsonl");
    let spam = eval.iter().filter(|i| i.spam).count();
    let (s, ham_lost) = spam_scores(&rules, &eval, true);
    println!(
        "spam eval: {} messages ({} spam/abuse, {} ham): TP={} FP={} FN={} \
         precision={:.3} recall={:.3} F1={:.3}; ham not delivered (drop/block)={}",
        eval.len(),
        spam,
        eval.len() - spam,
        s.tp,
        s.fp,
        s.fn_,
        s.precision(),
        s.recall(),
        s.f1(),
        ham_lost
    );
    assert!(spam >= 100 && eval.len() - spam >= 90);
    assert!(s.precision() >= 0.9, "spam precision {:.3}", s.precision());
    assert!(s.recall() >= 0.7, "spam recall {:.3}", s.recall());
    assert!(
        ham_lost <= 2,
        "{ham_lost} ham messages would not be delivered"
    );
}

#[test]
fn canned_sample_library_suggests_by_prefix_title_group_and_typo() {
    let lib = CannedLibrary::from_file(&data("canned.toml"), &AssistConfig::default()).unwrap();
    let ids = |group: &str, prefix: &str| -> Vec<u32> {
        lib.suggest(group, prefix, 3).iter().map(|s| s.id).collect()
    };
    // "thank" starts replies 2, 3 and 4: most used first.
    assert_eq!(ids("support", "Thank"), vec![4, 2, 3]);
    assert_eq!(ids("support", "refund"), vec![7]);
    assert_eq!(ids("support", "您好"), vec![14]);
    assert_eq!(ids("support", "感谢您的"), vec![20, 19]);
    assert_eq!(ids("billing", "invoice"), vec![30]);
    assert!(ids("support", "invoice").is_empty());
    // Typos: "cuold you" -> "could you ..." (5, then 10 by usage).
    assert_eq!(ids("support", "cuold you"), vec![5, 10]);
    assert!(lib.record_use(10));
    println!(
        "canned sample: {} replies; 'cuold you' -> {:?}",
        lib.len(),
        ids("support", "cuold you")
    );
}
