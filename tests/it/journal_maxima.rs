//! Every kind of message the journal stores, at the exact maxima the protocol allows
//! (PROTOCOL.md sections 4, 6.3 and 8), over a real daemon with the journal on and the
//! default `journal.max_record_bytes`: each is accepted (never `Error` 503), nothing
//! counts as a storage error, and after a restart the transcripts read back identical.
//!
//! - the visitor's and the agent's tokens are as large as `Hello.token` allows
//!   (8192 bytes), with 256-byte user ids and the rest in tenant, name and groups, so
//!   the `Opened` and `Assigned` records carry the most a token can put in them;
//! - `Send` bodies of exactly 65,536 bytes (two-byte characters), `client_msg_id`
//!   `u64::MAX`, the largest content type;
//! - a `Transfer` to a 1,024-byte group with a 1,024-byte note (a `Requeued` record,
//!   then an assignment in that group), a `Close` reason and a `Rate` comment of
//!   1,024 bytes (three-byte characters), a 1,024-byte `Send.group` opening a second
//!   conversation, and a FAQ auto-reply of 65,536 bytes in it.

use crate::util;

use std::path::Path;
use std::time::Duration;

use crate::util::TokenClaims;
use crate::util::peer::Peer;
use switchboard::protocol::messages::{self, MAX_BODY, MAX_SHORT, MAX_TOKEN, Msg};
use switchboard::{Config, Server};

fn config(dir: &Path) -> Config {
    let mut c = util::test_config(dir);
    c.heartbeat.interval = Duration::from_secs(10);
    c.heartbeat.idle_timeout = Duration::from_secs(60);
    // One FAQ entry whose answer is as long as a message body may be.
    let faq = dir.join("faq.toml");
    std::fs::write(
        &faq,
        format!(
            "[[entry]]\nid = \"reset\"\nquestions = [\"How do I reset my password?\"]\n\
             answer = \"{}\"\n",
            "r".repeat(MAX_BODY)
        ),
    )
    .unwrap();
    c.assist.faq = Some(faq);
    c
}

/// The largest token (at most `MAX_TOKEN` bytes) for `sub` in `role` whose other
/// claims are `fill(n)` with `n` as large as fits.
fn largest_token(
    sub: &str,
    role: &str,
    fill: impl Fn(usize) -> (String, String, Vec<String>),
) -> String {
    let mut best = None;
    let (mut lo, mut hi) = (0, MAX_TOKEN);
    while lo <= hi {
        let n = (lo + hi) / 2;
        let (tenant, name, groups) = fill(n);
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let token = util::token_with(
            sub,
            role,
            &TokenClaims {
                groups: &groups,
                tenant: Some(&tenant),
                name: Some(&name),
                max_concurrent: None,
            },
        );
        if token.len() <= MAX_TOKEN {
            best = Some(token);
            lo = n + 1;
        } else {
            hi = n - 1;
        }
    }
    let token = best.unwrap();
    assert!(
        token.len() > MAX_TOKEN - 8,
        "token of {} bytes",
        token.len()
    );
    token
}

/// `n` bytes of text made of `c` (which must divide `n` in UTF-8 bytes, else the rest
/// is ASCII).
fn text(c: char, n: usize) -> String {
    let mut s = c.to_string().repeat(n / c.len_utf8());
    s.push_str(&"x".repeat(n - s.len()));
    assert_eq!(s.len(), n);
    s
}

fn storage_errors(server: &Server) -> u64 {
    server
        .metrics()
        .workers
        .iter()
        .map(|w| w.storage_errors.get())
        .sum()
}

fn entries(page: &messages::HistoryPage) -> Vec<(u64, u8, String, String)> {
    page.entries
        .iter()
        .map(|e| (e.seq, e.kind, e.sender.clone(), e.body.clone()))
        .collect()
}

#[test]
fn every_journalled_message_kind_is_stored_at_its_maxima() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let server = Server::start(&cfg).unwrap();
    let addr = server.client_addr();

    // One tenant and group, as long as the visitor's token can carry them.
    let visitor_id = text('v', 256);
    let visitor_token = largest_token(&visitor_id, "visitor", |n| {
        (text('t', n), text('n', n), vec![text('g', n)])
    });
    let claims = |token: &str| {
        let mut c = Config::default();
        c.auth.keys = vec![util::test_key()];
        switchboard::auth::Verifier::from_config(&c)
            .unwrap()
            .verify(token, std::time::SystemTime::now())
            .unwrap()
    };
    let visitor = claims(&visitor_token);
    let (tenant, group) = (visitor.tenant.clone(), visitor.groups[0].clone());
    let far_group = text('q', MAX_SHORT);
    let agent_token = |sub: &str, group: &str| {
        largest_token(sub, "agent", |n| {
            (tenant.clone(), text('a', n), vec![group.to_owned()])
        })
    };
    let (alice_id, bob_id) = (text('A', 256), text('B', 256));
    let alice_token = agent_token(&alice_id, &group);
    let bob_token = agent_token(&bob_id, &far_group);
    let (alice_name, bob_name) = (claims(&alice_token).name, claims(&bob_token).name);

    let mut alice = Peer::connect(addr, &alice_token, "alice");
    let mut vera = Peer::connect(addr, &visitor_token, "vera");

    // Opened (largest token) + a 65,536-byte message, then assigned to Alice.
    let body = text('é', MAX_BODY);
    let rid = vera.post(messages::Send {
        content_type: messages::content::JSON,
        ..util::peer::text(0, u64::MAX, &body)
    });
    let conv = vera
        .reply_to(rid, |m| match m {
            Msg::Accepted(a) => Some(a.clone()),
            _ => None,
        })
        .conversation;
    assert_eq!(alice.assigned(conv).agent_name, alice_name);
    // The agent's message, as large.
    let answer = text('ü', MAX_BODY);
    assert_eq!(alice.send_accepted(conv, u64::MAX, &answer).seq, 3);
    // A transfer to a 1,024-byte group nobody serves yet (a Queued entry), then Bob
    // of that group connects and takes it (an assignment with the longest group).
    alice.post(messages::Transfer {
        conversation: conv,
        to_agent: String::new(),
        to_group: far_group.clone(),
        note: text('n', MAX_SHORT),
    });
    let mut bob = Peer::connect(addr, &bob_token, "bob");
    let assigned = bob.assigned(conv);
    assert_eq!(
        (assigned.group, assigned.agent_name),
        (far_group.clone(), bob_name.clone())
    );
    // Close and rating with the longest reason and comment.
    let reason = text('中', MAX_SHORT);
    vera.post(messages::Close {
        conversation: conv,
        seq: 0,
        reason: reason.clone(),
    });
    assert_eq!(vera.closed(conv).reason, reason);
    let comment = text('好', MAX_SHORT);
    vera.post(messages::Rate {
        score: 5,
        conversation: conv,
        comment: comment.clone(),
    });

    // A second conversation opened with the longest Send.group, which nobody serves:
    // the FAQ answers with 65,536 bytes.
    let side_group = text('s', MAX_SHORT);
    let rid = vera.post(messages::Send {
        group: side_group,
        ..util::peer::text(0, u64::MAX - 1, "How do I reset my password?")
    });
    let side = vera
        .reply_to(rid, |m| match m {
            Msg::Accepted(a) => Some(a.clone()),
            _ => None,
        })
        .conversation;
    let auto = vera.deliver(side);
    assert_eq!(auto.body.len(), MAX_BODY);

    let before = entries(&vera.history(conv));
    let expected = vec![
        (1, 16, visitor_id.clone(), body.clone()),
        (2, 33, alice_id.clone(), alice_name.clone()),
        (3, 16, alice_id.clone(), answer.clone()),
        (4, 32, String::new(), far_group.clone()),
        (5, 33, bob_id.clone(), bob_name.clone()),
        (6, 36, visitor_id.clone(), reason.clone()),
        (7, 37, visitor_id.clone(), comment.clone()),
    ];
    assert_eq!(before, expected);
    let side_before = entries(&vera.history(side));
    assert_eq!(side_before.len(), 2, "message and auto-reply");
    assert_eq!(storage_errors(&server), 0);
    drop((alice, bob, vera));
    assert!(server.shutdown().clean);

    // Everything was on disk: the restarted daemon has the same transcripts, and the
    // idempotency key of the open conversation's first message.
    let server = Server::start(&cfg).unwrap();
    let addr = server.client_addr();
    let mut vera = Peer::connect(addr, &visitor_token, "vera");
    assert_eq!(entries(&vera.history(conv)), expected);
    assert_eq!(entries(&vera.history(side)), side_before);
    let again = vera.send_accepted(side, u64::MAX - 1, "resent");
    assert_eq!((again.conversation, again.seq), (side, 1));
    assert_eq!(storage_errors(&server), 0);
    drop(vera);
    assert!(server.shutdown().clean);
}
