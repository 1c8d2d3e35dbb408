//! Cold start: time from spawning the daemon binary (default threads, an empty state
//! directory, so the development secret is created too) until systemd would hear
//! `READY=1` on `$NOTIFY_SOCKET` (a Unix datagram socket this bench owns). Goal: under
//! 50 ms.
//!
//! `cargo bench --bench cold_start [-- RUNS]` (default 30 runs); prints min, median,
//! p90 and max.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.push(once());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "cold start to READY=1 over {runs} runs: min {:.1} ms, median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms(times[0]),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(*times.last().unwrap())
    );
}

fn once() -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n[listeners.client]\naddr = \"127.0.0.1:0\"\n\
             [admin]\naddr = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n",
            dir.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 1024];
    let elapsed = loop {
        let n = sock.recv(&mut buf).expect("READY=1 within 10 s");
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            break start.elapsed();
        }
    };
    let _ = switchboard::bench_support::kill(child.id(), libc::SIGTERM);
    let _ = child.wait();
    elapsed
}
