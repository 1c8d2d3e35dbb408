//! The visitor profile (`PROFILE`, content type 6) over loopback: a visitor sends it
//! with the binary client and its agent gets the `Deliver`; a back end writes it with
//! `PUT /api/v1/conversations/{id}/visitor` and reads the merged profile with
//! `GET /api/v1/conversations/{id}`; every bad input is refused with its status.
//! Every API response is validated against `proto-spec/openapi.yaml`.

use serde_json::{Value, json};
use switchboard::api::Scope;
use switchboard::protocol::messages::{self, Msg, content, role};

use crate::util::api::{ApiSetup as Setup, key};
use crate::util::peer::RawPeer;
use crate::util::token;

fn profile(conversation: u64, client_msg_id: u64, body: &str) -> messages::Send {
    messages::Send {
        content_type: content::PROFILE,
        conversation,
        client_msg_id,
        group: String::new(),
        body: body.into(),
    }
}

#[test]
fn a_visitor_sends_its_profile_and_the_agent_gets_it() {
    let s = Setup::new();
    let (mut vera, mut sue, id) = s.served_conversation("hello");
    let body = r#"{"name":"Vera","email":"vera@example.com","fields":{"plan":"pro"}}"#;
    let rid = vera.post(profile(id, 2, body));
    let accepted = vera.reply_to(rid, |m| match m {
        Msg::Accepted(a) => Some(a.clone()),
        _ => None,
    });
    let d = sue.deliver(id);
    assert_eq!(
        (
            d.content_type,
            d.sender_role,
            d.sender.as_str(),
            d.body.as_str()
        ),
        (content::PROFILE, role::VISITOR, "vera", body)
    );
    assert_eq!(d.seq, accepted.seq);

    // Refused by the decoder (400, the connection stays): a body outside the
    // contract, and conversation 0 (a profile opens nothing). The SDK client
    // refuses to send them; raw frames from vera's second connection reach the server.
    let mut raw = RawPeer::connect(s.server.addr(), &token("vera", "visitor"));
    for (n, (conversation, bad)) in [
        (id, r#"{"nick":"V"}"#),
        (id, r#"{"email":"vera"}"#),
        (id, "{}"),
        (id, "not json"),
        (0, r#"{"name":"V"}"#),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(
            vera.request(profile(conversation, 3, bad)).is_err(),
            "{bad}"
        );
        let rid = 10 + n as u32;
        raw.write_frame(&Msg::from(profile(conversation, 3, bad)).to_frame(rid));
        raw.read_until(|r, m| r == rid && matches!(m, Msg::Error(_)));
        assert!(
            matches!(raw.log.last(), Some((_, Msg::Error(e))) if e.code == 400),
            "{bad}: {:?}",
            raw.log.last()
        );
    }
    raw.sync(99);
    // Staff may not write the visitor's profile.
    let rid = sue.post(profile(id, 9, r#"{"name":"Mallory"}"#));
    sue.expect_error(rid, 403);

    // The back end sees the merged profile; the transcript holds the event.
    let mut api = s.client(Some(&s.reader));
    let r = api.call("GET", &format!("/api/v1/conversations/{id}"), None);
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        r.json()["visitor_profile"],
        json!({"name":"Vera","email":"vera@example.com","fields":{"plan":"pro"}})
    );
    let page = api
        .call("GET", &format!("/api/v1/conversations/{id}/messages"), None)
        .json();
    assert!(
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["content_type"] == 6 && e["sender_role"] == 1 && e["body"] == body),
        "{page}"
    );
    s.recorder.validate();
}

#[test]
fn the_api_writes_the_visitor_profile_and_reads_it_merged() {
    let s = Setup::new();
    let (mut vera, mut sue, id) = s.served_conversation("hello");
    let path = format!("/api/v1/conversations/{id}/visitor");
    let mut api = s.client(Some(&s.admin));

    // Nothing set yet: an empty profile.
    let r = api.call("GET", &format!("/api/v1/conversations/{id}"), None);
    assert_eq!(r.json()["visitor_profile"], json!({}));

    let r = api.call(
        "PUT",
        &path,
        Some(r#"{ "name": "Vera", "fields": {"plan": "pro", "tz": "UTC"} }"#),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let first = r.json();
    // Stored compact, as the visitor, delivered to both sides.
    let d = sue.deliver(id);
    assert_eq!(
        (d.sender_role, d.sender.as_str(), d.content_type),
        (role::VISITOR, "vera", content::PROFILE)
    );
    assert_eq!(
        serde_json::from_str::<Value>(&d.body).unwrap(),
        json!({"name":"Vera","fields":{"plan":"pro","tz":"UTC"}})
    );
    assert!(!d.body.contains(' '), "{}", d.body);
    assert_eq!(vera.deliver(id).content_type, content::PROFILE);

    // A second update merges; with an Idempotency-Key a retry stores nothing new.
    let update = r#"{"email":"vera@example.com","fields":{"tz":null,"lang":"de"}}"#;
    let keyed = |api: &mut crate::util::api::ApiClient| {
        api.call_with("PUT", &path, "Idempotency-Key: upd-1\r\n", Some(update))
    };
    let r = keyed(&mut api);
    assert_eq!(r.status, 201);
    let again = keyed(&mut api);
    assert_eq!((again.status, again.json()), (201, r.json()));
    assert_ne!(r.json()["seq"], first["seq"]);
    let got = api
        .call("GET", &format!("/api/v1/conversations/{id}"), None)
        .json();
    assert_eq!(
        got["visitor_profile"],
        json!({"name":"Vera","email":"vera@example.com","fields":{"plan":"pro","lang":"de"}})
    );
    assert_eq!(got["visitor"], "vera");
    // POST .../messages with content type 6 is the same write.
    let r = api.call(
        "POST",
        &format!("/api/v1/conversations/{id}/messages"),
        Some(r#"{"body":"{\"name\":null}","content_type":6}"#),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let got = api
        .call("GET", &format!("/api/v1/conversations/{id}"), None)
        .json();
    assert_eq!(got["visitor_profile"].get("name"), None);
    // ... but not as the agent.
    let r = api.call(
        "POST",
        &format!("/api/v1/conversations/{id}/messages"),
        Some(
            r#"{"body":"{\"name\":\"X\"}","content_type":6,"sender_role":"agent","sender":"sue"}"#,
        ),
    );
    assert_eq!((r.status, r.code()), (403, 403));
    // The webhook-facing export carries the events in order.
    let export = api.call("GET", &format!("/api/v1/conversations/{id}/export"), None);
    let profiles = String::from_utf8_lossy(&export.body)
        .lines()
        .filter(|l| l.contains(r#""content_type":6"#))
        .count();
    assert_eq!(profiles, 3);
    s.recorder.validate();
}

#[test]
fn the_visitor_route_refuses_every_class_of_bad_input() {
    let (k_msg, msg) = key("msg", "", &[Scope::MessagesWrite]);
    let (k_write, write) = key("write", "", &[Scope::ConversationsWrite]);
    let s = Setup::with(|c| {
        c.api.keys.extend([k_msg, k_write]);
        c.api.max_body_bytes = 8192;
    });
    let (_vera, _sue, id) = s.served_conversation("hello");
    let path = format!("/api/v1/conversations/{id}/visitor");
    let good = Some(r#"{"name":"Vera"}"#);

    // Credentials and scopes: no key, a wrong one, the wrong scope, another tenant.
    for cred in [None, Some("sbk_msg_wrong")] {
        assert_eq!(s.client(cred).call("PUT", &path, good).status, 401);
    }
    for k in [&s.reader, &write] {
        let r = s.client(Some(k)).call("PUT", &path, good);
        assert_eq!((r.status, r.code()), (403, 403));
    }
    let r = s.client(Some(&s.other_tenant)).call("PUT", &path, good);
    assert_eq!((r.status, r.code()), (404, 404));
    let r = s
        .client(Some(&msg))
        .call("PUT", "/api/v1/conversations/999999/visitor", good);
    assert_eq!(r.status, 404);

    // Bodies: each 400, the connection survives.
    let mut api = s.client(Some(&msg));
    let fields: Vec<String> = (0..33).map(|i| format!(r#""f{i}":"v""#)).collect();
    let too_many = format!(r#"{{"fields":{{{}}}}}"#, fields.join(","));
    let oversize = format!(r#"{{"name":"{}"}}"#, "x".repeat(5000));
    for bad in [
        "{",
        "[]",
        "null",
        "{}",
        r#"{"name":"Vera","surprise":1}"#,
        r#"{"name":"a","name":"b"}"#,
        r#"{"name":5}"#,
        r#"{"email":"vera"}"#,
        r#"{"email":"vera@@example.com"}"#,
        r#"{"email":"vera@example..com"}"#,
        r#"{"name":"a\u0000b"}"#,
        r#"{"fields":{"bad key":"v"}}"#,
        r#"{"fields":{"k":1}}"#,
        &too_many,
        &oversize,
    ] {
        let r = api.call("PUT", &path, Some(bad));
        assert_eq!((r.status, r.code()), (400, 400), "{bad}: {:?}", r.json());
    }
    // The bound after the merge: 32 fields fit, one more does not.
    let fields: Vec<String> = (0..32).map(|i| format!(r#""f{i}":"v""#)).collect();
    let full = format!(r#"{{"fields":{{{}}}}}"#, fields.join(","));
    assert_eq!(api.call("PUT", &path, Some(&full)).status, 201);
    let r = api.call("PUT", &path, Some(r#"{"fields":{"one-more":"x"}}"#));
    assert_eq!((r.status, r.code()), (400, 400), "{:?}", r.json());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("32")
    );

    // Media type, method, past max_body_bytes.
    let text = api.request_text(
        "PUT",
        &path,
        "Content-Type: text/plain\r\nContent-Length: 2\r\n",
        None,
    );
    api.send_raw(format!("{text}{{}}").as_bytes());
    assert_eq!(api.read_reply("PUT", &path).status, 415);
    let r = api.call("GET", &path, None);
    assert_eq!((r.status, r.header("allow")), (405, Some("PUT")));
    let r = api.call("PUT", &path, Some(&"x".repeat(9000)));
    assert_eq!((r.status, r.code()), (413, 102));

    // A closed conversation takes no more updates.
    let mut admin = s.client(Some(&s.admin));
    let r = admin.call("POST", &format!("/api/v1/conversations/{id}/close"), None);
    assert_eq!(r.status, 204);
    let r = admin.call("PUT", &path, good);
    assert_eq!((r.status, r.code()), (409, 409));
    s.recorder.validate();
}

#[test]
fn the_assigned_agent_reads_the_card_with_the_visitor_address_as_kept() {
    let s =
        Setup::with(|c| c.routing.visitor_address = switchboard::config::VisitorAddress::Masked);
    let (mut vera, _sue, id) = s.served_conversation("hello");
    let path = format!("/api/v1/conversations/{id}");
    // Sue serves it: her own session token reads the card, the address masked to
    // its /24 (`routing.visitor_address = "masked"`).
    let r = s
        .client_as(&crate::util::agent_token("sue", &["support"]))
        .call("GET", &path, None);
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["visitor_address"], "127.0.0.0");
    assert_eq!(r.json()["visitor"], "vera");
    // Another agent of the tenant does not serve it: not found for him.
    let r = s
        .client_as(&crate::util::agent_token("tom", &["support"]))
        .call("GET", &path, None);
    assert_eq!(r.status, 404, "{:?}", r.json());
    // The visitor's own token is not enough, nor for any other route.
    let mut own = s.client_as(&token("vera", "visitor"));
    assert_eq!(own.call("GET", &path, None).status, 403);
    assert_eq!(
        own.call("GET", &format!("{path}/messages"), None).status,
        403
    );
    // Sue's token reads nothing else of the API.
    let r = s
        .client_as(&crate::util::agent_token("sue", &["support"]))
        .call("GET", &format!("{path}/messages"), None);
    assert_eq!(r.status, 403, "{:?}", r.json());
    vera.ping();
    s.recorder.validate();
}
