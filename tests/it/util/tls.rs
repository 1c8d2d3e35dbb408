//! TLS for the tests: a throwaway CA and the certificates it signs (made with
//! `rcgen` at test time, never stored), and a blocking rustls client that speaks the
//! binary protocol over TLS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use switchboard::config::{CertificatePair, TlsConfig};
use switchboard::frame;

use super::{Frame, REPLY_TIMEOUT, encode, kind};

/// A certificate authority for one test.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate.
    pub der: CertificateDer<'static>,
    /// Its certificate, PEM (what a `ca_file` holds).
    pub pem: String,
}

/// A certificate and its key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            der: cert.der().clone(),
            pem: cert.pem(),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid from a day
    /// ago for a year, or expired yesterday.
    pub fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let now = time::OffsetDateTime::now_utc();
        if expired {
            params.not_before = now - time::Duration::days(30);
            params.not_after = now - time::Duration::days(1);
        } else {
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(365);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client configuration trusting this CA only, offering `alpn` (rustls'
    /// defaults otherwise, so the server's profile meets an ordinary client).
    #[allow(deprecated)]
    pub fn client(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A client config offering only `version` and `suites` (ALPN `switchboard/1`).
    #[allow(deprecated)] // ring's provider: the daemon's, no post-quantum group
    pub fn client_only(
        &self,
        version: &'static rustls::SupportedProtocolVersion,
        suites: &[rustls::SupportedCipherSuite],
    ) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: suites.to_vec(),
            ..rustls::crypto::ring::default_provider()
        };
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"switchboard/1".to_vec()];
        Arc::new(config)
    }
}

impl Leaf {
    /// Writes the pair to `dir` as `<stem>.crt` and `<stem>.key`.
    pub fn write(&self, dir: &Path, stem: &str) -> CertificatePair {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        CertificatePair { cert, key }
    }
}

/// `[listeners.client.tls]` with the single pair.
pub fn single(pair: CertificatePair) -> TlsConfig {
    TlsConfig {
        cert: Some(pair.cert),
        key: Some(pair.key),
        certificates: Vec::new(),
    }
}

/// A TLS connection to the client port, speaking binary frames.
pub struct TlsClient {
    pub tls: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsClient {
    /// Connects and completes the TLS handshake with SNI `name` (an IP address
    /// sends no SNI).
    pub fn connect(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        name: &str,
    ) -> Result<Self, rustls::Error> {
        let sock = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT).unwrap();
        sock.set_nodelay(true).unwrap();
        sock.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        sock.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let conn = ClientConnection::new(config, name).unwrap();
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                return Err(
                    match e.into_inner().map(|i| i.downcast::<rustls::Error>()) {
                        Some(Ok(e)) => *e,
                        other => rustls::Error::General(format!("{other:?}")),
                    },
                );
            }
        }
        Ok(Self {
            tls,
            buf: Vec::new(),
        })
    }

    /// The certificate the server presented.
    pub fn peer_cert(&self) -> CertificateDer<'static> {
        self.tls.conn.peer_certificates().unwrap()[0].clone()
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).unwrap();
        self.tls.flush().unwrap();
    }

    pub fn send(&mut self, kind: u8, request_id: u32, payload: &[u8]) {
        self.write(&encode(kind, request_id, payload));
    }

    /// Reads one frame (fails the test on timeout, EOF or a TLS error).
    pub fn read_frame(&mut self) -> Frame {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Some(d) = frame::decode(&self.buf, 1 << 20).unwrap() {
                let f = Frame {
                    header: d.header,
                    payload: d.payload.to_vec(),
                };
                let n = d.consumed;
                self.buf.drain(..n);
                return f;
            }
            assert!(Instant::now() < deadline, "no frame in time");
            let mut chunk = [0u8; 16 * 1024];
            match self.tls.read(&mut chunk) {
                Ok(0) => panic!("EOF, expected a frame"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Sends `Hello`, expects `Welcome`.
    pub fn hello(&mut self) {
        self.send(kind::HELLO, 1, b"");
        let f = self.read_frame();
        assert_eq!(f.ksr(), (kind::WELCOME, 0, 1), "{f:?}");
    }

    /// One Ping/Pong round trip.
    pub fn ping(&mut self, request_id: u32) {
        self.send(kind::PING, request_id, b"tls");
        let f = self.read_frame();
        assert_eq!(f.ksr(), (kind::PONG, 0, request_id), "{f:?}");
    }

    /// Reads until the server closes; `Ok` only after a close_notify (rustls
    /// reports a bare TCP close as `UnexpectedEof`).
    pub fn read_to_close(&mut self) -> std::io::Result<Vec<u8>> {
        let mut all = Vec::new();
        self.tls
            .sock
            .set_read_timeout(Some(Duration::from_secs(5)))?;
        self.tls.read_to_end(&mut all)?;
        Ok(all)
    }
}
