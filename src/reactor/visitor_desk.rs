//! The visitor-token endpoint's state outside a connection's handling: the sites and
//! their signing (shared by the reactors, fixed at start) and one reactor's
//! per-address rate table (see `core/web_visitors.rs` for the endpoint itself).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Verifier;
use crate::auth::visitor::{MAX_BODY_BYTES, Outcome, RateTable, Site};
use crate::clock::UnixMs;
use crate::http::head::{Method, Request};
use crate::log_gate::LogGate;
use crate::reactor::admission::IpKey;
use crate::ws::OriginPolicy;

/// Where the endpoint lives: `PREFIX` + site + `SUFFIX`.
pub(crate) const PREFIX: &str = "/web/v1/sites/";
pub(crate) const SUFFIX: &str = "/visitor-token";

/// The sites and how their tokens are made (`[web]`, `[[web.sites]]`); shared by
/// the reactors, never changed after start.
pub(crate) struct Visitors {
    pub sites: HashMap<String, SiteEntry>,
    /// The start's signing keys (`None`: none usable); each reactor's [`Desk`] keeps
    /// its own copy, which a reload replaces.
    pub verifier: Option<Arc<Verifier>>,
    pub ttl: Duration,
    pub per_minute: u32,
    pub max_entries: usize,
    /// The wall clock tokens are dated with (an input: tests replace it).
    pub wall: fn() -> UnixMs,
}

pub(crate) struct SiteEntry {
    pub site: Site,
    pub origins: OriginPolicy,
    /// The body of `GET /web/v1/sites/{site}/widget` (built once at start).
    pub widget: bytes::Bytes,
}

impl std::fmt::Debug for Visitors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Visitors")
            .field("sites", &self.sites.len())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Visitors {
    /// The sites of `c` (secret files read; `check-config` has checked them, a site
    /// whose secret has gone since is logged and left out).
    pub fn from_config(c: &crate::config::Config) -> Self {
        let w = &c.web;
        let mut sites = HashMap::new();
        for cfg in &w.sites {
            let origins = OriginPolicy::parse(&cfg.allowed_origins);
            match (Site::from_config(cfg, &c.routing.default_group), origins) {
                (Ok(site), Ok(origins)) => {
                    let widget = super::web_widget::settings_json(cfg, &site, &c.api);
                    sites.insert(
                        cfg.id.clone(),
                        SiteEntry {
                            site,
                            origins,
                            widget,
                        },
                    );
                }
                (Err(e), _) => {
                    tracing::error!(site = %cfg.id, error = %e, "web site left out");
                }
                (_, Err(e)) => {
                    tracing::error!(site = %cfg.id, error = %e, "web site left out");
                }
            }
        }
        // The same keys sign console tokens (`[[console.users]]`).
        let verifier = if sites.is_empty() && c.console.users.is_empty() {
            None
        } else {
            signer(c)
        };
        Self {
            sites,
            verifier,
            ttl: w.visitor_token_ttl,
            per_minute: w.visitor_tokens_per_minute,
            max_entries: w.max_rate_entries,
            wall: crate::clock::unix_ms,
        }
    }
}

/// What signs visitor tokens under the keys of `c` (`None`, logged: no usable key).
pub(crate) fn signer(c: &crate::config::Config) -> Option<Arc<Verifier>> {
    match Verifier::from_config_without_creating(c) {
        Ok(v) => v.map(Arc::new),
        Err(e) => {
            tracing::error!(error = %e, "no key to sign visitor tokens with");
            None
        }
    }
}

/// One reactor's state for the endpoint: the per-address rate and log gates.
#[derive(Debug)]
pub(crate) struct Desk {
    /// Mints the tokens (`None`: no usable key; the endpoint answers 503): the
    /// start's keys, then those of the last reload.
    pub signer: Option<Arc<Verifier>>,
    pub rates: RateTable<IpKey>,
    /// One gate per outcome (refusals are logged at most once a second each).
    pub logs: [LogGate; Outcome::ALL.len()],
}

impl Desk {
    /// The state for `visitors`.
    pub fn new(visitors: &Visitors) -> Self {
        Self {
            signer: visitors.verifier.clone(),
            rates: RateTable::new(visitors.per_minute, visitors.max_entries),
            logs: Default::default(),
        }
    }
}

/// Whether `req` is for the endpoint.
pub(crate) fn is_visitor_path(path: &str) -> bool {
    path.starts_with(PREFIX)
}

/// The body length to wait for before answering `req`: a `POST` to the endpoint
/// with a `Content-Length` the endpoint takes; `None` for anything answered from the
/// head alone (including refusals of the length).
pub(crate) fn body_wanted(req: &Request) -> Option<usize> {
    if !is_visitor_path(&req.path) || req.method != Method::Post || req.chunked {
        return None;
    }
    let n = usize::try_from(req.content_length?).ok()?;
    (n <= MAX_BODY_BYTES).then_some(n)
}

/// Whether the `Content-Type` is one the endpoint reads: JSON, or `text/plain`
/// (what a page's `fetch` may send without a preflight).
pub(crate) fn json_or_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json") || essence.eq_ignore_ascii_case("text/plain")
}
