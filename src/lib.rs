//! Switchboard: a self-hosted customer-service connection gateway.
//!
//! One daemon holds the long-lived connections of visitors and agents on a
//! thread-per-core reactor ([`reactor`] is internal), hands complete frames to a pool
//! of business workers over typed queues ([`handoff`]), and writes their answers back.
//! Start one with [`Server::start`]; see `DESIGN.md` and `proto-spec/` for the shape
//! and the wire format.

pub mod api;
pub(crate) mod assist;
pub mod auth;
pub mod client;
mod clock;
pub mod config;
pub mod console;
mod fasthash;
pub mod files;
pub mod frame;
pub mod handoff;
mod host_memory;
pub mod http;
#[allow(unsafe_code, reason = "the journal maps its segments")]
pub(crate) mod journal;
mod ledger;
mod log_gate;
mod mail;
pub mod metrics;
pub mod ops;
mod outbox;
pub mod protocol;
pub mod proxy;
pub mod queue;
mod reactor;
mod server;
mod service;
pub mod tls;
mod worker;
pub mod ws;
pub mod xorshift;

pub use config::Config;

/// The offline journal tools behind `switchboard journal check` and
/// `switchboard journal salvage` (`proto-spec/JOURNAL.md` §4).
pub mod journal_tools {
    use crate::{Config, StartError};

    /// What `check` found.
    #[derive(Debug, Clone)]
    pub struct JournalCheck {
        /// The report to print: what was scanned, every damaged range, every
        /// conversation affected and what salvage would do.
        pub report: String,
        /// Whether anything is damaged (a start with `journal.on_damage = "refuse"`
        /// would refuse).
        pub damaged: bool,
    }

    /// Reads the journal in `config.state_dir` without changing anything.
    pub fn check(config: &Config) -> Result<JournalCheck, StartError> {
        let c = crate::service::recovery::check_journal(config)?;
        let mut report = format!("journal {}: {}\n", c.dir.display(), c.summary);
        if c.in_use {
            report.push_str(
                "note: a running daemon holds this journal; its last segment may change while read\n",
            );
        }
        if c.plan.damaged() {
            report.push_str(&c.plan.report());
        } else {
            report.push_str("no damage\n");
            if !c.plan.leftovers.is_empty() {
                report.push_str(&c.plan.report());
            }
        }
        Ok(JournalCheck {
            report,
            damaged: c.plan.damaged(),
        })
    }

    /// Salvages the journal in `config.state_dir` (the daemon must be stopped), as a
    /// start with `journal.on_damage = "salvage"` would; returns what was done.
    pub fn salvage(config: &Config) -> Result<String, StartError> {
        let plan = crate::service::recovery::salvage_journal(config)?;
        Ok(if plan.damaged() {
            format!("salvaged:\n{}", plan.report())
        } else {
            "no damage: nothing to salvage\n".to_owned()
        })
    }
}
pub use server::{
    ConfigChange, Prepared, ReloadError, ReloadReport, Server, ShutdownReport, StartError,
};

/// Internals exposed only so `benches/` and `fuzz/` can measure them. Not a stable API.
#[doc(hidden)]
pub mod bench_support;
