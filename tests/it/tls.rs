//! TLS on the client port with certificates made in the test (`rcgen`) and a real
//! rustls client over loopback: the binary protocol, HTTP and WebSocket over TLS on
//! the port that still speaks plaintext; SNI between two certificates; a wrong ALPN
//! refused with `no_application_protocol`; expired and untrusted certificates
//! refused by the client; garbage after the handshake closes that connection only;
//! a reload under many live TLS connections drops none and new handshakes get the
//! new certificate; the post-handshake record layer in every version and AEAD,
//! with client key updates, and against OpenSSL's `s_client` in TLS 1.2 and 1.3 with
//! every AEAD; `check-config`'s rules. Both backends
//! (`SWITCHBOARD_TEST_BACKEND=uring cargo test --test it tls`).

use std::io::{Read, Write};
use std::time::Duration;

use switchboard::config::TlsConfig;
use switchboard::handoff::CloseReason;

use crate::util::tls::{Ca, TlsClient, single};
use crate::util::{Client, REPLY_TIMEOUT, TestServer, wait_until};

const ALPN: &[&[u8]] = &[b"switchboard/1"];

/// A server whose client port has one certificate for `localhost` and 127.0.0.1.
fn tls_server(dir: &std::path::Path, ca: &Ca) -> TestServer {
    let pair = ca
        .leaf(&["localhost", "127.0.0.1"], false)
        .write(dir, "server");
    TestServer::start(|c| c.listeners.client.tls = Some(single(pair)))
}

fn failures(server: &TestServer, reason: &str) -> u64 {
    let i = switchboard::tls::FAILURE_REASONS
        .iter()
        .position(|r| *r == reason)
        .unwrap();
    server.metrics().reactor_sum(|r| r.tls.failures[i].get())
}

#[test]
fn binary_protocol_over_tls_beside_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let server = tls_server(dir.path(), &ca);
    let mut c = TlsClient::connect(server.addr(), ca.client(ALPN), "localhost").unwrap();
    assert_eq!(c.tls.conn.alpn_protocol(), Some(&b"switchboard/1"[..]));
    assert_eq!(
        c.tls.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    c.hello();
    for i in 0..20 {
        c.ping(100 + i);
    }
    // No ALPN at all is accepted too.
    let mut bare = TlsClient::connect(server.addr(), ca.client(&[]), "localhost").unwrap();
    bare.hello();
    bare.ping(7);
    // The same port still speaks plaintext.
    let mut plain = Client::established(server.addr());
    plain.ping(1, b"plain");
    let handshakes = server
        .metrics()
        .reactor_sum(|r| r.tls.handshakes.iter().map(|c| c.get()).sum());
    assert_eq!(handshakes, 2);
    // A Bye closes the connection: close_notify, then FIN.
    c.send(crate::util::kind::BYE, 9, b"");
    let rest = c.read_to_close().expect("close_notify before FIN");
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn http_over_tls_ends_with_close_notify() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let server = tls_server(dir.path(), &ca);
    let mut c = TlsClient::connect(server.addr(), ca.client(&[b"http/1.1"]), "localhost").unwrap();
    assert_eq!(c.tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    c.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let answer = c.read_to_close().expect("close_notify before FIN");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"ok\""), "{text}");
}

#[test]
fn websocket_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let server = tls_server(dir.path(), &ca);
    let mut c = TlsClient::connect(server.addr(), ca.client(&[b"http/1.1"]), "localhost").unwrap();
    let addr = server.addr();
    let req = crate::util::ws::upgrade_request(addr, Some("switchboard.v1.bin"), None, &[]);
    c.write(req.as_bytes());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.tls.read(&mut chunk).unwrap();
        assert!(n > 0, "EOF before the upgrade answer");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    buf.drain(..end);
    let hello = crate::util::encode(crate::util::kind::HELLO, 1, b"");
    let frame = crate::util::ws::masked(true, crate::util::ws::op::BINARY, &hello, [1, 2, 3, 4]);
    c.write(&frame);
    // One server frame (unmasked): a binary message carrying the Welcome frame.
    let payload = loop {
        if buf.len() >= 4 {
            let (len, at) = match buf[1] & 0x7f {
                126 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                127 => panic!("unexpected large frame"),
                n => (usize::from(n), 2),
            };
            if buf.len() >= at + len {
                assert_eq!(buf[0] & 0x0f, crate::util::ws::op::BINARY);
                break buf[at..at + len].to_vec();
            }
        }
        let n = c.tls.read(&mut chunk).unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    };
    let d = switchboard::frame::decode(&payload, 1 << 20)
        .unwrap()
        .unwrap();
    assert_eq!(d.header.kind, crate::util::kind::WELCOME);
}

#[test]
fn sni_chooses_between_two_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let a = ca.leaf(&["a.test", "127.0.0.1"], false);
    let b = ca.leaf(&["b.test", "*.b.test"], false);
    let tls = TlsConfig {
        cert: None,
        key: None,
        certificates: vec![a.write(dir.path(), "a"), b.write(dir.path(), "b")],
    };
    let server = TestServer::start(|c| c.listeners.client.tls = Some(tls));
    let addr = server.addr();
    let cert = |name: &str| {
        let mut c = TlsClient::connect(addr, ca.client(ALPN), name).unwrap();
        c.hello();
        c.peer_cert()
    };
    assert_eq!(cert("a.test"), a.der);
    assert_eq!(cert("b.test"), b.der);
    assert_eq!(cert("chat.b.test"), b.der);
    // No SNI (an IP address): the first certificate.
    assert_eq!(cert("127.0.0.1"), a.der);
    // Expiry gauges, one per certificate.
    let expiry = server.metrics().certificates.expiry.lock().unwrap().clone();
    assert_eq!(expiry.len(), 2);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        expiry.iter().all(|(_, t)| *t > now + 300 * 86_400),
        "{expiry:?}"
    );
}

#[test]
fn a_wrong_alpn_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let server = tls_server(dir.path(), &ca);
    let err = TlsClient::connect(server.addr(), ca.client(&[b"h2"]), "localhost")
        .err()
        .expect("refused");
    assert_eq!(
        err,
        rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
    );
    assert!(wait_until(REPLY_TIMEOUT, || failures(
        &server,
        "no_application_protocol"
    ) == 1));
    assert!(wait_until(REPLY_TIMEOUT, || server
        .metrics()
        .closed_for(CloseReason::TlsError)
        == 1));
}

#[test]
fn expired_and_untrusted_certificates_are_refused_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let expired = ca.leaf(&["localhost"], true).write(dir.path(), "old");
    let server = TestServer::start(|c| c.listeners.client.tls = Some(single(expired)));
    let err = TlsClient::connect(server.addr(), ca.client(ALPN), "localhost")
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext { .. })
                | rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)
        ),
        "{err:?}"
    );
    let server = tls_server(dir.path(), &ca);
    let stranger = Ca::new("another CA");
    let err = TlsClient::connect(server.addr(), stranger.client(ALPN), "localhost")
        .err()
        .expect("refused");
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
    );
}

#[test]
fn garbage_after_the_handshake_closes_that_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let server = tls_server(dir.path(), &ca);
    let mut neighbour = TlsClient::connect(server.addr(), ca.client(ALPN), "localhost").unwrap();
    neighbour.hello();
    let mut bad = TlsClient::connect(server.addr(), ca.client(ALPN), "localhost").unwrap();
    bad.hello();
    // A record that claims to be application data and does not decrypt.
    let mut garbage = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    garbage.extend_from_slice(&[0x5a; 0x40]);
    bad.tls.sock.write_all(&garbage).unwrap();
    // The server closes it (an alert may come first).
    let mut rest = Vec::new();
    let _ = bad.tls.sock.read_to_end(&mut rest);
    assert!(wait_until(REPLY_TIMEOUT, || failures(
        &server,
        "bad_record"
    ) == 1));
    assert!(wait_until(REPLY_TIMEOUT, || server
        .metrics()
        .closed_for(CloseReason::TlsError)
        == 1));
    for i in 0..5 {
        neighbour.ping(i);
    }
}

/// After the handshake the daemon's own record layer carries the connection
/// (rustls' is dropped): frames both ways in every version and AEAD, TLS 1.3 key
/// updates from the client (followed, and answered as rustls asks), many frames
/// in one write.
#[test]
fn the_record_layer_after_the_handshake_in_every_version_and_cipher() {
    use rustls::crypto::ring::cipher_suite as cs;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let server = tls_server(dir.path(), &ca);
    let cases = [
        (&rustls::version::TLS13, cs::TLS13_AES_128_GCM_SHA256),
        (&rustls::version::TLS13, cs::TLS13_AES_256_GCM_SHA384),
        (&rustls::version::TLS13, cs::TLS13_CHACHA20_POLY1305_SHA256),
        (
            &rustls::version::TLS12,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            &rustls::version::TLS12,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ];
    for (version, suite) in cases {
        let config = ca.client_only(version, &[suite]);
        let mut c = TlsClient::connect(server.addr(), config, "localhost").unwrap();
        assert_eq!(c.tls.conn.negotiated_cipher_suite(), Some(suite));
        c.hello();
        for i in 0..20 {
            c.ping(100 + i);
        }
        if version.version == rustls::ProtocolVersion::TLSv1_3 {
            for i in 0..3 {
                c.tls.conn.refresh_traffic_keys().unwrap();
                c.ping(200 + i);
            }
        }
        // Many frames in one write (several records per read on the daemon).
        let mut burst = Vec::new();
        for i in 0..50 {
            burst.extend(crate::util::encode(
                crate::util::kind::PING,
                300 + i,
                b"tls",
            ));
        }
        c.write(&burst);
        for i in 0..50 {
            let f = c.read_frame();
            assert_eq!(f.ksr(), (crate::util::kind::PONG, 0, 300 + i), "{f:?}");
        }
    }
    assert_eq!(failures(&server, "bad_record"), 0);
    assert_eq!(failures(&server, "unexpected_message"), 0);
}

/// Live TLS connections held through the reload (1,000 unless
/// `SWITCHBOARD_TLS_RELOAD_CONNS` says otherwise).
fn reload_conns() -> usize {
    std::env::var("SWITCHBOARD_TLS_RELOAD_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[test]
fn reload_under_live_tls_connections_drops_none() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let first = ca.leaf(&["localhost"], false);
    let pair = first.write(dir.path(), "server");
    let tls = single(pair);
    let server = TestServer::start(|c| {
        c.listeners.client.tls = Some(tls);
        c.heartbeat.idle_timeout = Duration::from_secs(120);
        c.limits.max_connections_per_ip = 100_000;
    });
    let config = ca.client(ALPN);
    let mut live: Vec<TlsClient> = (0..reload_conns())
        .map(|_| {
            let mut c = TlsClient::connect(server.addr(), config.clone(), "localhost").unwrap();
            c.hello();
            c
        })
        .collect();
    // New files at the same paths, then SIGHUP's reload.
    let second = ca.leaf(&["localhost"], false);
    second.write(dir.path(), "server");
    server.reload(server.config()).expect("reload");
    let mut fresh = TlsClient::connect(server.addr(), config.clone(), "localhost").unwrap();
    fresh.hello();
    assert_eq!(
        fresh.peer_cert(),
        second.der,
        "new handshakes use the new certificate"
    );
    for (i, c) in live.iter_mut().enumerate() {
        assert_eq!(c.peer_cert(), first.der);
        c.ping(i as u32);
    }
    assert_eq!(server.metrics().closed_for(CloseReason::TlsError), 0);
    // A broken file: the reload is refused and counted; the certificate in force stays.
    std::fs::write(dir.path().join("server.crt"), "not a certificate").unwrap();
    assert!(server.reload(server.config()).is_err());
    assert_eq!(server.metrics().certificates.reload_failures.get(), 1);
    let mut after = TlsClient::connect(server.addr(), config, "localhost").unwrap();
    after.hello();
    assert_eq!(after.peer_cert(), second.der);
    for (i, c) in live.iter_mut().enumerate().take(10) {
        c.ping(10_000 + i as u32);
    }
}

#[test]
fn check_config_refuses_bad_pairs_and_plaintext_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let a = ca.leaf(&["localhost"], false).write(dir.path(), "a");
    let b = ca.leaf(&["localhost"], false).write(dir.path(), "b");
    let mut config = crate::util::test_config(dir.path());
    config.listeners.client.tls = Some(single(a.clone()));
    switchboard::Server::check(&config).expect("a good pair passes");
    // The key of another certificate.
    config.listeners.client.tls = Some(TlsConfig {
        cert: Some(a.cert.clone()),
        key: Some(b.key.clone()),
        certificates: Vec::new(),
    });
    let e = switchboard::Server::check(&config).unwrap_err().to_string();
    assert!(e.contains("not the certificate's"), "{e}");
    // Unreadable files.
    config.listeners.client.tls = Some(TlsConfig {
        cert: Some(dir.path().join("missing.crt")),
        key: Some(a.key.clone()),
        certificates: Vec::new(),
    });
    let e = switchboard::Server::check(&config).unwrap_err().to_string();
    assert!(e.contains("missing.crt"), "{e}");
    // A key file with no key in it.
    config.listeners.client.tls = Some(TlsConfig {
        cert: Some(a.cert.clone()),
        key: Some(a.cert.clone()),
        certificates: Vec::new(),
    });
    let e = switchboard::Server::check(&config).unwrap_err().to_string();
    assert!(e.contains("no PEM private key"), "{e}");
    // Plaintext off loopback: refused unless deliberate.
    config.listeners.client.tls = None;
    config.listeners.client.addr = "0.0.0.0:0".parse().unwrap();
    let e = switchboard::Server::check(&config).unwrap_err().to_string();
    assert!(e.contains("allow_plaintext"), "{e}");
    config.listeners.client.allow_plaintext = true;
    switchboard::Server::check(&config).expect("deliberate plaintext passes");
    config.listeners.client.allow_plaintext = false;
    config.listeners.client.tls = Some(single(a));
    switchboard::Server::check(&config).expect("TLS off loopback passes");
}

#[test]
fn the_sdk_speaks_tls_with_a_ca_file() {
    use switchboard::client::{Client, ClientConfig, ClientError, ClientTls};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let server = tls_server(dir.path(), &ca);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, pem_of(&ca.der)).unwrap();
    let token = crate::util::token("sdk-1", "visitor");
    let config = ClientConfig {
        tls: Some(ClientTls {
            ca_file: Some(ca_file),
            server_name: Some("localhost".into()),
        }),
        ..ClientConfig::new(server.addr().to_string(), token.clone())
    };
    let mut client = Client::connect(config.clone()).expect("TLS handshake and Hello");
    client.ping(REPLY_TIMEOUT).expect("ping over TLS");
    client.close().expect("clean close");
    // Another CA: the handshake is refused, not retried as plaintext.
    let stranger = dir.path().join("stranger.pem");
    std::fs::write(&stranger, pem_of(&Ca::new("another CA").der)).unwrap();
    let refused = ClientConfig {
        tls: Some(ClientTls {
            ca_file: Some(stranger),
            server_name: Some("localhost".into()),
        }),
        ..config
    };
    match Client::connect(refused) {
        Err(ClientError::Tls(e)) => assert!(e.contains("UnknownIssuer"), "{e}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A TLS stack other than rustls: OpenSSL's `s_client` (the CLI) verifies the
/// certificate against the test CA and fetches a file of several records over TLS 1.2
/// (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305) and TLS 1.3 (AES-256-GCM,
/// ChaCha20-Poly1305), byte for byte: the record layer against other nonce, padding
/// and record-size habits. Skipped without `openssl` unless
/// `SWITCHBOARD_REQUIRE_OPENSSL` is set (`.ci/run` installs it).
#[test]
fn openssl_reads_a_file_over_every_version_and_cipher() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("SWITCHBOARD_REQUIRE_OPENSSL").is_none(),
            "SWITCHBOARD_REQUIRE_OPENSSL is set but openssl is not installed"
        );
        eprintln!("skipping: openssl not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let server = tls_server(dir.path(), &ca);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let want = include_bytes!("../../web/console/console.js");
    let cases: [&[&str]; 5] = [
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"],
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
        &["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"],
        &["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
    ];
    for args in cases {
        // `-quiet` ignores the end of input: the daemon's close ends it.
        let out = crate::util::run_with_input(
            std::process::Command::new("timeout")
                .arg("20")
                .args(["openssl", "s_client", "-quiet", "-verify_return_error"])
                .args(["-connect", &server.addr().to_string()])
                .args(["-servername", "localhost", "-CAfile"])
                .arg(&ca_file)
                .args(args),
            b"GET /console/console.js HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        let text = &out.stdout;
        let at = text
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "{args:?}: no HTTP answer; openssl said {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert!(text.starts_with(b"HTTP/1.1 200"), "{args:?}");
        assert!(
            text[at + 4..] == want[..],
            "{args:?}: {} bytes of body, want {}",
            text.len() - at - 4,
            want.len()
        );
    }
}
