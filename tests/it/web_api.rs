//! The HTTP API over loopback (`/api/v1/…` on the client port), against binary
//! sessions: reads and writes of real conversations, every refusal class (no key,
//! wrong key, wrong scope, other tenant, bad route, query, body, media type, size),
//! keep-alive, pipelining and chunked bodies. Every response is validated against
//! `proto-spec/openapi.yaml` at the end of each test.

use serde_json::Value;
use switchboard::api::Scope;
use switchboard::protocol::messages::{self, Msg, role};

use crate::util::api::{ApiSetup as Setup, Reply, key};
use crate::util::peer::Peer;
use crate::util::{agent_token, tenant_token, token};

/// `vera`'s conversation with `sue`, opened with "where is my parcel?".
fn served_conversation(s: &Setup) -> (Peer, Peer, u64) {
    s.served_conversation("where is my parcel?")
}

fn error_name(r: &Reply) -> String {
    r.error_name()
}

#[test]
fn reads_list_conversations_and_transcripts_of_the_keys_tenant_only() {
    let s = Setup::new();
    let (_vera, _sue, id) = served_conversation(&s);
    let mut api = s.client(Some(&s.reader));

    let r = api.call("GET", "/api/v1/conversations", None);
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.header("connection"), Some("keep-alive"));
    let list = r.json();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["conversation"], Value::String(id.to_string()));
    assert_eq!(items[0]["visitor"], "vera");
    assert_eq!(items[0]["agent"], "sue");

    // Filters and paging on the same kept-alive connection.
    let r = api.call("GET", "/api/v1/conversations?state=closed", None);
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 0);
    let r = api.call("GET", &format!("/api/v1/conversations?after={id}"), None);
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 0);

    let r = api.call("GET", &format!("/api/v1/conversations/{id}/messages"), None);
    assert_eq!(r.status, 200);
    let page = r.json();
    assert_eq!(page["conversation"], Value::String(id.to_string()));
    let bodies: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["body"].as_str())
        .collect();
    assert!(bodies.contains(&"where is my parcel?"), "{page}");

    // One conversation; an unknown one is 404.
    let r = api.call("GET", &format!("/api/v1/conversations/{id}"), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["conversation"], Value::String(id.to_string()));
    assert_eq!(r.json()["state"], 2);
    let r = api.call("GET", &format!("/api/v1/conversations/{}", id + 1), None);
    assert_eq!(r.status, 404);

    // HEAD: the headers of the GET, no body.
    let r = api.call("HEAD", "/api/v1/conversations", None);
    assert_eq!((r.status, r.body.len()), (200, 0));

    // Another tenant's key sees nothing of it.
    let mut far = s.client(Some(&s.other_tenant));
    let r = far.call("GET", "/api/v1/conversations", None);
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 0);
    let r = far.call("GET", &format!("/api/v1/conversations/{id}/messages"), None);
    assert_eq!((r.status, r.code()), (404, 404));

    // An admin JWT reads too; an agent's token does not.
    let mut boss = s.client(Some(&token("boss", "admin")));
    assert_eq!(boss.call("GET", "/api/v1/conversations", None).status, 200);
    let mut agent = s.client(Some(&agent_token("sue", &["support"])));
    let r = agent.call("GET", "/api/v1/conversations", None);
    assert_eq!((r.status, error_name(&r)), (403, "forbidden".into()));
    s.recorder.validate();
}

#[test]
fn every_refusal_has_its_status_and_code_and_the_connection_survives_it() {
    let s = Setup::new();
    let mut anon = s.client(None);
    let r = anon.call("GET", "/api/v1/conversations", None);
    assert_eq!((r.status, r.code()), (401, 200));
    assert!(r.header("www-authenticate").is_some());

    let mut wrong = s.client(Some("sbk_crm_not-the-secret"));
    let r = wrong.call("GET", "/api/v1/conversations", None);
    assert_eq!((r.status, error_name(&r)), (401, "token_invalid".into()));
    let mut unknown = s.client(Some("sbk_nobody_x"));
    assert_eq!(
        unknown.call("GET", "/api/v1/conversations", None).status,
        401
    );
    let mut garbage = s.client(Some("not.a.jwt"));
    assert_eq!(
        garbage.call("GET", "/api/v1/conversations", None).status,
        401
    );

    // A read-only key may not write.
    let mut reader = s.client(Some(&s.reader));
    let r = reader.call("POST", "/api/v1/notices", Some(r#"{"text":"hi"}"#));
    assert_eq!((r.status, error_name(&r)), (403, "forbidden".into()));
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("notices:write")
    );

    let mut api = s.client(Some(&s.admin));
    for (method, target, body, status) in [
        ("GET", "/api/v1/nothing-here", None, 404),
        ("GET", "/api/v1/conversations/0/messages", None, 400),
        ("GET", "/api/v1/conversations/abc/messages", None, 400),
        ("GET", "/api/v1/conversations?state=lost", None, 400),
        ("GET", "/api/v1/conversations?limit=0x10", None, 400),
        ("GET", "/api/v1/conversations?colour=red", None, 400),
        ("DELETE", "/api/v1/conversations", None, 405),
        ("POST", "/api/v1/conversations/1/messages", Some("{"), 400),
        (
            "POST",
            "/api/v1/conversations/1/messages",
            Some(r#"{"body":1}"#),
            400,
        ),
        (
            "POST",
            "/api/v1/conversations/1/messages",
            Some(r#"{"body":"x","cc":"y"}"#),
            400,
        ),
        (
            "POST",
            "/api/v1/conversations/1/messages",
            Some(r#"{"body":""}"#),
            400,
        ),
        (
            "POST",
            "/api/v1/conversations/18446744073709551615/messages",
            Some(r#"{"body":"x"}"#),
            404,
        ),
        (
            "POST",
            "/api/v1/conversations/9/close",
            Some(r#"{"why":"x"}"#),
            400,
        ),
    ] {
        let r = api.call(method, target, body);
        assert_eq!(
            r.status,
            status,
            "{method} {target} {body:?}: {:?}",
            r.json()
        );
        assert!(r.json()["error"]["code"].as_u64().is_some());
    }
    let r = api.call("DELETE", "/api/v1/conversations", None);
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
    // Not JSON.
    let text = api.request_text(
        "POST",
        "/api/v1/notices",
        "Content-Type: text/plain\r\nContent-Length: 2\r\n",
        None,
    );
    api.send_raw(format!("{text}{{}}").as_bytes());
    let r = api.read_reply("POST", "/api/v1/notices");
    assert_eq!((r.status, error_name(&r)), (415, "bad_request".into()));
    // ... and the connection still serves (the 415's body was read as its body).
    assert_eq!(api.call("GET", "/api/v1/conversations", None).status, 200);

    // A body past api.max_body_bytes: 413, and the connection closes.
    let mut big = s.client(Some(&s.admin));
    let r = big.call_with(
        "POST",
        "/api/v1/notices",
        "Content-Type: application/json\r\nContent-Length: 2000000\r\n",
        None,
    );
    assert_eq!((r.status, r.header("connection")), (413, Some("close")));
    assert!(big.closed());
    s.recorder.validate();
}

#[test]
fn writes_post_as_the_system_or_the_serving_agent_and_close() {
    let s = Setup::new();
    let (mut vera, mut sue, id) = served_conversation(&s);
    let mut api = s.client(Some(&s.admin));
    let path = format!("/api/v1/conversations/{id}/messages");

    // As the system, with an idempotency key: stored once, answered the same twice.
    let r = api.call_with(
        "POST",
        &path,
        "Idempotency-Key: order-77-shipped\r\n",
        Some(r#"{"body":"Your parcel left the warehouse."}"#),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let first = r.json();
    let d = vera.deliver(id);
    assert_eq!(
        (d.sender_role, d.sender.as_str()),
        (role::SYSTEM, "api:ops")
    );
    assert_eq!(d.body, "Your parcel left the warehouse.");
    assert_eq!(sue.deliver(id).body, d.body);
    let again = api.call_with(
        "POST",
        &path,
        "Idempotency-Key: order-77-shipped\r\n",
        Some(r#"{"body":"Your parcel left the warehouse."}"#),
    );
    assert_eq!((again.status, again.json()), (201, first.clone()));
    // Without a key, two posts are two messages.
    let a = api.call("POST", &path, Some(r#"{"body":"one"}"#)).json();
    let b = api.call("POST", &path, Some(r#"{"body":"two"}"#)).json();
    assert_ne!(a["seq"], b["seq"]);

    // As the agent who serves it: allowed; as another agent: 403.
    let r = api.call(
        "POST",
        &path,
        Some(r#"{"body":"Anything else?","sender_role":"agent","sender":"sue"}"#),
    );
    assert_eq!(r.status, 201);
    let d = vera.wait_event("sue's message", |m| match m {
        Msg::Deliver(d) if d.body == "Anything else?" => Some(d.clone()),
        _ => None,
    });
    assert_eq!((d.sender_role, d.sender.as_str()), (role::AGENT, "sue"));
    let r = api.call(
        "POST",
        &path,
        Some(r#"{"body":"hi","sender_role":"agent","sender":"mallory"}"#),
    );
    assert_eq!((r.status, error_name(&r)), (403, "forbidden".into()));

    // The transcript has the system's message once.
    let page = api.call("GET", &path, None).json();
    let shipped = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["body"] == "Your parcel left the warehouse.")
        .count();
    assert_eq!(shipped, 1, "{page}");

    // Another tenant's key cannot write into it.
    let mut far = s.client(Some(&s.other_tenant));
    assert_eq!(far.call("POST", &path, Some(r#"{"body":"x"}"#)).status, 404);

    // Close: 204 once durable; both sides hear it; again: 409.
    let close = format!("/api/v1/conversations/{id}/close");
    let r = api.call("POST", &close, Some(r#"{"reason":"resolved by API"}"#));
    assert_eq!(r.status, 204, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(vera.closed(id).reason, "resolved by API");
    sue.closed(id);
    let r = api.call("POST", &close, None);
    assert_eq!((r.status, error_name(&r)), (409, "conflict".into()));
    let r = api.call("POST", &path, Some(r#"{"body":"too late"}"#));
    assert_eq!(r.status, 409);
    s.recorder.validate();
}

#[test]
fn an_api_channel_opens_conversations_for_its_visitors_and_staff_are_moved_by_api() {
    let s = Setup::new();
    let addr = s.server.addr();
    let mut sue = Peer::connect(addr, &agent_token("sue", &["support"]), "sue");
    let mut api = s.client(Some(&s.admin));

    // An SMS bridge opens a conversation for its visitor: sue (online, support) gets it.
    let r = api.call_with(
        "POST",
        "/api/v1/conversations",
        "Idempotency-Key: sms-1\r\n",
        Some(r#"{"visitor":"sms:+4917","visitor_name":"Ann","group":"support","body":"hello?"}"#),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let id: u64 = r.json()["conversation"].as_str().unwrap().parse().unwrap();
    sue.assigned(id);
    let page = sue.history(id);
    let first = page
        .entries
        .iter()
        .find(|e| e.body == "hello?")
        .expect("the opening message");
    assert_eq!(
        (first.sender_role, first.sender.as_str()),
        (role::VISITOR, "sms:+4917")
    );
    // The same key again: the same answer, nothing new.
    let again = api.call_with(
        "POST",
        "/api/v1/conversations",
        "Idempotency-Key: sms-1\r\n",
        Some(r#"{"visitor":"sms:+4917","visitor_name":"Ann","group":"support","body":"hello?"}"#),
    );
    assert_eq!(again.json(), r.json());
    // The visitor's next message, and sue's answer through the API.
    let path = format!("/api/v1/conversations/{id}/messages");
    let r = api.call(
        "POST",
        &path,
        Some(r#"{"body":"order 77","sender_role":"visitor","sender":"sms:+4917"}"#),
    );
    assert_eq!(r.status, 201);
    assert_eq!(sue.deliver(id).body, "order 77");
    // Another visitor may not write into it.
    let r = api.call(
        "POST",
        &path,
        Some(r#"{"body":"me too","sender_role":"visitor","sender":"sms:+4999"}"#),
    );
    assert_eq!(r.status, 403);

    // Transfer by the system to a group nobody serves: 204, and it waits there.
    let r = api.call(
        "POST",
        &format!("/api/v1/conversations/{id}/transfer"),
        Some(r#"{"to_group":"billing","note":"refund"}"#),
    );
    assert_eq!(r.status, 204, "{:?}", String::from_utf8_lossy(&r.body));
    // The 204 comes once the conversation's shard shows the transfer: the list,
    // read right after, has it (read-your-writes; it once lagged under load).
    let list = api
        .call("GET", "/api/v1/conversations?state=queued", None)
        .json();
    assert_eq!(list["items"][0]["group"], "billing", "{list}");

    // Assign it to bob (online, another group): 204, bob has it; again: 409.
    let mut bob = Peer::connect(addr, &agent_token("bob", &["escalations"]), "bob");
    let assign = format!("/api/v1/conversations/{id}/assign");
    let r = api.call("POST", &assign, Some(r#"{"agent":"bob"}"#));
    assert_eq!(r.status, 204, "{:?}", String::from_utf8_lossy(&r.body));
    bob.assigned(id);
    let r = api.call("POST", &assign, Some(r#"{"agent":"bob"}"#));
    assert_eq!((r.status, error_name(&r)), (409, "conflict".into()));
    // Nobody of that name online: 409; another tenant's conversation: 404.
    let r = api.call(
        "POST",
        "/api/v1/conversations/18446744073709551615/assign",
        Some(r#"{"agent":"bob"}"#),
    );
    assert_eq!(r.status, 404);
    let mut far = s.client(Some(&s.other_tenant));
    assert_eq!(
        far.call("POST", &assign, Some(r#"{"agent":"bob"}"#)).status,
        404
    );
    // A read-only key may not move anything.
    let mut reader = s.client(Some(&s.reader));
    let r = reader.call("POST", &assign, Some(r#"{"agent":"bob"}"#));
    assert_eq!(r.status, 403);
    s.recorder.validate();
}

#[test]
fn notices_reach_the_group_and_the_api_gets_204() {
    let s = Setup::new();
    let addr = s.server.addr();
    let mut sue = Peer::connect(addr, &agent_token("sue", &["support"]), "sue");
    let mut far_sue = Peer::connect(
        addr,
        &tenant_token("sue", "agent", "elsewhere", &["support"]),
        "sue@elsewhere",
    );
    let mut api = s.client(Some(&s.admin));
    // The agents and their presence (sue of this tenant only).
    let r = api.call("GET", "/api/v1/agents", None);
    assert_eq!(r.status, 200);
    let agents = r.json();
    assert_eq!(agents["agents"].as_array().unwrap().len(), 1, "{agents}");
    let a = &agents["agents"][0];
    assert_eq!(
        (a["user"].as_str(), a["presence"].as_str()),
        (Some("sue"), Some("online"))
    );
    assert_eq!(a["groups"], serde_json::json!(["support"]));
    let r = api.call("GET", "/api/v1/agents?group=sales", None);
    assert_eq!(r.json()["agents"].as_array().unwrap().len(), 0);
    let mut reader = s.client(Some(&s.reader));
    assert_eq!(reader.call("GET", "/api/v1/agents", None).status, 403);
    let r = api.call(
        "POST",
        "/api/v1/notices",
        Some(r#"{"text":"new refund policy","group":"support"}"#),
    );
    assert_eq!(r.status, 204);
    let n = sue.notice("new refund policy");
    assert_eq!((n.group.as_str(), n.from.as_str()), ("support", "api:ops"));
    far_sue.router_barrier();
    far_sue.expect_none("a notice", std::time::Duration::ZERO, |m| {
        matches!(m, Msg::Notice(_))
    });
    let _ = messages::conversation_state::ANY;
    s.recorder.validate();
}

#[test]
fn exports_gather_every_page_oldest_first_within_their_bound() {
    // Pages of 3 entries: the export needs several round trips.
    let s = Setup::with(|c| {
        c.routing.history_page_max = 3;
        c.api.max_export_bytes = 64 * 1024;
    });
    let (mut vera, _sue, id) = served_conversation(&s);
    for i in 0..10 {
        vera.send_accepted(id, 100 + i, &format!("message {i}"));
    }
    let mut api = s.client(Some(&s.reader));
    let r = api.call("GET", &format!("/api/v1/conversations/{id}/export"), None);
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let text = String::from_utf8(r.body.clone()).unwrap();
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{text}");
    assert!(text.contains("message 9") && text.contains("where is my parcel?"));
    // The same as paging through /messages by hand.
    let page = api
        .call("GET", &format!("/api/v1/conversations/{id}/messages"), None)
        .json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);

    // Past api.max_export_bytes: 413, and the connection still serves.
    let big = "x".repeat(40_000);
    for i in 0..2 {
        vera.send_accepted(id, 200 + i, &big);
    }
    let r = api.call("GET", &format!("/api/v1/conversations/{id}/export"), None);
    assert_eq!(r.status, 413, "{:?}", r.json());
    assert_eq!(api.call("GET", "/api/v1/conversations", None).status, 200);
    let mut far = s.client(Some(&s.other_tenant));
    assert_eq!(
        far.call("GET", &format!("/api/v1/conversations/{id}/export"), None)
            .status,
        404
    );
    s.recorder.validate();
}

#[test]
fn keep_alive_pipelining_and_chunked_bodies() {
    let s = Setup::new();
    let (_vera, _sue, id) = served_conversation(&s);
    let mut api = s.client(Some(&s.admin));
    // Three requests in one write: three answers, in order.
    let a = api.request_text("GET", "/api/v1/conversations", "", None);
    let b = api.request_text("GET", "/api/v1/nothing", "", None);
    let c = api.request_text(
        "GET",
        &format!("/api/v1/conversations/{id}/messages"),
        "",
        None,
    );
    api.send_raw(format!("{a}{b}{c}").as_bytes());
    assert_eq!(api.read_reply("GET", "/api/v1/conversations").status, 200);
    assert_eq!(api.read_reply("GET", "/api/v1/nothing").status, 404);
    let path = format!("/api/v1/conversations/{id}/messages");
    assert_eq!(api.read_reply("GET", &path).status, 200);

    // A chunked body, in pieces.
    let head = api.request_text(
        "POST",
        &path,
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
        None,
    );
    api.send_raw(head.as_bytes());
    api.send_raw(b"6\r\n{\"body\r\n");
    api.send_raw(b"d;ext=1\r\n\":\"chunked!\"}\r\n0\r\n\r\n");
    let r = api.read_reply("POST", &path);
    assert_eq!(r.status, 201, "{:?}", r.json());

    // Connection: close is honoured.
    let r = api.call_with(
        "GET",
        "/api/v1/conversations",
        "Connection: close\r\n",
        None,
    );
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(api.closed());
    s.recorder.validate();
}

/// Every route, with every class of bad input: no credential, a wrong one, a key
/// without the route's scope, another tenant's key, malformed JSON, an unknown field,
/// a body of the wrong type, one past `api.max_body_bytes`.
#[test]
fn every_endpoint_refuses_every_class_of_bad_input() {
    let (k_read, read) = key("read", "", &[Scope::ConversationsRead]);
    let (k_write, write) = key("write", "", &[Scope::ConversationsWrite]);
    let (k_msg, msg) = key("msg", "", &[Scope::MessagesWrite]);
    let (k_agents, agents) = key("agents", "", &[Scope::AgentsRead]);
    let (k_notice, notice) = key("notice", "", &[Scope::NoticesWrite]);
    let s = Setup::with(|c| {
        c.api
            .keys
            .extend([k_read, k_write, k_msg, k_agents, k_notice]);
        c.api.max_body_bytes = 4096;
    });
    let (_vera, _sue, id) = served_conversation(&s);
    let conv = format!("/api/v1/conversations/{id}");
    // (method, path, valid body, a key with exactly the scope it needs, whether
    // another tenant sees 404 rather than an empty answer)
    let routes: Vec<(&str, String, Option<&str>, &str, bool)> = vec![
        ("GET", "/api/v1/conversations".into(), None, &read, false),
        ("GET", conv.clone(), None, &read, true),
        ("GET", format!("{conv}/messages"), None, &read, true),
        ("GET", format!("{conv}/export"), None, &read, true),
        ("GET", "/api/v1/agents".into(), None, &agents, false),
        (
            "POST",
            format!("{conv}/messages"),
            Some(r#"{"body":"hi"}"#),
            &msg,
            true,
        ),
        (
            "POST",
            "/api/v1/conversations".into(),
            Some(r#"{"visitor":"v9","body":"hi"}"#),
            &write,
            false,
        ),
        (
            "POST",
            format!("{conv}/transfer"),
            Some(r#"{"note":"x"}"#),
            &write,
            true,
        ),
        (
            "POST",
            format!("{conv}/assign"),
            Some(r#"{"agent":"sue"}"#),
            &write,
            true,
        ),
        (
            "POST",
            format!("{conv}/close"),
            Some(r#"{"reason":"x"}"#),
            &write,
            true,
        ),
        (
            "POST",
            "/api/v1/notices".into(),
            Some(r#"{"text":"x"}"#),
            &notice,
            false,
        ),
    ];
    let all_keys = [&read, &write, &msg, &agents, &notice];
    for (method, path, body, own, tenant_404) in &routes {
        let what = format!("{method} {path}");
        // No credential, a wrong one, a mangled one.
        for cred in [None, Some("sbk_read_wrong"), Some("Bearer-ish")] {
            let r = s.client(cred).call(method, path, *body);
            assert_eq!(r.status, 401, "{what} with {cred:?}");
            assert!(r.header("www-authenticate").is_some());
        }
        // Every key without the route's scope: 403 before anything happens.
        for k in all_keys.iter().filter(|k| ***k != **own) {
            let r = s.client(Some(k)).call(method, path, *body);
            assert_eq!(
                (r.status, r.code()),
                (403, 403),
                "{what} with another scope"
            );
        }
        // Another tenant: its conversations do not exist.
        if *tenant_404 {
            let r = s.client(Some(&s.other_tenant)).call(method, path, *body);
            assert_eq!(r.status, 404, "{what} from another tenant");
        }
        let Some(body) = body else { continue };
        let mut api = s.client(Some(own));
        for (bad, status) in [
            ("{", 400),
            ("[]", 400),
            ("null", 400),
            (
                &*format!("{}, \"surprise\": 1}}", body.trim_end_matches('}')),
                400,
            ),
        ] {
            let r = api.call(method, path, Some(bad));
            assert_eq!(r.status, status, "{what} with {bad}: {r:?}");
            assert_eq!(r.code(), 400, "{what} with {bad}");
        }
        let text = api.request_text(
            method,
            path,
            "Content-Type: text/plain\r\nContent-Length: 2\r\n",
            None,
        );
        api.send_raw(format!("{text}{{}}").as_bytes());
        assert_eq!(
            api.read_reply(method, path).status,
            415,
            "{what} as text/plain"
        );
        let huge = format!(r#"{{"body":"{}"}}"#, "x".repeat(5000));
        let r = api.call(method, path, Some(&huge));
        assert_eq!(
            (r.status, r.code()),
            (413, 102),
            "{what} past max_body_bytes"
        );
        assert!(api.closed(), "{what}: a 413 closes the connection");
    }
    s.recorder.validate();
}

/// `switchboard api-key`: the credential alone on stdout, and on stderr an
/// `[[api.keys]]` entry that a configuration accepts and that checks the credential;
/// bad input exits 2 with nothing on stdout.
#[test]
fn the_api_key_command_prints_a_credential_and_its_config_entry() {
    let dir = tempfile::tempdir().unwrap();
    let limit = std::time::Duration::from_secs(20);
    let (status, stdout, stderr) = crate::util::run_bin_in(
        dir.path(),
        &[
            "api-key",
            "--id",
            "crm-1",
            "--scopes",
            "conversations:read,notices:write",
            "--tenant",
            "acme",
        ],
        limit,
    );
    assert!(status.success(), "{stderr}");
    let credential = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(credential.starts_with("sbk_crm-1_"), "{credential}");
    let config: switchboard::Config =
        toml::from_str(&stderr).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    config.validate().unwrap();
    let entry = &config.api.keys[0];
    assert_eq!(
        (entry.id.as_str(), entry.tenant.as_str()),
        ("crm-1", "acme")
    );
    assert_eq!(
        entry.scopes,
        vec![Scope::ConversationsRead, Scope::NoticesWrite]
    );
    let keys = config.api.key_table();
    let secret = credential.strip_prefix("sbk_crm-1_").unwrap();
    assert!(keys.check("crm-1", secret).is_ok());
    assert!(
        !stderr.contains(secret),
        "the secret itself is never in the config entry"
    );
    for bad in [
        &["api-key", "--id", "no_underscores", "--scopes", "admin"][..],
        &["api-key", "--id", "x", "--scopes", "everything"],
        &["api-key", "--id", "x"],
    ] {
        let (status, stdout, _) = crate::util::run_bin_in(dir.path(), bad, limit);
        assert_eq!(status.code(), Some(2), "{bad:?}");
        assert!(stdout.is_empty());
    }
}

/// `api.max_in_flight`: a request whose body is still arriving holds its place; past
/// the bound the next request is answered 503 `server_busy` with `Retry-After`, and
/// once the first completes the same client is served again.
#[test]
fn requests_past_max_in_flight_are_refused_with_503() {
    let s = Setup::with(|c| {
        c.reactor.threads = 1;
        c.api.max_in_flight = 1;
    });
    let mut slow = s.client(Some(&s.admin));
    let head = slow.request_text(
        "POST",
        "/api/v1/notices",
        "Content-Type: application/json\r\nContent-Length: 12\r\n",
        None,
    );
    slow.send_raw(format!("{head}{{\"text\":").as_bytes());
    let mut other = s.client(Some(&s.admin));
    // The slow body may not have been read yet when the GET arrives: ask until the
    // reactor holds it (bounded by the test's own deadline).
    let busy = (0..200)
        .map(|_| other.call("GET", "/api/v1/conversations", None))
        .find(|r| r.status == 503)
        .expect("a 503 while the slow request is in flight");
    assert_eq!(busy.error_name(), "server_busy");
    assert!(busy.header("retry-after").is_some());
    slow.send_raw(b"\"x\"}");
    assert_eq!(slow.read_reply("POST", "/api/v1/notices").status, 204);
    assert_eq!(other.call("GET", "/api/v1/conversations", None).status, 200);
    s.recorder.validate();
}
