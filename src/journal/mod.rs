//! The journal: the durable, append-only record of every conversation event.
//!
//! Records go into fixed-size, preallocated segment files in one directory. A single
//! writer thread owns the files: submitters hand it batches without blocking
//! ([`JournalHandle::append`]), it writes everything queued with positioned writes and
//! shares one `fdatasync` among them (group commit), then answers each submitter with
//! the [`Location`] of every record. [`JournalReader`] reads records back through
//! read-only maps from any thread. [`Journal::open`] recovers first: it hands every
//! valid record to the caller in order and repairs a torn tail.
//!
//! The on-disk format and the durability rules are in `proto-spec/JOURNAL.md`.

pub(crate) mod bench;
mod config;
mod damage;
mod error;
mod frontier;
mod location;
mod reader;
mod record;
mod recovery;
mod segment;
mod stats;
mod writer;

#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

pub use config::{FsyncPolicy, JournalConfig, OnDamage};
pub(crate) use damage::{Damage, DamagedRange};
pub(crate) use error::{AppendError, DiskError, JournalError};
pub(crate) use frontier::Frontier;
pub(crate) use location::Location;
pub(crate) use reader::{JournalReader, Step, segment_start};
pub(crate) use record::{Record, RecordRef};
pub(crate) use recovery::{RecoveryStats, SegmentSummary};
#[cfg(test)]
pub(crate) use segment::FaultState;
pub(crate) use segment::Faults;
pub(crate) use stats::JournalStats;
pub(crate) use writer::{Committed, JournalHandle};

use reader::Segments;

/// Bytes of a record's header on disk (before the body).
pub(crate) const RECORD_HEADER_BYTES: usize = record::RECORD_HEADER_LEN;

/// The record frame at the start of `bytes`, and its length (fuzzing).
pub(crate) fn decode_frame(bytes: &[u8]) -> Option<(RecordRef<'_>, usize)> {
    match record::decode(bytes) {
        record::Decoded::Record(r, len) => Some((r, len)),
        _ => None,
    }
}

/// Bytes a record with a body of `body_len` bytes takes on disk.
pub(crate) const fn frame_len(body_len: usize) -> usize {
    record::frame_len(body_len)
}

/// Appends the framed record (fuzzing).
pub(crate) fn encode_frame(buf: &mut Vec<u8>, r: &Record) {
    record::encode_into(buf, r);
}
use segment::SegmentFile;
use writer::Writer;

/// A running journal, as [`Journal::open`] returns it.
#[derive(Debug)]
pub(crate) struct Journal {
    /// Submits appends and retention requests; clone one per worker.
    pub handle: JournalHandle,
    /// Reads records by location; clone freely.
    pub reader: JournalReader,
    /// What recovery found.
    pub recovery: RecoveryStats,
    /// The writer thread; it ends after [`JournalHandle::shutdown`] or when every
    /// handle is dropped, syncing first.
    pub writer: JoinHandle<()>,
}

/// A journal directory that has been scanned but not started: it holds the directory
/// lock, and nothing in it has been changed yet (see [`Journal::scan`]).
#[derive(Debug)]
pub(crate) struct Scanned {
    dir: std::path::PathBuf,
    lock: File,
    recovered: recovery::Recovered,
    /// What the scan found, damage included.
    pub stats: RecoveryStats,
}

/// What a read-only look at a journal directory found ([`Journal::inspect`]).
#[derive(Debug)]
pub(crate) struct Inspection {
    /// What the scan found, damage included.
    pub stats: RecoveryStats,
    /// Another process (a running daemon) holds the directory lock: its last segment
    /// may be changing while it is read.
    pub in_use: bool,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, calls `visit` for every valid
    /// record in order (borrowed from the segment maps), then starts the writer thread.
    /// Refuses a damaged journal ([`JournalError::Damaged`]); the daemon uses
    /// [`Journal::scan`] and [`Journal::start`] to decide itself.
    pub(crate) fn open(
        dir: &Path,
        cfg: &JournalConfig,
        visit: impl FnMut(RecordRef<'_>, Location),
    ) -> Result<Self, JournalError> {
        Self::open_with_faults(dir, cfg, Faults::default(), visit)
    }

    /// [`Journal::open`] with a fault-injection hook on the writer's file operations.
    pub(crate) fn open_with_faults(
        dir: &Path,
        cfg: &JournalConfig,
        faults: Faults,
        visit: impl FnMut(RecordRef<'_>, Location),
    ) -> Result<Self, JournalError> {
        let scanned = Self::scan(dir, cfg, visit)?;
        if !scanned.stats.damage.is_empty() {
            return Err(JournalError::Damaged(scanned.stats.damage));
        }
        Self::start(scanned, cfg, faults)
    }

    /// Locks `dir` (creating it if needed) and scans it, calling `visit` for every
    /// valid record in journal order. Changes nothing but removing leftover temporary
    /// files of an interrupted segment creation.
    pub(crate) fn scan(
        dir: &Path,
        cfg: &JournalConfig,
        mut visit: impl FnMut(RecordRef<'_>, Location),
    ) -> Result<Scanned, JournalError> {
        cfg.validate()?;
        fs::create_dir_all(dir).map_err(|source| JournalError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let lock = lock_dir(dir)?;
        let list = segment::list_segments(dir, true).map_err(|source| JournalError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let (recovered, stats) =
            recovery::scan(dir, list, cfg.max_record_bytes as usize, &mut visit)?;
        Ok(Scanned {
            dir: dir.to_path_buf(),
            lock,
            recovered,
            stats,
        })
    }

    /// Scans `dir` without changing anything in it and without needing its lock (so it
    /// can look at the journal of a running daemon).
    pub(crate) fn inspect(
        dir: &Path,
        cfg: &JournalConfig,
        mut visit: impl FnMut(RecordRef<'_>, Location),
    ) -> Result<Inspection, JournalError> {
        let dir_err = |source| JournalError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        let list = segment::list_segments(dir, false).map_err(dir_err)?;
        let in_use = held_elsewhere(dir);
        let (_, stats) = recovery::scan(dir, list, cfg.max_record_bytes as usize, &mut visit)?;
        Ok(Inspection { stats, in_use })
    }

    /// Starts a scanned journal: zeros a torn tail of the last segment (keeping a copy),
    /// then starts the writer. Damage the scan found stays as it is until
    /// [`JournalHandle::fill`] covers it.
    pub(crate) fn start(
        scanned: Scanned,
        cfg: &JournalConfig,
        faults: Faults,
    ) -> Result<Self, JournalError> {
        let Scanned {
            dir,
            lock,
            recovered,
            stats: recovery,
        } = scanned;
        let dir = dir.as_path();
        if let Some(torn) = &recovered.torn {
            recovery::repair_tail(dir, torn)?;
        }
        let segments = Arc::new(Segments::new(dir.to_path_buf()));
        for (n, map) in recovered.maps {
            segments.add(n, Some(map));
        }
        for n in recovered.unmapped {
            segments.add(n, None);
        }
        let stats = Arc::new(JournalStats::default());
        let mut summaries = recovered.summaries;
        let mut next_segment = recovered.next_segment;
        let (active, write_pos) = match recovered.tail {
            Some((n, pos, size)) => {
                let file = SegmentFile::open(dir, n, size, faults.clone())
                    .map_err(|source| JournalError::Segment { segment: n, source })?;
                (file, pos)
            }
            None => {
                let n = next_segment;
                let created = crate::clock::unix_ms().get();
                let file = SegmentFile::create(dir, n, cfg.segment_bytes, created, faults.clone())
                    .map_err(|source| JournalError::Segment { segment: n, source })?;
                next_segment = n.saturating_add(1);
                let mut summary = SegmentSummary::new(n, created);
                summary.active = true;
                summaries.insert(n, summary);
                segments.add(n, None);
                stats
                    .segments_created
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (file, segment::SEGMENT_HEADER_LEN as u64)
            }
        };
        stats.active_segment.store(
            u64::from(active.segment),
            std::sync::atomic::Ordering::Relaxed,
        );
        // The daemon logs the recovery with the state it rebuilt (`recovery.rs`).
        tracing::debug!(
            segments = recovery.segments,
            records = recovery.records,
            bytes_truncated = recovery.bytes_truncated,
            damaged_ranges = recovery.damage.len(),
            elapsed_ms = recovery.elapsed.as_secs_f64() * 1000.0,
            "journal scanned"
        );
        let (tx, rx) = crate::queue::bounded(cfg.queue_depth);
        // What recovery kept is on disk: committed as far as this process can know.
        let frontier = Arc::new(Frontier::default());
        frontier.publish(Location {
            segment: active.segment,
            offset: write_pos as u32,
        });
        let writer = Writer {
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
            faults,
            stats: stats.clone(),
            segments: segments.clone(),
            summaries,
            active,
            write_pos,
            dirty_end: write_pos,
            next_segment,
            buf: Vec::with_capacity(cfg.max_batch_bytes.min(64 << 20) + (1 << 16)),
            unsynced: false,
            sealed: false,
            last_sync: Instant::now(),
            frontier: frontier.clone(),
            _lock: lock,
        };
        let writer = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| JournalError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Self {
            handle: JournalHandle::new(tx, cfg, stats),
            reader: JournalReader { segments, frontier },
            recovery,
            writer,
        })
    }
}

/// Whether another process holds `<dir>/LOCK` (opened read-only: nothing is created).
fn held_elsewhere(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join("LOCK")) else {
        return false;
    };
    // SAFETY: `file` is an open descriptor we own; flock takes only integers. The
    // lock, if taken, goes with the descriptor when `file` is dropped.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// Takes an exclusive `flock` on `<dir>/LOCK`, so two daemons never share a journal.
fn lock_dir(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join("LOCK");
    let file = recovery::lock_file(dir)?;
    // SAFETY: `file` is an open descriptor we own; flock takes only integers.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(JournalError::Locked(dir.to_path_buf()));
        }
        return Err(JournalError::Dir { path, source: err });
    }
    Ok(file)
}
