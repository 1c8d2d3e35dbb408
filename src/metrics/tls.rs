//! TLS on the client listener: handshakes per reactor, and the certificates in
//! force (their expiry, failed reloads) for the whole daemon.

use std::sync::Mutex;

use super::Counter;
use crate::tls::FAILURE_REASONS;

/// Protocol versions counted by name, in slot order.
pub const TLS_VERSIONS: [&str; 2] = ["1.2", "1.3"];

/// One reactor's TLS counters.
#[derive(Debug, Default)]
pub struct TlsMetrics {
    /// Handshakes completed, by version ([`TLS_VERSIONS`]).
    pub handshakes: [Counter; TLS_VERSIONS.len()],
    /// Handshakes (or records after them) that failed, by reason
    /// ([`FAILURE_REASONS`]).
    pub failures: [Counter; FAILURE_REASONS.len()],
}

impl TlsMetrics {
    /// Counts one completed handshake.
    pub fn count_handshake(&self, version: Option<&str>) {
        let i = TLS_VERSIONS.iter().position(|v| Some(*v) == version);
        if let Some(c) = i.and_then(|i| self.handshakes.get(i)) {
            c.inc();
        }
    }

    /// Counts one failure in slot `reason`.
    pub fn count_failure(&self, reason: usize) {
        if let Some(c) = self.failures.get(reason) {
            c.inc();
        }
    }
}

/// The certificates in force and how their reloads went.
#[derive(Debug, Default)]
pub struct CertificateMetrics {
    /// (certificate file, notAfter in Unix seconds), in configuration order.
    pub expiry: Mutex<Vec<(String, u64)>>,
    /// Reloads whose certificates could not be used (the old ones stayed).
    pub reload_failures: Counter,
}

impl CertificateMetrics {
    /// Records the certificates now in force.
    pub fn set(&self, certs: &[crate::tls::CertInfo]) {
        let v = certs
            .iter()
            .map(|c| (c.path.display().to_string(), c.not_after))
            .collect();
        *self.expiry.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }
}
