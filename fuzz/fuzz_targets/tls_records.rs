//! Fuzz target for the client port's TLS sessions (`switchboard::tls`): arbitrary
//! bytes, as a client would send them, fed to a server session over rustls'
//! unbuffered API, or (first byte ≥ 0x80) records sealed with a client's keys after
//! a handshake driven in memory, for our post-handshake record layer
//! (`tls::records`). The first byte picks the read size (0: everything at once); the
//! entry (`tls::fuzz_feed::feed`) asserts that nothing panics, no more than a record
//! is kept between reads, nothing is decrypted without a handshake, and a failed
//! session sends nothing more.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use switchboard::tls::fuzz_feed::{feed, feed_traffic, fuzz_config};

static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let config = CONFIG.get_or_init(|| fuzz_config().expect("fuzz certificate"));
    // High bit: after a handshake, records sealed with the client's keys (low
    // two bits pick version and cipher, the next four the read size).
    let result = if cut & 0x80 != 0 {
        feed_traffic(config, cut & 3, rest, usize::from((cut >> 2) & 0x1f))
    } else {
        feed(config, rest, usize::from(cut))
    };
    if let Err(e) = result {
        panic!("{e}");
    }
});
