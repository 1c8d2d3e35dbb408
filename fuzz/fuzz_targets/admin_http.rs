//! Fuzz target for the admin listener's request head parser
//! (`/metrics`, `/healthz`, `/readyz`; `switchboard::bench_support::admin_head`, the
//! listener's own parser).
//!
//! The first byte picks `admin.max_request_bytes` (byte × 32); the rest is what the
//! listener has read. The target asserts that "partial" is only said under the bound,
//! that a refusal is 400, 405 or 431 and its response a whole HTTP/1.1 answer with
//! that status that closes, that a request's path holds no `?`, and that a complete
//! request parses the same with more bytes after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::bench_support::{AdminHead, admin_head};

fuzz_target!(|data: &[u8]| {
    let Some((&pattern, buf)) = data.split_first() else {
        return;
    };
    let max = usize::from(pattern) * 32;
    match admin_head(buf, max) {
        AdminHead::Partial => assert!(buf.len() < max),
        AdminHead::Reject(code, response) => {
            assert!(matches!(code, 400 | 405 | 431), "{code}");
            let text = String::from_utf8(response).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {code} ")), "{text}");
            assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        }
        got @ AdminHead::Get { .. } => {
            if let AdminHead::Get { path, .. } = &got {
                assert!(!path.contains('?'));
            }
            let mut more = buf.to_vec();
            more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(admin_head(&more, max), got);
        }
    }
});
