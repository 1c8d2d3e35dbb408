//! The `[journal]` configuration section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::JournalError;
use super::record::{SEAL_FRAME, frame_len};
use super::segment::SEGMENT_HEADER_LEN;

/// When appended records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// An append is acknowledged only after `fdatasync` covers it; concurrent appends
    /// share one sync (group commit). Nothing acknowledged is lost on a crash.
    #[default]
    Always,
    /// An append is acknowledged once written to the page cache; the writer syncs every
    /// `fsync_interval`. A machine crash (not a process crash) may lose up to one
    /// interval of acknowledged records.
    Interval,
    /// Never sync except when a segment is sealed; the OS decides. A machine crash may
    /// lose any acknowledged record not yet written back.
    Never,
}

/// What the daemon does when recovery finds damage (`journal.on_damage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDamage {
    /// Refuse to start, naming every damaged range and what it would cost
    /// (`switchboard journal check` prints the same; `switchboard journal salvage`
    /// repairs offline).
    #[default]
    Refuse,
    /// Start anyway: keep every valid record, record each hole as a gap entry in its
    /// conversation, reserve the numbers that may have been used, cover the damaged
    /// bytes (saved aside first) and log it all at ERROR.
    Salvage,
}

/// Journal settings; embedded in the daemon's configuration as `[journal]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Keep conversations in the journal (default `true`). Off: transcripts live in
    /// memory only, each its newest 32 entries (older ones are forgotten), and are
    /// lost at restart (benchmarks of the routing path alone).
    pub enabled: bool,
    /// Size of each preallocated segment file, in bytes. Default 64 MiB; at most 4 GiB,
    /// a multiple of 8 and large enough for one record of `max_record_bytes`.
    pub segment_bytes: u64,
    /// Largest record body, in bytes. Default 72 KiB. The daemon's configuration
    /// requires at least the largest record a valid message makes (65,879 bytes: a
    /// 65,536-byte `Send` body from a 256-byte user id), so every message the protocol
    /// accepts can be stored (`crate::config::MIN_JOURNAL_RECORD_BYTES`).
    pub max_record_bytes: u32,
    /// Durability policy: `always` (default), `interval` or `never`.
    pub fsync: FsyncPolicy,
    /// Sync period for `fsync = "interval"`. Default 10 ms.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// Appends (submissions) that may wait for the writer; a full queue refuses new
    /// appends with a retryable error. Default 16,384.
    pub queue_depth: usize,
    /// Bytes the writer encodes before issuing one positioned write; bounds the writer's
    /// buffer. Default 4 MiB.
    pub max_batch_bytes: usize,
    /// Group-commit batches one worker shard may have submitted and not yet answered.
    /// More than one lets a change go to the writer's next fsync at once instead of
    /// waiting for the shard's previous batch first. At the bound the next batch keeps
    /// filling (`switchboard_journal_inflight_full_total`). Default 4; 1 is the old
    /// one-at-a-time behaviour.
    pub max_inflight_batches: usize,
    /// Records a reconnecting client may be replayed before it is told to use
    /// `History` instead (read by the conversation layer). Default 1,000.
    pub max_replay: u32,
    /// Closed conversations older than this are dropped by retention (read by the
    /// conversation layer). Default 30 days.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// What to do when recovery finds damage: `refuse` (default) or `salvage`.
    pub on_damage: OnDamage,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            segment_bytes: 64 * 1024 * 1024,
            max_record_bytes: 72 * 1024,
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_millis(10),
            queue_depth: 16_384,
            max_batch_bytes: 4 * 1024 * 1024,
            max_inflight_batches: 4,
            max_replay: 1_000,
            retention: Duration::from_secs(30 * 24 * 3600),
            on_damage: OnDamage::Refuse,
        }
    }
}

impl JournalConfig {
    /// Checks the ranges the engine relies on.
    pub(crate) fn validate(&self) -> Result<(), JournalError> {
        let invalid = |key: &'static str, reason: String| Err(JournalError::Config { key, reason });
        if self.max_record_bytes == 0 {
            return invalid("journal.max_record_bytes", "must be at least 1".into());
        }
        let min_segment =
            (SEGMENT_HEADER_LEN + frame_len(self.max_record_bytes as usize) + SEAL_FRAME) as u64;
        if self.segment_bytes < min_segment {
            return invalid(
                "journal.segment_bytes",
                format!("must hold one record of max_record_bytes: at least {min_segment}"),
            );
        }
        if self.segment_bytes > u64::from(u32::MAX) || !self.segment_bytes.is_multiple_of(8) {
            return invalid(
                "journal.segment_bytes",
                "must be a multiple of 8, at most 4 GiB".into(),
            );
        }
        if self.queue_depth == 0 {
            return invalid("journal.queue_depth", "must be at least 1".into());
        }
        if self.max_inflight_batches == 0 {
            return invalid("journal.max_inflight_batches", "must be at least 1".into());
        }
        if self.max_batch_bytes == 0 {
            return invalid("journal.max_batch_bytes", "must be at least 1".into());
        }
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval.is_zero() {
            return invalid(
                "journal.fsync_interval",
                "must be positive with fsync = \"interval\"".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrapper {
        journal: JournalConfig,
    }

    #[test]
    fn parses_and_defaults() {
        let w: Wrapper = toml::from_str(
            "[journal]\nfsync = \"interval\"\nfsync_interval = \"5ms\"\nsegment_bytes = 1048576\n",
        )
        .unwrap();
        assert_eq!(w.journal.fsync, FsyncPolicy::Interval);
        assert_eq!(w.journal.fsync_interval, Duration::from_millis(5));
        assert_eq!(w.journal.segment_bytes, 1 << 20);
        assert_eq!(w.journal.queue_depth, JournalConfig::default().queue_depth);
        w.journal.validate().unwrap();
        JournalConfig::default().validate().unwrap();
    }

    #[test]
    fn rejects_unknown_and_out_of_range() {
        assert!(toml::from_str::<Wrapper>("[journal]\nbogus = 1\n").is_err());
        let cfg = JournalConfig {
            segment_bytes: 1000,
            ..JournalConfig::default()
        };
        assert!(cfg.validate().is_err());
        let cfg = JournalConfig {
            fsync: FsyncPolicy::Interval,
            fsync_interval: Duration::ZERO,
            ..JournalConfig::default()
        };
        assert!(cfg.validate().is_err());
    }
}
