//! Fuzz target for the HTTP request head parser (`switchboard::http::head::parse`),
//! the dialect sniffer and the WebSocket handshake behind them.
//!
//! The first byte picks the limits: bits 7-6 `max_bytes` (0 = 8192, the default,
//! 1 = 64, 2 = 512, 3 = 0), bits 5-0 `max_headers` (0-63). The rest is the buffer.
//! The target asserts that:
//! - a complete head is no longer than the buffer or `max_bytes`, and parsing just the
//!   head gives the same request (nothing after it is read);
//! - "incomplete" is only answered while the buffer is shorter than `max_bytes`;
//! - every error names a status the gateway answers with (400, 431, 501, 505), and its
//!   error page is a well-formed response;
//! - `ws::accept` on a parsed request either gives a 101 head or a refusal whose
//!   status is one of 400, 403, 405, 426.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::http::head::{HeadLimits, parse};
use switchboard::http::response::Response;
use switchboard::http::sniff;
use switchboard::ws::{OriginPolicy, accept};

const MAX_BYTES: [usize; 4] = [8192, 64, 512, 0];

fuzz_target!(|data: &[u8]| {
    let Some((&pattern, buf)) = data.split_first() else {
        return;
    };
    let limits = HeadLimits {
        max_bytes: MAX_BYTES[usize::from(pattern >> 6)],
        max_headers: usize::from(pattern & 0x3f),
    };
    if let Some(&first) = buf.first() {
        let _ = sniff(first);
    }
    match parse(buf, &limits) {
        Ok(Some((req, n))) => {
            assert!(n <= buf.len() && n <= limits.max_bytes, "head length {n}");
            let again = parse(&buf[..n], &limits);
            assert_eq!(
                again,
                Ok(Some((req.clone(), n))),
                "the head alone parses differently"
            );
            for require in [false, true] {
                match accept(&req, &OriginPolicy::same_host(), require) {
                    Ok(up) => {
                        assert!(
                            up.response
                                .starts_with(b"HTTP/1.1 101 Switching Protocols\r\n")
                        );
                        assert!(up.response.ends_with(b"\r\n\r\n"));
                        assert_eq!(up.protocol.is_some(), require);
                    }
                    Err(r) => {
                        assert!(
                            [400, 403, 405, 426].contains(&r.response.status),
                            "{:?}",
                            r.why
                        );
                        let _ = r.response.to_bytes(false);
                    }
                }
            }
        }
        Ok(None) => assert!(buf.len() < limits.max_bytes, "incomplete past max_bytes"),
        Err(e) => {
            let status = e.status();
            assert!([400, 431, 501, 505].contains(&status), "{e:?}");
            let page = Response::error(status, &e.to_string()).to_bytes(false);
            assert!(page.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
        }
    }
});
