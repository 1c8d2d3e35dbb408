//! The entry of the `tls_records` fuzz target (`fuzz/fuzz_targets/tls_records.rs`):
//! arbitrary bytes, cut into reads, fed to a server session as a client would send
//! them ([`feed`]), or, after a handshake driven in memory, records sealed with the
//! client's keys for the post-handshake record layer ([`feed_traffic`]). A throwaway self-signed P-256 certificate (`fuzz_cert/`, made for this and
//! nothing else) stands for the operator's.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::session::TlsSession;

const CERT: &[u8] = include_bytes!("fuzz_cert/cert.pem");
const KEY: &[u8] = include_bytes!("fuzz_cert/key.pem");

/// The longest a session may keep between reads: one record header's worth of
/// length (rustls refuses longer records).
const MAX_KEPT: usize = 5 + 16_384 + 2048;

/// A server configuration with the fuzz certificate (the daemon's profile and ALPN).
pub fn fuzz_config() -> Option<Arc<ServerConfig>> {
    let provider = super::certs::provider();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(CERT)
        .collect::<Result<_, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_slice(KEY).ok()?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .ok()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .ok()?;
    config.alpn_protocols = super::ALPN.iter().map(|p| p.to_vec()).collect();
    // After the handshake the keys move to our record layer (`records`).
    config.enable_secret_extraction = true;
    Some(Arc::new(config))
}

/// Feeds `data` to a fresh session in reads of `cut` bytes (0: all at once) and
/// checks what must always hold: no panic, never more than a record kept between
/// reads, nothing decrypted from bytes no handshake keyed, and after a failure the
/// session takes no more output. Returns whether the session failed.
pub fn feed(config: &Arc<ServerConfig>, data: &[u8], cut: usize) -> Result<bool, String> {
    let mut s = TlsSession::new(config.clone()).map_err(|e| e.to_string())?;
    let mut plain = Vec::new();
    if read_all(&mut s, data, cut, &mut plain)? {
        return Ok(true);
    }
    if !plain.is_empty() {
        return Err("plaintext without a handshake".into());
    }
    Ok(false)
}

/// Feeds `data` to a session whose handshake was driven in memory by a rustls
/// client (`variant`: TLS 1.3 or 1.2, AES-GCM or ChaCha20-Poly1305), so the
/// bytes meet our post-handshake record layer. `data` is a list of pieces
/// `[kind, len, payload..]`: kind < 0x80 is a record of content type `kind`
/// sealed with the client's keys (so it authenticates), kind ≥ 0x80 raw bytes.
/// Reads are `cut` bytes (0: all at once). Checks no panic, never more than a
/// record kept, no output after a failure, and, when every piece was sealed
/// application data, exactly that data decrypted. Returns whether it failed.
pub fn feed_traffic(
    config: &Arc<ServerConfig>,
    variant: u8,
    data: &[u8],
    cut: usize,
) -> Result<bool, String> {
    use rustls::ContentType;
    use rustls::crypto::ring::cipher_suite as cs;
    let (tls13, suite) = match variant % 4 {
        0 => (true, cs::TLS13_AES_128_GCM_SHA256),
        1 => (true, cs::TLS13_CHACHA20_POLY1305_SHA256),
        2 => (false, cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        _ => (false, cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
    };
    let (mut s, client) = connect(config, tls13, suite)?;
    #[allow(deprecated)]
    let secrets = client
        .dangerous_extract_secrets()
        .map_err(|e| e.to_string())?;
    let mut end = super::records::Traffic::client_end(secrets, tls13).map_err(|e| e.to_string())?;
    let key = end.tx_key().map_err(|e| e.to_string())?;
    let mut stream = Vec::new();
    let mut want = Vec::new();
    let mut only_data = true;
    let mut rest = data;
    while let [kind, len, tail @ ..] = rest {
        let (payload, tail) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = tail;
        if *kind >= 0x80 {
            only_data = false;
            stream.extend_from_slice(payload);
            continue;
        }
        let typ = ContentType::from(*kind);
        if typ == ContentType::ApplicationData {
            want.extend_from_slice(payload);
        } else {
            only_data = false;
        }
        end.seal_record(&key, typ, payload, &mut stream)
            .map_err(|e| e.to_string())?;
    }
    let mut plain = Vec::new();
    if read_all(&mut s, &stream, cut, &mut plain)? {
        return Ok(true);
    }
    if only_data && plain != want {
        return Err("decrypted data differs from what was sent".into());
    }
    s.seal(b"reply").map_err(|e| e.to_string())?;
    Ok(false)
}

/// Reads `data` into `s` in pieces of `cut` bytes (0: all at once), decrypted data
/// to `plain`. Checks that never more than a record is kept between reads and that a
/// failed session takes no more output. Returns whether the session failed.
fn read_all(
    s: &mut TlsSession,
    data: &[u8],
    cut: usize,
    plain: &mut Vec<u8>,
) -> Result<bool, String> {
    let (mut scratch, mut wire) = (Vec::new(), Vec::new());
    let step = if cut == 0 { data.len().max(1) } else { cut };
    for chunk in data.chunks(step) {
        match s.read(chunk, &mut scratch, plain, &mut wire) {
            Ok(_) => {
                if s.kept() > MAX_KEPT {
                    return Err(format!("{} bytes kept between reads", s.kept()));
                }
            }
            Err(_) => {
                if s.seal(b"after").map_err(|e| e.to_string())?.is_some() {
                    return Err("output after a failure".into());
                }
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The fuzz certificate as the only trusted root.
fn fuzz_roots() -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(CERT) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    Ok(roots)
}

/// Drives `s` and the client `c` through their handshake in memory (four flights
/// are enough for TLS 1.2 and 1.3); the work buffers are the caller's.
fn handshake(
    s: &mut TlsSession,
    c: &mut rustls::ClientConnection,
    scratch: &mut Vec<u8>,
    plain: &mut Vec<u8>,
    wire: &mut Vec<u8>,
) -> Result<(), String> {
    for _ in 0..4 {
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).map_err(|e| e.to_string())?;
        }
        wire.clear();
        s.read(&out, scratch, plain, wire)
            .map_err(|e| e.to_string())?;
        let mut rd = &wire[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).map_err(|e| e.to_string())?;
            c.process_new_packets().map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// A session and a rustls client (keys extractable) after a full handshake in
/// memory.
fn connect(
    config: &Arc<ServerConfig>,
    tls13: bool,
    suite: rustls::SupportedCipherSuite,
) -> Result<(TlsSession, rustls::ClientConnection), String> {
    let roots = fuzz_roots()?;
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![suite],
        ..super::certs::provider()
    };
    let version: &[&rustls::SupportedProtocolVersion] = if tls13 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12]
    };
    let mut client_config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(version)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_config.enable_secret_extraction = true;
    client_config.resumption = rustls::client::Resumption::disabled();
    let name =
        rustls::pki_types::ServerName::try_from("fuzz.invalid").map_err(|e| e.to_string())?;
    let mut c =
        rustls::ClientConnection::new(Arc::new(client_config), name).map_err(|e| e.to_string())?;
    let mut s = TlsSession::new(config.clone()).map_err(|e| e.to_string())?;
    let (mut scratch, mut plain, mut wire) = (Vec::new(), Vec::new(), Vec::new());
    handshake(&mut s, &mut c, &mut scratch, &mut plain, &mut wire)?;
    if !s.established() || c.is_handshaking() {
        return Err("handshake did not complete".into());
    }
    Ok((s, c))
}

/// Heap bytes one established TLS 1.3 session holds, averaged over `n` sessions
/// driven through a handshake with an in-memory rustls client (dropped after it);
/// `live` is the caller's counting allocator (live bytes). See
/// `benches/tls_idle.rs`.
pub fn session_heap(n: usize, live: &dyn Fn() -> i64) -> Result<f64, String> {
    let config = fuzz_config().ok_or("fuzz certificate")?;
    let roots = fuzz_roots()?;
    let mut client_config =
        rustls::ClientConfig::builder_with_provider(Arc::new(super::certs::provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    // The client keeps no tickets: only the server sessions stay on the heap.
    client_config.resumption = rustls::client::Resumption::disabled();
    let client_config = Arc::new(client_config);
    // Work buffers reserved up front, so only the sessions grow the heap.
    let mut scratch = Vec::with_capacity(64 * 1024);
    let mut plain = Vec::with_capacity(64 * 1024);
    let mut wire = Vec::with_capacity(64 * 1024);
    let mut sessions = Vec::with_capacity(n);
    let before = live();
    for _ in 0..n {
        let mut s = TlsSession::new(config.clone()).map_err(|e| e.to_string())?;
        let name =
            rustls::pki_types::ServerName::try_from("fuzz.invalid").map_err(|e| e.to_string())?;
        let mut c = rustls::ClientConnection::new(client_config.clone(), name)
            .map_err(|e| e.to_string())?;
        handshake(&mut s, &mut c, &mut scratch, &mut plain, &mut wire)?;
        if !s.established() {
            return Err("handshake did not complete".into());
        }
        drop(c);
        sessions.push(s);
    }
    let after = live();
    let per = (after - before) as f64 / n as f64;
    drop(sessions);
    Ok(per)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuzz_entry_runs() {
        let config = fuzz_config().expect("the fuzz certificate loads");
        assert_eq!(feed(&config, b"", 0), Ok(false));
        assert_eq!(feed(&config, b"GET / HTTP/1.1\r\n\r\n", 3), Ok(true));
        // A record header announcing more than a record may hold.
        assert_eq!(
            feed(&config, &[0x16, 3, 1, 0xff, 0xff, 1, 2, 3], 1),
            Ok(true)
        );
        // A partial ClientHello is kept, not failed.
        assert_eq!(feed(&config, &[0x16, 3, 1, 0x01, 0x00, 1], 2), Ok(false));
    }

    /// Found by fuzz `tls_records` (corpus/tls_records/seed-regression-rustls-range-panic):
    /// a handshake fragment rustls keeps in the input, then a bad record. The
    /// failure path (`TlsSession::fail`) gave rustls an empty buffer to get its
    /// alert, and rustls panicked slicing past its end; now it gets the input it
    /// kept, and the session stops at the alert (reading on would queue a second
    /// one, which rustls asserts against).
    #[test]
    fn a_failure_after_a_kept_handshake_fragment_does_not_panic() {
        let config = fuzz_config().expect("the fuzz certificate loads");
        let input = [
            0x16, 0x03, 0x00, 0x00, 0x01, 0x00, 0x03, 0x08, 0xb1, 0x3a, 0x2d, 0xb1, 0x00, 0x26,
            0x26, 0x26,
        ];
        assert_eq!(feed(&config, &input, 58), Ok(true));
        // In one read and cut in every place: no panic, a failure, one alert out.
        for cut in 0..=input.len() {
            assert_eq!(feed(&config, &input, cut), Ok(true), "cut {cut}");
        }
        let mut s = TlsSession::new(config).unwrap();
        let (mut scratch, mut plain, mut wire) = (Vec::new(), Vec::new(), Vec::new());
        assert!(s.read(&input, &mut scratch, &mut plain, &mut wire).is_err());
        assert_eq!(wire, [21, 3, 3, 0, 2, 2, 50], "one decode_error alert");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Any pieces (sealed records of any content type, raw bytes) after a
        /// handshake, in reads of any size: the invariants `feed_traffic` checks.
        #[test]
        fn any_records_after_a_handshake_keep_the_invariants(
            variant in 0u8..4,
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            cut in 0usize..40,
        ) {
            let config = fuzz_config().unwrap();
            let r = feed_traffic(&config, variant, &data, cut);
            proptest::prop_assert!(r.is_ok(), "{:?}", r);
        }

        /// Application data in records of any size, read in pieces of any size,
        /// decrypts to exactly what was sent, with no failure.
        #[test]
        fn sealed_data_decrypts_to_what_was_sent(
            variant in 0u8..4,
            pieces in proptest::collection::vec(
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..255), 0..12),
            cut in 0usize..40,
        ) {
            let config = fuzz_config().unwrap();
            let mut data = Vec::new();
            for p in &pieces {
                data.push(23);
                data.push(p.len() as u8);
                data.extend_from_slice(p);
            }
            proptest::prop_assert_eq!(feed_traffic(&config, variant, &data, cut), Ok(false));
        }
    }

    #[test]
    fn the_post_handshake_fuzz_entry_runs() {
        let config = fuzz_config().expect("the fuzz certificate loads");
        for variant in 0..4 {
            // Application data in two records, read 3 bytes at a time.
            let data = [23, 2, b'h', b'i', 23, 1, b'!'];
            assert_eq!(feed_traffic(&config, variant, &data, 3), Ok(false));
            // A handshake message after the handshake fails the session.
            let data = [22, 5, 4, 0, 0, 1, 0];
            assert_eq!(feed_traffic(&config, variant, &data, 0), Ok(true));
            // Raw bytes that do not authenticate.
            let data = [0x80, 6, 0x17, 3, 3, 0, 1, 0];
            assert_eq!(feed_traffic(&config, variant, &data, 1), Ok(true));
        }
        // A KeyUpdate (TLS 1.3): later records under the old key then fail.
        let data = [22, 5, 24, 0, 0, 1, 0, 23, 1, b'x'];
        assert_eq!(feed_traffic(&config, 0, &data, 0), Ok(true));
        assert_eq!(feed_traffic(&config, 0, &data[..7], 0), Ok(false));
    }
}
