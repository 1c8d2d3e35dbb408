//! A damaged journal, end to end with the real binary: one flipped byte in a sealed
//! segment makes the daemon refuse to start, naming the range; `journal check` reports
//! it (exit 1) without changing anything; `journal salvage` repairs it; the restarted
//! daemon keeps every other acknowledged message with its seq, shows the lost one as
//! a gap entry, recognises resends, and never gives an acknowledged seq to a new
//! message. `journal.on_damage = "salvage"` does the same at start.

use crate::util;
use crate::util::http;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::Daemon;
use crate::util::peer::Peer;
use switchboard::protocol::messages::{Accepted, entry_kind, gap};

const BODY: usize = 1500;
/// The smallest segment the default record limit allows is about 66 KiB; 128 KiB
/// segments make a few hundred messages span several.
const SEGMENT: u64 = 128 * 1024;

/// A config file in `dir` (state in `dir/state`, kept across daemons).
fn config(dir: &Path, on_damage: &str) -> PathBuf {
    let toml = util::daemon_toml(&dir.join("state"))
        .replace(
            "segment_bytes = 1048576",
            &format!("segment_bytes = {SEGMENT}"),
        )
        .replace(
            "[journal]\n",
            &format!("[journal]\non_damage = {on_damage:?}\n"),
        );
    let path = dir.join("switchboard.toml");
    fs::write(&path, toml).unwrap();
    path
}

/// Conversations with acknowledged messages: conversation → seq → (client id, body).
type Acked = BTreeMap<u64, BTreeMap<u64, (u64, String)>>;

/// Four visitors chat with one agent until the journal has several segments; the
/// daemon is then stopped cleanly. Returns what was acknowledged.
fn chat(d: &Daemon) -> Acked {
    let addr = d.client_addr();
    let mut agent = Peer::connect(addr, &util::agent_token("alice", &["support"]), "alice");
    let mut acked = Acked::new();
    let mut note = |a: &Accepted, id: u64, body: &str| {
        acked
            .entry(a.conversation)
            .or_default()
            .insert(a.seq, (id, body.to_owned()));
    };
    let mut visitors = Vec::new();
    for v in 0..4u64 {
        let mut p = Peer::connect(addr, &util::token(&format!("v{v}"), "visitor"), "v");
        let body = format!("{v}:opening:{}", "o".repeat(BODY));
        let a = p.send_accepted(0, 1, &body);
        note(&a, 1, &body);
        agent.assigned(a.conversation);
        visitors.push((p, a.conversation));
    }
    for i in 0..40u64 {
        for (v, (p, conv)) in visitors.iter_mut().enumerate() {
            let body = format!("{v}:{i}:{}", "m".repeat(BODY));
            let a = p.send_accepted(*conv, 100 + i, &body);
            note(&a, 100 + i, &body);
        }
    }
    acked
}

fn stop(mut d: Daemon) {
    d.signal(libc::SIGTERM);
    assert!(d.wait(Duration::from_secs(20)).unwrap().success());
}

fn journal_dir(config: &Path) -> PathBuf {
    config.parent().unwrap().join("state/journal")
}

/// Flips one byte in the middle of segment 1 (sealed: later segments exist); returns
/// its offset.
fn flip_in_first_segment(config: &Path) -> u64 {
    let dir = journal_dir(config);
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        dir.join("0000000003.seg").exists(),
        "at least three segments: {names:?}"
    );
    let path = dir.join("0000000001.seg");
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    at as u64
}

fn run(config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    let (status, out, err) = util::run_bin(&all, Duration::from_secs(60));
    (status.code().unwrap_or(-1), out, err)
}

/// After salvage: every acknowledged message but the lost ones is there with its seq
/// and body, each lost one is a gap entry, a resend gets its first seq back, and new
/// messages continue after the highest acknowledged seq.
fn check_salvaged(d: &Daemon, acked: &Acked) -> usize {
    let addr = d.client_addr();
    let mut agent = Peer::connect(addr, &util::agent_token("alice", &["support"]), "alice");
    let mut gaps = 0;
    for (conv, msgs) in acked {
        let page = agent.history(*conv);
        let by_seq: BTreeMap<u64, _> = page.entries.iter().map(|e| (e.seq, e)).collect();
        for (seq, (_, body)) in msgs {
            let e = by_seq
                .get(seq)
                .unwrap_or_else(|| panic!("conversation {conv} seq {seq} missing"));
            if e.kind == entry_kind::GAP {
                assert_eq!(e.content_type, gap::LOST);
                gaps += 1;
            } else {
                assert_eq!(&e.body, body, "conversation {conv} seq {seq}");
            }
        }
        let max = *msgs.keys().max().unwrap();
        let next = agent.send_accepted(*conv, 9_000, "after salvage");
        assert!(
            next.seq > max,
            "conversation {conv}: new seq {} <= {max}",
            next.seq
        );
    }
    // A resend of a surviving message of a visitor is recognised.
    let (conv, msgs) = acked.iter().next().unwrap();
    let (seq, (id, body)) = msgs.iter().last().unwrap();
    let v = body.split(':').next().unwrap();
    let mut visitor = Peer::connect(addr, &util::token(&format!("v{v}"), "visitor"), "v");
    let again = visitor.send_accepted(*conv, *id, body);
    assert_eq!((again.conversation, again.seq), (*conv, *seq));
    gaps
}

/// A state directory whose journal was filled by [`chat`] and then damaged by
/// [`flip_in_first_segment`]: (the directory, its config file, what was acknowledged,
/// the offset of the flipped byte).
fn damaged_journal(on_damage: &str) -> (tempfile::TempDir, PathBuf, Acked, u64) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), on_damage);
    let d = Daemon::start(&config, &[]);
    let acked = chat(&d);
    stop(d);
    let at = flip_in_first_segment(&config);
    (dir, config, acked, at)
}

#[test]
fn a_flipped_byte_is_refused_checked_salvaged_and_nothing_acknowledged_is_reused() {
    let (_dir, config, acked, at) = damaged_journal("refuse");

    // The daemon refuses, naming the damaged range.
    let (code, _, err) = run(&config, &["run"]);
    // Exit 2: nothing a restart can fix (the unit's RestartPreventExitStatus=2).
    assert_eq!(code, 2, "a damaged journal must be refused: {err}");
    assert!(err.contains("segment 0000000001.seg offset"), "{err}");
    assert!(err.contains("journal salvage"), "{err}");

    // `journal check` says the same, changes nothing, and exits 1.
    let before = fs::read(journal_dir(&config).join("0000000001.seg")).unwrap();
    let (code, out, _) = run(&config, &["journal", "check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 damaged range(s)"), "{out}");
    let offset: u64 = out
        .split("segment 0000000001.seg offset ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(offset <= at, "range starts at {offset}, damage at {at}");
    assert_eq!(
        fs::read(journal_dir(&config).join("0000000001.seg")).unwrap(),
        before
    );

    // Salvage offline, then the journal is clean and the daemon starts.
    let (code, out, err) = run(&config, &["journal", "salvage"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        journal_dir(&config)
            .join(format!("0000000001.seg.damaged-{offset}"))
            .exists()
    );
    let (code, out, _) = run(&config, &["journal", "check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no damage"), "{out}");
    let d = Daemon::start(&config, &[]);
    let gaps = check_salvaged(&d, &acked);
    assert_eq!(gaps, 1, "one message was in the damaged record");
    stop(d);
}

#[test]
fn on_damage_salvage_starts_anyway_and_counts_it() {
    let (_dir, config, acked, _) = damaged_journal("salvage");
    let d = Daemon::start(&config, &[]);
    let gaps = check_salvaged(&d, &acked);
    assert_eq!(gaps, 1);
    let metrics = http::get(d.admin_addr().unwrap(), "/metrics").body;
    assert!(
        metrics.contains("switchboard_journal_damaged_ranges 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_journal_gap_seqs_total{kind=\"lost\"} 1"),
        "{metrics}"
    );
    stop(d);
}
