//! The admin HTTP listener over loopback: `/healthz`, `/readyz` (and its flip to 503
//! when shutdown begins), `/metrics` (checked by `promtool check metrics` when
//! installed), the HTTP errors, and its bounds (connections, head size, read timeout):
//! idle or slow clients are evicted oldest first, so `/healthz` answers while 1,000
//! idle connections are held.

use crate::util;
use crate::util::http;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{Client, test_config, with_echo};
use switchboard::Server;
use switchboard::metrics::LATENCY_BUCKETS_US;

fn start(tweak: impl FnOnce(&mut switchboard::Config)) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path());
    tweak(&mut c);
    (Server::start(&c).unwrap(), dir)
}

fn admin(s: &Server) -> SocketAddr {
    s.admin_addr().expect("admin listener on")
}

#[test]
fn health_ready_and_metrics_answer() {
    let (server, _dir) = start(|_| {});
    let a = admin(&server);
    let r = http::get(a, "/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let r = http::get(a, "/readyz");
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));

    let mut c = Client::established(server.client_addr());
    c.ping(7, b"x");
    let r = http::get(a, "/metrics?name=ignored");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.head.contains("Content-Type: text/plain; version=0.0.4"),
        "{}",
        r.head
    );
    // What Prometheus sends: OpenMetrics preferred.
    let om = http::get_accept(
        a,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    );
    assert!(
        om.head
            .contains("Content-Type: application/openmetrics-text"),
        "{}",
        om.head
    );
    assert!(om.body.ends_with("# EOF\n"));
    let open: u64 = r
        .body
        .lines()
        .filter(|l| l.starts_with("switchboard_connections_open{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(open, 1, "{}", r.body);
    for name in [
        "switchboard_build_info{version=",
        "switchboard_ready 1",
        "switchboard_connections_accepted_total{reactor=\"0\"}",
        "switchboard_connections_closed_total{reactor=\"1\",reason=\"idle_timeout\"}",
        "switchboard_connections_rejected_total{reactor=\"0\",reason=\"accept_rate\"}",
        "switchboard_handshake_failures_total{code=\"200\",name=\"token_invalid\"}",
        "switchboard_reactor_loop_lag_seconds_bucket{le=\"+Inf\",reactor=\"0\"}",
        "switchboard_reactor_loop_lag_seconds_count{reactor=\"1\"}",
        "switchboard_worker_queue_depth{worker=\"1\"}",
        "switchboard_message_latency_seconds_bucket{le=\"+Inf\"}",
        "switchboard_journal_fsync_latency_seconds_count",
        "switchboard_agents_online",
        "switchboard_frames_total{direction=\"in\",kind=\"Ping\"} 1\n",
        "switchboard_frames_total{direction=\"out\",kind=\"Pong\"} 1\n",
        "switchboard_frame_bytes_total{direction=\"in\",kind=\"Hello\"}",
        "switchboard_conversations{state=\"queued\"}",
    ] {
        assert!(r.body.contains(name), "{name} missing from:\n{}", r.body);
    }
    let frames: u64 = r
        .body
        .lines()
        .filter(|l| l.starts_with("switchboard_frames_received_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(frames >= 2, "Hello and Ping: {frames}");
    drop(c);
    server.shutdown();
}

#[test]
fn http_errors() {
    let (server, _dir) = start(|c| c.admin.max_request_bytes = 512);
    let a = admin(&server);
    assert_eq!(http::get(a, "/nope").status, 404);
    let r = http::raw(a, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 405);
    assert!(r.head.contains("Allow: GET, HEAD"), "{}", r.head);
    assert_eq!(
        http::raw(a, b"\x16\x03\x01\x02\x00 hello\r\n\r\n").status,
        400
    );
    let big = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(2000)
    );
    assert_eq!(http::raw(a, big.as_bytes()).status, 431);
    let r = http::raw(a, b"HEAD /healthz HTTP/1.1\r\n\r\n");
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    server.shutdown();
}

/// Waits until the admin thread has `n` connections open.
fn admin_open(server: &Server, n: u64) {
    let m = server.metrics();
    assert!(
        util::wait_until(Duration::from_secs(10), || m.admin.open.get() == n),
        "admin connections open: {} (want {n})",
        m.admin.open.get()
    );
}

/// Reads until end-of-stream (true) or an error/timeout (false).
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn a_full_admin_listener_evicts_the_oldest_idle_or_slow_connection() {
    let (server, _dir) = start(|c| {
        c.admin.max_connections = 2;
        // Long: every close seen below is an eviction, not a timeout.
        c.admin.read_timeout = Duration::from_secs(60);
    });
    let a = admin(&server);
    let mut idle = TcpStream::connect(a).unwrap();
    admin_open(&server, 1);
    // A slow client: half a request head.
    let mut slow = TcpStream::connect(a).unwrap();
    slow.write_all(b"GET /hea").unwrap();
    admin_open(&server, 2);
    // Full: the probe takes the oldest slot (the idle one) and is answered.
    assert_eq!(http::get(a, "/healthz").status, 200);
    assert!(closed_by_server(&mut idle), "the oldest, idle, is evicted");
    // Full again (the probe's slot is free once it was answered): now the slow one is
    // the oldest, and goes.
    let newer = TcpStream::connect(a).unwrap();
    admin_open(&server, 2);
    assert_eq!(http::get(a, "/healthz").status, 200);
    assert!(closed_by_server(&mut slow), "the slow one is evicted next");
    // The newest idle one stays.
    admin_open(&server, 1);
    let m = server.metrics();
    assert_eq!(m.admin.evicted.get(), 2);
    assert_eq!(m.admin.timed_out.get(), 0);
    drop(newer);
    let text = http::get(a, "/metrics").body;
    assert!(
        text.contains("switchboard_admin_connections_dropped_total{reason=\"evicted\"} 2\n"),
        "{text}"
    );
    server.shutdown();
}

#[test]
fn idle_admin_connections_time_out() {
    let (server, _dir) = start(|c| {
        c.admin.read_timeout = Duration::from_millis(300);
    });
    let a = admin(&server);
    let mut idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(a).unwrap()).collect();
    for s in &mut idle {
        assert!(closed_by_server(s), "closed after admin.read_timeout");
    }
    assert_eq!(server.metrics().admin.timed_out.get(), 3);
    assert_eq!(server.metrics().admin.evicted.get(), 0);
    assert_eq!(http::get(a, "/healthz").status, 200);
    server.shutdown();
}

/// With 1,000 idle connections held on the admin port (far more
/// than `admin.max_connections`), every `/healthz` probe is answered 200.
#[test]
fn healthz_answers_while_a_thousand_idle_connections_are_held() {
    let (server, _dir) = start(|_| {});
    let a = admin(&server);
    let held: Vec<TcpStream> = (0..1000)
        .map(|i| {
            TcpStream::connect_timeout(&a, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect();
    let max = switchboard::Config::default().admin.max_connections as u64;
    admin_open(&server, max);
    for i in 0..200 {
        let r = http::get(a, "/healthz");
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "probe {i}");
    }
    let m = server.metrics();
    // The first probe found the listener full; each later one the slot its
    // predecessor left.
    assert_eq!(m.admin.evicted.get(), 1000 + 1 - max);
    assert_eq!(m.admin.accepted.get(), 1200);
    drop(held);
    server.shutdown();
}

#[test]
fn admin_can_be_disabled() {
    let (server, _dir) = start(|c| c.admin.enabled = false);
    assert!(server.admin_addr().is_none());
    server.shutdown();
}

#[test]
fn readyz_turns_503_when_shutdown_begins() {
    let (server, _dir) = start(|c| {
        with_echo(c);
        c.shutdown.drain_timeout = Duration::from_secs(3);
    });
    let a = admin(&server);
    assert_eq!(http::get(a, "/readyz").status, 200);
    // An echo client that writes without reading keeps output queued at the server,
    // so the drain lasts until its deadline and the admin listener can be asked.
    let echo = server.echo_addr().unwrap();
    let slow = Client::connect_small_rcvbuf(echo, 4096);
    slow.stream()
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..64 {
        if slow.stream().write(&chunk).is_err() {
            break;
        }
    }
    // And the reactors sleep through the first 1.5 s of the shutdown (test hook), so
    // the drain cannot end before /readyz has been asked, however fast the machine.
    for r in 0..2 {
        server.stall_reactor_for_test(r, Duration::from_millis(1500));
    }
    let stopper = std::thread::spawn(move || server.shutdown());
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = None;
    while Instant::now() < deadline {
        let r = http::get(a, "/readyz");
        if r.status == 503 {
            seen = Some(r);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = seen.expect("/readyz never answered 503 during the drain");
    assert!(r.body.contains("not accepting"), "{r:?}");
    assert_eq!(http::get(a, "/healthz").status, 200, "alive while draining");
    let m = http::get(a, "/metrics");
    assert!(m.body.contains("switchboard_ready 0\n"), "{}", m.body);
    drop(slow);
    stopper.join().unwrap();
    assert!(
        TcpStream::connect(a).is_err(),
        "admin listener closed after shutdown"
    );
}

/// The value of the sample `name` (labels included) in a scrape.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in:\n{body}"))
}

/// Loop lag is a histogram, cumulative: a scrape takes nothing away, so a long turn
/// is seen by every scraper (it was a maximum reset by each scrape).
#[test]
fn a_long_reactor_turn_is_seen_by_every_scrape() {
    let (server, _dir) = start(|c| c.reactor.threads = 1);
    let a = admin(&server);
    let over = |body: &str| {
        sample(
            body,
            "switchboard_reactor_loop_lag_seconds_count{reactor=\"0\"}",
        ) - sample(
            body,
            "switchboard_reactor_loop_lag_seconds_bucket{le=\"0.25\",reactor=\"0\"}",
        )
    };
    assert_eq!(over(&http::get(a, "/metrics").body), 0.0);
    // One turn of reactor 0 lasts at least 300 ms (test hook: it sleeps in the turn).
    server.stall_reactor_for_test(0, Duration::from_millis(300));
    let m = server.metrics();
    assert!(
        util::wait_until(Duration::from_secs(10), || m.reactors[0].loop_lag.buckets
            [LATENCY_BUCKETS_US.partition_point(|b| *b < 250_000) + 1..]
            .iter()
            .any(|b| b.get() > 0)),
        "the stalled turn was not observed"
    );
    let first = http::get(a, "/metrics").body;
    let second = http::get(a, "/metrics").body;
    assert_eq!(over(&first), 1.0, "{first}");
    assert_eq!(
        over(&second),
        1.0,
        "the second scrape sees it too: {second}"
    );
    assert!(
        sample(
            &second,
            "switchboard_reactor_loop_lag_seconds_sum{reactor=\"0\"}"
        ) >= 0.3,
        "{second}"
    );
    server.shutdown();
}

/// Closed conversations are counted (`conversations_closed_total`), not held in a
/// gauge that grew for the whole retention; the gauge keeps the open states only. A
/// restart restores the closed conversation without counting it again.
#[test]
fn closed_conversations_are_a_counter() {
    use crate::util::peer::Peer;
    use switchboard::protocol::messages;
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path());
    c.heartbeat.interval = Duration::from_secs(10);
    c.heartbeat.idle_timeout = Duration::from_secs(60);
    let server = Server::start(&c).unwrap();
    let addr = server.client_addr();
    let mut visitor = Peer::connect(addr, &util::token("vera", "visitor"), "visitor");
    let conv = visitor.send_accepted(0, 1, "hello").conversation;
    let mut alice = Peer::connect(addr, &util::agent_token("alice", &["support"]), "alice");
    alice.assigned(conv);
    alice.post(messages::Close {
        conversation: conv,
        seq: 0,
        reason: "resolved".into(),
    });
    alice.closed(conv);
    visitor.closed(conv);
    let body = http::get(admin(&server), "/metrics").body;
    assert_eq!(sample(&body, "switchboard_conversations_closed_total"), 1.0);
    assert!(
        body.contains("# TYPE switchboard_conversations_closed_total counter\n"),
        "{body}"
    );
    assert!(!body.contains("state=\"closed\""), "{body}");
    for state in ["queued", "assigned"] {
        let name = format!("switchboard_conversations{{state=\"{state}\"}}");
        sample(&body, &name);
    }
    drop((visitor, alice));
    server.shutdown();

    let server = Server::start(&c).unwrap();
    let body = http::get(admin(&server), "/metrics").body;
    assert_eq!(
        sample(&body, "switchboard_conversations_closed_total"),
        0.0,
        "a restored closed conversation is not closed again"
    );
    server.shutdown();
}

/// The backend the reactors run on, `auto` resolved, is exported as an info gauge
/// (and logged at start: the `ops_logging` tests).
#[test]
fn the_effective_reactor_backend_is_exported() {
    use switchboard::config::Backend;
    let configured = util::test_backend();
    for want in [Backend::Auto, configured] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = test_config(dir.path());
        c.reactor.backend = want;
        let prepared = Server::prepare(&c).unwrap();
        let chosen = prepared.backend();
        match want {
            Backend::Auto => assert!(["epoll", "uring"].contains(&chosen), "{chosen}"),
            explicit => assert_eq!(chosen, explicit.name()),
        }
        let server = Server::start_prepared(prepared).unwrap();
        let body = http::get(admin(&server), "/metrics").body;
        let lines: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("switchboard_reactor_backend_info"))
            .collect();
        assert_eq!(
            lines,
            [format!(
                "switchboard_reactor_backend_info{{backend=\"{chosen}\"}} 1"
            )],
            "{want:?}"
        );
        server.shutdown();
    }
}

#[test]
fn metrics_pass_promtool_check() {
    let Some(promtool) = which("promtool") else {
        assert!(
            std::env::var_os("SWITCHBOARD_REQUIRE_PROMTOOL").is_none(),
            "promtool required (SWITCHBOARD_REQUIRE_PROMTOOL) but not on PATH"
        );
        eprintln!("promtool not installed; skipping (Debian package `prometheus`)");
        return;
    };
    // Email on (nothing listens on port 9; nothing is due), so its families are
    // checked too.
    let (server, _dir) = start(|c| {
        c.email.host = Some("127.0.0.1".into());
        c.email.port = 9;
        c.email.tls = switchboard::config::SmtpTls::None;
        c.email.from = Some("support@example.com".into());
    });
    let mut c = Client::established(server.client_addr());
    c.ping(1, b"abc");
    let mut bad = Client::connect(server.client_addr());
    bad.write_raw(b"XXXXXXXXXXXXXXXX");
    let _ = bad.try_read_frame(Duration::from_secs(2));
    let body = http::get(admin(&server), "/metrics").body;
    let out = crate::util::run_with_input(
        Command::new(promtool).args(["check", "metrics"]),
        body.as_bytes(),
    );
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {:?}\nstdout: {}\nstderr: {}\ninput:\n{body}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    server.shutdown();
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[test]
fn a_taken_admin_port_fails_start_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config(dir.path());
    c.admin.addr = taken.local_addr().unwrap();
    match Server::start(&c) {
        Err(switchboard::StartError::Bind { addr, .. }) => assert_eq!(addr, c.admin.addr),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("started with the admin port taken"),
    }
}
