//! What supervisors and agents get over real loopback sockets: private
//! notes that never reach the visitor (live, in `History`, in a resume replay), an
//! admin reading any transcript of its tenant, the conversation list with its
//! filters, paging and refusals, `Disconnect` closing a user's sessions with 206, and
//! availability sent only to connections that asked with `Watch`.

use crate::util::http;
use crate::util::{self, TestServer};

use std::time::{Duration, SystemTime};

use switchboard::auth::{Claims, Verifier};
use switchboard::client::{Client, ClientConfig, ClientError, Incoming};
use switchboard::protocol::messages::{self, Msg, conversation_state, flags};

const WAIT: Duration = Duration::from_secs(10);

/// An in-process test server plus a verifier minting tokens it accepts.
struct Setup {
    server: TestServer,
    verifier: Verifier,
}

impl Setup {
    fn start() -> Self {
        let server = TestServer::start(|_| {});
        let verifier = server.verifier();
        Self { server, verifier }
    }

    fn metrics(&self) -> String {
        http::get(self.server.admin_addr(), "/metrics").body
    }

    fn connect(&self, sub: &str, role: &str, tenant: &str, groups: &[&str]) -> Client {
        let mut claims = Claims::new(sub, role, SystemTime::now(), Duration::from_secs(600));
        claims.name = Some(format!("{sub} name"));
        claims.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        claims.tenant = Some(tenant.to_owned());
        let token = self.verifier.mint(&claims, None).unwrap();
        let addr = self.server.addr().to_string();
        Client::connect(ClientConfig {
            client_name: "supervisors-test/1".into(),
            connect_timeout: WAIT,
            handshake_timeout: WAIT,
            ..ClientConfig::new(addr, token)
        })
        .expect("connects")
    }
}

/// Receives until `pick` accepts a message (others are kept in `seen`), or panics.
fn until<T>(
    c: &mut Client,
    seen: &mut Vec<Incoming>,
    mut pick: impl FnMut(&Msg) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        match c.recv(Duration::from_millis(200)) {
            Ok(Some(i)) => {
                if let Some(t) = pick(&i.msg) {
                    return t;
                }
                seen.push(i);
            }
            Ok(None) => {}
            Err(e) => panic!("recv: {e}; seen {seen:?}"),
        }
    }
    panic!("not received; seen {seen:?}");
}

/// A visitor opens a conversation that `agent` is assigned; returns its id.
fn open_assigned(visitor: &mut Client, agent: &mut Client, body: &str) -> u64 {
    visitor.send_text(0, body).unwrap();
    let mut seen = Vec::new();
    let conversation = until(visitor, &mut seen, |m| match m {
        Msg::Accepted(a) => Some(a.conversation),
        _ => None,
    });
    until(agent, &mut seen, |m| match m {
        Msg::Assigned(a) if a.conversation == conversation => Some(()),
        _ => None,
    });
    conversation
}

fn history(c: &mut Client, conversation: u64) -> Result<Vec<messages::Entry>, ClientError> {
    let reply = c.request(
        messages::History {
            limit: 100,
            conversation,
            before_seq: 0,
        },
        WAIT,
    )?;
    match reply {
        Msg::HistoryPage(p) => Ok(p.entries),
        other => panic!("expected HistoryPage, got {other:?}"),
    }
}

fn server_code(r: Result<impl std::fmt::Debug, ClientError>) -> u16 {
    match r {
        Err(ClientError::Server { code, .. }) => code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[test]
fn notes_reach_staff_only_and_admins_read_any_transcript_of_their_tenant() {
    let s = Setup::start();
    let mut agent = s.connect("a1", "agent", "acme", &["support"]);
    let mut agent_desk2 = s.connect("a1", "agent", "acme", &["support"]);
    let mut visitor = s.connect("v1", "visitor", "acme", &[]);
    let conversation = open_assigned(&mut visitor, &mut agent, "my order is late");

    let mut seen = Vec::new();
    let note_id = agent.note(conversation, "VIP, refund if asked").unwrap();
    until(&mut agent, &mut seen, |m| match m {
        Msg::Accepted(a) if a.client_msg_id == note_id => Some(()),
        _ => None,
    });
    // The agent's other desk gets it, flagged private.
    let delivered = until(&mut agent_desk2, &mut seen, |m| match m {
        Msg::Deliver(d) if d.body == "VIP, refund if asked" => Some(d.clone()),
        _ => None,
    });
    assert_ne!(delivered.flags & flags::PRIVATE, 0);
    // A visible reply after it: the visitor gets that one and never the note.
    agent.send_text(conversation, "looking into it").unwrap();
    let mut visitor_saw = Vec::new();
    until(&mut visitor, &mut visitor_saw, |m| match m {
        Msg::Deliver(d) if d.body == "looking into it" => Some(()),
        _ => None,
    });
    assert!(
        !format!("{visitor_saw:?}").contains("VIP"),
        "{visitor_saw:?}"
    );
    // The visitor's History skips it; the agent's has it, as kind 21.
    let for_visitor = history(&mut visitor, conversation).unwrap();
    assert!(
        for_visitor
            .iter()
            .all(|e| e.kind != 21 && !e.body.contains("VIP"))
    );
    assert!(for_visitor.iter().any(|e| e.body == "looking into it"));
    let for_agent = history(&mut agent, conversation).unwrap();
    let note = for_agent
        .iter()
        .find(|e| e.kind == 21)
        .expect("note in history");
    assert_eq!(note.body, "VIP, refund if asked");
    assert_ne!(note.flags & flags::PRIVATE, 0);

    // A visitor cannot write a note; a stranger agent cannot either.
    let r = visitor.request(
        messages::Note {
            conversation,
            client_msg_id: 5,
            body: "x".into(),
        },
        WAIT,
    );
    assert_eq!(server_code(r), 403);

    // An admin of the tenant reads the whole transcript, notes included; an admin of
    // another tenant does not see the conversation at all.
    let mut boss = s.connect("boss", "admin", "acme", &[]);
    let for_boss = history(&mut boss, conversation).unwrap();
    assert_eq!(for_boss.len(), for_agent.len());
    let mut other = s.connect("boss", "admin", "globex", &[]);
    assert_eq!(server_code(history(&mut other, conversation)), 404);

    // A reconnecting visitor's replay skips the note too.
    visitor.reconnect().unwrap();
    let mut replayed = Vec::new();
    while let Ok(Some(i)) = visitor.recv(Duration::from_millis(300)) {
        replayed.push(i);
    }
    assert!(!format!("{replayed:?}").contains("VIP"), "{replayed:?}");
}

#[test]
fn the_conversation_list_filters_pages_and_refuses_non_admins() {
    let s = Setup::start();
    let mut agent = s.connect("a1", "agent", "acme", &["support"]);
    let mut ids = Vec::new();
    let mut visitors = Vec::new();
    for i in 0..3 {
        let mut v = s.connect(&format!("v{i}"), "visitor", "acme", &[]);
        ids.push(open_assigned(&mut v, &mut agent, "hello"));
        visitors.push(v);
    }
    // Nobody serves sales: this one stays queued.
    let mut queued_visitor = s.connect("vq", "visitor", "acme", &["sales"]);
    queued_visitor.send_text(0, "anyone in sales?").unwrap();
    let mut seen = Vec::new();
    let queued = until(&mut queued_visitor, &mut seen, |m| match m {
        Msg::Accepted(a) => Some(a.conversation),
        _ => None,
    });
    // Another tenant's conversation never shows.
    let mut stranger = s.connect("x1", "visitor", "globex", &[]);
    stranger.send_text(0, "hi").unwrap();
    until(&mut stranger, &mut seen, |m| match m {
        Msg::Accepted(_) => Some(()),
        _ => None,
    });

    let mut boss = s.connect("boss", "admin", "acme", &[]);
    let all = boss
        .list_conversations(
            messages::ListConversations {
                limit: 100,
                state: conversation_state::ANY,
                ..Default::default()
            },
            WAIT,
        )
        .unwrap();
    let listed: Vec<u64> = all.items.iter().map(|i| i.conversation).collect();
    let mut expected = ids.clone();
    expected.push(queued);
    assert_eq!(listed, expected, "acme's, by id");
    assert!(!all.more);
    let q = all.items.iter().find(|i| i.conversation == queued).unwrap();
    assert_eq!(
        (
            q.state,
            q.group.as_str(),
            q.agent.as_str(),
            q.visitor.as_str()
        ),
        (conversation_state::QUEUED, "sales", "", "vq")
    );

    // Filters: queued only; agent a1's; the sales group.
    let page = |boss: &mut Client, q: messages::ListConversations| -> Vec<u64> {
        boss.list_conversations(q, WAIT)
            .unwrap()
            .items
            .iter()
            .map(|i| i.conversation)
            .collect()
    };
    let only_queued = page(
        &mut boss,
        messages::ListConversations {
            limit: 100,
            state: conversation_state::QUEUED,
            ..Default::default()
        },
    );
    assert_eq!(only_queued, [queued]);
    let served_by_a1 = page(
        &mut boss,
        messages::ListConversations {
            limit: 100,
            state: conversation_state::ANY,
            agent: "a1".into(),
            ..Default::default()
        },
    );
    assert_eq!(served_by_a1, ids);
    let in_sales = page(
        &mut boss,
        messages::ListConversations {
            limit: 100,
            state: conversation_state::OPEN,
            group: "sales".into(),
            ..Default::default()
        },
    );
    assert_eq!(in_sales, [queued]);

    // Paging by id: two, then the rest.
    let first = boss
        .list_conversations(
            messages::ListConversations {
                limit: 2,
                state: conversation_state::ANY,
                ..Default::default()
            },
            WAIT,
        )
        .unwrap();
    assert!(first.more);
    assert_eq!(first.next_after, expected[1]);
    let rest = boss
        .list_conversations(
            messages::ListConversations {
                limit: 2,
                state: conversation_state::ANY,
                after: first.next_after,
                ..Default::default()
            },
            WAIT,
        )
        .unwrap();
    assert!(!rest.more);
    let rest: Vec<u64> = rest.items.iter().map(|i| i.conversation).collect();
    assert_eq!(rest, expected[2..]);

    // Closed: the agent closes one; it moves from OPEN to CLOSED.
    agent
        .post(messages::Close {
            conversation: ids[0],
            seq: 0,
            reason: "done".into(),
        })
        .unwrap();
    assert!(util::wait_until(WAIT, || page(
        &mut boss,
        messages::ListConversations {
            limit: 100,
            state: conversation_state::CLOSED,
            ..Default::default()
        }
    ) == [ids[0]]));

    // Not an admin: 403. A state code out of range never leaves the SDK (the server
    // answers 400: proto-spec/vectors/bad-messages.jsonl).
    let r = agent.list_conversations(
        messages::ListConversations {
            limit: 10,
            state: conversation_state::ANY,
            ..Default::default()
        },
        WAIT,
    );
    assert_eq!(server_code(r), 403);
    let r = boss.list_conversations(
        messages::ListConversations {
            limit: 10,
            state: 9,
            ..Default::default()
        },
        WAIT,
    );
    assert!(
        matches!(
            r,
            Err(ClientError::Invalid(_)) | Err(ClientError::Server { code: 400, .. })
        ),
        "{r:?}"
    );
}

#[test]
fn an_admin_disconnects_every_session_of_a_user_with_206() {
    let s = Setup::start();
    let mut desk1 = s.connect("a1", "agent", "acme", &["support"]);
    let mut desk2 = s.connect("a1", "agent", "acme", &["support"]);
    let mut other = s.connect("a2", "agent", "acme", &["support"]);
    // Same user id in another tenant: untouched.
    let mut namesake = s.connect("a1", "agent", "globex", &["support"]);

    let mut agent = s.connect("a3", "agent", "acme", &["support"]);
    assert_eq!(
        server_code(agent.disconnect_user("a1", "", WAIT)),
        403,
        "agents cannot"
    );

    let mut boss = s.connect("boss", "admin", "acme", &[]);
    assert_eq!(boss.disconnect_user("a1", "offboarded", WAIT).unwrap(), 2);
    for desk in [&mut desk1, &mut desk2] {
        let mut seen = Vec::new();
        let (code, message) = until(desk, &mut seen, |m| match m {
            Msg::Error(e) => Some((e.code, e.message.clone())),
            _ => None,
        });
        assert_eq!((code, message.as_str()), (206, "offboarded"));
        assert!(matches!(desk.recv(WAIT), Err(ClientError::Closed)));
    }
    assert!(other.ping(WAIT).is_ok());
    assert!(namesake.ping(WAIT).is_ok());
    assert_eq!(boss.disconnect_user("nobody", "", WAIT).unwrap(), 0);
}

#[test]
fn availability_goes_to_connections_that_watch_and_follows_the_agents() {
    let s = Setup::start();
    let mut visitor = s.connect("v1", "visitor", "acme", &["sales"]);
    let mut unasked = s.connect("v1", "visitor", "acme", &["sales"]);
    let mut seen = Vec::new();
    visitor.watch("").unwrap();
    let first = until(&mut visitor, &mut seen, |m| match m {
        Msg::Availability(a) => Some(a.groups.clone()),
        _ => None,
    });
    assert_eq!(first.len(), 1);
    assert_eq!(
        (
            first[0].group.as_str(),
            first[0].online,
            first[0].estimated_wait_ms
        ),
        ("sales", false, 0)
    );
    // An agent of sales comes online: the watcher hears it.
    let agent = s.connect("a1", "agent", "acme", &["sales"]);
    let now = until(&mut visitor, &mut seen, |m| match m {
        Msg::Availability(a) => Some(a.groups.clone()),
        _ => None,
    });
    assert_eq!(
        (
            now[0].group.as_str(),
            now[0].online,
            now[0].estimated_wait_ms
        ),
        ("sales", true, 0)
    );
    // ...and leaves.
    agent.close().unwrap();
    let gone = until(&mut visitor, &mut seen, |m| match m {
        Msg::Availability(a) => Some(a.groups.clone()),
        _ => None,
    });
    assert!(!gone[0].online);
    // The connection that never sent Watch got none of it (a ping proves the
    // frames before it were read).
    unasked.ping(WAIT).unwrap();
    let mut rest = Vec::new();
    while let Ok(Some(i)) = unasked.recv(Duration::from_millis(300)) {
        rest.push(i);
    }
    assert!(
        !rest.iter().any(|i| matches!(i.msg, Msg::Availability(_))),
        "{rest:?}"
    );
    // A group name over 1024 bytes is refused before it leaves the client.
    assert!(matches!(
        visitor.watch(&"g".repeat(1025)),
        Err(ClientError::Invalid(_))
    ));
}

#[test]
fn per_group_figures_count_openings_first_replies_and_ratings() {
    let s = Setup::start();
    let mut agent = s.connect("a1", "agent", "acme", &["support"]);
    let mut visitor = s.connect("v1", "visitor", "acme", &[]);
    let conversation = open_assigned(&mut visitor, &mut agent, "hello?");
    agent.note(conversation, "a note is no reply").unwrap();
    agent.send_text(conversation, "hi, how can I help").unwrap();
    agent
        .send_text(conversation, "a second reply is not measured")
        .unwrap();
    agent
        .post(messages::Close {
            conversation,
            seq: 0,
            reason: "done".into(),
        })
        .unwrap();
    let mut seen = Vec::new();
    until(&mut visitor, &mut seen, |m| match m {
        Msg::Close(_) => Some(()),
        _ => None,
    });
    visitor
        .post(messages::Rate {
            score: 4,
            conversation,
            comment: String::new(),
        })
        .unwrap();
    // The rating has no reply: wait for it in the metrics.
    assert!(util::wait_until(WAIT, || s.metrics().contains(
        "switchboard_conversation_rating_count{group=\"support\"} 1\n"
    )));
    let text = s.metrics();
    for line in [
        "switchboard_conversations_opened_total{group=\"support\"} 1\n",
        "switchboard_conversations_abandoned_total{group=\"support\"} 0\n",
        "switchboard_conversation_first_reply_seconds_count{group=\"support\"} 1\n",
        "switchboard_conversation_queue_wait_seconds_count{group=\"support\"} 1\n",
        "switchboard_conversation_queue_wait_seconds_sum{group=\"support\"} 0.0\n",
        "switchboard_conversation_rating_sum{group=\"support\"} 4.0\n",
        "switchboard_metric_groups_folded_total 0\n",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
}

#[test]
fn out_of_bounds_requests_of_the_new_kinds_get_400_and_the_connection_stays() {
    let s = Setup::start();
    let addr = s.server.addr();
    let mut raw = util::Client::connect(addr);
    let hello = Msg::from(messages::Hello {
        protocol: switchboard::protocol::PROTOCOL_VERSION,
        token: util::token("boss", "admin"),
        client: "raw".into(),
        resume: Vec::new(),
    });
    raw.write_raw(&hello.to_frame(1));
    let w = raw.read_frame(WAIT);
    assert_eq!(w.ksr().0, util::kind::WELCOME, "{w:?}");
    let bad: Vec<Msg> = vec![
        messages::ListConversations {
            limit: 1,
            state: 9,
            ..Default::default()
        }
        .into(),
        messages::ListConversations {
            group: "g".repeat(1025),
            ..Default::default()
        }
        .into(),
        messages::Disconnect {
            user: String::new(),
            reason: String::new(),
        }
        .into(),
        messages::Disconnect {
            user: "u".repeat(257),
            reason: String::new(),
        }
        .into(),
        messages::Watch {
            group: "g".repeat(1025),
        }
        .into(),
        messages::Note {
            conversation: 1,
            client_msg_id: 1,
            body: String::new(),
        }
        .into(),
    ];
    for (i, msg) in bad.iter().enumerate() {
        let rid = 100 + i as u32;
        raw.write_raw(&msg.to_frame(rid));
        let f = raw.read_frame(WAIT);
        assert_eq!(f.ksr(), (util::kind::ERROR, 400, rid), "{msg:?}");
    }
    raw.ping(7, b"still here after six 400s");
    // Garbage where a ListConversations should be: 104, which closes this connection
    // (and only it).
    let mut neighbour = s.connect("a1", "agent", "acme", &["support"]);
    raw.send(53, 200, &[0xff; 24]);
    raw.expect_error_then_eof(104, WAIT);
    neighbour.ping(WAIT).unwrap();
}
