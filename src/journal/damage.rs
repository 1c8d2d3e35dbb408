//! Damage that recovery found: which bytes of which segment, and of what kind.

use super::location::Location;

/// Bytes of one segment that recovery could not read as records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DamagedRange {
    /// Segment number.
    pub segment: u32,
    /// Byte offset of the first damaged byte (a multiple of 8).
    pub offset: u64,
    /// Length in bytes (a multiple of 8).
    pub len: u64,
    /// What kind of damage.
    pub what: Damage,
}

impl DamagedRange {
    /// Where the range starts, comparable with record locations (journal order).
    pub(crate) fn location(&self) -> Location {
        Location {
            segment: self.segment,
            offset: u32::try_from(self.offset).unwrap_or(u32::MAX),
        }
    }
}

/// The kinds of damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damage {
    /// The 64-byte segment header does not validate (the records behind it are still
    /// read, with the file's length as the segment size).
    Header,
    /// Invalid bytes with a valid record after them in the same segment.
    Records,
    /// Invalid (or missing: the file was cut short) bytes up to the end of the written
    /// part of a segment that is not the last one.
    Trailing,
}

impl Damage {
    /// A short name for reports and logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Damage::Header => "segment header unreadable",
            Damage::Records => "invalid bytes, valid records after them",
            Damage::Trailing => "invalid or missing bytes at the end of a sealed segment",
        }
    }
}

impl std::fmt::Display for DamagedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "segment {} offset {} length {} ({})",
            self.segment,
            self.offset,
            self.len,
            self.what.name()
        )
    }
}
