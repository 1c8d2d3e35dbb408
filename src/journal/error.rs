//! The journal's typed errors.

use std::io;
use std::path::PathBuf;

/// A disk failure that hit an append batch. Retryable: nothing already written was
/// harmed, and a later append may succeed once the disk recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DiskError {
    /// The file system is full (ENOSPC or EDQUOT), usually seen when a new segment is
    /// preallocated.
    #[error("journal disk is full")]
    NoSpace,
    /// Any other I/O failure; carries the OS error number (0 when there is none).
    #[error("journal I/O error (os error {0})")]
    Io(i32),
    /// Not written: a write or sync failed after the submitter's last take-back, so
    /// the batches this one follows may be lost ([`super::JournalHandle::append_fenced`]).
    #[error("journal append refused: an earlier append failed")]
    Fenced,
}

impl DiskError {
    /// Classifies an I/O error.
    pub(crate) fn from_io(e: &io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Self::NoSpace,
            Some(n) => Self::Io(n),
            None => Self::Io(0),
        }
    }
}

/// Why the journal could not be opened, read or maintained.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JournalError {
    /// The journal directory (or its lock file) could not be used.
    #[error("journal directory {path}: {source}")]
    Dir {
        /// The directory or file involved.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Another process holds the journal directory's lock.
    #[error("journal directory {0} is locked by another process")]
    Locked(PathBuf),
    /// A segment file could not be created, opened, mapped or repaired.
    #[error("journal segment {segment}: {source}")]
    Segment {
        /// Segment number.
        segment: u32,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A configuration value is out of range.
    #[error("invalid value for `{key}`: {reason}")]
    Config {
        /// Dotted key, e.g. `journal.segment_bytes`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The segment was deleted by retention or compaction.
    #[error("journal segment {0} is gone (retired)")]
    SegmentGone(u32),
    /// No valid record lives at that location.
    #[error("no valid journal record at segment {segment} offset {offset}")]
    BadLocation {
        /// Segment number.
        segment: u32,
        /// Byte offset inside the segment.
        offset: u32,
    },
    /// The active segment cannot be deleted or compacted.
    #[error("journal segment {0} is the active segment")]
    ActiveSegment(u32),
    /// Copying records forward hit a disk failure.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The writer thread has stopped.
    #[error("journal writer has stopped")]
    Closed,
    /// An append was refused before it reached the writer.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The scan found damage (ranges in journal order) and the caller asked for a
    /// clean journal.
    #[error("journal damaged: {}", list_ranges(.0))]
    Damaged(Vec<super::damage::DamagedRange>),
}

fn list_ranges(ranges: &[super::damage::DamagedRange]) -> String {
    let v: Vec<String> = ranges.iter().map(ToString::to_string).collect();
    v.join("; ")
}

/// Why an append was refused before it reached the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AppendError {
    /// The submission queue (`journal.queue_depth`) is full: retry later.
    #[error("journal submission queue is full")]
    QueueFull,
    /// A record body exceeds `journal.max_record_bytes`.
    #[error("journal record body of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Body length offered.
        len: usize,
        /// The configured limit.
        max: u32,
    },
    /// One submission's records together exceed what a segment holds (a submission
    /// is never split across segments).
    #[error("journal submission of {bytes} framed bytes exceeds a segment's {max}")]
    BatchTooLarge {
        /// Framed bytes of the submission.
        bytes: u64,
        /// Record space in one segment.
        max: u64,
    },
    /// The writer thread has stopped.
    #[error("journal writer has stopped")]
    Closed,
}
