//! The assistants on the message path, through the SDK over loopback (tests/data
//! libraries): a FAQ question in a waiting conversation gets an automatic answer both
//! sides see; spam is refused (403) and never reaches the agent; an insult, or a
//! customer quoting a phishing SMS, is delivered flagged; a threat (two signals) blocks
//! the visitor (205, connection closed); an agent's `Suggest`
//! returns canned replies by prefix and despite a typo.

use crate::util;

use std::path::PathBuf;
use std::time::Duration;

use crate::util::peer::{Peer, service_server, text};
use switchboard::protocol::messages::{self, Msg, flags, role};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn server() -> util::TestServer {
    service_server(|c| {
        c.assist.faq = Some(data("faq.toml"));
        c.assist.canned = Some(data("canned.toml"));
        c.assist.spam = Some(data("spam.toml"));
    })
}

fn alice(server: &util::TestServer) -> Peer {
    Peer::connect(
        server.addr(),
        &util::agent_token("alice", &["support"]),
        "alice",
    )
}

/// Alice (support) serves the conversation Vera opened with "hi".
fn alice_serves_vera(server: &util::TestServer) -> (Peer, Peer, u64) {
    let mut alice = alice(server);
    let mut vera = Peer::connect(server.addr(), &util::token("vera", "visitor"), "vera");
    let conv = vera.send_accepted(0, 1, "hi").conversation;
    alice.assigned(conv);
    (alice, vera, conv)
}

#[test]
fn a_faq_question_in_the_queue_is_answered_automatically() {
    let server = server();
    let mut vera = Peer::connect(server.addr(), &util::token("vera", "visitor"), "vera");
    let conv = vera.send_accepted(0, 1, "hello").conversation;
    let asked = vera.send_accepted(conv, 2, "How do I reset my password?");
    let auto = vera.deliver(conv);
    assert_eq!(auto.seq, asked.seq + 1, "the answer follows the question");
    assert_eq!(
        (auto.sender_role, auto.flags),
        (role::SYSTEM, flags::AUTO_REPLY)
    );
    assert!(auto.body.contains("Forgot password"), "{}", auto.body);
    // Small talk matches nothing; the agent who takes it sees the whole exchange.
    vera.send_accepted(conv, 3, "thanks, and the weather is nice today");
    let mut alice = alice(&server);
    alice.assigned(conv);
    let page = alice.history(conv);
    let autos: Vec<_> = page
        .entries
        .iter()
        .filter(|e| e.flags & flags::AUTO_REPLY != 0)
        .collect();
    assert_eq!(autos.len(), 1, "{page:?}");
    // Once an agent serves it, questions go to the agent alone.
    vera.send_accepted(conv, 4, "How do I reset my password?");
    let d = alice.deliver(conv);
    assert_eq!((d.sender.as_str(), d.flags), ("vera", 0));
    // The shard answers History after anything it sent for that question.
    vera.history(conv);
    vera.expect_none(
        "a second auto-reply",
        Duration::ZERO,
        |m| matches!(m, Msg::Deliver(d) if d.flags & flags::AUTO_REPLY != 0),
    );

    // Alice marks the automatic reply wrong: counted (and logged with the question).
    let wrong = |seq: u64| messages::WrongReply {
        conversation: conv,
        seq,
        comment: "asked about the shop, not the console".into(),
    };
    alice.post(wrong(auto.seq));
    // Not an automatic reply: 400; not the serving agent: 403.
    let rid = alice.post(wrong(asked.seq));
    alice.expect_error(rid, 400);
    let rid = vera.post(wrong(auto.seq));
    vera.expect_error(rid, 403);
    let marked = server
        .metrics()
        .workers
        .iter()
        .map(|w| w.faq_wrong.get())
        .sum::<u64>();
    assert_eq!(marked, 1);
    // The confidence of each question the FAQ looked at is in the histogram.
    let looked: u64 = server
        .metrics()
        .workers
        .iter()
        .flat_map(|w| w.faq_confidence.buckets.iter().map(|b| b.get()))
        .sum();
    assert_eq!(looked, 3, "hello, the question, the small talk");
}

#[test]
fn spam_is_refused_insults_are_flagged_threats_block() {
    let server = server();
    let (mut alice, mut vera, conv) = alice_serves_vera(&server);

    let rid = vera.post(text(
        conv,
        2,
        "Win big at our online casino, free spins today!",
    ));
    vera.expect_error(rid, 403);
    let ok = vera.send_accepted(conv, 3, "sorry, wrong window");
    let d = alice.deliver(conv);
    assert_eq!(
        (d.seq, d.body.as_str()),
        (ok.seq, "sorry, wrong window"),
        "spam never stored"
    );

    let insult = vera.send_accepted(conv, 4, "your product is stupid");
    let d = alice.deliver(conv);
    assert_eq!((d.seq, d.flags), (insult.seq, flags::FLAGGED));

    // A customer quoting a phishing message is flagged for Alice, never refused.
    let report = vera.send_accepted(
        conv,
        5,
        "I got an SMS: 'you have won, click here to claim' - is this you?",
    );
    let d = alice.deliver(conv);
    assert_eq!((d.seq, d.flags), (report.seq, flags::FLAGGED));

    let rid = vera.post(text(conv, 6, "I will kill you, I will find you"));
    let e = vera.reply_to(rid, |m| match m {
        Msg::Error(e) => Some(e.clone()),
        _ => None,
    });
    assert_eq!(e.code, 205, "{e:?}");
    // Every action is counted.
    let sum = |f: fn(&switchboard::metrics::WorkerMetrics) -> u64| {
        server.metrics().workers.iter().map(|w| f(w)).sum::<u64>()
    };
    assert_eq!(sum(|w| w.filtered.dropped.get()), 1);
    assert_eq!(sum(|w| w.filtered.flagged.get()), 2);
    assert_eq!(sum(|w| w.filtered.blocked.get()), 1);
}

#[test]
fn agents_get_canned_replies_by_prefix_and_despite_typos() {
    let server = server();
    let (mut alice, mut vera, conv) = alice_serves_vera(&server);
    for prefix in ["Thanks for your pat", "Thanks for yuor pat"] {
        let reply = alice
            .request(messages::Suggest {
                limit: 3,
                faq: false,
                conversation: conv,
                prefix: prefix.into(),
            })
            .unwrap();
        let Msg::Suggestions(s) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(s.prefix, prefix);
        assert!(
            s.items
                .iter()
                .any(|i| i.text.starts_with("Thanks for your patience")),
            "{prefix}: {s:?}"
        );
        assert!(s.items.len() <= 3);
    }
    // A visitor may not ask.
    let rid = vera.post(messages::Suggest {
        limit: 3,
        faq: false,
        conversation: conv,
        prefix: "Th".into(),
    });
    vera.expect_error(rid, 403);
}

#[test]
fn agents_get_faq_hints_for_a_visitors_question_and_none_for_small_talk() {
    let server = server();
    let (mut alice, mut vera, conv) = alice_serves_vera(&server);
    let ask = |alice: &mut Peer, question: &str| {
        let reply = alice
            .request(messages::Suggest {
                limit: 3,
                faq: true,
                conversation: conv,
                prefix: question.into(),
            })
            .unwrap();
        let Msg::Suggestions(s) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(s.prefix, question);
        s.items
    };
    let hints = ask(&mut alice, "i forgot my password, how do i reset it");
    assert_eq!(hints.len(), 1, "{hints:?}");
    assert!(hints[0].text.contains("Forgot password"), "{hints:?}");
    assert_eq!(hints[0].id, 0);
    assert!(
        (1..=1000).contains(&hints[0].uses),
        "similarity in thousandths: {hints:?}"
    );
    // Nothing close: no hint (not the closest entry whatever its score).
    assert!(ask(&mut alice, "lovely weather today").is_empty());
    // Canned replies are still what `faq: false` asks for.
    let reply = alice
        .request(messages::Suggest {
            limit: 3,
            faq: false,
            conversation: conv,
            prefix: "i forgot my password".into(),
        })
        .unwrap();
    let Msg::Suggestions(s) = reply else {
        panic!("{reply:?}")
    };
    assert!(
        s.items.iter().all(|i| !i.text.contains("Forgot password")),
        "{s:?}"
    );
    // A visitor may not ask for hints either.
    let rid = vera.post(messages::Suggest {
        limit: 1,
        faq: true,
        conversation: conv,
        prefix: "password".into(),
    });
    vera.expect_error(rid, 403);
}

#[test]
fn a_reload_picks_up_changed_libraries_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let faq = dir.path().join("faq.toml");
    let kb = |answer: &str| {
        format!(
            "[[entry]]\nid = \"hours\"\nquestions = [\"When are you open?\", \"opening hours\"]\nanswer = \"{answer}\"\n"
        )
    };
    std::fs::write(&faq, kb("9 to 5")).unwrap();
    let mut cfg = util::test_config(dir.path());
    cfg.heartbeat.interval = Duration::from_secs(10);
    cfg.heartbeat.idle_timeout = Duration::from_secs(60);
    cfg.assist.faq = Some(faq.clone());
    let server = switchboard::Server::start(&cfg).unwrap();
    let mut vera = Peer::connect(
        server.client_addr(),
        &util::token("vera", "visitor"),
        "vera",
    );
    let conv = vera.send_accepted(0, 1, "hello").conversation;
    vera.send_accepted(conv, 2, "When are you open?");
    assert_eq!(vera.deliver(conv).body, "9 to 5");

    std::fs::write(&faq, kb("around the clock")).unwrap();
    let report = server.reload(&cfg).unwrap();
    // The configuration is the same (nothing to list); the library is read again.
    assert!(report.changes.is_empty(), "{report:?}");
    // A broken library is refused and the one in force stays.
    std::fs::write(&faq, "[[entry]]\nid = 3\n").unwrap();
    assert!(server.reload(&cfg).is_err());
    vera.send_accepted(conv, 3, "what are your opening hours");
    assert_eq!(
        vera.deliver(conv).body,
        "around the clock",
        "same connection, new library"
    );
    drop(vera);
    assert!(server.shutdown().clean);
}

#[test]
fn a_visitor_over_its_message_rate_gets_429_and_nothing_is_stored() {
    let server = service_server(|c| {
        c.assist.rate_per_second = 0.001;
        c.assist.rate_burst = 3;
    });
    let mut vera = Peer::connect(server.addr(), &util::token("vera", "visitor"), "vera");
    let conv = vera.send_accepted(0, 1, "one").conversation;
    vera.send_accepted(conv, 2, "two");
    vera.send_accepted(conv, 3, "three");
    let rid = vera.post(text(conv, 4, "four"));
    let e = vera.expect_error(rid, 429);
    assert!(e.retryable, "{e:?}");
    assert_eq!(
        vera.history(conv).entries.len(),
        3,
        "the refused message is not stored"
    );
    let limited: u64 = server
        .metrics()
        .workers
        .iter()
        .map(|w| w.filtered.rate_limited.get())
        .sum();
    assert_eq!(limited, 1);
}

/// A visitor's first message that the abuse filter refuses (403 spam, 205 block, 429
/// over its rate) opens nothing: no conversation, no assignment, no queue entry, no
/// `Queued` frame to the group's staff, and nothing in the journal (a restart knows
/// none of them).
#[test]
fn a_refused_opening_message_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = util::test_config(dir.path());
    cfg.assist.spam = Some(data("spam.toml"));
    cfg.assist.rate_per_second = 0.001;
    cfg.assist.rate_burst = 2;
    // One worker: a visitor's rate bucket lives on the shard of its conversation, and
    // the refused opener must meet the same bucket.
    cfg.workers.threads = 1;
    let server = switchboard::Server::start(&cfg).unwrap();
    let addr = server.client_addr();
    let mut alice = Peer::connect(addr, &util::agent_token("alice", &["support"]), "alice");
    alice.post(messages::Presence {
        status: messages::presence::AWAY,
        user: String::new(),
    });
    alice.router_barrier();

    let mut spammer = Peer::connect(addr, &util::token("spammer", "visitor"), "spammer");
    let rid = spammer.post(text(
        0,
        1,
        "Win big at our online casino, free spins today!",
    ));
    assert_eq!(spammer.expect_error(rid, 403).conversation, 0);
    let mut threat = Peer::connect(addr, &util::token("threat", "visitor"), "threat");
    let rid = threat.post(text(0, 1, "I will kill you, I will find you"));
    let e = threat.reply_to(rid, |m| match m {
        Msg::Error(e) => Some(e.clone()),
        _ => None,
    });
    assert_eq!((e.code, e.conversation), (205, 0));
    // Vera's burst is two messages: her opening and one more; then opening another
    // conversation is over her rate.
    let mut vera = Peer::connect(addr, &util::token("vera", "visitor"), "vera");
    let conv = vera.send_accepted(0, 1, "hello").conversation;
    vera.send_accepted(conv, 2, "anyone?");
    let rid = vera.post(messages::Send {
        group: "billing".into(),
        ..text(0, 3, "a question about my invoice")
    });
    assert_eq!(vera.expect_error(rid, 429).conversation, 0);

    // Alice (away, a member of the group) heard of exactly one conversation waiting.
    alice.router_barrier();
    let queued: Vec<(u64, u32)> = alice.logged(|m| match m {
        Msg::Queued(q) => Some((q.conversation, q.position)),
        _ => None,
    });
    assert_eq!(queued, vec![(conv, 1)]);
    // The refused openers' ids name nothing (404, not 403: no one's conversation).
    for id in (1..conv + 3).filter(|&id| id != conv) {
        let rid = vera.post(messages::History {
            limit: 10,
            conversation: id,
            before_seq: 0,
        });
        vera.expect_error(rid, 404);
    }
    drop((alice, spammer, threat, vera));
    assert!(server.shutdown().clean);

    // Nothing of them was journaled: after a restart only Vera's conversation exists,
    // and Alice, back online, is given it.
    let server = switchboard::Server::start(&cfg).unwrap();
    let mut alice = Peer::connect(
        server.client_addr(),
        &util::agent_token("alice", &["support"]),
        "alice",
    );
    assert_eq!(alice.any_assigned().conversation, conv);
    alice.router_barrier();
    assert_eq!(
        alice.logged(|m| match m {
            Msg::Assigned(a) => Some(a.conversation),
            _ => None,
        }),
        vec![conv]
    );
    drop(alice);
    assert!(server.shutdown().clean);
}

/// A tenant with a rule file of its own (`assist.spam_tenants`) is checked against
/// it instead of the default file; other tenants keep the default rules.
#[test]
fn a_tenant_with_its_own_rule_file_is_checked_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let pets = dir.path().join("pets-spam.toml");
    std::fs::write(
        &pets,
        "refuse_signals = 1\n[[rule]]\nname = 'no-kittens'\naction = 'drop'\nkeywords = ['kitten']\n",
    )
    .unwrap();
    let server = service_server(|c| {
        c.assist.spam = Some(data("spam.toml"));
        c.assist.spam_tenants.insert("pets".into(), pets.clone());
    });
    let addr = server.addr();
    let mut p = Peer::connect(
        addr,
        &util::tenant_token("pat", "visitor", "pets", &[]),
        "pat",
    );
    let rid = p.post(text(0, 1, "selling a kitten"));
    assert_eq!(p.expect_error(rid, 403).conversation, 0);
    // The default rules do not apply to this tenant.
    p.send_accepted(0, 2, "online casino, free spins today");
    // Nor the tenant's to the others.
    let mut d = Peer::connect(addr, &util::token("dan", "visitor"), "dan");
    let conv = d.send_accepted(0, 1, "selling a kitten").conversation;
    let rid = d.post(text(
        conv,
        2,
        "Win big at our online casino, free spins today!",
    ));
    d.expect_error(rid, 403);
}
