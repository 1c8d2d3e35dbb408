//! Daemon memory per idle connection: how much the release `switchboard` daemon's
//! resident set grows for every connection it holds open and idle.
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench idle_memory -- [--connections N] [--procs P] [--backend epoll|uring]
//! ```
//!
//! (default N = 19,000; default P = enough client processes to stay under ~9,900
//! sockets each, at least 2). Run without `--bench`, as `cargo test --all-targets`
//! does, it makes a quick 200-connection smoke run unless `--connections` is given.
//!
//! How it measures:
//! 1. Writes a config into a temp dir (echo listener on `127.0.0.1:0`, a 10-minute
//!    idle timeout so nothing is closed during the run) and starts the real daemon
//!    binary (`CARGO_BIN_EXE_switchboard`), reading the bound echo port from its
//!    `switchboard listening ... echo_addr=Some(127.0.0.1:PORT)` log line.
//! 2. Once start-up has settled, samples the daemon's `VmRSS` (`/proc/PID/status`) and
//!    `Rss` (`/proc/PID/smaps_rollup`).
//! 3. Re-executes this bench binary P times in child mode (env
//!    `SWITCHBOARD_IDLE_MEMORY_CHILD`). Each child opens its share of the N connections
//!    to the echo listener, binding each socket to one of several loopback source
//!    addresses (127.0.0.2, 127.0.0.3, ...) with port 0 so no single address runs out
//!    of ephemeral ports, sends one 16-byte message on each and reads the echo back
//!    (so every connection has been through the daemon's read and write path once),
//!    reports `ready` on stdout and holds the sockets until told to exit. Client
//!    sockets use `SO_LINGER 0`, so closing them leaves no `TIME_WAIT` behind to starve
//!    the next run of ports.
//! 4. After a short settle, samples the daemon's RSS again and reports
//!    `(after - before) / N` together with the open time, the daemon's open file
//!    descriptors, and which memory mappings grew.
//!    How evenly `SO_REUSEPORT` spread the connections over the reactors is read while
//!    they are held from `/proc/PID/fdinfo/<epoll fd>` (one epoll instance per
//!    reactor; each registered socket is one `tfd:` line).
//! 5. Tells the children to exit, sends SIGTERM to the daemon and, when the daemon
//!    logs it, reads how many connections each reactor accepted from its
//!    `stopped ... accepted_per_reactor=[..]` shutdown line.
//!
//! Kernel socket memory (socket buffers, epoll items) is not part of the daemon's RSS
//! and is not counted; `/proc/net/sockstat` is printed for reference.
//!
//! The whole run is bounded (about two minutes); every process it starts is killed by
//! PID on any failure. It exits non-zero when the daemon could not hold the
//! connections.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use switchboard::bench_support;

/// Marks a child (client) process.
const CHILD_ENV: &str = "SWITCHBOARD_IDLE_MEMORY_CHILD";
/// Connections held by default: as many as fit under the 20,000 open-file limit.
const DEFAULT_CONNECTIONS: usize = 19_000;
/// Connections when run without `--bench` (as `cargo test --all-targets` does): a
/// quick smoke run of the whole procedure.
const SMOKE_CONNECTIONS: usize = 200;
/// Most sockets one client process opens.
const MAX_PER_CHILD: usize = 9_900;
/// Connections per loopback source address.
const PER_SOURCE_ADDR: usize = 5_000;
/// Connections a child opens before reading their echoes.
const BATCH: usize = 256;
/// The message echoed once on every connection.
const MESSAGE: &[u8] = b"switchboard-idle";
/// The whole benchmark.
const OVERALL_TIMEOUT: Duration = Duration::from_secs(120);
/// A child gives up on its own after this long, even if the parent is gone.
const CHILD_LIFETIME: Duration = Duration::from_secs(150);
/// Waiting for the daemon's "listening" line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Between start-up and the first RSS sample.
const SETTLE_BEFORE: Duration = Duration::from_secs(1);
/// Between the last connection and the second RSS sample.
const SETTLE_AFTER: Duration = Duration::from_secs(2);
/// Per-socket connect and read timeout in the children.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The design goal, bytes of daemon RSS per idle connection.
const GOAL_BYTES: f64 = 450.0;

fn main() -> ExitCode {
    if std::env::var_os(CHILD_ENV).is_some() {
        return match child_main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("error {e}");
                let _ = std::io::stdout().flush();
                ExitCode::FAILURE
            }
        };
    }
    match parent_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idle_memory: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------
// Parent: the daemon, the measurement and the report.
// ---------------------------------------------------------------------------------

struct Args {
    connections: usize,
    procs: usize,
    /// `reactor.backend` of the daemon under test.
    backend: String,
}

fn parse_args() -> Result<Args, String> {
    let mut connections = None;
    let mut procs = None;
    let mut backend = "epoll".to_owned();
    let mut bench_mode = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<usize, String> {
            let v = inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))?;
            v.replace(['_', ','], "")
                .parse()
                .map_err(|_| format!("{name}: not a number: {v}"))
        };
        match key.as_str() {
            "--connections" | "-n" => connections = Some(value("--connections")?),
            "--procs" | "-p" => procs = Some(value("--procs")?),
            "--backend" => {
                backend = match inline.clone().or_else(|| args.next()).as_deref() {
                    Some(b @ ("epoll" | "uring" | "auto")) => b.to_owned(),
                    other => return Err(format!("--backend: epoll, uring or auto, not {other:?}")),
                }
            }
            // `cargo bench` adds `--bench`; `cargo test` does not.
            "--bench" => bench_mode = true,
            "--help" | "-h" => {
                println!(
                    "usage: cargo bench --bench idle_memory -- [--connections N] [--procs P] \
                     [--backend epoll|uring|auto]"
                );
                std::process::exit(0);
            }
            other => eprintln!("idle_memory: ignoring argument {other:?}"),
        }
    }
    let connections = connections.unwrap_or(if bench_mode {
        DEFAULT_CONNECTIONS
    } else {
        SMOKE_CONNECTIONS
    });
    if connections == 0 {
        return Err("--connections must be positive".into());
    }
    let procs = procs.unwrap_or_else(|| connections.div_ceil(MAX_PER_CHILD).max(2));
    if procs == 0 || procs > connections {
        return Err(format!("--procs must be between 1 and {connections}"));
    }
    Ok(Args {
        connections,
        procs,
        backend,
    })
}

/// PIDs of everything we started, for the watchdog.
type PidList = Arc<Mutex<Vec<u32>>>;

/// Kills (by PID) and reaps every process we started that is still running.
struct Procs {
    daemon: Option<Child>,
    children: Vec<Child>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.children.iter_mut().chain(self.daemon.as_mut()) {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Memory of the daemon at one moment.
#[derive(Debug, Clone, Default)]
struct Sample {
    vm_rss_kb: u64,
    rss_anon_kb: u64,
    rss_file_kb: u64,
    smaps_rss_kb: u64,
    threads: u64,
    fds: usize,
    /// Rss in kB by mapping (start address, name).
    mappings: HashMap<(String, String), u64>,
}

fn parent_main() -> Result<(), String> {
    let args = parse_args()?;
    let deadline = Instant::now() + OVERALL_TIMEOUT;
    let nofile = bench_support::raise_nofile().map_err(|e| format!("setrlimit: {e}"))?;
    if args.connections + 100 > nofile as usize {
        return Err(format!(
            "the daemon cannot hold {} connections: the open-file limit is {nofile}",
            args.connections
        ));
    }
    let share = args.connections.div_ceil(args.procs);
    if share + 50 > nofile as usize {
        return Err(format!(
            "{share} sockets per client process exceed the open-file limit {nofile}; \
             use more --procs"
        ));
    }

    // Watchdog: if anything blocks past the deadline, kill what we started and exit.
    let pids: PidList = Arc::default();
    {
        let pids = pids.clone();
        thread::spawn(move || {
            thread::sleep(OVERALL_TIMEOUT + Duration::from_secs(15));
            eprintln!("idle_memory: FAILED: watchdog: overall timeout; killing processes");
            if let Ok(list) = pids.lock() {
                for &pid in list.iter() {
                    kill(pid, libc::SIGKILL);
                }
            }
            std::process::exit(2);
        });
    }

    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let config_path = dir.path().join("switchboard.toml");
    std::fs::write(&config_path, config_text(dir.path(), &args.backend))
        .map_err(|e| format!("write config: {e}"))?;

    let mut procs = Procs {
        daemon: None,
        children: Vec::new(),
    };
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--config")
        .arg(&config_path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    let daemon_pid = daemon.id();
    push_pid(&pids, daemon_pid);
    let stderr = daemon.stderr.take().ok_or("daemon stderr not captured")?;
    procs.daemon = Some(daemon);
    let (log_tx, log_rx) = mpsc::channel::<String>();
    let log_thread = thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if log_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = DaemonLog {
        rx: log_rx,
        lines: Vec::new(),
    };

    let listening = log
        .wait_for("switchboard listening", Instant::now() + STARTUP_TIMEOUT)
        .map_err(|e| format!("daemon did not start: {e}\n{}", log.tail()))?;
    let echo = parse_echo_addr(&listening)
        .ok_or_else(|| format!("no echo_addr in the daemon's log line: {listening}"))?;
    let reactors = field(&listening, "reactors").unwrap_or("?").to_owned();
    let workers = field(&listening, "workers").unwrap_or("?").to_owned();

    thread::sleep(SETTLE_BEFORE);
    let before = sample(daemon_pid)?;
    let epolls_before = epoll_registrations(daemon_pid);
    let sockstat_before = sockstat_tcp();

    // Client processes.
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut next_addr = 0u32;
    let mut stdins: Vec<ChildStdin> = Vec::new();
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, String)>();
    let started = Instant::now();
    let mut assigned = 0;
    let mut n_sources = 0;
    for i in 0..args.procs {
        let count = share.min(args.connections - assigned);
        assigned += count;
        let n_addrs = count.div_ceil(PER_SOURCE_ADDR).max(1);
        let sources: Vec<String> = (0..n_addrs)
            .map(|_| {
                next_addr += 1;
                source_addr(next_addr).to_string()
            })
            .collect();
        n_sources += n_addrs;
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, "1")
            .arg(count.to_string())
            .arg(echo.to_string())
            .arg(sources.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start client process {i}: {e}"))?;
        push_pid(&pids, child.id());
        let out = child.stdout.take().ok_or("child stdout not captured")?;
        if let Some(stdin) = child.stdin.take() {
            stdins.push(stdin);
        }
        procs.children.push(child);
        let tx = ready_tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send((i, line)).is_err() {
                    break;
                }
            }
            let _ = tx.send((i, "eof".to_owned()));
        });
    }
    drop(ready_tx);

    let mut ready = vec![false; args.procs];
    let mut child_ms = vec![0u64; args.procs];
    while ready.iter().any(|r| !r) {
        let left = deadline.saturating_duration_since(Instant::now());
        match ready_rx.recv_timeout(left) {
            Ok((i, line)) => {
                if let Some(rest) = line.strip_prefix("ready ") {
                    if let Some(r) = ready.get_mut(i) {
                        *r = true;
                    }
                    if let (Some(ms), Some(slot)) = (
                        rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()),
                        child_ms.get_mut(i),
                    ) {
                        *slot = ms;
                    }
                } else if let Some(err) = line.strip_prefix("error ") {
                    log.drain();
                    return Err(format!(
                        "the daemon could not hold the connections: client process {i}: {err}\n\
                         daemon alive: {}; daemon open fds: {}\n{}",
                        alive(daemon_pid),
                        count_fds(daemon_pid),
                        log.tail()
                    ));
                } else if line == "eof" {
                    return Err(format!(
                        "client process {i} exited before opening its connections"
                    ));
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "timed out opening connections (daemon open fds: {})",
                    count_fds(daemon_pid)
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err("client processes vanished".into());
            }
        }
    }
    let open_time = started.elapsed();
    if !alive(daemon_pid) {
        return Err("the daemon died while connections were opened".into());
    }

    thread::sleep(SETTLE_AFTER);
    let after = sample(daemon_pid)?;
    let sockstat_after = sockstat_tcp();
    let epolls_after = epoll_registrations(daemon_pid);
    if after.fds < args.connections {
        return Err(format!(
            "the daemon could not hold the connections: it has {} fds open for {} connections",
            after.fds, args.connections
        ));
    }

    // Tell the clients to go, then stop the daemon.
    for mut s in stdins {
        let _ = s.write_all(b"exit\n");
    }
    for c in &mut procs.children {
        wait_until(c, Instant::now() + Duration::from_secs(10));
    }
    kill(daemon_pid, libc::SIGTERM);
    let stopped = log.wait_for(": stopped", Instant::now() + Duration::from_secs(20));
    if let Some(d) = procs.daemon.as_mut() {
        wait_until(d, Instant::now() + Duration::from_secs(10));
    }
    drop(procs);
    let _ = log_thread.join();
    log.drain();

    print!(
        "{}",
        report(&Measurement {
            backend: args.backend.clone(),
            connections: args.connections,
            procs: args.procs,
            n_sources,
            echo,
            daemon_pid,
            reactors,
            workers,
            open_time,
            child_ms,
            before,
            after,
            epolls_before,
            epolls_after,
            sockstat_before,
            sockstat_after,
            stopped,
        })
    );
    let _ = std::io::stdout().flush();
    Ok(())
}

/// Everything the report needs.
struct Measurement {
    backend: String,
    connections: usize,
    procs: usize,
    n_sources: usize,
    echo: SocketAddr,
    daemon_pid: u32,
    reactors: String,
    workers: String,
    open_time: Duration,
    child_ms: Vec<u64>,
    before: Sample,
    after: Sample,
    epolls_before: Vec<(u32, u64)>,
    epolls_after: Vec<(u32, u64)>,
    sockstat_before: String,
    sockstat_after: String,
    /// The daemon's `stopped` log line.
    stopped: Result<String, String>,
}

fn report(m: &Measurement) -> String {
    let n = m.connections as f64;
    let d_vm = m.after.vm_rss_kb as i64 - m.before.vm_rss_kb as i64;
    let d_smaps = m.after.smaps_rss_kb as i64 - m.before.smaps_rss_kb as i64;
    let per_vm = d_vm as f64 * 1024.0 / n;
    let per_smaps = d_smaps as f64 * 1024.0 / n;
    let mut r = String::new();
    let _ = writeln!(r, "\nswitchboard idle-connection memory");
    let _ = writeln!(
        r,
        "  daemon                 {} (pid {}, {} backend, {} reactors, {} workers, {} threads)",
        env!("CARGO_BIN_EXE_switchboard"),
        m.daemon_pid,
        m.backend,
        m.reactors,
        m.workers,
        m.after.threads
    );
    let _ = writeln!(
        r,
        "  connections held       {} ({} client processes, {} source addresses, echo {})",
        m.connections, m.procs, m.n_sources, m.echo
    );
    let _ = writeln!(
        r,
        "  time to open + echo    {:.2} s ({:.0} conn/s; per process {:?} ms)",
        m.open_time.as_secs_f64(),
        n / m.open_time.as_secs_f64(),
        m.child_ms
    );
    let _ = writeln!(
        r,
        "  daemon open fds        {} before, {} after",
        m.before.fds, m.after.fds
    );
    let _ = writeln!(
        r,
        "  VmRSS                  {} kB -> {} kB  ({:+} kB)",
        m.before.vm_rss_kb, m.after.vm_rss_kb, d_vm
    );
    let _ = writeln!(
        r,
        "    RssAnon / RssFile    {} / {} kB -> {} / {} kB",
        m.before.rss_anon_kb, m.before.rss_file_kb, m.after.rss_anon_kb, m.after.rss_file_kb
    );
    let _ = writeln!(
        r,
        "  smaps_rollup Rss       {} kB -> {} kB  ({:+} kB)",
        m.before.smaps_rss_kb, m.after.smaps_rss_kb, d_smaps
    );
    let verdict = if per_vm <= GOAL_BYTES {
        "within"
    } else {
        "ABOVE"
    };
    let _ = writeln!(
        r,
        "  bytes per connection   {per_vm:.1} B (VmRSS), {per_smaps:.1} B (smaps Rss)   \
         goal <= {GOAL_BYTES:.0} B: {verdict}"
    );
    if m.connections < 2_000 {
        let _ = writeln!(
            r,
            "  (smoke run: too few connections for a meaningful per-connection figure)"
        );
    }
    let _ = writeln!(r, "  largest growth by mapping (kB, start address, name):");
    for (key, grew) in mapping_growth(&m.before, &m.after).into_iter().take(6) {
        let _ = writeln!(r, "    {grew:+8}  {} {}", key.0, key.1);
    }
    let _ = writeln!(
        r,
        "  kernel TCP (both ends, not in RSS): {} -> {}",
        m.sockstat_before.trim(),
        m.sockstat_after.trim()
    );
    match m
        .stopped
        .as_deref()
        .ok()
        .and_then(|l| bracket_field(l, "accepted_per_reactor"))
    {
        Some(list) => {
            let _ = writeln!(
                r,
                "  accepted per reactor   [{}] (daemon's shutdown log){}",
                join(&list),
                balance(&list)
            );
        }
        None => {
            let _ = writeln!(
                r,
                "  accepted per reactor   not in the daemon's shutdown log ({})",
                match &m.stopped {
                    Ok(l) => format!("line: {l}"),
                    Err(e) => format!("no `stopped` line: {e}"),
                }
            );
        }
    }
    if !m.epolls_after.is_empty() {
        // Connections registered per reactor while held: watched fds minus the
        // listeners and waker each epoll instance watched before any client came.
        // Epoll instances that gained nothing (the admin listener's) are not reactors.
        let held: Vec<(u32, u64)> = m
            .epolls_after
            .iter()
            .map(|&(fd, n)| {
                let base = m
                    .epolls_before
                    .iter()
                    .find(|&&(f, _)| f == fd)
                    .map_or(0, |&(_, b)| b);
                (fd, n.saturating_sub(base))
            })
            .filter(|&(_, n)| n > 0)
            .collect();
        let counts: Vec<u64> = held.iter().map(|&(_, n)| n).collect();
        let fds: Vec<String> = held.iter().map(|(fd, _)| fd.to_string()).collect();
        let _ = writeln!(
            r,
            "  held per reactor       [{}] (sockets added to epoll fds {} while held){}",
            join(&counts),
            fds.join(", "),
            balance(&counts)
        );
    }
    r
}

fn config_text(dir: &Path, backend: &str) -> String {
    let state = dir.join("state");
    format!(
        "state_dir = {state:?}\n\
         \n\
         [listeners.client]\n\
         addr = \"127.0.0.1:0\"\n\
         \n\
         [listeners.echo]\n\
         addr = \"127.0.0.1:0\"\n\
         \n\
         [admin]\n\
         addr = \"127.0.0.1:0\"\n\
         \n\
         [reactor]\n\
         backend = {backend:?}\n\
         \n\
         [heartbeat]\n\
         interval = \"1m\"\n\
         idle_timeout = \"10m\"\n\
         handshake_timeout = \"1m\"\n",
        state = state.display().to_string()
    )
}

/// The k-th client source address: 127.0.0.2, 127.0.0.3, ...
fn source_addr(k: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 1)) + k)
}

fn push_pid(pids: &PidList, pid: u32) {
    if let Ok(mut l) = pids.lock() {
        l.push(pid);
    }
}

/// Signals a child this bench started; a child already gone is no error here.
fn kill(pid: u32, signal: libc::c_int) {
    let _ = bench_support::kill(pid, signal);
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
        .unwrap_or(false)
}

/// Waits for a child to exit, killing it (by PID) at the deadline.
fn wait_until(c: &mut Child, deadline: Instant) {
    loop {
        match c.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                let _ = c.kill();
                let _ = c.wait();
                return;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The daemon's stderr, line by line.
struct DaemonLog {
    rx: Receiver<String>,
    lines: Vec<String>,
}

impl DaemonLog {
    /// Returns the first line (from now on or already seen) containing `needle`.
    fn wait_for(&mut self, needle: &str, deadline: Instant) -> Result<String, String> {
        if let Some(l) = self.lines.iter().find(|l| l.contains(needle)) {
            return Ok(l.clone());
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.lines.push(line.clone());
                    if hit {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("timed out waiting for {needle:?}"));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("daemon stderr closed before {needle:?}"));
                }
            }
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.rx.try_recv() {
            self.lines.push(line);
        }
    }

    fn tail(&self) -> String {
        let start = self.lines.len().saturating_sub(20);
        let mut s = String::from("daemon log (last lines):");
        for l in self.lines.get(start..).unwrap_or_default() {
            s.push_str("\n  ");
            s.push_str(l);
        }
        s
    }
}

/// `echo_addr=Some(127.0.0.1:PORT)` from the "listening" line.
fn parse_echo_addr(line: &str) -> Option<SocketAddr> {
    let v = field(line, "echo_addr")?;
    v.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok()
}

/// The value of `key=value` (up to the next space) in a plain-text log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let start = line.find(&pat)? + pat.len();
    let rest = line.get(start..)?;
    Some(rest.split(' ').next().unwrap_or(rest))
}

/// `key=[a, b, ...]` as numbers.
fn bracket_field(line: &str, key: &str) -> Option<Vec<u64>> {
    let pat = format!("{key}=[");
    let start = line.find(&pat)? + pat.len();
    let rest = line.get(start..)?;
    let end = rest.find(']')?;
    rest.get(..end)?
        .split(',')
        .map(|s| s.trim().parse().ok())
        .collect()
}

fn join(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// "; max/min = x, spread y% of the mean".
fn balance(v: &[u64]) -> String {
    let (Some(&max), Some(&min)) = (v.iter().max(), v.iter().min()) else {
        return String::new();
    };
    let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
    if min == 0 || mean == 0.0 {
        return "; one reactor got none".into();
    }
    format!(
        "; max/min = {:.3}, largest deviation from the mean {:.1}%",
        max as f64 / min as f64,
        v.iter()
            .map(|&x| (x as f64 - mean).abs() / mean * 100.0)
            .fold(0.0, f64::max)
    )
}

fn sample(pid: u32) -> Result<Sample, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("read /proc/{pid}/status: {e}"))?;
    let kb = |text: &str, key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map_err(|e| format!("read /proc/{pid}/smaps_rollup: {e}"))?;
    Ok(Sample {
        vm_rss_kb: kb(&status, "VmRSS:"),
        rss_anon_kb: kb(&status, "RssAnon:"),
        rss_file_kb: kb(&status, "RssFile:"),
        threads: kb(&status, "Threads:"),
        smaps_rss_kb: kb(&rollup, "Rss:"),
        fds: count_fds(pid),
        mappings: mappings(pid),
    })
}

fn count_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Rss of every mapping, keyed by (start address, name).
fn mappings(pid: u32) -> HashMap<(String, String), u64> {
    let mut out = HashMap::new();
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return out;
    };
    let mut key: Option<(String, String)> = None;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let start = first.split('-').next().unwrap_or_default().to_owned();
            let perms = parts.next().unwrap_or_default();
            let name = parts.nth(3).unwrap_or("[anon]");
            key = Some((start, format!("{perms} {name}")));
        } else if first == "Rss:"
            && let (Some(k), Some(v)) = (key.take(), parts.next().and_then(|v| v.parse().ok()))
        {
            out.insert(k, v);
        }
    }
    out
}

/// Mappings sorted by how much their Rss grew, largest first.
fn mapping_growth(before: &Sample, after: &Sample) -> Vec<((String, String), i64)> {
    let mut v: Vec<_> = after
        .mappings
        .iter()
        .map(|(k, &a)| {
            let b = before.mappings.get(k).copied().unwrap_or(0);
            (k.clone(), a as i64 - b as i64)
        })
        .filter(|(_, d)| *d != 0)
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v
}

fn sockstat_tcp() -> String {
    std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("TCP:")).map(str::to_owned))
        .unwrap_or_default()
}

/// Sockets registered with each of the daemon's epoll instances (one per reactor,
/// created in reactor order), as (lowest fd, watched fds). An instance reached through
/// several fds (mio's `Registry::try_clone` dups it) lists the same watched fds in
/// every copy and is counted once. (All epoll files share one anonymous inode, so the
/// inode cannot tell them apart.)
fn epoll_registrations(pid: u32) -> Vec<(u32, u64)> {
    let mut by_content: HashMap<String, (u32, u64)> = HashMap::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    for fd in fds.flatten() {
        let is_epoll =
            std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().contains("eventpoll"));
        let Some(n) = fd.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if !is_epoll {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}")).unwrap_or_default();
        let watched: Vec<&str> = info.lines().filter(|l| l.starts_with("tfd:")).collect();
        let count = watched.len() as u64;
        let e = by_content.entry(watched.concat()).or_insert((n, count));
        e.0 = e.0.min(n);
    }
    let mut out: Vec<(u32, u64)> = by_content.into_values().collect();
    out.sort_unstable();
    out
}

// ---------------------------------------------------------------------------------
// Child: opens and holds its share of the connections.
// ---------------------------------------------------------------------------------

fn child_main() -> Result<(), String> {
    thread::spawn(|| {
        thread::sleep(CHILD_LIFETIME);
        std::process::exit(3);
    });
    let mut args = std::env::args().skip(1);
    let count: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("child: bad count")?;
    let echo: SocketAddr = args
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("child: bad echo address")?;
    let sources: Vec<Ipv4Addr> = args
        .next()
        .ok_or("child: no source addresses")?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("child: bad source address: {e}"))?;
    bench_support::raise_nofile().map_err(|e| format!("setrlimit: {e}"))?;

    let echo = SockAddr::from(echo);
    let mut held: Vec<Socket> = Vec::with_capacity(count);
    let mut buf = [0u8; MESSAGE.len()];
    let start = Instant::now();
    while held.len() < count {
        let first = held.len();
        let end = (first + BATCH).min(count);
        for i in first..end {
            let src = sources
                .get(i / PER_SOURCE_ADDR)
                .or(sources.last())
                .copied()
                .ok_or("child: no source address")?;
            let s = open(&echo, src)
                .map_err(|e| format!("after {i} connections: connect from {src}: {e}"))?;
            held.push(s);
        }
        for (i, s) in held.iter().enumerate().skip(first) {
            let mut s: &Socket = s;
            s.read_exact(&mut buf).map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    format!("after {i} connections: no echo within {IO_TIMEOUT:?}")
                }
                _ => format!("after {i} connections: reading the echo: {e}"),
            })?;
            if buf != MESSAGE {
                return Err(format!("connection {i}: echo differs: {buf:?}"));
            }
        }
    }
    println!("ready {count} {}", start.elapsed().as_millis());
    std::io::stdout()
        .flush()
        .map_err(|e| format!("child: stdout: {e}"))?;
    // Hold until the parent says so (or goes away: EOF).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(held);
    Ok(())
}

fn open(echo: &SockAddr, src: Ipv4Addr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.bind(&SockAddr::from(SocketAddrV4::new(src, 0)))?;
    // Close with RST: no TIME_WAIT left to use up the next run's ports.
    s.set_linger(Some(Duration::ZERO))?;
    s.connect_timeout(echo, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_tcp_nodelay(true)?;
    (&s).write_all(MESSAGE)?;
    Ok(s)
}
