//! SIGHUP reloads the configuration file without dropping a connection: with 1,000
//! connections open, a new JWT key and a smaller frame limit take effect while every
//! connection stays served; a configuration that does not load is rejected with a log
//! line and the previous one stays in force.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod util;

use std::time::{Duration, Instant, SystemTime};

use switchboard::auth::{Claims, Verifier};
use switchboard::config::AuthKey;
use switchboard::protocol::messages::{self, Msg};
use util::{Client, Daemon, REPLY_TIMEOUT, daemon_toml};

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

fn wait_for_log(d: &Daemon, needle: &str, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        seen.extend(d.log_lines());
        if seen.iter().any(|l| l.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
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

    // A new key and a smaller frame limit.
    let reloaded = base.replace(
        "[[auth.keys]]",
        &format!("[limits]\nmax_frame_bytes = 4096\n[[auth.keys]]\nkid = \"new\"\nsecret = {NEW_SECRET:?}\n[[auth.keys]]"),
    );
    std::fs::write(daemon.config_path(), reloaded).unwrap();
    daemon.signal(libc::SIGHUP);
    let mut log = Vec::new();
    assert!(
        wait_for_log(&daemon, "configuration reloaded", &mut log),
        "{log:#?}"
    );

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

    // A file that does not load changes nothing.
    std::fs::write(daemon.config_path(), format!("{base}\nno_such_key = 1\n")).unwrap();
    daemon.signal(libc::SIGHUP);
    assert!(
        wait_for_log(&daemon, "reload rejected", &mut log),
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
