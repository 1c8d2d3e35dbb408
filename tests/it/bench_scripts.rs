//! The benchmark tools that README figures come from: the chat floor's C programs
//! (`benches/floor`, built with the system C compiler, which linking Rust needs
//! anyway) relay every message of a small run in both modes, the echo floor's server
//! echoes every byte once and in order in each of its variants (and so does the io_uring
//! echo floor, where liburing is installed), and
//! `benches/compare.sh` refuses a malformed `PEERS` or `SCENARIOS` before it starts
//! anything.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Waits for `child` at most `limit`, killing it (by its own handle) past that.
fn wait_output(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Reads `child`'s standard error until it says "listening"; returns the reader,
/// which the caller keeps so the child's later lines do not meet a closed pipe.
fn until_listening(child: &mut Child, what: &str) -> BufReader<std::process::ChildStderr> {
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "{what} exited before listening"
        );
    }
    err
}

fn build_floor(dir: &Path) -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("benches/floor/build.sh"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "benches/floor/build.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.to_path_buf()
}

/// One relay and one load of 44 connections (4 agents x 10 visitors) for ~1.5 s.
fn floor_run(bin: &Path, mode: &str) -> (Value, Value) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut relay = Command::new(bin.join("relay"))
        .args(["-p", &port.to_string(), "-n", "44", "-m", mode, "-T", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The relay says when it listens; it accepts only its 44 connections, so no probe.
    let _stderr = until_listening(&mut relay, "relay");
    let load = Command::new(bin.join("load"))
        .args(["-p", &port.to_string(), "-P", &relay.id().to_string()])
        .args(["-n", "44", "-a", "4", "-k", "10", "-R", "20"])
        .args(["-W", "0.2", "-D", "1", "-j", "2", "-S", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let load = wait_output(load, Duration::from_secs(30));
    let relay = wait_output(relay, Duration::from_secs(10));
    assert!(
        load.status.success(),
        "load failed: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    assert!(relay.status.success(), "relay failed ({mode})");
    let parse = |o: &Output| -> Value { serde_json::from_slice(&o.stdout).unwrap() };
    (parse(&load), parse(&relay))
}

#[test]
fn the_chat_floor_relays_every_message_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let bin = build_floor(dir.path());
    for mode in ["direct", "handoff"] {
        let (load, relay) = floor_run(&bin, mode);
        let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));
        // 40 conversations x 20 msg/s for 1.2 s of sending: ~960 messages.
        let sent = n(&load, "sent_all");
        assert!(sent > 500, "{mode}: {load}");
        assert_eq!(
            n(&load, "delivered_all"),
            sent,
            "{mode}: every message delivered"
        );
        assert_eq!(
            n(&load, "acks_all"),
            sent,
            "{mode}: every message acknowledged"
        );
        assert_eq!(n(&relay, "frames"), sent, "{mode}: the relay saw each once");
        assert_eq!(
            n(&load, "dropped") + n(&load, "closed"),
            0,
            "{mode}: {load}"
        );
        assert!(n(&load, "delivered") > 0 && n(&load, "delivered") <= sent);
        assert!(load["relay_cpu_s"].as_f64().unwrap() >= 0.0, "{load}");
        assert_eq!(relay["mode"], mode);
        let wakes = n(&relay, "eventfd_writes");
        assert_eq!(wakes > 0, mode == "handoff", "{mode}: {relay}");
    }
}

/// Bytes that do not repeat with any short period (so a dropped, doubled or reordered
/// chunk cannot compare equal): a 64-bit LCG's high bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

/// One client of the echo floor: writes `data` in chunks of varying size (up to 192 KiB,
/// more than the server's 64 KiB read, so its output backs up) on one thread while
/// this one reads, then half-closes and expects exactly `data` back, then end of stream.
fn echo_client(port: u16, data: Vec<u8>) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sent = data.clone();
    let send = std::thread::spawn(move || {
        let mut at = 0;
        let mut step = 1usize;
        while at < sent.len() {
            step = (step * 7 + 13) % (192 * 1024) + 1;
            let end = (at + step).min(sent.len());
            writer.write_all(&sent[at..end]).unwrap();
            at = end;
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::with_capacity(data.len());
    let mut reader = stream;
    reader.read_to_end(&mut back).unwrap();
    send.join().unwrap();
    assert_eq!(back.len(), data.len(), "every byte echoed, once");
    assert!(back == data, "echoed in order");
}

#[test]
fn the_echo_floor_echoes_every_byte_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let bin = build_floor(dir.path());
    for (listen, epoll) in [
        ("reuseport", "et"),
        ("reuseport", "lt"),
        ("shared", "et"),
        ("shared", "lt"),
    ] {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Command::new(bin.join("echo"))
            .args(["--port", &port.to_string(), "--threads", "2"])
            .args(["--listen", listen, "--epoll", epoll, "--timeout", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It says so once every listener listens.
        let _stderr = until_listening(&mut server, &format!("echo ({listen}, {epoll})"));
        drive_echo_server(port, &format!("echo ({listen}, {epoll})"));
        assert!(server.try_wait().unwrap().is_none(), "echo exited early");
        server.kill().unwrap();
        server.wait().unwrap();
    }
}

/// What every echo floor's test asks of the server at `port` (`what` names it): eight
/// clients at once (both threads busy), 1 to 3 MiB each, every byte back once and in
/// order; then forty that write and close without reading, whose failed writes (EPIPE
/// once the peer is gone) close those connections and must not end the process
/// (SIGPIPE) or keep their buffers; then one more client, served as before.
fn drive_echo_server(port: u16, what: &str) {
    let clients: Vec<_> = (0..8u64)
        .map(|i| {
            let data = pattern((1 + i as usize % 3) << 20, i + 1);
            std::thread::spawn(move || echo_client(port, data))
        })
        .collect();
    for c in clients {
        c.join()
            .unwrap_or_else(|_| panic!("a client failed ({what})"));
    }
    for i in 0..40usize {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(&pattern(70_000 + i * 7_000, 7));
        drop(s);
    }
    echo_client(port, pattern(1000, 99));
}

/// The io_uring echo floor (`benches/floor/uring_echo.c`): the same clients as the epoll
/// floor's test, with the default pool and with one so small (16 x 1 KiB, sends flushed
/// every 4 completions) that receives run out of buffers and wait for sends to give
/// them back. Skipped when liburing is missing, unless `SWITCHBOARD_REQUIRE_LIBURING`
/// is set (CI installs it).
#[test]
fn the_uring_echo_floor_echoes_every_byte_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let bin = build_floor(dir.path());
    if !bin.join("uring_echo").exists() {
        assert!(
            std::env::var_os("SWITCHBOARD_REQUIRE_LIBURING").is_none(),
            "uring_echo not built (liburing-dev missing) and SWITCHBOARD_REQUIRE_LIBURING is set"
        );
        eprintln!("skipped: liburing-dev is not installed");
        return;
    }
    for pool in [
        &["--buffers", "512", "--buffer-size", "8192"][..],
        &["--buffers", "16", "--buffer-size", "1024", "--flush", "4"][..],
    ] {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Command::new(bin.join("uring_echo"))
            .args([
                "--port",
                &port.to_string(),
                "--threads",
                "2",
                "--timeout",
                "60",
            ])
            .args(pool)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _stderr = until_listening(&mut server, &format!("uring_echo {pool:?}"));
        drive_echo_server(port, &format!("uring_echo {pool:?}"));
        assert!(
            server.try_wait().unwrap().is_none(),
            "uring_echo exited early"
        );
        server.kill().unwrap();
        server.wait().unwrap();
    }
}

#[test]
fn compare_refuses_unknown_scenarios_before_starting_anything() {
    let out = Command::new("bash")
        .arg(root().join("benches/compare.sh"))
        .arg("--no-build")
        .env("PEERS", "a=/bin/x {port}")
        .env("SCENARIOS", "flood storm")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(out, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("SCENARIOS takes"), "{stderr}");
}

#[test]
fn compare_refuses_malformed_peers_before_starting_anything() {
    for (peers, says) in [
        ("gnet", "NAME=COMMAND"),
        ("g net=/bin/x {port}", "NAME=COMMAND"),
        ("a=/bin/x {port};a=/bin/y {port}", "given twice"),
        ("a=/bin/x", "must contain {port}"),
        ("ours=/bin/x {port}", "is taken"),
        (" ; ", "names no peer"),
    ] {
        let out = Command::new("bash")
            .arg(root().join("benches/compare.sh"))
            .arg("--no-build")
            .env("PEERS", peers)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_output(out, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "PEERS={peers:?}: {stderr}");
        assert!(stderr.contains(says), "PEERS={peers:?}: {stderr}");
    }
}
