//! The mail core with a fake clock: record times and `now_ms` are plain numbers.

use std::time::Duration;

use super::*;
use crate::protocol::messages::Entry;
use crate::service::record::{Record, record};

const MIN: u64 = 60_000;

fn cfg() -> EmailConfig {
    EmailConfig {
        host: Some("127.0.0.1".into()),
        from: Some("s@example.com".into()),
        notify_to: Some("desk@example.com".into()),
        digest_interval: Duration::from_millis(MIN),
        max_digest_messages: 3,
        max_backoff: Duration::from_secs(8),
        ..EmailConfig::default()
    }
}

fn opened(conv: u64, group: &str) -> Record {
    let body = Body {
        tenant: "acme".into(),
        visitor: "v1".into(),
        visitor_name: "Ann".into(),
        group: group.into(),
        ..Body::default()
    };
    record(conv, 0, 0, RecordKind::Opened, &body)
}

#[allow(clippy::too_many_arguments)]
fn entry_at(
    conv: u64,
    seq: u64,
    time_ms: u64,
    kind: Kind,
    sender_role: u8,
    sender: &str,
    content_type: u8,
    flag_bits: u8,
    text: &str,
) -> Record {
    let body = Body {
        group: if kind == Kind::Assigned {
            "sales".into()
        } else {
            String::new()
        },
        entry: Entry {
            seq,
            time_ms,
            kind: kind.as_u8(),
            sender_role,
            content_type,
            flags: flag_bits,
            sender: sender.into(),
            body: text.into(),
        },
        ..Body::default()
    };
    record(conv, seq, time_ms, RecordKind::Entry, &body)
}

fn offline(conv: u64, seq: u64, t: u64, text: &str) -> Record {
    entry_at(
        conv,
        seq,
        t,
        Kind::Send,
        role::VISITOR,
        "v1",
        content::TEXT,
        flags::OFFLINE,
        text,
    )
}

fn visitor(conv: u64, seq: u64, t: u64, text: &str) -> Record {
    entry_at(
        conv,
        seq,
        t,
        Kind::Send,
        role::VISITOR,
        "v1",
        content::TEXT,
        0,
        text,
    )
}

fn reply(conv: u64, seq: u64, t: u64, text: &str) -> Record {
    entry_at(
        conv,
        seq,
        t,
        Kind::Send,
        role::AGENT,
        "a1",
        content::TEXT,
        flags::VISITOR_AWAY,
        text,
    )
}

fn profile(conv: u64, seq: u64, t: u64, json: &str) -> Record {
    entry_at(
        conv,
        seq,
        t,
        Kind::Send,
        role::VISITOR,
        "v1",
        content::PROFILE,
        0,
        json,
    )
}

fn assigned(conv: u64, seq: u64, t: u64) -> Record {
    entry_at(
        conv,
        seq,
        t,
        Kind::Assigned,
        role::SYSTEM,
        "a1",
        content::TEXT,
        0,
        "Bob",
    )
}

fn feed(m: &mut Mailer, records: &[Record]) -> Vec<Fed> {
    records.iter().map(|r| m.feed(r.borrowed())).collect()
}

/// Sends everything due at `now` (as an SMTP server accepting all would).
fn send_due(m: &mut Mailer, now: u64) -> Vec<Mail> {
    let mut out = Vec::new();
    while let Some(mail) = m.due(now) {
        m.sent(&mail, now).unwrap();
        out.push(mail);
    }
    out
}

#[test]
fn the_first_offline_message_is_notified_a_moment_later_with_the_profile_sent_after_it() {
    let mut m = Mailer::new(&cfg(), HashMap::new());
    feed(
        &mut m,
        &[opened(1, "sales"), offline(1, 1, 1_000, "is anyone there?")],
    );
    assert_eq!(m.pending(), 1);
    let at = 1_000 + FIRST_NOTICE_DELAY_MS;
    assert_eq!(m.next_deadline(), Some(at));
    assert_eq!(m.due(at - 1), None);
    // What a widget's "leave a message" sends right after the message.
    feed(
        &mut m,
        &[profile(1, 2, 1_200, r#"{"email":"ann@example.com"}"#)],
    );
    let mail = m.due(at).unwrap();
    assert!(mail.text.contains("ann@example.com"), "{}", mail.text);
    assert_eq!(mail.kind, MailKind::Offline);
    assert_eq!(mail.to, "desk@example.com");
    assert_eq!(mail.through, 1);
    assert!(mail.subject.contains("conversation 1"), "{}", mail.subject);
    assert!(mail.subject.contains("sales"), "{}", mail.subject);
    assert!(mail.text.contains("Ann: is anyone there?"), "{}", mail.text);
    let mark = m.sent(&mail, 1_050).unwrap();
    assert_eq!(mark.offline_through, 1);
    assert_eq!(mark.offline_sent_ms, 1_050);
    assert_eq!(m.pending(), 0);
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn later_offline_messages_gather_for_one_interval() {
    let mut m = Mailer::new(&cfg(), HashMap::new());
    feed(&mut m, &[opened(1, "sales"), offline(1, 1, 1_000, "one")]);
    let first = 1_000 + FIRST_NOTICE_DELAY_MS;
    assert_eq!(send_due(&mut m, first).len(), 1);
    feed(
        &mut m,
        &[offline(1, 2, 4_000, "two"), offline(1, 3, 5_000, "three")],
    );
    assert_eq!(m.next_deadline(), Some(first + MIN));
    assert!(send_due(&mut m, first + MIN - 1).is_empty());
    let mails = send_due(&mut m, first + MIN);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].text.contains("two") && mails[0].text.contains("three"));
    assert!(!mails[0].text.contains("one"));
    // Quiet for longer than the interval: the next one goes at once again.
    feed(&mut m, &[offline(1, 4, 10 * MIN, "four")]);
    assert_eq!(m.next_deadline(), Some(10 * MIN));
}

#[test]
fn groups_map_picks_the_address_and_without_one_it_is_counted_once() {
    let mut c = cfg();
    c.groups.insert("acme/vip".into(), "vip@example.com".into());
    c.notify_to = None;
    let mut m = Mailer::new(&c, HashMap::new());
    let fed = feed(
        &mut m,
        &[
            opened(1, "vip"),
            offline(1, 1, 1_000, "hi"),
            opened(2, "sales"),
            offline(2, 1, 1_000, "x"),
            offline(2, 2, 1_001, "y"),
        ],
    );
    let unaddressed: Vec<u64> = fed.iter().filter_map(|f| f.unaddressed).collect();
    assert_eq!(unaddressed, [2], "logged once per conversation");
    assert_eq!(m.pending(), 1);
    let mails = send_due(&mut m, 1_000 + FIRST_NOTICE_DELAY_MS);
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, "vip@example.com");
}

#[test]
fn replies_go_in_one_digest_an_interval_after_the_first() {
    let mut m = Mailer::new(&cfg(), HashMap::new());
    feed(
        &mut m,
        &[
            opened(1, "sales"),
            profile(1, 1, 500, r#"{"name":"Ann B","email":"ann@example.com"}"#),
            assigned(1, 2, 900),
            reply(1, 3, 1_000, "first"),
            reply(1, 4, 2_000, "second"),
            reply(1, 5, 3_000, "third"),
            reply(1, 6, 4_000, "fourth"),
            reply(1, 7, 5_000, "fifth"),
        ],
    );
    assert_eq!(m.next_deadline(), Some(1_000 + MIN));
    assert!(send_due(&mut m, MIN).is_empty());
    let mails = send_due(&mut m, 1_000 + MIN);
    assert_eq!(mails.len(), 1);
    let d = &mails[0];
    assert_eq!(d.kind, MailKind::Digest);
    assert_eq!(d.to, "ann@example.com");
    assert_eq!(d.through, 7);
    assert!(d.subject.starts_with("5 new replies"), "{}", d.subject);
    assert!(d.text.contains("Hello Ann B,"), "{}", d.text);
    assert!(d.text.contains("Bob: first"), "{}", d.text);
    assert!(d.text.contains("third") && !d.text.contains("fourth"));
    assert!(d.text.contains("and 2 more messages"), "{}", d.text);
}

#[test]
fn a_visitor_event_cancels_the_digest_but_closing_does_not() {
    let mut m = Mailer::new(&cfg(), HashMap::new());
    feed(
        &mut m,
        &[
            opened(1, "sales"),
            profile(1, 1, 500, r#"{"email":"ann@example.com"}"#),
            reply(1, 2, 1_000, "are you there?"),
            visitor(1, 3, 2_000, "yes, back"),
        ],
    );
    assert_eq!(m.pending(), 0);
    assert_eq!(m.next_deadline(), None);
    feed(
        &mut m,
        &[
            reply(1, 4, 3_000, "ok, done"),
            entry_at(
                1,
                5,
                3_500,
                Kind::Close,
                role::AGENT,
                "a1",
                content::TEXT,
                0,
                "solved",
            ),
        ],
    );
    let mails = send_due(&mut m, 3_000 + MIN);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].text.contains("ok, done") && !mails[0].text.contains("are you"));
}

#[test]
fn a_digest_waits_for_an_email_learned_later() {
    let mut m = Mailer::new(&cfg(), HashMap::new());
    feed(&mut m, &[opened(1, "sales"), reply(1, 1, 1_000, "hello?")]);
    assert_eq!(m.pending(), 1);
    assert_eq!(m.next_deadline(), None, "nowhere to send it yet");
    assert!(send_due(&mut m, 10 * MIN).is_empty());
    feed(
        &mut m,
        &[profile(1, 2, 10 * MIN, r#"{"email":"ann@example.com"}"#)],
    );
    assert_eq!(
        m.next_deadline(),
        Some(1_000 + MIN),
        "overdue: goes at once"
    );
    let mails = send_due(&mut m, 10 * MIN);
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, "ann@example.com");
}

#[test]
fn notes_unflagged_messages_and_system_entries_are_not_mailed() {
    let mut m = Mailer::new(&cfg(), HashMap::new());
    feed(
        &mut m,
        &[
            opened(1, "sales"),
            visitor(1, 1, 1_000, "online message"),
            entry_at(
                1,
                2,
                1_100,
                Kind::Note,
                role::AGENT,
                "a1",
                content::TEXT,
                flags::PRIVATE | flags::VISITOR_AWAY,
                "internal",
            ),
            entry_at(
                1,
                3,
                1_200,
                Kind::Send,
                role::AGENT,
                "a1",
                content::TEXT,
                0,
                "seen live",
            ),
        ],
    );
    assert_eq!(m.pending(), 0);
}

#[test]
fn compaction_copies_and_a_restart_mail_nothing_twice() {
    let c = cfg();
    let mut m = Mailer::new(&c, HashMap::new());
    let story = [
        opened(1, "sales"),
        offline(1, 1, 1_000, "hi"),
        profile(1, 2, 1_100, r#"{"email":"ann@example.com"}"#),
        assigned(1, 3, 2_000),
        reply(1, 4, 3_000, "hello Ann"),
    ];
    feed(&mut m, &story);
    assert_eq!(send_due(&mut m, 3_000 + MIN).len(), 2);
    // Retention copies the records forward: copies are skipped.
    let fed = feed(&mut m, &story);
    assert!(fed.iter().skip(1).all(|f| f.copy));
    assert_eq!(m.pending(), 0);
    // A restart reads the copies as the conversation's first records; the marks
    // say they were mailed.
    let mut again = Mailer::new(&c, m.marks().clone());
    feed(&mut again, &story);
    assert_eq!(again.pending(), 0);
    assert!(send_due(&mut again, 100 * MIN).is_empty());
}

#[test]
fn a_restart_before_the_digest_finds_it_due_at_the_same_time() {
    let c = cfg();
    let story = [
        opened(1, "sales"),
        offline(1, 1, 1_000, "hi"),
        profile(1, 2, 1_100, r#"{"email":"ann@example.com"}"#),
        reply(1, 3, 3_000, "one"),
        reply(1, 4, 3_100, "two"),
    ];
    let mut m = Mailer::new(&c, HashMap::new());
    feed(&mut m, &story);
    assert_eq!(send_due(&mut m, 3_100).len(), 1, "the offline notification");
    // Killed here: the digest was not sent. The next start replays the journal.
    let mut again = Mailer::new(&c, m.marks().clone());
    feed(&mut again, &story);
    assert_eq!(again.pending(), 1);
    assert_eq!(again.next_deadline(), Some(3_000 + MIN));
    let mails = send_due(&mut again, 3_000 + MIN);
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].kind, MailKind::Digest);
    assert!(mails[0].text.contains("one") && mails[0].text.contains("two"));
}

#[test]
fn past_max_pending_the_oldest_is_dropped_and_marked() {
    let mut c = cfg();
    c.max_pending = 2;
    let mut m = Mailer::new(&c, HashMap::new());
    let mut fed = Vec::new();
    for conv in 1..=3 {
        fed.extend(feed(
            &mut m,
            &[opened(conv, "sales"), offline(conv, 1, conv * 1_000, "hi")],
        ));
    }
    assert_eq!(fed.iter().map(|f| f.dropped).sum::<usize>(), 1);
    assert_eq!(m.pending(), 2);
    let dirty = m.take_dirty();
    assert_eq!(dirty.len(), 1);
    assert_eq!(dirty[0].0, 1, "the oldest");
    assert_eq!(dirty[0].1.offline_through, 1);
    let mails = send_due(&mut m, 10_000);
    let convs: Vec<u64> = mails.iter().map(|m| m.conversation).collect();
    assert_eq!(convs, [2, 3]);
}

#[test]
fn failures_back_off_with_jitter_and_permanent_ones_give_up() {
    let mut m = Mailer::new(&cfg(), HashMap::new());
    feed(&mut m, &[opened(1, "sales"), offline(1, 1, 1_000, "hi")]);
    let mut now = 1_000 + FIRST_NOTICE_DELAY_MS;
    let mail = m.due(now).unwrap();
    let mut waits = Vec::new();
    for _ in 0..6 {
        let Failed::RetryAt(at) = m.failed(&mail, now, false, u64::MAX / 3) else {
            panic!("transient failures are retried");
        };
        waits.push(at - now);
        assert_eq!(m.due(at - 1), None);
        assert!(m.due(at).is_some());
        now = at;
    }
    for (i, w) in waits.iter().enumerate() {
        let full = (1_000u64 << i).min(8_000);
        assert!((full / 2..=full).contains(w), "attempt {i}: {w} of {full}");
    }
    // A permanent refusal: given up at the third attempt in all.
    let mut m = Mailer::new(&cfg(), HashMap::new());
    feed(&mut m, &[opened(1, "sales"), offline(1, 1, 1_000, "hi")]);
    let mail = m.due(1_000 + FIRST_NOTICE_DELAY_MS).unwrap();
    assert!(matches!(
        m.failed(&mail, 1_000, true, 0),
        Failed::RetryAt(_)
    ));
    assert!(matches!(
        m.failed(&mail, 2_000, true, 0),
        Failed::RetryAt(_)
    ));
    let Failed::Dropped(mark) = m.failed(&mail, 3_000, true, 0) else {
        panic!("dropped at the third");
    };
    assert_eq!(mark.offline_through, 1);
    assert_eq!(m.pending(), 0);
}

#[test]
fn the_first_start_settles_the_history_and_retention_forgets() {
    let mut m = Mailer::new(&cfg(), HashMap::new());
    feed(&mut m, &[opened(1, "sales"), offline(1, 1, 1_000, "old")]);
    let settled = m.settle_all();
    assert_eq!(settled.len(), 1);
    assert_eq!(m.pending(), 0);
    assert_eq!(m.due(u64::MAX), None);
    m.retain(|_| false);
    assert!(m.marks().is_empty());
}
