//! Damage and salvage, end to end: a journal written from a simulated workload, one
//! byte flipped or one 4 KiB page zeroed anywhere, then start-up recovery as the
//! daemon runs it — refusing, and salvaging.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;

use super::*;
use crate::journal::{Journal, Record};
use crate::protocol::Kind;
use crate::protocol::messages::entry_kind::GAP;
use crate::service::record::{Body, RecordKind, decode};

const SEGMENT: u64 = 8 * 1024;
const SHARDS: usize = 3;

fn config(dir: &Path, on_damage: OnDamage) -> Config {
    let mut c = Config {
        state_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.journal.segment_bytes = SEGMENT;
    c.journal.max_record_bytes = 2048;
    c.journal.on_damage = on_damage;
    c
}

/// What was written: the journal's files, and every record with its location and
/// frame length.
struct Written {
    files: Vec<(std::ffi::OsString, Vec<u8>)>,
    records: Vec<(Record, Location, usize)>,
}

/// Per conversation: the highest seq, and each surviving entry by seq.
#[derive(Default, Debug)]
struct Truth {
    max_seq: u64,
    entries: BTreeMap<u64, (Body, bool)>,
}

/// A journal of the records of a random schedule, in 8 KiB segments
/// (built once per seed).
fn written(seed: u64) -> &'static Written {
    static CACHE: OnceLock<Vec<Written>> = OnceLock::new();
    let all = CACHE.get_or_init(|| (1..=2).map(build).collect());
    &all[(seed as usize - 1) % all.len()]
}

fn build(seed: u64) -> Written {
    let sim = crate::service::sim::tests::run_random(seed, 4_000);
    // One journal order for all shards: by time, each shard's own order kept.
    let mut records: Vec<(u64, usize, usize, Record)> = Vec::new();
    for (s, recs) in sim.records.iter().enumerate() {
        for (i, r) in recs.iter().enumerate() {
            records.push((r.time_ms, s, i, r.clone()));
        }
    }
    records.sort_by_key(|(t, s, i, _)| (*t, *s, *i));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), OnDamage::Refuse);
    cfg.journal.fsync = crate::journal::FsyncPolicy::Never;
    let j = Journal::open(&cfg.state_dir.join("journal"), &cfg.journal, |_, _| {}).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut out = Vec::new();
    for chunk in records.chunks(7) {
        let recs: Vec<Record> = chunk.iter().map(|(_, _, _, r)| r.clone()).collect();
        j.handle.append(recs.clone(), 0, &tx).unwrap();
        let locs = rx.recv().unwrap().result.unwrap();
        for (r, at) in recs.into_iter().zip(locs) {
            let len = crate::journal::frame_len(r.body.len());
            out.push((r, at, len));
        }
    }
    j.handle.shutdown();
    j.writer.join().unwrap();
    assert!(
        out.last().unwrap().1.segment > 3,
        "several segments: {}",
        out.len()
    );
    let files = fs::read_dir(cfg.state_dir.join("journal"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), fs::read(e.path()).unwrap())
        })
        .collect();
    Written {
        files,
        records: out,
    }
}

/// A state directory holding a copy of the written journal.
fn copy_of(w: &Written) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    fs::create_dir(to.path().join("journal")).unwrap();
    for (name, bytes) in &w.files {
        fs::write(to.path().join("journal").join(name), bytes).unwrap();
    }
    to
}

/// The damage one case does: a flipped byte, or a zeroed page.
#[derive(Debug, Clone, Copy)]
enum Harm {
    Flip,
    ZeroPage,
}

/// Applies `harm` at `off` of segment `seg`; returns the byte range whose contents
/// changed (empty if nothing did).
fn harm(dir: &Path, seg: u32, off: usize, what: Harm) -> std::ops::Range<usize> {
    let path = dir.join("journal").join(format!("{seg:010}.seg"));
    let mut bytes = fs::read(&path).unwrap();
    let before = bytes.clone();
    let range = match what {
        Harm::Flip => {
            bytes[off] ^= 0x40;
            off..off + 1
        }
        Harm::ZeroPage => {
            let start = off / 4096 * 4096;
            bytes[start..start + 4096].fill(0);
            start..start + 4096
        }
    };
    fs::write(&path, &bytes).unwrap();
    let first = (range.start..range.end).find(|&i| before[i] != bytes[i]);
    let last = (range.start..range.end)
        .rev()
        .find(|&i| before[i] != bytes[i]);
    match (first, last) {
        (Some(a), Some(b)) => a..b + 1,
        _ => 0..0,
    }
}

fn shards(config: &Config) -> Vec<Shard> {
    (0..SHARDS)
        .map(|_| {
            Shard::new(crate::service::conversation::ShardSettings::from_config(
                config,
            ))
        })
        .collect()
}

fn start(config: &Config) -> Result<(Vec<Shard>, Router, Journal), RecoveryError> {
    let mut shards = shards(config);
    let mut router = Router::new(crate::service::router::RouterSettings::from_config(config));
    let metrics = crate::metrics::Metrics::new(1, 1);
    let j = open_journal(config, &mut shards, &mut router, &metrics)?;
    Ok((shards, router, j))
}

fn stop(j: Journal) {
    j.handle.shutdown();
    j.writer.join().unwrap();
}

fn shard(shards: &[Shard], conversation: u64) -> &Shard {
    &shards[shard_of(conversation, SHARDS)]
}

/// The records whose checksummed bytes `changed` missed, and the truth they make.
fn truth(w: &Written, seg: u32, changed: &std::ops::Range<usize>) -> (HashMap<u64, Truth>, u64) {
    let mut t: HashMap<u64, Truth> = HashMap::new();
    let mut max_id = 0;
    for (r, at, _) in &w.records {
        max_id = max_id.max(r.conversation);
        let covered = at.offset as usize..at.offset as usize + 40 + r.body.len();
        let hit = at.segment == seg && covered.start < changed.end && changed.start < covered.end;
        let (kind, body) = decode(r.kind, &r.body).unwrap();
        if kind != RecordKind::Entry {
            continue;
        }
        let e = t.entry(r.conversation).or_default();
        e.max_seq = e.max_seq.max(body.entry.seq);
        e.entries.insert(body.entry.seq, (body, !hit));
    }
    (t, max_id)
}

/// One case: harm the journal, check the refusal names the range, salvage, check
/// that every surviving record is there, every hole is a visible gap, no seq is
/// reused, no conversation id is reused, and that a restart after salvage is clean.
fn check_case(seed: u64, seg_pick: f64, off_pick: f64, what: Harm) -> Result<(), TestCaseError> {
    let w = written(seed);
    let last = w.records.last().unwrap().1;
    let seg = 1 + ((f64::from(last.segment) * seg_pick) as u32).min(last.segment - 1);
    // The written part of that segment; in the last one, stop before its last record
    // (damage with nothing valid after it is a torn tail, repaired silently by design).
    let mut what = what;
    let end = w
        .records
        .iter()
        .filter(|(_, at, _)| at.segment == seg)
        .map(|(_, at, len)| {
            if seg == last.segment {
                at.offset as usize
            } else {
                at.offset as usize + len
            }
        })
        .max()
        .unwrap();
    let mut end = end;
    if seg == last.segment && matches!(what, Harm::ZeroPage) {
        // The whole page must lie before the last record.
        end = end / 4096 * 4096;
        if end < 4096 {
            (what, end) = (
                Harm::Flip,
                w.records
                    .iter()
                    .filter(|(_, at, _)| at.segment == seg)
                    .map(|(_, at, _)| at.offset as usize)
                    .max()
                    .unwrap(),
            );
        }
    }
    let off = 64 + ((end - 64) as f64 * off_pick) as usize;
    let off = off.min(end - 1);
    let d = copy_of(w);
    let changed = harm(d.path(), seg, off, what);
    let (truth, max_id) = truth(w, seg, &changed);

    // Refused, with the range named.
    let refuse = config(d.path(), OnDamage::Refuse);
    let lost_any = truth
        .values()
        .any(|t| t.entries.values().any(|(_, ok)| !ok));
    match start(&refuse) {
        Ok((_, _, j)) => {
            stop(j);
            prop_assert!(!lost_any, "a record was lost but the start was not refused");
        }
        Err(RecoveryError::Damaged { report, .. }) => {
            prop_assert!(
                report.contains(&format!("segment {seg:010}.seg offset")),
                "report does not name segment {seg}: {report}"
            );
        }
        Err(e) => prop_assert!(false, "unexpected error {e}"),
    }

    // Salvaged.
    let salvage = config(d.path(), OnDamage::Salvage);
    let (shards, router, j) = start(&salvage).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (&id, t) in &truth {
        let s = shard(&shards, id);
        let Some(orphan) = s.orphan(id) else {
            // Only a conversation whose every entry was lost may be missing.
            prop_assert!(
                t.entries.values().all(|(_, ok)| !ok),
                "conversation {id} gone"
            );
            continue;
        };
        let entries = s.transcript(id).unwrap();
        if !orphan {
            prop_assert!(
                entries.len() as u64 >= t.max_seq,
                "conversation {id} continues at {} but had {}",
                entries.len() + 1,
                t.max_seq
            );
        }
        for (seq, (body, ok)) in &t.entries {
            let got = &entries[*seq as usize - 1];
            if *ok {
                prop_assert_eq!(got, &body.entry, "conversation {} seq {}", id, seq);
                if Kind::from_u8(body.entry.kind) == Some(Kind::Send) {
                    let sent = s.sent_seq(id, &body.entry.sender, body.client_msg_id);
                    prop_assert_eq!(sent.map(|(q, _)| q), Some(*seq));
                }
            } else {
                prop_assert_eq!(got.kind, GAP, "conversation {} seq {} not a gap", id, seq);
            }
        }
    }
    prop_assert!(router.next_conversation_id() > max_id);
    let digests: Vec<_> = shards.iter().map(Shard::digest).collect();
    stop(j);

    // Clean from now on, and the same state.
    let (again, _, j) = start(&refuse).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(j.recovery.damage.is_empty());
    let after: Vec<_> = again.iter().map(Shard::digest).collect();
    for (a, b) in digests.iter().zip(&after) {
        for (id, d) in a {
            prop_assert_eq!(Some(d), b.get(id), "conversation {} after a restart", id);
        }
        prop_assert_eq!(a.len(), b.len());
    }
    stop(j);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_flipped_byte_anywhere_is_refused_or_salvaged_without_loss(
        seed in 1u64..=2, seg in 0.0f64..1.0, off in 0.0f64..1.0,
    ) {
        check_case(seed, seg, off, Harm::Flip)?;
    }

    #[test]
    fn a_zeroed_page_anywhere_is_refused_or_salvaged_without_loss(
        seed in 1u64..=2, seg in 0.0f64..1.0, off in 0.0f64..1.0,
    ) {
        check_case(seed, seg, off, Harm::ZeroPage)?;
    }
}

#[test]
fn a_clean_journal_starts_as_before() {
    let w = written(1);
    let d = copy_of(w);
    let (shards, router, j) = start(&config(d.path(), OnDamage::Refuse)).unwrap();
    assert!(j.recovery.damage.is_empty());
    let max_id = w
        .records
        .iter()
        .map(|(r, _, _)| r.conversation)
        .max()
        .unwrap();
    assert_eq!(router.next_conversation_id(), max_id + 1);
    assert!(shards.iter().all(|s| s.orphan(u64::MAX).is_none()));
    stop(j);
}

/// The fuzz target's harness, on a few fixed inputs (the fuzzer explores the rest).
#[test]
fn the_recovery_fuzz_harness_holds_on_sample_inputs() {
    let inputs: [&[u8]; 7] = [
        // Found by the fuzzer: a cut segment and a set byte.
        &[202, 253, 74, 255, 74, 206, 253, 74],
        &[],
        &[0, 0, 70, 0],
        &[1, 3, 0, 1],
        &[0, 0, 3, 1, 2, 0, 200, 0x41],
        &[1, 15, 0, 3],
        &[0, 0, 0, 0, 1, 0, 100, 1, 2, 8, 0, 2, 3, 1, 0, 0],
    ];
    for input in inputs {
        crate::service::recovery::fuzz_recovery(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
    }
}
