//! End-to-end tests of the engine: real files in a temporary directory.

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use super::segment::{SEGMENT_HEADER_LEN, segment_path};
use super::*;

fn cfg(segment_bytes: u64) -> JournalConfig {
    JournalConfig {
        segment_bytes,
        max_record_bytes: 1024,
        ..JournalConfig::default()
    }
}

fn rec(conversation: u64, seq: u64, body: &str) -> Record {
    Record {
        conversation,
        seq,
        time_ms: 1_000 + seq,
        kind: (seq % 7) as u8,
        body: Bytes::copy_from_slice(body.as_bytes()),
    }
}

fn open(dir: &Path, cfg: &JournalConfig) -> (Journal, Vec<(Record, Location)>) {
    open_faulty(dir, cfg, Faults::default())
}

fn open_faulty(
    dir: &Path,
    cfg: &JournalConfig,
    faults: Faults,
) -> (Journal, Vec<(Record, Location)>) {
    let mut seen = Vec::new();
    let j = Journal::open_with_faults(dir, cfg, faults, |r, at| seen.push((r.to_record(), at)))
        .unwrap();
    (j, seen)
}

fn close(j: Journal) {
    j.handle.shutdown();
    j.writer.join().unwrap();
}

/// Appends one submission and waits for its answer.
fn append(j: &Journal, records: Vec<Record>) -> Result<Vec<Location>, DiskError> {
    let (tx, rx) = crossbeam_channel::unbounded();
    j.handle.append(records, 77, &tx).unwrap();
    let c = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(c.token, 77);
    c.result
}

fn records_only(v: &[(Record, Location)]) -> Vec<Record> {
    v.iter().map(|(r, _)| r.clone()).collect()
}

/// Closes `j`, opens the journal in `dir` again and returns the records recovery found.
fn restart(j: Journal, dir: &Path, cfg: &JournalConfig) -> Vec<Record> {
    close(j);
    let (_j, seen) = open(dir, cfg);
    records_only(&seen)
}

/// A fault-injection run: opens a journal in a fresh directory with armed faults,
/// appends `rec(1, 1, "kept")` (returning where it went to `script`), runs `script`,
/// then closes and reopens the journal and returns the records recovery found.
fn after_faults(
    cfg: &JournalConfig,
    script: impl FnOnce(&Journal, &super::segment::FaultState, Location),
) -> Vec<Record> {
    let dir = tempfile::tempdir().unwrap();
    let (faults, state) = Faults::armed();
    let (j, _) = open_faulty(dir.path(), cfg, faults);
    let kept = append(&j, vec![rec(1, 1, "kept")]).unwrap()[0];
    script(&j, &state, kept);
    restart(j, dir.path(), cfg)
}

#[test]
fn round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(1 << 20);
    let (j, seen) = open(dir.path(), &cfg);
    assert!(seen.is_empty());
    let batch = vec![rec(1, 1, "hello"), rec(2, 1, ""), rec(1, 2, "world!!!")];
    let locs = append(&j, batch.clone()).unwrap();
    assert_eq!(locs.len(), 3);
    assert_eq!(locs[0].offset as usize, SEGMENT_HEADER_LEN);
    for (r, at) in batch.iter().zip(&locs) {
        assert_eq!(&j.reader.read(*at).unwrap(), r);
    }
    assert_eq!(j.reader.read_many(&locs).unwrap(), batch);
    assert!(append(&j, vec![]).unwrap().is_empty());
    close(j);

    let (j, seen) = open(dir.path(), &cfg);
    assert_eq!(records_only(&seen), batch);
    assert_eq!(seen.iter().map(|(_, l)| *l).collect::<Vec<_>>(), locs);
    assert_eq!(j.recovery.records, 3);
    assert_eq!(j.recovery.bytes_truncated, 0);
    let more = append(&j, vec![rec(3, 1, "after")]).unwrap();
    assert!(more[0] > locs[2]);
    close(j);
    let (_j, seen) = open(dir.path(), &cfg);
    assert_eq!(seen.len(), 4);
}

#[test]
fn oversized_records_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), &cfg(1 << 20));
    let (tx, _rx) = crossbeam_channel::unbounded();
    let big = Record {
        body: Bytes::from(vec![0u8; 1025]),
        ..rec(1, 1, "")
    };
    assert_eq!(
        j.handle.append(vec![big], 1, &tx),
        Err(AppendError::TooLarge {
            len: 1025,
            max: 1024
        })
    );
}

#[test]
fn second_open_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_j, _) = open(dir.path(), &cfg(1 << 20));
    let err = Journal::open(dir.path(), &cfg(1 << 20), |_, _| {}).unwrap_err();
    assert!(matches!(err, JournalError::Locked(_)), "{err}");
}

#[test]
fn rotation_spreads_records_over_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(4096);
    let (j, _) = open(dir.path(), &cfg);
    let mut all = Vec::new();
    let mut locs = Vec::new();
    for i in 0..60u64 {
        let batch: Vec<Record> = (0..5)
            .map(|k| rec(i % 3, i * 5 + k, &"x".repeat(90 + k as usize)))
            .collect();
        locs.extend(append(&j, batch.clone()).unwrap());
        all.extend(batch);
    }
    let segs = j.handle.segments().unwrap();
    assert!(segs.len() > 5, "{} segments", segs.len());
    assert_eq!(segs.iter().filter(|s| s.active).count(), 1);
    assert!(segs.last().unwrap().active);
    assert_eq!(
        segs.iter().map(|s| s.records).sum::<u64>(),
        all.len() as u64
    );
    assert!(locs.windows(2).all(|w| w[0] < w[1]));
    // Reader after rotation, from several threads.
    std::thread::scope(|s| {
        for _ in 0..3 {
            let reader = j.reader.clone();
            let (all, locs) = (&all, &locs);
            s.spawn(move || {
                for (r, at) in all.iter().zip(locs) {
                    assert_eq!(&reader.read(*at).unwrap(), r);
                }
            });
        }
    });
    close(j);
    let (j, seen) = open(dir.path(), &cfg);
    assert_eq!(records_only(&seen), all);
    assert_eq!(
        j.recovery.segments as usize,
        j.handle.segments().unwrap().len()
    );
}

/// Builds a journal whose last record is the one under test; returns the directory,
/// the records and the last record's location and frame length.
fn journal_with_tail(cfg: &JournalConfig) -> (tempfile::TempDir, Vec<Record>, Location, usize) {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), cfg);
    let records: Vec<Record> = (0..6)
        .map(|i| rec(9, i, &format!("message number {i}")))
        .collect();
    let locs = append(&j, records.clone()).unwrap();
    close(j);
    let last = *locs.last().unwrap();
    let len = super::record::frame_len(records.last().unwrap().body.len());
    (dir, records, last, len)
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
    }
    to
}

/// Recovery after damage must give exactly `expect`, then take an append right where
/// the damaged record was, and recover that too.
fn check_recovers_to(dir: &Path, cfg: &JournalConfig, expect: &[Record], at: Location, what: &str) {
    let (j, seen) = open(dir, cfg);
    assert_eq!(records_only(&seen), expect, "{what}");
    let new = rec(9, 100, "appended after recovery");
    let locs = append(&j, vec![new.clone()]).unwrap();
    assert_eq!(locs[0], at, "{what}");
    close(j);
    let (_j, seen) = open(dir, cfg);
    let mut want = expect.to_vec();
    want.push(new);
    assert_eq!(records_only(&seen), want, "{what}");
}

/// A copy of a journal whose last record is about to be damaged.
struct Tail<'a> {
    dir: &'a Path,
    /// The last segment's file.
    segment: &'a Path,
    /// Where the last record starts in it.
    offset: usize,
    /// Its length on disk.
    len: usize,
    /// Where its header and body end (padding after).
    body_end: usize,
}

/// Damages a fresh copy of a journal once for each `at` in `0..upto(&tail)` with
/// `damage(&tail, at)` (which says what it did), runs `check` on it, then checks that
/// recovery keeps every record before the last, appends where it was, and leaves the
/// segment at its full size.
fn tail_damaged_at_every_offset(
    upto: impl Fn(&Tail) -> usize,
    damage: impl Fn(&Tail, usize) -> String,
    check: impl Fn(&Tail, &JournalConfig, &str),
) {
    let cfg = cfg(16384);
    let (dir, records, last, len) = journal_with_tail(&cfg);
    let before = &records[..records.len() - 1];
    let body_end = super::record::RECORD_HEADER_LEN + records.last().unwrap().body.len();
    let tail = |d: &Path, f: &mut dyn FnMut(&Tail)| {
        let segment = segment_path(d, last.segment);
        f(&Tail {
            dir: d,
            segment: &segment,
            offset: last.offset as usize,
            len,
            body_end,
        })
    };
    let mut count = 0;
    tail(dir.path(), &mut |t| count = upto(t));
    for at in 0..count {
        let d = copy_dir(dir.path());
        tail(d.path(), &mut |t| {
            let what = damage(t, at);
            check(t, &cfg, &what);
            check_recovers_to(t.dir, &cfg, before, last, &what);
            // The segment is preallocated again (a truncated one is extended).
            assert_eq!(
                fs::metadata(t.segment).unwrap().len(),
                cfg.segment_bytes,
                "{what}"
            );
        });
    }
}

#[test]
fn torn_tail_truncated_at_every_offset() {
    tail_damaged_at_every_offset(
        |t| t.len,
        |t, cut| {
            let f = fs::OpenOptions::new().write(true).open(t.segment).unwrap();
            f.set_len((t.offset + cut) as u64).unwrap();
            format!("truncated at +{cut}")
        },
        |_, _, _| {},
    );
}

#[test]
fn torn_tail_partially_persisted_at_every_offset() {
    // The preallocated file keeps its size; only a prefix of the last record landed.
    tail_damaged_at_every_offset(
        |t| t.len,
        |t, cut| {
            let mut bytes = fs::read(t.segment).unwrap();
            bytes[t.offset + cut..t.offset + t.len].fill(0);
            fs::write(t.segment, &bytes).unwrap();
            format!("zeroed from +{cut}")
        },
        |_, _, _| {},
    );
}

#[test]
fn corrupt_byte_in_last_record_at_every_offset() {
    tail_damaged_at_every_offset(
        |t| t.body_end,
        |t, at| {
            let mut bytes = fs::read(t.segment).unwrap();
            bytes[t.offset + at] ^= 0x5A;
            fs::write(t.segment, &bytes).unwrap();
            format!("flipped at +{at}")
        },
        |t, cfg, what| {
            let (j, _) = open(t.dir, cfg);
            assert_eq!(
                j.recovery.bytes_truncated as usize,
                t.len.min(t.body_end),
                "{what}"
            );
            let torn = fs::read(format!("{}.torn", t.segment.display())).unwrap();
            assert_eq!(torn.len() as u64, j.recovery.bytes_truncated);
            close(j);
        },
    );
}

/// 100 records of conversation 1 in 4 KiB segments; their locations.
fn journal_of_100(dir: &Path, cfg: &JournalConfig) -> (Vec<Record>, Vec<Location>) {
    let (j, _) = open(dir, cfg);
    let mut locs = Vec::new();
    let mut all = Vec::new();
    for i in 0..100u64 {
        let r = rec(1, i, &"y".repeat(200));
        locs.extend(append(&j, vec![r.clone()]).unwrap());
        all.push(r);
    }
    close(j);
    (all, locs)
}

fn flip(dir: &Path, at: Location, plus: usize) {
    let path = segment_path(dir, at.segment);
    let mut bytes = fs::read(&path).unwrap();
    bytes[at.offset as usize + plus] ^= 1;
    fs::write(&path, &bytes).unwrap();
}

fn scan_all(dir: &Path, cfg: &JournalConfig) -> (Scanned, Vec<Record>) {
    let mut seen = Vec::new();
    let s = Journal::scan(dir, cfg, |r, _| seen.push(r.to_record())).unwrap();
    (s, seen)
}

#[test]
fn damage_in_a_sealed_segment_is_refused_then_covered_by_fill() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(4096);
    let (all, locs) = journal_of_100(dir.path(), &cfg);
    let victim = locs[2];
    assert_eq!(victim.segment, locs[0].segment);
    flip(dir.path(), victim, 50);
    let frame = locs[3].offset - victim.offset;
    let Err(JournalError::Damaged(ranges)) = Journal::open(dir.path(), &cfg, |_, _| {}) else {
        panic!("damage must be refused");
    };
    assert_eq!(
        ranges,
        vec![DamagedRange {
            segment: victim.segment,
            offset: u64::from(victim.offset),
            len: u64::from(frame),
            what: Damage::Records,
        }]
    );
    // Every record but the damaged one is read: resynchronised on the next.
    let (scanned, seen) = scan_all(dir.path(), &cfg);
    let mut want = all.clone();
    want.remove(2);
    assert_eq!(seen, want);
    let before = fs::read(segment_path(dir.path(), victim.segment)).unwrap();
    let j = Journal::start(scanned, &cfg, Faults::default()).unwrap();
    j.handle.fill(ranges).unwrap();
    close(j);
    let kept = fs::read(dir.path().join(format!(
        "{:010}.seg.damaged-{}",
        victim.segment, victim.offset
    )))
    .unwrap();
    let range = victim.offset as usize..(victim.offset + frame) as usize;
    assert_eq!(kept, before[range]);
    let (_j, seen) = open(dir.path(), &cfg);
    assert_eq!(records_only(&seen), want);
}

#[test]
fn unreadable_header_is_damage_and_fill_writes_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(4096);
    let (all, locs) = journal_of_100(dir.path(), &cfg);
    let first = locs[0].segment;
    let path = segment_path(dir.path(), first);
    let mut bytes = fs::read(&path).unwrap();
    bytes[3] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let (scanned, seen) = scan_all(dir.path(), &cfg);
    assert_eq!(seen, all, "the records behind a bad header are still read");
    assert_eq!(scanned.stats.damage.len(), 1);
    assert_eq!(scanned.stats.damage[0].what, Damage::Header);
    let ranges = scanned.stats.damage.clone();
    let j = Journal::start(scanned, &cfg, Faults::default()).unwrap();
    j.handle.fill(ranges).unwrap();
    assert_eq!(restart(j, dir.path(), &cfg), all);
}

#[test]
fn damage_in_the_last_segment_with_records_after_it_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(1 << 20);
    let (all, locs) = journal_of_100(dir.path(), &cfg);
    assert_eq!(locs[0].segment, locs[99].segment, "one segment");
    flip(dir.path(), locs[50], 45);
    let (scanned, seen) = scan_all(dir.path(), &cfg);
    assert_eq!(scanned.stats.bytes_truncated, 0);
    assert_eq!(scanned.stats.damage.len(), 1);
    let mut want = all.clone();
    want.remove(50);
    assert_eq!(seen, want);
    // A page of zeros in the middle: damage too (zeros are the end only when nothing
    // but zeros follows).
    let d = copy_dir(dir.path());
    let path = segment_path(d.path(), locs[0].segment);
    let mut bytes = fs::read(&path).unwrap();
    bytes[8192..12288].fill(0);
    fs::write(&path, &bytes).unwrap();
    let (scanned, seen) = scan_all(d.path(), &cfg);
    assert_eq!(scanned.stats.damage.len(), 1);
    let lost: Vec<&Location> = locs
        .iter()
        .filter(|l| (l.offset as usize) < 12288 && l.offset as usize + 240 > 8192)
        .collect();
    assert_eq!(seen.len(), 100 - lost.len());
}

#[test]
fn a_sealed_segment_whose_end_is_zeroed_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(4096);
    let (all, locs) = journal_of_100(dir.path(), &cfg);
    // Zero the last three records of the first segment: what is left reads cleanly
    // up to zeros, as a segment that simply ended would — but its seal is gone.
    let first = locs[0].segment;
    let in_first: Vec<&Location> = locs.iter().filter(|l| l.segment == first).collect();
    let cut = in_first[in_first.len() - 3].offset as usize;
    let path = segment_path(dir.path(), first);
    let mut bytes = fs::read(&path).unwrap();
    bytes[cut..].fill(0);
    fs::write(&path, &bytes).unwrap();
    let (scanned, seen) = scan_all(dir.path(), &cfg);
    assert_eq!(seen.len(), 97);
    assert_eq!(
        scanned.stats.damage,
        vec![DamagedRange {
            segment: first,
            offset: cut as u64,
            len: cfg.segment_bytes - cut as u64,
            what: Damage::Trailing,
        }]
    );
    // Filled: zeros and a new seal; clean from then on.
    let ranges = scanned.stats.damage.clone();
    let j = Journal::start(scanned, &cfg, Faults::default()).unwrap();
    j.handle.fill(ranges).unwrap();
    close(j);
    let (_j, seen) = open(dir.path(), &cfg);
    assert_eq!(records_only(&seen).len(), 97);
    assert_eq!(
        records_only(&seen)[..in_first.len() - 3],
        all[..in_first.len() - 3]
    );
}

#[test]
fn a_last_segment_that_was_sealed_is_not_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(4096);
    let (_all, locs) = journal_of_100(dir.path(), &cfg);
    let last = locs[99].segment;
    // As if the daemon stopped between sealing a segment and creating the next.
    fs::remove_file(segment_path(dir.path(), last)).unwrap();
    let (j, seen) = open(dir.path(), &cfg);
    assert_eq!(seen.len(), locs.iter().filter(|l| l.segment < last).count());
    let at = append(&j, vec![rec(5, 1, "after")]).unwrap()[0];
    assert_eq!(
        at.segment, last,
        "a new segment, numbered after the sealed one"
    );
    close(j);
    let (_j, seen) = open(dir.path(), &cfg);
    assert_eq!(seen.last().unwrap().0, rec(5, 1, "after"));
}

#[test]
fn inspect_changes_nothing_and_sees_what_scan_sees() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(4096);
    let (_all, locs) = journal_of_100(dir.path(), &cfg);
    flip(dir.path(), locs[7], 60);
    // A torn tail too: garbage after the last record.
    let last = locs[99];
    let path = segment_path(dir.path(), last.segment);
    let mut bytes = fs::read(&path).unwrap();
    bytes[last.offset as usize + 240 + 3] = 9;
    fs::write(&path, &bytes).unwrap();
    fs::write(dir.path().join("0000000999.seg.tmp"), b"x").unwrap();
    let before: Vec<(std::ffi::OsString, Vec<u8>)> = {
        let mut v: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), fs::read(e.path()).unwrap())
            })
            .collect();
        v.sort();
        v
    };
    let mut seen = 0;
    let i = Journal::inspect(dir.path(), &cfg, |_, _| seen += 1).unwrap();
    assert!(!i.in_use);
    assert_eq!(seen, 99);
    assert_eq!(i.stats.damage.len(), 1);
    assert_eq!(i.stats.bytes_truncated, 8);
    let mut after: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), fs::read(e.path()).unwrap())
        })
        .collect();
    after.sort();
    assert_eq!(before, after);
    // While a journal is open elsewhere, inspect says so.
    fs::remove_file(dir.path().join("0000000999.seg.tmp")).unwrap();
    let (scanned, _) = scan_all(dir.path(), &cfg);
    let i = Journal::inspect(dir.path(), &cfg, |_, _| {}).unwrap();
    assert!(i.in_use);
    drop(scanned);
}

#[test]
fn fillers_are_neither_summarised_nor_copied_by_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(4096);
    let (all, locs) = journal_of_100(dir.path(), &cfg);
    flip(dir.path(), locs[1], 41);
    let (scanned, _) = scan_all(dir.path(), &cfg);
    let ranges = scanned.stats.damage.clone();
    let j = Journal::start(scanned, &cfg, Faults::default()).unwrap();
    j.handle.fill(ranges).unwrap();
    let first = j.handle.segments().unwrap()[0].clone();
    assert!(!first.conversations.contains(&0));
    let moves = j.handle.compact(first.segment, |_| true).unwrap();
    let kept = locs.iter().filter(|l| l.segment == first.segment).count() - 1;
    assert_eq!(moves.len(), kept);
    close(j);
    let (_j, seen) = open(dir.path(), &cfg);
    let mut want: Vec<Record> = all.clone();
    want.remove(1);
    let mut got = records_only(&seen);
    got.sort_by_key(|r| r.seq);
    assert_eq!(got, want);
}

#[test]
fn group_commit_from_several_threads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        queue_depth: 64,
        ..cfg(64 * 1024)
    };
    let (j, _) = open(dir.path(), &cfg);
    const THREADS: u64 = 4;
    const SUBS: u64 = 300;
    type Answered = (u64, Vec<Record>, Vec<Location>);
    let results: Vec<Vec<Answered>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let handle = j.handle.clone();
                s.spawn(move || {
                    let (tx, rx): (Sender<Committed>, Receiver<Committed>) =
                        crossbeam_channel::unbounded();
                    let mut sent = Vec::new();
                    for k in 0..SUBS {
                        let batch: Vec<Record> = (0..1 + k % 3)
                            .map(|i| rec(t, k * 10 + i, &format!("t{t} k{k} i{i}")))
                            .collect();
                        loop {
                            match handle.append(batch.clone(), k, &tx) {
                                Ok(()) => break,
                                Err(AppendError::QueueFull) => std::thread::yield_now(),
                                Err(e) => panic!("{e}"),
                            }
                        }
                        sent.push(batch);
                    }
                    let mut out = Vec::new();
                    for (k, batch) in sent.into_iter().enumerate() {
                        let c = rx.recv_timeout(Duration::from_secs(20)).unwrap();
                        // Answers come back in submission order for one submitter.
                        assert_eq!(c.token, k as u64);
                        out.push((c.token, batch, c.result.unwrap()));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = 0;
    for per_thread in &results {
        let mut prev: Option<Location> = None;
        for (_, batch, locs) in per_thread {
            assert_eq!(batch.len(), locs.len());
            for (r, at) in batch.iter().zip(locs) {
                assert!(prev.is_none_or(|p| p < *at), "order per submitter");
                prev = Some(*at);
                assert_eq!(&j.reader.read(*at).unwrap(), r);
                total += 1;
            }
        }
    }
    let stats = j.handle.stats();
    assert_eq!(stats.records.load(Ordering::Relaxed), total);
    assert_eq!(stats.appends.load(Ordering::Relaxed), THREADS * SUBS);
    assert!(stats.fsyncs.load(Ordering::Relaxed) >= 1);
    assert!(stats.batches.load(Ordering::Relaxed) <= THREADS * SUBS);
}

#[test]
fn fsync_policies() {
    // always: every batch is synced before it is answered.
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), &cfg(1 << 20));
    append(&j, vec![rec(1, 1, "a")]).unwrap();
    let s = j.handle.stats();
    assert_eq!(s.fsyncs.load(Ordering::Relaxed), 1);
    append(&j, vec![rec(1, 2, "b")]).unwrap();
    assert_eq!(s.fsyncs.load(Ordering::Relaxed), 2);
    close(j);

    // never: no sync at all while appending.
    let dir = tempfile::tempdir().unwrap();
    let never = JournalConfig {
        fsync: FsyncPolicy::Never,
        ..cfg(1 << 20)
    };
    let (j, _) = open(dir.path(), &never);
    for i in 0..10 {
        append(&j, vec![rec(1, i, "n")]).unwrap();
    }
    assert_eq!(j.handle.stats().fsyncs.load(Ordering::Relaxed), 0);
    j.handle.sync().unwrap();
    assert_eq!(j.handle.stats().fsyncs.load(Ordering::Relaxed), 1);
    close(j);

    // interval: answered before the sync, synced within about one interval.
    let dir = tempfile::tempdir().unwrap();
    let interval = JournalConfig {
        fsync: FsyncPolicy::Interval,
        fsync_interval: Duration::from_millis(50),
        ..cfg(1 << 20)
    };
    let (j, _) = open(dir.path(), &interval);
    append(&j, vec![rec(1, 1, "i")]).unwrap();
    let s = j.handle.stats().clone();
    // A hang guard counted in polls (at least a minute of them), not a bound on
    // how soon the sync comes on a loaded machine.
    let mut polls = 0;
    while s.fsyncs.load(Ordering::Relaxed) == 0 {
        polls += 1;
        assert!(polls < 12_000, "interval sync never came");
        std::thread::sleep(Duration::from_millis(5));
    }
    close(j);
    let (_j, seen) = open(dir.path(), &interval);
    assert_eq!(seen.len(), 1);
}

#[test]
fn failed_sync_fails_the_batch_and_the_next_append_takes_its_place() {
    let seen = after_faults(&cfg(1 << 20), |j, state, kept| {
        state.sync_errno.store(libc::EIO, Ordering::Relaxed);
        assert_eq!(
            append(j, vec![rec(1, 2, "lost, told so")]),
            Err(DiskError::Io(libc::EIO))
        );
        assert_eq!(j.handle.stats().sync_errors.load(Ordering::Relaxed), 1);
        assert_eq!(j.handle.stats().failing.load(Ordering::Relaxed), 1);
        state.sync_errno.store(0, Ordering::Relaxed);
        let again = append(j, vec![rec(1, 2, "retried")]).unwrap();
        assert_eq!(again[0].offset, kept.offset + 48);
        assert_eq!(j.handle.stats().failing.load(Ordering::Relaxed), 0);
    });
    assert_eq!(seen, vec![rec(1, 1, "kept"), rec(1, 2, "retried")]);
}

#[test]
fn torn_failed_write_leaves_no_trace() {
    let seen = after_faults(&cfg(1 << 20), |j, state, _| {
        state.write_errno.store(libc::EIO, Ordering::Relaxed);
        state.write_partial.store(true, Ordering::Relaxed);
        // Several records, half of whose bytes reach the file before the error.
        let failed: Vec<Record> = (2..10).map(|i| rec(1, i, "will be torn")).collect();
        assert_eq!(append(j, failed), Err(DiskError::Io(libc::EIO)));
        assert_eq!(j.handle.stats().write_errors.load(Ordering::Relaxed), 1);
        state.write_errno.store(0, Ordering::Relaxed);
        // Same frame length as the torn ones: without zeroing, the torn batch's later
        // records would sit intact right behind it and come back at recovery.
        append(j, vec![rec(1, 2, "retried okay")]).unwrap();
    });
    assert_eq!(seen, vec![rec(1, 1, "kept"), rec(1, 2, "retried okay")]);
}

#[test]
fn no_space_at_rotation_then_recovery_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(4096);
    let (faults, state) = Faults::armed();
    let (j, _) = open_faulty(dir.path(), &cfg, faults.clone());
    state.create_errno.store(libc::ENOSPC, Ordering::Relaxed);
    let mut kept = Vec::new();
    let mut failures = 0;
    for i in 0..60u64 {
        let r = rec(1, i, &"z".repeat(100));
        match append(&j, vec![r.clone()]) {
            Ok(_) => kept.push(r),
            Err(e) => {
                assert_eq!(e, DiskError::NoSpace);
                failures += 1;
            }
        }
    }
    assert!(failures > 0 && !kept.is_empty());
    // Reads keep working while the disk is full.
    assert_eq!(
        j.reader
            .read(Location {
                segment: 1,
                offset: 64
            })
            .unwrap(),
        kept[0]
    );
    state.create_errno.store(0, Ordering::Relaxed);
    let r = rec(2, 1, "space is back");
    let at = append(&j, vec![r.clone()]).unwrap()[0];
    assert_eq!(at.segment, 2);
    kept.push(r);
    assert_eq!(restart(j, dir.path(), &cfg), kept);
}

#[test]
fn retention_deletes_and_compacts_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(4096);
    let (j, _) = open(dir.path(), &cfg);
    let mut by_loc = Vec::new();
    for i in 0..80u64 {
        // Conversation 2 appears only early on; 1 and 3 throughout.
        let conv = if i < 20 && i % 4 == 0 {
            2
        } else {
            1 + 2 * (i % 2)
        };
        let r = rec(conv, i, &"r".repeat(120));
        let at = append(&j, vec![r.clone()]).unwrap()[0];
        by_loc.push((r, at));
    }
    let before = j.handle.segments().unwrap();
    let active = before.iter().find(|s| s.active).unwrap().segment;
    let report = j.handle.retire(|c| c == 2, u64::MAX).unwrap();
    assert!(!report.deleted.is_empty());
    assert!(!report.compacted.is_empty());
    let conv2: Vec<&(Record, Location)> =
        by_loc.iter().filter(|(r, _)| r.conversation == 2).collect();
    assert_eq!(report.moves.len(), conv2.len());
    for ((r, old), (from, to)) in conv2.iter().zip(&report.moves) {
        assert_eq!(old, from);
        assert_eq!(&j.reader.read(*to).unwrap(), r);
        assert!(matches!(
            j.reader.read(*old),
            Err(JournalError::SegmentGone(_))
        ));
    }
    let after = j.handle.segments().unwrap();
    assert!(after.iter().all(|s| s.segment >= active));
    assert!(matches!(
        j.handle
            .delete_segments(vec![after.last().unwrap().segment]),
        Err(JournalError::ActiveSegment(_))
    ));
    close(j);
    let (_j, seen) = open(dir.path(), &cfg);
    let mut want: Vec<Record> = by_loc
        .iter()
        .filter(|(_, l)| l.segment >= active)
        .map(|(r, _)| r.clone())
        .collect();
    want.extend(conv2.iter().map(|(r, _)| r.clone()));
    let got = records_only(&seen);
    assert_eq!(got.len(), want.len());
    for r in &want {
        assert!(got.contains(r));
    }
}

#[test]
fn writer_stops_when_handles_drop() {
    let dir = tempfile::tempdir().unwrap();
    let (j, _) = open(dir.path(), &cfg(1 << 20));
    let Journal { handle, writer, .. } = j;
    drop(handle);
    writer.join().unwrap();
}

/// Recovery at scale: a journal of 1,000,000 records comes back complete and in
/// order. (Its speed goal is measured by `benches/journal.rs`.)
#[test]
fn recovers_a_million_records_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        fsync: FsyncPolicy::Never,
        ..cfg(64 << 20)
    };
    const N: u64 = 1_000_000;
    const PER: u64 = 10_000;
    let (j, _) = open(dir.path(), &cfg);
    let (tx, rx) = crossbeam_channel::unbounded();
    for b in 0..N / PER {
        let batch = (0..PER)
            .map(|i| {
                let seq = b * PER + i;
                Record {
                    conversation: seq % 1000,
                    seq,
                    time_ms: seq,
                    kind: 1,
                    body: Bytes::from_static(b"0123456789abcdef0123456789abcdef"),
                }
            })
            .collect();
        j.handle.append(batch, b, &tx).unwrap();
        rx.recv().unwrap().result.unwrap();
    }
    close(j);
    let mut next = 0u64;
    let j = Journal::open(dir.path(), &cfg, |r, _| {
        assert_eq!(r.seq, next);
        assert_eq!(r.conversation, next % 1000);
        next += 1;
    })
    .unwrap();
    assert_eq!(next, N);
    assert_eq!(j.recovery.records, N);
    assert!(j.recovery.segments >= 1);
}

#[test]
fn a_submission_never_straddles_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(4096);
    let (j, _) = open(dir.path(), &cfg);
    // 100-byte bodies: 144-byte frames, 28 fit in the 4032 bytes of a segment.
    let body = "s".repeat(100);
    let first = append(&j, (0..26).map(|i| rec(1, i, &body)).collect()).unwrap();
    let three = append(&j, (26..29).map(|i| rec(1, i, &body)).collect()).unwrap();
    assert!(first.iter().all(|l| l.segment == first[0].segment));
    assert!(three.iter().all(|l| l.segment == first[0].segment + 1));
    assert_eq!(three[0].offset as usize, SEGMENT_HEADER_LEN);
    let (tx, _rx) = crossbeam_channel::unbounded();
    let too_many: Vec<Record> = (0..29).map(|i| rec(1, i, &body)).collect();
    assert!(matches!(
        j.handle.append(too_many, 1, &tx),
        Err(AppendError::BatchTooLarge { .. })
    ));
}

#[test]
fn failed_submission_is_rewound_whole_without_sync() {
    // fsync = never and a tiny write batch: the failing submission's first records
    // were written (and would count as done) before its third write failed.
    let cfg = JournalConfig {
        fsync: FsyncPolicy::Never,
        max_batch_bytes: 1,
        ..cfg(1 << 20)
    };
    let seen = after_faults(&cfg, |j, state, _| {
        state.write_skip.store(2, Ordering::Relaxed);
        state.write_errno.store(libc::EIO, Ordering::Relaxed);
        let failed: Vec<Record> = (2..6).map(|i| rec(1, i, "gone")).collect();
        assert_eq!(append(j, failed), Err(DiskError::Io(libc::EIO)));
        state.write_errno.store(0, Ordering::Relaxed);
        let at = append(j, vec![rec(1, 2, "next")]).unwrap()[0];
        assert_eq!(at.offset as usize, SEGMENT_HEADER_LEN + 48);
    });
    assert_eq!(seen, vec![rec(1, 1, "kept"), rec(1, 2, "next")]);
}

/// Two batches of one submitter queued behind each other (each its own group commit):
/// the first one's fsync fails, so the second, made before the submitter heard, is
/// refused unwritten (without the fence it would fail here too, but with the EIO of
/// its own fsync). Afterwards the state is as after any failed sync: the next append,
/// with the new fence, takes the failed batch's place.
#[test]
fn a_failure_fences_the_appends_queued_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(4096);
    let (faults, state) = Faults::armed();
    let (j, _) = open_faulty(dir.path(), &cfg, faults);
    let mut kept = Vec::new();
    for i in 0.. {
        let r = rec(1, i, &"r".repeat(120));
        let at = append(&j, vec![r.clone()]).unwrap()[0];
        kept.push(r);
        if at.segment > 1 {
            break;
        }
    }
    // Hold the writer inside a compaction of segment 1 (keeping nothing).
    let (inside_tx, inside) = crossbeam_channel::bounded(1);
    let (go, go_rx) = crossbeam_channel::bounded::<()>(1);
    let blocker = {
        let h = j.handle.clone();
        std::thread::spawn(move || {
            h.copy_forward(1, move |_| {
                let _ = inside_tx.try_send(());
                let _ = go_rx.recv();
                false
            })
        })
    };
    inside.recv().unwrap();
    let fence = j.handle.failures();
    let (tx, rx) = crossbeam_channel::unbounded();
    j.handle
        .append_fenced(vec![rec(2, 1, "first")], 1, &tx, fence)
        .unwrap();
    // A request between them, so they are separate group commits.
    let asker = {
        let h = j.handle.clone();
        std::thread::spawn(move || h.segments().map(|s| s.len()))
    };
    let mut polls = 0;
    while j.handle.queued() < 2 {
        polls += 1;
        assert!(polls < 100_000, "the request never queued");
        std::thread::sleep(Duration::from_millis(1));
    }
    j.handle
        .append_fenced(vec![rec(2, 2, "second")], 2, &tx, fence)
        .unwrap();
    state.sync_errno.store(libc::EIO, Ordering::Relaxed);
    go.send(()).unwrap();
    drop(go); // keep's later calls return at once
    assert_eq!(blocker.join().unwrap().unwrap(), vec![]);
    asker.join().unwrap().unwrap();
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let second = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (first.token, first.result),
        (1, Err(DiskError::Io(libc::EIO)))
    );
    assert_eq!((second.token, second.result), (2, Err(DiskError::Fenced)));
    assert_eq!(j.handle.failures(), fence + 1);
    assert_eq!(j.handle.stats().fenced.load(Ordering::Relaxed), 1);
    assert_eq!(
        j.handle.stats().sync_errors.load(Ordering::Relaxed),
        1,
        "one fsync failed"
    );
    state.sync_errno.store(0, Ordering::Relaxed);
    // With the old fence it is still refused; with the new one it is stored.
    j.handle
        .append_fenced(vec![rec(2, 1, "stale")], 3, &tx, fence)
        .unwrap();
    let r = rec(2, 1, "retried");
    j.handle
        .append_fenced(vec![r.clone()], 4, &tx, j.handle.failures())
        .unwrap();
    let stale = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let retried = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!((stale.token, stale.result), (3, Err(DiskError::Fenced)));
    assert_eq!(retried.token, 4);
    assert!(retried.result.is_ok());
    kept.push(r);
    assert_eq!(restart(j, dir.path(), &cfg), kept);
}

#[test]
fn records_of_a_failed_sync_do_not_come_back_after_a_clean_restart() {
    let seen = after_faults(&cfg(1 << 20), |j, state, _| {
        state.sync_errno.store(libc::EIO, Ordering::Relaxed);
        assert!(append(j, vec![rec(1, 2, "told it failed")]).is_err());
        state.sync_errno.store(0, Ordering::Relaxed);
    });
    assert_eq!(seen, vec![rec(1, 1, "kept")]);
}

mod model {
    //! Random appends, disk failures and restarts: after every restart the journal
    //! holds exactly the acknowledged records, in order, at their locations.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append(Vec<usize>),
        FailWrites { partial: bool, skip: u32 },
        FailSync,
        NoSpace,
        Heal,
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => proptest::collection::vec(0usize..400, 0..12).prop_map(Op::Append),
            2 => (any::<bool>(), 0u32..3).prop_map(|(partial, skip)| Op::FailWrites { partial, skip }),
            1 => Just(Op::FailSync),
            1 => Just(Op::NoSpace),
            2 => Just(Op::Heal),
            2 => Just(Op::Restart),
        ]
    }

    fn heal(state: &super::super::segment::FaultState) {
        state.write_errno.store(0, Ordering::Relaxed);
        state.write_partial.store(false, Ordering::Relaxed);
        state.write_skip.store(0, Ordering::Relaxed);
        state.sync_errno.store(0, Ordering::Relaxed);
        state.create_errno.store(0, Ordering::Relaxed);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn acknowledged_records_and_only_those_survive(
            ops in proptest::collection::vec(op(), 1..40),
            policy in prop_oneof![Just(FsyncPolicy::Always), Just(FsyncPolicy::Interval), Just(FsyncPolicy::Never)],
            max_batch_bytes in prop_oneof![Just(1usize), Just(700), Just(1 << 20)],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let cfg = JournalConfig { fsync: policy, max_batch_bytes, ..cfg(4096) };
            let (faults, state) = Faults::armed();
            let (mut j, _) = open_faulty(dir.path(), &cfg, faults.clone());
            let mut acked: Vec<(Record, Location)> = Vec::new();
            let mut seq = 0u64;
            for op in ops {
                match op {
                    Op::Append(lens) => {
                        let batch: Vec<Record> = lens.iter().map(|&n| {
                            seq += 1;
                            Record { conversation: seq % 5, seq, time_ms: seq, kind: 2,
                                     body: Bytes::from(vec![(seq % 251) as u8; n]) }
                        }).collect();
                        // A submission bigger than a segment is refused up front:
                        // nothing acknowledged, nothing written.
                        let (tx, rx) = crossbeam_channel::unbounded();
                        match j.handle.append(batch.clone(), 77, &tx) {
                            Err(AppendError::BatchTooLarge { .. }) => continue,
                            Err(e) => prop_assert!(false, "append refused: {}", e),
                            Ok(()) => {}
                        }
                        let answer = rx.recv_timeout(Duration::from_secs(10)).unwrap().result;
                        if let Ok(locs) = answer {
                            for (r, at) in batch.into_iter().zip(locs) {
                                prop_assert_eq!(&j.reader.read(at).unwrap(), &r);
                                acked.push((r, at));
                            }
                        }
                    }
                    Op::FailWrites { partial, skip } => {
                        state.write_partial.store(partial, Ordering::Relaxed);
                        state.write_skip.store(skip, Ordering::Relaxed);
                        state.write_errno.store(libc::EIO, Ordering::Relaxed);
                    }
                    Op::FailSync => state.sync_errno.store(libc::EIO, Ordering::Relaxed),
                    Op::NoSpace => state.create_errno.store(libc::ENOSPC, Ordering::Relaxed),
                    Op::Heal => heal(&state),
                    Op::Restart => {
                        heal(&state);
                        close(j);
                        let (next, seen) = open_faulty(dir.path(), &cfg, faults.clone());
                        prop_assert_eq!(&seen, &acked);
                        j = next;
                    }
                }
            }
            heal(&state);
            close(j);
            let (_j, seen) = open(dir.path(), &cfg);
            prop_assert_eq!(&seen, &acked);
        }
    }
}
