//! Clients that ask for much and read nothing: the daemon's memory while N of them
//! each request hundreds of large `HistoryPage`s without reading, whether each is cut
//! with `Error` 302, how a neighbour's round trips fare meanwhile, and how much memory
//! is left once they are gone.
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench slow_readers -- [--hogs 50] [--requests 300] [--messages 150]
//!     [--body 60000] [--backend epoll|uring] [--max-pending BYTES] [--max-frame BYTES]
//!     [--stall SECS]
//!     [--env NAME=VALUE] [--rounds N]
//! ```
//!
//! How it measures:
//! 1. Starts the release daemon (`CARGO_BIN_EXE_switchboard`) from a config in a temp
//!    dir (loopback, port 0, the abuse filter off so bodies of one letter pass) and
//!    fills one conversation with `--messages` messages of `--body` bytes, each
//!    acknowledged.
//! 2. Samples the daemon's `VmRSS` (`/proc/PID/status`): the baseline.
//! 3. Opens `--hogs` connections as that conversation's visitor. Each completes the
//!    handshake, writes `--requests` `History` requests for the latest 200 entries (a
//!    page holds as many as fit in `limits.max_frame_bytes`) in one go, and then
//!    reads nothing. A neighbour connection does a `Ping` round trip every 20 ms
//!    throughout.
//! 4. Samples RSS every 50 ms until every hog has been cut
//!    (`switchboard_slow_consumer_closes_total`, from `/metrics`), then lets each hog
//!    read what it was sent and checks that it ends with `Error` 302 and
//!    end-of-stream (`limits.close_linger` is 60 s here, so the first hogs cut still
//!    wait when the last is).
//! 5. Samples RSS once the hogs are gone (after 1 s and 5 s).
//!
//! Each hog may make the daemon hold `limits.max_pending_bytes` plus one page; the
//! report compares the peak growth with that. Pass `--env MIMALLOC_PURGE_DELAY=0` to
//! see what mimalloc keeps after the cut, and `SWITCHBOARD_BIN=/path/to/switchboard`
//! to measure another build of the daemon. Bounded: the whole run gives up after
//! `--stall` + 120 s, and the daemon is killed by PID on any failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use switchboard::auth::{Claims, Verifier};
use switchboard::client::{Client, ClientConfig};
use switchboard::config::AuthKey;
use switchboard::frame::{self, FrameHeader};
use switchboard::protocol::Kind;
use switchboard::protocol::messages::{self, Msg, PROTOCOL_VERSION};

const SECRET: &str = "switchboard-slow-readers-bench-secret-0123456789";
const IO_TIMEOUT: Duration = Duration::from_secs(30);

struct Args {
    hogs: usize,
    requests: usize,
    messages: usize,
    body: usize,
    backend: String,
    max_pending: Option<u64>,
    max_frame: Option<u64>,
    stall_secs: Option<u64>,
    env: Vec<(String, String)>,
    rounds: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        hogs: 50,
        requests: 300,
        messages: 150,
        body: 60_000,
        backend: "epoll".into(),
        max_pending: None,
        max_frame: None,
        stall_secs: None,
        env: Vec::new(),
        rounds: 1,
    };
    let mut bench_mode = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        let num = |v: String| -> Result<u64, String> {
            v.replace(['_', ','], "")
                .parse()
                .map_err(|_| format!("not a number: {v}"))
        };
        match arg.as_str() {
            "--hogs" => a.hogs = num(value()?)? as usize,
            "--requests" => a.requests = num(value()?)? as usize,
            "--messages" => a.messages = num(value()?)? as usize,
            "--body" => a.body = num(value()?)? as usize,
            "--rounds" => a.rounds = num(value()?)?.max(1) as usize,
            "--backend" => a.backend = value()?,
            "--max-pending" => a.max_pending = Some(num(value()?)?),
            "--max-frame" => a.max_frame = Some(num(value()?)?),
            "--stall" => a.stall_secs = Some(num(value()?)?),
            "--env" => {
                let v = value()?;
                let (k, val) = v.split_once('=').ok_or("--env NAME=VALUE")?;
                a.env.push((k.into(), val.into()));
            }
            "--bench" => bench_mode = true,
            other => eprintln!("slow_readers: ignoring argument {other:?}"),
        }
    }
    if !bench_mode {
        // `cargo test --all-targets`: a quick smoke run of the whole procedure.
        a.hogs = a.hogs.min(3);
        a.messages = a.messages.min(20);
        a.stall_secs = Some(a.stall_secs.unwrap_or(1).min(1));
        a.max_pending.get_or_insert(256 * 1024);
        a.max_frame.get_or_insert(128 * 1024);
    }
    if a.hogs == 0 || a.requests == 0 || a.messages == 0 || a.body == 0 || a.body > 65_000 {
        return Err("hogs, requests, messages must be positive; body 1..=65000".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slow_readers: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The daemon, killed by PID when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Anonymous (heap) and file-backed (the journal's mapped segments) parts of RSS.
fn rss_parts(pid: u32) -> String {
    format!(
        "(anon {} KiB, file {} KiB)",
        status_kib(pid, "RssAnon:"),
        status_kib(pid, "RssFile:")
    )
}

fn token(sub: &str, role: &str) -> Result<String, String> {
    let mut c = switchboard::Config::default();
    c.auth.keys = vec![AuthKey {
        kid: "bench".into(),
        secret: Some(SECRET.into()),
        secret_file: None,
    }];
    let v = Verifier::from_config(&c).map_err(|e| e.to_string())?;
    let claims = Claims::new(sub, role, SystemTime::now(), Duration::from_secs(3600));
    v.mint(&claims, Some("bench")).map_err(|e| e.to_string())
}

/// Sum of a counter family over its labels, from `/metrics`.
fn scrape(admin: SocketAddr, name: &str) -> u64 {
    let Ok(mut s) = TcpStream::connect_timeout(&admin, IO_TIMEOUT) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn start(a: &Args, dir: &std::path::Path) -> Result<(Daemon, SocketAddr, SocketAddr), String> {
    // The hogs read only once all are cut: a long linger keeps the first ones
    // waiting for them (a closing connection is released after close_linger,
    // whatever it has not sent).
    // stall_timeout is omitted unless given, so a build without it can be measured.
    let mut limits = "close_linger = \"60s\"\n".to_owned()
        + &a.stall_secs
            .map(|s| format!("stall_timeout = \"{s}s\"\n"))
            .unwrap_or_default();
    if let Some(p) = a.max_pending {
        limits.push_str(&format!("max_pending_bytes = {p}\n"));
    }
    if let Some(f) = a.max_frame {
        limits.push_str(&format!("max_frame_bytes = {f}\n"));
    }
    let toml = format!(
        "state_dir = {state:?}\n\
         [listeners.client]\naddr = \"127.0.0.1:0\"\n\
         [admin]\naddr = \"127.0.0.1:0\"\n\
         [reactor]\nbackend = \"{backend}\"\n\
         [limits]\n{limits}\
         [assist]\nspam_enabled = false\n\
         [log]\nlevel = \"info\"\nformat = \"text\"\n\
         [[auth.keys]]\nkid = \"bench\"\nsecret = {SECRET:?}\n",
        state = dir.join("state").display().to_string(),
        backend = a.backend,
    );
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, toml).map_err(|e| e.to_string())?;
    // SWITCHBOARD_BIN: measure another build (e.g. the one before a change).
    let bin = std::env::var("SWITCHBOARD_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_switchboard").to_owned());
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .envs(a.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let daemon = Daemon(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("closing slow consumer") || line.contains("slow consumer;") {
                continue;
            }
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).map_err(|_| "daemon did not start")?;
        if let Some((_, rest)) = line.split_once("client_addr=") {
            let client = rest.split_whitespace().next().unwrap_or("").parse();
            let admin = line
                .split_once("admin_addr=Some(")
                .and_then(|(_, r)| r.split(')').next()?.parse().ok());
            if let (Ok(client), Some(admin)) = (client, admin) {
                std::thread::spawn(move || for _ in rx {});
                return Ok((daemon, client, admin));
            }
        }
    }
}

/// Fills a conversation; returns its id.
fn seed(addr: SocketAddr, a: &Args) -> Result<u64, String> {
    let err = |e: switchboard::client::ClientError| e.to_string();
    let mut c = Client::connect(ClientConfig::new(
        addr.to_string(),
        token("hog", "visitor")?,
    ))
    .map_err(err)?;
    let body: String = (0..a.body)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut conversation = 0;
    for _ in 0..a.messages {
        c.send_text(conversation, &body).map_err(err)?;
        loop {
            let Some(incoming) = c.recv(IO_TIMEOUT).map_err(err)? else {
                return Err("no Accepted".into());
            };
            match incoming.msg {
                Msg::Accepted(acc) => {
                    conversation = acc.conversation;
                    break;
                }
                Msg::Error(e) => return Err(format!("seeding refused: {e:?}")),
                _ => {}
            }
        }
    }
    c.close().map_err(err)?;
    Ok(conversation)
}

/// A hog: handshake, `requests` `History` requests in one write, then silence.
fn hog(addr: SocketAddr, conversation: u64, requests: usize) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let hello = Msg::from(messages::Hello {
        protocol: PROTOCOL_VERSION,
        token: token("hog", "visitor")?,
        client: "slow-readers".into(),
        resume: Vec::new(),
    });
    s.write_all(&hello.to_frame(1)).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let f = read_frame(&mut s, &mut buf)?.ok_or("no Welcome")?;
    if f.0.kind != Kind::Welcome.as_u8() {
        return Err(format!("expected Welcome, got kind {}", f.0.kind));
    }
    let mut burst = Vec::new();
    for rid in 0..requests {
        let h = Msg::from(messages::History {
            limit: 200,
            conversation,
            before_seq: 0,
        });
        burst.extend_from_slice(&h.to_frame(rid as u32 + 10));
    }
    s.write_all(&burst).map_err(|e| e.to_string())?;
    Ok(s)
}

/// The next frame's header and payload length; `None` at end-of-stream.
fn read_frame(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<(FrameHeader, usize)>, String> {
    loop {
        match frame::decode(buf, frame::MAX_PAYLOAD_LIMIT) {
            Ok(Some(d)) => {
                let out = (d.header, d.payload.len());
                let n = d.consumed;
                buf.drain(..n);
                return Ok(Some(out));
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        let mut chunk = [0u8; 65536];
        match s.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(format!("EOF inside a frame ({} bytes)", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn run() -> Result<(), String> {
    let a = parse_args()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (daemon, addr, admin) = start(&a, dir.path())?;
    let pid = daemon.0.id();
    let conversation = seed(addr, &a)?;
    std::thread::sleep(Duration::from_secs(1));
    let base = rss_kib(pid);
    let base_parts = rss_parts(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let neighbour = {
        let stop = stop.clone();
        let tok = token("neighbour", "visitor")?;
        std::thread::spawn(move || -> Result<Vec<(Duration, Instant)>, String> {
            let mut c = Client::connect(ClientConfig::new(addr.to_string(), tok))
                .map_err(|e| e.to_string())?;
            let mut rtts = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                rtts.push((
                    c.ping(IO_TIMEOUT).map_err(|e| e.to_string())?,
                    Instant::now(),
                ));
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(rtts)
        })
    };

    let mut all_302 = true;
    let mut broken = Vec::new();
    let t0 = Instant::now();
    for round in 1..=a.rounds {
        let round_start = Instant::now();
        let mut hogs = Vec::with_capacity(a.hogs);
        for _ in 0..a.hogs {
            hogs.push(hog(addr, conversation, a.requests)?);
        }
        let mut peak = rss_kib(pid);
        let mut peak_parts = rss_parts(pid);
        let deadline = Instant::now() + Duration::from_secs(a.stall_secs.unwrap_or(10) + 120);
        let mut cut = 0;
        while cut < (round * a.hogs) as u64 {
            if Instant::now() > deadline {
                return Err(format!("only {cut} of {} hogs cut", round * a.hogs));
            }
            for _ in 0..2 {
                let now = rss_kib(pid);
                if now > peak {
                    peak = now;
                    peak_parts = rss_parts(pid);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            cut = scrape(admin, "switchboard_slow_consumer_closes_total");
        }
        let cut_after = round_start.elapsed();
        let deferred = scrape(admin, "switchboard_history_deferred_total");

        // Every hog reads what it was sent, at once (a closing connection waits
        // `limits.close_linger` for its peer to read the farewell).
        let readers: Vec<_> = hogs
            .into_iter()
            .map(|mut s| {
                std::thread::spawn(move || -> Result<(u64, bool), String> {
                    let mut buf = Vec::new();
                    let mut last = None;
                    let mut pages = 0;
                    while let Some((h, _)) = read_frame(&mut s, &mut buf)? {
                        if h.kind == Kind::HistoryPage.as_u8() {
                            pages += 1;
                        }
                        last = Some(h);
                    }
                    Ok((
                        pages,
                        last.is_some_and(|h| h.kind == Kind::Error.as_u8() && h.status == 302),
                    ))
                })
            })
            .collect();
        let mut pages = 0;
        let mut got_302 = 0;
        let mut failures = Vec::new();
        for r in readers {
            match r.join().map_err(|_| "reader panicked")? {
                Ok((p, ok)) => {
                    pages += p;
                    got_302 += usize::from(ok);
                }
                Err(e) => failures.push(e),
            }
        }
        std::thread::sleep(Duration::from_secs(1));
        let after_1s = rss_kib(pid);
        std::thread::sleep(Duration::from_secs(4));
        let after_5s = rss_kib(pid);
        let after_parts = rss_parts(pid);

        let max_pending = a.max_pending.unwrap_or(4 << 20);
        println!(
            "round {round}: baseline {base} KiB {base_parts}; peak {peak} KiB {peak_parts} (+{} KiB per hog; bound max_pending_bytes + 1 page = {} KiB); all {} cut after {:.1} s (History requests held back: {deferred}); {got_302} ended with 302 (pages read: {pages}); RSS 1 s after {after_1s} KiB, 5 s after {after_5s} KiB {after_parts}",
            peak.saturating_sub(base) / a.hogs as u64,
            (max_pending + a.max_frame.unwrap_or(1 << 20)) / 1024,
            a.hogs,
            cut_after.as_secs_f64(),
        );
        all_302 &= got_302 == a.hogs;
        broken.extend(failures);
    }
    stop.store(true, Ordering::Relaxed);
    let mut timed = neighbour.join().map_err(|_| "neighbour panicked")??;
    timed.sort_unstable_by_key(|t| std::cmp::Reverse(t.0));
    let worst: Vec<String> = timed
        .iter()
        .take(3)
        .map(|(d, at)| {
            format!(
                "{:.1} ms at t{:+.2} s",
                d.as_secs_f64() * 1e3,
                at.saturating_duration_since(t0).as_secs_f64()
            )
        })
        .collect();
    let mut rtts: Vec<Duration> = timed.iter().map(|(d, _)| *d).collect();
    rtts.sort_unstable();
    let pct = |p: f64| rtts.get(((rtts.len() as f64 - 1.0) * p) as usize).copied();

    println!(
        "slow_readers: backend={} hogs={} requests={} messages={}x{} B max_pending_bytes={:?} \
         stall_timeout={:?}s env={:?}",
        a.backend, a.hogs, a.requests, a.messages, a.body, a.max_pending, a.stall_secs, a.env
    );
    println!(
        "  neighbour ping RTT      p50 {:?} p99 {:?} max {:?} ({} pings)",
        pct(0.5).unwrap_or_default(),
        pct(0.99).unwrap_or_default(),
        rtts.last().copied().unwrap_or_default(),
        rtts.len()
    );
    println!("  neighbour's slowest     {}", worst.join(", "));
    drop(daemon);
    if !broken.is_empty() {
        return Err(format!("hogs' streams broken: {broken:?}"));
    }
    if !all_302 {
        return Err("some hogs did not end with 302".into());
    }
    Ok(())
}
