//! Fuzz target for recovery of a damaged multi-segment journal
//! (`switchboard::bench_support::journal_recovery`): a fixed journal of a dozen
//! conversations over several segments is damaged as the input says (bits flipped,
//! 512-byte blocks zeroed, bytes set, files cut short), then scanned read-only,
//! started with `journal.on_damage = "salvage"` and restarted.
//!
//! Nothing may panic; the salvaging start must succeed; the restart after it must find
//! no damage and the same open conversations (salvage made everything durable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::bench_support::journal_recovery;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = journal_recovery(data) {
        panic!("{e}");
    }
});
