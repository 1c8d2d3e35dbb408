//! The console's login endpoints on the client port: `POST /console/v1/login`
//! (checks here, the password on a login thread, the token minted here when the
//! verdict comes back as [`crate::handoff::Command::ConsoleLogin`]) and `POST
//! /console/v1/refresh` (answered at once: an HMAC check and a signature).
//! Same-origin only: a page of another origin gets 403 and no CORS headers.

use std::time::{Duration, UNIX_EPOCH};

use crossbeam_channel::TrySendError;

use super::Core;
use crate::console::login::{MAX_LOGIN_BODY_BYTES, response_json};
use crate::console::{Account, LoginRequest, Outcome};
use crate::handoff::ConnId;
use crate::http::head::{Method, Request};
use crate::http::response::Response;
use crate::protocol::messages::role;
use crate::reactor::conn::Dialect;
use crate::reactor::console_desk::{REFRESH_PATH, bearer};
use crate::reactor::sys::Driver;
use crate::reactor::visitor_desk::json_or_text;
use crate::service::LoginJob;

/// What a request came to: an answer now, or a login handed to the login threads.
enum Step {
    /// Answer with this; count the outcome, log the reason of a refusal.
    Answer(Response, Outcome, String),
    /// The answer comes as `Command::ConsoleLogin`.
    Queued,
}

impl Core {
    /// Answers a request for the endpoints (`body`: what followed the head), or
    /// `None` when a login went to the login threads: the connection then waits
    /// ([`Dialect::HttpWait`]) for [`Core::console_verdict`].
    pub(super) fn console_request(
        &mut self,
        slot: usize,
        req: &Request,
        body: &[u8],
    ) -> Option<Response> {
        match self.console_step(slot, req, body) {
            Step::Queued => {
                if let Some(c) = self.conns.get_mut(slot) {
                    c.dialect = Dialect::HttpWait;
                }
                None
            }
            Step::Answer(response, outcome, why) => {
                self.console_log(outcome, response.status, &why);
                Some(response.header("Cache-Control", "no-store"))
            }
        }
    }

    /// A login's password was checked: mint the token (or refuse) and answer.
    pub(super) fn console_verdict(
        &mut self,
        drv: &mut impl Driver,
        conn: ConnId,
        verdict: Result<Box<Account>, Outcome>,
    ) {
        let Some(slot) = self.open_slot_of_id(conn) else {
            return;
        };
        if self.conns.get(slot).map(|c| c.dialect) != Some(Dialect::HttpWait) {
            return;
        }
        let (response, outcome, why) = match verdict {
            Ok(account) => match self.console_token(&account) {
                Ok(body) => (
                    Response::new(200, "application/json", body),
                    Outcome::Ok,
                    String::new(),
                ),
                Err(e) => (Response::error(500, &e), Outcome::Failed, e),
            },
            Err(outcome) => (
                Response::error(401, "wrong user name or password"),
                outcome,
                outcome.label().to_owned(),
            ),
        };
        self.console_log(outcome, response.status, &why);
        let response = response.header("Cache-Control", "no-store");
        self.links.stats.web.count_response(response.status);
        self.answer_bytes_and_close(drv, slot, response.to_bytes(false));
    }

    fn console_step(&mut self, slot: usize, req: &Request, body: &[u8]) -> Step {
        let refuse = |status: u16, why: &str, outcome: Outcome| {
            Step::Answer(Response::error(status, why), outcome, why.to_owned())
        };
        // A refusal with one more header.
        let refuse_with =
            |status: u16, why: &str, outcome: Outcome, header: (&'static str, String)| {
                Step::Answer(
                    Response::error(status, why).header(header.0, header.1),
                    outcome,
                    why.to_owned(),
                )
            };
        if !self
            .console_desk
            .origins
            .allows(req.origin.as_deref(), req.host.as_deref())
        {
            return refuse(
                403,
                "the console logs in from its own origin only",
                Outcome::NotAllowed,
            );
        }
        if req.method != Method::Post {
            let allow = ("Allow", "POST".to_owned());
            return refuse_with(405, "POST only", Outcome::BadRequest, allow);
        }
        if self.console_desk.links.is_none() || self.visitor_desk.signer.is_none() {
            return refuse(503, "no key to sign console tokens with", Outcome::Failed);
        }
        if req.path == REFRESH_PATH {
            return self.console_refresh(req);
        }
        let Some(length) = req.content_length.filter(|_| !req.chunked) else {
            return refuse(411, "a Content-Length is required", Outcome::BadRequest);
        };
        if length > MAX_LOGIN_BODY_BYTES as u64 {
            let why = format!("the body is at most {MAX_LOGIN_BODY_BYTES} bytes");
            return refuse(413, &why, Outcome::BadRequest);
        }
        if !json_or_text(req.content_type.as_deref()) {
            let why = "Content-Type: application/json";
            return refuse(415, why, Outcome::BadRequest);
        }
        let Some(ip) = self.conns.get(slot).map(|c| c.ip_key) else {
            return refuse(500, "connection gone", Outcome::Failed);
        };
        if let Err(wait) = self.console_desk.rates.take(ip, self.now) {
            let secs = wait
                .as_secs()
                .saturating_add(u64::from(wait.subsec_nanos() > 0))
                .max(1);
            let why = "too many logins from this address";
            let retry = ("Retry-After", secs.to_string());
            return refuse_with(429, why, Outcome::RateLimited, retry);
        }
        let body = body
            .get(..usize::try_from(length).unwrap_or(usize::MAX))
            .unwrap_or(body);
        let request = match LoginRequest::parse(body) {
            Ok(r) => r,
            Err(e) => return refuse(400, &e.to_string(), Outcome::BadRequest),
        };
        let Some(generation) = self.conns.get(slot).map(|c| c.generation) else {
            return refuse(500, "connection gone", Outcome::Failed);
        };
        let conn = self.conn_id(slot, generation);
        let Some(links) = &self.console_desk.links else {
            return refuse(503, "no console logins here", Outcome::Failed);
        };
        match links.jobs.try_send(LoginJob { conn, request }) {
            Ok(()) => Step::Queued,
            Err(TrySendError::Full(_)) => {
                let why = "too many logins in progress (console.login_queue); try again";
                refuse_with(503, why, Outcome::Busy, ("Retry-After", "1".to_owned()))
            }
            Err(TrySendError::Disconnected(_)) => {
                refuse(503, "the server is shutting down", Outcome::Failed)
            }
        }
    }

    /// `POST /console/v1/refresh`: a console token still valid (and its user still
    /// configured) earns a new one, with the user's claims as configured now.
    fn console_refresh(&mut self, req: &Request) -> Step {
        let refuse = |why: &str| {
            Step::Answer(
                Response::error(401, why).header("WWW-Authenticate", "Bearer"),
                Outcome::RefreshRefused,
                why.to_owned(),
            )
        };
        let Some(token) = bearer(req.authorization.as_deref()) else {
            return refuse("Authorization: Bearer <console token> is required");
        };
        let (Some(verifier), Some(links)) = (&self.visitor_desk.signer, &self.console_desk.links)
        else {
            return refuse("no console logins here");
        };
        let now = (self.settings.web.visitors.wall)();
        let at = UNIX_EPOCH + Duration::from_millis(now.0);
        let identity = match verifier.verify(token, at) {
            Ok(v) => v,
            Err(e) => return refuse(&format!("the token does not verify: {e}")),
        };
        let account = match links.users.account(&identity.user) {
            Some(a)
                if (identity.role == role::AGENT || identity.role == role::ADMIN)
                    && a.tenant == identity.tenant =>
            {
                a.clone()
            }
            // A token of the operator's own sign-on is refreshed there.
            _ => return refuse("not a console user's token"),
        };
        match self.console_token(&account) {
            Ok(body) => Step::Answer(
                Response::new(200, "application/json", body),
                Outcome::Refreshed,
                String::new(),
            ),
            Err(e) => Step::Answer(Response::error(500, &e), Outcome::Failed, e),
        }
    }

    /// The response body with a new token for `account`.
    fn console_token(&self, account: &Account) -> Result<Vec<u8>, String> {
        let (Some(verifier), Some(links)) = (&self.visitor_desk.signer, &self.console_desk.links)
        else {
            return Err("no key to sign console tokens with".into());
        };
        let now = (self.settings.web.visitors.wall)();
        let claims = account.claims(now, links.ttl);
        let token = verifier
            .mint(&claims, None)
            .map_err(|e| format!("cannot sign: {e}"))?;
        Ok(response_json(
            &token,
            claims.exp.saturating_mul(1000),
            account,
        ))
    }

    /// Counts an outcome; logs a refusal (at most once a second per outcome).
    fn console_log(&mut self, outcome: Outcome, status: u16, why: &str) {
        self.links.stats.web.count_console(outcome.slot());
        // Logins are logged by the login thread, with the user name.
        if matches!(
            outcome,
            Outcome::Ok | Outcome::Refreshed | Outcome::BadPassword | Outcome::UnknownUser
        ) {
            return;
        }
        let now_ms = self.now.as_ms();
        if let Some(held) = self
            .console_desk
            .logs
            .get_mut(outcome.slot())
            .and_then(|gate| gate.pass(now_ms))
        {
            tracing::info!(
                reactor = self.id,
                outcome = outcome.label(),
                status,
                why,
                held_back = held,
                "console login refused"
            );
        }
    }
}
