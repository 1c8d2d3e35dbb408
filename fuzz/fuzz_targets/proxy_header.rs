//! Fuzz target for the PROXY protocol header parser (`switchboard::proxy::parse`).
//!
//! The first two bytes pick `max_bytes` (big endian; the parser raises anything
//! below its minimum); the rest is the buffer. `switchboard::proxy::fuzz_check`
//! asserts that parsing never panics, that a complete header is no longer than the
//! buffer or its bound and parses the same on its own bytes, that one byte less needs
//! more, and that every error has a metric label.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((max, buf)) = data.split_first_chunk::<2>() else {
        return;
    };
    switchboard::proxy::fuzz_check(buf, usize::from(u16::from_be_bytes(*max)));
});
