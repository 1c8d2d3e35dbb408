//! Counters the writer keeps for metrics: group-commit batch sizes, sync latency,
//! disk errors. Written only by the writer thread (except `queue_full`), read anywhere.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets of the batch-size histogram: bucket `i` counts batches of `2^(i-1) < n <= 2^i`
/// records (bucket 0: one record); the last bucket takes everything larger.
pub(crate) const BATCH_BUCKETS: usize = 16;

/// Journal counters, shared through an `Arc`.
#[derive(Debug, Default)]
pub(crate) struct JournalStats {
    /// The daemon's metrics, where each fsync's duration is observed (set once).
    pub sink: std::sync::OnceLock<
        std::sync::Arc<crossbeam_utils::CachePadded<crate::metrics::JournalMetrics>>,
    >,
    /// Submissions accepted by the writer.
    pub appends: AtomicU64,
    /// Records written.
    pub records: AtomicU64,
    /// Framed bytes written.
    pub bytes: AtomicU64,
    /// Group-commit batches (one drain of the queue, at most one sync).
    pub batches: AtomicU64,
    /// Largest batch, in records.
    pub batch_records_max: AtomicU64,
    /// Batch sizes in records, power-of-two buckets.
    pub batch_hist: [AtomicU64; BATCH_BUCKETS],
    /// `fdatasync` calls.
    pub fsyncs: AtomicU64,
    /// Sum of `fdatasync` latencies, nanoseconds.
    pub fsync_nanos_total: AtomicU64,
    /// Slowest `fdatasync`, nanoseconds.
    pub fsync_nanos_max: AtomicU64,
    /// Failed writes or segment creations.
    pub write_errors: AtomicU64,
    /// Failed syncs.
    pub sync_errors: AtomicU64,
    /// Append batches that failed (a write, sync or segment creation): the fence
    /// generation ([`super::JournalHandle::append_fenced`]).
    pub failures: AtomicU64,
    /// Appends refused because a failure happened after their fence.
    pub fenced: AtomicU64,
    /// Appends refused because the queue was full.
    pub queue_full: AtomicU64,
    /// Segments created.
    pub segments_created: AtomicU64,
    /// Segments deleted by retention or compaction.
    pub segments_deleted: AtomicU64,
    /// Records copied forward by compaction.
    pub records_compacted: AtomicU64,
    /// The segment appends currently go to.
    pub active_segment: AtomicU64,
    /// 1 while the last write or sync failed, 0 once one succeeds again.
    pub failing: AtomicU64,
}

impl JournalStats {
    pub(crate) fn batch(&self, records: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_records_max.fetch_max(records, Ordering::Relaxed);
        let bucket = (u64::BITS - records.saturating_sub(1).leading_zeros()) as usize;
        if let Some(b) = self.batch_hist.get(bucket.min(BATCH_BUCKETS - 1)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn fsync(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_nanos_total.fetch_add(nanos, Ordering::Relaxed);
        self.fsync_nanos_max.fetch_max(nanos, Ordering::Relaxed);
        if let Some(m) = self.sink.get() {
            m.fsync_latency.observe(took);
        }
    }

    /// Mean `fdatasync` latency so far.
    pub(crate) fn mean_fsync(&self) -> Duration {
        let n = self.fsyncs.load(Ordering::Relaxed).max(1);
        Duration::from_nanos(self.fsync_nanos_total.load(Ordering::Relaxed) / n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_buckets() {
        let s = JournalStats::default();
        for n in [1, 2, 3, 4, 5, 1 << 20] {
            s.batch(n);
        }
        let h: Vec<u64> = s
            .batch_hist
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(&h[..4], &[1, 1, 2, 1]);
        assert_eq!(h[BATCH_BUCKETS - 1], 1);
        assert_eq!(s.batch_records_max.load(Ordering::Relaxed), 1 << 20);
    }
}
