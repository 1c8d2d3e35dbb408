//! The console login endpoints' state outside a connection's handling: what every
//! reactor shares (the users, the login threads' queue) and one reactor's
//! per-address rate table and log gates (see `core/web_console.rs` for the endpoints
//! themselves).

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::auth::visitor::RateTable;
use crate::console::{Outcome, Users};
use crate::http::head::{Method, Request};
use crate::log_gate::LogGate;
use crate::reactor::admission::IpKey;
use crate::service::LoginJob;
use crate::ws::OriginPolicy;

/// `POST` a username and password, get a token.
pub(crate) const LOGIN_PATH: &str = "/console/v1/login";
/// `POST` with a valid console token, get a new one.
pub(crate) const REFRESH_PATH: &str = "/console/v1/refresh";

/// What every reactor shares for the console's logins (fixed at start).
#[derive(Debug, Clone)]
pub(crate) struct ConsoleLinks {
    /// `[[console.users]]`.
    pub users: Arc<Users>,
    /// The login threads' queue (`console.login_queue` deep).
    pub jobs: Sender<LoginJob>,
    /// `console.token_ttl`.
    pub ttl: Duration,
    /// `console.logins_per_minute`.
    pub per_minute: u32,
    /// `console.max_rate_entries`.
    pub max_entries: usize,
}

/// One reactor's state for the endpoints.
#[derive(Debug)]
pub(crate) struct Desk {
    /// `None`: no `[console]` wiring (reactor unit tests); every login is 503.
    pub links: Option<ConsoleLinks>,
    pub rates: RateTable<IpKey>,
    /// One gate per outcome (refusals are logged at most once a second each).
    pub logs: [LogGate; Outcome::ALL.len()],
    /// Same-origin only: a browser's `Origin` must be the request's `Host`.
    pub origins: OriginPolicy,
}

impl Desk {
    /// The state for `links`.
    pub fn new(links: Option<ConsoleLinks>) -> Self {
        let (per_minute, max_entries) = links
            .as_ref()
            .map_or((1, 1), |l| (l.per_minute, l.max_entries));
        Self {
            links,
            rates: RateTable::new(per_minute, max_entries),
            logs: Default::default(),
            origins: OriginPolicy::same_host(),
        }
    }
}

/// Whether `path` is one of the endpoints.
pub(crate) fn is_console_path(path: &str) -> bool {
    path == LOGIN_PATH || path == REFRESH_PATH
}

/// The body length to wait for before answering `req`: a `POST` to the login
/// endpoint with a `Content-Length` it takes; `None` for anything answered from the
/// head alone (including refusals of the length).
pub(crate) fn body_wanted(req: &Request) -> Option<usize> {
    if req.path != LOGIN_PATH || req.method != Method::Post || req.chunked {
        return None;
    }
    let n = usize::try_from(req.content_length?).ok()?;
    (n <= crate::console::login::MAX_LOGIN_BODY_BYTES).then_some(n)
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(Some("Bearer a.b.c")), Some("a.b.c"));
        assert_eq!(bearer(Some("bearer  a.b.c ")), Some("a.b.c"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer")), None);
        assert_eq!(bearer(None), None);
    }
}
