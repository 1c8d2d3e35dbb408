//! Visitors without a back end, end to end over loopback: a page's `POST
//! /web/v1/sites/{site}/visitor-token` gets a token (anonymous, or identified by the
//! site's back end), says Hello with it over `switchboard.v1.json`, and a reload or a
//! second tab (the same id and key) continues the same conversation. Every refusal
//! has its status; CORS is checked; the per-address rate gives 429 to one address
//! and none to its neighbour.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::config::WebSite;
use switchboard::protocol::messages::Msg;

use crate::util::http::{self, Response, raw, raw_from};
use crate::util::peer::{Peer, service_server};
use crate::util::ws::{WsClient, op};
use crate::util::{Client, TestServer, agent_token};

const SECRET: &str = "shop-visitor-secret-0123456789abcdef";
const IDENTITY: &str = "shop-identity-secret-0123456789abcdef";
/// `printf '%s' user-42 | openssl dgst -sha256 -hmac "$IDENTITY"` (proto-spec/JSON.md).
const USER_42_HASH: &str = "ca8bef6c3c5648c0fa717d65b4f511e78fe1a9880526468f3885591daac4fed1";
const ORIGIN: &str = "https://shop.example";
const PATH: &str = "/web/v1/sites/shop/visitor-token";

/// The `shop` site: anonymous visitors and identified users, group `sales`.
fn shop() -> WebSite {
    WebSite {
        id: "shop".into(),
        allowed_origins: vec![ORIGIN.into()],
        group: Some("sales".into()),
        tenant: String::new(),
        anonymous: true,
        secret: Some(SECRET.into()),
        secret_file: None,
        identity_secret: Some(IDENTITY.into()),
        identity_secret_file: None,
        widget: Default::default(),
    }
}

/// A site for identified users only.
fn members() -> WebSite {
    WebSite {
        id: "members".into(),
        anonymous: false,
        secret: None,
        ..shop()
    }
}

fn with_sites(c: &mut switchboard::Config) {
    c.web.sites = vec![shop(), members()];
}

/// The request text of a POST to `path` with `body` and extra header lines.
fn post_text(path: &str, origin: Option<&str>, extra: &str, body: &str) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: gw.example\r\n{origin}Content-Type: application/json\r\n\
         Content-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// POSTs `body` to the shop's endpoint from `ORIGIN`.
fn post(server: &TestServer, body: &Value) -> Response {
    raw(
        server.addr(),
        post_text(PATH, Some(ORIGIN), "", &body.to_string()).as_bytes(),
    )
}

/// The JSON of a 200 answer (panics otherwise), after checking its headers.
fn issued(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some(ORIGIN),
        "{r:?}"
    );
    assert_eq!(r.header("Vary"), Some("Origin"), "{r:?}");
    assert_eq!(r.header("Cache-Control"), Some("no-store"), "{r:?}");
    assert_eq!(r.header("Content-Type"), Some("application/json"), "{r:?}");
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

/// A JSON WebSocket session (from the site's origin) that said Hello with `token`.
fn hello(server: &TestServer, token: &str) -> (WsClient, Value) {
    let mut c = WsClient::connect(server.addr(), Some("switchboard.v1.json"), Some(ORIGIN));
    send_json(
        &mut c,
        &json!({"kind": "Hello", "request_id": 1,
            "fields": {"protocol": 1, "token": token, "client": "visitor-test"}}),
    );
    let welcome = read_kind(&mut c, "Welcome");
    (c, welcome)
}

fn send_json(c: &mut WsClient, v: &Value) {
    c.send_text(&v.to_string());
}

/// The next JSON message of `kind` (others skipped).
fn read_kind(c: &mut WsClient, kind: &str) -> Value {
    loop {
        let f = c.read_data();
        assert_eq!(f.opcode, op::TEXT, "{f:?}");
        let v: Value = serde_json::from_str(f.text()).unwrap();
        if v["kind"] == kind {
            return v;
        }
        assert_ne!(v["kind"], "Error", "{v}");
    }
}

/// Sends text in conversation 0 (open, or the open one) and returns the
/// conversation id it was accepted in.
fn send_opening(c: &mut WsClient, rid: u32, body: &str) -> u64 {
    send_json(
        c,
        &json!({"kind": "Send", "request_id": rid, "fields":
            {"content_type": 1, "conversation": "0", "client_msg_id": rid.to_string(),
             "body": body}}),
    );
    let accepted = read_kind(c, "Accepted");
    accepted["fields"]["conversation"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn an_anonymous_visitor_talks_and_a_second_tab_continues_the_conversation() {
    let server = service_server(with_sites);
    let mut alice = Peer::connect(server.addr(), &agent_token("alice", &["sales"]), "alice");
    let first = issued(&post(&server, &json!({})));
    let id = first["visitor_id"].as_str().unwrap().to_owned();
    let key = first["visitor_key"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 22, "128 bits, base64url: {id}");
    assert_eq!(first["user"], format!("v:shop:{id}"));
    let expires: u64 = first["expires_ms"].as_str().unwrap().parse().unwrap();
    assert!(expires > 0);

    let (mut tab1, welcome) = hello(&server, first["token"].as_str().unwrap());
    assert_eq!(welcome["fields"]["user"], format!("v:shop:{id}"));
    assert_eq!(welcome["fields"]["role"], 1);
    let conversation = send_opening(&mut tab1, 2, "hello from tab 1");
    // The site's group routes it: alice (sales) gets it.
    alice.assigned(conversation);

    // A reload: the page posts the id and key it kept and gets the same user.
    let again = issued(&post(
        &server,
        &json!({"visitor_id": id, "visitor_key": key}),
    ));
    assert_eq!(
        (&again["visitor_id"], &again["visitor_key"], &again["user"]),
        (&first["visitor_id"], &first["visitor_key"], &first["user"])
    );
    let (mut tab2, welcome) = hello(&server, again["token"].as_str().unwrap());
    assert_eq!(welcome["fields"]["user"], format!("v:shop:{id}"));
    // A second tab's Send in conversation 0 lands in the open conversation.
    assert_eq!(send_opening(&mut tab2, 3, "hello from tab 2"), conversation);
    let d = alice.wait_event("Deliver from tab 2", |m| match m {
        Msg::Deliver(d) if d.conversation == conversation && d.body == "hello from tab 2" => {
            Some(d.clone())
        }
        _ => None,
    });
    assert_eq!(d.sender, format!("v:shop:{id}"));
    // A new visitor is someone else, in a conversation of its own.
    let other = issued(&post(&server, &json!({})));
    assert_ne!(other["visitor_id"], first["visitor_id"]);
    let (mut stranger, _) = hello(&server, other["token"].as_str().unwrap());
    assert_ne!(send_opening(&mut stranger, 2, "hi"), conversation);
}

#[test]
fn forged_keys_and_hashes_are_403_and_right_hashes_identify() {
    let server = TestServer::start(with_sites);
    let mut n = Client::established(server.addr());
    let first = issued(&post(&server, &json!({})));
    let id = first["visitor_id"].as_str().unwrap();
    // Someone else's id with one's own key; a made-up key.
    let other = issued(&post(&server, &json!({})));
    for (id, key) in [
        (id, other["visitor_key"].as_str().unwrap()),
        (id, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let r = post(&server, &json!({"visitor_id": id, "visitor_key": key}));
        assert_eq!(r.status, 403, "{r:?}");
        assert_eq!(r.header("Access-Control-Allow-Origin"), Some(ORIGIN));
        assert!(r.body.contains("visitor key"), "{r:?}");
    }
    // Identified: the back end's hash of the id.
    let ok = issued(&post(
        &server,
        &json!({"user_id": "user-42", "user_hash": USER_42_HASH, "name": "Ann",
                "email": "ann@example.com"}),
    ));
    assert_eq!(ok["user"], "u:shop:user-42");
    assert!(ok.get("visitor_key").is_none(), "{ok}");
    let (_c, welcome) = hello(&server, ok["token"].as_str().unwrap());
    assert_eq!(welcome["fields"]["user"], "u:shop:user-42");
    // Claiming user-43 with user-42's hash.
    let r = post(
        &server,
        &json!({"user_id": "user-43", "user_hash": USER_42_HASH}),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("user hash"), "{r:?}");
    n.ping(1, b"");
}

#[test]
fn a_site_without_anonymous_visitors_refuses_them() {
    let server = TestServer::start(with_sites);
    let path = "/web/v1/sites/members/visitor-token";
    let r = raw(
        server.addr(),
        post_text(path, Some(ORIGIN), "", "{}").as_bytes(),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("anonymous"), "{r:?}");
    let body = json!({"user_id": "user-42", "user_hash": USER_42_HASH}).to_string();
    let r = raw(
        server.addr(),
        post_text(path, Some(ORIGIN), "", &body).as_bytes(),
    );
    let v = issued(&r);
    assert_eq!(v["user"], "u:members:user-42");
}

#[test]
fn origins_are_checked_and_the_preflight_answers() {
    let server = TestServer::start(with_sites);
    let addr = server.addr();
    let preflight = |origin: &str| {
        raw(
            addr,
            format!(
                "OPTIONS {PATH} HTTP/1.1\r\nHost: gw.example\r\nOrigin: {origin}\r\n\
                 Access-Control-Request-Method: POST\r\n\
                 Access-Control-Request-Headers: content-type\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    let r = preflight(ORIGIN);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some(ORIGIN));
    assert_eq!(r.header("Access-Control-Allow-Methods"), Some("POST"));
    assert_eq!(
        r.header("Access-Control-Allow-Headers"),
        Some("content-type")
    );
    assert_eq!(r.header("Access-Control-Max-Age"), Some("600"));
    assert_eq!(r.header("Vary"), Some("Origin"));
    let r = preflight("https://evil.example");
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    let r = raw(
        addr,
        post_text(PATH, Some("https://evil.example"), "", "{}").as_bytes(),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    // No Origin (a server, curl): allowed, as for WebSockets.
    let r = raw(addr, post_text(PATH, None, "", "{}").as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    // The site's origin may open WebSockets; another still may not.
    let req = crate::util::ws::upgrade_request(
        addr,
        Some("switchboard.v1.json"),
        Some("https://evil.example"),
        &[],
    );
    assert_eq!(
        WsClient::try_connect(addr, &req).err().map(|e| e.0),
        Some(403)
    );
    WsClient::connect(addr, Some("switchboard.v1.json"), Some(ORIGIN));
}

#[test]
fn the_rate_limits_one_address_and_not_its_neighbour() {
    let server = TestServer::start(|c| {
        with_sites(c);
        // One reactor: the table is per reactor.
        c.reactor.threads = 1;
        c.web.visitor_tokens_per_minute = 3;
    });
    let addr = server.addr();
    let req = post_text(PATH, Some(ORIGIN), "", "{}");
    let here = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let neighbour = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    for i in 0..3 {
        let r = raw_from(here, addr, req.as_bytes());
        assert_eq!(r.status, 200, "token {i} of the burst: {r:?}");
    }
    // The fourth is refused before its body is looked at (no guessing keys at speed).
    let r = raw_from(here, addr, req.as_bytes());
    assert_eq!(r.status, 429, "{r:?}");
    let retry: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "one token back in 20 s: {r:?}");
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some(ORIGIN));
    let r = raw_from(neighbour, addr, req.as_bytes());
    assert_eq!(r.status, 200, "the neighbour is unaffected: {r:?}");
    let text = http::get(server.admin_addr(), "/metrics").body;
    for want in [
        "switchboard_visitor_tokens_total{outcome=\"issued_anonymous\"} 4",
        "switchboard_visitor_tokens_total{outcome=\"rate_limited\"} 1",
        "switchboard_http_responses_total{status=\"429\"} 1",
    ] {
        assert!(text.contains(want), "{want} missing from metrics");
    }
}

/// Behind a PROXY header, the rate counts the client the header names, not the
/// proxy every request comes from.
#[test]
fn behind_a_proxy_the_rate_limits_the_client_the_header_names() {
    use switchboard::proxy::{ProxyHeader, encode_v1, encode_v2};
    let server = TestServer::start(|c| {
        with_sites(c);
        c.reactor.threads = 1;
        c.web.visitor_tokens_per_minute = 2;
        c.listeners.client.proxy_protocol = true;
        c.listeners.client.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    });
    let req = post_text(PATH, Some(ORIGIN), "", "{}");
    let via_proxy = |client: [u8; 4], v2: bool| {
        let h = ProxyHeader::Proxied {
            source: SocketAddr::from((client, 40000)),
            destination: SocketAddr::from(([192, 0, 2, 1], 443)),
        };
        let header = if v2 {
            encode_v2(&h, &[])
        } else {
            encode_v1(&h)
        };
        raw(server.addr(), &[header.as_slice(), req.as_bytes()].concat())
    };
    assert_eq!(via_proxy([203, 0, 113, 1], true).status, 200);
    assert_eq!(via_proxy([203, 0, 113, 1], false).status, 200);
    assert_eq!(via_proxy([203, 0, 113, 1], true).status, 429);
    // Another visitor behind the same proxy has a budget of its own.
    assert_eq!(via_proxy([203, 0, 113, 2], false).status, 200);
}

#[test]
fn lengths_types_methods_and_sites_get_their_status() {
    let server = TestServer::start(|c| {
        with_sites(c);
        c.heartbeat.handshake_timeout = Duration::from_millis(500);
    });
    let mut n = Client::established(server.addr());
    let addr = server.addr();
    let status = |req: &str| raw(addr, req.as_bytes()).status;
    // Chunked, or no length: 411.
    let chunked = format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    );
    assert_eq!(status(&chunked), 411);
    let no_length =
        format!("POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n");
    assert_eq!(status(&no_length), 411);
    // Over 4096 bytes: 413 without reading it.
    let big = format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 4097\r\n\r\n"
    );
    assert_eq!(status(&big), 413);
    // Another type: 415.
    let form = format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 2\r\n\r\n{{}}"
    );
    assert_eq!(status(&form), 415);
    // Not JSON, unknown fields: 400.
    assert_eq!(status(&post_text(PATH, None, "", "{\"a\":1}")), 400);
    assert_eq!(status(&post_text(PATH, None, "", "nope")), 400);
    // text/plain is read as JSON (no preflight needed).
    let plain = format!(
        "POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: 2\r\n\r\n{{}}"
    );
    assert_eq!(status(&plain), 200);
    // Unknown site, malformed paths: 404; other methods: 405.
    for path in [
        "/web/v1/sites/nope/visitor-token",
        "/web/v1/sites/shop/visitor-token/x",
        "/web/v1/sites/",
    ] {
        assert_eq!(status(&post_text(path, None, "", "{}")), 404, "{path}");
    }
    let r = raw(
        addr,
        format!("GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("Allow"), Some("POST, OPTIONS"));
    // A body sent after the head is waited for.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let text = post_text(PATH, None, "", "{}");
    let (head, body) = text.split_at(text.len() - 2);
    s.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(body.as_bytes()).unwrap();
    assert_eq!(http::raw_on(s, b"").status, 200);
    // A body that never comes: 408 at the handshake deadline.
    let text = post_text(PATH, None, "", "{}");
    let r = raw(addr, &text.as_bytes()[..text.len() - 1]);
    assert_eq!(r.status, 408, "{r:?}");
    n.ping(1, b"");
}

#[test]
fn after_a_reload_that_replaces_the_keys_new_visitor_tokens_verify() {
    let mut server = TestServer::start(with_sites);
    let addr = server.addr();
    let before = issued(&post(&server, &json!({})));
    // A reload drops the only key for another one.
    let mut next = server.config().clone();
    next.auth.keys = vec![switchboard::config::AuthKey {
        kid: "next".into(),
        secret: Some("a-completely-different-secret-0123456789abcdef".into()),
        secret_file: None,
    }];
    let daemon = server.take();
    daemon.reload(&next).expect("reload");
    let say_hello = |token: &Value| {
        let mut c = WsClient::connect(addr, Some("switchboard.v1.json"), Some(ORIGIN));
        send_json(
            &mut c,
            &json!({"kind": "Hello", "request_id": 1,
                "fields": {"protocol": 1, "token": token, "client": "visitor-test"}}),
        );
        c.read_data()
    };
    // The token minted before no longer verifies (its key is gone); one minted now does.
    let refused: Value = serde_json::from_str(say_hello(&before["token"]).text()).unwrap();
    assert_eq!(
        (refused["kind"].as_str(), refused["status"].as_u64()),
        (Some("Error"), Some(202))
    );
    let after = issued(&raw(
        addr,
        post_text(PATH, Some(ORIGIN), "", "{}").as_bytes(),
    ));
    let welcome: Value = serde_json::from_str(say_hello(&after["token"]).text()).unwrap();
    assert_eq!(welcome["kind"], "Welcome", "{welcome}");
    assert_eq!(welcome["fields"]["user"], after["user"]);
    daemon.shutdown();
}

/// `GET` (or another method) of `path` from `origin`, as raw HTTP.
fn request(addr: std::net::SocketAddr, method: &str, path: &str, origin: Option<&str>) -> Response {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    raw(
        addr,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: gw.example\r\n{origin}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}

#[test]
fn the_widget_settings_are_public_checked_by_origin_and_hold_no_secret() {
    let server = TestServer::start(|c| {
        let mut shop = shop();
        shop.widget.title = "Shop help".into();
        shop.widget.color = "#0b6e4f".into();
        shop.widget.position = "left".into();
        shop.widget.timezone = "Asia/Shanghai".into();
        shop.widget.hours = vec!["mon-fri 09:00-18:00".into()];
        shop.widget.pre_chat = vec![switchboard::config::PreChatField {
            key: "email".into(),
            label: "Your email".into(),
            required: true,
        }];
        c.web.sites = vec![shop, members()];
    });
    let addr = server.addr();
    let path = "/web/v1/sites/shop/widget";
    let r = request(addr, "GET", path, Some(ORIGIN));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some(ORIGIN));
    assert_eq!(r.header("Vary"), Some("Origin"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert!(
        !r.body.contains(SECRET) && !r.body.contains(IDENTITY),
        "{}",
        r.body
    );
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["site"], "shop");
    assert_eq!(v["group"], "sales");
    assert_eq!(v["anonymous"], true);
    assert_eq!(v["identified"], true);
    assert_eq!(v["title"], "Shop help");
    assert_eq!(v["color"], "#0b6e4f");
    assert_eq!(v["position"], "left");
    assert_eq!(v["language"], "auto");
    assert_eq!(v["timezone"], "Asia/Shanghai");
    assert_eq!(v["hours"], json!(["mon-fri 09:00-18:00"]));
    assert_eq!(
        v["pre_chat"],
        json!([{"key": "email", "label": "Your email", "required": true}])
    );
    assert!(v["max_attachment_bytes"].as_u64().is_some_and(|n| n > 0));
    assert!(
        v["attachment_types"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    // Defaults for a site without a [web.sites.widget] table.
    let r = request(addr, "GET", "/web/v1/sites/members/widget", None);
    assert_eq!(r.status, 200, "{r:?}");
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (v["color"].as_str(), v["position"].as_str()),
        (Some("#1f5fbf"), Some("right"))
    );
    assert_eq!(
        (
            v["anonymous"].as_bool(),
            v["pre_chat"].as_array().map(Vec::len)
        ),
        (Some(false), Some(0))
    );
    // Another origin: 403 without CORS; an unknown site 404; other methods 405.
    let r = request(addr, "GET", path, Some("https://evil.example"));
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    assert_eq!(
        request(addr, "GET", "/web/v1/sites/nope/widget", Some(ORIGIN)).status,
        404
    );
    let r = request(addr, "POST", path, Some(ORIGIN));
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("Allow"), Some("GET, HEAD, OPTIONS"));
    let r = request(addr, "OPTIONS", path, Some(ORIGIN));
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("Access-Control-Allow-Methods"), Some("GET"));
    let r = request(addr, "HEAD", path, Some(ORIGIN));
    assert_eq!((r.status, r.body.as_str()), (200, ""));
}

#[test]
fn attachment_routes_answer_cors_for_the_sites_origins_only() {
    let server = service_server(with_sites);
    let addr = server.addr();
    let upload = "/api/v1/conversations/7/attachments";
    let r = request(addr, "OPTIONS", upload, Some(ORIGIN));
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some(ORIGIN));
    assert_eq!(r.header("Access-Control-Allow-Methods"), Some("GET, POST"));
    assert_eq!(
        r.header("Access-Control-Allow-Headers"),
        Some("authorization, content-type, idempotency-key")
    );
    let r = request(addr, "OPTIONS", upload, Some("https://evil.example"));
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    // Every answer of the route names the allowed origin, errors included (the page
    // can then read why), and nothing else of the API does.
    let download = format!("{upload}/{}", "a".repeat(64));
    let r = request(addr, "GET", &download, Some(ORIGIN));
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some(ORIGIN));
    let r = request(addr, "GET", &download, Some("https://evil.example"));
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    let r = request(addr, "GET", "/api/v1/conversations/7", Some(ORIGIN));
    assert_eq!(r.header("Access-Control-Allow-Origin"), None, "{r:?}");
    let r = request(addr, "OPTIONS", "/api/v1/conversations/7", Some(ORIGIN));
    assert_eq!(r.header("Access-Control-Allow-Origin"), None, "{r:?}");
}
