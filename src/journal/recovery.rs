//! Recovery at open: scan every segment in order, hand each valid record to the caller,
//! repair a torn tail of the last segment, report the rest.
//!
//! Policy:
//! - The last segment ends at its first invalid frame. Everything from there to the
//!   last non-zero byte is overwritten with zeros and synced, so appends continue right
//!   after the last valid record and no stale frame can reappear behind them later.
//! - A segment before the last was synced when it was sealed, so an invalid frame there
//!   is real damage (bit rot, tampering), not a crash. Recovery keeps the records before
//!   it, skips the rest of that segment, logs an error and counts it in
//!   `corrupt_segments`/`skipped_bytes`; the daemon still starts.
//! - A segment whose header is unreadable is renamed to `*.seg.corrupt` and counted.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memmap2::Mmap;

use super::error::JournalError;
use super::reader::{Location, map_segment};
use super::record::{Decoded, RecordRef, decode};
use super::segment::{
    CORRUPT_SUFFIX, Faults, SEGMENT_HEADER_LEN, SegmentFile, SegmentHeader, list_segments,
    segment_path,
};

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RecoveryStats {
    /// Segments scanned.
    pub segments: u32,
    /// Valid records handed to the caller.
    pub records: u64,
    /// Framed bytes of those records.
    pub bytes: u64,
    /// Bytes zeroed after the last valid record of the last segment (a torn tail).
    pub bytes_truncated: u64,
    /// Segments with a bad header or damage before their end.
    pub corrupt_segments: u32,
    /// Bytes skipped in corrupt segments.
    pub skipped_bytes: u64,
    /// Wall time of the scan.
    pub elapsed: Duration,
}

/// What one segment holds, for retention decisions. May over-approximate (a record
/// counted here whose write then failed is not on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    /// Segment number.
    pub segment: u32,
    /// Appends currently go here; it cannot be deleted or compacted.
    pub active: bool,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// Records in the segment.
    pub records: u64,
    /// Smallest record `time_ms` (`u64::MAX` when empty).
    pub first_time_ms: u64,
    /// Largest record `time_ms` (0 when empty).
    pub last_time_ms: u64,
    /// Conversations with at least one record here.
    pub conversations: HashSet<u64>,
}

impl SegmentSummary {
    pub(crate) fn new(segment: u32, created_ms: u64) -> Self {
        Self {
            segment,
            active: false,
            created_ms,
            records: 0,
            first_time_ms: u64::MAX,
            last_time_ms: 0,
            conversations: HashSet::new(),
        }
    }

    pub(crate) fn add(&mut self, conversation: u64, time_ms: u64) {
        self.records += 1;
        self.first_time_ms = self.first_time_ms.min(time_ms);
        self.last_time_ms = self.last_time_ms.max(time_ms);
        self.conversations.insert(conversation);
    }
}

/// The state the writer starts from.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Every live segment's summary.
    pub summaries: BTreeMap<u32, SegmentSummary>,
    /// Maps made during the scan, handed to the reader.
    pub maps: Vec<(u32, Arc<Mmap>)>,
    /// Live segments without a usable map (the reader maps them on first use).
    pub unmapped: Vec<u32>,
    /// The last segment to append to: (number, write position, size), if usable.
    pub tail: Option<(u32, u64, u64)>,
    /// The number the next new segment gets.
    pub next_segment: u32,
}

/// Scans `dir`, calling `visit` for every valid record in order.
pub(crate) fn recover(
    dir: &Path,
    visit: &mut dyn FnMut(RecordRef<'_>, Location),
) -> Result<(Recovered, RecoveryStats), JournalError> {
    let started = Instant::now();
    let dir_err = |source| JournalError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    let list = list_segments(dir).map_err(dir_err)?;
    let mut out = Recovered {
        next_segment: list.last().map_or(1, |n| n.saturating_add(1)),
        ..Recovered::default()
    };
    let mut stats = RecoveryStats::default();
    let last = list.last().copied();
    for n in list {
        stats.segments += 1;
        let path = segment_path(dir, n);
        let map =
            map_segment(&path).map_err(|source| JournalError::Segment { segment: n, source })?;
        let header = SegmentHeader::decode(&map).and_then(|h| {
            if h.segment != n || h.segment_bytes < map.len() as u64 {
                Err("segment number or size disagrees with the file")
            } else {
                Ok(h)
            }
        });
        let header = match header {
            Ok(h) => h,
            Err(reason) => {
                tracing::error!(segment = n, reason, "journal segment unreadable; set aside");
                stats.corrupt_segments += 1;
                stats.skipped_bytes += map.len() as u64;
                drop(map);
                let mut aside = path.clone().into_os_string();
                aside.push(CORRUPT_SUFFIX.trim_start_matches(".seg"));
                fs::rename(&path, &aside).map_err(dir_err)?;
                continue;
            }
        };
        let mut summary = SegmentSummary::new(n, header.created_ms);
        let mut off = SEGMENT_HEADER_LEN;
        let mut torn = false;
        while let Some(rest) = map.get(off..) {
            match decode(rest) {
                Decoded::Record(r, len) => {
                    visit(
                        r,
                        Location {
                            segment: n,
                            offset: off as u32,
                        },
                    );
                    summary.add(r.conversation, r.time_ms);
                    stats.records += 1;
                    stats.bytes += len as u64;
                    off += len;
                }
                Decoded::End => break,
                Decoded::Invalid => {
                    torn = true;
                    break;
                }
            }
        }
        let garbage = map
            .get(off..)
            .and_then(last_nonzero)
            .map_or(0, |end| end + 1);
        // A file cut short (never done by the journal itself) counts as a torn tail.
        let short = (map.len() as u64) < header.segment_bytes;
        if Some(n) == last {
            if garbage > 0 {
                keep_torn_bytes(dir, n, map.get(off..off + garbage).unwrap_or_default());
            }
            if garbage > 0 || short {
                repair_tail(
                    dir,
                    n,
                    header.segment_bytes,
                    off as u64,
                    garbage as u64,
                    short,
                )?;
                stats.bytes_truncated = garbage as u64;
                tracing::warn!(
                    segment = n,
                    offset = off,
                    bytes = garbage,
                    short,
                    "journal torn tail truncated"
                );
            }
            summary.active = true;
            out.tail = Some((n, off as u64, header.segment_bytes));
            if short {
                // The scan's map is too short for the regrown file: readers map afresh.
                out.summaries.insert(n, summary);
                out.unmapped.push(n);
                continue;
            }
        } else if torn || short {
            tracing::error!(
                segment = n,
                offset = off,
                bytes = garbage,
                "journal segment damaged; rest of it skipped"
            );
            stats.corrupt_segments += 1;
            stats.skipped_bytes += garbage as u64;
        }
        out.summaries.insert(n, summary);
        out.maps.push((n, Arc::new(map)));
    }
    stats.elapsed = started.elapsed();
    Ok((out, stats))
}

/// Index of the last non-zero byte.
fn last_nonzero(b: &[u8]) -> Option<usize> {
    const STEP: usize = 4096;
    let mut end = b.len();
    while end > 0 {
        let start = end.saturating_sub(STEP);
        let chunk = b.get(start..end)?;
        if chunk.iter().any(|&x| x != 0) {
            return chunk.iter().rposition(|&x| x != 0).map(|i| start + i);
        }
        end = start;
    }
    None
}

/// Saves the bytes about to be zeroed as `<segment>.seg.torn` for inspection (a torn
/// tail is expected after a crash; damage in the middle of the last segment is not,
/// and this keeps it recoverable by hand). Best effort: a failure is only logged.
fn keep_torn_bytes(dir: &Path, n: u32, bytes: &[u8]) {
    let mut path = segment_path(dir, n).into_os_string();
    path.push(".torn");
    if let Err(e) = fs::write(&path, bytes) {
        tracing::warn!(segment = n, error = %e, "could not save the journal's torn tail");
    }
}

/// Writes zeros over `[off, off + len)` of segment `n`, regrows it to `size` if it
/// was cut `short`, and syncs.
fn repair_tail(
    dir: &Path,
    n: u32,
    size: u64,
    off: u64,
    len: u64,
    short: bool,
) -> Result<(), JournalError> {
    let seg_err = |source| JournalError::Segment { segment: n, source };
    let file = SegmentFile::open(dir, n, size, Faults::default()).map_err(seg_err)?;
    if short {
        file.restore_len().map_err(seg_err)?;
    }
    let zeros = vec![0u8; 1 << 20];
    let mut at = off;
    let end = off + len;
    while at < end {
        let step = (end - at).min(zeros.len() as u64);
        file.write_at(zeros.get(..step as usize).unwrap_or_default(), at)
            .map_err(seg_err)?;
        at += step;
    }
    file.sync().map_err(seg_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_nonzero_finds_the_end() {
        assert_eq!(last_nonzero(&[]), None);
        assert_eq!(last_nonzero(&[0; 10000]), None);
        let mut b = vec![0u8; 10000];
        b[5000] = 1;
        assert_eq!(last_nonzero(&b), Some(5000));
        b[9999] = 1;
        assert_eq!(last_nonzero(&b), Some(9999));
        b[0] = 1;
        assert_eq!(last_nonzero(&b[..4000]), Some(0));
    }
}
