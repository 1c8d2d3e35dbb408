//! Fuzz target for the HTTP API's request path: the body reader
//! (`switchboard::http::body`) and the router (`switchboard::api::route`) behind a
//! parsed head.
//!
//! The first byte picks the body limit (`max_bytes` = byte × 4) and where the input
//! is split; the rest is a request (head, body, whatever follows). The target asserts
//! that:
//! - the body reader, fed the bytes after the head in two pieces, never grows the
//!   body past its limit, and uses everything it is given until it is done;
//! - fed the same bytes in one piece, it ends in the same place with the same body;
//! - every body error names 400 or 413, every route error 400, 404, 405 or 415, and
//!   the JSON error answer for it parses as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::api::{answer, route};
use switchboard::http::body::BodyReader;
use switchboard::http::head::{HeadLimits, parse};

fuzz_target!(|data: &[u8]| {
    let Some((&pattern, buf)) = data.split_first() else {
        return;
    };
    let max = usize::from(pattern) * 4;
    let Ok(Some((req, head_len))) = parse(buf, &HeadLimits::default()) else {
        return;
    };
    let rest = &buf[head_len..];
    let whole = match BodyReader::new(&req, max) {
        Ok(mut r) => r.feed(rest).map(|fed| (fed, r.into_body())),
        Err(e) => {
            assert_eq!(e.status(), 413);
            return;
        }
    };
    let cut = usize::from(pattern) % (rest.len() + 1);
    let mut r = BodyReader::new(&req, max).unwrap();
    let pieces = r.feed(&rest[..cut]).and_then(|first| {
        if first.done {
            return Ok((first, r.into_body()));
        }
        assert_eq!(first.consumed, cut);
        let second = r.feed(&rest[cut..])?;
        let fed = switchboard::http::body::Fed {
            consumed: cut + second.consumed,
            done: second.done,
        };
        Ok((fed, r.into_body()))
    });
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert!(a.1.len() <= max);
            assert!(a.0.done || a.0.consumed == rest.len());
        }
        (Err(e), _) | (_, Err(e)) => {
            assert!(matches!(e.status(), 400 | 413), "{e}");
            return;
        }
    }
    let Ok((fed, body)) = whole else { return };
    if !fed.done {
        return;
    }
    if let Err(e) = route::route(&req, &body) {
        let status = e.status();
        assert!(matches!(status, 400 | 404 | 405 | 415), "{e}");
        let r = answer::error(status, answer::code_for_status(status), &e.to_string(), 0);
        let _: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    }
});
