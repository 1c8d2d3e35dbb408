//! The web assets embedded in the binary (`web/`, tabled by `build.rs`) and how the
//! client port answers for them: the gzip variant when the client accepts it,
//! `ETag` with `304 Not Modified` on a matching `If-None-Match`, and cache headers
//! (HTML is revalidated every time; scripts and styles after five minutes, since the
//! embed snippet's URL carries no version).

use bytes::Bytes;

use super::head::Request;
use super::response::Response;

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// URL path (`/widget.js`, `/console/index.html`).
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static [u8],
    /// The gzip variant, when it is smaller.
    pub gzip: Option<&'static [u8]>,
    /// Strong entity tag (quoted), from the bytes' SHA-256.
    pub etag: &'static str,
}

/// Every embedded asset, sorted by path.
pub static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The answer for `req` (a `GET` or `HEAD`) from `table`, if it names an asset: a
/// path ending in `/` names its `index.html`; a directory named without its `/` is
/// redirected to it.
pub fn answer(table: &[Asset], req: &Request) -> Option<Response> {
    let path = req.path.as_str();
    let find = |p: &str| table.iter().find(|a| a.path == p);
    let asset = if path.ends_with('/') {
        find(&format!("{path}index.html"))?
    } else if let Some(a) = find(path) {
        a
    } else {
        find(&format!("{path}/index.html"))?;
        return Some(
            Response::new(301, super::response::TEXT_PLAIN, "moved\n")
                .header("Location", format!("{path}/")),
        );
    };
    let html = asset.content_type.starts_with("text/html");
    let cache = if html {
        "no-cache"
    } else {
        "public, max-age=300"
    };
    let fresh = req
        .if_none_match
        .as_deref()
        .is_some_and(|v| matches_etag(v, asset.etag));
    let mut r = if fresh {
        Response::new(304, "", Bytes::new())
    } else {
        match asset.gzip.filter(|_| req.accept_gzip) {
            Some(gz) => Response::new(200, asset.content_type, Bytes::from_static(gz))
                .header("Content-Encoding", "gzip"),
            None => Response::new(200, asset.content_type, Bytes::from_static(asset.body)),
        }
    };
    r = r
        .header("ETag", asset.etag)
        .header("Cache-Control", cache)
        .header("Vary", "Accept-Encoding")
        .header("X-Content-Type-Options", "nosniff");
    if html {
        // The console is never framed by another site.
        r = r
            .header("X-Frame-Options", "DENY")
            .header("Referrer-Policy", "no-referrer");
    } else {
        // The widget's files are loaded by other sites' pages.
        r = r.header("Access-Control-Allow-Origin", "*");
    }
    Some(r)
}

/// Whether an `If-None-Match` value (`*`, or a list of tags, weak ones compared
/// weakly as RFC 9110 13.1.2 says for this header) matches `etag`.
fn matches_etag(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{self, HeadLimits};

    const TABLE: &[Asset] = &[
        Asset {
            path: "/console/index.html",
            content_type: "text/html; charset=utf-8",
            body: b"<!doctype html><title>console</title>",
            gzip: None,
            etag: "\"c0\"",
        },
        Asset {
            path: "/widget.js",
            content_type: "text/javascript; charset=utf-8",
            body: b"console.log('widget')",
            gzip: Some(b"\x1f\x8bgz"),
            etag: "\"w1\"",
        },
    ];

    fn get(extra: &str, path: &str) -> Request {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        head::parse(raw.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn gzip_only_when_accepted() {
        let plain = answer(TABLE, &get("", "/widget.js")).unwrap();
        assert_eq!(plain.status, 200);
        assert_eq!(&plain.body[..], b"console.log('widget')");
        assert_eq!(header(&plain, "Content-Encoding"), None);
        let gz = answer(
            TABLE,
            &get("Accept-Encoding: br, gzip;q=0.8\r\n", "/widget.js"),
        )
        .unwrap();
        assert_eq!(&gz.body[..], b"\x1f\x8bgz");
        assert_eq!(header(&gz, "Content-Encoding"), Some("gzip"));
        assert_eq!(header(&gz, "Vary"), Some("Accept-Encoding"));
        let refused = answer(TABLE, &get("Accept-Encoding: gzip;q=0\r\n", "/widget.js")).unwrap();
        assert_eq!(header(&refused, "Content-Encoding"), None);
    }

    #[test]
    fn etag_revalidation_gives_304_without_body() {
        let r = answer(
            TABLE,
            &get("If-None-Match: \"x\", W/\"w1\"\r\n", "/widget.js"),
        )
        .unwrap();
        assert_eq!(r.status, 304);
        assert!(r.body.is_empty());
        assert_eq!(header(&r, "ETag"), Some("\"w1\""));
        let bytes = r.to_bytes(false);
        assert!(!String::from_utf8_lossy(&bytes).contains("Content-Length"));
        let stale = answer(TABLE, &get("If-None-Match: \"old\"\r\n", "/widget.js")).unwrap();
        assert_eq!(stale.status, 200);
    }

    #[test]
    fn directories_and_cache_policy() {
        let r = answer(TABLE, &get("", "/console/")).unwrap();
        assert_eq!(
            (r.status, header(&r, "Cache-Control")),
            (200, Some("no-cache"))
        );
        assert_eq!(header(&r, "X-Frame-Options"), Some("DENY"));
        let moved = answer(TABLE, &get("", "/console")).unwrap();
        assert_eq!(
            (moved.status, header(&moved, "Location")),
            (301, Some("/console/"))
        );
        let js = answer(TABLE, &get("", "/widget.js")).unwrap();
        assert_eq!(header(&js, "Cache-Control"), Some("public, max-age=300"));
        assert!(answer(TABLE, &get("", "/nothing")).is_none());
        assert!(answer(TABLE, &get("", "/widget.js/")).is_none());
    }
}
