//! The visitor-token endpoint of the client port, `POST
//! /web/v1/sites/{site}/visitor-token` (and its CORS preflight): HTTP, CORS and the
//! per-address rate here; what a body earns is decided by the sans-IO
//! [`crate::auth::visitor::issue`].

use super::Core;
use crate::auth::visitor::{self, MAX_BODY_BYTES, Outcome, Signing, Site};
use crate::http::head::{Method, Request};
use crate::http::response::Response;
use crate::reactor::visitor_desk::{PREFIX, SUFFIX, Visitors, json_or_text};

impl Core {
    /// Answers a request for the endpoint (`body`: what followed the head).
    pub(super) fn visitor_request(&mut self, slot: usize, req: &Request, body: &[u8]) -> Response {
        let (response, outcome) = self.visitor_answer(slot, req, body);
        if let Some((outcome, why)) = outcome {
            self.links.stats.web.count_visitor(outcome.slot());
            let now_ms = self.now.as_ms();
            if matches!(
                outcome,
                Outcome::IssuedAnonymous | Outcome::IssuedIdentified
            ) {
                tracing::debug!(
                    reactor = self.id,
                    slot,
                    outcome = outcome.label(),
                    "visitor token"
                );
            } else if let Some(held) = self
                .visitor_desk
                .logs
                .get_mut(outcome.slot())
                .and_then(|gate| gate.pass(now_ms))
            {
                tracing::info!(
                    reactor = self.id,
                    outcome = outcome.label(),
                    status = response.status,
                    why = %why,
                    held_back = held,
                    "visitor token refused"
                );
            }
        }
        response
    }

    /// The response, and the outcome to count with a reason to log (none for a
    /// preflight).
    fn visitor_answer(
        &mut self,
        slot: usize,
        req: &Request,
        body: &[u8],
    ) -> (Response, Option<(Outcome, String)>) {
        let refuse = |status: u16, why: &str, outcome: Outcome| {
            (
                Response::error(status, why),
                Some((outcome, why.to_owned())),
            )
        };
        let web = self.settings.web.clone();
        let site_id = req
            .path
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_suffix(SUFFIX));
        let Some(entry) = site_id.and_then(|id| web.visitors.sites.get(id)) else {
            return refuse(404, "no such site", Outcome::BadRequest);
        };
        if !entry
            .origins
            .allows(req.origin.as_deref(), req.host.as_deref())
        {
            return refuse(403, "origin not allowed for this site", Outcome::NotAllowed);
        }
        // Every answer from here on may be read by the page that asked.
        let cors = |r: Response| match &req.origin {
            Some(o) => r
                .header("Access-Control-Allow-Origin", o.clone())
                .header("Vary", "Origin"),
            None => r.header("Vary", "Origin"),
        };
        let (response, outcome) = match req.method {
            Method::Options => (
                Response::new(204, "text/plain", &b""[..])
                    .header("Access-Control-Allow-Methods", "POST")
                    .header("Access-Control-Allow-Headers", "content-type")
                    .header("Access-Control-Max-Age", "600"),
                None,
            ),
            Method::Post => self.visitor_post(slot, &entry.site, req, body, &web.visitors),
            _ => {
                let (r, o) = refuse(405, "POST or OPTIONS only", Outcome::BadRequest);
                (r.header("Allow", "POST, OPTIONS"), o)
            }
        };
        (cors(response), outcome)
    }

    fn visitor_post(
        &mut self,
        slot: usize,
        site: &Site,
        req: &Request,
        body: &[u8],
        visitors: &Visitors,
    ) -> (Response, Option<(Outcome, String)>) {
        let refuse = |status: u16, why: String, outcome: Outcome| {
            (Response::error(status, &why), Some((outcome, why)))
        };
        let Some(length) = req.content_length.filter(|_| !req.chunked) else {
            return refuse(
                411,
                "a Content-Length is required".into(),
                Outcome::BadRequest,
            );
        };
        if length > MAX_BODY_BYTES as u64 {
            return refuse(
                413,
                format!("the body is at most {MAX_BODY_BYTES} bytes"),
                Outcome::BadRequest,
            );
        }
        if !json_or_text(req.content_type.as_deref()) {
            return refuse(
                415,
                "Content-Type: application/json (or text/plain)".into(),
                Outcome::BadRequest,
            );
        }
        let Some(ip) = self.conns.get(slot).map(|c| c.ip_key) else {
            return refuse(500, "connection gone".into(), Outcome::Failed);
        };
        if let Err(wait) = self.visitor_desk.rates.take(ip, self.now) {
            let secs = wait
                .as_secs()
                .saturating_add(u64::from(wait.subsec_nanos() > 0));
            let (r, o) = refuse(
                429,
                "too many visitor tokens from this address".into(),
                Outcome::RateLimited,
            );
            return (r.header("Retry-After", secs.max(1).to_string()), o);
        }
        let Some(verifier) = self.visitor_desk.signer.as_deref() else {
            return refuse(503, "no key to sign tokens with".into(), Outcome::Failed);
        };
        let mut random = [0u8; visitor::VISITOR_ID_RANDOM_BYTES];
        if let Err(e) = getrandom::getrandom(&mut random) {
            return refuse(500, format!("no random bytes: {e}"), Outcome::Failed);
        }
        let body = body
            .get(..usize::try_from(length).unwrap_or(usize::MAX))
            .unwrap_or(body);
        let signing = Signing {
            verifier,
            ttl: visitors.ttl,
        };
        match visitor::issue(site, body, (visitors.wall)(), random, signing) {
            Ok(issued) => (
                Response::new(200, "application/json", issued.to_json()),
                Some((issued.outcome, String::new())),
            ),
            Err(e) => refuse(e.status(), e.to_string(), e.outcome()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_or_text_bodies() {
        assert!(json_or_text(Some("application/json")));
        assert!(json_or_text(Some("Application/JSON; charset=utf-8")));
        assert!(json_or_text(Some("text/plain;charset=UTF-8")));
        assert!(!json_or_text(Some("application/x-www-form-urlencoded")));
        assert!(!json_or_text(None));
    }
}
