//! Fuzz target for the assistant's library files, read at start and on every reload
//! (SIGHUP): the FAQ knowledge base, the canned replies and the spam rules, TOML or
//! JSON (`switchboard::bench_support::{FaqIndex, CannedLibrary, SpamRules}::from_str`,
//! `src/assist/load.rs`).
//!
//! The first byte picks the library (bits 0-1: 0/3 FAQ, 1 canned replies, 2 spam
//! rules) and the syntax (bit 2: JSON, else TOML); bit 3 sets `assist.max_entries` to
//! 3 and `assist.max_file_bytes` to 512. The rest is the file's text (UTF-8 only, as
//! the reader requires). The target asserts that a refusal is a parse, empty, too
//! many, too large or entry error (never a read error), that an accepted library holds
//! 1 to `max_entries` entries, and that using it on the text itself does not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::bench_support::{
    AssistConfig, CannedLibrary, FaqIndex, Format, LoadError, SpamRules,
};

fuzz_target!(|data: &[u8]| {
    let Some((&pattern, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let format = if pattern & 4 != 0 {
        Format::Json
    } else {
        Format::Toml
    };
    let mut cfg = AssistConfig::default();
    if pattern & 8 != 0 {
        cfg.max_entries = 3;
        cfg.max_file_bytes = 512;
    }
    let probe: String = text.chars().take(200).collect();
    let result = match pattern & 3 {
        1 => CannedLibrary::from_str(text, format, &cfg).map(|lib| {
            let n = lib.len();
            for s in lib.suggest("", &probe, 5) {
                lib.record_use(s.id);
            }
            let _ = lib.suggest("sales", "", 20);
            n
        }),
        2 => SpamRules::from_str(text, format, &cfg).map(|rules| {
            let _ = rules.classify(&probe);
            let _ = rules.classify(text);
            usize::MAX
        }),
        _ => FaqIndex::from_str(text, format, &cfg).map(|faq| {
            if let Some(m) = faq.best_match("", &probe) {
                let _ = faq.verdict(&m, 0.2, 0.05);
            }
            let _ = faq.closest_topic("sales", &probe);
            faq.len()
        }),
    };
    match result {
        Ok(usize::MAX) => {}
        Ok(n) => assert!(n >= 1 && n <= cfg.max_entries, "{n}"),
        Err(e) => assert!(
            matches!(
                e,
                LoadError::Parse { .. }
                    | LoadError::Empty(_)
                    | LoadError::TooMany { .. }
                    | LoadError::TooLarge { .. }
                    | LoadError::Invalid { .. }
            ),
            "{e:?}"
        ),
    }
});
