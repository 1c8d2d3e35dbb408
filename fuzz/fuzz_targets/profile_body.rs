//! Fuzz target for the `PROFILE` body parser (content type 6,
//! `switchboard::protocol::profile`, see `../proto-spec/PROTOCOL.md` section 5.2a).
//!
//! The input is taken as the body text (invalid UTF-8 is skipped: a `Send.body` is a
//! string). The target asserts that:
//! - the parser never panics, and refuses anything over 4096 bytes;
//! - an accepted body has at least one member, at most 32 fields, and its canonical
//!   text (`to_json`) is no longer than it and parses back to the same update;
//! - merging it into a profile twice gives the same profile as once (an update is
//!   idempotent), the merged profile never holds more than 32 fields, and a refused
//!   merge changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::protocol::profile::{MAX_BODY, MAX_FIELDS, Profile, ProfileUpdate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(u) = ProfileUpdate::parse(text) else {
        return;
    };
    assert!(text.len() <= MAX_BODY);
    assert!(u.name.is_some() || u.email.is_some() || u.fields.is_some());
    assert!(u.fields.as_ref().is_none_or(|f| f.len() <= MAX_FIELDS));
    let canonical = u.to_json();
    assert!(canonical.len() <= text.len(), "{canonical} longer than {text}");
    assert_eq!(ProfileUpdate::parse(&canonical).as_ref(), Ok(&u));
    // A profile already holding fields, so that merges can hit the bound.
    let mut p = Profile::default();
    for i in 0..MAX_FIELDS - 1 {
        p.fields.insert(format!("seed{i}"), "v".into());
    }
    for mut profile in [Profile::default(), p] {
        let before = profile.clone();
        match profile.apply(&u) {
            Ok(()) => {
                assert!(profile.fields.len() <= MAX_FIELDS);
                let once = profile.clone();
                profile.apply(&u).expect("the same update fits again");
                assert_eq!(profile, once, "an update is idempotent");
            }
            Err(_) => assert_eq!(profile, before, "a refused merge changes nothing"),
        }
    }
});
