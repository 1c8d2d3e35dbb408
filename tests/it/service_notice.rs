//! Admin broadcasts through the SDK: a `Notice` to a group reaches every connection
//! of that group's agents and nobody else; a `Notice` to everyone reaches every
//! connection of the tenant, and no other tenant.

use crate::util;

use std::time::Duration;

use crate::util::peer::{Peer, notice, service_server};

use switchboard::protocol::messages::Msg;

fn no_notice(p: &mut Peer, text: &str) {
    p.expect_none(
        &format!("notice {text:?}"),
        Duration::ZERO,
        |m| matches!(m, Msg::Notice(n) if n.text == text),
    );
}

#[test]
fn notices_reach_every_connection_of_their_audience_only() {
    let server = service_server(|_| {});
    let addr = server.addr();
    let sue = util::agent_token("sue", &["support"]);
    let stan = util::agent_token("stan", &["sales", "support"]);
    let vera = util::token("vera", "visitor");
    let mut sue1 = Peer::connect(addr, &sue, "sue#1");
    let mut sue2 = Peer::connect(addr, &sue, "sue#2");
    let mut stan1 = Peer::connect(addr, &stan, "stan#1");
    let mut pat = Peer::connect(addr, &util::agent_token("pat", &["sales"]), "pat");
    let mut vera1 = Peer::connect(addr, &vera, "vera#1");
    let mut vera2 = Peer::connect(addr, &vera, "vera#2");
    let mut root = Peer::connect(addr, &util::token("root", "admin"), "root");
    let mut other = Peer::connect(
        addr,
        &util::tenant_token("sue", "agent", "elsewhere", &["support"]),
        "sue@elsewhere",
    );

    // To a group: every connection of its agents.
    let rid = root.post(notice("support", "support: new refund policy"));
    for p in [&mut sue1, &mut sue2, &mut stan1] {
        let n = p.notice("support: new refund policy");
        assert_eq!((n.group.as_str(), n.from.as_str()), ("support", "root"));
        assert!(n.time_ms > 0, "the server stamps the notice");
    }
    root.no_reply(rid, Duration::ZERO);

    // To everyone: every connection of the tenant.
    root.post(notice("", "all: restart at 22:00"));
    for p in [
        &mut sue1, &mut sue2, &mut stan1, &mut pat, &mut vera1, &mut vera2,
    ] {
        let n = p.notice("all: restart at 22:00");
        assert_eq!((n.group.as_str(), n.from.as_str()), ("", "root"));
    }
    // The group notice came before it on every connection: whoever did not get it by
    // now never will.
    for p in [&mut pat, &mut vera1, &mut vera2, &mut root, &mut other] {
        no_notice(p, "support: new refund policy");
    }
    // Another tenant's agent of the same name and group hears neither.
    other.router_barrier();
    other.expect_none("a notice", Duration::ZERO, |m| matches!(m, Msg::Notice(_)));
    // A group with no agents: nobody hears it, and the admin gets no error.
    let rid = root.post(notice("billing", "billing: anyone?"));
    root.router_barrier();
    root.no_reply(rid, Duration::ZERO);
    for p in [&mut sue1, &mut pat, &mut vera1] {
        p.router_barrier();
        p.expect_none(
            "a notice",
            Duration::ZERO,
            |m| matches!(m, Msg::Notice(n) if n.text.starts_with("billing")),
        );
    }
}
