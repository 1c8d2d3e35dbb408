//! TLS on the client listener (rustls 0.23 with the *ring* provider: already in the
//! tree through lettre and ureq, and built without the C/cmake toolchain aws-lc-rs
//! needs).
//!
//! - [`certs`]: the certificates from PEM files, SNI by each certificate's
//!   subjectAltName, their expiry; the rustls `ServerConfig` (TLS 1.2 and 1.3 only,
//!   the Mozilla "intermediate" suites, ALPN `switchboard/1` and `http/1.1`).
//! - [`session`]: one connection's TLS state, sans-IO: the handshake over rustls'
//!   unbuffered API, so an idle connection keeps no record or plaintext buffer.
//! - [`records`]: the record layer after the handshake, on the traffic keys rustls
//!   hands over (its connection is dropped), so an idle connection keeps only keys.

pub(crate) mod certs;
#[doc(hidden)]
pub mod fuzz_feed;
pub(crate) mod records;
pub(crate) mod session;

pub(crate) use certs::TlsServer;
pub use certs::{CertInfo, TlsError};

/// The ALPN protocol names the client listener accepts, in preference order; a
/// client that offers ALPN with none of them fails its handshake with a
/// `no_application_protocol` alert, one that offers none is accepted.
pub const ALPN: [&[u8]; 2] = [b"switchboard/1", b"http/1.1"];

/// The first byte of a TLS record carrying a handshake message (a ClientHello):
/// neither binary frames (`S`) nor an HTTP method start with it.
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// Why handshakes (or TLS records after them) failed, in slot order (the
/// `reason` label of `switchboard_tls_handshake_failures_total`).
pub const FAILURE_REASONS: [&str; 8] = [
    "no_application_protocol",
    "protocol_version",
    "handshake_failure",
    "bad_record",
    "decode_error",
    "alert_received",
    "unexpected_message",
    "other",
];

/// The failure slot ([`FAILURE_REASONS`]) of a rustls error.
pub(crate) fn failure_reason(e: &rustls::Error) -> usize {
    use rustls::{Error, PeerIncompatible};
    match e {
        Error::NoApplicationProtocol => 0,
        Error::PeerIncompatible(
            PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::Tls13RequiredForQuic
            | PeerIncompatible::SupportedVersionsExtensionRequired,
        ) => 1,
        Error::PeerIncompatible(_) | Error::NoCertificatesPresented => 2,
        Error::DecryptError | Error::EncryptError => 3,
        Error::InvalidMessage(_) | Error::PeerMisbehaved(_) => 4,
        Error::AlertReceived(_) => 5,
        Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => 6,
        _ => 7,
    }
}
