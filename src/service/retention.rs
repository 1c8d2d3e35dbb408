//! Journal retention: every so often, the shards forget the conversations closed more
//! than `journal.retention` ago, and the journal drops their records by deleting or
//! compacting whole old segments (never by rewriting one in place).

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::clock::{UnixMs, unix_ms};
use crate::journal::JournalHandle;
use crate::service::{ShardControl, tell_shards};

/// Longest wait for a shard's answer.
const SHARD_TIMEOUT: Duration = Duration::from_secs(10);

/// The retention thread; stopped by [`Retention::stop`].
pub(crate) struct Retention {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

/// How often retention runs: a 24th of the retention period, within 1 s .. 1 h.
pub(crate) fn interval(retention: Duration) -> Duration {
    (retention / 24).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

impl Retention {
    /// Starts the thread.
    pub fn spawn(
        journal: JournalHandle,
        shards: Arc<[Sender<ShardControl>]>,
        retention: Duration,
        files: crate::files::store::Store,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let every = interval(retention);
        let thread = std::thread::Builder::new()
            .name("retention".into())
            .spawn(move || {
                let mut forgotten = HashSet::new();
                // Runs until the sender is dropped (shutdown).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let now = unix_ms();
                    run_once(&journal, &shards, retention, now, &mut forgotten, &files);
                }
            })?;
        Ok(Retention { stop, thread })
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// Deletes every sealed segment older than `cutoff_ms`, first copying forward the
/// records of conversations not `gone` and telling the shards where they went (so no
/// reader ever holds a location of a deleted segment). Returns (segments deleted, of
/// which compacted, records moved). A crash between copying and deleting leaves
/// duplicates, which recovery skips.
fn retire(
    journal: &JournalHandle,
    shards: &[Sender<ShardControl>],
    gone: &Arc<HashSet<u64>>,
    cutoff_ms: u64,
) -> Result<(usize, usize, usize), crate::journal::JournalError> {
    let mut delete = Vec::new();
    let mut moves = Vec::new();
    let mut compacted = 0;
    let segments = journal.segments()?;
    let pinned = pinned(&segments, gone, cutoff_ms);
    let gone: Arc<HashSet<u64>> = Arc::new(gone.difference(&pinned).copied().collect());
    for s in segments {
        if s.active || s.last_time_ms >= cutoff_ms {
            continue;
        }
        if s.conversations.iter().any(|c| !gone.contains(c)) {
            let gone = gone.clone();
            moves
                .extend(journal.copy_forward(s.segment, move |r| !gone.contains(&r.conversation))?);
            compacted += 1;
        }
        delete.push(s.segment);
    }
    let moved = moves.len();
    if !moves.is_empty() {
        let moves: Arc<std::collections::HashMap<_, _>> = Arc::new(moves.into_iter().collect());
        let (done, acks) = crossbeam_channel::unbounded();
        let asked = tell_shards(shards, ShardControl::Moved { moves, done });
        for _ in 0..asked {
            if acks.recv_timeout(SHARD_TIMEOUT).is_err() {
                // Keep the old segments: a shard may still read them.
                return Ok((0, 0, moved));
            }
        }
    }
    let deleted = delete.len();
    if !delete.is_empty() {
        journal.delete_segments(delete)?;
    }
    Ok((deleted, compacted, moved))
}

/// The forgotten (`gone`) conversations that also have records in a segment that
/// stays this pass (the active one, or one newer than `cutoff_ms`): their records in
/// the segments that go are copied forward like those of a live conversation, so
/// that every conversation is on disk whole or not at all. Which conversations were
/// forgotten is known only in memory: a restart that found part of one would bring
/// it back open and never forget it (its close gone), or refuse to start (its
/// opening gone). Whole, it comes back closed and the next pass forgets it again.
fn pinned(
    segments: &[crate::journal::SegmentSummary],
    gone: &HashSet<u64>,
    cutoff_ms: u64,
) -> HashSet<u64> {
    segments
        .iter()
        .filter(|s| s.active || s.last_time_ms >= cutoff_ms)
        .flat_map(|s| s.conversations.iter().copied())
        .filter(|c| gone.contains(c))
        .collect()
}

/// One pass at `now`: what is older than `retention` by then goes. `forgotten` accumulates the ids of conversations the shards dropped
/// whose records may still be on disk.
fn run_once(
    journal: &JournalHandle,
    shards: &[Sender<ShardControl>],
    retention: Duration,
    now: UnixMs,
    forgotten: &mut HashSet<u64>,
    files: &crate::files::store::Store,
) {
    let started = Instant::now();
    let cutoff_ms = now
        .get()
        .saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
    let (tx, rx) = crossbeam_channel::unbounded();
    let asked = tell_shards(
        shards,
        ShardControl::Retain {
            cutoff_ms,
            reply: tx,
        },
    );
    let mut dropped = 0;
    for _ in 0..asked {
        match rx.recv_timeout(SHARD_TIMEOUT) {
            Ok(ids) => {
                dropped += ids.len();
                // Attachments go with their conversation (blocking I/O, like the
                // journal's here: this thread is neither a reactor nor a worker).
                for &id in &ids {
                    match files.remove(id) {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::debug!(conversation = id, files = n, "attachments removed")
                        }
                        Err(e) => tracing::warn!(
                            conversation = id,
                            error = %e,
                            "removing a forgotten conversation's attachments failed"
                        ),
                    }
                }
                forgotten.extend(ids);
            }
            Err(_) => return,
        }
    }
    let gone = Arc::new(forgotten.clone());
    match retire(journal, shards, &gone, cutoff_ms) {
        Ok((deleted, compacted, moved)) => {
            if dropped > 0 || deleted > 0 {
                tracing::info!(
                    conversations = dropped,
                    segments_deleted = deleted,
                    segments_compacted = compacted,
                    records_moved = moved,
                    took_ms = started.elapsed().as_millis() as u64,
                    "journal retention"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "journal retention failed; retried next time"),
    }
    // Ids no segment holds any more need not be remembered.
    if let Ok(segments) = journal.segments() {
        let live: HashSet<u64> = segments
            .iter()
            .flat_map(|s| s.conversations.iter().copied())
            .collect();
        forgotten.retain(|c| live.contains(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(
        segment: u32,
        last_time_ms: u64,
        conversations: &[u64],
    ) -> crate::journal::SegmentSummary {
        let mut s = crate::journal::SegmentSummary::new(segment, 0);
        s.last_time_ms = last_time_ms;
        s.conversations = conversations.iter().copied().collect();
        s
    }

    fn sorted(set: HashSet<u64>) -> Vec<u64> {
        let mut v: Vec<u64> = set.into_iter().collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn a_forgotten_conversation_with_records_in_a_segment_that_stays_is_copied_forward() {
        let gone: HashSet<u64> = [1, 2, 5].into();
        let mut active = summary(9, 900, &[3, 5]);
        active.active = true;
        let segments = [
            // 1 (forgotten) also lies in segment 3, newer than the cutoff.
            summary(1, 100, &[1, 4]),
            // 2 (forgotten) lies wholly in old segments: it just goes.
            summary(2, 150, &[2, 4]),
            summary(3, 600, &[1, 3]),
            // 5 (forgotten) has records in the active segment too.
            summary(4, 200, &[2, 5]),
            active,
        ];
        assert_eq!(sorted(pinned(&segments, &gone, 500)), [1, 5]);
        // Once segment 3 is old, only the active segment pins.
        assert_eq!(sorted(pinned(&segments, &gone, 700)), [5]);
        assert!(pinned(&segments, &HashSet::new(), 500).is_empty());
    }

    #[test]
    fn interval_is_a_fraction_of_retention_within_bounds() {
        assert_eq!(
            interval(Duration::from_secs(30 * 86_400)),
            Duration::from_secs(3600)
        );
        assert_eq!(interval(Duration::from_secs(48)), Duration::from_secs(2));
        assert_eq!(interval(Duration::from_millis(10)), Duration::from_secs(1));
    }
}
