//! Registered (fixed) descriptors (issue 22): each connection's socket is also put in
//! the ring's sparse file table at its core slot, and its requests name the slot
//! (`IOSQE_FIXED_FILE`) instead of the descriptor, so the kernel does not look the
//! descriptor up and take a file reference (`fget`/`fput`) for every receive, send
//! and poll. The table is registered once per ring with `reactor.uring_fixed_files`
//! entries (at most the open-files limit). A connection whose slot is past the table,
//! or any connection when registration failed, keeps using its descriptor.
//!
//! The table holds its own reference to each socket, so a connection's entry is
//! cleared when it is deregistered (before the core closes the descriptor):
//! otherwise closing the descriptor would not close the socket.

use std::io;
use std::os::fd::RawFd;

use io_uring::IoUring;

/// What a request names: the descriptor, or its slot in the registered table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// A plain descriptor.
    Fd(RawFd),
    /// An index into the registered file table.
    Fixed(u32),
}

/// Builds an opcode on either kind of [`Target`]: `on_target!(t, f => expr)` with
/// `f` bound to `types::Fd` or `types::Fixed`.
macro_rules! on_target {
    ($t:expr, $f:ident => $e:expr) => {
        match $t {
            $crate::reactor::sys::uring::files::Target::Fd(fd) => {
                let $f = io_uring::types::Fd(fd);
                $e
            }
            $crate::reactor::sys::uring::files::Target::Fixed(i) => {
                let $f = io_uring::types::Fixed(i);
                $e
            }
        }
    };
}
pub(super) use on_target;

/// The table size to register: the configured entries, at most the open-files limit
/// (the kernel refuses a larger table), 0 when turned off.
pub(super) fn table_size(want: u32, nofile: Option<u64>) -> u32 {
    let limit = nofile.map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX));
    want.min(limit)
}

/// The table slot for a connection in core slot `slot`, if the table has one.
pub(super) fn slot_in(size: u32, slot: usize) -> Option<u32> {
    u32::try_from(slot).ok().filter(|&s| s < size)
}

/// One ring's registered file table.
#[derive(Debug)]
pub(super) struct Files {
    /// Entries registered (0: none, every request names its descriptor).
    size: u32,
    /// Connections that found no table entry (no table, slot past the table, a
    /// stale slot, submissions backed up) since last taken: counted into
    /// `switchboard_uring_unfixed_total` by the loop.
    missed: u64,
    /// Slots whose closed connection may still have requests naming them waiting to
    /// be submitted (the close's submit did not drain the queue): not given to a new
    /// connection until the queue has drained, or those requests would reach it.
    stale: Vec<u32>,
    /// Slots whose entry could not be cleared at close: retried every turn, since the
    /// table's reference keeps the closed socket open.
    uncleared: Vec<u32>,
}

impl Files {
    /// Registers a sparse table of `want` entries (capped by the open-files limit);
    /// on failure (an old kernel, a limit) logs why and goes on without one.
    pub fn register(ring: &IoUring, want: u32) -> Self {
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let size = table_size(want, nofile);
        if size == 0 {
            return Self::none();
        }
        match ring.submitter().register_files_sparse(size) {
            Ok(()) => Self {
                size,
                ..Self::none()
            },
            Err(e) => {
                tracing::warn!(
                    entries = size,
                    error = %e,
                    "io_uring: cannot register a file table; requests use plain descriptors"
                );
                Self::none()
            }
        }
    }

    /// No table.
    pub fn none() -> Self {
        Self {
            size: 0,
            missed: 0,
            stale: Vec::new(),
            uncleared: Vec::new(),
        }
    }

    /// Puts `fd` in the table at core slot `slot`; `false` if the slot is past the
    /// table or the kernel refused (the connection then names its descriptor).
    pub fn install(&mut self, ring: &IoUring, slot: usize, fd: RawFd) -> bool {
        let Some(i) = slot_in(self.size, slot).filter(|i| !self.stale.contains(i)) else {
            self.missed += 1;
            return false;
        };
        match ring.submitter().register_files_update(i, &[fd]) {
            Ok(1) => true,
            Ok(_) | Err(_) => {
                self.missed += 1;
                false
            }
        }
    }

    /// Clears core slot `slot`'s entry (its connection is closing). Requests in
    /// flight keep their own reference; the socket closes when they and the
    /// descriptor are gone.
    /// On failure the slot is kept and retried by [`Files::retry`] every turn.
    /// `drained`: the close's requests all reached the kernel; if not, the slot is
    /// stale until [`Files::drained`].
    pub fn remove(&mut self, ring: &IoUring, slot: usize, drained: bool) -> io::Result<()> {
        let Some(i) = slot_in(self.size, slot) else {
            return Ok(());
        };
        if !drained && !self.stale.contains(&i) {
            self.stale.push(i);
        }
        let cleared = ring.submitter().register_files_update(i, &[-1]).map(drop);
        if cleared.is_err() && !self.uncleared.contains(&i) {
            self.uncleared.push(i);
        }
        cleared
    }

    /// Retries clearing the entries a close could not clear; the count still left.
    pub fn retry(&mut self, ring: &IoUring) -> usize {
        self.uncleared
            .retain(|&i| ring.submitter().register_files_update(i, &[-1]).is_err());
        self.uncleared.len()
    }

    /// Nothing waits to be submitted: no stale slot is named by a request any more.
    pub fn drained(&mut self) {
        self.stale.clear();
    }

    /// A connection was not put in the table (submissions were backed up).
    pub fn miss(&mut self) {
        self.missed += 1;
    }

    /// Takes the count of connections that found no entry.
    pub fn take_missed(&mut self) -> u64 {
        std::mem::take(&mut self.missed)
    }

    /// Entries registered.
    pub fn size(&self) -> u32 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_at_most_the_open_files_limit() {
        assert_eq!(table_size(16_384, Some(20_000)), 16_384);
        assert_eq!(table_size(16_384, Some(1024)), 1024);
        assert_eq!(table_size(16_384, None), 16_384, "unlimited");
        assert_eq!(table_size(0, Some(20_000)), 0, "turned off");
    }

    /// A real ring with a 4-entry table; none (the test skips) where io_uring or
    /// sparse tables (5.19+) are unavailable: the backend then falls back to epoll
    /// or to plain descriptors, so there is nothing to test.
    fn real_table() -> Option<(IoUring, Files)> {
        let Ok(ring) = super::super::probe::build_ring(8) else {
            eprintln!("skipped: no io_uring here");
            return None;
        };
        let files = Files::register(&ring, 4);
        if files.size() == 0 {
            eprintln!("skipped: no sparse file table here");
            return None;
        }
        Some((ring, files))
    }

    /// On a real ring: the table keeps a socket open after its descriptor is closed,
    /// until the entry is cleared (which is why `deregister` clears it).
    #[test]
    fn a_socket_closes_only_once_its_entry_is_cleared() {
        #![allow(clippy::unwrap_used)]
        use std::io::{ErrorKind, Read};
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;
        use std::time::Duration;

        let Some((ring, mut files)) = real_table() else {
            return;
        };
        assert_eq!(files.size(), 4);
        let (a, mut b) = UnixStream::pair().unwrap();
        assert!(files.install(&ring, 2, a.as_raw_fd()));
        assert!(!files.install(&ring, 4, a.as_raw_fd()), "past the table");
        assert_eq!(files.take_missed(), 1);
        assert_eq!(files.take_missed(), 0);
        drop(a);
        b.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4];
        let held = b.read(&mut buf).unwrap_err();
        assert_eq!(
            held.kind(),
            ErrorKind::WouldBlock,
            "the table holds the socket"
        );
        files.remove(&ring, 2, true).unwrap();
        b.set_nonblocking(false).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(b.read(&mut buf).unwrap(), 0, "closed: the peer reads EOF");
        files.remove(&ring, 9, true).unwrap();
        assert_eq!(files.retry(&ring), 0, "nothing left to clear");
    }

    /// A slot whose closed connection may still have requests waiting to be
    /// submitted is not given to the next connection until the queue drains.
    #[test]
    fn a_stale_slot_waits_for_the_queue_to_drain() {
        #![allow(clippy::unwrap_used)]
        use std::os::fd::AsRawFd;
        use std::os::unix::net::UnixStream;

        let Some((ring, mut files)) = real_table() else {
            return;
        };
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(files.install(&ring, 1, a.as_raw_fd()));
        files.remove(&ring, 1, false).unwrap();
        assert!(!files.install(&ring, 1, a.as_raw_fd()), "stale");
        assert!(
            files.install(&ring, 2, a.as_raw_fd()),
            "other slots are not"
        );
        assert_eq!(files.take_missed(), 1);
        files.drained();
        assert!(
            files.install(&ring, 1, a.as_raw_fd()),
            "drained: usable again"
        );
    }

    #[test]
    fn without_a_table_every_connection_counts_as_unfixed() {
        let Ok(ring) = super::super::probe::build_ring(8) else {
            eprintln!("skipped: no io_uring here");
            return;
        };
        let mut files = Files::none();
        assert!(!files.install(&ring, 0, 0));
        files.miss();
        assert_eq!(files.take_missed(), 2, "the table off counts too");
    }

    #[test]
    fn slots_past_the_table_name_their_descriptor() {
        assert_eq!(slot_in(4, 0), Some(0));
        assert_eq!(slot_in(4, 3), Some(3));
        assert_eq!(slot_in(4, 4), None);
        assert_eq!(slot_in(0, 0), None, "no table");
    }
}
