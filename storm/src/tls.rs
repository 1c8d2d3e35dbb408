//! `--tls`: the client side of TLS for the engine. Each engine thread has its own
//! rustls configuration (the SDK's, with the transport's ALPN) and, with
//! `--tls-resume`, its own [`TicketPool`]; a connection's `rustls::ClientConnection`
//! is fed what the socket reads ([`tls_read`]) and its records go out through the
//! engine's usual write path ([`tls_output`]).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use rustls::NamedGroup;
use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;

use crate::cli::{TlsPlan, Transport};

/// Most TLS 1.3 tickets a thread keeps per server name (the oldest go first).
const MAX_TICKETS: usize = 4096;

/// A session store that keeps many TLS 1.3 tickets per server: storm's connections
/// stand for many clients, each resuming with a ticket of its own, and a thread
/// starts handshakes in bursts (rustls' own cache keeps 8 per server, so most of a
/// burst would find none). Tickets are handed out newest first, each once.
#[derive(Debug, Default)]
pub struct TicketPool {
    inner: Mutex<Pool>,
}

#[derive(Debug, Default)]
struct Pool {
    kx: HashMap<ServerName<'static>, NamedGroup>,
    tls12: HashMap<ServerName<'static>, Tls12ClientSessionValue>,
    tls13: HashMap<ServerName<'static>, VecDeque<Tls13ClientSessionValue>>,
}

impl TicketPool {
    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        // One thread uses it; a poisoned lock only means a panic elsewhere.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientSessionStore for TicketPool {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.pool().kx.insert(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.pool().kx.get(&server_name.to_owned()).copied()
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.pool().tls12.insert(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.pool().tls12.get(&server_name.to_owned()).cloned()
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.pool().tls12.remove(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let mut pool = self.pool();
        let q = pool.tls13.entry(server_name).or_default();
        if q.len() >= MAX_TICKETS {
            q.pop_front();
        }
        q.push_back(value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.pool().tls13.get_mut(server_name)?.pop_back()
    }
}

/// This thread's TLS client configuration for `plan`: the SDK's, with the ALPN of
/// the transport and a session store of its own (or none without `--tls-resume`).
pub fn tls_config(
    plan: &TlsPlan,
    transport: Transport,
) -> io::Result<(
    Arc<rustls::ClientConfig>,
    rustls::pki_types::ServerName<'static>,
)> {
    let settings = switchboard::client::ClientTls {
        ca_file: plan.ca_file.clone(),
        server_name: Some(plan.server_name.clone()),
    };
    let sdk = switchboard::client::tls_client_config(&settings)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut config = (*sdk).clone();
    config.alpn_protocols = vec![match transport {
        Transport::Tcp => b"switchboard/1".to_vec(),
        Transport::WsJson | Transport::WsBin => b"http/1.1".to_vec(),
    }];
    config.resumption = if plan.resume {
        rustls::client::Resumption::store(Arc::new(TicketPool::default()))
    } else {
        rustls::client::Resumption::disabled()
    };
    let name = rustls::pki_types::ServerName::try_from(plan.server_name.clone())
        .map_err(|e| io::Error::other(format!("--server-name: {e}")))?;
    Ok((Arc::new(config), name))
}

/// Feeds `data` (read from the socket) to `tls`, appending the plaintext to `plain`.
pub fn tls_read(
    tls: &mut rustls::ClientConnection,
    mut data: &[u8],
    plain: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    while !data.is_empty() {
        match tls.read_tls(&mut data) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(rustls::Error::General(e.to_string())),
        }
        let state = tls.process_new_packets()?;
        let n = state.plaintext_bytes_to_read();
        if n > 0 {
            let at = plain.len();
            plain.resize(at + n, 0);
            let got = tls
                .reader()
                .read(plain.get_mut(at..).unwrap_or_default())
                .unwrap_or(0);
            plain.truncate(at + got);
        }
    }
    Ok(())
}

/// The records `tls` has to send (handshake messages, encrypted data, alerts).
pub fn tls_output(tls: &mut rustls::ClientConnection) -> Vec<u8> {
    let mut wire = Vec::new();
    while tls.wants_write() {
        match tls.write_tls(&mut wire) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    wire
}

/// The error kind of a TLS failure: `tls_` and what went wrong
/// (`tls_invalid_certificate_unknown_issuer`, `tls_alert_handshake_failure`, ...).
pub fn tls_error_kind(e: &rustls::Error) -> String {
    let detail = match e {
        rustls::Error::InvalidCertificate(c) => format!("invalid_certificate_{c:?}"),
        rustls::Error::AlertReceived(a) => format!("alert_{a:?}"),
        rustls::Error::NoApplicationProtocol => "no_application_protocol".into(),
        rustls::Error::PeerIncompatible(_) => "peer_incompatible".into(),
        rustls::Error::PeerMisbehaved(_) => "peer_misbehaved".into(),
        rustls::Error::InvalidMessage(_) => "invalid_message".into(),
        rustls::Error::DecryptError => "decrypt_error".into(),
        _ => "error".into(),
    };
    // The variant's name only, not its fields.
    let detail = detail.split(['(', '{', ' ']).next().unwrap_or_default();
    let mut kind = String::from("tls_");
    let mut prev_lower = false;
    for ch in detail.chars() {
        if ch.is_ascii_uppercase() {
            if prev_lower {
                kind.push('_');
            }
            kind.push(ch.to_ascii_lowercase());
            prev_lower = false;
        } else if ch.is_ascii_alphanumeric() || ch == '_' {
            prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
            kind.push(ch);
        } else {
            prev_lower = false;
        }
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine lifts rustls' 64 KiB buffer bound on each connection: a send larger
    /// than that (echo over TLS) is taken whole, where the default refuses it.
    #[test]
    fn a_large_send_fits_without_the_buffer_bound() {
        let plan = TlsPlan {
            ca_file: None,
            server_name: "localhost".into(),
            resume: false,
        };
        let (config, name) = tls_config(&plan, Transport::Tcp).unwrap();
        let big = vec![7u8; 200_000];
        let mut bounded = rustls::ClientConnection::new(config.clone(), name.clone()).unwrap();
        assert!(io::Write::write_all(&mut bounded.writer(), &big).is_err());
        let mut c = rustls::ClientConnection::new(config, name).unwrap();
        c.set_buffer_limit(None);
        io::Write::write_all(&mut c.writer(), &big).unwrap();
        // The ClientHello goes out first (the data waits for the handshake).
        assert!(!tls_output(&mut c).is_empty());
    }

    #[test]
    fn tls_errors_classify() {
        use rustls::{AlertDescription, CertificateError, Error};
        assert_eq!(
            tls_error_kind(&Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            "tls_invalid_certificate_unknown_issuer"
        );
        assert_eq!(
            tls_error_kind(&Error::InvalidCertificate(
                CertificateError::NotValidForNameContext {
                    expected: rustls::pki_types::ServerName::try_from("a.example")
                        .unwrap()
                        .to_owned(),
                    presented: vec!["b.example".into()],
                }
            )),
            "tls_invalid_certificate_not_valid_for_name_context"
        );
        assert_eq!(
            tls_error_kind(&Error::AlertReceived(
                AlertDescription::NoApplicationProtocol
            )),
            "tls_alert_no_application_protocol"
        );
        assert_eq!(tls_error_kind(&Error::DecryptError), "tls_decrypt_error");
        assert_eq!(tls_error_kind(&Error::General("x".into())), "tls_error");
    }
}
