//! The visitor profile in the shard (`PROFILE`, content type 6): who may write it,
//! how it merges, its bound after the merge, and that restore and rollback rebuild it.

use super::*;
use crate::protocol::ErrorCode;
use crate::protocol::messages::content;

fn profile_msg(conversation: u64, id: u64, body: &str) -> Msg {
    messages::Send {
        content_type: content::PROFILE,
        conversation,
        client_msg_id: id,
        group: String::new(),
        body: body.into(),
    }
    .into()
}

fn errors(got: &[Got]) -> Vec<u16> {
    got.iter()
        .filter_map(|g| match &g.msg {
            Msg::Error(e) => Some(e.code),
            _ => None,
        })
        .collect()
}

fn accepted_seqs(got: &[Got]) -> Vec<u64> {
    got.iter()
        .filter_map(|g| match &g.msg {
            Msg::Accepted(a) => Some(a.seq),
            _ => None,
        })
        .collect()
}

/// One shard; a visitor with a conversation served by agent alice. Returns the
/// simulator, the visitor's, a second visitor connection's and the agent's
/// connections, and the conversation.
fn served() -> (Sim, ConnId, ConnId, ConnId, u64) {
    let mut s = Sim::new(1, 3);
    let (v, v2, a) = (Sim::conn(1), Sim::conn(2), Sim::conn(3));
    s.connect(v, Sim::user("visitor"), role::VISITOR, &[]);
    s.connect(v2, Sim::user("visitor"), role::VISITOR, &[]);
    s.connect(a, Sim::user("alice"), role::AGENT, &["support"]);
    s.settle();
    s.request(s.sender(v, role::VISITOR, &[], 1), send_msg(0, 1, "hello"));
    s.settle();
    let conv = s.take_accepted(v);
    s.take(v2);
    s.take(a);
    (s, v, v2, a, conv)
}

#[test]
fn the_visitor_writes_its_profile_and_the_agent_gets_it() {
    let (mut s, v, v2, a, conv) = served();
    let body = r#"{"name":"Ann","email":"ann@example.com","fields":{"plan":"pro","tz":"UTC"}}"#;
    s.request(
        s.sender(v, role::VISITOR, &[], 2),
        profile_msg(conv, 7, body),
    );
    s.settle();
    assert_eq!(accepted_seqs(&s.take(v)).len(), 1);
    for conn in [a, v2] {
        let got = s.take(conn);
        assert!(
            got.iter().any(|g| matches!(&g.msg, Msg::Deliver(d)
                if d.content_type == content::PROFILE && d.body == body
                    && d.sender == "visitor" && d.sender_role == role::VISITOR)),
            "{got:?}"
        );
    }
    // A second one replaces, removes with null, merges fields key by key.
    let body = r#"{"email":null,"name":"Ann Lee","fields":{"tz":null,"lang":"de"}}"#;
    s.request(
        s.sender(v, role::VISITOR, &[], 3),
        profile_msg(conv, 8, body),
    );
    s.settle();
    let p = s.shards[0].profile(conv).expect("a profile");
    assert_eq!(
        p.to_value(),
        serde_json::json!({"name":"Ann Lee","fields":{"lang":"de","plan":"pro"}})
    );
    // A resend stores nothing and answers the same seq, even with another body.
    let first = accepted_seqs(&s.take(v));
    s.request(
        s.sender(v, role::VISITOR, &[], 4),
        profile_msg(conv, 8, r#"{"name":"X"}"#),
    );
    s.settle();
    assert_eq!(accepted_seqs(&s.take(v)), first);
    assert_eq!(
        s.shards[0].profile(conv).unwrap().name.as_deref(),
        Some("Ann Lee")
    );
    // Removing everything leaves no profile at all.
    let body = r#"{"name":null,"fields":{"lang":null,"plan":null}}"#;
    s.request(
        s.sender(v, role::VISITOR, &[], 5),
        profile_msg(conv, 9, body),
    );
    s.settle();
    assert_eq!(s.shards[0].profile(conv), None);
    s.shards[0].check_invariants();
}

#[test]
fn staff_may_not_and_the_gateway_writes_as_the_visitor() {
    let (mut s, v, _v2, a, conv) = served();
    let body = r#"{"name":"Mallory"}"#;
    s.request(
        s.sender(a, role::AGENT, &["support"], 2),
        profile_msg(conv, 1, body),
    );
    s.settle();
    assert_eq!(errors(&s.take(a)), [ErrorCode::Forbidden.as_u16()]);
    let b = Sim::conn(9);
    s.connect(b, Sim::user("bot"), role::BOT, &["support"]);
    s.settle();
    s.request(
        s.sender(b, role::BOT, &["support"], 3),
        profile_msg(conv, 1, body),
    );
    s.settle();
    assert_eq!(errors(&s.take(b)), [ErrorCode::Forbidden.as_u16()]);
    assert_eq!(s.shards[0].profile(conv), None);
    s.take(v);
    // An HTTP API write (the gateway) is stored as the visitor's.
    let api = Sim::conn(20);
    s.owner.insert(api, Sim::user("api:k1"));
    s.request(
        s.sender(api, role::SYSTEM, &[], 4),
        profile_msg(conv, 2, r#"{"email":"ann@example.com"}"#),
    );
    s.settle();
    assert_eq!(accepted_seqs(&s.take(api)).len(), 1);
    let last = s.shards[0].transcript(conv).unwrap().pop().unwrap();
    assert_eq!(
        (last.sender_role, last.sender.as_str(), last.content_type),
        (role::VISITOR, "visitor", content::PROFILE)
    );
    assert!(s.take(a).iter().any(|g| matches!(&g.msg, Msg::Deliver(d)
        if d.content_type == content::PROFILE && d.sender == "visitor")));
    assert!(s.take(v).iter().any(|g| matches!(&g.msg, Msg::Deliver(_))));
    assert_eq!(
        s.shards[0].profile(conv).unwrap().email.as_deref(),
        Some("ann@example.com")
    );
}

#[test]
fn the_merged_profile_stays_bounded() {
    let (mut s, v, _v2, a, conv) = served();
    let fields: Vec<String> = (0..32).map(|i| format!(r#""f{i}":"v""#)).collect();
    let body = format!(r#"{{"fields":{{{}}}}}"#, fields.join(","));
    s.request(
        s.sender(v, role::VISITOR, &[], 2),
        profile_msg(conv, 11, &body),
    );
    s.settle();
    let seqs = accepted_seqs(&s.take(v));
    let events = s.shards[0].transcript(conv).unwrap().len();
    s.take(a);
    s.request(
        s.sender(v, role::VISITOR, &[], 3),
        profile_msg(conv, 2, r#"{"fields":{"one-more":"x"}}"#),
    );
    s.settle();
    let got = s.take(v);
    assert_eq!(errors(&got), [ErrorCode::BadRequest.as_u16()]);
    assert!(
        got.iter()
            .any(|g| matches!(&g.msg, Msg::Error(e) if e.message.contains("32 fields")))
    );
    assert!(s.take(a).is_empty(), "nothing delivered");
    assert_eq!(s.shards[0].stats_mut().profiles_refused, 1, "counted");
    assert_eq!(s.shards[0].transcript(conv).unwrap().len(), events);
    assert_eq!(s.shards[0].profile(conv).unwrap().fields.len(), 32);
    // Refused, so not taken: the same id later with room is stored.
    s.request(
        s.sender(v, role::VISITOR, &[], 4),
        profile_msg(conv, 2, r#"{"fields":{"f0":null,"one-more":"x"}}"#),
    );
    s.settle();
    assert_eq!(accepted_seqs(&s.take(v)).len(), 1);
    assert_eq!(seqs.len(), 1);
    assert!(
        s.shards[0]
            .profile(conv)
            .unwrap()
            .fields
            .contains_key("one-more")
    );
}

#[test]
fn the_faq_and_the_abuse_filter_ignore_profiles() {
    let mut s = Sim::new(1, 4);
    let cfg = crate::assist::AssistConfig::default();
    let faq = crate::assist::FaqIndex::from_str(
        include_str!("../../tests/data/faq.toml"),
        crate::assist::Format::Toml,
        &cfg,
    )
    .unwrap();
    let libs = crate::assist::Libraries {
        faq: Some(std::sync::Arc::new(faq)),
        ..Default::default()
    };
    s.shards[0].set_assist(&libs, &cfg);
    let v = Sim::conn(1);
    s.connect(v, Sim::user("visitor"), role::VISITOR, &[]);
    s.settle();
    s.request(s.sender(v, role::VISITOR, &[], 1), send_msg(0, 1, "hi"));
    s.settle();
    let conv = s.take_accepted(v);
    let question = "How do I reset my password?";
    let body = serde_json::json!({ "name": question, "fields": { "q": question } }).to_string();
    s.request(
        s.sender(v, role::VISITOR, &[], 2),
        profile_msg(conv, 2, &body),
    );
    s.settle();
    assert_eq!(s.shards[0].stats_mut().auto_replies, 0);
    // The same words as a message are answered (the FAQ is on).
    s.request(
        s.sender(v, role::VISITOR, &[], 3),
        send_msg(conv, 3, question),
    );
    s.settle();
    assert_eq!(s.shards[0].stats_mut().auto_replies, 1);
}

#[test]
fn restore_and_rollback_rebuild_the_profile() {
    let (mut s, v, _v2, _a, conv) = served();
    for (id, body) in [
        (11, r#"{"name":"Ann","fields":{"a":"1","b":"2"}}"#),
        (12, r#"{"fields":{"a":null},"email":"ann@example.com"}"#),
    ] {
        s.request(
            s.sender(v, role::VISITOR, &[], 2),
            profile_msg(conv, id, body),
        );
        s.settle();
    }
    let want = s.shards[0].profile(conv).expect("a profile");
    let (_, settings) = settings();
    let mut fresh = Shard::new(settings.clone());
    for r in &s.records[0] {
        fresh.restore(r.borrowed(), None).unwrap();
    }
    fresh.finish_restore();
    assert_eq!(fresh.profile(conv), Some(want.clone()));
    assert_eq!(fresh.digest(), s.shards[0].digest());

    // A batch the journal fails to store takes its profile change back.
    let mut shard = Shard::new(settings);
    for r in &s.records[0] {
        shard.restore(r.borrowed(), None).unwrap();
    }
    shard.finish_restore();
    shard.set_epoch(1);
    let msg = ShardMsg::Request {
        from: s.sender(v, role::VISITOR, &[], 9),
        msg: profile_msg(conv, 13, r#"{"name":null,"fields":{"c":"3"}}"#),
    };
    shard.handle(msg, UnixMs(5_000), &mut Vec::new());
    assert_ne!(shard.profile(conv), Some(want.clone()));
    assert!(shard.last_dependent());
    shard.rollback();
    assert_eq!(shard.profile(conv), Some(want));
    shard.check_invariants();
}

#[test]
fn the_api_reads_a_conversation_with_its_profile() {
    let (mut s, v, _v2, _a, conv) = served();
    let body = r#"{"name":"Ann","fields":{"plan":"pro"}}"#;
    s.request(
        s.sender(v, role::VISITOR, &[], 2),
        profile_msg(conv, 11, body),
    );
    s.settle();
    let api = Sim::conn(20);
    s.owner.insert(api, Sim::user("api:k1"));
    let mut out = Vec::new();
    let info = |from| ShardMsg::Info {
        from,
        conversation: conv,
    };
    let reader = s.sender(api, role::ADMIN, &[], 5);
    s.shards[0].handle(info(reader), UnixMs(9_000), &mut out);
    let [Effect::Reactor(Command::Answer { rid: 5, body, .. })] = out.as_slice() else {
        panic!("{out:?}");
    };
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["conversation"], conv.to_string());
    assert_eq!(v["visitor"], "visitor");
    assert_eq!(
        v["visitor_profile"],
        serde_json::json!({"name":"Ann","fields":{"plan":"pro"}})
    );
    // Another tenant's conversation does not exist for it.
    let other = Sender {
        id: std::sync::Arc::new(crate::service::Principal {
            who: UserRef {
                tenant: "other".into(),
                user: "api:k2".into(),
            },
            name: String::new().into(),
            role: role::ADMIN,
            groups: Box::default(),
            addr: None,
        }),
        conn: api,
        rid: 6,
    };
    out.clear();
    s.shards[0].handle(info(other), UnixMs(9_000), &mut out);
    let [Effect::Reactor(Command::Send { frame, .. })] = out.as_slice() else {
        panic!("{out:?}");
    };
    let d = frame::decode(frame, u32::MAX).unwrap().unwrap();
    assert!(
        matches!(Msg::decode(d.header.kind, d.payload), Ok(Msg::Error(e)) if e.code == ErrorCode::NotFound.as_u16())
    );
}

/// What `GET /api/v1/conversations/{id}` answers `from`: the JSON, or the error code.
fn card(s: &mut Sim, from: Sender, conversation: u64) -> Result<serde_json::Value, u16> {
    let mut out = Vec::new();
    let msg = ShardMsg::Info { from, conversation };
    s.shards[0].handle(msg, UnixMs(9_000), &mut out);
    match out.as_slice() {
        [Effect::Reactor(Command::Answer { body, .. })] => {
            Ok(serde_json::from_slice(body).unwrap())
        }
        [Effect::Reactor(Command::Send { frame, .. })] => {
            let d = frame::decode(frame, u32::MAX).unwrap().unwrap();
            match Msg::decode(d.header.kind, d.payload) {
                Ok(Msg::Error(e)) => Err(e.code),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_card_shows_where_the_visitor_writes_from_to_its_agent_only() {
    let (mut s, _v, v2, a, conv) = served();
    assert_eq!(s.shards[0].agent_loads().get("alice"), Some(&1));
    let alice = |s: &Sim| s.sender(a, role::AGENT, &["support"], 5);
    // What the assigned agent's card says of the address.
    let address = |s: &mut Sim| {
        let from = alice(s);
        card(s, from, conv).unwrap()["visitor_address"].clone()
    };
    // Opened by a session that kept no address (an API caller, `off`): null.
    assert_eq!(address(&mut s), serde_json::Value::Null);
    // The visitor writes from another connection, whose session kept its address.
    let ip: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    let plain = s.sender(v2, role::VISITOR, &[], 3);
    let from = Sender {
        id: std::sync::Arc::new(crate::service::Principal {
            addr: Some(ip),
            ..(*plain.id).clone()
        }),
        ..plain
    };
    s.request(from, send_msg(conv, 2, "still there?"));
    s.settle();
    assert_eq!(address(&mut s), "203.0.113.7");
    // The agent's messages (no address) change nothing.
    s.request(alice(&s), send_msg(conv, 3, "yes"));
    s.settle();
    assert_eq!(address(&mut s), "203.0.113.7");
    // Another agent of the tenant, not assigned: no such conversation for it.
    let bob = Sim::conn(9);
    s.owner.insert(bob, Sim::user("bob"));
    let bob = s.sender(bob, role::AGENT, &["support"], 6);
    assert_eq!(card(&mut s, bob, conv), Err(ErrorCode::NotFound.as_u16()));
}

#[test]
fn the_abuse_filter_reads_no_profile_but_a_blocked_visitor_stays_blocked() {
    let mut s = Sim::new(1, 5);
    let cfg = crate::assist::AssistConfig::default();
    let spam = crate::assist::SpamRules::from_str(
        include_str!("../../tests/data/spam.toml"),
        crate::assist::Format::Toml,
        &cfg,
    )
    .unwrap();
    let libs = crate::assist::Libraries {
        spam: Some(std::sync::Arc::new(spam)),
        ..Default::default()
    };
    s.shards[0].set_assist(&libs, &cfg);
    let (v, v2) = (Sim::conn(1), Sim::conn(2));
    s.connect(v, Sim::user("visitor"), role::VISITOR, &[]);
    s.connect(v2, Sim::user("visitor"), role::VISITOR, &[]);
    s.settle();
    s.request(s.sender(v, role::VISITOR, &[], 1), send_msg(0, 1, "hi"));
    s.settle();
    let conv = s.take_accepted(v);
    // Words a rule drops, in a profile: stored as they are, not flagged or counted.
    let body = r#"{"name":"online casino","fields":{"note":"free spins"}}"#;
    s.request(
        s.sender(v, role::VISITOR, &[], 2),
        profile_msg(conv, 2, body),
    );
    s.settle();
    assert_eq!(accepted_seqs(&s.take(v)).len(), 1);
    let last = s.shards[0].transcript(conv).unwrap().pop().unwrap();
    assert_eq!((last.content_type, last.flags), (content::PROFILE, 0));
    assert_eq!(s.shards[0].stats_mut().dropped, 0);
    // A chat message that blocks the visitor: its profile updates are refused too.
    s.request(
        s.sender(v, role::VISITOR, &[], 3),
        send_msg(conv, 3, "I will find you, you will regret this"),
    );
    s.settle();
    // (A block closes the connection: its `Error` is the farewell.)
    assert_eq!(s.closes, [(v, Some(ErrorCode::Blocked))]);
    s.request(
        s.sender(v2, role::VISITOR, &[], 4),
        profile_msg(conv, 4, r#"{"name":"Ann"}"#),
    );
    s.settle();
    assert_eq!(s.closes.last(), Some(&(v2, Some(ErrorCode::Blocked))));
    assert_eq!(
        s.shards[0].profile(conv).unwrap().name.as_deref(),
        Some("online casino")
    );
}
