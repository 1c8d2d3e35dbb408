//! Connection limits over loopback: per-IP, global, and accept rate. A refused
//! connection is closed as soon as it is accepted (the client reads EOF), counted in
//! `connections_rejected` by reason, and its slot is free again once a counted
//! connection closes.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::util::{Client, TestServer};
use switchboard::metrics::{Metrics, Reject};

/// A protocol client connected from `source` (any port).
fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket
        .bind(&SocketAddr::new(IpAddr::V4(source), 0).into())
        .unwrap();
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    socket.into()
}

/// Whether the server closed the connection at once (EOF or reset within `wait`)
/// rather than keeping it open and silent.
fn closed_at_once(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

fn rejected(m: &Metrics, why: Reject) -> u64 {
    m.reactor_sum(|r| r.rejected[why as usize].get())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn per_ip_limit_refuses_the_extra_connection_only_from_that_ip() {
    let server = TestServer::start(|c| c.limits.max_connections_per_ip = 3);
    let addr = server.addr();
    let mut held: Vec<Client> = (0..3).map(|_| Client::established(addr)).collect();
    let mut extra = TcpStream::connect(addr).unwrap();
    assert!(closed_at_once(&mut extra, Duration::from_secs(3)));
    assert_eq!(rejected(server.metrics(), Reject::PerIp), 1);
    // Another address is not affected.
    let mut from2 = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr);
    assert!(!closed_at_once(&mut from2, Duration::from_millis(300)));
    // Closing one frees a slot for that address.
    held.pop();
    wait_for("the close to be counted", || {
        server.metrics().open_connections() == 3
    });
    drop(from2);
    let mut again = Client::established(addr);
    again.ping(1, b"ok");
    held[0].ping(2, b"still open");
    assert_eq!(rejected(server.metrics(), Reject::PerIp), 1);
}

#[test]
fn global_limit_counts_connections_from_every_address() {
    let server = TestServer::start(|c| c.limits.max_connections = 4);
    let addr = server.addr();
    let mut held: Vec<TcpStream> = (2..6)
        .map(|i| connect_from(Ipv4Addr::new(127, 0, 0, i), addr))
        .collect();
    wait_for("4 open connections", || {
        server.metrics().open_connections() == 4
    });
    let mut extra = connect_from(Ipv4Addr::new(127, 0, 0, 9), addr);
    assert!(closed_at_once(&mut extra, Duration::from_secs(3)));
    assert_eq!(rejected(server.metrics(), Reject::MaxConnections), 1);
    for s in &mut held {
        assert!(!closed_at_once(s, Duration::from_millis(50)));
    }
    held.truncate(3);
    wait_for("the close to be counted", || {
        server.metrics().open_connections() == 3
    });
    let mut c = Client::established(addr);
    c.ping(1, b"room again");
}

#[test]
fn accept_rate_refuses_a_burst_past_the_bucket() {
    // Two reactors: each gets a bucket of 2 and refills one per second.
    let server = TestServer::start(|c| {
        c.limits.accept_rate = 2;
        c.limits.accept_burst = 4;
    });
    let addr = server.addr();
    let mut conns: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let refused = conns
        .iter_mut()
        .map(|s| closed_at_once(s, Duration::from_millis(200)))
        .filter(|closed| *closed)
        .count();
    let counted = rejected(server.metrics(), Reject::AcceptRate);
    assert_eq!(refused as u64, counted);
    // At most the two buckets (4) plus what refilled meanwhile were let in.
    assert!(refused >= 8, "refused {refused} of 16");
    assert!(refused < 16, "nothing got in");
}
