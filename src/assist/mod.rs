//! Agent assistants: FAQ auto-reply ([`faq`]), canned-reply suggestions
//! ([`suggest`]) and the spam and abuse filter ([`spam`]).
//!
//! All three are sans-IO: values in, values out, the caller's clock. Libraries are
//! loaded from files named in `[assist]` ([`config`]) and are immutable once built
//! (reload = build a new one and swap an `Arc`); the filter's per-visitor state lives
//! in [`spam::SpamFilter`], one per worker.

mod analyze;
mod answer_field;
pub(crate) mod config;
mod disguise;
pub(crate) mod faq;
mod foreign;
pub(crate) mod load;
mod normalize;
mod signals;
pub(crate) mod spam;
pub(crate) mod suggest;
mod tfidf;

pub use config::{AssistConfig, AssistConfigError};
pub use faq::{FaqIndex, FaqMatch, FaqVerdict};
pub use load::{Format, LoadError};
pub use spam::{Action, Hit, SpamCounters, SpamFilter, SpamRules, TenantRules, Verdict};
pub use suggest::CannedLibrary;

use std::sync::Arc;

/// The three libraries as configured, built together at start and again on SIGHUP
/// (build the new set off the hot path, then swap it in; a failed reload keeps the
/// old set). `None` where the assistant is disabled or has no file.
#[derive(Debug, Clone, Default)]
pub struct Libraries {
    /// FAQ knowledge base (`assist.faq`).
    pub faq: Option<Arc<FaqIndex>>,
    /// Canned replies (`assist.canned`).
    pub canned: Option<Arc<CannedLibrary>>,
    /// Spam rules and samples (`assist.spam`).
    pub spam: Option<Arc<SpamRules>>,
    /// Per-tenant spam rules (`assist.spam_tenants`).
    pub spam_tenants: TenantRules,
}

/// `check-config`'s hint about the FAQ library (`assist.faq`): its own questions
/// that the built-in background of off-topic subjects keeps from their entries, when
/// some entry loses half of its questions or more (a library whose subject is there
/// wants `background = false`). `None` otherwise, when the FAQ is off or its file
/// does not load (the load error is `check`'s to report).
pub fn faq_background_hint(cfg: &AssistConfig) -> Option<String> {
    let path = cfg.faq.as_ref().filter(|_| cfg.faq_enabled)?;
    let text = load::read_bounded(path, cfg.max_file_bytes).ok()?;
    let conflicts = FaqIndex::background_conflicts(&text, Format::of_path(path), cfg).ok()?;
    if !faq::library_in_background(&conflicts) {
        return None;
    }
    let first = conflicts.first()?;
    let mut entries: Vec<&str> = conflicts.iter().map(|c| c.entry.as_str()).collect();
    entries.dedup();
    Some(format!(
        "{}: {} question(s) of {} entr{} get no automatic answer because they look like \
         the built-in background of off-topic subjects (e.g. entry {:?}: {:?}, {}); if \
         that is this library's subject (an internet provider, a bank, a travel agency), \
         put `background = false` at the top of the FAQ file",
        path.display(),
        conflicts.len(),
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        first.entry,
        first.question,
        first.because,
    ))
}

impl Libraries {
    /// Loads every enabled library named in `cfg`.
    pub fn load(cfg: &AssistConfig) -> Result<Self, LoadError> {
        let faq = match (&cfg.faq, cfg.faq_enabled) {
            (Some(path), true) => Some(Arc::new(FaqIndex::from_file(path, cfg)?)),
            _ => None,
        };
        let canned = match (&cfg.canned, cfg.suggest_enabled) {
            (Some(path), true) => Some(Arc::new(CannedLibrary::from_file(path, cfg)?)),
            _ => None,
        };
        let spam = match (&cfg.spam, cfg.spam_enabled) {
            (Some(path), true) => Some(Arc::new(SpamRules::from_file(path, cfg)?)),
            _ => None,
        };
        let mut spam_tenants = TenantRules::new();
        if cfg.spam_enabled {
            for (tenant, path) in &cfg.spam_tenants {
                spam_tenants.insert(tenant.clone(), Arc::new(SpamRules::from_file(path, cfg)?));
            }
        }
        Ok(Self {
            faq,
            canned,
            spam,
            spam_tenants,
        })
    }

    /// Loads afresh for a reload, carrying canned-reply usage counts over from `old`.
    pub fn reload(cfg: &AssistConfig, old: &Libraries) -> Result<Self, LoadError> {
        let new = Self::load(cfg)?;
        new.carry_uses_from(old);
        Ok(new)
    }

    /// Takes the canned-reply usage counts over from `old` (the set this one replaces).
    pub fn carry_uses_from(&self, old: &Libraries) {
        if let (Some(n), Some(o)) = (&self.canned, &old.canned) {
            n.carry_uses_from(o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_what_is_enabled_and_reload_keeps_usage() {
        let dir = tempfile::tempdir().unwrap();
        let faq = dir.path().join("faq.toml");
        let canned = dir.path().join("canned.json");
        let spam = dir.path().join("spam.toml");
        std::fs::write(
            &faq,
            "[[entry]]\nid='a'\nquestions=['where is my parcel']\nanswer='x'",
        )
        .unwrap();
        std::fs::write(&canned, r#"{"reply": [{"id": 7, "text": "Hello there"}]}"#).unwrap();
        std::fs::write(
            &spam,
            "[[rule]]\nname='r'\naction='drop'\nkeywords=['casino']",
        )
        .unwrap();
        let mut cfg = AssistConfig {
            faq: Some(faq),
            canned: Some(canned),
            spam: Some(spam.clone()),
            ..AssistConfig::default()
        };
        let libs = Libraries::load(&cfg).unwrap();
        assert!(libs.faq.is_some() && libs.canned.is_some() && libs.spam.is_some());
        libs.canned.as_ref().unwrap().record_use(7);
        cfg.faq_enabled = false;
        let again = Libraries::reload(&cfg, &libs).unwrap();
        assert!(again.faq.is_none());
        assert_eq!(again.canned.unwrap().suggest("", "hel", 1)[0].uses, 1);
        // A tenant's own rule file is loaded beside the default one.
        let acme = dir.path().join("acme.toml");
        std::fs::write(
            &acme,
            "[[rule]]\nname='k'\naction='flag'\nkeywords=['kitten']",
        )
        .unwrap();
        cfg.spam_tenants.insert("acme".into(), acme.clone());
        let libs = Libraries::load(&cfg).unwrap();
        assert_eq!(libs.spam_tenants.len(), 1);
        assert!(libs.spam_tenants["acme"].classify("a kitten").is_some());
        std::fs::write(&acme, "[[rule]]\nname='k'").unwrap();
        assert!(matches!(
            Libraries::load(&cfg),
            Err(LoadError::Parse { .. })
        ));
        cfg.spam_tenants.clear();
        std::fs::write(&spam, "not toml [").unwrap();
        assert!(matches!(
            Libraries::load(&cfg),
            Err(LoadError::Parse { .. })
        ));
    }
}
