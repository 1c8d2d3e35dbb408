//! Switchboard: a self-hosted customer-service connection gateway.
//!
//! One daemon holds the long-lived connections of visitors and agents on a
//! thread-per-core reactor ([`reactor`] is internal), hands complete frames to a pool
//! of business workers over typed queues ([`handoff`]), and writes their answers back.
//! Start one with [`Server::start`]; see `DESIGN.md` and `proto-spec/` for the shape
//! and the wire format.

mod admin;
pub(crate) mod assist;
pub mod auth;
pub mod client;
mod clock;
pub mod config;
pub mod conversation_metrics;
mod fasthash;
pub mod frame;
pub mod handoff;
mod host_memory;
#[allow(unsafe_code, reason = "the journal maps its segments")]
pub(crate) mod journal;
mod ledger;
mod log_gate;
pub mod metrics;
pub mod ops;
pub mod protocol;
mod reactor;
mod recovery;
mod retention;
mod server;
mod service;
mod worker;

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
        let c = crate::recovery::check_journal(config)?;
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
        let plan = crate::recovery::salvage_journal(config)?;
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

/// Internals exposed only so `benches/` can measure them. Not a stable API.
#[doc(hidden)]
pub mod bench_support {
    pub use crate::journal::bench::{BenchJournal, BenchStats, BenchSubmitter};
    pub use crate::journal::{FsyncPolicy, JournalConfig};

    pub use crate::assist::{
        Action, AssistConfig, AssistConfigError, CannedLibrary, FaqIndex, FaqMatch, Format, Hit,
        Libraries, LoadError, SpamCounters, SpamFilter, SpamRules, Verdict,
    };

    /// Plans the fan-out of one notice to `members` (reactor, slot, generation) spread
    /// over `reactors` reactors, as a worker does: encodes the `Notice` frame once and
    /// splits the members into one `SendMany` per reactor sharing that frame. Returns
    /// (commands, members planned, frame bytes).
    pub fn fanout(
        members: &[(u16, u32, u32)],
        reactors: usize,
        text: &str,
    ) -> (usize, usize, usize) {
        use crate::handoff::{Command, ConnId};
        use crate::protocol::messages::{Msg, Notice};
        let frame = Msg::from(Notice {
            group: String::new(),
            text: text.to_owned(),
            from: "admin".into(),
            time_ms: 0,
        })
        .to_frame(0);
        let conns: Vec<ConnId> = members
            .iter()
            .map(|&(reactor, slot, generation)| ConnId {
                reactor,
                slot,
                generation,
            })
            .collect();
        let mut scratch = vec![Vec::new(); reactors];
        let (mut commands, mut planned) = (0, 0);
        crate::worker::split_broadcast(conns, &frame, &mut scratch, |_, cmd| {
            commands += 1;
            if let Command::SendMany { conns, .. } = cmd {
                planned += conns.len();
            }
        });
        (commands, planned, frame.len())
    }

    /// What the journal's recovery parser makes of `bytes` (a record frame at their
    /// start), for the `journal_record` fuzz target: `None` for no valid record,
    /// else the frame length, whether re-encoding the record gives the same bytes,
    /// and whether its body is a readable conversation event.
    pub fn journal_record(bytes: &[u8]) -> Option<(usize, bool, bool)> {
        let (r, len) = crate::journal::decode_frame(bytes)?;
        let owned = r.to_record();
        let mut again = Vec::new();
        crate::journal::encode_frame(&mut again, &owned);
        // Header and body must come back byte for byte (padding is not checksummed).
        let used = crate::journal::RECORD_HEADER_BYTES + owned.body.len();
        let same = again.len() == len && again.get(..used) == bytes.get(..used);
        let event = crate::service::record::decode(owned.kind, &owned.body).is_ok();
        Some((len, same, event))
    }

    /// Recovery of a damaged multi-segment journal, for the `journal_recovery` fuzz
    /// target. A fixed journal (a dozen conversations over several small segments,
    /// every record kind) is written to a fresh directory, then `damage` is applied
    /// as 4-byte operations `[segment, offset high, offset low, action]` (action & 3:
    /// 0 flip bits, 1 zero 512 bytes, 2 set a byte, 3 cut the file there); then, as
    /// the daemon would: a read-only check, a start that salvages, and a restart that
    /// must find the journal clean and the same conversations. `Err` says what broke.
    pub fn journal_recovery(damage: &[u8]) -> Result<(), String> {
        crate::recovery::fuzz_recovery(damage)
    }

    /// The reactor's min-heap of (deadline, slot, generation) heartbeat entries.
    #[derive(Debug, Default)]
    pub struct TimerHeap(crate::reactor::timer::TimerHeap);

    impl TimerHeap {
        /// Arms a deadline.
        #[inline]
        pub fn push(&mut self, deadline: u64, slot: u32, generation: u32) {
            self.0
                .push(crate::clock::Mono::from_ms(deadline), slot, generation);
        }

        /// The earliest armed deadline.
        #[inline]
        pub fn next_deadline(&self) -> Option<u64> {
            self.0.next_deadline().map(crate::clock::Mono::as_ms)
        }

        /// Removes and returns the earliest entry, as (deadline, slot, generation), if
        /// it is due at `now`.
        #[inline]
        pub fn pop_due(&mut self, now: u64) -> Option<(u64, u32, u32)> {
            self.0
                .pop_due(crate::clock::Mono::from_ms(now))
                .map(|e| (e.deadline.as_ms(), e.slot, e.generation))
        }
    }
}
