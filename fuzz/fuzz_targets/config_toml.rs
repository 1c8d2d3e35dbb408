//! Fuzz target for the configuration file, read at start, by `check-config` and on
//! every reload (SIGHUP): `switchboard::Config::from_toml` (TOML parse and
//! validation).
//!
//! The input is the file's text (UTF-8 only). The target asserts that a refusal has a
//! message, and that an accepted configuration validates again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text) {
        Ok(config) => config.validate().unwrap(),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
