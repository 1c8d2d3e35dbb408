//! Segment files: naming, the 64-byte header, creation with preallocation, and the
//! file operations the writer uses (behind a fault-injection hook for tests).
//!
//! Header layout (little-endian):
//!
//! ```text
//! 0   [u8; 8] magic "SWBDJRNL"
//! 8   u32 format version
//! 12  u32 header length (64)
//! 16  u32 segment number
//! 20  u32 reserved, zero
//! 24  u64 created, ms since the Unix epoch
//! 32  u64 segment size in bytes (the file's length)
//! 40  [u8; 20] reserved, zero
//! 60  u32 crc32c of bytes 0..60
//! ```

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

/// Bytes in a segment header; records start right after it.
pub(crate) const SEGMENT_HEADER_LEN: usize = 64;
/// On-disk format version, written in every segment header.
pub(crate) const FORMAT_VERSION: u32 = 2;
/// The oldest format version still read: version 1 segments have no seal record.
pub(crate) const OLDEST_VERSION: u32 = 1;
const MAGIC: [u8; 8] = *b"SWBDJRNL";
const SUFFIX: &str = ".seg";
const TMP_SUFFIX: &str = ".seg.tmp";

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// Segment number (also in the file name).
    pub segment: u32,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// The file's length in bytes.
    pub segment_bytes: u64,
    /// Format version (what the segment was written with).
    pub version: u32,
}

impl SegmentHeader {
    /// The 64 header bytes.
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut h = [0u8; SEGMENT_HEADER_LEN];
        let fields: [(usize, &[u8]); 6] = [
            (0, &MAGIC),
            (8, &self.version.to_le_bytes()),
            (12, &(SEGMENT_HEADER_LEN as u32).to_le_bytes()),
            (16, &self.segment.to_le_bytes()),
            (24, &self.created_ms.to_le_bytes()),
            (32, &self.segment_bytes.to_le_bytes()),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = h.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        let crc = crc32c::crc32c(h.get(..60).unwrap_or_default());
        if let Some(dst) = h.get_mut(60..) {
            dst.copy_from_slice(&crc.to_le_bytes());
        }
        h
    }

    /// Parses and checks a header.
    pub(crate) fn decode(b: &[u8]) -> Result<Self, &'static str> {
        let h = b
            .first_chunk::<SEGMENT_HEADER_LEN>()
            .ok_or("file too short")?;
        let u32_at = |at: usize| {
            h.get(at..at + 4)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        let u64_at = |at: usize| {
            h.get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        if h.get(..8) != Some(&MAGIC[..]) {
            return Err("bad magic");
        }
        if crc32c::crc32c(h.get(..60).unwrap_or_default()) != u32_at(60) {
            return Err("header checksum mismatch");
        }
        let version = u32_at(8);
        if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err("unsupported format version");
        }
        if u32_at(12) as usize != SEGMENT_HEADER_LEN {
            return Err("unexpected header length");
        }
        Ok(Self {
            segment: u32_at(16),
            created_ms: u64_at(24),
            segment_bytes: u64_at(32),
            version,
        })
    }
}

/// `<dir>/<segment, 10 digits>.seg`.
pub(crate) fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:010}{SUFFIX}"))
}

/// The segment numbers present in `dir`, ascending. With `remove_tmp`, leftover
/// temporary files of an interrupted creation are removed.
pub(crate) fn list_segments(dir: &Path, remove_tmp: bool) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            if remove_tmp {
                fs::remove_file(entry.path())?;
            }
        } else if let Some(n) = name
            .strip_suffix(SUFFIX)
            .and_then(|s| s.parse::<u32>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Allocates blocks for the first `len` bytes of `file` (zeros, size at least `len`).
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: `file` is an open descriptor borrowed for the whole call;
    // posix_fallocate only reads its integer arguments.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Makes renames and unlinks in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Test hook: makes the next file operations fail with a chosen errno. Cloned into the
/// writer; inert (one relaxed load per operation) unless a test arms it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults(Option<Arc<FaultState>>);

/// Armed failures; an errno of 0 means "do not fail".
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    /// Errno for positioned writes.
    pub write_errno: AtomicI32,
    /// Whether a failing write first writes half of its buffer (a torn write).
    pub write_partial: AtomicBool,
    /// Writes that still succeed before `write_errno` takes effect.
    pub write_skip: AtomicU32,
    /// Errno for `fdatasync`.
    pub sync_errno: AtomicI32,
    /// Errno for segment creation (preallocation).
    pub create_errno: AtomicI32,
}

impl Faults {
    /// A hook tests can arm.
    #[cfg(test)]
    pub(crate) fn armed() -> (Self, Arc<FaultState>) {
        let state = Arc::new(FaultState::default());
        (Self(Some(state.clone())), state)
    }

    fn get(&self, pick: impl Fn(&FaultState) -> &AtomicI32) -> Option<io::Error> {
        let state = self.0.as_ref()?;
        match pick(state).load(Ordering::Relaxed) {
            0 => None,
            errno => Some(io::Error::from_raw_os_error(errno)),
        }
    }

    /// Whether an armed write failure is still held back by `write_skip`.
    fn skip_write(&self) -> bool {
        self.0.as_ref().is_some_and(|s| {
            s.write_skip
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        })
    }

    fn partial(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|s| s.write_partial.load(Ordering::Relaxed))
    }
}

/// An open segment the writer appends to.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    /// Segment number.
    pub segment: u32,
    /// The file's length.
    pub segment_bytes: u64,
    /// Its format version (a version 1 segment is appended to without a seal).
    pub version: u32,
    file: File,
    faults: Faults,
}

impl SegmentFile {
    /// Creates segment `segment` in `dir`: a temporary file is preallocated with
    /// `posix_fallocate` (so a full disk fails here, not in the middle of a later
    /// write), given its header, synced, then renamed into place.
    pub(crate) fn create(
        dir: &Path,
        segment: u32,
        segment_bytes: u64,
        created_ms: u64,
        faults: Faults,
    ) -> io::Result<Self> {
        if let Some(e) = faults.get(|s| &s.create_errno) {
            return Err(e);
        }
        let tmp = dir.join(format!("{segment:010}{TMP_SUFFIX}"));
        let result = (|| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            preallocate(&file, segment_bytes)?;
            let header = SegmentHeader {
                segment,
                created_ms,
                segment_bytes,
                version: FORMAT_VERSION,
            };
            file.write_all_at(&header.encode(), 0)?;
            file.sync_data()?;
            fs::rename(&tmp, segment_path(dir, segment))?;
            sync_dir(dir)?;
            Ok(file)
        })();
        match result {
            Ok(file) => Ok(Self {
                segment,
                segment_bytes,
                version: FORMAT_VERSION,
                file,
                faults,
            }),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Opens an existing segment for appending (recovery of the last segment) or
    /// repair.
    pub(crate) fn open(
        dir: &Path,
        segment: u32,
        segment_bytes: u64,
        faults: Faults,
    ) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(segment_path(dir, segment))?;
        Ok(Self {
            segment,
            segment_bytes,
            version: FORMAT_VERSION,
            file,
            faults,
        })
    }

    /// Bytes records may fill: all of it but room for the seal record (none in a
    /// version 1 segment).
    pub(crate) fn capacity(&self) -> u64 {
        if self.version >= 2 {
            self.segment_bytes
                .saturating_sub(super::record::SEAL_FRAME as u64)
        } else {
            self.segment_bytes
        }
    }

    /// Grows a file that was cut short back to its full, preallocated size (a file is
    /// never shrunk by the journal, but an operator or a test may have done it).
    pub(crate) fn restore_len(&self) -> io::Result<()> {
        self.file.set_len(self.segment_bytes)?;
        preallocate(&self.file, self.segment_bytes)?;
        self.file.sync_all()
    }

    /// Writes all of `buf` at `offset`.
    pub(crate) fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if let Some(e) = self
            .faults
            .get(|s| &s.write_errno)
            .filter(|_| !self.faults.skip_write())
        {
            if self.faults.partial() {
                let half = buf.get(..buf.len() / 2).unwrap_or_default();
                self.file.write_all_at(half, offset)?;
            }
            return Err(e);
        }
        self.file.write_all_at(buf, offset)
    }

    /// Reads into `buf` at `offset`, as much as the file holds; returns the bytes read.
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut got = 0;
        while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
            match self.file.read_at(rest, offset + got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        Ok(got)
    }

    /// The file's current length (shorter than `segment_bytes` if it was cut).
    pub(crate) fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// `fdatasync`.
    pub(crate) fn sync(&self) -> io::Result<()> {
        if let Some(e) = self.faults.get(|s| &s.sync_errno) {
            return Err(e);
        }
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_checks() {
        let h = SegmentHeader {
            segment: 42,
            created_ms: 1_700_000_000_123,
            segment_bytes: 1 << 20,
            version: FORMAT_VERSION,
        };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        assert!(SegmentHeader::decode(&b[..10]).is_err());
        b[17] ^= 1;
        assert!(SegmentHeader::decode(&b).is_err());
    }

    #[test]
    fn create_preallocates_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let f = SegmentFile::create(dir.path(), 3, 65536, 5, Faults::default()).unwrap();
        assert_eq!(
            fs::metadata(segment_path(dir.path(), 3)).unwrap().len(),
            65536
        );
        f.write_at(b"x", 100).unwrap();
        f.sync().unwrap();
        fs::write(dir.path().join("0000000009.seg.tmp"), b"junk").unwrap();
        SegmentFile::create(dir.path(), 1, 65536, 5, Faults::default()).unwrap();
        assert_eq!(list_segments(dir.path(), true).unwrap(), vec![1, 3]);
        assert!(!dir.path().join("0000000009.seg.tmp").exists());
    }
}
