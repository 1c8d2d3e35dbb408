//! The client listener's certificates: read from PEM files, checked (parseable,
//! key matching), chosen per handshake by SNI, and turned into the rustls
//! `ServerConfig` new handshakes use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// A certificate or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read or is not PEM.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No `CERTIFICATE` section in the file.
    #[error("{}: no PEM certificate in it", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The leaf certificate does not parse as X.509.
    #[error("{}: the certificate does not parse: {reason}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// The key cannot sign, or it is not the certificate's.
    #[error("{}: {reason} (certificate {})", key.display(), cert.display())]
    Key {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// What an operator may want to know about one loaded certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The certificate file (the `name` label of the expiry metric).
    pub path: PathBuf,
    /// DNS names in its subjectAltName (lower case; `*.` wildcards kept).
    pub names: Vec<String>,
    /// notAfter, in seconds since the Unix epoch.
    pub not_after: u64,
}

/// The certificates in force and the rustls configuration built on them.
#[derive(Debug)]
pub(crate) struct TlsServer {
    /// What new handshakes use.
    pub config: Arc<ServerConfig>,
    /// One entry per certificate, in configuration order.
    pub certs: Vec<CertInfo>,
}

/// The *ring* provider cut to the Mozilla "intermediate" profile: the TLS 1.3
/// suites, and for TLS 1.2 only ECDHE with AES-GCM or ChaCha20-Poly1305 (the
/// profile's DHE suites rustls does not implement); X25519, P-256, P-384.
/// (ring has no post-quantum key exchange, hence rustls' deprecation of its
/// default provider; the Mozilla profile does not ask for one.)
#[allow(deprecated)]
pub(crate) fn provider() -> CryptoProvider {
    use rustls::crypto::ring::{cipher_suite as cs, default_provider, kx_group};
    CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..default_provider()
    }
}

impl TlsServer {
    /// Reads and checks every certificate of `tls` and builds the server
    /// configuration.
    pub fn load(tls: &TlsConfig) -> Result<Self, TlsError> {
        let provider = Arc::new(provider());
        let mut entries = Vec::new();
        let mut certs = Vec::new();
        for pair in tls.pairs() {
            let (info, key) = load_pair(&pair.cert, &pair.key, &provider)?;
            entries.push((info.names.clone(), Arc::new(key)));
            certs.push(info);
        }
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver { entries }));
        config.alpn_protocols = super::ALPN.iter().map(|p| p.to_vec()).collect();
        // After the handshake the keys move to our record layer (`records`).
        config.enable_secret_extraction = true;
        // Resumption by stateless tickets (encrypted with keys rotated every 6 hours,
        // per process): a returning client resumes without the server keeping
        // anything per client, however many there are.
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Self {
            config: Arc::new(config),
            certs,
        })
    }
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// One certificate chain and its key, checked to belong together.
fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<(CertInfo, CertifiedKey), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, e))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    };
    let info = describe(cert, leaf)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Key {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason: "no PEM private key in it".into(),
        },
        e => file_error(key, e),
    })?;
    let certified = CertifiedKey::from_der(chain, key_der, provider).map_err(|e| {
        let reason = match e {
            rustls::Error::InconsistentKeys(_) => "the key is not the certificate's".into(),
            e => format!("unusable key: {e}"),
        };
        TlsError::Key {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason,
        }
    })?;
    Ok((info, certified))
}

/// The names and expiry of a leaf certificate.
pub fn describe(path: &Path, leaf: &[u8]) -> Result<CertInfo, TlsError> {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let bad = |e: x509_cert::der::Error| TlsError::Certificate {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let parsed = x509_cert::Certificate::from_der(leaf).map_err(bad)?;
    let tbs = parsed.tbs_certificate();
    let not_after = tbs.validity().not_after.to_unix_duration().as_secs();
    let mut names = Vec::new();
    if let Some((_, san)) = tbs.get_extension::<SubjectAltName>().map_err(bad)? {
        for n in san.0 {
            if let GeneralName::DnsName(d) = n {
                names.push(d.to_string().to_ascii_lowercase());
            }
        }
    }
    Ok(CertInfo {
        path: path.to_owned(),
        names,
        not_after,
    })
}

/// Picks the certificate for a ClientHello: the first whose names cover its SNI
/// name (exactly, or one label under a `*.` wildcard), else the first one.
#[derive(Debug)]
struct SniResolver {
    entries: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello.server_name().and_then(|sni| {
            self.entries
                .iter()
                .find(|(names, _)| names.iter().any(|n| covers(n, sni)))
        });
        chosen.or(self.entries.first()).map(|(_, k)| k.clone())
    }
}

/// Whether certificate name `pattern` covers `host` (ASCII case-insensitive; a
/// wildcard only as the whole leftmost label).
pub(crate) fn covers(pattern: &str, host: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix));
    }
    pattern.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_matching() {
        assert!(covers("chat.example.com", "Chat.Example.com"));
        assert!(covers("*.example.com", "a.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", ".example.com"));
        assert!(!covers("example.com", "other.com"));
    }

    /// A TLS 1.3 server answers the client's first key share, so the order only
    /// matters for our own clients (the SDK, storm): X25519 first, as browsers and
    /// OpenSSL offer it (ring's P-384 costs about five times as much CPU).
    #[test]
    fn clients_offer_x25519_then_p256_then_p384() {
        let names: Vec<_> = provider().kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            names,
            [
                rustls::NamedGroup::X25519,
                rustls::NamedGroup::secp256r1,
                rustls::NamedGroup::secp384r1
            ]
        );
    }

    #[test]
    fn the_profile_is_tls12_ecdhe_aead_and_tls13() {
        let p = provider();
        assert_eq!(p.cipher_suites.len(), 9);
        for s in &p.cipher_suites {
            let name = format!("{:?}", s.suite());
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
            assert!(name.contains("GCM") || name.contains("CHACHA20"), "{name}");
        }
    }
}
