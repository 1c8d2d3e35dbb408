//! Recovery at open: scan every segment in order, hand each valid record to the caller,
//! and tell a torn tail from damage.
//!
//! Policy (`proto-spec/JOURNAL.md` §4):
//! - Invalid bytes with a valid record after them, anywhere, are *damage*: the scan
//!   resynchronises on the next valid record (every CRC-valid record is handed on) and
//!   reports the range. So are invalid bytes up to the end of the written part of a
//!   segment before the last (it was synced when sealed), an unreadable segment header
//!   and a segment file cut short. The journal never decides what damage costs: the
//!   caller refuses to start or salvages ([`super::writer::JournalHandle::fill`]).
//! - Invalid bytes at the end of the last segment with nothing valid after them are a
//!   *torn tail*: zeroed (after a copy to `N.seg.torn`) when the journal starts, so
//!   appends continue right after the last valid record.
//! - Filler records (written by salvage over damaged ranges) are skipped.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memmap2::Mmap;

use super::damage::{Damage, DamagedRange};
use super::error::JournalError;
use super::location::Location;
use super::reader::map_segment;
use super::record::{
    Decoded, RECORD_ALIGN, RECORD_HEADER_LEN, RecordRef, SEAL_KIND, decode, is_journal_kind,
};
use super::segment::{Faults, SEGMENT_HEADER_LEN, SegmentFile, SegmentHeader, segment_path};

/// Resynchronisation never takes a frame with a longer body than this (or than
/// `journal.max_record_bytes`, if larger) for a record: it bounds the checksum work one
/// candidate costs inside damaged bytes.
const RESYNC_MIN_BODY_CAP: usize = 1 << 20;

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RecoveryStats {
    /// Segments scanned.
    pub segments: u32,
    /// Valid records handed to the caller.
    pub records: u64,
    /// Framed bytes of those records.
    pub bytes: u64,
    /// Bytes after the last valid record of the last segment (a torn tail), zeroed when
    /// the journal starts.
    pub bytes_truncated: u64,
    /// Every damaged range, in journal order.
    pub damage: Vec<DamagedRange>,
    /// Wall time of the scan.
    pub elapsed: Duration,
}

impl RecoveryStats {
    /// Bytes in damaged ranges.
    pub(crate) fn damaged_bytes(&self) -> u64 {
        self.damage.iter().map(|d| d.len).sum()
    }
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
    /// The torn tail to zero before appending, if any.
    pub torn: Option<TornTail>,
    /// The number the next new segment gets.
    pub next_segment: u32,
}

/// The end of the last segment after its last valid record: zeroed at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TornTail {
    /// Segment number.
    pub segment: u32,
    /// Where the torn bytes start (appends continue here).
    pub offset: u64,
    /// Bytes to zero (up to the last non-zero byte).
    pub len: u64,
    /// The segment's size per its header.
    pub size: u64,
    /// The file was shorter than `size` (grow it back).
    pub short: bool,
}

/// The outcome of walking one segment's records.
#[derive(Debug, Default)]
struct Walk {
    /// Just after the last valid record (where appends would continue).
    end: usize,
    /// Damaged ranges `[start, end)` with a valid record after each.
    bad: Vec<(usize, usize)>,
    /// Invalid bytes `[start, end)` after the last valid record, up to the last
    /// non-zero byte (rounded up to 8).
    trailing: Option<(usize, usize)>,
    /// The last valid record is a seal record.
    sealed: bool,
}

/// Scans `dir`, calling `visit` for every valid record in journal order. Read-only:
/// nothing in the directory changes. `max_body` bounds what resynchronisation takes for
/// a record (see [`RESYNC_MIN_BODY_CAP`]).
pub(crate) fn scan(
    dir: &Path,
    segment_list: Vec<u32>,
    max_body: usize,
    visit: &mut dyn FnMut(RecordRef<'_>, Location),
) -> Result<(Recovered, RecoveryStats), JournalError> {
    let started = Instant::now();
    let mut out = Recovered {
        next_segment: segment_list.last().map_or(1, |n| n.saturating_add(1)),
        ..Recovered::default()
    };
    let mut stats = RecoveryStats::default();
    let last = segment_list.last().copied();
    let cap = max_body.max(RESYNC_MIN_BODY_CAP);
    for n in segment_list {
        stats.segments += 1;
        let path = segment_path(dir, n);
        let seg_err = |source| JournalError::Segment { segment: n, source };
        let file = File::open(&path).map_err(seg_err)?;
        let map = map_segment(&path).map_err(seg_err)?;
        let header = SegmentHeader::decode(&map).and_then(|h| {
            if h.segment != n || h.segment_bytes < map.len() as u64 {
                Err("segment number or size disagrees with the file")
            } else {
                Ok(h)
            }
        });
        let (created_ms, size, version) = match header {
            Ok(h) => (h.created_ms, h.segment_bytes, Some(h.version)),
            Err(reason) => {
                tracing::error!(segment = n, reason, "journal segment header unreadable");
                let len = (map.len() as u64).min(SEGMENT_HEADER_LEN as u64);
                stats.damage.push(DamagedRange {
                    segment: n,
                    offset: 0,
                    len: len.next_multiple_of(RECORD_ALIGN as u64),
                    what: Damage::Header,
                });
                (0, map.len() as u64, None)
            }
        };
        let header_ok = version.is_some();
        let mut summary = SegmentSummary::new(n, created_ms);
        let walk = walk(
            &map,
            cap,
            &|from| data_end(&map, &file, from),
            &mut |r, off| {
                visit(
                    r,
                    Location {
                        segment: n,
                        offset: off as u32,
                    },
                );
                summary.add(r.conversation, r.time_ms);
                stats.records += 1;
            },
        );
        stats.bytes += summary_bytes(&map, &walk);
        release_pages(&map, &file);
        for &(start, end) in &walk.bad {
            stats.damage.push(DamagedRange {
                segment: n,
                offset: start as u64,
                len: (end - start) as u64,
                what: Damage::Records,
            });
        }
        let short = (map.len() as u64) < size;
        // Since version 2 a sealed segment ends with its seal record: without it, its
        // end went missing (zeroed, cut), even if what is left reads cleanly.
        let unsealed = version.is_some_and(|v| v >= 2) && !walk.sealed;
        if Some(n) == last && header_ok {
            let garbage = walk
                .trailing
                .map_or(0, |(s, e)| (e.min(map.len()) - s) as u64);
            if garbage > 0 || short {
                out.torn = Some(TornTail {
                    segment: n,
                    offset: walk.end as u64,
                    len: garbage,
                    size,
                    short,
                });
                stats.bytes_truncated = garbage;
            }
            if walk.sealed && walk.trailing.is_none() && !short {
                // Sealed, then the process stopped before the next segment existed:
                // appends go to a new one.
                out.summaries.insert(n, summary);
                out.maps.push((n, Arc::new(map)));
                continue;
            }
            summary.active = true;
            out.tail = Some((n, walk.end as u64, size));
            if short {
                // The scan's map is too short for the regrown file: readers map afresh.
                out.summaries.insert(n, summary);
                out.unmapped.push(n);
                continue;
            }
        } else if walk.trailing.is_some() || short || unsealed {
            // A sealed segment was complete on disk: what is missing from its end,
            // or unreadable there, held records.
            let start = match walk.trailing {
                Some((s, _)) => s,
                None if unsealed => walk.end,
                None => map.len(),
            } as u64;
            let end = if short || unsealed {
                size
            } else {
                walk.trailing.map_or(start, |(_, e)| e as u64)
            };
            stats.damage.push(DamagedRange {
                segment: n,
                offset: start,
                len: end.saturating_sub(start),
                what: Damage::Trailing,
            });
        }
        out.summaries.insert(n, summary);
        out.maps.push((n, Arc::new(map)));
    }
    stats
        .damage
        .sort_by_key(|d| (d.segment, d.offset, d.what != Damage::Header));
    for d in &stats.damage {
        tracing::error!(
            segment = d.segment,
            offset = d.offset,
            len = d.len,
            what = d.what.name(),
            "journal damage found"
        );
    }
    stats.elapsed = started.elapsed();
    Ok((out, stats))
}

/// Framed bytes of the valid records a walk found: everything from the header to the
/// end of the last valid record, minus the damaged ranges inside it.
fn summary_bytes(map: &[u8], walk: &Walk) -> u64 {
    let records = walk.end.min(map.len()).saturating_sub(SEGMENT_HEADER_LEN) as u64;
    let bad: u64 = walk.bad.iter().map(|(s, e)| (e - s) as u64).sum();
    records.saturating_sub(bad)
}

/// One past the last non-zero byte of `map` at or after `from` (`from` if none), by
/// reading all of it.
fn last_nonzero_after(map: &[u8], from: usize) -> usize {
    let rest = map.get(from..).unwrap_or_default();
    from + rest.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// [`last_nonzero_after`], reading only the parts of the file that hold data: a
/// preallocated segment's unwritten extents read as zeros and `SEEK_DATA` skips them,
/// so the scan does not fault in (and keep resident) the empty rest of every segment.
/// Falls back to reading everything where the file system cannot tell.
fn data_end(map: &Mmap, file: &File, from: usize) -> usize {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let len = map.len();
    let mut end = from;
    let mut pos = from;
    while pos < len {
        let Ok(at) = libc::off_t::try_from(pos) else {
            return last_nonzero_after(map, from);
        };
        // SAFETY: lseek on a descriptor we own only moves its file offset (which
        // nothing else uses: the scan reads through the map).
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break; // no data after `pos`
            }
            return last_nonzero_after(map, from);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let (Ok(d), Ok(h)) = (usize::try_from(data), usize::try_from(hole)) else {
            return last_nonzero_after(map, from);
        };
        let (d, h) = (d.max(pos).min(len), h.min(len));
        if h <= d {
            break;
        }
        // No read-around while looking for data in what is mostly zeros: pages it
        // would bring in make the file system report the next extent as data too.
        let page = d & !4095;
        let _ = map.advise_range(memmap2::Advice::Random, page, h - page);
        if let Some(i) = map.get(d..h).and_then(|b| b.iter().rposition(|&x| x != 0)) {
            end = d + i + 1;
        }
        pos = h;
    }
    end
}

/// Gives the scanned pages of a segment back: our page table entries go (the process's
/// resident set shrinks) and the kernel may drop the clean page cache. Readers fault
/// the records they need in again from the file. Best effort.
fn release_pages(map: &Mmap, file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: `map` is a read-only shared mapping of a file: MADV_DONTNEED only drops
    // this process's page table entries, and the next access faults the same bytes in
    // from the file again (nothing is zeroed, unlike for private or anonymous maps).
    let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
    // SAFETY: posix_fadvise takes a descriptor we own and integers; it is only advice.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// Walks a segment's records from the end of its header, calling `each` with every
/// valid record that is not a filler and its offset. Invalid bytes (or zeros with
/// non-zero bytes after them) start a damaged range that ends at the next valid frame
/// (searched on every 8-byte boundary at least one header further on); with none, they
/// are the segment's trailing garbage.
fn walk(
    map: &[u8],
    cap: usize,
    data_end: &dyn Fn(usize) -> usize,
    each: &mut dyn FnMut(RecordRef<'_>, usize),
) -> Walk {
    let mut w = Walk {
        end: SEGMENT_HEADER_LEN,
        ..Walk::default()
    };
    let mut off = SEGMENT_HEADER_LEN;
    // One past the last non-zero byte of the segment, computed when first needed.
    let mut limit: Option<usize> = None;
    while let Some(rest) = map.get(off..) {
        match decode(rest) {
            Decoded::Record(r, len) => {
                if !is_journal_kind(r.kind) {
                    each(r, off);
                }
                w.sealed = r.kind == SEAL_KIND;
                off += len;
                w.end = off;
                continue;
            }
            // Past its seal record a sealed segment holds nothing: no need to read
            // the (preallocated, empty) rest.
            Decoded::End if w.sealed => break,
            Decoded::End | Decoded::Invalid => {}
        }
        let lim = *limit.get_or_insert_with(|| data_end(off));
        if lim <= off {
            break; // zeros to the end: the written part is over
        }
        match resync(map, off + RECORD_HEADER_LEN, lim, cap) {
            Some(next) => {
                w.bad.push((off, next));
                off = next;
            }
            None => {
                w.trailing = Some((off, lim.next_multiple_of(RECORD_ALIGN)));
                break;
            }
        }
    }
    w
}

/// The first offset in `[from, limit)` on an 8-byte boundary where a valid record
/// (with a body of at most `cap` bytes) starts.
fn resync(map: &[u8], from: usize, limit: usize, cap: usize) -> Option<usize> {
    let mut at = from.next_multiple_of(RECORD_ALIGN);
    while at < limit {
        let rest = map.get(at..)?;
        if let Some(len) = rest.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok())
            && u32::from_le_bytes(len) as usize <= cap
            && let Decoded::Record(..) = decode(rest)
        {
            return Some(at);
        }
        at += RECORD_ALIGN;
    }
    None
}

/// Whether a segment's records end with a seal record (the format version its
/// header should say, when salvage writes a new one: 2 if so, else 1).
pub(crate) fn ends_sealed(map: &[u8], max_body: usize) -> bool {
    let end = |from| last_nonzero_after(map, from);
    walk(map, max_body.max(RESYNC_MIN_BODY_CAP), &end, &mut |_, _| {}).sealed
}

/// Zeros the torn tail of the last segment (first saving its bytes to
/// `<segment>.seg.torn`), grows a file that was cut short back to its size, and syncs.
pub(crate) fn repair_tail(dir: &Path, t: &TornTail) -> Result<(), JournalError> {
    let n = t.segment;
    let seg_err = |source| JournalError::Segment { segment: n, source };
    let file = SegmentFile::open(dir, n, t.size, Faults::default()).map_err(seg_err)?;
    if t.len > 0 {
        keep_bytes(dir, n, ".torn", &file, t.offset, t.len);
    }
    if t.short {
        file.restore_len().map_err(seg_err)?;
    }
    write_zeros(&file, t.offset, t.len).map_err(seg_err)?;
    file.sync().map_err(seg_err)?;
    tracing::warn!(
        segment = n,
        offset = t.offset,
        bytes = t.len,
        short = t.short,
        "journal torn tail truncated"
    );
    Ok(())
}

/// Writes zeros over `[off, off + len)`.
pub(crate) fn write_zeros(file: &SegmentFile, off: u64, len: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; (len.min(1 << 20)) as usize];
    let mut at = off;
    let end = off + len;
    while at < end {
        let step = (end - at).min(zeros.len() as u64);
        file.write_at(zeros.get(..step as usize).unwrap_or_default(), at)?;
        at += step;
    }
    Ok(())
}

/// Saves `[off, off + len)` of segment `n` as `<segment>.seg<suffix>` for inspection
/// before recovery or salvage overwrites it. Best effort: a failure is only logged.
pub(crate) fn keep_bytes(dir: &Path, n: u32, suffix: &str, file: &SegmentFile, off: u64, len: u64) {
    let mut path = segment_path(dir, n).into_os_string();
    path.push(suffix);
    let path = PathBuf::from(path);
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let read = file.read_at(&mut bytes, off);
    let result = read.and_then(|got| fs::write(&path, bytes.get(..got).unwrap_or_default()));
    if let Err(e) = result {
        tracing::warn!(segment = n, path = %path.display(), error = %e, "could not save journal bytes before overwriting them");
    }
}

/// Opens `<dir>/LOCK`, creating it.
pub(crate) fn lock_file(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join("LOCK");
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| JournalError::Dir { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{FILLER_KIND, Record, encode_into};

    fn segment(records: &[Record], size: usize) -> Vec<u8> {
        let mut b = vec![0u8; SEGMENT_HEADER_LEN];
        for r in records {
            encode_into(&mut b, r);
        }
        b.resize(size, 0);
        b
    }

    fn rec(seq: u64, body: usize) -> Record {
        Record {
            conversation: 1,
            seq,
            time_ms: 5,
            kind: 2,
            body: vec![b'x'; body].into(),
        }
    }

    fn seqs(map: &[u8]) -> (Vec<u64>, Walk) {
        let mut got = Vec::new();
        let end = |from| last_nonzero_after(map, from);
        let w = walk(map, 1 << 20, &end, &mut |r, _| got.push(r.seq));
        (got, w)
    }

    #[test]
    fn a_clean_segment_walks_to_its_end() {
        let records: Vec<Record> = (1..=5).map(|s| rec(s, 30)).collect();
        let map = segment(&records, 4096);
        let (got, w) = seqs(&map);
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
        assert!(w.bad.is_empty() && w.trailing.is_none());
        assert_eq!(w.end, SEGMENT_HEADER_LEN + 5 * 72);
    }

    #[test]
    fn a_flipped_byte_is_one_damaged_range_and_the_rest_is_read() {
        let records: Vec<Record> = (1..=5).map(|s| rec(s, 30)).collect();
        let clean = segment(&records, 4096);
        // Header and body (the padding after them is not checked).
        for at in SEGMENT_HEADER_LEN + 72..SEGMENT_HEADER_LEN + 72 + 70 {
            let mut map = clean.clone();
            map[at] ^= 0x20;
            let (got, w) = seqs(&map);
            assert_eq!(got, vec![1, 3, 4, 5], "flip at {at}");
            assert_eq!(
                w.bad,
                vec![(SEGMENT_HEADER_LEN + 72, SEGMENT_HEADER_LEN + 144)]
            );
            assert!(w.trailing.is_none());
        }
    }

    #[test]
    fn zeros_with_records_after_them_are_damage_not_the_end() {
        let records: Vec<Record> = (1..=100).map(|s| rec(s, 100)).collect();
        let mut map = segment(&records, 16384);
        map[4096..8192].fill(0);
        let (got, w) = seqs(&map);
        assert_eq!(w.bad.len(), 1);
        let (s, e) = w.bad[0];
        assert!(s <= 4096 && e >= 8192, "{s}..{e}");
        // Every record wholly outside the zeroed page is there.
        let frame = 144;
        let expect: Vec<u64> = (1..=100u64)
            .filter(|&q| {
                let start = SEGMENT_HEADER_LEN + (q as usize - 1) * frame;
                start + frame <= 4096 || start >= 8192
            })
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn garbage_at_the_end_is_trailing() {
        let records: Vec<Record> = (1..=3).map(|s| rec(s, 30)).collect();
        let mut map = segment(&records, 4096);
        let end = SEGMENT_HEADER_LEN + 3 * 72;
        map[end + 13] = 7;
        let (got, w) = seqs(&map);
        assert_eq!(got, vec![1, 2, 3]);
        assert_eq!(w.trailing, Some((end, end + 16)));
        assert_eq!(w.end, end);
    }

    #[test]
    fn a_seal_record_is_skipped_and_noted() {
        let records: Vec<Record> = (1..=3).map(|s| rec(s, 30)).collect();
        let mut map = segment(&records, 4096);
        let end = SEGMENT_HEADER_LEN + 3 * 72;
        let (_, w) = seqs(&map);
        assert!(!w.sealed);
        let seal = crate::journal::record::seal(3, 1);
        map[end..end + seal.len()].copy_from_slice(&seal);
        let (got, w) = seqs(&map);
        assert_eq!(got, vec![1, 2, 3]);
        assert!(w.sealed);
        assert!(ends_sealed(&map, 0));
    }

    #[test]
    fn fillers_are_skipped() {
        let mut records: Vec<Record> = (1..=3).map(|s| rec(s, 30)).collect();
        records.insert(
            1,
            Record {
                conversation: 0,
                seq: 0,
                time_ms: 0,
                kind: FILLER_KIND,
                body: vec![0; 64].into(),
            },
        );
        let (got, w) = seqs(&segment(&records, 4096));
        assert_eq!(got, vec![1, 2, 3]);
        assert!(w.bad.is_empty());
    }

    #[test]
    fn resync_ignores_huge_lengths() {
        let mut map = vec![0u8; 256];
        map[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(resync(&map, 0, 256, 1 << 20), None);
    }
}
