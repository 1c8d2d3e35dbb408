//! TLS on the client port: daemon memory per idle TLS 1.3 connection next to a
//! plaintext one, and full handshakes per CPU-second of the daemon (ECDSA P-256).
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench tls_idle -- [--connections N] [--procs P] [--nginx] [--kx G]
//! ```
//!
//! (default N = 10,000, P = 4; G, the key exchange group clients offer first:
//! `x25519` (default: what browsers, OpenSSL and the SDK offer first), `p256` or
//! `p384` (rustls' *ring* default; the server then does P-384, ~5× the CPU)). Without `--bench` (as `cargo test --all-targets`
//! runs it) a 100-connection smoke run.
//!
//! How it measures: makes a CA and a P-256 certificate for `localhost` (rcgen),
//! starts the release daemon with `[listeners.client.tls]` (handshake timeout 10
//! minutes, so idle connections stay), then twice — plaintext, then TLS — samples
//! the daemon's `VmRSS` and CPU time (`/proc/PID/stat`), has P child processes
//! (this binary again) open N/P connections each from loopback source addresses
//! 127.0.0.2.. (a plaintext connection sends nothing; a TLS one completes a TLS 1.3
//! handshake and sends nothing more), waits until all are open, samples again and
//! reports the growth per connection; the TLS pass also reports handshakes per
//! daemon CPU-second. `--nginx` adds a third pass through the alternative users
//! have today: Debian's nginx (`stream` module, 2 workers, the same certificate)
//! terminating TLS in front of the daemon's plaintext port, measuring nginx's
//! processes alone (handshakes per CPU-second) and with the daemon (RSS).
//! First, in this process: the heap one established session holds (a counting
//! allocator around sessions driven through a handshake in memory), which tells
//! live state from the allocator's fragmentation in the RSS figure.
//! Every process started is killed by PID when the run ends; the run is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

/// Counts this process's heap, for the in-process session measurement.
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn live() -> i64 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

const CHILD_ENV: &str = "SWITCHBOARD_TLS_IDLE_CHILD";

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: usize = opt("--connections")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 10_000 } else { 100 });
    let procs: usize = opt("--procs").and_then(|v| v.parse().ok()).unwrap_or(4);
    let nginx = args.iter().any(|a| a == "--nginx");
    let kx = opt("--kx").unwrap_or_else(|| "x25519".to_owned());
    let _ = switchboard::bench_support::raise_nofile();
    match switchboard::tls::fuzz_feed::session_heap(n.min(2000), &live) {
        Ok(b) => println!(
            "heap per established TLS 1.3 session (in process, {} sessions, system allocator): {b:.0} B",
            n.min(2000)
        ),
        Err(e) => eprintln!("tls_idle: session heap: {e}"),
    }
    if let Err(e) = run(n, procs.max(1), nginx, &kx) {
        eprintln!("tls_idle: {e}");
        std::process::exit(1);
    }
}

fn run(n: usize, procs: usize, nginx: bool, kx: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    let mut ca = ca;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let ca_cert = ca.self_signed(&ca_key).map_err(|e| e.to_string())?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_owned()]).map_err(|e| e.to_string())?;
    let leaf_key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .map_err(|e| e.to_string())?;
    let p = |f: &str| dir.path().join(f);
    std::fs::write(p("ca.pem"), ca_cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(p("cert.pem"), leaf_cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(p("key.pem"), leaf_key.serialize_pem()).map_err(|e| e.to_string())?;
    let config = format!(
        "state_dir = {:?}\n\
         [listeners.client]\naddr = \"127.0.0.1:0\"\n\
         [listeners.client.tls]\ncert = {:?}\nkey = {:?}\n\
         [admin]\naddr = \"127.0.0.1:0\"\n\
         [heartbeat]\nhandshake_timeout = \"10m\"\n\
         [limits]\nmax_connections = 100000\nmax_connections_per_ip = 100000\naccept_rate = 1000000\naccept_burst = 1000000\n\
         [journal]\nenabled = false\n",
        p("state").display().to_string(),
        p("cert.pem").display().to_string(),
        p("key.pem").display().to_string(),
    );
    std::fs::write(p("switchboard.toml"), config).map_err(|e| e.to_string())?;
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--config")
        .arg(p("switchboard.toml"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start the daemon: {e}"))?;
    let pid = daemon.id();
    let result = (|| {
        let stderr = daemon.stderr.take().ok_or("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .ok_or("daemon exited")?
                .map_err(|e| e.to_string())?;
            if line.contains("switchboard listening") {
                let v = line
                    .split(" client_addr=")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .ok_or_else(|| format!("no client_addr: {line}"))?;
                break v.parse::<SocketAddr>().map_err(|e| e.to_string())?;
            }
        };
        // Keep draining the log so the daemon never blocks on it.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        std::thread::sleep(Duration::from_millis(500));
        println!("connections: {n} per pass, {procs} client processes; clients offer {kx} first");
        let ca = p("ca.pem");
        let pass =
            |pids: &[u32], addr: SocketAddr, mode: &str| pass(pids, addr, n, procs, mode, &ca, kx);
        let plain = pass(&[pid], addr, "plain")?;
        let tls = pass(&[pid], addr, "tls")?;
        println!(
            "daemon RSS per idle connection: plaintext {:.0} B, TLS 1.3 {:.0} B (+{:.0} B)",
            plain.rss_per_conn,
            tls.rss_per_conn,
            tls.rss_per_conn - plain.rss_per_conn
        );
        println!(
            "daemon: full TLS 1.3 handshakes (ECDSA P-256, {kx}): {:.0} per CPU-second \
             ({:.2} CPU-s for {n}; {:.0}/s wall)",
            n as f64 / tls.cpu_s.max(1e-9),
            tls.cpu_s,
            n as f64 / tls.wall_s.max(1e-9),
        );
        if nginx {
            let (mut master, front) = start_nginx(dir.path(), addr)?;
            let r = (|| {
                std::thread::sleep(Duration::from_millis(500));
                // nginx's processes first: `head_cpu_s` is nginx alone.
                let mut pids = children_of(master.id());
                pids.push(master.id());
                pids.push(pid);
                let both = pass(&pids, front, "nginx+daemon")?;
                println!(
                    "nginx stream in front: RSS per idle TLS connection {:.0} B (nginx and \
                     the daemon together; +{:.0} B over plaintext to the daemon)",
                    both.rss_per_conn,
                    both.rss_per_conn - plain.rss_per_conn
                );
                println!(
                    "nginx: full TLS 1.3 handshakes (ECDSA P-256, {kx}) {:.0} per CPU-second \
                     of nginx alone ({:.2} CPU-s for {n}), {:.0} per CPU-second of nginx and \
                     the daemon ({:.2} CPU-s); {:.0}/s wall",
                    n as f64 / both.head_cpu_s.max(1e-9),
                    both.head_cpu_s,
                    n as f64 / both.cpu_s.max(1e-9),
                    both.cpu_s,
                    n as f64 / both.wall_s.max(1e-9),
                );
                Ok::<(), String>(())
            })();
            for c in children_of(master.id()) {
                let _ = switchboard::bench_support::kill(c, libc::SIGKILL);
            }
            let _ = switchboard::bench_support::kill(master.id(), libc::SIGKILL);
            let _ = master.wait();
            r?;
        }
        Ok::<(), String>(())
    })();
    switchboard::bench_support::kill(pid, libc::SIGKILL).ok();
    let _ = daemon.wait();
    result
}

struct Pass {
    rss_per_conn: f64,
    /// CPU of every process measured.
    cpu_s: f64,
    /// CPU of all but the last process (nginx without the daemon behind it).
    head_cpu_s: f64,
    wall_s: f64,
}

fn pass(
    pids: &[u32],
    addr: SocketAddr,
    n: usize,
    procs: usize,
    mode: &str,
    ca: &std::path::Path,
    kx: &str,
) -> Result<Pass, String> {
    let head = pids.get(..pids.len().saturating_sub(1)).unwrap_or_default();
    let (rss0, cpu0, head0) = (rss_kb(pids)?, cpu_s(pids)?, cpu_s(head)?);
    let started = Instant::now();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut children: Vec<Child> = Vec::new();
    let per = n.div_ceil(procs);
    let mut left = n;
    for i in 0..procs {
        let k = per.min(left);
        left -= k;
        if k == 0 {
            break;
        }
        let spec = format!("{mode} {addr} {k} {} {} {kx}", i + 2, ca.display());
        let c = Command::new(&exe)
            .env(CHILD_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        children.push(c);
    }
    let mut failed = None;
    for c in &mut children {
        let mut line = String::new();
        if let Some(out) = c.stdout.as_mut() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        if !line.starts_with("ready") {
            failed = Some(format!("a {mode} client failed: {line}"));
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    let (cpu_s, head_cpu_s) = (cpu_s(pids)? - cpu0, cpu_s(head)? - head0);
    std::thread::sleep(Duration::from_secs(2));
    let rss1 = rss_kb(pids)?;
    for mut c in children {
        drop(c.stdin.take());
        let _ = switchboard::bench_support::kill(c.id(), libc::SIGKILL);
        let _ = c.wait();
    }
    if let Some(f) = failed {
        return Err(f);
    }
    let rss_per_conn = (rss1 as f64 - rss0 as f64) * 1024.0 / n as f64;
    println!("{mode}: VmRSS {rss0} kB -> {rss1} kB; opened in {wall_s:.2} s, CPU {cpu_s:.2} s");
    // Let the daemon notice the closes before the next pass.
    std::thread::sleep(Duration::from_secs(3));
    Ok(Pass {
        rss_per_conn,
        cpu_s,
        head_cpu_s,
        wall_s,
    })
}

/// Summed `VmRSS` of `pids`, in kB.
fn rss_kb(pids: &[u32]) -> Result<u64, String> {
    let mut total = 0;
    for pid in pids {
        let s =
            std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
        total += s
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .ok_or("no VmRSS")?;
    }
    Ok(total)
}

/// Summed user + system CPU of `pids`, in seconds.
fn cpu_s(pids: &[u32]) -> Result<f64, String> {
    let mut total = 0.0;
    for pid in pids {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
        let rest = s.rsplit_once(')').map(|(_, r)| r).ok_or("bad stat")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        total += ticks / 100.0;
    }
    Ok(total)
}

/// The processes whose parent is `parent` (nginx's workers).
fn children_of(parent: u32) -> Vec<u32> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            v.push(pid);
        }
    }
    v
}

/// Starts nginx (stream module, 2 workers) terminating TLS with the bench's
/// certificate in front of `daemon`; returns its master and its address.
fn start_nginx(dir: &std::path::Path, daemon: SocketAddr) -> Result<(Child, SocketAddr), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let conf = format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
         worker_processes 2;\nworker_rlimit_nofile 40000;\npid {d}/nginx.pid;\n\
         error_log {d}/nginx-error.log;\n\
         events {{ worker_connections 30000; }}\n\
         stream {{ server {{ listen 127.0.0.1:{port} ssl; \
         ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem; \
         ssl_protocols TLSv1.2 TLSv1.3; proxy_pass {daemon}; proxy_timeout 10m; }} }}\n",
        d = dir.display(),
    );
    std::fs::write(dir.join("nginx.conf"), conf).map_err(|e| e.to_string())?;
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("nginx-error.log"))
        .arg("-g")
        .arg("daemon off;")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("start nginx: {e}"))?;
    Ok((child, SocketAddr::from(([127, 0, 0, 1], port))))
}

/// Child mode: `mode addr count source-octet ca-file kx`; opens the connections, says
/// `ready`, holds them until stdin closes.
fn child(spec: &str) {
    let w: Vec<&str> = spec.split(' ').collect();
    let (mode, addr, k, octet, ca, kx) = (w[0], w[1], w[2], w[3], w[4], w[5]);
    let addr: SocketAddr = addr.parse().unwrap_or_else(|_| std::process::exit(3));
    let k: usize = k.parse().unwrap_or(0);
    let octet: u8 = octet.parse().unwrap_or(2);
    let config = client_config(ca, kx);
    let mut held_plain = Vec::new();
    let mut held_tls = Vec::new();
    for _ in 0..k {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .unwrap_or_else(|_| std::process::exit(4));
        let _ = s.set_linger(Some(Duration::ZERO));
        let src = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, octet), 0);
        if s.bind(&SockAddr::from(src)).is_err() || s.connect(&SockAddr::from(addr)).is_err() {
            println!("failed: connect");
            return;
        }
        let sock: TcpStream = s.into();
        if mode == "plain" {
            held_plain.push(sock);
            continue;
        }
        let name = rustls::pki_types::ServerName::try_from("localhost")
            .unwrap_or_else(|_| std::process::exit(5));
        let Ok(conn) = rustls::ClientConnection::new(config.clone(), name) else {
            println!("failed: client");
            return;
        };
        let mut tls = rustls::StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                println!("failed: handshake: {e}");
                return;
            }
        }
        held_tls.push(tls);
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

/// The bench clients' configuration: TLS 1.3 (AES-128-GCM first), trusting `ca`, key exchange groups in
/// the order `kx` names first (`x25519`: X25519, P-256, P-384 as browsers, OpenSSL
/// and the SDK offer them; `p384`: rustls' *ring* default, P-384 first).
#[allow(deprecated)]
fn client_config(ca: &str, kx: &str) -> Arc<rustls::ClientConfig> {
    use rustls::crypto::ring::kx_group;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Ok(c) = CertificateDer::from_pem_file(ca) {
        let _ = roots.add(c);
    }
    use rustls::crypto::ring::cipher_suite as cs;
    let mut provider = rustls::crypto::ring::default_provider();
    // The TLS 1.3 suites in the order browsers offer them (rustls' default puts
    // AES-256/SHA-384 first, and the server follows the client's order).
    provider.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    provider.kx_groups = match kx {
        "p384" => vec![kx_group::SECP384R1, kx_group::X25519, kx_group::SECP256R1],
        "p256" => vec![kx_group::SECP256R1, kx_group::X25519, kx_group::SECP384R1],
        _ => vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| std::process::exit(6));
    Arc::new(config)
}
