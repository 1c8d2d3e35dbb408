//! Concurrent reads of records by [`Location`], through read-only maps of segments.
//!
//! Segment files are never truncated or shrunk after creation (recovery repairs a torn
//! tail by writing zeros, retention unlinks whole files), so a map never outlives the
//! bytes behind it and cannot fault with SIGBUS. An unlinked file stays mapped until
//! the last reader drops its `Arc<Mmap>`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use memmap2::Mmap;

use super::error::JournalError;
use super::frontier::Frontier;
use super::location::Location;
use super::record::{Decoded, Record, RecordRef, decode, is_journal_kind};
use super::segment::{SEGMENT_HEADER_LEN, segment_path};

/// Maps a whole segment file read-only.
pub(crate) fn map_segment(path: &Path) -> std::io::Result<Mmap> {
    let file = File::open(path)?;
    // SAFETY: the journal never truncates or shrinks a segment file, and never rewrites
    // bytes that hold a valid record; readers only look at records already written
    // (their locations came from a completed write), so the mapped bytes they read do
    // not change underneath them. Bytes past the write position may change, and are
    // only ever read through `decode`, which copies nothing it has not CRC-checked.
    unsafe { Mmap::map(&file) }
}

/// The live segments and their maps; written by the writer (add/remove), read by
/// readers.
#[derive(Debug)]
pub(crate) struct Segments {
    dir: PathBuf,
    maps: RwLock<BTreeMap<u32, Option<Arc<Mmap>>>>,
}

impl Segments {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            maps: RwLock::new(BTreeMap::new()),
        }
    }

    /// Registers a live segment, optionally with a map already made.
    pub(crate) fn add(&self, segment: u32, map: Option<Arc<Mmap>>) {
        self.maps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(segment, map);
    }

    /// Forgets a segment about to be deleted; readers get `SegmentGone` from now on.
    pub(crate) fn remove(&self, segment: u32) {
        self.maps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&segment);
    }

    /// The first live segment numbered `from` or later.
    pub(crate) fn first_from(&self, from: u32) -> Option<u32> {
        self.maps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .range(from..)
            .next()
            .map(|(n, _)| *n)
    }

    /// The map of a live segment, made on first use.
    pub(crate) fn map(&self, segment: u32) -> Result<Arc<Mmap>, JournalError> {
        if let Some(entry) = self
            .maps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&segment)
        {
            if let Some(map) = entry {
                return Ok(map.clone());
            }
        } else {
            return Err(JournalError::SegmentGone(segment));
        }
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = maps.get_mut(&segment) else {
            return Err(JournalError::SegmentGone(segment));
        };
        if let Some(map) = entry {
            return Ok(map.clone());
        }
        let map = map_segment(&segment_path(&self.dir, segment))
            .map(Arc::new)
            .map_err(|source| JournalError::Segment { segment, source })?;
        *entry = Some(map.clone());
        Ok(map)
    }
}

/// Reads records by location; cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub(crate) struct JournalReader {
    pub(crate) segments: Arc<Segments>,
    /// Where the committed records end (the outbox reads only before it).
    pub(crate) frontier: Arc<Frontier>,
}

/// What [`JournalReader::step_with`] found at a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step<T> {
    /// A record (what the callback made of it) and where the next one starts.
    Record(T, Location),
    /// A record of the journal's own (seal, filler), skipped: the next one's location.
    Skip(Location),
    /// The end of the segment's written part.
    End,
}

/// Where the records of segment `segment` start.
pub(crate) fn segment_start(segment: u32) -> Location {
    Location {
        segment,
        offset: SEGMENT_HEADER_LEN as u32,
    }
}

impl JournalReader {
    /// Copies out the record at `at`.
    pub(crate) fn read(&self, at: Location) -> Result<Record, JournalError> {
        self.read_with(at, |r| r.to_record())
    }

    /// Calls `f` with the record at `at`, borrowed from the map (no copy).
    pub(crate) fn read_with<T>(
        &self,
        at: Location,
        f: impl FnOnce(RecordRef<'_>) -> T,
    ) -> Result<T, JournalError> {
        let map = self.segments.map(at.segment)?;
        let bad = || JournalError::BadLocation {
            segment: at.segment,
            offset: at.offset,
        };
        let bytes = map.get(at.offset as usize..).ok_or_else(bad)?;
        match decode(bytes) {
            Decoded::Record(r, _) => Ok(f(r)),
            Decoded::End | Decoded::Invalid => Err(bad()),
        }
    }

    /// Reads the record at `at` for a reader that walks the journal in order: the
    /// record (through `f`) and where the next one starts, a journal record to skip,
    /// or the end of the segment. `at` must be a record boundary the caller reached
    /// from a segment's start (only committed bytes: see [`Frontier`]).
    pub(crate) fn step_with<T>(
        &self,
        at: Location,
        f: impl FnOnce(RecordRef<'_>) -> T,
    ) -> Result<Step<T>, JournalError> {
        let map = self.segments.map(at.segment)?;
        let Some(bytes) = map.get(at.offset as usize..) else {
            return Ok(Step::End);
        };
        match decode(bytes) {
            Decoded::Record(r, len) => {
                let next = Location {
                    segment: at.segment,
                    offset: at.offset.saturating_add(len as u32),
                };
                Ok(if is_journal_kind(r.kind) {
                    Step::Skip(next)
                } else {
                    Step::Record(f(r), next)
                })
            }
            Decoded::End => Ok(Step::End),
            Decoded::Invalid => Err(JournalError::BadLocation {
                segment: at.segment,
                offset: at.offset,
            }),
        }
    }

    /// The first live segment numbered `from` or later (segments before it were
    /// deleted by retention, or never existed).
    pub(crate) fn first_segment_from(&self, from: u32) -> Option<u32> {
        self.segments.first_from(from)
    }

    /// Reads several records in order, taking each segment's map once per run.
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "used by tests; retention uses copy_forward + delete_segments"
        )
    )]
    pub(crate) fn read_many(&self, at: &[Location]) -> Result<Vec<Record>, JournalError> {
        let mut out = Vec::with_capacity(at.len());
        let mut current: Option<(u32, Arc<Mmap>)> = None;
        for &loc in at {
            let map = match &current {
                Some((s, m)) if *s == loc.segment => m.clone(),
                _ => {
                    let m = self.segments.map(loc.segment)?;
                    current = Some((loc.segment, m.clone()));
                    m
                }
            };
            let bad = || JournalError::BadLocation {
                segment: loc.segment,
                offset: loc.offset,
            };
            match map.get(loc.offset as usize..).map(decode) {
                Some(Decoded::Record(r, _)) => out.push(r.to_record()),
                _ => return Err(bad()),
            }
        }
        Ok(out)
    }
}
