//! An echo flood from clients that behave like tcpkali: they
//! write without waiting for the echo, read little or nothing, and vanish. The
//! daemon's queued output stays within `limits.max_pending_total` (connections stop
//! reading under pressure; past the budget the largest are cut); a paused connection
//! whose peer stopped reading, or left with its data still unsent, is detected and
//! released; closing connections stop counting against the per-IP limit after their
//! linger; and a shutdown right after such a flood finishes without running into its
//! drain timeout.

use crate::util;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use crate::util::{TestServer, wait_until};
use switchboard::config::Config;
use switchboard::metrics::{Cut, Metrics};

/// A flooding client's socket: a small receive buffer (set before connecting, so
/// the window stays small) so the echo backs up at the daemon, and non-blocking
/// writes.
fn flooder(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_nonblocking(true).unwrap();
    s
}

/// Writes to every socket without reading until the daemon has paused reading at
/// least `pauses` times (counted, so a machine too slow to read in a quiet window is
/// waited for) and then none takes more for `quiet` passes in a row (the daemon
/// stopped reading them all), calling `each_pass` between passes; returns the bytes
/// written.
fn flood(
    socks: &mut [TcpStream],
    m: &Metrics,
    pauses: u64,
    quiet: usize,
    mut each_pass: impl FnMut(),
) -> u64 {
    let chunk = vec![b'x'; 16 * 1024];
    let mut written = 0u64;
    let mut idle = 0;
    for _ in 0..200_000 {
        let mut moved = false;
        for s in socks.iter_mut() {
            match s.write(&chunk) {
                Ok(n) => {
                    written += n as u64;
                    moved |= n > 0;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {}
            }
        }
        each_pass();
        if moved {
            idle = 0;
        } else {
            idle += 1;
            if idle >= quiet && m.reactor_sum(|r| r.read_pauses.get()) >= pauses {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    written
}

/// `n` flooders of `addr`.
fn flooders(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n).map(|_| flooder(addr)).collect()
}

/// A server with the echo listener, 16 KiB reads up to 64 KiB a turn, and at most
/// `max_pending_bytes` queued per connection; `tune` sets the rest.
fn echo_server(max_pending_bytes: u32, tune: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::start(|c| {
        util::with_echo(c);
        c.reactor.read_buffer_bytes = 16 * 1024;
        c.reactor.read_budget_bytes = 64 * 1024;
        c.limits.max_pending_bytes = max_pending_bytes;
        tune(c);
    })
}

fn pending(m: &Metrics) -> u64 {
    m.pending_total.get()
}

fn cuts(m: &Metrics, why: Cut) -> u64 {
    m.reactor_sum(|r| r.cuts_for(why))
}

/// One byte through the echo listener on a fresh connection: admitted and served.
fn echo_once(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut b = [0u8; 1];
    s.write_all(b"!").is_ok() && matches!(s.read(&mut b), Ok(1))
}

#[test]
fn a_flood_stays_within_the_daemons_output_budget() {
    const BUDGET: u64 = 2 << 20;
    let server = echo_server(256 * 1024, |c| {
        c.limits.max_pending_total = BUDGET;
        c.limits.stall_timeout = Duration::from_secs(60);
    });
    let m = server.metrics().clone();
    let mut socks = flooders(server.echo_addr(), 300);
    let mut peak = 0;
    let written = flood(&mut socks, &m, 1, 300, || peak = peak.max(pending(&m)));
    assert!(
        written > 2 * BUDGET,
        "only {written} bytes sent: proves nothing"
    );
    // Under pressure, reading paused for everyone with output queued (and whatever
    // still did not fit was cut, the largest first: see the reactor's unit test and
    // `slow_readers.rs` for output that pausing cannot stop).
    assert!(m.reactor_sum(|r| r.read_pauses.get()) >= 1);
    println!("peak queued {peak} bytes, budget {BUDGET}, {written} bytes sent");
    // Each reactor may pass its share by what it has not yet published (64 KiB) and
    // one read's echo before it notices.
    let slack = 2 * (64 + 16) * 1024;
    assert!(
        peak <= BUDGET + slack,
        "{peak} bytes queued against a budget of {BUDGET}"
    );
    drop(socks);
    assert!(wait_until(Duration::from_secs(10), || m.open_connections() == 0));
}

#[test]
fn a_paused_connection_whose_peer_stops_reading_or_leaves_is_released() {
    let server = echo_server(64 * 1024, |c| {
        c.limits.stall_timeout = Duration::from_millis(300);
    });
    let m = server.metrics().clone();
    // One peer will leave with its data unsent (FIN queued behind it, as tcpkali's
    // sockets after it exits); the other stays connected and never reads.
    let mut socks = vec![flooder(server.echo_addr()), flooder(server.echo_addr())];
    flood(&mut socks, &m, 2, 200, || {});
    assert!(
        m.reactor_sum(|r| r.read_pauses.get()) >= 2,
        "both paused: neither can be read nor written now"
    );
    // On a busy machine the stall cut may already have come (the socket is then
    // reset, and shutting it down fails): the outcome checked below is the same.
    let _ = socks[0].shutdown(Shutdown::Write);
    assert!(
        wait_until(Duration::from_secs(20), || m.open_connections() == 0),
        "{} still open",
        m.open_connections()
    );
    assert_eq!(
        cuts(&m, Cut::Stalled),
        2,
        "both cut for their stalled output"
    );
    drop(socks);
}

#[test]
fn closing_connections_stop_counting_against_the_per_ip_limit_after_their_linger() {
    let server = echo_server(64 * 1024, |c| {
        c.limits.max_connections_per_ip = 4;
        c.limits.stall_timeout = Duration::from_millis(200);
        c.limits.close_linger = Duration::from_millis(300);
    });
    let m = server.metrics().clone();
    // Four flooders take the address's four slots, never read and never close.
    let mut socks = flooders(server.echo_addr(), 4);
    flood(&mut socks, &m, 0, 200, || {});
    // They are cut (stalled) and, once their linger is over, released although the
    // peers still hold their sockets: the address may connect again.
    assert!(
        wait_until(Duration::from_secs(20), || echo_once(server.echo_addr())),
        "the address stayed refused"
    );
    // One released slot is enough for that; the other three are cut too (none of them
    // reads), just not necessarily yet.
    assert!(
        wait_until(Duration::from_secs(20), || cuts(&m, Cut::Stalled) >= 4),
        "{} cut",
        cuts(&m, Cut::Stalled)
    );
    assert!(m.open_connections() <= 4);
    drop(socks);
}

#[test]
fn shutdown_right_after_a_flood_does_not_run_into_its_drain_timeout() {
    let server = echo_server(64 * 1024, |c| {
        // Nothing is cut before the shutdown: it finds them all stuck.
        c.limits.stall_timeout = Duration::from_secs(600);
        c.shutdown.drain_timeout = Duration::from_secs(10);
    });
    let m = server.metrics().clone();
    let mut socks = flooders(server.echo_addr(), 16);
    flood(&mut socks, &m, 0, 200, || {});
    // Half leave with data unsent (FIN behind it); half hang on without reading.
    for s in socks.iter().step_by(2) {
        s.shutdown(Shutdown::Write).unwrap();
    }
    assert_eq!(m.open_connections(), 16);
    let report = server.shutdown();
    assert!(report.clean, "drain ran into its timeout: {report:?}");
    drop(socks);
}
