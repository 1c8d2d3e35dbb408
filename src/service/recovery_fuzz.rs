//! The harness behind the `journal_recovery` fuzz target
//! (`bench_support::journal_recovery`): a fixed multi-segment journal, damaged as the
//! input says, then checked, salvaged and restarted exactly as the daemon does.

use super::{Config, Journal, OnDamage, Router, Shard, check_journal, open_journal, record};

/// A journal directory's segment files: (name, bytes).
type Files = Vec<(std::ffi::OsString, Vec<u8>)>;

/// See `bench_support::journal_recovery`.
pub(crate) fn fuzz_recovery(damage: &[u8]) -> Result<(), String> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static BASE: OnceLock<Result<Files, String>> = OnceLock::new();
    static RUN: AtomicU64 = AtomicU64::new(0);
    let base = BASE.get_or_init(fuzz_base).as_ref().map_err(Clone::clone)?;
    let dir = std::env::temp_dir().join(format!(
        "switchboard-fuzz-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let result = fuzz_one(&dir, base, damage);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn fuzz_config(dir: &std::path::Path, on_damage: OnDamage) -> Config {
    let mut c = Config {
        state_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.journal.segment_bytes = 4096;
    c.journal.max_record_bytes = 512;
    c.journal.fsync = crate::journal::FsyncPolicy::Never;
    c.journal.on_damage = on_damage;
    c.workers.threads = 2;
    c
}

/// The fuzz target's undamaged journal: every record kind, a dozen conversations
/// interleaved over several 4 KiB segments.
fn fuzz_base() -> Result<Files, String> {
    use crate::protocol::Kind;
    use crate::protocol::messages::{Entry, role};
    use record::{Body, RecordKind};
    let dir = std::env::temp_dir().join(format!("switchboard-fuzz-base-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = fuzz_config(&dir, OnDamage::Refuse);
    let jdir = dir.join("journal");
    let j = Journal::open(&jdir, &cfg.journal, |_, _| {}).map_err(|e| e.to_string())?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let entry = |seq: u64, kind: Kind, who: &str, role: u8, body: &str| Entry {
        seq,
        time_ms: 1_000 + seq,
        kind: kind.as_u8(),
        sender_role: role,
        content_type: 1,
        flags: 0,
        sender: who.to_owned(),
        body: body.to_owned(),
    };
    let mut records = Vec::new();
    for conv in 1..=12u64 {
        let opened = Body {
            tenant: format!("t{}", conv % 2),
            visitor: format!("v{conv}"),
            visitor_name: "V".into(),
            group: "support".into(),
            ..Body::default()
        };
        records.push(record::record(conv, 0, 1_000, RecordKind::Opened, &opened));
    }
    for round in 1..=10u64 {
        for conv in 1..=12u64 {
            let (kind, e) = match (round, conv % 4) {
                (2, _) => (
                    RecordKind::Entry,
                    entry(2, Kind::Assigned, "a1", role::SYSTEM, "Alice"),
                ),
                (6, 0) => (RecordKind::Requeued, Entry::default()),
                (9, 1) => (
                    RecordKind::Entry,
                    entry(9, Kind::Close, "a1", role::AGENT, "done"),
                ),
                (10, 1) => (
                    RecordKind::Entry,
                    entry(10, Kind::Rate, &format!("v{conv}"), role::VISITOR, ""),
                ),
                (r, _) => (
                    RecordKind::Entry,
                    entry(
                        r,
                        Kind::Send,
                        &format!("v{conv}"),
                        role::VISITOR,
                        &"x".repeat(40 + (r as usize * 7) % 90),
                    ),
                ),
            };
            let seq = if kind == RecordKind::Requeued {
                round - 1
            } else {
                round
            };
            let body = Body {
                group: "support".into(),
                client_msg_id: round,
                entry: Entry { seq, ..e },
                ..Body::default()
            };
            if !(conv % 4 == 0 && round > 6 || conv % 4 == 1 && round > 10) {
                records.push(record::record(conv, seq, 1_000 + round, kind, &body));
            }
        }
    }
    for r in records {
        j.handle
            .append(vec![r], 0, &tx)
            .map_err(|e| e.to_string())?;
        rx.recv()
            .map_err(|e| e.to_string())?
            .result
            .map_err(|e| e.to_string())?;
    }
    j.handle.shutdown();
    let _ = j.writer.join();
    let mut files = Vec::new();
    for e in std::fs::read_dir(&jdir).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        if e.file_name().to_string_lossy().ends_with(".seg") {
            files.push((
                e.file_name(),
                std::fs::read(e.path()).map_err(|e| e.to_string())?,
            ));
        }
    }
    files.sort();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(files)
}

fn fuzz_one(
    dir: &std::path::Path,
    base: &[(std::ffi::OsString, Vec<u8>)],
    damage: &[u8],
) -> Result<(), String> {
    let jdir = dir.join("journal");
    std::fs::create_dir_all(&jdir).map_err(|e| e.to_string())?;
    let mut files: Vec<(std::ffi::OsString, Vec<u8>)> = base.to_vec();
    for op in damage.chunks_exact(4).take(16) {
        let [seg, hi, lo, action] = [op[0], op[1], op[2], op[3]];
        let Some((_, bytes)) = files.get_mut(usize::from(seg) % base.len().max(1)) else {
            continue;
        };
        let off = (usize::from(hi) << 8 | usize::from(lo)) % bytes.len().max(1);
        match action & 3 {
            0 => {
                if let Some(b) = bytes.get_mut(off) {
                    *b ^= action | 1;
                }
            }
            1 => {
                let end = (off + 512).min(bytes.len());
                if let Some(s) = bytes.get_mut(off..end) {
                    s.fill(0);
                }
            }
            2 => {
                if let Some(b) = bytes.get_mut(off) {
                    *b = action;
                }
            }
            _ => bytes.truncate(off),
        }
    }
    for (name, bytes) in &files {
        std::fs::write(jdir.join(name), bytes).map_err(|e| e.to_string())?;
    }
    let refuse = fuzz_config(dir, OnDamage::Refuse);
    let check = check_journal(&refuse).map_err(|e| format!("check: {e}"))?;
    let start = |cfg: &Config| -> Result<(Vec<Shard>, Journal), String> {
        let mut shards: Vec<Shard> = (0..2)
            .map(|_| {
                Shard::new(crate::service::conversation::ShardSettings::from_config(
                    cfg,
                ))
            })
            .collect();
        let mut router = Router::new(crate::service::router::RouterSettings::from_config(cfg));
        let metrics = crate::metrics::Metrics::new(1, 1);
        let j = open_journal(cfg, &mut shards, &mut router, &metrics).map_err(|e| e.to_string())?;
        Ok((shards, j))
    };
    let (salvaged, j) =
        start(&fuzz_config(dir, OnDamage::Salvage)).map_err(|e| format!("salvage: {e}"))?;
    let open: Vec<_> = salvaged.iter().map(Shard::open_conversations).collect();
    j.handle.shutdown();
    let _ = j.writer.join();
    let (again, j) = start(&refuse).map_err(|e| {
        format!(
            "restart after salvage: {e}\nthe check said: {}",
            check.plan.report()
        )
    })?;
    if !j.recovery.damage.is_empty() {
        return Err(format!("damage after salvage: {:?}", j.recovery.damage));
    }
    let open_again: Vec<_> = again.iter().map(Shard::open_conversations).collect();
    j.handle.shutdown();
    let _ = j.writer.join();
    if open != open_again {
        return Err(format!(
            "open conversations changed: {open:?} then {open_again:?}"
        ));
    }
    Ok(())
}
