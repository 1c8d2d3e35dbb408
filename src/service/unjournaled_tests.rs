//! A shard without a journal keeps only the newest `TAIL` entries of a conversation
//! (nothing could read older ones back): `History` ends at them, and a resume from
//! before them is not recovered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{Sim, send_msg, settings};
use crate::handoff::ConnId;
use crate::protocol::messages::{self, Cursor, Msg, role};
use crate::service::conversation::Shard;
use crate::service::transcript::TAIL;
use crate::service::{Effect, SessionReply};
use crate::service::{Resume, ShardMsg};

/// A simulator whose one shard keeps no journal, with a conversation of `n`
/// messages by visitor `v` (bodies `m<i>`). Returns it with `v` and the
/// conversation id.
fn setup(n: u64) -> (Sim, ConnId, u64) {
    let mut s = Sim::new(1, 5);
    let (_, mut shard) = settings();
    shard.journal = false;
    s.shards[0] = Shard::new(shard);
    let v = Sim::conn(1);
    s.connect(v, Sim::user("visitor"), role::VISITOR, &[]);
    s.settle();
    let mut conv = 0;
    for i in 0..n {
        let from = s.sender(v, role::VISITOR, &[], 1 + i as u32);
        s.request(from, send_msg(conv, 100 + i, &format!("m{i}")));
        s.settle();
        conv = s.take_accepted(v);
    }
    (s, v, conv)
}

/// `v`'s `History` page of up to `limit` entries before `before_seq`:
/// (sequence numbers, `more`).
fn page(s: &mut Sim, v: ConnId, conv: u64, before_seq: u64, limit: u16) -> (Vec<u64>, bool) {
    let from = s.sender(v, role::VISITOR, &[], 9_000);
    let h = messages::History {
        limit,
        conversation: conv,
        before_seq,
    };
    s.request(from, Msg::from(h));
    s.settle();
    s.take(v)
        .into_iter()
        .find_map(|g| match g.msg {
            Msg::HistoryPage(p) => Some((p.entries.iter().map(|e| e.seq).collect(), p.more)),
            _ => None,
        })
        .unwrap()
}

#[test]
fn history_ends_at_the_entries_kept_in_memory() {
    let n = TAIL as u64 + 10;
    let (mut s, v, conv) = setup(n);
    let kept: Vec<u64> = (n - TAIL as u64 + 1..=n).collect();
    // The newest page: every entry still in memory, and nothing before them.
    assert_eq!(page(&mut s, v, conv, 0, 50), (kept.clone(), false));
    // A shorter page says there is more, down to the oldest kept entry.
    let (seqs, more) = page(&mut s, v, conv, 0, 5);
    assert_eq!((seqs, more), ((n - 4..=n).collect(), true));
    let (seqs, more) = page(&mut s, v, conv, kept[5], 50);
    assert_eq!((seqs, more), (kept[..5].to_vec(), false));
    // Before what is kept: an empty last page, not an error.
    assert_eq!(page(&mut s, v, conv, 3, 50), (vec![], false));
    // Idempotency outlives the transcript: a resend of the first message is
    // answered with its `seq`, and nothing is stored twice.
    let from = s.sender(v, role::VISITOR, &[], 77);
    s.request(from, send_msg(conv, 100, "m0 again"));
    s.settle();
    let seq = s
        .take(v)
        .iter()
        .find_map(|g| match &g.msg {
            Msg::Accepted(a) => Some(a.seq),
            _ => None,
        })
        .unwrap();
    assert_eq!(seq, 1);
    assert_eq!(page(&mut s, v, conv, 0, 1).0, vec![n]);
}

#[test]
fn a_resume_from_before_the_kept_entries_is_not_recovered() {
    let n = TAIL as u64 + 10;
    let (mut s, _, conv) = setup(n);
    let w = Sim::conn(3);
    let resume = |last_seq| Resume {
        conn: w,
        who: Sim::user("visitor"),
        worker: 0,
        cursors: vec![Cursor {
            conversation: conv,
            last_seq,
        }],
        max_replay: 1_000,
    };
    let mut answers = |last_seq| {
        let mut out = Vec::new();
        s.shards[0].handle(
            ShardMsg::Resume(resume(last_seq)),
            crate::clock::UnixMs(5_000),
            &mut out,
        );
        out.into_iter()
            .find_map(|e| match e {
                Effect::Session(_, SessionReply::Resumed { answers, .. }) => Some(answers),
                _ => None,
            })
            .unwrap()
    };
    let old = answers(2);
    assert!(!old[0].recovered && old[0].frames.is_empty());
    let recent = answers(n - 3);
    assert!(recent[0].recovered);
    assert_eq!(recent[0].frames.len(), 3);
}
