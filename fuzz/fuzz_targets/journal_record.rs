//! Fuzz target for the journal's recovery parser (`journal::record::decode`, through
//! `switchboard::bench_support::journal_record`) and the conversation-event body
//! decoder behind it.
//!
//! Arbitrary bytes must never panic either decoder; a frame the parser accepts must
//! lie within the input, re-encode to the same header and body, and have a body that
//! either decodes as a conversation event or is refused with a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::bench_support::journal_record;

fuzz_target!(|data: &[u8]| {
    if let Some((len, same, _event)) = journal_record(data) {
        assert!(len <= data.len(), "a record longer than its input");
        assert!(
            same,
            "an accepted record does not re-encode to its own bytes"
        );
    }
});
