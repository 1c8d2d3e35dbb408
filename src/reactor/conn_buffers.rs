//! A connection's two buffers — the partial frame it is reading (`Spill`) and the
//! output the kernel has not taken (`OutQueue`) — at one word each while empty.
//!
//! An idle connection has neither, and a `Vec` (24 bytes) plus a `VecDeque` (32
//! bytes) in every slab slot cost 40 bytes more than two boxed pointers (the context
//! went from 136 to 104 bytes in a test build, alignment taking back 8; mio's stream
//! is 12 bytes smaller in a release build): ~4% of an idle authenticated session (README, "Memory per authenticated session"). The box
//! exists only while there is something in it, so a busy connection pays one small
//! allocation per spell of partial input or queued output on top of the buffer's own.

use std::collections::VecDeque;
use std::ops::Deref;

use bytes::Bytes;

/// Bytes of a frame (or HTTP head) that has not fully arrived; one null pointer
/// while empty. Reads go through `Deref` to a `Vec<u8>` (an empty static one when
/// there is nothing).
// The box is the point: one word in the slab slot instead of a `Vec`'s three.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub(crate) struct Spill(Option<Box<Vec<u8>>>);

/// What an empty [`Spill`] reads as.
static NO_SPILL: Vec<u8> = Vec::new();

impl Spill {
    /// Takes the bytes out, leaving it empty (and unallocated).
    pub fn take(&mut self) -> Vec<u8> {
        self.0.take().map(|b| *b).unwrap_or_default()
    }

    /// Keeps `bytes` (with their capacity), or nothing at all if they are empty.
    pub fn put(&mut self, bytes: Vec<u8>) {
        self.0 = if bytes.is_empty() {
            None
        } else {
            Some(Box::new(bytes))
        };
    }

    /// Appends `data`.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.0.get_or_insert_default().extend_from_slice(data);
        }
    }

    /// Drops the bytes and their storage.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

impl Deref for Spill {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        self.0.as_deref().unwrap_or(&NO_SPILL)
    }
}

/// Output the kernel has not taken yet; one null pointer while empty. Reads go
/// through `Deref` to a `VecDeque` (an empty static one when there is nothing).
// The box is the point: one word in the slab slot instead of a `VecDeque`'s four.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub(crate) struct OutQueue(Option<Box<VecDeque<Bytes>>>);

/// What an empty [`OutQueue`] reads as.
static NO_OUTPUT: VecDeque<Bytes> = VecDeque::new();

impl OutQueue {
    /// Appends `data`.
    pub fn push_back(&mut self, data: Bytes) {
        self.0.get_or_insert_default().push_back(data);
    }

    /// The first entry, to advance past bytes the kernel took.
    pub fn front_mut(&mut self) -> Option<&mut Bytes> {
        self.0.as_mut()?.front_mut()
    }

    /// Drops the first entry (the storage stays until [`OutQueue::clear`]).
    pub fn pop_front(&mut self) -> Option<Bytes> {
        self.0.as_mut()?.pop_front()
    }

    /// Keeps the first `len` entries.
    pub fn truncate(&mut self, len: usize) {
        if let Some(q) = self.0.as_mut() {
            q.truncate(len);
        }
    }

    /// The queue itself, for a backend to rewrite entries in place; created empty
    /// if there was none.
    pub fn deque_mut(&mut self) -> &mut VecDeque<Bytes> {
        self.0.get_or_insert_default()
    }

    /// Drops the entries and the storage: an idle connection owns nothing.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

impl Deref for OutQueue {
    type Target = VecDeque<Bytes>;

    fn deref(&self) -> &VecDeque<Bytes> {
        self.0.as_deref().unwrap_or(&NO_OUTPUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_is_one_word() {
        assert_eq!(std::mem::size_of::<Spill>(), 8);
        assert_eq!(std::mem::size_of::<OutQueue>(), 8);
    }

    #[test]
    fn spill_keeps_bytes_and_nothing_when_empty() {
        let mut s = Spill::default();
        assert!(s.is_empty() && s.0.is_none());
        s.extend_from_slice(b"");
        assert!(s.0.is_none(), "appending nothing allocates nothing");
        s.extend_from_slice(b"ab");
        s.extend_from_slice(b"cd");
        assert_eq!(&s[..], b"abcd");
        let v = s.take();
        assert_eq!(v, b"abcd");
        assert!(s.is_empty() && s.0.is_none());
        s.put(Vec::with_capacity(64));
        assert!(s.0.is_none(), "an empty buffer is not kept");
        s.put(b"xy".to_vec());
        assert_eq!(s.len(), 2);
        s.clear();
        assert!(s.0.is_none());
        assert!(s.take().is_empty());
    }

    #[test]
    fn out_queue_in_order_and_nothing_when_cleared() {
        let mut q = OutQueue::default();
        assert!(q.is_empty() && q.front_mut().is_none() && q.pop_front().is_none());
        q.truncate(0);
        assert!(q.0.is_none(), "truncating nothing allocates nothing");
        q.push_back(Bytes::from_static(b"one"));
        q.push_back(Bytes::from_static(b"two"));
        q.push_back(Bytes::from_static(b"three"));
        assert_eq!(q.len(), 3);
        if let Some(f) = q.front_mut() {
            *f = f.slice(1..);
        }
        assert_eq!(q.iter().map(Bytes::len).sum::<usize>(), 2 + 3 + 5);
        assert_eq!(q.pop_front().as_deref(), Some(&b"ne"[..]));
        q.truncate(1);
        assert_eq!(q.iter().collect::<Vec<_>>(), [&Bytes::from_static(b"two")]);
        q.deque_mut().push_back(Bytes::from_static(b"four"));
        assert_eq!(q.len(), 2);
        q.clear();
        assert!(q.is_empty() && q.0.is_none());
    }
}
