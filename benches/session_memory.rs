//! Heap bytes per established session, per structure: `n` visitor sessions go
//! through the real handshake (`Hello` with a verified token → `Welcome` →
//! `RouterMsg::Connected`) on one session worker and the router, in this process,
//! under a counting allocator; then each structure is dropped in turn and what it
//! freed is printed. The bytes are those asked of the allocator (mimalloc rounds a
//! request up to its size class and keeps freed pages a while: the daemon's RSS per
//! session, `storm --scenario idle --server-pid`, adds that and the reactor's
//! `Conn`).
//!
//! Then the same over loopback against a whole daemon started in this process
//! (`Server::start`: 2 reactors, 2 workers, journal off; 5,000 sessions: client and
//! server sockets share this process's 20,000 open files): the live heap of the
//! whole process per established session, reactors and queues included.
//!
//! ```sh
//! cargo bench --bench session_memory            # 10,000 sessions (daemon: 5,000)
//! cargo bench --bench session_memory -- 19000 5000
//! ```

use std::alloc::System;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime};

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use switchboard::auth::Claims;
use switchboard::config::AuthKey;
use switchboard::frame::{self, FrameHeader};
use switchboard::protocol::{Kind, Msg, PROTOCOL_VERSION, messages};
use switchboard::{Config, Server};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live() -> i64 {
    // `bytes_allocated`/`bytes_deallocated` include what reallocations added or took
    // (`bytes_reallocated` repeats it: not added again).
    let s = GLOBAL.stats();
    let net = s.bytes_allocated as i128 - s.bytes_deallocated as i128;
    i64::try_from(net).unwrap_or(i64::MAX)
}

fn main() {
    // `cargo bench` passes `--bench`; the first number is the session count.
    let mut numbers = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<usize>().ok());
    let n = numbers.next().unwrap_or(10_000);
    let daemon_n = numbers.next().unwrap_or(5_000);
    let m = switchboard::bench_support::session_memory(n, &live);
    let per = |b: i64| b as f64 / m.sessions.max(1) as f64;
    println!(
        "{} established visitor sessions (one worker, the router)",
        m.sessions
    );
    println!("| structure | bytes per session |");
    println!("|---|---:|");
    for (name, bytes) in &m.parts {
        println!("| {name} | {:.1} |", per(*bytes));
    }
    println!(
        "| **session worker, measured** | **{:.1}** |",
        per(m.worker)
    );
    println!("| **router, measured** | **{:.1}** |", per(m.router));
    println!("| **total** | **{:.1}** |", per(m.worker + m.router));
    match daemon(daemon_n) {
        Ok(per) => println!(
            "whole daemon in this process, {daemon_n} sessions over loopback: \
             {per:.1} B of live heap per session"
        ),
        Err(e) => eprintln!("daemon run failed: {e}"),
    }
}

const SECRET: &str = "session-memory-bench-secret-0123456789";

/// Live heap bytes per established session of a whole in-process daemon.
fn daemon(n: usize) -> Result<f64, String> {
    let dir = std::env::temp_dir().join(format!("session-memory-{}", std::process::id()));
    let mut c = Config {
        state_dir: dir.clone(),
        ..Config::default()
    };
    c.listeners.client.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    c.admin.enabled = false;
    c.journal.enabled = false;
    c.reactor.threads = 2;
    c.workers.threads = 2;
    c.auth.keys = vec![AuthKey {
        kid: "k".into(),
        secret: Some(SECRET.into()),
        secret_file: None,
    }];
    let server = Server::start(&c).map_err(|e| e.to_string())?;
    let addr = server.client_addr();
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let mut conns: Vec<TcpStream> = Vec::with_capacity(n + 1);
    // One session first, so that lazily built state is in the baseline.
    conns.push(session(addr, &key, "warm-up")?);
    std::thread::sleep(Duration::from_millis(300));
    let before = live();
    for i in 0..n {
        conns.push(session(addr, &key, &format!("storm-0-{i}"))?);
    }
    // The router hears of the last sessions after their Welcome.
    std::thread::sleep(Duration::from_secs(1));
    let after = live();
    drop(conns);
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((after - before) as f64 / n as f64)
}

/// A connection that said `Hello` as visitor `sub` and read its `Welcome`.
fn session(
    addr: SocketAddr,
    key: &jsonwebtoken::EncodingKey,
    sub: &str,
) -> Result<TcpStream, String> {
    let claims = Claims::new(sub, "visitor", SystemTime::now(), Duration::from_secs(3600));
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    let token = jsonwebtoken::encode(&header, &claims, key).map_err(|e| e.to_string())?;
    let hello = Msg::from(messages::Hello {
        protocol: PROTOCOL_VERSION,
        token,
        client: "bench".into(),
        resume: Vec::new(),
    });
    let payload = hello.to_payload();
    let bytes = frame::encode(FrameHeader::new(hello.kind().as_u8(), 0, 1), &payload);
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.write_all(&bytes).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    let mut got = 0;
    loop {
        let k = s.read(&mut buf[got..]).map_err(|e| e.to_string())?;
        if k == 0 {
            return Err("closed before Welcome".into());
        }
        got += k;
        if let Ok(Some(f)) = frame::decode(&buf[..got], 1 << 20) {
            if f.header.kind != Kind::Welcome.as_u8() {
                return Err(format!("kind {} instead of Welcome", f.header.kind));
            }
            return Ok(s);
        }
        if got == buf.len() {
            return Err("Welcome larger than 4 KiB".into());
        }
    }
}
