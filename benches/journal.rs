//! The journal (`src/journal`, reached through `switchboard::bench_support`):
//!
//! - `write_path`: the raw choice the engine made — one batch of records written into
//!   a preallocated segment and made durable, by positioned write + `fdatasync` versus
//!   memcpy into a shared map + `msync`;
//! - `append`: records/s appended by 4 submitter threads (one record per submission,
//!   up to 256 in flight each) under `fsync = always | interval | never`; group-commit
//!   batch size and `fdatasync` latency are printed after each policy;
//! - `recovery`: opening a journal of 1,000,000 records (scan, CRC check, hand every
//!   record to the caller).
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench journal
//! cargo bench --bench journal -- --quick
//! ```
//!
//! Files live under Cargo's target tmp dir, on the same disk as the daemon's state.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard::bench_support::{BenchJournal, FsyncPolicy, JournalConfig};

/// Submitter threads (worker shards).
const THREADS: u64 = 4;
/// Records each submitter appends per measured iteration.
const PER_THREAD: u64 = 10_000;
/// Submissions each submitter keeps in flight.
const WINDOW: usize = 256;
/// Records in the recovery benchmark.
const RECOVER: u64 = 1_000_000;
/// A typical chat message record body.
const BODY: usize = 100;

fn tmpdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn preallocated(path: &Path, len: u64) -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, len).unwrap();
    f
}

/// One group-commit batch: 64 records of ~150 framed bytes.
const BATCH_BYTES: usize = 64 * 152;
const FILE_BYTES: u64 = 64 << 20;

fn write_path(c: &mut Criterion) {
    let dir = tmpdir("journal-write-path");
    let batch = vec![0x5Au8; BATCH_BYTES];
    let mut g = c.benchmark_group("journal/write_path");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(BATCH_BYTES as u64));

    let f = preallocated(&dir.path().join("pwrite"), FILE_BYTES);
    let mut pos = 0u64;
    g.bench_function("pwrite+fdatasync", |b| {
        b.iter(|| {
            if pos + BATCH_BYTES as u64 > FILE_BYTES {
                pos = 0;
            }
            f.write_all_at(&batch, pos).unwrap();
            f.sync_data().unwrap();
            pos += BATCH_BYTES as u64;
        })
    });

    let f = preallocated(&dir.path().join("mmap"), FILE_BYTES);
    // The alternative the journal's write path is measured against: a shared mapping,
    // as the journal's own recovery uses.
    // SAFETY: the file is private to this benchmark and never truncated while mapped.
    #[allow(unsafe_code, reason = "mapping a file is unsafe by contract")]
    let mut map = unsafe { memmap2::MmapMut::map_mut(&f).unwrap() };
    let mut pos = 0usize;
    g.bench_function("mmap+msync", |b| {
        b.iter(|| {
            if pos + BATCH_BYTES > FILE_BYTES as usize {
                pos = 0;
            }
            map[pos..pos + BATCH_BYTES].copy_from_slice(&batch);
            map.flush_range(pos, BATCH_BYTES).unwrap();
            pos += BATCH_BYTES;
        })
    });
    g.finish();
}

fn append(c: &mut Criterion) {
    let body = Bytes::from(vec![b'm'; BODY]);
    let mut g = c.benchmark_group("journal/append");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(THREADS * PER_THREAD));
    for (name, policy) in [
        ("always", FsyncPolicy::Always),
        ("interval_10ms", FsyncPolicy::Interval),
        ("never", FsyncPolicy::Never),
    ] {
        let dir = tmpdir("journal-append");
        let cfg = JournalConfig {
            fsync: policy,
            ..JournalConfig::default()
        };
        let j = BenchJournal::open(dir.path(), &cfg).unwrap();
        let mut worst = Duration::ZERO;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let subs: Vec<_> = (0..THREADS).map(|_| j.submitter()).collect();
                    let started = Instant::now();
                    let w = std::thread::scope(|s| {
                        let hs: Vec<_> = subs
                            .iter()
                            .enumerate()
                            .map(|(t, sub)| {
                                let body = &body;
                                s.spawn(move || {
                                    sub.append(t as u64, PER_THREAD, body, WINDOW).unwrap()
                                })
                            })
                            .collect();
                        hs.into_iter()
                            .map(|h| h.join().unwrap())
                            .max()
                            .unwrap_or_default()
                    });
                    total += started.elapsed();
                    worst = worst.max(w);
                }
                total
            })
        });
        let s = j.stats();
        if s.records == 0 {
            // Filtered out on the command line.
            j.close();
            continue;
        }
        eprintln!(
            "journal/append/{name}: {} records in {} batches (mean {:.1} records/batch), \
             {} fdatasync (mean {:?}, max {:?}), slowest ack {:?}",
            s.records,
            s.batches,
            s.records as f64 / s.batches.max(1) as f64,
            s.fsyncs,
            s.mean_fsync,
            s.max_fsync,
            worst
        );
        j.close();
    }
    g.finish();
}

fn recovery(c: &mut Criterion) {
    let dir = tmpdir("journal-recovery");
    let cfg = JournalConfig {
        fsync: FsyncPolicy::Never,
        ..JournalConfig::default()
    };
    let mut written = false;
    let mut g = c.benchmark_group("journal/recovery");
    g.sample_size(10);
    g.throughput(Throughput::Elements(RECOVER));
    g.bench_function("1m_records", |b| {
        if !written {
            write_records(dir.path(), &cfg, RECOVER);
            let (n, took) = BenchJournal::recover(dir.path(), &cfg).unwrap();
            assert_eq!(n, RECOVER);
            eprintln!("journal/recovery: {n} records, engine-measured scan {took:?}");
            written = true;
        }
        b.iter(|| {
            let (n, _) = BenchJournal::recover(dir.path(), &cfg).unwrap();
            assert_eq!(n, RECOVER);
        })
    });
    g.finish();
}

/// Fills a journal with `n` records of `BODY` bytes from `THREADS` submitters.
fn write_records(dir: &Path, cfg: &JournalConfig, n: u64) {
    let j = BenchJournal::open(dir, cfg).unwrap();
    let body = Bytes::from(vec![b'r'; BODY]);
    let subs: Vec<_> = (0..THREADS).map(|_| j.submitter()).collect();
    std::thread::scope(|s| {
        for (t, sub) in subs.iter().enumerate() {
            let body = &body;
            s.spawn(move || sub.append(t as u64, n / THREADS, body, 4096).unwrap());
        }
    });
    j.close();
}

criterion_group!(benches, write_path, append, recovery);
criterion_main!(benches);
