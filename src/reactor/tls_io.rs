//! TLS in the reactor core, for both backends: a client-listener connection whose
//! first byte is a TLS handshake record (0x16) gets a [`TlsSession`]; what it reads
//! is decrypted here and the plaintext goes through the usual dialect detection
//! (binary frames, HTTP, WebSocket), and everything the core writes to it is
//! encrypted in [`Core::write_or_queue`] (records are queued whole, like frames).
//! Handshakes run on the reactor thread: about 0.2 ms of CPU each with X25519 and
//! an ECDSA P-256 certificate, ~0.9 ms when the client's first key share is P-384
//! (ring's P-384 is generic code; README "TLS on the client port", figures).

use bytes::Bytes;

use super::Core;
use crate::handoff::CloseReason;
use crate::reactor::conn::{Dialect, Phase};
use crate::reactor::sys::Driver;
use crate::tls::HANDSHAKE_RECORD;
use crate::tls::session::{TlsFailure, TlsSession};

/// Capacity the per-reactor TLS buffers keep between reads (a burst past it is
/// served, then the memory returned).
const KEEP_BYTES: usize = 256 * 1024;

/// One reactor's TLS work buffers.
#[derive(Debug, Default)]
pub(crate) struct TlsBuffers {
    scratch: Vec<u8>,
    plain: Vec<u8>,
    wire: Vec<u8>,
}

impl TlsBuffers {
    fn trim(&mut self) {
        for b in [&mut self.scratch, &mut self.plain, &mut self.wire] {
            b.clear();
            if b.capacity() > KEEP_BYTES {
                *b = Vec::new();
            }
        }
    }
}

impl Core {
    /// Starts TLS on a connection whose first bytes `data` are a TLS handshake
    /// record, if the client listener has certificates; false otherwise (the
    /// bytes then meet the usual dialect detection).
    pub(super) fn start_tls(&mut self, slot: usize, data: &[u8]) -> bool {
        let Some(config) = self.settings.tls.clone() else {
            return false;
        };
        let Some(c) = self.conns.get_mut(slot) else {
            return false;
        };
        if c.dialect != Dialect::Unknown || !c.spill.is_empty() {
            return false;
        }
        if data.first() != Some(&HANDSHAKE_RECORD) {
            return false;
        }
        match TlsSession::new(config) {
            Ok(s) => {
                c.tls = Some(Box::new(s));
                true
            }
            Err(e) => {
                // A configuration rustls accepted at start; not expected.
                tracing::error!(reactor = self.id, error = %e, "cannot start a TLS session");
                false
            }
        }
    }

    /// TLS bytes arrived: handshake answers are queued, plaintext handed on.
    pub(super) fn on_tls_data(&mut self, drv: &mut impl Driver, slot: usize, data: &[u8]) {
        let mut bufs = std::mem::take(&mut self.tls_bufs);
        self.tls_read(drv, slot, data, &mut bufs);
        bufs.trim();
        self.tls_bufs = bufs;
    }

    fn tls_read(&mut self, drv: &mut impl Driver, slot: usize, data: &[u8], bufs: &mut TlsBuffers) {
        let Some(tls) = self.conns.get_mut(slot).and_then(|c| c.tls.as_mut()) else {
            return;
        };
        let TlsBuffers {
            scratch,
            plain,
            wire,
        } = bufs;
        let result = tls.read(data, scratch, plain, wire);
        let version = tls.version();
        if !wire.is_empty() {
            // A handshake flight (certificate chain) may exceed the usual bound.
            let bound = self
                .settings
                .live
                .max_pending_bytes
                .saturating_add(u32::try_from(wire.len()).unwrap_or(u32::MAX));
            self.queue_wire(drv, slot, Bytes::copy_from_slice(wire), bound);
        }
        match result {
            Err(e) => self.tls_failed(drv, slot, &e),
            Ok(outcome) => {
                if outcome.handshake_done {
                    self.stats().tls.count_handshake(version);
                }
                if !plain.is_empty() && self.conns.get(slot).is_some() {
                    self.on_client_data(drv, slot, plain);
                }
            }
        }
    }

    /// A TLS failure closes the connection (its alert, if any, is queued).
    fn tls_failed(&mut self, drv: &mut impl Driver, slot: usize, e: &TlsFailure) {
        let reason = e.reason();
        self.stats().tls.count_failure(reason);
        if let Some(held_back) = self.tls_log.pass(self.now.as_ms()) {
            let peer = self.conns.get(slot).and_then(|c| c.stream.peer_addr().ok());
            tracing::debug!(
                reactor = self.id,
                ?peer,
                error = %e,
                reason = crate::tls::FAILURE_REASONS.get(reason).copied().unwrap_or("other"),
                lines_held_back = held_back,
                "TLS failed; closing the connection"
            );
        }
        if let Some(tls) = self.conns.get_mut(slot).and_then(|c| c.tls.as_mut()) {
            tls.abandon();
        }
        self.close_with(drv, slot, CloseReason::TlsError, None);
    }

    /// `data` as TLS records for connection `slot` (`None`: nothing to queue now;
    /// held for the handshake, or dropped because the session takes no more).
    pub(super) fn seal(
        &mut self,
        drv: &mut impl Driver,
        slot: usize,
        data: &[u8],
    ) -> Option<Bytes> {
        let c = self.conns.get_mut(slot)?;
        let closing = c.phase == Phase::Closing;
        let tls = c.tls.as_mut()?;
        // A farewell for a handshake that never completed cannot be sent.
        if closing && !tls.established() {
            return None;
        }
        match tls.seal(data) {
            Ok(records) => records,
            Err(TlsFailure::KeyLimit) if closing => None,
            Err(e @ TlsFailure::KeyLimit) => {
                // TLS 1.2 near its key's confidentiality limit: the session still
                // sends close_notify (`close_with` queues it), nothing else.
                self.stats().tls.count_failure(e.reason());
                tracing::info!(
                    reactor = self.id,
                    "TLS 1.2 key reached its confidentiality limit; closing"
                );
                self.close_with(drv, slot, CloseReason::TlsError, None);
                None
            }
            Err(e) => {
                self.tls_failed(drv, slot, &e);
                None
            }
        }
    }

    /// Queues close_notify on a TLS connection that is closing (after its farewell).
    pub(super) fn queue_close_notify(&mut self, drv: &mut impl Driver, slot: usize) {
        let Some(alert) = self
            .conns
            .get_mut(slot)
            .and_then(|c| c.tls.as_mut())
            .and_then(|t| t.close_notify())
        else {
            return;
        };
        let bound = self
            .settings
            .live
            .max_pending_bytes
            .saturating_add(u32::try_from(alert.len()).unwrap_or(u32::MAX));
        let queued = self.conns.get(slot).map_or(0, |c| c.pending);
        self.queue_wire(drv, slot, alert, bound.max(queued.saturating_add(64)));
    }
}
