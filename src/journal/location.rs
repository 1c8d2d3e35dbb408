//! Where a record lives in the journal.

/// Where a record lives: segment number and byte offset of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Location {
    /// Segment number.
    pub segment: u32,
    /// Byte offset of the record's frame inside the segment.
    pub offset: u32,
}
