//! A narrow `pub` face of the engine for `benches/journal.rs` (re-exported, hidden,
//! through `crate::bench_support`). Not a stable API.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use super::{AppendError, Committed, Journal, JournalConfig, JournalHandle, Record};

/// A running journal.
#[derive(Debug)]
pub struct BenchJournal(Journal);

/// Counters of a running journal.
#[derive(Debug, Clone, Copy)]
pub struct BenchStats {
    /// Records written.
    pub records: u64,
    /// Group-commit batches.
    pub batches: u64,
    /// `fdatasync` calls.
    pub fsyncs: u64,
    /// Mean `fdatasync` latency.
    pub mean_fsync: Duration,
    /// Slowest `fdatasync`.
    pub max_fsync: Duration,
}

impl BenchJournal {
    /// Opens (recovering) the journal in `dir`.
    pub fn open(dir: &Path, cfg: &JournalConfig) -> Result<Self, String> {
        Journal::open(dir, cfg, |_, _| {})
            .map(Self)
            .map_err(|e| e.to_string())
    }

    /// Opens the journal in `dir`, counts the recovered records (touching each body),
    /// and closes it again: (records, recovery time as the engine measured it).
    pub fn recover(dir: &Path, cfg: &JournalConfig) -> Result<(u64, Duration), String> {
        let mut n = 0u64;
        let mut check = 0u64;
        let j = Journal::open(dir, cfg, |r, _| {
            n += 1;
            check = check.wrapping_add(r.seq ^ r.body.len() as u64);
        })
        .map_err(|e| e.to_string())?;
        let took = j.recovery.elapsed;
        std::hint::black_box(check);
        Self(j).close();
        Ok((n, took))
    }

    /// A submitter with its own completion channel, as one worker thread would have.
    pub fn submitter(&self) -> BenchSubmitter {
        let (tx, rx) = crossbeam_channel::unbounded();
        BenchSubmitter {
            handle: self.0.handle.clone(),
            tx,
            rx,
        }
    }

    /// Current counters.
    pub fn stats(&self) -> BenchStats {
        let s = self.0.handle.stats();
        BenchStats {
            records: s.records.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            mean_fsync: s.mean_fsync(),
            max_fsync: Duration::from_nanos(s.fsync_nanos_max.load(Ordering::Relaxed)),
        }
    }

    /// Stops the writer and waits for it.
    pub fn close(self) {
        self.0.handle.shutdown();
        let _ = self.0.writer.join();
    }
}

/// Appends from one thread.
#[derive(Debug)]
pub struct BenchSubmitter {
    handle: JournalHandle,
    tx: Sender<Committed>,
    rx: Receiver<Committed>,
}

impl BenchSubmitter {
    /// Appends `n` records of conversation `conversation`, one record per submission,
    /// keeping up to `window` submissions in flight (as a worker serving many
    /// conversations would); returns when all are acknowledged, with the slowest
    /// acknowledgement latency.
    pub fn append(
        &self,
        conversation: u64,
        n: u64,
        body: &Bytes,
        window: usize,
    ) -> Result<Duration, String> {
        let mut sent_at = std::collections::VecDeque::with_capacity(window);
        let mut worst = Duration::ZERO;
        let mut next = 0u64;
        let mut acked = 0u64;
        while acked < n {
            while next < n && sent_at.len() < window {
                let r = Record {
                    conversation,
                    seq: next,
                    time_ms: next,
                    kind: 1,
                    body: body.clone(),
                };
                match self.handle.append(vec![r], next, &self.tx) {
                    Ok(()) => {
                        sent_at.push_back(Instant::now());
                        next += 1;
                    }
                    Err(AppendError::QueueFull) => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
            let c = self.rx.recv().map_err(|e| e.to_string())?;
            c.result.map_err(|e| e.to_string())?;
            if let Some(t) = sent_at.pop_front() {
                worst = worst.max(t.elapsed());
            }
            acked += 1;
        }
        Ok(worst)
    }
}
