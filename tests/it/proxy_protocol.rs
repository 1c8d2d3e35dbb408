//! PROXY protocol on the client and echo listeners (`proxy_protocol = true`), over
//! loopback with headers written by the test (`switchboard::proxy::encode_v1/v2`):
//! headers split across writes, the client they name used for per-IP limits,
//! malformed headers and untrusted sources closed (counted) without touching the
//! neighbours. `proxy_haproxy.rs` puts a real haproxy in front.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use switchboard::Config;
use switchboard::metrics::{Metrics, PROXY_HEADER_ERRORS, Reject};
use switchboard::proxy::{ProxyHeader, encode_v1, encode_v2};

use crate::util::{self, Client, REPLY_TIMEOUT, TestServer};

/// Proxy protocol on, from loopback only.
fn behind_proxy(c: &mut Config) {
    c.listeners.client.proxy_protocol = true;
    c.listeners.client.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
}

fn client_at(ip: [u8; 4], port: u16) -> ProxyHeader {
    ProxyHeader::Proxied {
        source: SocketAddr::from((ip, port)),
        destination: SocketAddr::from(([192, 0, 2, 1], 7700)),
    }
}

fn header_errors(m: &Metrics, reason: &str) -> u64 {
    let i = PROXY_HEADER_ERRORS
        .iter()
        .position(|r| *r == reason)
        .unwrap();
    m.reactor_sum(|r| r.proxy_header_errors[i].get())
}

fn rejected(m: &Metrics, why: Reject) -> u64 {
    m.reactor_sum(|r| r.rejected[why as usize].get())
}

/// Writes `bytes` in pieces of `piece` bytes, each its own segment (nodelay, with a
/// pause so the reactor reads them apart).
fn write_in_pieces(c: &mut Client, bytes: &[u8], piece: usize) {
    for chunk in bytes.chunks(piece) {
        c.write_raw(chunk);
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn v1_and_v2_headers_split_across_writes_then_the_protocol() {
    let server = TestServer::start(behind_proxy);
    let addr = server.addr();
    let headers = [
        encode_v1(&client_at([203, 0, 113, 1], 5000)),
        encode_v2(&client_at([203, 0, 113, 2], 5001), &[(0x04, b"abc")]),
        encode_v2(&ProxyHeader::Local, &[]),
    ];
    for (i, header) in headers.iter().enumerate() {
        for piece in [1, 5, header.len()] {
            let mut c = Client::connect(addr);
            write_in_pieces(&mut c, header, piece);
            c.hello();
            c.ping(7, b"after the header");
        }
        // The header and the Hello in one write: the bytes after it are kept.
        let mut c = Client::connect(addr);
        let hello = util::encode(util::kind::HELLO, 1, b"");
        c.write_raw(&[header.as_slice(), &hello].concat());
        let f = c.read_frame(REPLY_TIMEOUT);
        assert_eq!(f.ksr(), (util::kind::WELCOME, 0, 1), "header {i}: {f:?}");
    }
    assert_eq!(
        server.metrics().reactor_sum(|r| r.proxy_headers.get()),
        3 * 4
    );
}

#[test]
fn malformed_headers_close_their_connection_only() {
    let server = TestServer::start(behind_proxy);
    let addr = server.addr();
    let mut neighbour = Client::connect(addr);
    neighbour.write_raw(&encode_v2(&client_at([198, 51, 100, 9], 1), &[]));
    neighbour.hello();
    let bad: [(&[u8], &str); 5] = [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "signature"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n", "v1_syntax"),
        (
            &[
                b'P', b'R', b'O', b'X', b'Y', b' ', b'U', b'N', b'K', b'N', b'O', b'W', b'N', b' ',
            ]
            .repeat(10),
            "v1_too_long",
        ),
        (b"\r\n\r\n\0\r\nQUIT\n\x22\x11\x00\x0c", "v2_command"),
        (b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff", "v2_too_large"),
    ];
    for (bytes, reason) in bad {
        let before = header_errors(server.metrics(), reason);
        let mut c = Client::connect(addr);
        // Split in two: the error is found whichever piece shows it.
        write_in_pieces(&mut c, bytes, bytes.len().div_ceil(2));
        c.expect_eof(REPLY_TIMEOUT);
        assert!(
            util::wait_until(REPLY_TIMEOUT, || header_errors(server.metrics(), reason)
                == before + 1),
            "{reason} not counted"
        );
        neighbour.ping(1, reason.as_bytes());
    }
}

#[test]
fn a_missing_header_times_out_as_a_header_error() {
    let server = TestServer::start(|c| {
        behind_proxy(c);
        c.heartbeat.handshake_timeout = Duration::from_millis(300);
    });
    let mut c = Client::connect(server.addr());
    c.write_raw(b"PROXY TCP4 ");
    c.expect_eof(REPLY_TIMEOUT);
    assert!(util::wait_until(REPLY_TIMEOUT, || header_errors(
        server.metrics(),
        "timeout"
    ) == 1));
}

#[test]
fn a_source_outside_trusted_proxies_is_closed_at_accept() {
    let server = TestServer::start(|c| {
        behind_proxy(c);
        c.listeners.client.trusted_proxies = vec!["127.0.0.9/32".parse().unwrap()];
    });
    let mut c = Client::connect_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), server.addr());
    c.expect_eof(REPLY_TIMEOUT);
    assert_eq!(rejected(server.metrics(), Reject::UntrustedProxy), 1);
    let mut ok = Client::connect_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)), server.addr());
    ok.write_raw(&encode_v1(&client_at([10, 0, 0, 1], 1)));
    ok.hello();
}

#[test]
fn per_ip_limits_count_the_client_the_header_names() {
    let server = TestServer::start(|c| {
        behind_proxy(c);
        c.limits.max_connections_per_ip = 1;
    });
    let addr = server.addr();
    // One proxy address, two clients: both admitted (the proxy's own address counts
    // for nobody).
    let mut a = Client::connect(addr);
    a.write_raw(&encode_v2(&client_at([10, 0, 0, 1], 1000), &[]));
    a.hello();
    let mut b = Client::connect(addr);
    b.write_raw(&encode_v1(&client_at([10, 0, 0, 2], 1000)));
    b.hello();
    // The same client again (another port, another header version): refused.
    let mut again = Client::connect(addr);
    again.write_raw(&encode_v1(&client_at([10, 0, 0, 1], 2000)));
    again.expect_eof(REPLY_TIMEOUT);
    assert_eq!(rejected(server.metrics(), Reject::PerIp), 1);
    a.ping(1, b"still here");
    b.ping(1, b"still here");
    // v2 LOCAL (a health check) is the proxy itself: one at a time, like a client.
    let mut local = Client::connect(addr);
    local.write_raw(&encode_v2(&ProxyHeader::Local, &[]));
    local.hello();
    let mut local_again = Client::connect(addr);
    local_again.write_raw(&encode_v2(&ProxyHeader::Local, &[]));
    local_again.expect_eof(REPLY_TIMEOUT);
    assert_eq!(rejected(server.metrics(), Reject::PerIp), 2);
    // Once the first leaves, the client may come back.
    drop(a);
    assert!(util::wait_until(REPLY_TIMEOUT, || {
        let mut c = Client::connect(addr);
        c.write_raw(&encode_v1(&client_at([10, 0, 0, 1], 3000)));
        c.send(util::kind::HELLO, 1, b"");
        matches!(c.try_read_frame(Duration::from_secs(1)), util::Read1::Frame(f) if f.header.kind == util::kind::WELCOME)
    }));
}

#[test]
fn the_echo_listener_takes_a_header_too() {
    let server = TestServer::start(|c| {
        util::with_echo(c);
        if let Some(e) = c.listeners.echo.as_mut() {
            e.proxy_protocol = true;
            e.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        }
    });
    let mut c = Client::connect(server.echo_addr());
    let header = encode_v2(&client_at([10, 9, 8, 7], 1), &[]);
    write_in_pieces(&mut c, &[header.as_slice(), b"echo me"].concat(), 3);
    let mut got = [0u8; 7];
    c.stream().set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    std::io::Read::read_exact(&mut c.stream(), &mut got).unwrap();
    assert_eq!(&got, b"echo me");
    // The client listener is untouched: no header there.
    Client::established(server.addr());
}
