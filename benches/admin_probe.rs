//! `/healthz` latency while idle connections are held on the admin port: spawns the daemon, opens `--idle N` connections to its admin listener
//! that never send anything (spread over source addresses 127.0.0.2, .3, … at 1,000
//! each, so no address runs short of ports), keeps them open, then polls `/healthz`
//! `--polls M` times, one after another, and prints the latency distribution and the
//! failures (anything but a 200 within 10 s). With `--churn`, a second thread opens
//! new idle connections as fast as it can during the polls (keeping the newest 1,000),
//! as a client flooding the port would.
//!
//! `cargo bench --bench admin_probe -- [--idle N] [--polls M] [--churn] [--bin PATH]`
//! (`--bin`: another daemon binary, e.g. an older build, to compare).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Idle connections per source address.
const PER_SOURCE: usize = 1000;
/// `--churn`: connections the flooding thread keeps open at once.
const CHURN_WINDOW: usize = 1000;
/// `--churn`: index of its first source address (127.0.0.(2 + this)).
const CHURN_SOURCE: usize = 98;
/// Longest a probe may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

struct Args {
    idle: usize,
    polls: usize,
    churn: bool,
    bin: String,
}

fn args() -> Args {
    let mut a = Args {
        idle: 1000,
        polls: 200,
        churn: false,
        bin: env!("CARGO_BIN_EXE_switchboard").to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--idle" => a.idle = it.next().and_then(|v| v.parse().ok()).expect("--idle N"),
            "--polls" => a.polls = it.next().and_then(|v| v.parse().ok()).expect("--polls M"),
            "--churn" => a.churn = true,
            "--bin" => a.bin = it.next().expect("--bin PATH"),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// A free loopback port (closed again at once; the daemon binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An idle connection to `to` from source address 127.0.0.(2 + i / PER_SOURCE).
fn idle(to: SocketAddr, i: usize) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let source = Ipv4Addr::new(127, 0, 0, 2 + (i / PER_SOURCE) as u8);
    s.bind(&SocketAddr::from((source, 0)).into())?;
    s.connect_timeout(&to.into(), PROBE_TIMEOUT)?;
    Ok(s)
}

/// One `GET /healthz`: Ok(latency) for a 200, else why not.
fn probe(to: SocketAddr) -> Result<Duration, String> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&to, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(PROBE_TIMEOUT)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    if out.starts_with(b"HTTP/1.1 200") {
        Ok(start.elapsed())
    } else if out.is_empty() {
        Err("closed without an answer".into())
    } else {
        Err(String::from_utf8_lossy(&out[..out.len().min(40)]).into_owned())
    }
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n[listeners.client]\naddr = \"127.0.0.1:0\"\n\
             [admin]\naddr = \"{admin}\"\n[log]\nlevel = \"error\"\n",
            dir.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(&a.bin)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = Instant::now();
    while probe(admin).is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let t = Instant::now();
    let held: Vec<socket2::Socket> = (0..a.idle)
        .map(|i| idle(admin, i).unwrap_or_else(|e| panic!("idle connection {i}: {e}")))
        .collect();
    println!(
        "holding {} idle admin connections (opened in {:.2} s)",
        held.len(),
        t.elapsed().as_secs_f64()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicU64::new(0));
    let churn = a.churn.then(|| {
        let (stop, churned) = (stop.clone(), churned.clone());
        std::thread::spawn(move || {
            // Opens connections as fast as it can, keeping the newest CHURN_WINDOW,
            // from source addresses 127.0.0.100 and up (apart from the held ones).
            let mut window = std::collections::VecDeque::with_capacity(CHURN_WINDOW);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let source = CHURN_SOURCE * PER_SOURCE + i % (100 * PER_SOURCE);
                if let Ok(s) = idle(admin, source) {
                    window.push_back(s);
                    churned.fetch_add(1, Ordering::Relaxed);
                }
                if window.len() > CHURN_WINDOW {
                    window.pop_front();
                }
                i += 1;
            }
        })
    });

    let mut times = Vec::with_capacity(a.polls);
    let mut failures = Vec::new();
    for _ in 0..a.polls {
        match probe(admin) {
            Ok(d) => times.push(d),
            Err(e) => failures.push(e),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = churn {
        h.join().unwrap();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    if times.is_empty() {
        println!("no probe answered 200");
    } else {
        println!(
            "/healthz with {} idle held{}: {} of {} answered 200; latency min {:.2} ms, \
             median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            a.idle,
            if a.churn {
                format!(
                    " and {} more opened (flood) during the polls",
                    churned.load(Ordering::Relaxed)
                )
            } else {
                String::new()
            },
            times.len(),
            a.polls,
            ms(times[0]),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(*times.last().unwrap())
        );
    }
    if !failures.is_empty() {
        let n = failures.len();
        failures.sort();
        failures.dedup();
        println!("{n} probes failed: {failures:?}");
    }
    drop(held);
    let _ = switchboard::bench_support::kill(child.id(), libc::SIGTERM);
    let _ = child.wait();
}
