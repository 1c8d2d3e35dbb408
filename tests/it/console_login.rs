//! Console logins end to end over loopback: `POST /console/v1/login` with a
//! configured user's password gets a token whose claims are the user's (role,
//! groups, name, tenant, capacity) and which opens a session that is routed the
//! user's conversations; `/refresh` renews it; every refusal has its status, is
//! counted and costs the same for unknown users; the per-address rate and the
//! login queue are bounded. Also `switchboard passwd`.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::config::ConsoleUser;
use switchboard::console::password;
use switchboard::protocol::messages::role;

use crate::util::http::{self, Response, raw, raw_from, raw_on};
use crate::util::peer::{Peer, service_server};
use crate::util::ws::WsClient;
use crate::util::{TestServer, agent_token, bin, token};

const HOST: &str = "gw.example";
const ORIGIN: &str = "http://gw.example";
const LOGIN: &str = "/console/v1/login";
const REFRESH: &str = "/console/v1/refresh";

/// A hash of `pw` cheap enough for tests (m = 256 KiB, t = 1).
fn cheap_hash(pw: &str) -> String {
    let params = argon2::Params::new(256, 1, 1, None).unwrap();
    password::hash(pw.as_bytes(), &[4; password::SALT_BYTES], params).unwrap()
}

fn user(name: &str, pw: &str, role: &str, groups: &[&str]) -> ConsoleUser {
    ConsoleUser {
        name: name.into(),
        password_hash: cheap_hash(pw),
        role: role.into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        display_name: Some(format!("{name} (console)")),
        max_concurrent: Some(3),
        tenant: String::new(),
    }
}

fn with_users(c: &mut switchboard::Config) {
    c.console.users = vec![
        user("ann", "ann's password", "agent", &["support"]),
        user("boss", "boss password", "admin", &["support", "sales"]),
    ];
}

/// The text of a POST to `path` from `origin` with `body` and extra header lines.
fn post_text(path: &str, origin: Option<&str>, extra: &str, body: &str) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: {HOST}\r\n{origin}Content-Type: application/json\r\n\
         Content-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

fn login(server: &TestServer, username: &str, password: &str) -> Response {
    let body = json!({"username": username, "password": password}).to_string();
    raw(
        server.addr(),
        post_text(LOGIN, Some(ORIGIN), "", &body).as_bytes(),
    )
}

fn refresh(server: &TestServer, token: &str) -> Response {
    let auth = format!("Authorization: Bearer {token}\r\n");
    raw(
        server.addr(),
        post_text(REFRESH, Some(ORIGIN), &auth, "").as_bytes(),
    )
}

/// The JSON of a 200 (panics otherwise), after checking its headers.
fn issued(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("Cache-Control"), Some("no-store"), "{r:?}");
    assert_eq!(r.header("Content-Type"), Some("application/json"), "{r:?}");
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

fn metrics(server: &TestServer) -> String {
    http::get(server.admin_addr(), "/metrics").body
}

#[test]
fn a_login_earns_a_token_with_the_users_claims_that_opens_a_routed_session() {
    let server = service_server(with_users);
    let v = issued(&login(&server, "ann", "ann's password"));
    assert_eq!(v["user"]["id"], "ann");
    assert_eq!(v["user"]["name"], "ann (console)");
    assert_eq!(v["user"]["role"], "agent");
    assert_eq!(v["user"]["groups"], json!(["support"]));
    assert_eq!(v["user"]["max_concurrent"], 3);
    let console_token = v["token"].as_str().unwrap();
    let expires: u64 = v["expires_ms"].as_str().unwrap().parse().unwrap();
    let id = server
        .verifier()
        .verify_token(console_token, std::time::SystemTime::now())
        .unwrap();
    assert_eq!(id.exp_ms, expires);
    assert_eq!(
        (
            id.identity.role,
            &id.identity.groups[..],
            id.identity.max_concurrent
        ),
        (role::AGENT, &["support".to_owned()][..], Some(3))
    );
    // 15 minutes by default (console.token_ttl).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!((14 * 60_000..=15 * 60_000 + 1000).contains(&expires.saturating_sub(now_ms)));

    // The token opens a JSON WebSocket session as agent `ann`.
    let mut ws = WsClient::connect(server.addr(), Some("switchboard.v1.json"), None);
    ws.send_text(
        &json!({"kind": "Hello", "request_id": 1,
            "fields": {"protocol": 1, "token": console_token, "client": "console-test"}})
        .to_string(),
    );
    let welcome: Value = serde_json::from_str(ws.read_data().text()).unwrap();
    assert_eq!(welcome["kind"], "Welcome", "{welcome}");
    assert_eq!(welcome["fields"]["user"], "ann");
    assert_eq!(welcome["fields"]["role"], role::AGENT);
    drop(ws);

    // ... and its groups route: a visitor's conversation in `support` goes to ann.
    let mut ann = Peer::connect(server.addr(), console_token, "ann");
    let mut visitor = Peer::connect(server.addr(), &token("v1", "visitor"), "v1");
    let conversation = visitor.send_accepted(0, 1, "hello").conversation;
    ann.assigned(conversation);

    // An admin's token is an admin's.
    let b = issued(&login(&server, "boss", "boss password"));
    assert_eq!(b["user"]["role"], "admin");
    let id = server
        .verifier()
        .verify(b["token"].as_str().unwrap(), std::time::SystemTime::now())
        .unwrap();
    assert_eq!(id.role, role::ADMIN);
    assert_eq!(id.groups, ["support", "sales"]);

    // A refresh gives a new token for the same user.
    let r = issued(&refresh(&server, console_token));
    assert_eq!(r["user"]["id"], "ann");
    let again = server
        .verifier()
        .verify(r["token"].as_str().unwrap(), std::time::SystemTime::now())
        .unwrap();
    assert_eq!((again.user.as_str(), again.role), ("ann", role::AGENT));
    // Not a token, or one of the operator's own sign-on: 401.
    for t in ["nonsense", &agent_token("sso-agent", &["support"])] {
        let r = refresh(&server, t);
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
    }
    let r = raw(
        server.addr(),
        post_text(REFRESH, Some(ORIGIN), "", "").as_bytes(),
    );
    assert_eq!(r.status, 401, "{r:?}");
    let m = metrics(&server);
    for want in [
        "switchboard_console_logins_total{outcome=\"ok\"} 2",
        "switchboard_console_logins_total{outcome=\"refreshed\"} 1",
        "switchboard_console_logins_total{outcome=\"refresh_refused\"} 3",
    ] {
        assert!(m.contains(want), "{want} missing from metrics");
    }
}

#[test]
fn wrong_unknown_malformed_oversize_and_foreign_logins_get_their_status() {
    let server = TestServer::start(|c| {
        with_users(c);
        c.console.logins_per_minute = 1000;
    });
    let addr = server.addr();
    let wrong = login(&server, "ann", "not ann's password");
    let unknown = login(&server, "mallory", "whatever");
    assert_eq!((wrong.status, unknown.status), (401, 401));
    // The same answer: nothing tells a name that exists from one that does not.
    assert_eq!(wrong.body, unknown.body);
    assert!(!wrong.body.contains("not ann's"), "{wrong:?}");
    let status = |req: String| raw(addr, req.as_bytes()).status;
    // Malformed: 400.
    for body in [
        "nope",
        "{}",
        r#"{"username":"ann"}"#,
        r#"{"username":"ann","password":""}"#,
    ] {
        assert_eq!(
            status(post_text(LOGIN, Some(ORIGIN), "", body)),
            400,
            "{body}"
        );
    }
    // Over 4096 bytes: 413 before the body is read.
    let big = format!(
        "POST {LOGIN} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n\
         Content-Length: 4097\r\n\r\n"
    );
    assert_eq!(status(big), 413);
    let no_length = format!("POST {LOGIN} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    assert_eq!(status(no_length), 411);
    let form = post_text(LOGIN, Some(ORIGIN), "", "a=b")
        .replace("application/json", "application/x-www-form-urlencoded");
    assert_eq!(status(form), 415);
    // Another origin: 403, no CORS.
    let body = json!({"username": "ann", "password": "ann's password"}).to_string();
    let r = raw(
        addr,
        post_text(LOGIN, Some("https://evil.example"), "", &body).as_bytes(),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    // Not a POST: 405.
    let r = raw(
        addr,
        format!("GET {LOGIN} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes(),
    );
    assert_eq!((r.status, r.header("Allow")), (405, Some("POST")));
    // The body after the head is waited for.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let text = post_text(LOGIN, Some(ORIGIN), "", &body);
    let (head, rest) = text.split_at(text.len() - 5);
    s.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(rest.as_bytes()).unwrap();
    issued(&raw_on(s, b""));
    let m = metrics(&server);
    for want in [
        "switchboard_console_logins_total{outcome=\"ok\"} 1",
        "switchboard_console_logins_total{outcome=\"bad_password\"} 1",
        "switchboard_console_logins_total{outcome=\"unknown_user\"} 1",
        "switchboard_console_logins_total{outcome=\"bad_request\"} 8",
        "switchboard_console_logins_total{outcome=\"not_allowed\"} 1",
    ] {
        assert!(m.contains(want), "{want} missing from metrics");
    }
}

#[test]
fn the_rate_limits_one_address_and_not_its_neighbour() {
    let server = TestServer::start(|c| {
        with_users(c);
        // One reactor: the table is per reactor.
        c.reactor.threads = 1;
        c.console.logins_per_minute = 2;
    });
    let body = json!({"username": "ann", "password": "wrong"}).to_string();
    let req = post_text(LOGIN, Some(ORIGIN), "", &body);
    let here = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let neighbour = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    for _ in 0..2 {
        assert_eq!(raw_from(here, server.addr(), req.as_bytes()).status, 401);
    }
    let r = raw_from(here, server.addr(), req.as_bytes());
    assert_eq!(r.status, 429, "{r:?}");
    let retry: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{r:?}");
    // The right password is refused too: no guessing past the rate.
    let good = json!({"username": "ann", "password": "ann's password"}).to_string();
    let r = raw_from(
        here,
        server.addr(),
        post_text(LOGIN, Some(ORIGIN), "", &good).as_bytes(),
    );
    assert_eq!(r.status, 429, "{r:?}");
    let r = raw_from(
        neighbour,
        server.addr(),
        post_text(LOGIN, Some(ORIGIN), "", &good).as_bytes(),
    );
    issued(&r);
    let m = metrics(&server);
    assert!(
        m.contains("switchboard_console_logins_total{outcome=\"rate_limited\"} 2"),
        "{m}"
    );
}

#[test]
fn a_full_login_queue_is_503_with_retry_after() {
    let server = TestServer::start(|c| {
        with_users(c);
        c.reactor.threads = 1;
        c.console.logins_per_minute = 1000;
        c.console.login_queue = 1;
        c.console.login_threads = 1;
        // A costly hash (64 MiB, 3 passes: a few hundred ms a check), so logins sent at
        // once find the one thread busy and the queue of one full.
        let slow = argon2::Params::new(64 * 1024, 3, 1, None).unwrap();
        c.console.users[0].password_hash =
            password::hash(b"slow", &[1; password::SALT_BYTES], slow).unwrap();
    });
    let body = json!({"username": "ann", "password": "slow"}).to_string();
    let req = post_text(LOGIN, Some(ORIGIN), "", &body);
    // Every request is on the wire before any answer is read.
    let streams: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            s
        })
        .collect();
    let answers: Vec<Response> = streams.into_iter().map(|s| raw_on(s, b"")).collect();
    let busy: Vec<&Response> = answers.iter().filter(|r| r.status == 503).collect();
    let ok = answers.iter().filter(|r| r.status == 200).count();
    assert!(!busy.is_empty(), "no login found the queue full");
    assert!(ok >= 1, "{answers:?}");
    assert_eq!(busy.len() + ok, answers.len(), "{answers:?}");
    assert_eq!(busy[0].header("Retry-After"), Some("1"));
    let m = metrics(&server);
    assert!(
        m.contains(&format!(
            "switchboard_console_logins_total{{outcome=\"busy\"}} {}",
            busy.len()
        )),
        "{m}"
    );
}

#[test]
fn passwd_prints_an_argon2id_hash_that_verifies() {
    let out = crate::util::run_with_input(
        Command::new(bin()).args(["passwd", "--stdin", "--user", "ann"]),
        b"s3cret horse\n",
    );
    assert!(out.status.success(), "{out:?}");
    let phc = String::from_utf8(out.stdout).unwrap();
    let phc = phc.trim();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert!(switchboard::config::check_password_hash(phc).is_ok());
    assert!(password::verify(phc, b"s3cret horse"));
    assert!(!password::verify(phc, b"s3cret horse\n"));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("[[console.users]]") && err.contains(phc),
        "{err}"
    );
    // Not a terminal and no --stdin: refused, nothing printed.
    let (status, out, err) = crate::util::run_bin(&["passwd"], Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(out.is_empty() && err.contains("--stdin"), "{err}");
}

/// `passwd` at a terminal: it prompts twice and never echoes the password. The
/// terminal is a pseudo-terminal made by util-linux `script` (skipped without it).
#[test]
fn passwd_at_a_terminal_prompts_twice_without_echo() {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no util-linux `script` to make a pseudo-terminal");
        return;
    }
    let mut child = Command::new("script")
        .args(["-qec", &format!("{} passwd", bin()), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = Arc::clone(&seen);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    // Types only once the prompt is out, so echo is already off (a password typed
    // earlier would be echoed by the terminal itself, whatever the program does).
    let wait_for = |what: &str| {
        for _ in 0..1000 {
            if String::from_utf8_lossy(&seen.lock().unwrap()).contains(what) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "no {what:?} in {:?}",
            String::from_utf8_lossy(&seen.lock().unwrap())
        );
    };
    let mut stdin = child.stdin.take().unwrap();
    wait_for("Password:");
    stdin.write_all(b"correct horse\n").unwrap();
    wait_for("Again:");
    stdin.write_all(b"correct horse\n").unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let out = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(status.success(), "{out}");
    assert!(
        !out.contains("correct horse"),
        "the password was echoed: {out:?}"
    );
    let phc = out
        .split_whitespace()
        .find(|w| w.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("no hash in {out:?}"));
    assert!(password::verify(phc, b"correct horse"), "{phc}");
}

#[test]
fn check_config_refuses_a_hash_that_is_not_argon2id_and_warns_about_a_cheap_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = \"{}\"\n[[console.users]]\nname = \"ann\"\npassword_hash = \"plain\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let (status, _, err) = crate::util::run_bin(
        &["check-config", path.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("console.users.password_hash"), "{err}");
    assert!(!err.contains("\"plain\""), "{err}");
    // A cheap argon2id hash passes, with a warning.
    std::fs::write(
        &path,
        format!(
            "state_dir = \"{}\"\n[[console.users]]\nname = \"ann\"\npassword_hash = \"{}\"\n",
            dir.path().join("state").display(),
            cheap_hash("pw")
        ),
    )
    .unwrap();
    let (status, _, err) = crate::util::run_bin(
        &["check-config", path.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert!(status.success(), "{err}");
    assert!(
        err.contains("warning") && err.contains("console.users.password_hash"),
        "{err}"
    );
}
