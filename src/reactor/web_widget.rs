//! The visitor widget's public settings, `GET /web/v1/sites/{site}/widget`: what
//! `/widget.js` fetches at start (looks, pre-chat form, business hours, the site's
//! group and which tokens it gives, the attachment bounds). No secret is in it; CORS
//! as for the visitor-token endpoint. Built once at start per site.

use bytes::Bytes;

use crate::auth::visitor::Site;
use crate::config::{ApiConfig, WebSite};
use crate::http::head::{Method, Request};
use crate::http::response::Response;
use crate::reactor::visitor_desk::{PREFIX, Visitors};

/// The path's last segment.
pub(crate) const SUFFIX: &str = "/widget";

/// The site id of a widget-settings path (`None`: not one).
pub(crate) fn widget_site(path: &str) -> Option<&str> {
    path.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)
}

/// The JSON body for the site `cfg` (resolved as `site`), with the attachment bounds
/// of `api` (the widget refuses what the upload route would, before uploading).
pub(crate) fn settings_json(cfg: &WebSite, site: &Site, api: &ApiConfig) -> Bytes {
    let w = &cfg.widget;
    let body = serde_json::json!({
        "site": cfg.id,
        "group": site.group,
        "anonymous": cfg.anonymous,
        "identified": cfg.identity_secret.is_some() || cfg.identity_secret_file.is_some(),
        "title": w.title,
        "greeting": w.greeting,
        "color": w.color,
        "position": w.position,
        "language": w.language,
        "pre_chat": w.pre_chat,
        "timezone": w.timezone,
        "hours": w.hours,
        "context": w.context,
        "attachment_types": api.attachment_types,
        "max_attachment_bytes": api.max_attachment_bytes,
    });
    Bytes::from(body.to_string())
}

/// The answer to a request for `site`'s settings: 200 JSON (`GET`, `HEAD`), 204
/// (`OPTIONS`), 404 (no such site), 403 (an origin the site does not allow, without
/// CORS headers), 405 (other methods).
pub(crate) fn answer(visitors: &Visitors, site: &str, req: &Request) -> Response {
    let Some(entry) = visitors.sites.get(site) else {
        return Response::error(404, "no such site");
    };
    if !entry
        .origins
        .allows(req.origin.as_deref(), req.host.as_deref())
    {
        return Response::error(403, "origin not allowed for this site");
    }
    let r = match req.method {
        Method::Get | Method::Head => Response::new(200, "application/json", entry.widget.clone())
            .header("Cache-Control", "no-cache"),
        Method::Options => Response::new(204, "text/plain", &b""[..])
            .header("Access-Control-Allow-Methods", "GET")
            .header("Access-Control-Max-Age", "600"),
        _ => {
            Response::error(405, "GET, HEAD or OPTIONS only").header("Allow", "GET, HEAD, OPTIONS")
        }
    };
    match &req.origin {
        Some(o) => r
            .header("Access-Control-Allow-Origin", o.clone())
            .header("Vary", "Origin"),
        None => r.header("Vary", "Origin"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(widget_site("/web/v1/sites/shop/widget"), Some("shop"));
        assert_eq!(widget_site("/web/v1/sites/shop/visitor-token"), None);
        assert_eq!(widget_site("/widget"), None);
    }

    #[test]
    fn settings_hold_no_secret() {
        let cfg = WebSite {
            id: "shop".into(),
            allowed_origins: vec![],
            group: None,
            tenant: "t".into(),
            anonymous: true,
            secret: Some("s".repeat(40)),
            secret_file: None,
            identity_secret: Some("i".repeat(40)),
            identity_secret_file: None,
            widget: Default::default(),
        };
        let site = Site::new("shop", "support", "t", Some(&[1; 32]), None);
        let json = settings_json(&cfg, &site, &ApiConfig::default());
        let text = std::str::from_utf8(&json).unwrap();
        assert!(!text.contains("ssss") && !text.contains("iiii"), "{text}");
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["group"], "support");
        assert_eq!(v["color"], "#1f5fbf");
        assert_eq!(v["identified"], true);
        assert!(
            v["attachment_types"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        );
    }
}
