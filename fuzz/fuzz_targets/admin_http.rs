//! Fuzz target for the admin listener's request head parser
//! (`/metrics`, `/healthz`, `/readyz`; `switchboard::bench_support::admin_parse`, the
//! listener's own parser).
//!
//! The first byte picks `admin.max_request_bytes` (byte × 32); the rest is what the
//! listener has read. The target asserts that "partial" is only said under the bound,
//! that a refusal is 400, 405 or 431 and its response a whole HTTP/1.1 answer with
//! that status that closes, that a request's path holds no `?`, and that a complete
//! request parses the same with more bytes after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::bench_support::{AdminParsed, admin_parse, admin_text};

fuzz_target!(|data: &[u8]| {
    let Some((&pattern, buf)) = data.split_first() else {
        return;
    };
    let max = usize::from(pattern) * 32;
    match admin_parse(buf, max) {
        AdminParsed::Partial => assert!(buf.len() < max),
        AdminParsed::Reject(status) => {
            let code = status.code();
            assert!(matches!(code, 400 | 405 | 431), "{code}");
            // The response the listener sends for it.
            let text = String::from_utf8(admin_text(status, "\n")).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {code} ")), "{text}");
            assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        }
        got @ AdminParsed::Get { .. } => {
            if let AdminParsed::Get { path, .. } = &got {
                assert!(!path.contains('?'));
            }
            let mut more = buf.to_vec();
            more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(admin_parse(&more, max), got);
        }
    }
});
