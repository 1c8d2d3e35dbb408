//! A real haproxy (Debian package) in front of the daemon binary, with
//! `send-proxy-v2` and `send-proxy` (v1): the client connects to haproxy from
//! 127.0.0.5, and the daemon must see 127.0.0.5, not haproxy's 127.0.0.1. Seen from
//! outside: with `limits.max_connections_per_ip = 1`, a second client from
//! 127.0.0.5 is refused while one from 127.0.0.6 is admitted, and the refusal's log
//! line names `peer=127.0.0.5`; a conversation the client opens shows 127.0.0.5 as
//! its `visitor_address` in the HTTP API.
//!
//! Skipped when `haproxy` is not installed, unless `SWITCHBOARD_REQUIRE_HAPROXY=1`
//! (CI sets it: `.ci/run` installs the package).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchboard::protocol::{Kind, Msg};

use crate::util::api::{ApiClient, Recorder};
use crate::util::{self, Client, Daemon, REPLY_TIMEOUT, peer};

/// haproxy on a free loopback port forwarding to `backend`; killed on drop.
struct Haproxy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// `None` when haproxy is missing (and not required).
    fn start(backend: SocketAddr, send_proxy: &str) -> Option<Self> {
        let found = Command::new("haproxy")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                std::env::var_os("SWITCHBOARD_REQUIRE_HAPROXY").is_none(),
                "SWITCHBOARD_REQUIRE_HAPROXY is set but haproxy is not installed"
            );
            eprintln!("skipping: haproxy not installed (apt-get install haproxy)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n  maxconn 256\n\
                 defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend front\n  bind {addr}\n  default_backend daemon\n\
                 backend daemon\n  server s1 {backend} {send_proxy}\n"
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        let mut h = Self {
            child,
            addr,
            _dir: dir,
        };
        let up = util::wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        if !up {
            let _ = h.child.kill();
            panic!("haproxy did not listen on {addr}");
        }
        Some(h)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon binary with PROXY protocol on the client listener, trusting loopback
/// 127.0.0.1 only, one connection per client address.
fn daemon() -> Daemon {
    Daemon::spawn(|state| {
        util::daemon_toml(state).replace(
            "[listeners.client]\naddr = \"127.0.0.1:0\"\n",
            "[listeners.client]\naddr = \"127.0.0.1:0\"\nproxy_protocol = true\n\
             trusted_proxies = [\"127.0.0.1/32\"]\n\
             [limits]\nmax_connections_per_ip = 1\n",
        )
    })
}

fn from(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn the_daemon_sees_the_client_behind(send_proxy: &str) {
    let d = daemon();
    let Some(h) = Haproxy::start(d.client_addr(), send_proxy) else {
        return;
    };
    // Through haproxy, the protocol works as direct.
    let mut first = Client::connect_from(from(5), h.addr);
    first.hello();
    first.ping(1, b"through haproxy");
    // Another client address behind the same proxy: admitted.
    let mut other = Client::connect_from(from(6), h.addr);
    other.hello();
    // The same client address again: over max_connections_per_ip, so the daemon
    // counted the first one as 127.0.0.5, not as haproxy's 127.0.0.1.
    let mut again = Client::connect_from(from(5), h.addr);
    again.send(util::kind::HELLO, 1, b"");
    assert!(
        !matches!(again.try_read_frame(REPLY_TIMEOUT), util::Read1::Frame(_)),
        "a second connection from 127.0.0.5 was admitted"
    );
    let mut lines = Vec::new();
    let named = util::wait_until(REPLY_TIMEOUT, || {
        lines.extend(d.log_lines());
        lines.iter().any(|l| {
            l.contains("connection refused by a limit")
                && l.contains("max_connections_per_ip")
                && l.contains("peer=127.0.0.5")
        })
    });
    assert!(named, "no refusal naming 127.0.0.5 in {lines:#?}");
    first.ping(2, b"still served");
    other.ping(2, b"still served");

    // The visitor's context: a conversation opened from 127.0.0.5 shows that
    // address to the back end (and to its agent), not haproxy's.
    let open = Msg::from(peer::text(0, 1, "hello from behind a proxy")).to_payload();
    first.send(Kind::Send.as_u8(), 3, &open);
    let conversation = loop {
        let f = first.read_frame(REPLY_TIMEOUT);
        if let (3, Ok(Msg::Accepted(a))) =
            (f.header.request_id, Msg::decode(f.header.kind, &f.payload))
        {
            break a.conversation;
        }
    };
    let recorder = Recorder::default();
    let admin = util::token("boss", "admin");
    let mut api = ApiClient::connect(h.addr, Some(&admin), &recorder);
    let r = api.call(
        "GET",
        &format!("/api/v1/conversations/{conversation}"),
        None,
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["visitor_address"], "127.0.0.5", "{:?}", r.json());
    recorder.validate();
}

#[test]
fn haproxy_send_proxy_v2_gives_the_client_address() {
    the_daemon_sees_the_client_behind("send-proxy-v2");
}

#[test]
fn haproxy_send_proxy_v1_gives_the_client_address() {
    the_daemon_sees_the_client_behind("send-proxy");
}
