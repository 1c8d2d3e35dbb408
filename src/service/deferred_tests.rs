//! `History` pages held back while the asking connection owes too much output
//! (`service::deferred`), driven through the simulator with a real output ledger
//! standing in for the reactor's side.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use super::{Sim, send_msg, settings};
use crate::handoff::ConnId;
use crate::ledger::Ledger;
use crate::protocol::ErrorCode;
use crate::protocol::messages::{self, Msg, role};

/// A simulator with one shard and a conversation of `n` messages of 1,000 bytes by
/// visitor `v`; `max_pending` set to `budget`. Returns it with the ledger, where `v`
/// is open (as its reactor would have it), and the conversation id.
fn setup(budget: u32, n: u64) -> (Sim, Arc<Ledger>, ConnId, u64) {
    let mut s = Sim::new(1, 3);
    let ledger = Arc::new(Ledger::new(2, 64, Arc::default()));
    s.shards[0].set_ledger(ledger.clone());
    let (_, mut shard) = settings();
    shard.max_pending = budget;
    s.set_shard_settings(&shard);
    let v = Sim::conn(1);
    ledger.open(v.reactor, v.slot, v.generation);
    s.connect(v, Sim::user("visitor"), role::VISITOR, &[]);
    s.settle();
    let body = "x".repeat(1000);
    let mut conv = 0;
    for i in 0..n {
        let from = s.sender(v, role::VISITOR, &[], 1 + i as u32);
        s.request(from, send_msg(conv, 100 + i, &body));
        s.settle();
        conv = s.take_accepted(v);
    }
    (s, ledger, v, conv)
}

fn history(s: &mut Sim, v: ConnId, conv: u64, rid: u32) {
    let from = s.sender(v, role::VISITOR, &[], rid);
    let h = messages::History {
        limit: 2,
        conversation: conv,
        before_seq: 0,
    };
    s.request(from, Msg::from(h));
    s.settle();
}

fn pages(s: &mut Sim, v: ConnId) -> Vec<u32> {
    s.take(v)
        .into_iter()
        .filter(|g| matches!(g.msg, Msg::HistoryPage(_)))
        .map(|g| g.rid)
        .collect()
}

#[test]
fn pages_wait_while_the_connection_owes_its_bound_and_follow_in_order() {
    let (mut s, ledger, v, conv) = setup(3000, 6);
    for rid in 50..54 {
        history(&mut s, v, conv, rid);
    }
    // The first page goes (it owed nothing) and is charged; the others wait.
    assert_eq!(pages(&mut s, v), [50]);
    let owed = ledger.owed(v).unwrap();
    assert!(
        owed > 2000,
        "a page of two 1,000-byte entries is charged: {owed}"
    );
    assert!(s.shards[0].has_deferred());
    s.retry_deferred();
    assert_eq!(pages(&mut s, v), Vec::<u32>::new(), "no room yet");

    // The reactor takes the page into the socket: room for one more, in order.
    ledger.settle(v.reactor, v.slot, v.generation, -i64::from(owed));
    s.retry_deferred();
    assert_eq!(pages(&mut s, v), [51]);
    ledger.settle(v.reactor, v.slot, v.generation, -i64::from(u32::MAX));
    s.retry_deferred();
    assert_eq!(pages(&mut s, v), [52]);

    // A request arriving now queues behind the one still waiting.
    history(&mut s, v, conv, 54);
    assert_eq!(pages(&mut s, v), Vec::<u32>::new());
    ledger.settle(v.reactor, v.slot, v.generation, -i64::from(u32::MAX));
    s.retry_deferred();
    assert_eq!(pages(&mut s, v), [53]);
    ledger.settle(v.reactor, v.slot, v.generation, -i64::from(u32::MAX));
    s.retry_deferred();
    assert_eq!(pages(&mut s, v), [54]);
    assert!(!s.shards[0].has_deferred());
}

#[test]
fn waiting_requests_of_a_closed_connection_are_dropped() {
    let (mut s, ledger, v, conv) = setup(3000, 4);
    for rid in 50..60 {
        history(&mut s, v, conv, rid);
    }
    assert_eq!(pages(&mut s, v).len(), 1);
    ledger.close(v.reactor, v.slot);
    s.retry_deferred();
    assert!(!s.shards[0].has_deferred());
    assert!(pages(&mut s, v).is_empty(), "nothing is built for it");
}

#[test]
fn a_connection_that_keeps_asking_past_the_bound_is_cut_as_a_slow_consumer() {
    let (mut s, _ledger, v, conv) = setup(3000, 4);
    let (_, settings) = settings();
    for rid in 0..=settings.max_held + 1 {
        history(&mut s, v, conv, 1000 + rid);
    }
    assert_eq!(pages(&mut s, v).len(), 1);
    assert_eq!(s.closes, [(v, Some(ErrorCode::SlowConsumer))]);
}

#[test]
fn without_a_ledger_nothing_waits() {
    let mut s = Sim::new(1, 3);
    let v = Sim::conn(1);
    s.connect(v, Sim::user("visitor"), role::VISITOR, &[]);
    s.settle();
    let from = s.sender(v, role::VISITOR, &[], 1);
    s.request(from, send_msg(0, 100, "hi"));
    s.settle();
    let conv = s.take_accepted(v);
    for rid in 50..60 {
        history(&mut s, v, conv, rid);
    }
    assert_eq!(pages(&mut s, v).len(), 10);
    assert!(!s.shards[0].has_deferred());
}

#[test]
fn a_reconnect_is_replayed_within_the_byte_bound_or_not_at_all() {
    let (mut s, _ledger, _v, conv) = setup(3000, 6);
    let v2 = Sim::conn(3);
    let answer = |s: &mut Sim| {
        let mut out = Vec::new();
        let msg = crate::service::ShardMsg::Resume(crate::service::Resume {
            conn: v2,
            who: Sim::user("visitor"),
            worker: 0,
            cursors: vec![messages::Cursor {
                conversation: conv,
                last_seq: 0,
            }],
            max_replay: 1000,
        });
        s.shards[0].handle(msg, crate::clock::UnixMs(s.now), &mut out);
        out.into_iter()
            .find_map(|e| match e {
                crate::service::Effect::Session(
                    _,
                    crate::service::SessionReply::Resumed { answers, .. },
                ) => answers.into_iter().next(),
                _ => None,
            })
            .unwrap()
    };
    // Six 1,000-byte messages do not fit in 3,000 bytes: not replayed.
    let a = answer(&mut s);
    assert!(!a.recovered && a.frames.is_empty(), "{a:?}");
    let (_, mut shard) = settings();
    shard.max_pending = 1 << 20;
    s.set_shard_settings(&shard);
    let a = answer(&mut s);
    assert!(a.recovered && a.frames.len() >= 6, "{a:?}");
}
