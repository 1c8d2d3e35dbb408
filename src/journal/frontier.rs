//! The committed frontier: where the durable part of the journal ends. The writer
//! publishes it after each group commit; the outbox reads records only before it, so
//! no webhook is ever sent for a record a crash could take back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::location::Location;

/// The end of the committed records, shared by the writer and readers.
///
/// "Committed" follows `journal.fsync`: under `always` and `interval`, what the last
/// `fdatasync` covered; under `never`, what was written (the OS writes it back when
/// it likes, JOURNAL.md section 3).
#[derive(Debug, Default)]
pub(crate) struct Frontier {
    /// `segment << 32 | offset` of the first byte past the committed records; only
    /// ever grows.
    packed: AtomicU64,
    lock: Mutex<()>,
    moved: Condvar,
}

fn pack(at: Location) -> u64 {
    (u64::from(at.segment) << 32) | u64::from(at.offset)
}

fn unpack(v: u64) -> Location {
    Location {
        segment: (v >> 32) as u32,
        offset: v as u32,
    }
}

impl Frontier {
    /// Records before `at` (in journal order) are committed. Wakes the waiters when the
    /// frontier moves; never moves it back.
    pub(crate) fn publish(&self, at: Location) {
        let new = pack(at);
        if self.packed.fetch_max(new, Ordering::AcqRel) < new {
            // Taken so a waiter between its check and its wait cannot miss the wake.
            drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
            self.moved.notify_all();
        }
    }

    /// The first byte past the committed records.
    pub(crate) fn get(&self) -> Location {
        unpack(self.packed.load(Ordering::Acquire))
    }

    /// Waits until the frontier is past `seen`, at most `timeout`; returns it then.
    pub(crate) fn wait_past(&self, seen: Location, timeout: Duration) -> Location {
        let seen = pack(seen);
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let (_guard, _) = self
            .moved
            .wait_timeout_while(guard, timeout, |()| {
                self.packed.load(Ordering::Acquire) <= seen
            })
            .unwrap_or_else(|e| e.into_inner());
        self.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn at(segment: u32, offset: u32) -> Location {
        Location { segment, offset }
    }

    #[test]
    fn only_moves_forward() {
        let f = Frontier::default();
        f.publish(at(2, 64));
        f.publish(at(1, 4096));
        assert_eq!(f.get(), at(2, 64));
        f.publish(at(3, 64));
        assert_eq!(f.get(), at(3, 64));
    }

    #[test]
    fn a_waiter_wakes_when_it_moves() {
        let f = Arc::new(Frontier::default());
        f.publish(at(1, 64));
        let (started_tx, started) = std::sync::mpsc::channel();
        let waiter = {
            let f = f.clone();
            std::thread::spawn(move || {
                started_tx.send(()).unwrap();
                f.wait_past(at(1, 64), Duration::from_secs(60))
            })
        };
        started.recv().unwrap();
        f.publish(at(1, 128));
        assert_eq!(waiter.join().unwrap(), at(1, 128));
    }
}
