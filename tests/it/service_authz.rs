//! Authorization through the SDK: every refusal is an `Error` with its code and the
//! request's id, changes nothing, and leaves the connection open; tenants never see
//! each other's conversations, agents or notices.

use crate::util;

use std::net::SocketAddr;
use std::time::Duration;

use crate::util::peer::{Peer, notice, service_server, text};
use crate::util::tenant_token;
use switchboard::protocol::Kind;
use switchboard::protocol::messages::{self, Msg};

fn agent(addr: SocketAddr, sub: &str, groups: &[&str]) -> Peer {
    Peer::connect(addr, &util::agent_token(sub, groups), sub)
}

fn visitor(addr: SocketAddr, sub: &str) -> Peer {
    Peer::connect(addr, &util::token(sub, "visitor"), sub)
}

/// Posts `msg` and expects an `Error` with `code` about `conversation`.
fn refused(p: &mut Peer, msg: impl Into<Msg>, code: u16, conversation: u64) {
    let msg = msg.into();
    let what = format!("{:?}", msg.kind());
    let rid = p.post(msg);
    let e = p.expect_error(rid, code);
    assert_eq!(
        e.conversation, conversation,
        "{}: the {what} refusal names the conversation: {e:?}",
        p.name
    );
    assert!(!e.retryable, "{}: {e:?}", p.name);
}

fn transfer(conversation: u64, to_agent: &str) -> messages::Transfer {
    messages::Transfer {
        conversation,
        to_agent: to_agent.into(),
        to_group: String::new(),
        note: "psst".into(),
    }
}

fn close(conversation: u64) -> messages::Close {
    messages::Close {
        conversation,
        seq: 0,
        reason: "nope".into(),
    }
}

fn claim(conversation: u64) -> messages::Claim {
    messages::Claim { conversation }
}

fn rate(conversation: u64) -> messages::Rate {
    messages::Rate {
        score: 1,
        conversation,
        comment: String::new(),
    }
}

#[test]
fn every_denial_is_an_error_that_changes_nothing() {
    let server = service_server(|_| {});
    let addr = server.addr();
    // Alice serves Vera (c1); Carol serves Walt (c2); Xena waits in "billing" (c3),
    // which nobody serves; Sam is in "sales"; Ted is a visitor of another tenant.
    let mut alice = agent(addr, "alice", &["support"]);
    let mut vera = visitor(addr, "vera");
    let c1 = vera.send_accepted(0, 1, "hi").conversation;
    assert_eq!(alice.assigned(c1).agent, "alice");
    let mut carol = agent(addr, "carol", &["support"]);
    let mut sam = agent(addr, "sam", &["sales"]);
    let mut walt = visitor(addr, "walt");
    let c2 = walt.send_accepted(0, 1, "hello").conversation;
    assert_eq!(carol.assigned(c2).agent, "carol");
    let mut xena = visitor(addr, "xena");
    let rid = xena.post(messages::Send {
        group: "billing".into(),
        ..text(0, 1, "my invoice")
    });
    let c3 = xena.reply_to(rid, |m| match m {
        Msg::Accepted(a) => Some(a.conversation),
        _ => None,
    });
    xena.queued_at(c3, 1);
    let mut ted = Peer::connect(
        addr,
        &tenant_token("ted", "visitor", "acme", &[]),
        "ted@acme",
    );
    vera.assigned(c1);
    walt.assigned(c2);

    // A visitor writing to, closing or rating another visitor's conversation: 403.
    refused(&mut walt, text(c1, 7, "let me in"), 403, c1);
    refused(&mut walt, close(c1), 403, c1);
    refused(&mut walt, rate(c1), 403, c1);
    // ... and from another tenant it does not even exist: 404.
    refused(&mut ted, text(c1, 7, "let me in"), 404, c1);
    refused(&mut ted, claim(c3), 404, c3);
    // An agent writing to, closing or transferring a conversation not assigned to it.
    refused(&mut carol, text(c1, 7, "I'll take it from here"), 403, c1);
    refused(&mut carol, close(c1), 403, c1);
    refused(&mut carol, transfer(c1, "carol"), 403, c1);
    refused(&mut sam, text(c1, 7, "hi from sales"), 403, c1);
    // A visitor transferring (even her own conversation) or claiming.
    refused(&mut vera, transfer(c1, "carol"), 403, c1);
    refused(&mut vera, claim(c3), 403, c3);
    refused(&mut walt, claim(c1), 403, c1);
    // An agent of another group claiming.
    refused(&mut alice, claim(c3), 403, c3);
    refused(&mut sam, claim(c3), 403, c3);
    // Claiming an assigned conversation.
    refused(&mut carol, claim(c1), 409, c1);
    // Rating an open conversation.
    refused(&mut vera, rate(c1), 409, c1);
    // Notices are for admins only.
    refused(&mut alice, notice("", "hear ye"), 403, 0);
    refused(&mut vera, notice("support", "hear ye"), 403, 0);
    // A conversation that does not exist.
    refused(&mut vera, text(987_654, 7, "hello?"), 404, 987_654);
    refused(&mut alice, claim(987_654), 404, 987_654);
    // Sending to a closed conversation.
    carol.post(close(c2));
    walt.closed(c2);
    carol.closed(c2);
    refused(&mut walt, text(c2, 8, "wait, one more thing"), 409, c2);
    refused(&mut carol, text(c2, 8, "sorry, one more thing"), 409, c2);
    refused(&mut carol, close(c2), 409, c2);

    // Every connection is still open and served.
    for p in [
        &mut alice, &mut carol, &mut sam, &mut vera, &mut walt, &mut xena, &mut ted,
    ] {
        p.ping();
    }
    // c1 is unchanged: still Vera and Alice's, nothing stored by the refusals.
    let page = vera.history(c1);
    let kinds: Vec<(u64, u8)> = page.entries.iter().map(|e| (e.seq, e.kind)).collect();
    assert_eq!(
        kinds,
        vec![(1, Kind::Send.as_u8()), (2, Kind::Assigned.as_u8())],
        "c1's transcript: {page:?}"
    );
    let sent = vera.send_accepted(c1, 2, "still with me?");
    assert_eq!(sent.seq, 3);
    assert_eq!(alice.deliver(c1).body, "still with me?");
    let reply = alice.send_accepted(c1, 1, "yes");
    assert_eq!(vera.deliver(c1).body, "yes");
    assert_eq!(reply.seq, 4);
    // c3 still waits, unclaimed: the first billing agent gets it.
    let mut bill = agent(addr, "bill", &["billing"]);
    assert_eq!(bill.assigned(c3).agent, "bill");
    assert_eq!(xena.assigned(c3).agent, "bill");
    // Nobody else ever saw c1's events, a transfer note or a notice.
    for p in [&mut carol, &mut sam, &mut walt, &mut xena, &mut ted] {
        p.expect_none("c1's events", Duration::ZERO, |m| match m {
            Msg::Deliver(d) => d.conversation == c1,
            Msg::Assigned(a) => a.conversation == c1,
            Msg::Close(c) => c.conversation == c1,
            _ => false,
        });
    }
    for p in [
        &mut alice, &mut carol, &mut sam, &mut vera, &mut walt, &mut xena, &mut ted,
    ] {
        p.expect_none("a notice or transfer", Duration::ZERO, |m| {
            matches!(m, Msg::Notice(_) | Msg::Transfer(_))
        });
    }
    vera.expect_none("a Close", Duration::ZERO, |m| matches!(m, Msg::Close(_)));
    // c2 is closed, not rated: Walt can still rate it once.
    let rid = walt.post(messages::Rate {
        score: 4,
        conversation: c2,
        comment: String::new(),
    });
    walt.history(c2);
    walt.no_reply(rid, Duration::ZERO);
}

#[test]
fn tenants_never_see_each_other() {
    let server = service_server(|_| {});
    let addr = server.addr();
    let in_a = |sub: &str, role: &str, groups: &[&str]| {
        Peer::connect(
            addr,
            &tenant_token(sub, role, "a", groups),
            &format!("{sub}@a"),
        )
    };
    let in_b = |sub: &str, role: &str, groups: &[&str]| {
        Peer::connect(
            addr,
            &tenant_token(sub, role, "b", groups),
            &format!("{sub}@b"),
        )
    };
    // Tenant B has a free agent of the same group; tenant A has none.
    let mut bob = in_b("bob", "agent", &["support"]);
    let mut vera_b = in_b("vera", "visitor", &[]);
    let mut root_b = in_b("root", "admin", &[]);
    let mut vera_a = in_a("vera", "visitor", &[]);
    let conv = vera_a.send_accepted(0, 1, "hello from A").conversation;
    vera_a.queued_at(conv, 1);
    bob.router_barrier();
    bob.expect_none("anything from tenant A", Duration::ZERO, |m| {
        !matches!(m, Msg::Error(_) | Msg::Pong(_))
    });

    // Same user id, other tenant: not her conversation; nor can B's agent claim it
    // or read it.
    refused(&mut vera_b, text(conv, 2, "it's me, vera"), 404, conv);
    refused(&mut bob, claim(conv), 404, conv);
    refused(&mut bob, transfer(conv, "bob"), 404, conv);
    let rid = bob.post(messages::History {
        limit: 10,
        conversation: conv,
        before_seq: 0,
    });
    bob.expect_error(rid, 404);

    // Tenant A's agent takes it; B's agent still knows nothing.
    let mut amy = in_a("amy", "agent", &["support"]);
    assert_eq!(amy.assigned(conv).agent, "amy");
    assert_eq!(vera_a.assigned(conv).agent, "amy");
    amy.send_accepted(conv, 1, "hi, amy here");
    assert_eq!(vera_a.deliver(conv).body, "hi, amy here");

    // A's notices stay in A, to everyone or to a group.
    let mut root_a = in_a("root", "admin", &[]);
    let rid = root_a.post(notice("", "A: maintenance at noon"));
    vera_a.notice("A: maintenance at noon");
    amy.notice("A: maintenance at noon");
    root_a.no_reply(rid, Duration::ZERO);
    root_a.post(notice("support", "A: support meeting"));
    amy.notice("A: support meeting");
    // B's notice to everyone reaches B only, and is the last thing sent: anything
    // from A would have come before it on the same connections.
    root_b.post(notice("", "B: all good"));
    for p in [&mut bob, &mut vera_b] {
        p.notice("B: all good");
    }
    for p in [&mut bob, &mut vera_b, &mut root_b] {
        p.router_barrier();
        p.expect_none("anything of tenant A", Duration::ZERO, |m| match m {
            Msg::Notice(n) => n.text.starts_with("A:"),
            Msg::Assigned(_) | Msg::Deliver(_) | Msg::Queued(_) => true,
            _ => false,
        });
    }
    for p in [&mut vera_a, &mut amy] {
        p.expect_none(
            "B's notice",
            Duration::ZERO,
            |m| matches!(m, Msg::Notice(n) if n.text.starts_with("B:")),
        );
    }
}
