//! The SDK's TLS: a rustls client (ring, the daemon's Mozilla "intermediate"
//! profile) that trusts a CA file or the Mozilla roots and offers ALPN
//! `switchboard/1`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::{ClientError, ClientTls};

/// The rustls client configuration the SDK uses for `settings` (public so `storm`
/// and the benches speak with the same profile): the daemon's Mozilla
/// "intermediate" suites, TLS 1.3 and 1.2, ALPN `switchboard/1`, and key exchange
/// groups X25519 first, then P-256, P-384 — as browsers and OpenSSL order them.
/// (rustls' own *ring* default puts P-384 first; a TLS 1.3 server answers the
/// client's first key share, and ring's P-384 costs the server about five times
/// what X25519 does: see the README's handshake figures.)
pub fn client_config(settings: &ClientTls) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(ClientError::Tls(format!(
                    "{}: no PEM certificate in it",
                    path.display()
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::certs::provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"switchboard/1".to_vec()];
    Ok(Arc::new(config))
}

/// The name the certificate must carry: `server_name`, or the host of `addr`.
pub(super) fn server_name(
    addr: &str,
    settings: &ClientTls,
) -> Result<ServerName<'static>, ClientError> {
    let host = match &settings.server_name {
        Some(n) => n.clone(),
        None => {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        }
    };
    ServerName::try_from(host).map_err(|e| ClientError::Tls(e.to_string()))
}

/// Hands `wire` (bytes read from the socket) to `tls`; returns the plaintext and
/// whether the server sent close_notify. Anything rustls wants to send in answer
/// (alerts, key updates) is written to `stream`.
pub(super) fn decrypt(
    tls: &mut rustls::ClientConnection,
    stream: &mut TcpStream,
    mut wire: &[u8],
) -> Result<(Vec<u8>, bool), ClientError> {
    let mut plain = Vec::new();
    let mut closed = false;
    while !wire.is_empty() {
        tls.read_tls(&mut wire)?;
        let state = tls
            .process_new_packets()
            .map_err(|e| ClientError::Tls(e.to_string()));
        while tls.wants_write() {
            if tls.write_tls(stream).is_err() {
                break;
            }
        }
        let state = state?;
        closed |= state.peer_has_closed();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match tls.reader().read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => plain.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(_) => break,
            }
        }
    }
    let _ = stream.flush();
    Ok((plain, closed))
}
