//! The journal's recovery parser on arbitrary bytes (the same checks as the
//! `journal_record` fuzz target): it never panics, and whatever it accepts lies within
//! the input and re-encodes to its own header and body.

use proptest::prelude::*;
use switchboard::bench_support::journal_record;

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_recovery_parser(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Some((len, same, _)) = journal_record(&data) {
            prop_assert!(len <= data.len());
            prop_assert!(same);
        }
    }
}

#[test]
fn empty_and_zeroed_input_is_no_record() {
    assert_eq!(journal_record(&[]), None);
    assert_eq!(journal_record(&[0u8; 64]), None, "zeros end a segment");
}

/// Found by the fuzz target: a valid header and body whose padding is cut off by the
/// end of the input was accepted with a length past that end.
#[test]
fn a_record_whose_padding_is_missing_is_not_accepted() {
    let input: [u8; 47] = [
        12, 88, 42, 229, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 249, 255, 255, 255,
        255, 255, 255, 255, 0, 0, 0, 255, 255, 255, 255, 1, 0, 0, 5, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(journal_record(&input), None);
}
