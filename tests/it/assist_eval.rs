//! Evaluation of the agent assistants on labelled data in `tests/data/`:
//! precision, recall and F1 of the FAQ auto-reply at the configured threshold and
//! margin, per language (English, Chinese, mixed), and of the spam filter, printed
//! (`cargo test --test it assist_eval -- --nocapture`) and held to the goals of issue 23
//! so a regression fails.
//!
//! The split is fixed: `*_dev.jsonl` for tuning (threshold, margin, lexicon, rules),
//! `*_eval.jsonl` to report. The language of a question is read from its text: Han
//! characters only (zh), Latin letters only (en), both (mixed).

use std::path::PathBuf;

use serde::Deserialize;
use switchboard::bench_support::{
    Action, AssistConfig, CannedLibrary, FaqIndex, Format, SpamRules, library_in_background,
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
    /// Out-of-scope questions answered (also counted in `fp`).
    off: u32,
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

/// Language of a question: `zh` (Han only), `en` (Latin only) or `mixed`.
fn language(text: &str) -> &'static str {
    let han = text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
    let latin = text.chars().any(|c| c.is_ascii_alphabetic());
    match (han, latin) {
        (true, true) => "mixed",
        (true, false) => "zh",
        _ => "en",
    }
}

/// A reply is a true positive when it is the expected entry; any other reply (wrong
/// entry, or an answer to an out-of-scope question) is a false positive; an in-scope
/// question without its entry's reply is a false negative.
fn faq_scores(
    kb: &FaqIndex,
    items: &[&FaqItem],
    (threshold, margin): (f32, f32),
    verbose: bool,
) -> Scores {
    let mut s = Scores::default();
    for it in items {
        let m = kb
            .closest(&it.group, &it.text)
            .filter(|m| kb.accepts(m, threshold, margin));
        let got = m.map(|m| m.id);
        match (&it.expect, got) {
            (Some(e), Some(g)) if e == g => s.tp += 1,
            (e, g) => {
                if g.is_some() {
                    s.fp += 1;
                    s.off += u32::from(e.is_none());
                }
                if e.is_some() {
                    s.fn_ += 1;
                }
                if verbose && (g.is_some() || e.is_some()) {
                    let best = kb.closest(&it.group, &it.text);
                    println!(
                        "  miss: {:?} expected {:?}, closest {:?} score {:.3} margin {:.3} overlap {} \
                         (shared {} generic {} of content {})",
                        it.text,
                        e,
                        best.map(|b| b.id),
                        best.map_or(0.0, |b| b.score),
                        best.map_or(0.0, |b| b.margin),
                        best.is_some_and(|b| b.overlap()),
                        best.map_or(0, |b| b.shared),
                        best.map_or(0, |b| b.shared_generic),
                        best.map_or(0, |b| b.content),
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

/// Answers to out-of-scope questions.
fn off_topic_answered(kb: &FaqIndex, items: &[&FaqItem]) -> usize {
    items
        .iter()
        .filter(|i| i.expect.is_none() && kb.best_match(&i.group, &i.text).is_some())
        .count()
}

#[test]
fn faq_threshold_and_margin_were_chosen_on_the_dev_split() {
    let (kb, cfg) = faq();
    let dev: Vec<FaqItem> = lines("faq_dev.jsonl");
    let dev: Vec<&FaqItem> = dev.iter().collect();
    println!(
        "FAQ dev split ({} items): threshold x margin sweep",
        dev.len()
    );
    // The most recall at precision >= 0.92 with no more off-topic questions answered
    // than at the default (off-topic answers are the error issue 23 still counts).
    let default_off = faq_scores(&kb, &dev, (cfg.faq_threshold, cfg.faq_margin), false).off;
    let mut best = (0.0f64, 0.0f32, 0.0f32);
    for t in (10..=40).step_by(5).map(|t| t as f32 / 100.0) {
        for m in [0.0f32, 0.02, 0.05, 0.08, 0.1] {
            let s = faq_scores(&kb, &dev, (t, m), false);
            println!(
                "  t={t:.2} m={m:.2} P={:.3} R={:.3} F1={:.3} off-topic answered={}",
                s.precision(),
                s.recall(),
                s.f1(),
                s.off
            );
            if s.precision() >= 0.92 && s.off <= default_off && s.recall() > best.0 {
                best = (s.recall(), t, m);
            }
        }
    }
    let at = faq_scores(&kb, &dev, (cfg.faq_threshold, cfg.faq_margin), true);
    println!(
        "  default t={:.2} m={:.2}: P={:.3} R={:.3}; most recall at P>=0.92: t={:.2} m={:.2} R={:.3}",
        cfg.faq_threshold,
        cfg.faq_margin,
        at.precision(),
        at.recall(),
        best.1,
        best.2,
        best.0
    );
    assert!(
        at.precision() >= 0.92,
        "dev precision {:.3}",
        at.precision()
    );
    assert!(
        at.recall() >= best.0 - 0.03,
        "default operating point far from the dev optimum"
    );
}

/// Off-topic questions of the eval split answered (of 105). Of the 88 there before
/// issue 23's round 3, none: the last three ("怎么注销微信账号", "my netflix
/// subscription", "boil an egg") name another service or use background words no
/// entry has (src/assist/foreign.rs). Of the 17 added after that round's rules were
/// written (run once, not tuned on), one: "my phone plan renews tomorrow, how do I
/// cancel it" (cancel-subscription; a phone plan is another company's subscription,
/// and neither a service's name nor a background word says so); none since session 33
/// (the thesaurus moved its margin, and the phones topic now has carriers and plans).
const OFF_TOPIC_ANSWERED: usize = 0;

#[test]
fn faq_precision_and_recall_on_held_out_questions() {
    let (kb, cfg) = faq();
    let eval: Vec<FaqItem> = lines("faq_eval.jsonl");
    let all: Vec<&FaqItem> = eval.iter().collect();
    assert!(eval.len() >= 200);
    let dev = lines::<FaqItem>("faq_dev.jsonl").len();
    assert!(
        eval.len() + dev >= 300,
        "labelled FAQ questions: {}",
        eval.len() + dev
    );
    let point = (cfg.faq_threshold, cfg.faq_margin);
    for lang in ["all", "en", "zh", "mixed"] {
        let items: Vec<&FaqItem> = all
            .iter()
            .copied()
            .filter(|i| lang == "all" || language(&i.text) == lang)
            .collect();
        let in_scope = items.iter().filter(|i| i.expect.is_some()).count();
        let off = items.len() - in_scope;
        let s = faq_scores(&kb, &items, point, lang == "all");
        let answered_off = off_topic_answered(&kb, &items);
        println!(
            "FAQ eval [{lang}]: {} entries, {} questions ({in_scope} in scope, {off} out of scope), \
             threshold {:.2} margin {:.2}: TP={} FP={} FN={} precision={:.3} recall={:.3} F1={:.3}; \
             out of scope answered {answered_off}",
            kb.len(),
            items.len(),
            point.0,
            point.1,
            s.tp,
            s.fp,
            s.fn_,
            s.precision(),
            s.recall(),
            s.f1()
        );
        // Issue 23's goals where the sample is large enough to say anything (the mixed
        // sample is small: one miss moves it by 0.1).
        let (p_floor, r_floor) = match lang {
            "mixed" => (0.85, 0.67),
            _ => (0.90, 0.67),
        };
        assert!(
            s.precision() >= p_floor,
            "[{lang}] FAQ precision {:.3}",
            s.precision()
        );
        assert!(
            s.recall() >= r_floor,
            "[{lang}] FAQ recall {:.3}",
            s.recall()
        );
        if lang == "all" {
            // At most the floor (it is 0 now, so equal).
            assert_eq!(
                answered_off, OFF_TOPIC_ANSWERED,
                "{answered_off} of {off} off-topic answered"
            );
        }
    }
}

/// The sanity set in another domain (`sanity_bike_faq.toml`, `sanity_bike.jsonl`), written
/// before the off-topic guard was tuned and never tuned on: the defaults, untouched, as a
/// check that the operating point chosen on `faq_dev.jsonl` generalises. Its figures go in
/// the README; the floors below are what it measured, so a change that loses them fails.
#[test]
fn faq_untuned_sanity_set_in_another_domain() {
    let cfg = AssistConfig::default();
    let kb = FaqIndex::from_file(&data("sanity_bike_faq.toml"), &cfg).unwrap();
    let items: Vec<FaqItem> = lines("sanity_bike.jsonl");
    let all: Vec<&FaqItem> = items.iter().collect();
    let point = (cfg.faq_threshold, cfg.faq_margin);
    let s = faq_scores(&kb, &all, point, true);
    let off = all.iter().filter(|i| i.expect.is_none()).count();
    let answered_off = off_topic_answered(&kb, &all);
    for lang in ["en", "zh", "mixed"] {
        let part: Vec<&FaqItem> = all
            .iter()
            .copied()
            .filter(|i| language(&i.text) == lang)
            .collect();
        let p = faq_scores(&kb, &part, point, false);
        println!(
            "FAQ sanity (bike shop) [{lang}]: {} questions: TP={} FP={} FN={} precision={:.3} recall={:.3}",
            part.len(),
            p.tp,
            p.fp,
            p.fn_,
            p.precision(),
            p.recall()
        );
    }
    println!(
        "FAQ sanity (bike shop, untuned): {} entries, {} questions ({off} out of scope): \
         TP={} FP={} FN={} precision={:.3} recall={:.3} F1={:.3}; out of scope answered {answered_off}",
        kb.len(),
        all.len(),
        s.tp,
        s.fp,
        s.fn_,
        s.precision(),
        s.recall(),
        s.f1()
    );
    assert_eq!(all.len(), 40);
    assert!(
        s.precision() >= SANITY_FLOOR.0,
        "sanity precision {:.3}",
        s.precision()
    );
    assert!(
        s.recall() >= SANITY_FLOOR.1,
        "sanity recall {:.3}",
        s.recall()
    );
    assert!(
        answered_off <= SANITY_FLOOR.2,
        "{answered_off} of {off} off-topic answered"
    );
}

/// What the sanity set measured (precision, recall, off-topic answered): see the README.
const SANITY_FLOOR: (f64, f64, usize) = (1.0, 0.80, 0);

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
                    // Printed on every split: refusing a customer is the error to fix.
                    println!(
                        "  ham REFUSED by {} ({:?}): {:?}",
                        h.rule, h.action, it.text
                    );
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
    // Per language, read from the text (the set has no language field): Chinese if it
    // has Han characters, mixed if it also has a Latin word of three letters or more.
    let lang = |t: &str| {
        let han = t.chars().any(|c| ('\u{4E00}'..='\u{9FFF}').contains(&c));
        let latin = t
            .split(|c: char| !c.is_ascii_alphabetic())
            .any(|w| w.len() >= 3);
        match (han, latin) {
            (true, true) => "mixed",
            (true, false) => "zh",
            _ => "en",
        }
    };
    for l in ["en", "zh", "mixed"] {
        let part: Vec<SpamItem> = eval
            .iter()
            .filter(|i| lang(&i.text) == l)
            .map(|i| SpamItem {
                text: i.text.clone(),
                spam: i.spam,
            })
            .collect();
        let (s, lost) = spam_scores(&rules, &part, false);
        println!(
            "spam eval [{l}]: {} messages: TP={} FP={} FN={} precision={:.3} recall={:.3}; \
             ham not delivered (drop/block)={lost}",
            part.len(),
            s.tp,
            s.fp,
            s.fn_,
            s.precision(),
            s.recall()
        );
    }
    assert!(spam >= 100 && eval.len() - spam >= 90);
    let dev = lines::<SpamItem>("spam_dev.jsonl").len();
    assert!(
        eval.len() + dev >= 300,
        "labelled spam/ham: {}",
        eval.len() + dev
    );
    assert!(s.precision() >= 0.9, "spam precision {:.3}", s.precision());
    assert!(s.recall() >= 0.85, "spam recall {:.3}", s.recall());
    // Refusing a customer is the worst error: no ham dropped or blocked.
    assert_eq!(
        ham_lost, 0,
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

/// The sample libraries are shops and services the background is for: no entry of
/// theirs loses half of its questions to it (so `check-config` has no hint for them).
/// Two of faq.toml's 200-odd questions are kept back, by round 2's topics: "Do you
/// take credit cards?" (banks) and "Connect with Shopify" (home internet).
#[test]
fn the_sample_libraries_are_not_in_the_background() {
    let cfg = AssistConfig::default();
    for (name, kept) in [("faq.toml", 2), ("sanity_bike_faq.toml", 0)] {
        let text = std::fs::read_to_string(data(name)).unwrap();
        let c = FaqIndex::background_conflicts(&text, Format::Toml, &cfg).unwrap();
        println!("{name}: {c:?}");
        assert_eq!(c.len(), kept, "{name}: {c:?}");
        assert!(!library_in_background(&c), "{name}: {c:?}");
    }
}

/// A blind-set question: `lang` is en, zh (simplified), hant (traditional) or mixed;
/// `split` is tune or report (fixed by `tests/data/blind_split.py`).
#[derive(Debug, Deserialize)]
struct BlindItem {
    #[serde(flatten)]
    item: FaqItem,
    lang: String,
    split: String,
}

/// Prints the FAQ figures of `items` (one split of blind set `set`) per language.
fn blind_faq_report(
    kb: &FaqIndex,
    items: &[&BlindItem],
    set: &str,
    split: &str,
    verbose: bool,
) -> Scores {
    let point = {
        let cfg = AssistConfig::default();
        (cfg.faq_threshold, cfg.faq_margin)
    };
    let mut all = Scores::default();
    for lang in ["all", "en", "zh", "hant", "mixed"] {
        let part: Vec<&FaqItem> = items
            .iter()
            .filter(|i| lang == "all" || i.lang == lang)
            .map(|i| &i.item)
            .collect();
        let off = part.iter().filter(|i| i.expect.is_none()).count();
        let s = faq_scores(kb, &part, point, verbose && lang == "all");
        println!(
            "FAQ {set} [{split}] [{lang}]: {} questions ({} in scope, {off} off-topic): TP={} FP={} FN={} \
             precision={:.3} recall={:.3} F1={:.3}; off-topic answered {}",
            part.len(),
            part.len() - off,
            s.tp,
            s.fp,
            s.fn_,
            s.precision(),
            s.recall(),
            s.f1(),
            s.off
        );
        if lang == "all" {
            all = s;
        }
    }
    all
}

/// Runs a blind FAQ set at the defaults: the library `faq_text` (40 entries), the questions
/// of `queries` (160, each marked tune or report); prints both halves per language (the tune
/// half's misses listed) and holds each half to its floor (precision, recall, off-topic
/// answered), so a change that loses what it measured fails.
fn blind_faq_set(
    set: &str,
    faq_text: &str,
    queries: &str,
    floors: [(f64, f64, u32); 2],
) -> [Scores; 2] {
    let cfg = AssistConfig::default();
    let kb = FaqIndex::from_str(faq_text, Format::Toml, &cfg).unwrap();
    assert_eq!(kb.len(), 40);
    let items: Vec<BlindItem> = lines(queries);
    assert_eq!(items.len(), 160);
    let tune: Vec<&BlindItem> = items.iter().filter(|i| i.split == "tune").collect();
    let report: Vec<&BlindItem> = items.iter().filter(|i| i.split == "report").collect();
    assert_eq!(tune.len() + report.len(), 160);
    let t = blind_faq_report(&kb, &tune, set, "tune", true);
    let r = blind_faq_report(&kb, &report, set, "report", false);
    for (name, s, (p, rc, off)) in [("tune", t, floors[0]), ("report", r, floors[1])] {
        assert!(
            s.precision() >= p,
            "{set} {name} precision {:.3}",
            s.precision()
        );
        assert!(s.recall() >= rc, "{set} {name} recall {:.3}", s.recall());
        assert!(s.off <= off, "{set} {name}: {} off-topic answered", s.off);
    }
    [t, r]
}

/// The blind held-out set (`blind_faq.toml`, an online course platform; `blind.jsonl`),
/// written before its author read the matcher: an outsider's estimate. Changes are tuned on
/// the "tune" half only (its misses are listed); the "report" half is the figure to quote.
#[test]
fn faq_blind_set_written_before_reading_the_matcher() {
    let text = std::fs::read_to_string(data("blind_faq.toml")).unwrap();
    // What they measured after session 32's changes (README).
    blind_faq_set(
        "blind",
        &text,
        "blind.jsonl",
        [BLIND_TUNE_FLOOR, BLIND_REPORT_FLOOR],
    );
}

/// The second blind set (`blind2_faq.toml`, a mobile carrier and home broadband;
/// `blind2.jsonl`; see `tests/data/BLIND2.md`), as its author wrote it and with
/// `background = false`, which the README tells an internet provider's library to set.
#[test]
fn faq_blind2_set_written_before_reading_the_matcher() {
    let text = std::fs::read_to_string(data("blind2_faq.toml")).unwrap();
    // Whether `check-config` would tell this operator to set `background = false`.
    let c = FaqIndex::background_conflicts(&text, Format::Toml, &AssistConfig::default()).unwrap();
    println!(
        "blind2_faq.toml: {} questions kept back by the background, check-config warns: {}: {c:?}",
        c.len(),
        library_in_background(&c)
    );
    assert!(c.is_empty(), "{c:?}");
    blind_faq_set(
        "blind2",
        &text,
        "blind2.jsonl",
        [BLIND2_TUNE_FLOOR, BLIND2_REPORT_FLOOR],
    );
    blind_faq_set(
        "blind2 (background = false)",
        &format!("background = false\n{text}"),
        "blind2.jsonl",
        [BLIND2_NO_BG_TUNE_FLOOR, BLIND2_NO_BG_REPORT_FLOOR],
    );
}

/// What the blind set's halves measured (precision, recall, off-topic answered of 20);
/// before session 32's changes: tune 0.833 / 0.484 / 2, report 0.829 / 0.500 / 1; before
/// session 33's thesaurus: tune 0.955 / 0.677 / 1, report 0.868 / 0.569 / 1.
const BLIND_TUNE_FLOOR: (f64, f64, u32) = (1.0, 0.83, 0);
const BLIND_REPORT_FLOOR: (f64, f64, u32) = (0.91, 0.70, 1);

/// What the second blind set's halves measured at its first run, before any change
/// (precision, recall, off-topic answered of 20), just below: tune 0.815 / 0.361 / 3,
/// report 0.789 / 0.254 / 1 (see `tests/data/BLIND2.md`). Session 33's thesaurus,
/// tuned without this set, moved its tune half to 0.875 / 0.344 / 2 (one right answer
/// and one wrong one fewer) and left the report half as it was. Session 34's answer
/// field moved the tune half to 0.889 / 0.393 / 2 (three right answers more) and left
/// the report half as it was again.
const BLIND2_TUNE_FLOOR: (f64, f64, u32) = (0.88, 0.39, 2);
const BLIND2_REPORT_FLOOR: (f64, f64, u32) = (0.78, 0.25, 1);
/// The same with `background = false`: tune 0.714 / 0.410 / 8, report 0.615 / 0.271 / 6
/// at the first run; after the thesaurus tune 0.688 / 0.361 / 8, report 0.593 / 0.271 /
/// 6 (worse by three answers on the tune half: its groups were chosen on other domains);
/// after session 34's answer field tune 0.706 / 0.393 / 8, report unchanged.
const BLIND2_NO_BG_TUNE_FLOOR: (f64, f64, u32) = (0.70, 0.39, 8);
const BLIND2_NO_BG_REPORT_FLOOR: (f64, f64, u32) = (0.59, 0.27, 6);

/// A blind spam/ham message: `lang` and `split` as in [`BlindItem`].
#[derive(Debug, Deserialize)]
struct BlindSpam {
    #[serde(flatten)]
    item: SpamItem,
    split: String,
    lang: String,
}

/// One part of a blind spam set: rule file, split, language, scores, ham refused.
type BlindSpamPart = (&'static str, &'static str, &'static str, Scores, u32);

/// Runs the blind spam/ham set `messages` (100) against each rule file, per split and
/// language (the tune half's misses listed); prints every part and returns them.
fn blind_spam_set(set: &str, messages: &str, files: [&'static str; 2]) -> Vec<BlindSpamPart> {
    let items: Vec<BlindSpam> = lines(messages);
    assert_eq!(items.len(), 100);
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(data(file)).unwrap();
        let rules = SpamRules::from_str(&text, Format::Toml, &AssistConfig::default()).unwrap();
        for split in ["tune", "report"] {
            for lang in ["all", "en", "zh", "hant", "mixed"] {
                let part: Vec<SpamItem> = items
                    .iter()
                    .filter(|i| i.split == split && (lang == "all" || i.lang == lang))
                    .map(|i| SpamItem {
                        text: i.item.text.clone(),
                        spam: i.item.spam,
                    })
                    .collect();
                let verbose = split == "tune" && lang == "all";
                let (s, ham_lost) = spam_scores(&rules, &part, verbose);
                println!(
                    "spam {set} [{file}] [{split}] [{lang}]: {} messages: TP={} FP={} FN={} \
                     precision={:.3} recall={:.3}; ham not delivered (drop/block)={ham_lost}",
                    part.len(),
                    s.tp,
                    s.fp,
                    s.fn_,
                    s.precision(),
                    s.recall()
                );
                out.push((file, split, lang, s, ham_lost));
            }
        }
    }
    out
}

/// The blind spam/ham set, with its day-one rule file (`blind_spam.toml`) and with the
/// sample rule file (`spam.toml`), per split.
#[test]
fn spam_blind_set_written_before_reading_the_filter() {
    let parts = blind_spam_set(
        "blind",
        "blind_spam.jsonl",
        ["blind_spam.toml", "spam.toml"],
    );
    for (file, split, lang, _, ham_lost) in parts {
        // Refusing a customer is the worst error: with either rule file, none.
        assert_eq!(ham_lost, 0, "{file} {split} {lang}: {ham_lost} ham refused");
    }
}

/// The second blind spam/ham set (`blind2_spam.jsonl`, a mobile carrier; day-one rule file
/// `blind2_spam.toml`; see `tests/data/BLIND2.md`), held to what it measured at its first
/// run (precision, recall, ham refused, per rule file and split, all languages).
#[test]
fn spam_blind2_set_written_before_reading_the_filter() {
    let parts = blind_spam_set(
        "blind2",
        "blind2_spam.jsonl",
        ["blind2_spam.toml", "spam.toml"],
    );
    for (file, split, lang, s, ham_lost) in parts {
        if lang != "all" {
            continue;
        }
        let &(_, _, (p, r, lost)) = BLIND2_SPAM_FLOORS
            .iter()
            .find(|(f, sp, _)| *f == file && *sp == split)
            .unwrap();
        assert!(
            s.precision() >= p,
            "{file} {split}: precision {:.3}",
            s.precision()
        );
        assert!(s.recall() >= r, "{file} {split}: recall {:.3}", s.recall());
        assert!(ham_lost <= lost, "{file} {split}: {ham_lost} ham refused");
    }
}

/// What the second blind spam set measured at its first run, just below: (rule file, split,
/// (precision, recall, ham refused)); measured day-one tune 0.955 / 0.840, report
/// 0.917 / 0.880; `spam.toml` tune 0.950 / 0.760, report 0.960 / 0.960; no ham refused.
const BLIND2_SPAM_FLOORS: [(&str, &str, (f64, f64, u32)); 4] = [
    ("blind2_spam.toml", "tune", (0.95, 0.83, 0)),
    ("blind2_spam.toml", "report", (0.91, 0.87, 0)),
    ("spam.toml", "tune", (0.94, 0.75, 0)),
    ("spam.toml", "report", (0.95, 0.95, 0)),
];

/// One labelled question as the lexical matcher sees it (a line of the dump below).
#[derive(Debug, serde::Serialize)]
struct DumpLine<'a> {
    set: &'a str,
    split: &'a str,
    lang: &'a str,
    group: &'a str,
    text: &'a str,
    expect: Option<&'a str>,
    /// The closest entry's id (none: a background topic is closer, or nothing shared).
    closest: Option<&'a str>,
    score: f32,
    margin: f32,
    /// `FaqIndex::accepts` at the default operating point, and each of its parts.
    accepts: bool,
    overlap: bool,
    corroborated: bool,
    on_topic: bool,
    above_threshold: bool,
    above_margin: bool,
    shared: u32,
    /// Shared content grams that are not the library's generic words.
    specific_shared: u32,
    content: u32,
    generic: u32,
    other_service: bool,
    foreign: f32,
    /// The background topic closer than any entry, if one is.
    background: Option<&'a str>,
}

/// Writes the lexical matcher's view of every labelled FAQ question (every set and
/// split, at the default operating point) as JSON lines, for offline studies of other
/// signals (`tuning/semantic/`): to `$FAQ_DUMP`, or `faq_dump.jsonl` in Cargo's
/// test temporary directory. `cargo test --test it faq_dump -- --ignored --nocapture`.
#[test]
#[ignore = "writes a file for offline studies; run on demand"]
fn faq_dump_lexical_view_of_every_labelled_question() {
    let cfg = AssistConfig::default();
    let point = (cfg.faq_threshold, cfg.faq_margin);
    let out = std::env::var_os("FAQ_DUMP").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("faq_dump.jsonl"),
        PathBuf::from,
    );
    // (set, library, questions, split when the file has none)
    let sets = [
        ("faq", "faq.toml", "faq_dev.jsonl", Some("dev")),
        ("faq", "faq.toml", "faq_eval.jsonl", Some("eval")),
        ("blind", "blind_faq.toml", "blind.jsonl", None),
        ("blind2", "blind2_faq.toml", "blind2.jsonl", None),
        (
            "bike",
            "sanity_bike_faq.toml",
            "sanity_bike.jsonl",
            Some("sanity"),
        ),
    ];
    let mut text = String::new();
    let mut n = 0;
    for (set, library, questions, split) in sets {
        let kb = FaqIndex::from_file(&data(library), &cfg).unwrap();
        let items: Vec<serde_json::Value> = lines(questions);
        for v in &items {
            let item: FaqItem = serde_json::from_value(v.clone()).unwrap();
            let split = split.unwrap_or_else(|| v["split"].as_str().unwrap());
            let lang = v["lang"].as_str().unwrap_or_else(|| language(&item.text));
            let m = kb.closest(&item.group, &item.text);
            let verdict = m.map(|m| kb.verdict(&m, point.0, point.1));
            let line = DumpLine {
                set,
                split,
                lang,
                group: &item.group,
                text: &item.text,
                expect: item.expect.as_deref(),
                closest: m.map(|m| m.id),
                score: m.map_or(0.0, |m| m.score),
                margin: m.map_or(0.0, |m| m.margin),
                accepts: verdict.is_some_and(|v| v.accepts()),
                overlap: verdict.is_some_and(|v| v.overlap),
                corroborated: verdict.is_some_and(|v| v.corroborated),
                on_topic: verdict.is_some_and(|v| v.on_topic),
                above_threshold: verdict.is_some_and(|v| v.threshold),
                above_margin: verdict.is_some_and(|v| v.margin),
                shared: m.map_or(0, |m| m.shared),
                specific_shared: m.map_or(0, |m| m.shared - m.shared_generic),
                content: m.map_or(0, |m| m.content),
                generic: m.map_or(0, |m| m.generic),
                other_service: m.is_some_and(|m| m.other_service),
                foreign: m.map_or(0.0, |m| m.foreign),
                background: kb.closest_topic(&item.group, &item.text),
            };
            // The dump agrees with what the matcher answers.
            assert_eq!(
                line.accepts,
                kb.best_match(&item.group, &item.text).is_some(),
                "{line:?}"
            );
            text.push_str(&serde_json::to_string(&line).unwrap());
            text.push('\n');
            n += 1;
        }
    }
    assert_eq!(n, 162 + 298 + 160 + 160 + 40);
    std::fs::write(&out, text).unwrap();
    println!("{n} questions written to {}", out.display());
}
