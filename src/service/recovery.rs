//! Start-up recovery: scan the journal, replay every record into the conversation
//! shards, decide what damage costs (refuse to start, or salvage), and rebuild the
//! router's queues and assignments from what the shards hold. Also the offline
//! `switchboard journal check` and `switchboard journal salvage`.

use std::path::PathBuf;
use std::time::Instant;

use crate::clock::unix_ms;
use crate::config::Config;
use crate::journal::{Journal, JournalError, Location, OnDamage, Record, RecordRef};
use crate::service::conversation::Shard;
use crate::service::damage::{DamagePlan, Positions};
use crate::service::router::Router;
use crate::service::{record, shard_of};

/// Records per journal submission while salvaging (each is made durable in turn).
const SALVAGE_BATCH: usize = 4096;

/// Replays scanned records into the shards, noting where each conversation's records
/// stand (see [`Positions`]).
struct Replay<'a> {
    shards: &'a mut [Shard],
    positions: Positions,
    /// Records with a valid checksum whose body does not decode.
    unreadable: u64,
}

impl<'a> Replay<'a> {
    fn new(shards: &'a mut [Shard], config: &Config) -> Self {
        let retention = u64::try_from(config.journal.retention.as_millis()).unwrap_or(u64::MAX);
        Self {
            shards,
            positions: Positions::new(retention),
            unreadable: 0,
        }
    }

    fn visit(&mut self, r: RecordRef<'_>, at: Location) {
        self.positions.see(&r, at);
        let n = self.shards.len();
        if let Some(shard) = self.shards.get_mut(shard_of(r.conversation, n))
            && shard.restore(r, Some(at)).is_err()
        {
            self.unreadable += 1;
        }
    }

    /// Places what can be placed and works out what the damage costs.
    fn plan(self, damage: &[crate::journal::DamagedRange]) -> (DamagePlan, u64, u64) {
        let mut unplaced = Vec::new();
        let mut open = Vec::new();
        let mut max_id = 0;
        for shard in self.shards.iter_mut() {
            shard.finish_restore();
            unplaced.extend(shard.unplaced());
            open.extend(shard.tail_candidates());
            max_id = max_id.max(shard.max_conversation());
        }
        if self.unreadable > 0 {
            tracing::warn!(
                records = self.unreadable,
                "journal records with a valid checksum but an unreadable body were skipped"
            );
        }
        let plan = DamagePlan::new(
            damage,
            unplaced,
            &open,
            &self.positions,
            max_id,
            record::min_frame(),
        );
        (plan, max_id, self.unreadable)
    }
}

/// Why the journal could not be opened, checked or salvaged.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecoveryError {
    /// The journal could not be read or written (the message names the directory).
    #[error("{0}")]
    Journal(String),
    /// Recovery found damage and `journal.on_damage` is `refuse`.
    #[error("journal damaged in {dir}")]
    Damaged {
        /// The journal directory.
        dir: PathBuf,
        /// What is damaged and what salvage would do.
        report: String,
    },
}

/// Why the daemon refuses a damaged journal, with the report an operator reads.
fn refusal(dir: &std::path::Path, plan: &DamagePlan) -> RecoveryError {
    RecoveryError::Damaged {
        dir: dir.to_path_buf(),
        report: plan.report(),
    }
}

/// Opens `<state_dir>/journal`, rebuilds `shards` and `router` from it, and logs what
/// recovery found and how long it took. Damage is refused or salvaged per
/// `journal.on_damage`.
pub(crate) fn open_journal(
    config: &Config,
    shards: &mut [Shard],
    router: &mut Router,
    metrics: &crate::metrics::Metrics,
) -> Result<Journal, RecoveryError> {
    open_journal_as(config, config.journal.on_damage, shards, router, metrics)
}

fn open_journal_as(
    config: &Config,
    on_damage: OnDamage,
    shards: &mut [Shard],
    router: &mut Router,
    metrics: &crate::metrics::Metrics,
) -> Result<Journal, RecoveryError> {
    let started = Instant::now();
    let dir = config.state_dir.join("journal");
    let journal_err = |e: JournalError| RecoveryError::Journal(format!("{}: {e}", dir.display()));
    let mut replay = Replay::new(shards, config);
    let scanned =
        Journal::scan(&dir, &config.journal, |r, at| replay.visit(r, at)).map_err(journal_err)?;
    let (plan, max_id, _) = replay.plan(&scanned.stats.damage);
    let damage = scanned.stats.damage.clone();
    let damaged_bytes = scanned.stats.damaged_bytes();
    if plan.damaged() {
        for line in plan.report().lines() {
            tracing::error!(dir = %dir.display(), "journal damage: {line}");
        }
        if on_damage == OnDamage::Refuse {
            return Err(refusal(&dir, &plan));
        }
    }
    let journal = Journal::start(scanned, &config.journal, crate::journal::Faults::default())
        .map_err(journal_err)?;
    let m = &metrics.journal;
    m.damaged_ranges.set(damage.len() as u64);
    m.damaged_bytes.set(damaged_bytes);
    let done = salvage(&journal, shards, &plan, unix_ms().get()).map_err(journal_err)?;
    m.gap_lost.add(done.lost);
    m.gap_reserved.add(done.reserved);
    m.orphaned.set(done.orphans);
    let _ = journal.handle.stats().sink.set(metrics.journal.clone());
    let mut open = Vec::new();
    let mut max_id = max_id.max(plan.reserve_ids_to);
    for shard in shards.iter_mut() {
        shard.set_reader(journal.reader.clone());
        // Restored state is durable by definition.
        shard.durable(u64::MAX);
        shard.take_records();
        open.extend(shard.open_conversations());
        max_id = max_id.max(shard.max_conversation());
    }
    open.sort_unstable_by_key(|c| (c.since_ms, c.id));
    let open_count = open.len();
    router.restore(open, max_id.saturating_add(1), crate::clock::Mono::ZERO);
    if plan.damaged() {
        tracing::error!(
            ranges = damage.len(),
            damaged_bytes,
            lost_seqs = done.lost,
            reserved_seqs = done.reserved,
            orphans = done.orphans,
            "journal damage salvaged: every valid record kept, holes recorded as gap entries"
        );
    }
    let stats = &journal.recovery;
    tracing::info!(
        dir = %dir.display(),
        segments = stats.segments,
        records = stats.records,
        bytes = stats.bytes,
        truncated_bytes = stats.bytes_truncated,
        scan_ms = stats.elapsed.as_millis() as u64,
        recovery_ms = started.elapsed().as_millis() as u64,
        open_conversations = open_count,
        next_conversation = max_id.saturating_add(1),
        "journal recovered"
    );
    Ok(journal)
}

/// What salvage recorded.
#[derive(Debug, Default)]
struct Salvaged {
    /// Sequence numbers recorded as lost.
    lost: u64,
    /// Sequence numbers reserved.
    reserved: u64,
    /// Conversations kept as hidden orphans.
    orphans: u64,
}

/// Carries out `plan` on a started journal: places every held record (recording
/// holes as gap entries), reserves numbers and ids, makes the gap records durable, and
/// only then covers the damaged bytes — so a crash in between finds the damage again
/// and salvages again. On a clean journal it only drops retention leftovers.
fn salvage(
    journal: &Journal,
    shards: &mut [Shard],
    plan: &DamagePlan,
    now_ms: u64,
) -> Result<Salvaged, JournalError> {
    let n = shards.len();
    let keep_orphans = plan.damaged();
    let mut done = Salvaged::default();
    for (i, shard) in shards.iter_mut().enumerate() {
        let out = shard.salvage(&plan.tails_for(i, n), keep_orphans, now_ms);
        done.lost += out.lost;
        done.reserved += out.reserved;
        done.orphans += out.orphans;
        if out.dropped > 0 {
            tracing::debug!(
                records = out.dropped,
                "journal records of conversations retention forgot were skipped"
            );
        }
        let mut located = out.deferred;
        let records = out.records;
        let gaps: Vec<Option<(u64, u64)>> = records
            .iter()
            .map(|r| (r.kind == record::RecordKind::Gap as u8).then_some((r.conversation, r.seq)))
            .collect();
        let locs = append_durable(journal, records)?;
        located.extend(
            gaps.into_iter()
                .zip(locs)
                .filter_map(|(g, at)| g.map(|(c, s)| (c, s, at))),
        );
        located.sort_unstable_by_key(|&(c, s, _)| (c, s));
        for (c, s, at) in located {
            shard.located(c, s, at);
        }
    }
    if plan.reserve_ids_to > 0 {
        let r = record::record(
            plan.reserve_ids_to,
            0,
            now_ms,
            record::RecordKind::Reserved,
            &record::Body::default(),
        );
        append_durable(journal, vec![r])?;
    }
    let ranges: Vec<_> = plan.ranges.iter().map(|r| r.range).collect();
    if !ranges.is_empty() {
        journal.handle.fill(ranges)?;
    }
    Ok(done)
}

/// Appends `records` and waits until they are durable (synced, whatever the policy).
fn append_durable(journal: &Journal, records: Vec<Record>) -> Result<Vec<Location>, JournalError> {
    let mut locs = Vec::with_capacity(records.len());
    if records.is_empty() {
        return Ok(locs);
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        let chunk: Vec<Record> = records.by_ref().take(SALVAGE_BATCH).collect();
        journal.handle.append(chunk, 0, &tx)?;
        let done = rx.recv().map_err(|_| JournalError::Closed)?;
        locs.extend(done.result?);
    }
    journal.handle.sync()?;
    Ok(locs)
}

/// What `switchboard journal check` found.
#[derive(Debug)]
pub(crate) struct CheckReport {
    /// The journal directory.
    pub dir: PathBuf,
    /// Whether a running daemon holds the journal (its tail may change while read).
    pub in_use: bool,
    /// Segments, records and bytes scanned, and the torn tail.
    pub summary: String,
    /// The damage and what salvage would do.
    pub plan: DamagePlan,
}

/// Reads the journal of `config` without changing it and works out the damage plan,
/// as a start would.
pub(crate) fn check_journal(config: &Config) -> Result<CheckReport, RecoveryError> {
    let dir = config.state_dir.join("journal");
    if !dir.is_dir() {
        return Err(RecoveryError::Journal(format!(
            "{}: no journal directory",
            dir.display()
        )));
    }
    let mut shards = fresh_shards(config);
    let mut replay = Replay::new(&mut shards, config);
    let inspection = Journal::inspect(&dir, &config.journal, |r, at| replay.visit(r, at))
        .map_err(|e| RecoveryError::Journal(format!("{}: {e}", dir.display())))?;
    let (plan, max_id, unreadable) = replay.plan(&inspection.stats.damage);
    let s = &inspection.stats;
    let mut summary = format!(
        "{} segment(s), {} valid record(s), {} bytes; conversation ids up to {}",
        s.segments, s.records, s.bytes, max_id
    );
    if s.bytes_truncated > 0 {
        summary.push_str(&format!(
            "; a torn tail of {} bytes after the last valid record (repaired at start, not damage)",
            s.bytes_truncated
        ));
    }
    if unreadable > 0 {
        summary.push_str(&format!(
            "; {unreadable} record(s) with a valid checksum but an unreadable body"
        ));
    }
    Ok(CheckReport {
        dir,
        in_use: inspection.in_use,
        summary,
        plan,
    })
}

/// `switchboard journal salvage`: opens the journal as a start with
/// `journal.on_damage = "salvage"` would, then stops. Returns the plan carried out.
pub(crate) fn salvage_journal(config: &Config) -> Result<DamagePlan, RecoveryError> {
    let dir = config.state_dir.join("journal");
    let check = check_journal(config)?;
    if check.in_use {
        return Err(RecoveryError::Journal(format!(
            "{}: a running daemon holds this journal; stop it first",
            dir.display()
        )));
    }
    let mut shards = fresh_shards(config);
    let mut router = Router::new(crate::service::router::RouterSettings::from_config(config));
    let metrics = crate::metrics::Metrics::new(1, 1);
    let journal = open_journal_as(
        config,
        OnDamage::Salvage,
        &mut shards,
        &mut router,
        &metrics,
    )?;
    journal.handle.shutdown();
    let _ = journal.writer.join();
    Ok(check.plan)
}

/// Shards as the daemon would make them (one is enough for a check: every
/// conversation goes to it).
fn fresh_shards(config: &Config) -> Vec<Shard> {
    vec![Shard::new(
        crate::service::conversation::ShardSettings::from_config(config),
    )]
}

#[path = "recovery_fuzz.rs"]
pub(crate) mod fuzz;

#[cfg(test)]
#[path = "recovery_tests.rs"]
mod tests;
