//! Start-up recovery: open the journal, replay every record into the conversation
//! shards, and rebuild the router's queues and assignments from what they hold.

use std::time::Instant;

use crate::config::Config;
use crate::journal::Journal;
use crate::server::StartError;
use crate::service::conversation::Shard;
use crate::service::router::Router;
use crate::service::shard_of;

/// Opens `<state_dir>/journal`, rebuilds `shards` and `router` from it, and logs what
/// recovery found and how long it took.
pub(crate) fn open_journal(
    config: &Config,
    shards: &mut [Shard],
    router: &mut Router,
    metrics: &crate::metrics::Metrics,
) -> Result<Journal, StartError> {
    let started = Instant::now();
    let dir = config.state_dir.join("journal");
    let n = shards.len();
    let mut unreadable = 0u64;
    let journal = Journal::open(&dir, &config.journal, |r, at| {
        let shard = shards.get_mut(shard_of(r.conversation, n));
        if let Some(shard) = shard
            && shard
                .restore(r.conversation, r.seq, r.time_ms, r.kind, r.body, Some(at))
                .is_err()
        {
            unreadable += 1;
        }
    })
    .map_err(|e| StartError::Journal(format!("{}: {e}", dir.display())))?;
    let _ = journal.handle.stats().sink.set(metrics.journal.clone());
    let mut open = Vec::new();
    let mut max_id = 0;
    for shard in shards.iter_mut() {
        shard.finish_restore();
        shard.set_reader(journal.reader.clone());
        // Restored state is durable by definition.
        shard.durable(u64::MAX);
        shard.take_records();
        open.extend(shard.open_conversations());
        max_id = max_id.max(shard.max_conversation());
    }
    open.sort_unstable_by_key(|c| (c.since_ms, c.id));
    let open_count = open.len();
    router.restore(open, max_id.saturating_add(1), 0);
    let stats = &journal.recovery;
    if unreadable > 0 {
        tracing::warn!(
            records = unreadable,
            "journal records with a valid checksum but an unreadable body were skipped"
        );
    }
    if stats.bytes_truncated > 0 || stats.corrupt_segments > 0 {
        tracing::warn!(
            truncated_bytes = stats.bytes_truncated,
            corrupt_segments = stats.corrupt_segments,
            skipped_bytes = stats.skipped_bytes,
            "journal damage repaired at start"
        );
    }
    tracing::info!(
        dir = %dir.display(),
        segments = stats.segments,
        records = stats.records,
        bytes = stats.bytes,
        scan_ms = stats.elapsed.as_millis() as u64,
        recovery_ms = started.elapsed().as_millis() as u64,
        open_conversations = open_count,
        next_conversation = max_id.saturating_add(1),
        "journal recovered"
    );
    Ok(journal)
}
