//! Connections behind a PROXY protocol header (`proxy_protocol = true` on a
//! listener): the source must be one of `trusted_proxies`, its first bytes must be a
//! v1 or v2 header (within `heartbeat.handshake_timeout`), and the client the header
//! names then stands for the connection: per-IP limits, the visitor-token and login
//! rate limits (both keyed by `Conn::ip_key`), logs, and the worker's
//! `Event::Opened { peer }`. v2 `LOCAL` and v1 `UNKNOWN` keep the proxy's address.
//!
//! Until the header is read the connection counts only against
//! `limits.max_connections`: the proxy's own address is not a client's and must not
//! use up the per-IP allowance of anyone.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Core;
use crate::handoff::{CloseReason, Event};
use crate::metrics::Reject;
use crate::protocol::ErrorCode;
use crate::proxy::{self, Cidr, ProxyError, Step};
use crate::reactor::admission::IpKey;
use crate::reactor::conn::{ListenerKind, Phase};
use crate::reactor::sys::Driver;

/// One listener's PROXY protocol rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProxyRule {
    /// Who may connect (`trusted_proxies`).
    pub trusted: Vec<Cidr>,
    /// `proxy_max_header_bytes`.
    pub max_header_bytes: usize,
}

/// The rules of the listeners that take PROXY headers (`None`: that listener does not).
#[derive(Debug, Clone, Default)]
pub(crate) struct ProxyListeners {
    pub client: Option<Arc<ProxyRule>>,
    pub echo: Option<Arc<ProxyRule>>,
}

impl ProxyListeners {
    /// The rules of `c`'s listeners.
    pub fn from_config(c: &crate::config::Config) -> Self {
        let rule = |l: &crate::config::ListenerConfig| {
            l.proxy_protocol.then(|| {
                Arc::new(ProxyRule {
                    trusted: l.trusted_proxies.clone(),
                    max_header_bytes: l.proxy_max_header_bytes,
                })
            })
        };
        Self {
            client: rule(&c.listeners.client),
            echo: c.listeners.echo.as_ref().and_then(rule),
        }
    }

    /// The rule of a listener kind (the echo listener serves `Echo` and `WsEcho`).
    pub fn of(&self, kind: ListenerKind) -> Option<&ProxyRule> {
        match kind {
            ListenerKind::Client => self.client.as_deref(),
            ListenerKind::Echo | ListenerKind::WsEcho => self.echo.as_deref(),
        }
    }
}

impl Core {
    /// Admission at accept on a PROXY listener: a trusted source, the accept rate
    /// and the total; the per-IP count waits for the header ([`Core::proxy_data`]).
    /// The key returned is the proxy's, counted nowhere yet.
    pub(super) fn admit_proxy(&mut self, kind: ListenerKind, peer: SocketAddr) -> Option<IpKey> {
        let now = self.now;
        let trusted = self
            .settings
            .proxy
            .of(kind)
            .is_some_and(|rule| proxy::trusted(&rule.trusted, peer.ip()));
        let verdict = if !trusted {
            Err(Reject::UntrustedProxy)
        } else if !self.links.bucket.take(now) {
            Err(Reject::AcceptRate)
        } else {
            self.links.limits.admit_total()
        };
        match verdict {
            Ok(()) => Some(self.links.limits.key(peer.ip())),
            Err(why) => {
                self.links.stats.count_reject(why);
                self.reject_log.note(self.id, why, peer.ip(), now);
                None
            }
        }
    }

    /// Input of a connection still waiting for its PROXY header: collects it (in the
    /// connection's spill, bounded by the header's own bound), and once complete
    /// admits the client it names and hands what follows to the connection's own
    /// protocol.
    pub(super) fn proxy_data(&mut self, drv: &mut impl Driver, slot: usize, data: &[u8]) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let max = self
            .settings
            .proxy
            .of(c.kind)
            .map_or(0, |r| r.max_header_bytes);
        let spilled = !c.spill.is_empty();
        let step = if spilled {
            // At most the bound plus one read is ever held: parsing refuses more.
            c.spill.extend_from_slice(data);
            proxy::parse(&c.spill, max)
        } else {
            proxy::parse(data, max)
        };
        let (header, len) = match step {
            Ok(Step::NeedMore) => {
                if !spilled {
                    c.spill.extend_from_slice(data);
                }
                return;
            }
            Ok(Step::Done { header, len }) => (header, len),
            Err(e) => return self.proxy_refused(drv, slot, e.reason(), Some(e)),
        };
        // What follows the header: in the spill if the header came in pieces, else
        // in this read (not copied).
        let spilled_rest = spilled.then(|| {
            let mut all = c.spill.take();
            all.drain(..len.min(all.len()));
            all
        });
        let proxy_peer = c.stream.peer_addr().ok();
        let peer = header.source().or(proxy_peer);
        let key = match header.source() {
            Some(s) => self.links.limits.key(s.ip()),
            None => c.ip_key,
        };
        // The total was counted at accept; now the client's address.
        if let Err(why) = self.links.limits.admit_ip(key) {
            let now = self.now;
            self.links.stats.count_reject(why);
            if let Some(p) = peer {
                self.reject_log.note(self.id, why, p.ip(), now);
            }
            // The connection counts only in the total: released as such.
            self.release(drv, slot, CloseReason::Server);
            return;
        }
        let now = self.now;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        c.awaiting_proxy = false;
        c.ip_key = key;
        let (kind, generation) = (c.kind, c.generation);
        if kind != ListenerKind::Client && kind != ListenerKind::WsEcho {
            // The raw echo is established from the header on.
            c.phase = Phase::Established;
            c.mark = now;
        }
        self.links.stats.proxy_headers.inc();
        tracing::debug!(
            reactor = self.id,
            slot,
            client = ?peer,
            proxy = ?proxy_peer,
            ?header,
            "PROXY header read"
        );
        if kind == ListenerKind::Client {
            // A socket whose peer is unknown fails its next read anyway; the worker
            // still hears of it, so that its `Closed` has a session to end.
            let peer = peer.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            let id = self.conn_id(slot, generation);
            self.tell_worker(id, Event::Opened { conn: id, peer });
            if let Some(c) = self.conns.get_mut(slot) {
                c.announced = true;
            }
        }
        let rest = match &spilled_rest {
            Some(v) => v.as_slice(),
            None => data.get(len..).unwrap_or_default(),
        };
        if !rest.is_empty() {
            self.on_payload(drv, slot, rest, None);
        }
    }

    /// The handshake deadline passed with no complete PROXY header.
    pub(super) fn proxy_timed_out(&mut self, drv: &mut impl Driver, slot: usize) {
        self.proxy_refused(drv, slot, "timeout", None);
    }

    /// Closes a connection whose PROXY header is bad or late: counted by reason,
    /// logged (at most a line a second), no farewell (the peer is a proxy, not a
    /// protocol client).
    fn proxy_refused(
        &mut self,
        drv: &mut impl Driver,
        slot: usize,
        reason: &'static str,
        error: Option<ProxyError>,
    ) {
        self.links.stats.count_proxy_error(reason);
        let code = if error.is_some() {
            ErrorCode::BadRequest
        } else {
            ErrorCode::HandshakeTimeout
        };
        if let Some(held_back) = self.proxy_log.pass(self.now.as_ms()) {
            let proxy = self.conns.get(slot).and_then(|c| c.stream.peer_addr().ok());
            let error = error.map(|e| e.to_string());
            tracing::warn!(
                reactor = self.id,
                ?proxy,
                reason,
                error,
                lines_held_back = held_back,
                "closing a connection without a valid PROXY header"
            );
        }
        self.close_with(drv, slot, CloseReason::Error(code), None);
    }
}
