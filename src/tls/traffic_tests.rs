//! The record layer after the handshake (`records`), against real rustls clients
//! in memory: TLS 1.3 and 1.2, AES-GCM and ChaCha20-Poly1305, data both ways,
//! data pipelined behind the client's Finished, KeyUpdate, close_notify, alerts,
//! stray handshake messages, change_cipher_spec, oversize records, and the
//! confidentiality limit. Records a rustls client would never send are sealed
//! with a mirrored [`Traffic`] on the client's extracted keys.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, ClientConnection, ContentType};

use super::tests::{Fixture, feed, fixture, from_client, to_client};
use super::*;
use crate::tls::records::{Fatal, Traffic};

/// Client variants: (name, TLS 1.3?, suites).
fn variants() -> Vec<(&'static str, bool, Vec<rustls::SupportedCipherSuite>)> {
    use rustls::crypto::ring::cipher_suite as cs;
    vec![
        ("1.3 aes128", true, vec![cs::TLS13_AES_128_GCM_SHA256]),
        ("1.3 aes256", true, vec![cs::TLS13_AES_256_GCM_SHA384]),
        ("1.3 chacha", true, vec![cs::TLS13_CHACHA20_POLY1305_SHA256]),
        (
            "1.2 aes128",
            false,
            vec![cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256],
        ),
        (
            "1.2 aes256",
            false,
            vec![cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384],
        ),
        (
            "1.2 chacha",
            false,
            vec![cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256],
        ),
    ]
}

fn client_with(
    f: &Fixture,
    tls13: bool,
    suites: &[rustls::SupportedCipherSuite],
) -> ClientConnection {
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites.to_vec(),
        ..crate::tls::certs::provider()
    };
    let version: &[&rustls::SupportedProtocolVersion] = if tls13 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12]
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(version)
        .unwrap()
        .with_root_certificates(f.roots.clone())
        .with_no_client_auth();
    config.enable_secret_extraction = true;
    config.resumption = rustls::client::Resumption::disabled();
    ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
}

/// Runs the handshake; the plaintext the server got on the way (data the client
/// pipelined behind its Finished).
fn connect(f: &Fixture, c: &mut ClientConnection) -> (TlsSession, Vec<u8>) {
    let mut s = TlsSession::new(f.server.clone()).unwrap();
    let mut plain = Vec::new();
    for _ in 0..4 {
        let out = from_client(c);
        let fed = feed(&mut s, &[&out]).unwrap();
        plain.extend_from_slice(&fed.plain);
        to_client(c, &fed.wire).unwrap();
    }
    assert!(s.established() && !c.is_handshaking());
    (s, plain)
}

/// What the client reads now.
fn client_reads(c: &mut ClientConnection) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.reader().read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return got,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Hands `wire` to the client a record at a time, reading as it goes (its
/// plaintext buffer is bounded); what it read.
fn deliver(c: &mut ClientConnection, wire: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    for piece in wire.chunks(4096) {
        to_client(c, piece).unwrap();
        got.extend(client_reads(c));
    }
    got
}

/// A client end on `c`'s keys, to seal records rustls would not send, and to
/// read what the server sends.
fn mirror(c: ClientConnection, tls13: bool) -> Traffic {
    #[allow(deprecated)]
    let secrets = c.dangerous_extract_secrets().unwrap();
    Traffic::client_end(secrets, tls13).unwrap()
}

fn seal(m: &mut Traffic, typ: ContentType, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let key = m.tx_key().unwrap();
    m.seal_record(&key, typ, payload, &mut out).unwrap();
    out
}

/// Feeds `bytes` to the server, expects it to fail; the failure and the alert
/// it sent (read with the mirror), if any.
fn fails_with(
    s: &mut TlsSession,
    m: &mut Traffic,
    bytes: &[u8],
) -> (TlsFailure, Option<AlertDescription>) {
    let (mut scratch, mut plain, mut wire) = (Vec::new(), Vec::new(), Vec::new());
    let err = s
        .read(bytes, &mut scratch, &mut plain, &mut wire)
        .unwrap_err();
    assert!(
        s.seal(b"after").unwrap().is_none(),
        "output after a failure"
    );
    let alert = if wire.is_empty() {
        None
    } else {
        match m.open(&mut wire, &mut Vec::new(), &mut Vec::new()) {
            Err(Fatal {
                error: rustls::Error::AlertReceived(a),
                ..
            }) => Some(a),
            other => panic!("not an alert: {other:?}"),
        }
    };
    (err, alert)
}

#[test]
fn data_both_ways_in_every_version_and_cipher() {
    let f = fixture();
    for (name, tls13, suites) in variants() {
        let mut c = client_with(&f, tls13, &suites);
        let (mut s, _) = connect(&f, &mut c);
        assert_eq!(
            s.version(),
            Some(if tls13 { "1.3" } else { "1.2" }),
            "{name}"
        );
        for size in [0usize, 1, 100, 16_384, 16_385, 40_000] {
            let msg: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            c.writer().write_all(&msg).unwrap();
            let fed = feed(&mut s, &[&from_client(&mut c)]).unwrap();
            assert_eq!(fed.plain, msg, "{name} {size} in");
            if size > 0 {
                let sealed = s.seal(&msg).unwrap().unwrap();
                assert_eq!(deliver(&mut c, &sealed), msg, "{name} {size} out");
            }
        }
        // Several records in one read, then split at every byte.
        for i in 0..20u8 {
            c.writer().write_all(&[i; 300]).unwrap();
        }
        let bytes = from_client(&mut c);
        let want: Vec<u8> = (0..20u8).flat_map(|i| [i; 300]).collect();
        assert_eq!(feed(&mut s, &[&bytes]).unwrap().plain, want, "{name}");
        c.writer().write_all(b"split").unwrap();
        let bytes = from_client(&mut c);
        let fed = feed(
            &mut s,
            &bytes.iter().map(std::slice::from_ref).collect::<Vec<_>>(),
        );
        assert_eq!(fed.unwrap().plain, b"split", "{name}");
        assert_eq!(s.kept(), 0);
    }
}

#[test]
fn records_split_at_every_byte() {
    let f = fixture();
    for (name, tls13, suites) in variants() {
        let mut c = client_with(&f, tls13, &suites);
        let (mut s, _) = connect(&f, &mut c);
        for k in 1..40 {
            c.writer().write_all(b"first").unwrap();
            c.writer().write_all(b"second").unwrap();
            let bytes = from_client(&mut c);
            let k = k.min(bytes.len() - 1);
            let fed = feed(&mut s, &[&bytes[..k], &bytes[k..]]).unwrap();
            assert_eq!(fed.plain, b"firstsecond", "{name} at {k}");
        }
    }
}

#[test]
fn data_pipelined_behind_the_client_finished() {
    let f = fixture();
    for (name, tls13, suites) in variants() {
        let mut c = client_with(&f, tls13, &suites);
        // Written before the handshake: rustls sends it right after Finished.
        c.writer().write_all(b"early bird").unwrap();
        let (mut s, plain) = connect(&f, &mut c);
        assert_eq!(plain, b"early bird", "{name}");
        c.writer().write_all(b"next").unwrap();
        assert_eq!(
            feed(&mut s, &[&from_client(&mut c)]).unwrap().plain,
            b"next"
        );
        let sealed = s.seal(b"reply").unwrap().unwrap();
        to_client(&mut c, &sealed).unwrap();
        assert_eq!(client_reads(&mut c), b"reply", "{name}");
    }
}

#[test]
fn key_updates_from_the_client_are_followed_and_answered() {
    let f = fixture();
    for (name, tls13, suites) in variants() {
        if !tls13 {
            continue;
        }
        let mut c = client_with(&f, tls13, &suites);
        let (mut s, _) = connect(&f, &mut c);
        for round in 0..3 {
            // rustls asks for an update both ways (update_requested).
            c.refresh_traffic_keys().unwrap();
            c.writer().write_all(b"after update").unwrap();
            let fed = feed(&mut s, &[&from_client(&mut c)]).unwrap();
            assert_eq!(fed.plain, b"after update", "{name} {round}");
            assert!(!fed.wire.is_empty(), "our KeyUpdate");
            to_client(&mut c, &fed.wire).unwrap();
            let sealed = s.seal(b"under the new key").unwrap().unwrap();
            to_client(&mut c, &sealed).unwrap();
            assert_eq!(client_reads(&mut c), b"under the new key", "{name} {round}");
        }
        let t = s.traffic().unwrap();
        assert!(t.tls13());
    }
}

#[test]
fn close_notify_from_the_client_ends_input() {
    let f = fixture();
    for (name, tls13, suites) in variants() {
        let mut c = client_with(&f, tls13, &suites);
        let (mut s, _) = connect(&f, &mut c);
        c.writer().write_all(b"last words").unwrap();
        c.send_close_notify();
        let mut bytes = from_client(&mut c);
        // Whatever follows close_notify is not data.
        bytes.extend_from_slice(&[0x17, 3, 3, 0, 1, 0]);
        let (mut scratch, mut plain, mut wire) = (Vec::new(), Vec::new(), Vec::new());
        let out = s.read(&bytes, &mut scratch, &mut plain, &mut wire).unwrap();
        assert!(out.peer_closed, "{name}");
        assert_eq!(plain, b"last words");
        assert_eq!(s.kept(), 0);
        // Our own close_notify still goes out, once.
        let alert = s.close_notify().unwrap();
        to_client(&mut c, &alert).unwrap();
        assert!(s.close_notify().is_none());
    }
}

#[test]
fn records_a_client_must_not_send_fail_with_the_right_alert() {
    let f = fixture();
    type Case = (&'static str, bool, Box<dyn Fn(&mut Traffic) -> Vec<u8>>);
    let cases: Vec<Case> = vec![
        (
            "new_session_ticket",
            true,
            Box::new(|m| seal(m, ContentType::Handshake, &[4, 0, 0, 1, 0])),
        ),
        (
            "renegotiation",
            false,
            Box::new(|m| seal(m, ContentType::Handshake, &[1, 0, 0, 1, 0])),
        ),
        (
            "key_update_bad_request",
            true,
            Box::new(|m| seal(m, ContentType::Handshake, &[24, 0, 0, 1, 7])),
        ),
        (
            "key_update_not_last",
            true,
            Box::new(|m| seal(m, ContentType::Handshake, &[24, 0, 0, 1, 0, 24, 0, 0, 1, 0])),
        ),
        (
            "change_cipher_spec",
            true,
            Box::new(|_| vec![0x14, 3, 3, 0, 1, 1]),
        ),
        (
            "change_cipher_spec",
            false,
            Box::new(|_| vec![0x14, 3, 3, 0, 1, 1]),
        ),
        (
            "inner_change_cipher_spec",
            true,
            Box::new(|m| seal(m, ContentType::ChangeCipherSpec, &[1])),
        ),
        ("oversize", true, Box::new(|_| vec![0x17, 3, 3, 0x41, 0x01])),
        (
            "oversize",
            false,
            Box::new(|_| vec![0x17, 3, 3, 0x41, 0x01]),
        ),
        (
            "bad_mac",
            true,
            Box::new(|m| {
                let mut r = seal(m, ContentType::ApplicationData, b"x");
                *r.last_mut().unwrap() ^= 1;
                r
            }),
        ),
        (
            "bad_mac",
            false,
            Box::new(|m| {
                let mut r = seal(m, ContentType::ApplicationData, b"x");
                r[7] ^= 1;
                r
            }),
        ),
        (
            "fatal_alert",
            true,
            Box::new(|m| seal(m, ContentType::Alert, &[2, 40])),
        ),
        (
            "fatal_alert",
            false,
            Box::new(|m| seal(m, ContentType::Alert, &[2, 40])),
        ),
    ];
    for (name, tls13, make) in cases {
        let suite = if tls13 {
            rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        } else {
            rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        };
        let mut c = client_with(&f, tls13, &[suite]);
        let (mut s, _) = connect(&f, &mut c);
        let mut m = mirror(c, tls13);
        // Some good data first: sequence numbers agree.
        let good = seal(&mut m, ContentType::ApplicationData, b"fine");
        assert_eq!(feed(&mut s, &[&good]).unwrap().plain, b"fine", "{name}");
        let bad = make(&mut m);
        let (err, alert) = fails_with(&mut s, &mut m, &bad);
        let want = match name {
            "oversize" => Some(AlertDescription::RecordOverflow),
            "bad_mac" => Some(AlertDescription::BadRecordMac),
            "key_update_bad_request" => Some(AlertDescription::IllegalParameter),
            "fatal_alert" => None,
            _ => Some(AlertDescription::UnexpectedMessage),
        };
        assert_eq!(alert, want, "{name} tls13={tls13}: {err}");
        let reason = crate::tls::FAILURE_REASONS[err.reason()];
        let want_reason = match name {
            "bad_mac" => "bad_record",
            "fatal_alert" => "alert_received",
            "oversize" | "key_update_bad_request" | "key_update_not_last" => "decode_error",
            _ => "unexpected_message",
        };
        assert_eq!(reason, want_reason, "{name} tls13={tls13}: {err}");
    }
}

#[test]
fn ignorable_alerts_and_empty_records_are_ignored() {
    let f = fixture();
    for tls13 in [true, false] {
        let suite = if tls13 {
            rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256
        } else {
            rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        };
        let mut c = client_with(&f, tls13, &[suite]);
        let (mut s, _) = connect(&f, &mut c);
        let mut m = mirror(c, tls13);
        let mut bytes = seal(&mut m, ContentType::Alert, &[1, 90]); // user_canceled
        bytes.extend(seal(&mut m, ContentType::ApplicationData, b""));
        bytes.extend(seal(&mut m, ContentType::ApplicationData, b"still here"));
        let fed = feed(&mut s, &[&bytes]).unwrap();
        assert_eq!(fed.plain, b"still here");
        // Padding that is all zeros has no content type (TLS 1.3).
        if tls13 {
            let bad = seal(&mut m, ContentType::Unknown(0), b"");
            let (_, alert) = fails_with(&mut s, &mut m, &bad);
            assert_eq!(alert, Some(AlertDescription::UnexpectedMessage));
        }
    }
}

#[test]
fn the_confidentiality_limit_rotates_keys_in_tls13() {
    let f = fixture();
    let mut c = client_with(
        &f,
        true,
        &[rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
    );
    let (mut s, _) = connect(&f, &mut c);
    s.traffic().unwrap().set_limit(6);
    let mut want = Vec::new();
    for i in 0..30u8 {
        let sealed = s.seal(&[i; 10]).unwrap().unwrap();
        want.extend_from_slice(&[i; 10]);
        to_client(&mut c, &sealed).unwrap();
    }
    assert_eq!(client_reads(&mut c), want);
    // And the client can still talk to us (its direction never changed).
    c.writer().write_all(b"ok").unwrap();
    assert_eq!(feed(&mut s, &[&from_client(&mut c)]).unwrap().plain, b"ok");
}

#[test]
fn the_confidentiality_limit_closes_tls12_cleanly() {
    let f = fixture();
    let mut c = client_with(
        &f,
        false,
        &[rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256],
    );
    let (mut s, _) = connect(&f, &mut c);
    s.traffic().unwrap().set_limit(6);
    let mut sent = 0;
    let err = loop {
        match s.seal(b"data") {
            Ok(Some(sealed)) => {
                to_client(&mut c, &sealed).unwrap();
                sent += 1;
            }
            Ok(None) => panic!("dropped"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, TlsFailure::KeyLimit), "{err}");
    assert!((1..6).contains(&sent), "{sent}");
    assert_eq!(client_reads(&mut c).len(), sent * 4);
    // close_notify still fits under the limit, and reads as a clean end.
    let alert = s.close_notify().unwrap();
    to_client(&mut c, &alert).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(c.reader().read(&mut buf).unwrap(), 0, "clean EOF");
}

/// What an idle established session keeps on the heap besides its struct: the
/// TLS 1.3 `KernelConnection` (key schedule for KeyUpdate) and nothing for 1.2.
#[test]
fn an_established_session_holds_only_keys() {
    let f = fixture();
    for (name, tls13, suites) in variants() {
        let mut c = client_with(&f, tls13, &suites);
        let (mut s, _) = connect(&f, &mut c);
        assert!(s.traffic().is_some(), "{name}: rustls handed over");
        assert_eq!(s.kept(), 0);
        assert_eq!(s.traffic().unwrap().tls13(), tls13);
    }
}
