//! Graceful shutdown drains: output already queued for a client that was not reading is
//! all delivered, then `Bye` (status 501), then EOF, and the report is clean; every
//! other client (established or still in its handshake) gets `Bye` and EOF too; the
//! listener is closed afterwards. The real binary does the same on SIGTERM/SIGINT and
//! exits with status 0.

use crate::util;

use std::net::TcpStream;
use std::time::Duration;

use crate::util::{Client, Daemon, REPLY_TIMEOUT, TestServer, encode, kind};

fn expect_bye_then_eof(c: &mut Client, who: &str) {
    let f = c.read_frame(REPLY_TIMEOUT);
    assert_eq!(
        f.ksr(),
        (kind::BYE, 501, 0),
        "{who}: expected Bye 501, got {f:?}"
    );
    c.expect_eof(REPLY_TIMEOUT);
}

#[test]
fn shutdown_delivers_queued_pongs_then_bye_then_eof() {
    const N: u32 = 2000;
    // 8 MiB of replies: more than the loopback kernel buffers take (the server's send
    // buffer grows to a few MiB), so most of it waits in the server's output queue.
    const PAYLOAD: usize = 4096;
    let mut server = TestServer::start(|c| {
        c.limits.max_pending_bytes = 64 << 20;
        c.shutdown.drain_timeout = Duration::from_secs(8);
    });
    let addr = server.addr();
    let mut busy = Client::connect_small_rcvbuf(addr, 16 * 1024);
    busy.hello();
    let mut idle = Client::established(addr);
    let mut handshaking = Client::connect(addr);

    let mut rng = util::Rng::new(2000);
    let payloads: Vec<Vec<u8>> = (0..N).map(|_| rng.bytes(PAYLOAD)).collect();
    let mut stream = Vec::with_capacity(N as usize * (16 + PAYLOAD));
    for (rid, p) in payloads.iter().enumerate() {
        stream.extend_from_slice(&encode(kind::PING, rid as u32, p));
    }
    busy.write_raw(&stream);
    std::thread::sleep(Duration::from_millis(300));

    // The replies really are piled up at the server, not all in kernel buffers.
    let pong_bytes = u64::from(N) * (16 + PAYLOAD as u64);
    let written = server.metrics().reactor_sum(|r| r.bytes_out.get());
    assert!(
        written + (1 << 20) < pong_bytes,
        "{written} of {pong_bytes} pong bytes already left the server; too little to drain"
    );
    eprintln!("queued at shutdown: {} bytes", pong_bytes - written);

    let s = server.take();
    let stopper = std::thread::spawn(move || s.shutdown());

    for (rid, p) in payloads.iter().enumerate() {
        let f = busy.read_frame(REPLY_TIMEOUT);
        assert_eq!(f.ksr(), (kind::PONG, 0, rid as u32), "pong #{rid}: {f:?}");
        assert_eq!(&f.payload, p, "pong #{rid} payload");
    }
    expect_bye_then_eof(&mut busy, "busy client");
    expect_bye_then_eof(&mut idle, "idle client");
    expect_bye_then_eof(&mut handshaking, "handshaking client");

    let report = stopper.join().unwrap();
    // `clean`: every phase ended before the drain timeout, by the server's own clock.
    assert!(report.clean, "shutdown not clean: {report:?}");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "listener still accepting after shutdown"
    );
}

#[test]
fn shutdown_with_nothing_connected_is_quick_and_clean() {
    let server = TestServer::start(|_| {});
    let report = server.shutdown();
    // Clean: done before the drain timeout, by the server's own clock.
    assert!(report.clean, "{report:?}");
}

#[test]
fn sigterm_says_bye_to_a_connected_client_and_exits_0() {
    let mut daemon = Daemon::spawn(util::daemon_toml);
    let mut c = Client::established(daemon.client_addr());
    c.ping(1, b"hi");
    daemon.signal(libc::SIGTERM);
    expect_bye_then_eof(&mut c, "client");
    let status = daemon
        .wait(Duration::from_secs(5))
        .expect("daemon did not exit within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    std::thread::sleep(Duration::from_millis(50));
    let log = daemon.log_lines();
    assert!(
        log.iter()
            .any(|l| l.contains("stopped") && l.contains("clean=true")),
        "no clean stop logged: {log:#?}"
    );
}

#[test]
fn sigint_with_no_clients_exits_0() {
    let mut daemon = Daemon::spawn(util::daemon_toml);
    daemon.signal(libc::SIGINT);
    let status = daemon
        .wait(Duration::from_secs(5))
        .expect("daemon did not exit within 5 s of SIGINT");
    assert!(status.success(), "exit status {status:?}");
}

/// A client that pipelines faster than it reads when shutdown comes must still get the
/// replies to what was read, then `Bye`, then EOF — not a reset.
#[test]
fn shutdown_while_reading_is_paused_for_backpressure_still_ends_with_bye() {
    const PAYLOAD: usize = 1024;
    // Reading from the client pauses above 2 MiB of queued output (half the bound).
    // The writer pipelines Pings until the server has paused, then writes 2 MiB more
    // that stay unread in the server's kernel buffer (replies lag reads, so the pause
    // may come only after everything sent so far was read).
    let mut server = TestServer::start(|c| {
        c.limits.max_pending_bytes = 4 << 20;
        c.shutdown.drain_timeout = Duration::from_secs(8);
    });
    let mut c = Client::established(server.addr());
    let mut wsock = c.stream().try_clone().unwrap();
    wsock
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let metrics = server.metrics().clone();
    let paused = move || metrics.reactor_sum(|r| r.read_pauses.get()) >= 1;
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let payload = util::Rng::new(3).bytes(PAYLOAD);
        let mut extra = 512;
        let mut rid = 0u32;
        while extra > 0 && rid < 100_000 {
            if wsock.write_all(&encode(kind::PING, rid, &payload)).is_err() {
                break;
            }
            rid += 1;
            if paused() {
                extra -= 1;
            } else if rid.is_multiple_of(64) {
                // Let replies keep up with reads, so the queue passes the pause point
                // without overshooting the bound (that would be a slow consumer).
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        rid
    });
    let sent = writer.join().unwrap();
    assert!(
        server.metrics().reactor_sum(|r| r.read_pauses.get()) >= 1,
        "reading never paused; the test proves nothing"
    );
    let s = server.take();
    let stopper = std::thread::spawn(move || s.shutdown());
    // Read only once input has stopped, so reading cannot resume before that.
    std::thread::sleep(Duration::from_millis(200));

    // Pongs for a prefix of the pings, in order, then Bye, then EOF.
    let mut next = 0;
    loop {
        let f = match c.try_read_frame(REPLY_TIMEOUT) {
            util::Read1::Frame(f) => f,
            other => panic!("after {next} pongs: expected a frame, got {other:?}"),
        };
        if f.header.kind == kind::BYE {
            assert_eq!(f.ksr(), (kind::BYE, 501, 0));
            break;
        }
        assert_eq!(f.ksr(), (kind::PONG, 0, next), "{f:?}");
        next += 1;
    }
    c.expect_eof(REPLY_TIMEOUT);
    assert!(
        next < sent,
        "all {sent} pings were answered; reading never stayed paused"
    );
    let report = stopper.join().unwrap();
    assert!(report.clean, "{report:?}");
}
