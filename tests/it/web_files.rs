//! Attachments over the HTTP API (`POST`/`GET /api/v1/conversations/{id}/attachments`),
//! over loopback against binary sessions: upload with the visitor's own token, the
//! agent's `Deliver` with content type 5, download by the agent with the bytes and
//! headers, who may and may not (other visitor, other tenant, admin key, read-only
//! key), every bad upload (too large declared and chunked, wrong type, a path in the
//! name, empty, truncated), content dedup, the protocol refusing content type 5, and
//! retention removing a forgotten conversation's files. Every response is validated
//! against `proto-spec/openapi.yaml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use switchboard::api::Scope;
use switchboard::protocol::messages::{self, Msg, content};

use crate::util::api::{ApiClient, ApiSetup as Setup, Recorder, Reply, key};
use crate::util::peer::{Peer, RawPeer};
use crate::util::{TokenClaims, agent_token, token, token_with, wait_until};

fn files(s: &Setup) -> PathBuf {
    s.server.config().state_dir.join("files")
}

/// `vera`'s conversation with `sue`, opened with "here is the invoice".
fn served_conversation(s: &Setup) -> (Peer, Peer, u64) {
    s.served_conversation("here is the invoice")
}

fn upload_target(conversation: u64, name: &str) -> String {
    format!("/api/v1/conversations/{conversation}/attachments?name={name}")
}

/// `POST`s `bytes` as an attachment with `Content-Length`.
fn upload(api: &mut ApiClient, conversation: u64, name: &str, media: &str, bytes: &[u8]) -> Reply {
    let target = upload_target(conversation, name);
    let head = api.request_text(
        "POST",
        &target,
        &format!(
            "Content-Type: {media}\r\nContent-Length: {}\r\n",
            bytes.len()
        ),
        None,
    );
    api.send_raw(head.as_bytes());
    api.send_raw(bytes);
    api.read_reply("POST", &target)
}

fn download(api: &mut ApiClient, method: &str, conversation: u64, id: &str) -> Reply {
    api.call(
        method,
        &format!("/api/v1/conversations/{conversation}/attachments/{id}"),
        None,
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    switchboard::files::store::sha256_hex(bytes)
}

/// File names under `dir` (none when it does not exist).
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_visitor_uploads_with_its_own_token_and_the_agent_downloads_the_same_bytes() {
    let s = Setup::with(|_| {});
    let (mut vera, mut sue, id) = served_conversation(&s);
    let pdf: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let file_id = sha256_hex(&pdf);

    let mut as_vera = s.client_as(&token("vera", "visitor"));
    let r = upload(
        &mut as_vera,
        id,
        "r%C3%A9sum%C3%A9%20v1.pdf",
        "application/pdf",
        &pdf,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let accepted = r.json();
    assert_eq!(accepted["conversation"], Value::String(id.to_string()));
    let seq: u64 = accepted["seq"].as_str().unwrap().parse().unwrap();

    // The agent gets the message that references it.
    let d = sue.deliver(id);
    assert_eq!(
        (d.content_type, d.seq, d.sender.as_str()),
        (content::ATTACHMENT, seq, "vera")
    );
    assert_eq!(d.sender_role, messages::role::VISITOR);
    let body: Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"id": file_id, "name": "résumé v1.pdf", "size": 5000, "type": "application/pdf"})
    );

    // ... and downloads it with its own token.
    let mut as_sue = s.client_as(&agent_token("sue", &["support"]));
    let r = download(&mut as_sue, "GET", id, &file_id);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, pdf);
    assert_eq!(r.header("content-type"), Some("application/pdf"));
    assert_eq!(
        r.header("content-disposition"),
        Some(
            "attachment; filename=\"r__sum__ v1.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20v1.pdf"
        )
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("cache-control"), Some("private, no-store"));
    assert_eq!(r.header("connection"), Some("keep-alive"));
    let head = download(&mut as_sue, "HEAD", id, &file_id);
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length"), Some("5000"));
    // The visitor reads it back too.
    assert_eq!(download(&mut as_vera, "GET", id, &file_id).body, pdf);

    // `Expect: 100-continue` (curl, past 1 MiB): the body is asked for, not awaited.
    // (A separate recorder: `100` is no answer the document lists.)
    let mut curl_like = ApiClient::connect(
        s.server.addr(),
        Some(&token("vera", "visitor")),
        &Recorder::default(),
    );
    let target = upload_target(id, "again.pdf");
    let head = curl_like.request_text(
        "POST",
        &target,
        &format!(
            "Content-Type: application/pdf\r\nContent-Length: {}\r\nExpect: 100-continue\r\n",
            pdf.len()
        ),
        None,
    );
    curl_like.send_raw(head.as_bytes());
    assert_eq!(curl_like.read_reply("POST", &target).status, 100);
    curl_like.send_raw(&pdf);
    assert_eq!(curl_like.read_reply("POST", &target).status, 201);
    assert_eq!(sue.deliver(id).content_type, content::ATTACHMENT);

    // Another visitor: 403 both ways; another tenant's key: 404.
    let mut otto = s.client_as(&token("otto", "visitor"));
    assert_eq!(download(&mut otto, "GET", id, &file_id).status, 403);
    assert_eq!(
        upload(&mut otto, id, "x.txt", "text/plain", b"x").status,
        403
    );
    let mut far = s.client_as(&s.other_tenant);
    assert_eq!(download(&mut far, "GET", id, &file_id).status, 404);
    assert_eq!(
        upload(&mut far, id, "x.txt", "text/plain", b"x").status,
        404
    );
    let elsewhere = TokenClaims {
        tenant: Some("elsewhere"),
        ..Default::default()
    };
    let mut far_admin = s.client_as(&token_with("boss", "admin", &elsewhere));
    assert_eq!(download(&mut far_admin, "GET", id, &file_id).status, 404);

    // The read-only key downloads but cannot upload.
    let mut crm = s.client_as(&s.reader);
    assert_eq!(download(&mut crm, "GET", id, &file_id).body, pdf);
    let r = upload(&mut crm, id, "x.txt", "text/plain", b"x");
    assert_eq!((r.status, r.code()), (403, 403));
    // An id no message of the conversation references: 404.
    let r = download(&mut crm, "GET", id, &sha256_hex(b"never uploaded"));
    assert_eq!(r.status, 404);

    // The admin key uploads (as the system) the same file: two messages, one file.
    let mut ops = s.client_as(&s.admin);
    let r = upload(&mut ops, id, "copy.pdf", "application/pdf", &pdf);
    assert_eq!(r.status, 201);
    // Her session gets what she uploaded over the API (twice); then the admin's copy.
    assert_eq!(vera.deliver(id).seq, seq);
    assert!(vera.deliver(id).body.contains("again.pdf"));
    let d = vera.deliver(id);
    assert_eq!(
        (d.content_type, d.sender_role),
        (content::ATTACHMENT, messages::role::SYSTEM)
    );
    assert!(d.body.contains("copy.pdf"), "{}", d.body);
    assert_eq!(
        names_in(&files(&s).join(id.to_string())),
        vec![file_id.clone()]
    );
    assert_eq!(download(&mut ops, "GET", id, &file_id).body, pdf);
    let m = s.server.metrics();
    assert_eq!((m.files.stored.get(), m.files.deduplicated.get()), (1, 2));
    assert_eq!(m.files.bytes.get(), 5000);
    // otto (403), the other tenant (404), the read-only key (403).
    let denied: u64 = m
        .reactors
        .iter()
        .map(|r| r.web.attachments_refused[3].get())
        .sum();
    assert_eq!(denied, 3);

    // A client cannot make an attachment message itself.
    let mut raw = RawPeer::connect(s.server.addr(), &token("vera", "visitor"));
    let send = Msg::from(messages::Send {
        content_type: content::ATTACHMENT,
        conversation: id,
        client_msg_id: 99,
        group: String::new(),
        body: format!(r#"{{"id":"{file_id}","name":"x","size":1,"type":"text/plain"}}"#),
    });
    raw.write_frame(&send.to_frame(7));
    raw.read_until(|rid, m| rid == 7 && matches!(m, Msg::Error(e) if e.code == 400));
    let r = as_vera.call(
        "POST",
        &format!("/api/v1/conversations/{id}/messages"),
        Some(r#"{"body":"hi"}"#),
    );
    assert_eq!(r.status, 403, "a visitor's token posts no message");
    let r = ops.call(
        "POST",
        &format!("/api/v1/conversations/{id}/messages"),
        Some(r#"{"body":"{}","content_type":5}"#),
    );
    assert_eq!(r.status, 400);
    s.recorder.validate();
}

#[test]
fn bad_uploads_get_clear_errors_and_leave_no_file() {
    let s = Setup::with(|c| c.api.max_attachment_bytes = 4096);
    let (_vera, mut sue, id) = served_conversation(&s);
    let visitor = token("vera", "visitor");
    let dir = files(&s).join(id.to_string());

    // Declared too large: 413 before the body, and the connection closes.
    let mut api = s.client_as(&visitor);
    let target = upload_target(id, "big.png");
    let head = api.request_text(
        "POST",
        &target,
        "Content-Type: image/png\r\nContent-Length: 4097\r\n",
        None,
    );
    api.send_raw(head.as_bytes());
    let r = api.read_reply("POST", &target);
    assert_eq!(r.status, 413);
    assert!(api.closed());

    // Chunked past the bound: 413 once the chunks pass it, and close.
    let mut api = s.client_as(&visitor);
    let head = api.request_text(
        "POST",
        &target,
        "Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n",
        None,
    );
    api.send_raw(head.as_bytes());
    let chunk = format!("800\r\n{}\r\n", "x".repeat(0x800));
    api.send_raw(chunk.as_bytes());
    api.send_raw(chunk.as_bytes());
    api.send_raw(chunk.as_bytes());
    let r = api.read_reply("POST", &target);
    assert_eq!(r.status, 413);
    assert!(api.closed());

    // Wrong media type: 415 (before the body), a path or control character in the
    // name or no name: 400, empty: 400.
    let mut api = s.client_as(&visitor);
    let target = upload_target(id, "a.exe");
    let head = api.request_text(
        "POST",
        &target,
        "Content-Type: application/x-msdownload\r\nContent-Length: 2\r\n",
        None,
    );
    api.send_raw(head.as_bytes());
    let r = api.read_reply("POST", &target);
    assert_eq!(r.status, 415, "{}", String::from_utf8_lossy(&r.body));
    assert!(api.closed(), "the unread body is not taken for a request");
    let mut api = s.client_as(&visitor);
    for name in ["..", "..%2Fetc%2Fpasswd", "a%5Cb", "a%00b", "a%0Ab", "."] {
        let r = upload(&mut api, id, name, "text/plain", b"hello");
        assert_eq!((r.status, r.code()), (400, 400), "{name}");
    }
    let target = format!("/api/v1/conversations/{id}/attachments");
    let head = api.request_text(
        "POST",
        &target,
        "Content-Type: text/plain\r\nContent-Length: 1\r\n",
        None,
    );
    api.send_raw(head.as_bytes());
    api.send_raw(b"x");
    assert_eq!(api.read_reply("POST", &target).status, 400);
    let r = upload(&mut api, id, "empty.txt", "text/plain", b"");
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("empty")
    );

    // Truncated: the client goes away mid-body. Nothing is stored, no message sent.
    let mut cut = s.client_as(&visitor);
    let target = upload_target(id, "cut.txt");
    let head = cut.request_text(
        "POST",
        &target,
        "Content-Type: text/plain\r\nContent-Length: 1000\r\n",
        None,
    );
    cut.send_raw(head.as_bytes());
    cut.send_raw(&[b'c'; 500]);
    drop(cut);

    // The next upload is the first that arrives: the agent's first Deliver is it.
    let r = upload(&mut api, id, "ok.txt", "text/plain", b"fine");
    assert_eq!(r.status, 201);
    let d = sue.deliver(id);
    assert!(d.body.contains("ok.txt"), "{}", d.body);
    assert_eq!(names_in(&dir), vec![sha256_hex(b"fine")]);
    // too_large, media_type, bad_request (six names, no name, empty), denied.
    let refused = |i: usize| {
        s.server
            .metrics()
            .reactors
            .iter()
            .map(|r| r.web.attachments_refused[i].get())
            .sum::<u64>()
    };
    assert_eq!((refused(0), refused(1), refused(2)), (2, 1, 8));
    s.recorder.validate();
}

#[test]
fn a_closed_conversation_takes_no_upload_and_retention_removes_its_files() {
    let s = Setup::with(|c| c.journal.retention = Duration::from_secs(1));
    let (mut vera, _sue, id) = served_conversation(&s);
    let mut ops = s.client_as(&s.admin);
    let r = upload(&mut ops, id, "a.txt", "text/plain", b"kept until retention");
    assert_eq!(r.status, 201);
    let dir = files(&s).join(id.to_string());
    assert_eq!(names_in(&dir).len(), 1);
    let r = ops.call("POST", &format!("/api/v1/conversations/{id}/close"), None);
    assert_eq!(r.status, 204);
    vera.closed(id);
    let r = upload(&mut ops, id, "late.txt", "text/plain", b"too late");
    assert_eq!((r.status, r.code()), (409, 409));
    // Retention runs every second: once the close is a second old, the conversation
    // is forgotten and its directory removed.
    assert!(
        wait_until(Duration::from_secs(20), || !dir.exists()),
        "{} is still there: {:?}",
        dir.display(),
        names_in(&dir)
    );
    let r = download(&mut ops, "GET", id, &sha256_hex(b"kept until retention"));
    assert_eq!(r.status, 404);
    s.recorder.validate();
}

#[test]
fn after_a_restart_the_transcript_still_references_its_files_and_temp_files_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (k, admin) = key("ops", "", &[Scope::Admin]);
    let mut cfg = crate::util::test_config(dir.path());
    cfg.heartbeat.interval = Duration::from_secs(10);
    cfg.heartbeat.idle_timeout = Duration::from_secs(60);
    cfg.api.keys = vec![k];
    let recorder = Recorder::default();
    let server = switchboard::Server::start(&cfg).unwrap();
    let addr = server.client_addr();
    let mut sue = Peer::connect(addr, &agent_token("sue", &["support"]), "sue");
    let mut vera = Peer::connect(addr, &token("vera", "visitor"), "vera");
    let id = vera.send_accepted(0, 1, "photo follows").conversation;
    sue.assigned(id);
    let png = b"\x89PNG\r\n\x1a\n not really a picture";
    let mut as_vera = ApiClient::connect(addr, Some(&token("vera", "visitor")), &recorder);
    assert_eq!(
        upload(&mut as_vera, id, "p.png", "image/png", png).status,
        201
    );
    sue.deliver(id);
    drop((sue, vera, as_vera));
    assert!(server.shutdown().clean);

    // A crash mid-write would leave a temp file: start-up removes it.
    let files = dir.path().join("state/files").join(id.to_string());
    std::fs::write(files.join(".tmp-crashed"), b"half").unwrap();
    let server = switchboard::Server::start(&cfg).unwrap();
    assert_eq!(names_in(&files), vec![sha256_hex(png)]);
    // The journal's message still references the file: the agent downloads it.
    let mut ops = ApiClient::connect(server.client_addr(), Some(&admin), &recorder);
    let r = download(&mut ops, "GET", id, &sha256_hex(png));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, png);
    assert_eq!(r.header("content-type"), Some("image/png"));
    drop(ops);
    assert!(server.shutdown().clean);
    recorder.validate();
}

#[test]
fn uploads_in_flight_are_bounded_per_reactor() {
    // One reactor, so both connections meet the same bound.
    let s = Setup::with(|c| {
        c.reactor.threads = 1;
        c.api.max_uploads_in_flight = 1;
    });
    let (_vera, _sue, id) = served_conversation(&s);
    let mut first = s.client_as(&s.admin);
    let target = upload_target(id, "slow.txt");
    let head = first.request_text(
        "POST",
        &target,
        "Content-Type: text/plain\r\nContent-Length: 10\r\n",
        None,
    );
    first.send_raw(head.as_bytes());
    first.send_raw(b"12345");
    // Connections are independent: the second upload may arrive before the first's
    // head was read, so it is retried (each one that passes is a success) until the
    // bound refuses it.
    let mut second = s.client_as(&s.admin);
    let refused = wait_until(Duration::from_secs(10), || {
        let r = upload(&mut second, id, "other.txt", "text/plain", b"other");
        if r.status == 201 {
            return false;
        }
        assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("retry-after"), Some("1"));
        true
    });
    assert!(refused, "the second upload was never refused");
    first.send_raw(b"67890");
    assert_eq!(first.read_reply("POST", &target).status, 201);
    // The bound is free again.
    let mut third = s.client_as(&s.admin);
    assert_eq!(
        upload(&mut third, id, "third.txt", "text/plain", b"3").status,
        201
    );
    s.recorder.validate();
}

#[test]
fn an_attachment_in_the_queue_is_not_taken_for_a_faq_question() {
    let faq = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/faq.toml");
    let s = Setup::with(|c| c.assist.faq = Some(faq));
    // Nobody serves the group: the conversation waits, where the FAQ answers.
    let mut vera = Peer::connect(s.server.addr(), &token("vera", "visitor"), "vera");
    let id = vera.send_accepted(0, 1, "hello").conversation;
    let mut api = s.client_as(&token("vera", "visitor"));
    let name = "How%20do%20I%20reset%20my%20password.txt";
    let r = upload(
        &mut api,
        id,
        name,
        "text/plain",
        b"How do I reset my password?",
    );
    assert_eq!(r.status, 201);
    let seq: u64 = r.json()["seq"].as_str().unwrap().parse().unwrap();
    // No automatic answer came between the upload and the next message.
    let next = vera.send_accepted(id, 2, "thanks, and the weather is nice today");
    assert_eq!(next.seq, seq + 1);
    s.recorder.validate();
}

#[test]
fn a_file_larger_than_a_connections_output_bound_is_downloaded_whole() {
    // Far larger than limits.max_pending_bytes and than what the kernel takes at
    // once: the answer must not be cut as a slow consumer.
    let s = Setup::with(|c| {
        c.reactor.read_buffer_bytes = 64 * 1024;
        c.limits.max_pending_bytes = 64 * 1024;
        c.limits.max_pending_total = 0;
    });
    let (_vera, _sue, id) = served_conversation(&s);
    let big: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut ops = s.client_as(&s.admin);
    assert_eq!(
        upload(&mut ops, id, "big.txt", "text/plain", &big).status,
        201
    );
    let r = download(&mut ops, "GET", id, &sha256_hex(&big));
    assert_eq!(r.status, 200);
    assert!(r.body == big, "{} bytes of {}", r.body.len(), big.len());
    // ... and the connection is kept, not cut.
    let r = download(&mut ops, "HEAD", id, &sha256_hex(&big));
    assert_eq!(r.status, 200);
    let cuts: u64 = s
        .server
        .metrics()
        .reactors
        .iter()
        .map(|r| r.cuts.iter().map(|c| c.get()).sum::<u64>())
        .sum();
    assert_eq!(cuts, 0, "slow consumer cuts");
    s.recorder.validate();
}

#[test]
fn an_upload_that_keeps_arriving_may_take_longer_than_the_request_deadline() {
    // Each 64 KiB received starts the request deadline again: six pieces half a
    // deadline apart take three deadlines in all.
    let s = Setup::with(|c| c.heartbeat.handshake_timeout = Duration::from_secs(1));
    let (_vera, _sue, id) = served_conversation(&s);
    let piece = vec![b'p'; 64 * 1024];
    let mut api = s.client_as(&s.admin);
    let target = upload_target(id, "slow.txt");
    let head = api.request_text(
        "POST",
        &target,
        &format!(
            "Content-Type: text/plain\r\nContent-Length: {}\r\n",
            piece.len() * 6
        ),
        None,
    );
    api.send_raw(head.as_bytes());
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        api.send_raw(&piece);
    }
    let r = api.read_reply("POST", &target);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    s.recorder.validate();
}

#[test]
fn a_download_read_slowly_but_steadily_outlasts_the_request_deadline() {
    use std::io::{Read, Write};
    // A 3 s request deadline: the service's own work on 16 MiB (hashing, writing,
    // reading back) must fit in it even on a loaded 2-core machine, while the slow
    // reader below takes over twice as long.
    let s = Setup::with(|c| {
        c.heartbeat.handshake_timeout = Duration::from_secs(3);
        c.api.max_attachment_bytes = 32 * 1024 * 1024;
    });
    let (_vera, _sue, id) = served_conversation(&s);
    let big: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let mut ops = s.client_as(&s.admin);
    assert_eq!(
        upload(&mut ops, id, "big.txt", "text/plain", &big).status,
        201
    );
    // A client with a small receive buffer that takes at most 64 KiB every 25 ms
    // (16 MiB take over 6 s): the answer stays queued at the server for two request
    // deadlines, always making progress.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    sock.connect(&s.server.addr().into()).unwrap();
    let mut raw: std::net::TcpStream = sock.into();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "GET /api/v1/conversations/{id}/attachments/{} HTTP/1.1\r\nHost: t\r\n\
         Authorization: Bearer {}\r\n\r\n",
        sha256_hex(&big),
        s.admin
    );
    raw.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let whole = loop {
        std::thread::sleep(Duration::from_millis(25));
        let n = match raw.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("after {} bytes: {e}", got.len()),
        };
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n")
            && got.len() >= at + 4 + big.len()
        {
            break got.split_off(at + 4);
        }
    };
    // (The server may have closed the kept connection since, idle past the deadline
    // once the kernel had the whole answer: what follows the body is not part of it.)
    assert!(whole[..big.len()] == big[..], "the body differs");
}
