//! The provided-buffer ring: one pool of receive buffers per reactor that the kernel
//! picks from when data arrives for any multishot recv, so no connection owns one.
//!
//! Ownership of a buffer moves between the kernel and us:
//! - it belongs to the kernel while its entry is published in the ring (between the
//!   kernel's head and our tail);
//! - a completion with `IORING_CQE_F_BUFFER` hands it to us as a [`BufGuard`], a
//!   move-only token that is the only way to read the bytes or give it back;
//! - [`BufRing::recycle`] consumes the guard and republishes the entry, so an id is
//!   returned exactly once (the type system forbids a second return, and a guard
//!   dropped without recycling is logged as a leak, never a double publish).
//!
//! With incremental consumption (`IOU_PBUF_RING_INC`, Linux 6.12+) a receive takes
//! only the bytes it needs from the head buffer, and the next receive — of any
//! connection — continues in the same buffer: small messages pack into a few
//! buffers instead of taking one 8 KiB buffer each. A completion flagged
//! `IORING_CQE_F_BUF_MORE` lends us bytes of a buffer the kernel keeps (a guard
//! that is `kept`, whose recycling returns nothing); the buffer's last completion
//! hands it over. We track where each buffer's next bytes start.
//!
//! Not every buffer is published at once: the pool starts with a few and doubles
//! ([`BufRing::grow`]) whenever a receive found the ring empty. The ring hands
//! buffers out in ring order, so every published buffer gets written (at least its
//! first page) soon after it is published; publishing only what the load needs keeps
//! a quiet reactor's pool from becoming resident.
//!
//! Received bytes can also be **lent** ([`BufRing::lend`]): a `Bytes` pointing into
//! the buffer itself, which an echo connection queues and sends without copying.
//! Each buffer has a reference count: 1 while the kernel holds it (published, or
//! kept for more incremental receives), plus 1 per lent slice alive. The kernel's
//! handing over (a non-kept guard's [`BufRing::recycle`]) drops its reference; the
//! buffer is republished only when the count reaches zero, i.e. when its last lent
//! slice (held by a connection's queue or a send in flight) is dropped too. Slices
//! dropped later report their buffer through a shared list that
//! [`BufRing::reclaim`] empties. Lending stops while half the pool is held by lent
//! slices alone (the caller copies instead), so receives never starve.
//!
//! The entries are freed by [`BufRing::free`], which the backend calls after the
//! kernel can no longer touch them (see `teardown` in the parent module); the buffers
//! live in a [`Pool`] that lent slices share, freed when the last of them is gone.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use io_uring::cqueue;
use io_uring::types::BufRingEntry;

/// Page alignment the kernel requires for the entry ring.
const RING_ALIGN: usize = 4096;
/// Alignment of the buffer pool (what `calloc` guarantees).
const BUF_ALIGN: usize = 16;

/// A received buffer we own until [`BufRing::recycle`] takes it back.
#[derive(Debug)]
#[must_use = "a buffer id must be recycled into the ring"]
pub(super) struct BufGuard {
    bid: u16,
    /// Where this completion's bytes start in the buffer.
    off: u32,
    /// The kernel keeps the buffer (incremental consumption, more to come): these
    /// bytes are lent, and recycling the guard returns nothing.
    kept: bool,
}

impl BufGuard {
    /// Ownership of a whole buffer (its bytes start at 0).
    pub(super) fn from_completion(bid: u16) -> Self {
        Self {
            bid,
            off: 0,
            kept: false,
        }
    }

    /// The buffer id.
    #[cfg(test)]
    pub(super) fn bid(&self) -> u16 {
        self.bid
    }
}

impl Drop for BufGuard {
    fn drop(&mut self) {
        // Reached only when a guard is dropped instead of recycled: the buffer stays
        // out of the ring (a leak of one buffer), which is safe but shrinks the pool.
        tracing::error!(
            bid = self.bid,
            "io_uring receive buffer dropped without recycling"
        );
    }
}

/// The buffers' memory and reference counts, shared by the ring and every lent
/// slice: freed when the last of them is gone (or never, if leaked at teardown).
pub(super) struct Pool {
    base: NonNull<u8>,
    layout: Layout,
    /// Per buffer id: 1 while the kernel holds the buffer, plus one per lent slice.
    refs: Box<[AtomicU32]>,
    /// Buffers whose count a dropped slice took to zero, to republish.
    returned: Mutex<Vec<u16>>,
}

// SAFETY: the pool is a plain allocation plus atomics and a mutex; the raw base
// pointer is only read through (by `Lent`, for bytes no one writes while it lives)
// or freed in `Drop`, once, when no reference to the pool is left.
unsafe impl Send for Pool {}
// SAFETY: as above: shared access only reads the memory or uses the atomics/mutex.
unsafe impl Sync for Pool {}

impl Pool {
    /// A slice dropped its reference to buffer `bid`.
    fn release(&self, bid: u16) {
        if let Some(r) = self.refs.get(usize::from(bid))
            && r.fetch_sub(1, Ordering::AcqRel) == 1
        {
            self.returned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(bid);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: allocated in `BufRing::new` with this layout; the last reference is
        // going, so no slice reads it, and the ring released its reference only
        // after the kernel was done with the buffers (`BufRing::free`).
        unsafe { dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// Bytes of one receive, lent out of the pool as the owner of a `Bytes`.
struct Lent {
    pool: Arc<Pool>,
    bid: u16,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Lent` only reads its bytes (which nothing writes while it lives: the
// buffer is not republished until its count, which this holds, reaches zero) and
// releases its count atomically; nothing in it is tied to a thread.
unsafe impl Send for Lent {}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` lies inside the pool's allocation, which `pool`
        // keeps alive. The kernel wrote these bytes before the completion that lent
        // them and writes the buffer again only after it is republished, which waits
        // for this slice's reference to be released (in `Drop`); later incremental
        // receives into the same buffer land past these bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.pool.release(self.bid);
    }
}

/// Entries plus buffers, allocated once per reactor.
pub(super) struct BufRing {
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    /// The buffers (`bufs` is its base address).
    pool: Arc<Pool>,
    bufs: NonNull<u8>,
    count: u16,
    /// Buffers published so far (ids `0..published`); grows up to `count`.
    published: u16,
    /// Registered for incremental consumption.
    incremental: bool,
    /// Per buffer id: where the next completion's bytes start (incremental only).
    offsets: Vec<u32>,
    buf_len: u32,
    /// Our tail (free-running; the kernel masks it).
    tail: u16,
    /// Buffers currently handed to us (for tests and teardown sanity).
    out: usize,
    /// Of those, buffers the kernel handed over that wait for lent slices.
    held: usize,
    /// The entries were freed (`free`): dropping releases the pool normally.
    freed: bool,
}

impl std::fmt::Debug for BufRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufRing")
            .field("count", &self.count)
            .field("buf_len", &self.buf_len)
            .field("out", &self.out)
            .field("held", &self.held)
            .finish()
    }
}

impl BufRing {
    /// Allocates `count` (a power of two, ≤ 32768) buffers of `buf_len` bytes and
    /// publishes the first `initial` of them (at least one) to the kernel side of the
    /// ring; [`BufRing::grow`] publishes more.
    pub(super) fn new(count: u32, buf_len: u32, initial: u32) -> io::Result<Self> {
        let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_owned());
        if !count.is_power_of_two() || count > 32_768 || buf_len == 0 {
            return Err(invalid("uring_buffers must be a power of two <= 32768"));
        }
        let n = count as usize;
        let entries_layout = Layout::from_size_align(n * size_of::<BufRingEntry>(), RING_ALIGN)
            .map_err(|_| invalid("buffer ring layout"))?;
        // Buffers need no page alignment; the allocator's natural one lets a large
        // zeroed allocation come from fresh (lazily zeroed) pages instead of being
        // written, so an unused pool is not resident.
        let bufs_layout = Layout::from_size_align(n * buf_len as usize, BUF_ALIGN)
            .map_err(|_| invalid("buffer pool layout"))?;
        // SAFETY: both layouts have a non-zero size (count ≥ 1, buf_len ≥ 1).
        let entries = NonNull::new(unsafe { alloc_zeroed(entries_layout) }.cast::<BufRingEntry>())
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        // SAFETY: as above.
        let bufs = match NonNull::new(unsafe { alloc_zeroed(bufs_layout) }) {
            Some(b) => b,
            None => {
                // SAFETY: allocated just above with this layout, not shared with anyone.
                unsafe { dealloc(entries.as_ptr().cast(), entries_layout) };
                return Err(io::ErrorKind::OutOfMemory.into());
            }
        };
        let pool = Arc::new(Pool {
            base: bufs,
            layout: bufs_layout,
            refs: (0..n).map(|_| AtomicU32::new(0)).collect(),
            returned: Mutex::new(Vec::new()),
        });
        let mut ring = Self {
            entries,
            entries_layout,
            pool,
            bufs,
            // count ≤ 32768 was checked above.
            count: u16::try_from(count).unwrap_or(32_768),
            published: 0,
            incremental: false,
            offsets: vec![0; n],
            buf_len,
            tail: 0,
            out: 0,
            held: 0,
            freed: false,
        };
        ring.publish(u16::try_from(initial.clamp(1, count)).unwrap_or(1));
        Ok(ring)
    }

    /// Publishes more buffers (doubling the published pool, up to `count`); false when
    /// every buffer already is.
    pub(super) fn grow(&mut self) -> bool {
        if self.published >= self.count {
            return false;
        }
        self.publish(self.published.min(self.count - self.published));
        true
    }

    /// Addresses the buffers occupy: a `Bytes` pointing in here was lent.
    pub(super) fn range(&self) -> std::ops::Range<usize> {
        let start = self.bufs.as_ptr() as usize;
        start..start + self.pool.layout.size()
    }

    /// Buffers published so far.
    pub(super) fn published(&self) -> u16 {
        self.published
    }

    /// Publishes the next `n` never-published buffer ids.
    fn publish(&mut self, n: u16) {
        let (from, to) = (
            self.published,
            self.published.saturating_add(n).min(self.count),
        );
        self.published = to;
        for bid in from..to {
            // Counted as out so that `republish` balances it.
            self.out += 1;
            self.republish(bid);
        }
    }

    /// Address of the entry ring, for `register_buf_ring_with_flags`.
    pub(super) fn ring_addr(&self) -> u64 {
        self.entries.as_ptr() as u64
    }

    /// Number of entries.
    pub(super) fn count(&self) -> u16 {
        self.count
    }

    /// Records that the ring was registered with `IOU_PBUF_RING_INC`.
    pub(super) fn set_incremental(&mut self) {
        self.incremental = true;
    }

    /// The buffer `cqe` carries, if any (see [`BufRing::on_completion`]).
    pub(super) fn take(&mut self, cqe: &cqueue::Entry) -> Option<BufGuard> {
        let flags = cqe.flags();
        let len = u32::try_from(cqe.result()).unwrap_or(0);
        cqueue::buffer_select(flags)
            .map(|bid| self.on_completion(bid, len, cqueue::buffer_more(flags)))
    }

    /// The buffer a completion named, with `len` bytes received into it; `more` is
    /// the completion's `IORING_CQE_F_BUF_MORE` (the kernel keeps the buffer).
    /// Call once per completion carrying `IORING_CQE_F_BUFFER`.
    pub(super) fn on_completion(&mut self, bid: u16, len: u32, more: bool) -> BufGuard {
        let i = usize::from(bid) & (usize::from(self.count) - 1);
        let Some(at) = self.offsets.get_mut(i) else {
            return BufGuard::from_completion(bid);
        };
        let off = *at;
        if self.incremental && more {
            *at = off.saturating_add(len);
            BufGuard {
                bid,
                off,
                kept: true,
            }
        } else {
            *at = 0;
            self.out += 1;
            BufGuard {
                bid,
                off,
                kept: false,
            }
        }
    }

    /// Buffers currently owned by us rather than the kernel.
    pub(super) fn out(&self) -> usize {
        self.out
    }

    /// The `len` bytes the guard's completion received (clamped to the buffer).
    pub(super) fn data(&self, guard: &BufGuard, len: usize) -> &[u8] {
        let bid = usize::from(guard.bid) & (usize::from(self.count) - 1);
        let off = (guard.off as usize).min(self.buf_len as usize);
        let len = len.min(self.buf_len as usize - off);
        // SAFETY: `bid < count` and `off + len <= buf_len`, so the range lies inside
        // the pool allocation. The guard proves the kernel handed us these bytes and
        // has not got them back: an owned buffer is republished only after
        // `recycle` consumed the guard (and its lent slices are gone, see `lend`),
        // and this borrow of `self` rules out `recycle` meanwhile; a kept buffer's
        // later receives go past
        // `off + len`, never into it. So nothing writes them while the returned
        // borrow (tied to the guard) lives.
        unsafe {
            std::slice::from_raw_parts(
                self.bufs.as_ptr().add(bid * self.buf_len as usize + off),
                len,
            )
        }
    }

    /// Bytes of the guard's completion (`len`, clamped to the buffer) as a `Bytes`
    /// that points into the buffer itself; the buffer goes back to the kernel only
    /// once every such slice is dropped (see the module comment). `None` while half
    /// the pool is held by lent slices alone: the caller copies instead, so the
    /// buffers receives need keep coming back.
    pub(super) fn lend(&self, guard: &BufGuard, len: usize) -> Option<Bytes> {
        if self.held >= usize::from(self.count) / 2 {
            return None;
        }
        let data = self.data(guard, len);
        let bid = guard.bid & (self.count - 1);
        let ptr = NonNull::new(data.as_ptr().cast_mut())?;
        let r = self.pool.refs.get(usize::from(bid))?;
        // The guard stands for the kernel's reference (or, handed over, ours until
        // `recycle`), so the count is at least 1 here and the buffer cannot be
        // republished between this increment and the slice's drop.
        r.fetch_add(1, Ordering::AcqRel);
        Some(Bytes::from_owner(Lent {
            pool: Arc::clone(&self.pool),
            bid,
            ptr,
            len: data.len(),
        }))
    }

    /// Gives a buffer back to the kernel once nothing else holds it. A kept guard
    /// returns nothing: the kernel still holds that buffer. A handed-over one drops
    /// the kernel's reference; if lent slices of it are alive it waits for them
    /// ([`BufRing::reclaim`]), else it is republished now.
    pub(super) fn recycle(&mut self, guard: BufGuard) {
        let (bid, kept) = (guard.bid & (self.count - 1), guard.kept);
        std::mem::forget(guard);
        if kept {
            return;
        }
        let last = self
            .pool
            .refs
            .get(usize::from(bid))
            .is_none_or(|r| r.fetch_sub(1, Ordering::AcqRel) <= 1);
        if last {
            self.republish(bid);
        } else {
            self.held += 1;
        }
    }

    /// Republishes the buffers whose last lent slice was dropped since the last
    /// call; returns how many.
    pub(super) fn reclaim(&mut self) -> usize {
        let bids = std::mem::take(
            &mut *self
                .pool
                .returned
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for &bid in &bids {
            self.held = self.held.saturating_sub(1);
            self.republish(bid);
        }
        bids.len()
    }

    /// Buffers the kernel handed over that wait for lent slices to be dropped.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// Writes a buffer's entry at our tail and publishes the new tail: the kernel
    /// holds it again (its count is 1).
    fn republish(&mut self, bid: u16) {
        if let Some(r) = self.pool.refs.get(usize::from(bid)) {
            r.store(1, Ordering::Release);
        }
        let mask = usize::from(self.count) - 1;
        let idx = usize::from(self.tail) & mask;
        // SAFETY: `idx < count`, inside the entry allocation. The slot at our tail is
        // not visible to the kernel until the tail store below, so writing it races
        // with nothing. The address points into the pool, which outlives the
        // registration (the ring holds a reference until `free`).
        unsafe {
            let e = &mut *self.entries.as_ptr().add(idx);
            e.set_addr(
                self.bufs
                    .as_ptr()
                    .add(usize::from(bid) * self.buf_len as usize) as u64,
            );
            e.set_len(self.buf_len);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field overlays `resv` of entry 0, a properly aligned u16
        // inside the allocation; the kernel reads it with acquire semantics, so the
        // release store makes the entry written above visible first.
        unsafe {
            let tail = BufRingEntry::tail(self.entries.as_ptr()).cast_mut();
            (*tail.cast::<AtomicU16>()).store(self.tail, Ordering::Release);
        }
        self.out = self.out.saturating_sub(1);
    }

    /// Frees the entries and drops the ring's reference to the buffers (they are
    /// freed with the last lent slice).
    ///
    /// # Safety
    /// The kernel must no longer be able to use the ring: the buffer group was
    /// unregistered, or the io_uring instance was destroyed after every request that
    /// could select a buffer posted its final completion.
    pub(super) unsafe fn free(mut self) {
        // SAFETY: allocated in `new` with this layout; the caller guarantees the
        // kernel is done with it, and `self` is consumed so we cannot use it again.
        unsafe { dealloc(self.entries.as_ptr().cast(), self.entries_layout) };
        self.freed = true;
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.freed {
            return;
        }
        // Reached only when the ring could not be proven idle: leak the memory rather
        // than let the kernel write into freed pages (a pool reference that is never
        // released keeps the buffers alive).
        tracing::warn!(
            bytes = self.pool.layout.size(),
            "leaking the io_uring buffer pool (the kernel may still hold it)"
        );
        std::mem::forget(Arc::clone(&self.pool));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn tail_of(r: &BufRing) -> u16 {
        // SAFETY: (test) reads the published tail of a live ring.
        unsafe { *BufRingEntry::tail(r.entries.as_ptr()) }
    }

    fn entry(r: &BufRing, idx: usize) -> (u64, u32, u16) {
        // SAFETY: (test) idx is masked into the allocation.
        let e = unsafe { &*r.entries.as_ptr().add(idx & (usize::from(r.count) - 1)) };
        (e.addr(), e.len(), e.bid())
    }

    #[test]
    fn new_publishes_every_buffer_once() {
        let r = BufRing::new(8, 1024, 8).unwrap();
        assert_eq!(tail_of(&r), 8);
        assert_eq!(r.out(), 0);
        let base = r.bufs.as_ptr() as u64;
        for i in 0..8 {
            let (addr, len, bid) = entry(&r, i);
            assert_eq!(bid as usize, i);
            assert_eq!(len, 1024);
            assert_eq!(addr, base + i as u64 * 1024);
        }
        // SAFETY: (test) never registered with a kernel ring.
        unsafe { r.free() };
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(BufRing::new(3, 1024, 1).is_err());
        assert!(BufRing::new(65_536, 1024, 1).is_err());
        assert!(BufRing::new(4, 0, 1).is_err());
    }

    #[test]
    fn the_pool_starts_small_and_doubles_to_its_size() {
        let mut r = BufRing::new(16, 1024, 3).unwrap();
        assert_eq!((tail_of(&r), r.published(), r.out()), (3, 3, 0));
        assert!(r.grow());
        assert_eq!((tail_of(&r), r.published()), (6, 6));
        assert!(r.grow() && r.grow());
        assert_eq!(
            (tail_of(&r), r.published()),
            (16, 16),
            "capped at the pool size"
        );
        assert!(!r.grow());
        let bids: Vec<u16> = (0..16).map(|i| entry(&r, i).2).collect();
        assert_eq!(bids, (0..16).collect::<Vec<_>>(), "each id published once");
        assert_eq!(r.out(), 0);
        // SAFETY: (test) never registered with a kernel ring.
        unsafe { r.free() };
        let r = BufRing::new(4, 1024, 0).unwrap();
        assert_eq!(r.published(), 1, "at least one buffer");
        // SAFETY: (test) never registered.
        unsafe { r.free() };
    }

    #[test]
    fn data_reads_the_right_buffer() {
        let r = BufRing::new(4, 1024, 4).unwrap();
        // SAFETY: (test) no kernel involved; writing buffer 2 directly.
        unsafe { *r.bufs.as_ptr().add(2 * 1024) = 0xab };
        let mut r = r;
        let g = r.on_completion(2, 1, false);
        assert_eq!(r.data(&g, 1), &[0xab]);
        assert_eq!(r.data(&g, 5000).len(), 1024, "clamped to the buffer size");
        r.recycle(g);
        // SAFETY: (test) never registered.
        unsafe { r.free() };
    }

    #[test]
    fn incremental_completions_lend_bytes_until_the_last_hands_the_buffer_over() {
        let mut r = BufRing::new(4, 1024, 4).unwrap();
        r.set_incremental();
        let base = r.bufs.as_ptr();
        // SAFETY: (test) no kernel involved; writing buffer 1 as two receives would.
        unsafe {
            base.add(1024).write_bytes(b'a', 10);
            base.add(1024 + 10).write_bytes(b'b', 5);
        }
        let tail = tail_of(&r);
        let first = r.on_completion(1, 10, true);
        assert_eq!(r.data(&first, 10), &[b'a'; 10]);
        r.recycle(first);
        assert_eq!(
            (tail_of(&r), r.out()),
            (tail, 0),
            "a kept buffer is not republished"
        );
        let second = r.on_completion(1, 5, true);
        assert_eq!(
            r.data(&second, 5),
            &[b'b'; 5],
            "continues where the last one ended"
        );
        r.recycle(second);
        // The buffer's last completion: ours now, returned once, offset reset.
        let last = r.on_completion(1, 1009, false);
        assert_eq!(r.data(&last, 2000).len(), 1009, "clamped to what is left");
        assert_eq!(r.out(), 1);
        r.recycle(last);
        assert_eq!((tail_of(&r), r.out()), (tail.wrapping_add(1), 0));
        let (addr, len, bid) = entry(&r, usize::from(tail));
        assert_eq!(
            (addr, len, bid),
            (base as u64 + 1024, 1024, 1),
            "republished whole"
        );
        let again = r.on_completion(1, 3, true);
        assert_eq!(again.off, 0, "a republished buffer starts over");
        r.recycle(again);
        // Without incremental registration `more` never keeps a buffer.
        let mut plain = BufRing::new(4, 1024, 4).unwrap();
        let g = plain.on_completion(0, 3, true);
        assert_eq!(plain.out(), 1);
        plain.recycle(g);
        // SAFETY: (test) never registered.
        unsafe { r.free() };
        // SAFETY: (test) never registered.
        unsafe { plain.free() };
    }

    #[test]
    fn a_buffer_shared_by_two_receives_returns_only_after_both_slices_are_dropped() {
        let mut r = BufRing::new(4, 1024, 4).unwrap();
        r.set_incremental();
        let base = r.bufs.as_ptr();
        // SAFETY: (test) no kernel involved; writing buffer 0 as two receives would.
        unsafe {
            base.write_bytes(b'a', 10);
            base.add(10).write_bytes(b'b', 5);
        }
        let tail = tail_of(&r);
        // Connection A's receive, then B's, continue in buffer 0 (the kernel keeps it).
        let ga = r.on_completion(0, 10, true);
        let a = r.lend(&ga, 10).unwrap();
        r.recycle(ga);
        let gb = r.on_completion(0, 5, true);
        let b = r.lend(&gb, 5).unwrap();
        r.recycle(gb);
        assert_eq!((&a[..], &b[..]), (&[b'a'; 10][..], &[b'b'; 5][..]));
        assert_eq!(a.as_ptr(), base, "A's bytes are the buffer's, not a copy");
        // The buffer's last receive (not lent) hands it over: still held by A and B.
        let last = r.on_completion(0, 1009, false);
        r.recycle(last);
        assert_eq!((tail_of(&r), r.out(), r.held()), (tail, 1, 1));
        drop(a);
        assert_eq!(r.reclaim(), 0, "B's send is still in flight");
        assert_eq!(tail_of(&r), tail);
        drop(b);
        assert_eq!(r.reclaim(), 1);
        assert_eq!(
            (tail_of(&r), r.out(), r.held()),
            (tail.wrapping_add(1), 0, 0)
        );
        assert_eq!(entry(&r, usize::from(tail)).2, 0, "buffer 0 republished");
        assert_eq!(r.reclaim(), 0, "once");
        // SAFETY: (test) never registered.
        unsafe { r.free() };
    }

    #[test]
    fn slices_dropped_before_the_handover_leave_the_kernel_to_return_it() {
        let mut r = BufRing::new(4, 1024, 4).unwrap();
        r.set_incremental();
        let tail = tail_of(&r);
        let g = r.on_completion(1, 100, true);
        let mut lent = r.lend(&g, 100).unwrap();
        r.recycle(g);
        // A short send: the kernel took 40 bytes; the rest stays lent.
        bytes::Buf::advance(&mut lent, 40);
        assert_eq!(lent.len(), 60);
        drop(lent);
        assert_eq!(r.reclaim(), 0, "the kernel still holds the buffer");
        let last = r.on_completion(1, 924, false);
        r.recycle(last);
        assert_eq!(
            (tail_of(&r), r.out(), r.held()),
            (tail.wrapping_add(1), 0, 0)
        );
        // SAFETY: (test) never registered.
        unsafe { r.free() };
    }

    #[test]
    fn lending_stops_while_half_the_pool_is_held_and_resumes_when_it_returns() {
        let mut r = BufRing::new(4, 1024, 4).unwrap();
        let mut lent = Vec::new();
        for bid in 0..2 {
            let g = r.on_completion(bid, 10, false);
            lent.push(r.lend(&g, 10).expect("under half held"));
            r.recycle(g);
        }
        assert_eq!(r.held(), 2);
        let g = r.on_completion(2, 10, false);
        assert!(r.lend(&g, 10).is_none(), "half the pool held: copy instead");
        r.recycle(g);
        assert_eq!(r.held(), 2, "a buffer not lent is republished at once");
        lent.pop();
        assert_eq!(r.reclaim(), 1);
        let g = r.on_completion(3, 10, false);
        assert!(r.lend(&g, 10).is_some());
        r.recycle(g);
        drop(lent);
        // SAFETY: (test) never registered.
        unsafe { r.free() };
    }

    #[test]
    fn lent_bytes_outlive_the_ring() {
        let mut r = BufRing::new(2, 64, 2).unwrap();
        // SAFETY: (test) no kernel involved.
        unsafe { r.bufs.as_ptr().write_bytes(b'z', 3) };
        let g = r.on_completion(0, 3, false);
        let lent = r.lend(&g, 3).unwrap();
        r.recycle(g);
        // SAFETY: (test) never registered.
        unsafe { r.free() };
        assert_eq!(&lent[..], b"zzz", "the pool lives until its last slice");
    }

    proptest! {
        /// Model: the kernel consumes entries in order from its head; we take and
        /// recycle in any order, and grow the pool now and then. Every published
        /// entry names a buffer that is not out, no bid is ever published twice
        /// without being taken in between, and the tail advances by exactly one per
        /// recycle.
        #[test]
        fn ids_round_trip_exactly_once(ops in proptest::collection::vec(any::<(bool, u8)>(), 1..400)) {
            let mut r = BufRing::new(16, 1024, 2).unwrap();
            let mut head: u16 = 0; // kernel's consumption point
            let mut held: Vec<BufGuard> = Vec::new();
            let mut published: std::collections::HashSet<u16> = (0..2).collect();
            for (take, pick) in ops {
                if take && pick % 8 == 0 {
                    let (before, tail) = (r.published(), tail_of(&r));
                    prop_assert_eq!(r.grow(), before < 16);
                    for bid in before..r.published() {
                        prop_assert!(published.insert(bid), "bid {bid} published twice");
                    }
                    prop_assert_eq!(tail_of(&r).wrapping_sub(tail), r.published() - before);
                } else if take && head != tail_of(&r) {
                    let (_, _, bid) = entry(&r, usize::from(head));
                    head = head.wrapping_add(1);
                    prop_assert!(published.remove(&bid), "bid {bid} taken while not published");
                    held.push(r.on_completion(bid, 100, false));
                } else if !held.is_empty() {
                    let g = held.swap_remove(usize::from(pick) % held.len());
                    let bid = g.bid();
                    let before = tail_of(&r);
                    r.recycle(g);
                    prop_assert_eq!(tail_of(&r), before.wrapping_add(1));
                    prop_assert!(published.insert(bid), "bid {bid} published twice");
                }
                prop_assert_eq!(r.out(), held.len());
                prop_assert_eq!(published.len() + held.len(), usize::from(r.published()));
                prop_assert_eq!(tail_of(&r).wrapping_sub(head) as usize, published.len());
            }
            for g in held { r.recycle(g); }
            // SAFETY: (test) never registered.
            unsafe { r.free() };
        }

        /// Model of incremental consumption: the kernel takes any number of bytes
        /// from the head buffer, flagging `BUF_MORE` while some are left, and moves
        /// to the next buffer only when one is used up. Every completion's bytes
        /// start where the buffer's previous ones ended, lent bytes never return the
        /// buffer, and each used-up buffer is ours exactly once until recycled.
        #[test]
        fn incremental_offsets_follow_the_kernel(ops in proptest::collection::vec(any::<(bool, u16, u8)>(), 1..400)) {
            const LEN: u32 = 256;
            let mut r = BufRing::new(8, LEN, 8).unwrap();
            r.set_incremental();
            let mut head: u16 = 0;
            let mut used: u32 = 0; // bytes the kernel took from the head buffer
            let mut held: Vec<BufGuard> = Vec::new();
            for (take, len, pick) in ops {
                if take && head != tail_of(&r) {
                    let (_, _, bid) = entry(&r, usize::from(head));
                    let n = (u32::from(len) % LEN + 1).min(LEN - used);
                    let more = used + n < LEN;
                    let tail = tail_of(&r);
                    let g = r.on_completion(bid, n, more);
                    prop_assert_eq!(g.off, used, "bytes start where the last ones ended");
                    prop_assert_eq!(r.data(&g, n as usize).len(), n as usize);
                    if more {
                        used += n;
                        r.recycle(g);
                        prop_assert_eq!(tail_of(&r), tail, "lent bytes return nothing");
                    } else {
                        used = 0;
                        head = head.wrapping_add(1);
                        held.push(g);
                    }
                } else if !held.is_empty() {
                    let g = held.swap_remove(usize::from(pick) % held.len());
                    let tail = tail_of(&r);
                    r.recycle(g);
                    prop_assert_eq!(tail_of(&r), tail.wrapping_add(1));
                }
                prop_assert_eq!(r.out(), held.len());
                prop_assert_eq!(usize::from(tail_of(&r).wrapping_sub(head)) + held.len(), 8);
            }
            for g in held { r.recycle(g); }
            // SAFETY: (test) never registered.
            unsafe { r.free() };
        }

        /// Model of lending under incremental consumption: the kernel writes each
        /// receive into the head buffer (a byte pattern of its own) and moves on when a
        /// buffer is used up; some receives are lent, lent slices are dropped in any
        /// order, and dropped ones are reclaimed now and then. A buffer is back in the
        /// ring only when no slice of it is alive, so no live slice ever sees its bytes
        /// change; lending is refused exactly while half the pool is held.
        #[test]
        fn lent_bytes_stay_put_until_their_buffer_returns(ops in proptest::collection::vec(any::<(u8, u16, bool)>(), 1..400)) {
            const LEN: u32 = 256;
            let mut r = BufRing::new(8, LEN, 8).unwrap();
            r.set_incremental();
            let base = r.bufs.as_ptr();
            let mut head: u16 = 0;
            let mut used: u32 = 0;
            let mut lent: Vec<(u16, Vec<u8>, Bytes)> = Vec::new();
            let mut stamp: u8 = 0;
            for (op, len, lend) in ops {
                match op % 4 {
                    0 | 1 if head != tail_of(&r) => {
                        let (_, _, bid) = entry(&r, usize::from(head));
                        let n = (u32::from(len) % LEN + 1).min(LEN - used);
                        stamp = stamp.wrapping_add(1);
                        // SAFETY: (test) the kernel's write into the buffer it holds.
                        unsafe {
                            base.add(usize::from(bid) * LEN as usize + used as usize)
                                .write_bytes(stamp, n as usize);
                        }
                        let more = used + n < LEN;
                        let g = r.on_completion(bid, n, more);
                        if lend {
                            let got = r.lend(&g, n as usize);
                            prop_assert_eq!(got.is_none(), r.held() >= 4);
                            if let Some(b) = got {
                                lent.push((bid, vec![stamp; n as usize], b));
                            }
                        }
                        r.recycle(g);
                        if more {
                            used += n;
                        } else {
                            used = 0;
                            head = head.wrapping_add(1);
                        }
                    }
                    2 if !lent.is_empty() => {
                        lent.swap_remove(usize::from(len) % lent.len());
                    }
                    _ => {
                        r.reclaim();
                    }
                }
                let ring: std::collections::HashSet<u16> = (0..tail_of(&r).wrapping_sub(head))
                    .map(|i| entry(&r, usize::from(head.wrapping_add(i))).2)
                    .collect();
                prop_assert_eq!(ring.len() + r.held(), 8, "every buffer is in the ring or held");
                for (bid, want, b) in &lent {
                    prop_assert_eq!(&b[..], &want[..], "a lent slice's bytes changed");
                    let (_, _, head_bid) = entry(&r, usize::from(head));
                    prop_assert!(!ring.contains(bid) || *bid == head_bid, "buffer {} back in the ring while lent", bid);
                }
            }
            drop(lent);
            r.reclaim();
            prop_assert_eq!(r.held(), 0);
            // SAFETY: (test) never registered.
            unsafe { r.free() };
        }
    }
}
