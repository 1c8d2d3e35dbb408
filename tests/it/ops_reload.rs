//! SIGHUP reloads the configuration file without dropping a connection: with 1,000
//! connections open, a new JWT key and a smaller frame limit take effect while every
//! connection stays served; a configuration that does not load is rejected with a log
//! line and the previous one stays in force. The log says what changed, key by key
//! with old and new values (keys by id, never a secret), and which changes wait for
//! a restart; nothing about what did not change.

use crate::util;

use std::time::{Duration, Instant, SystemTime};

use crate::util::{Client, Daemon, REPLY_TIMEOUT, daemon_toml};
use switchboard::auth::{Claims, Verifier};
use switchboard::config::AuthKey;
use switchboard::protocol::messages::{self, Msg};

const CONNECTIONS: usize = 1_000;
const NEW_SECRET: &str = "a-second-key-added-by-reload-0123456789abcdef";

fn token_for(kid: &str, secret: &str) -> String {
    let mut c = switchboard::Config::default();
    c.auth.keys = vec![AuthKey {
        kid: kid.into(),
        secret: Some(secret.into()),
        secret_file: None,
    }];
    let claims = Claims::new(
        "rita",
        "visitor",
        SystemTime::now(),
        Duration::from_secs(600),
    );
    Verifier::from_config(&c)
        .unwrap()
        .mint(&claims, Some(kid))
        .unwrap()
}

/// Whether a handshake with `token` gets a `Welcome` (else the 2xx code it got).
fn handshake(addr: std::net::SocketAddr, token: &str) -> Result<(), u16> {
    let mut c = Client::connect(addr);
    let hello = Msg::from(messages::Hello {
        protocol: messages::PROTOCOL_VERSION,
        token: token.into(),
        client: "reload-test".into(),
        resume: Vec::new(),
    })
    .to_frame(1);
    c.write_raw(&hello);
    let f = c.read_raw_frame(REPLY_TIMEOUT);
    if f.header.kind == util::kind::WELCOME {
        Ok(())
    } else {
        Err(f.header.status)
    }
}

/// Sends SIGHUP and returns the log lines up to and including the reload's outcome
/// ("configuration reloaded" or "reload rejected").
fn reload(d: &Daemon) -> Vec<String> {
    d.signal(libc::SIGHUP);
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        for l in d.log_lines() {
            let done = l.contains("configuration reloaded") || l.contains("reload rejected");
            lines.push(l);
            if done {
                return lines;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no reload outcome logged: {lines:#?}");
}

fn has(lines: &[String], parts: &[&str]) -> bool {
    lines.iter().any(|l| parts.iter().all(|p| l.contains(p)))
}

#[test]
fn sighup_applies_new_keys_and_limits_and_keeps_every_connection() {
    let daemon = Daemon::spawn(daemon_toml);
    let addr = daemon.client_addr();
    let base = std::fs::read_to_string(daemon.config_path()).unwrap();
    let mut conns: Vec<Client> = (0..CONNECTIONS)
        .map(|_| Client::established(addr))
        .collect();
    assert!(handshake(addr, &token_for("new", NEW_SECRET)).is_err());

    // A new key and a smaller frame limit, and a drain timeout (restart only).
    let reloaded = base
        .replace(
            "[[auth.keys]]",
            &format!("[limits]\nmax_frame_bytes = 4096\n[[auth.keys]]\nkid = \"new\"\nsecret = {NEW_SECRET:?}\n[[auth.keys]]"),
        )
        .replace("drain_timeout = \"3s\"", "drain_timeout = \"4s\"");
    assert_ne!(reloaded, base);
    std::fs::write(daemon.config_path(), &reloaded).unwrap();
    let log = reload(&daemon);
    // What changed, key by key, and nothing else.
    assert!(
        has(
            &log,
            &[
                "INFO",
                "configuration changed",
                "key=limits.max_frame_bytes old=\"1048576\" new=\"4096\""
            ]
        ),
        "{log:#?}"
    );
    assert!(
        has(
            &log,
            &[
                "configuration changed",
                "key=auth.keys ",
                "\\\"new\\\", \\\"test\\\""
            ]
        ),
        "{log:#?}"
    );
    assert!(
        has(
            &log,
            &[
                "WARN",
                "only after a restart",
                "key=shutdown.drain_timeout old=\"3s\" new=\"4s\""
            ]
        ),
        "{log:#?}"
    );
    assert!(
        has(
            &log,
            &[
                "configuration reloaded",
                "changed=2",
                "waiting_for_restart=1"
            ]
        ),
        "{log:#?}"
    );
    let changed: Vec<&String> = log.iter().filter(|l| l.contains("key=")).collect();
    assert_eq!(changed.len(), 3, "{changed:#?}");
    for l in &log {
        assert!(
            !l.contains(NEW_SECRET) && !l.contains(util::TEST_SECRET),
            "a secret in the log: {l}"
        );
    }

    for (i, c) in conns.iter_mut().enumerate() {
        c.ping(10 + i as u32, b"still here");
    }
    assert_eq!(handshake(addr, &token_for("new", NEW_SECRET)), Ok(()));
    assert_eq!(handshake(addr, &util::token("vera", "visitor")), Ok(()));
    // The new frame limit applies to existing connections.
    let big = util::ping_payload(1, &[7u8; 5000]);
    let mut victim = conns.pop().unwrap();
    victim.send(util::kind::PING, 99, &big);
    victim.expect_error_then_eof(102, REPLY_TIMEOUT);

    // The same file again: nothing new is in force, the restart-only change still
    // waits.
    let log = reload(&daemon);
    assert!(
        has(
            &log,
            &[
                "configuration reloaded",
                "changed=0",
                "waiting_for_restart=1"
            ]
        ),
        "{log:#?}"
    );
    assert!(!has(&log, &["INFO", "configuration changed"]), "{log:#?}");

    // A file that does not load changes nothing.
    std::fs::write(daemon.config_path(), format!("{base}\nno_such_key = 1\n")).unwrap();
    let log = reload(&daemon);
    assert!(has(&log, &["reload rejected"]), "{log:#?}");
    // Nor does one a start would refuse (here: a secret file that is not there),
    // as `check-config` would.
    let missing = format!(
        "{base}[[auth.keys]]\nkid = \"gone\"\nsecret_file = \"/nonexistent/switchboard.key\"\n"
    );
    std::fs::write(daemon.config_path(), missing).unwrap();
    let log = reload(&daemon);
    assert!(
        has(&log, &["reload rejected", "/nonexistent/switchboard.key"]),
        "{log:#?}"
    );
    assert_eq!(handshake(addr, &token_for("new", NEW_SECRET)), Ok(()));
    for (i, c) in conns.iter_mut().enumerate() {
        c.ping(2_000 + i as u32, b"after a bad reload");
    }
    let mut victim = conns.pop().unwrap();
    victim.send(util::kind::PING, 98, &big);
    victim.expect_error_then_eof(102, REPLY_TIMEOUT);
}
