//! Fuzz target for the client port's TLS sessions (`switchboard::tls`): arbitrary
//! bytes, as a client would send them, fed to a server session over rustls'
//! unbuffered API. The first byte picks the read size (0: everything at once); the
//! entry (`tls::fuzz_feed::feed`) asserts that nothing panics, no more than a record
//! is kept between reads, nothing is decrypted without a handshake, and a failed
//! session sends nothing more.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use switchboard::tls::fuzz_feed::{feed, fuzz_config};

static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let config = CONFIG.get_or_init(|| fuzz_config().expect("fuzz certificate"));
    if let Err(e) = feed(config, rest, usize::from(cut)) {
        panic!("{e}");
    }
});
