//! Fuzz target for the JSON dialect's inbound conversion
//! (`switchboard::protocol::json::json_to_frame`, see `../proto-spec/JSON.md`).
//!
//! The input is one JSON text, converted with the default limits. The target asserts
//! that:
//! - a refusal has one of the documented codes (102 never: the input is below 1 MiB;
//!   104 or 105), and a request id only when the text holds that number;
//! - an accepted text gives a header whose length is the payload's, whose payload is
//!   a message of its kind (or empty), and whose frame converts back
//!   (`frame_to_json`) to a canonical text that converts to the same header and
//!   payload, and to itself again;
//! - a size limit one byte below the text's length refuses it with 102.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::frame;
use switchboard::protocol::json::{JsonLimits, frame_to_json, json_to_frame};
use switchboard::protocol::{ErrorCode, Kind, Msg};

fuzz_target!(|data: &[u8]| {
    let limits = JsonLimits::default();
    match json_to_frame(data, &limits) {
        Err(e) => {
            assert!(
                matches!(
                    e.code(),
                    ErrorCode::MalformedPayload | ErrorCode::UnknownKind
                ),
                "unexpected code for {e}"
            );
            let rid = e.request_id();
            if rid != 0 {
                let digits = rid.to_string();
                assert!(
                    data.windows(digits.len()).any(|w| w == digits.as_bytes()),
                    "request id {rid} is not in the text"
                );
            }
        }
        Ok((header, payload)) => {
            assert_eq!(header.len as usize, payload.len());
            assert!(Kind::from_u8(header.kind).is_some());
            if !payload.is_empty() {
                // The payload is a canonical archive of the kind (bounds aside).
                match Msg::decode(header.kind, &payload) {
                    Ok(m) => assert_eq!(m.kind().as_u8(), header.kind),
                    Err(switchboard::protocol::DecodeError::Bound { .. }) => {}
                    Err(e) => panic!("json_to_frame built an invalid payload: {e}"),
                }
            }
            let wire = frame::encode(header, &payload);
            let json = frame_to_json(&wire).expect("an accepted text's frame converts back");
            let (h2, p2) = json_to_frame(&json, &limits).expect("canonical text is accepted");
            assert_eq!(
                (h2, &p2),
                (header, &payload),
                "canonical text reads differently"
            );
            let json2 = frame_to_json(&frame::encode(h2, &p2)).expect("converts again");
            assert_eq!(json2, json, "canonical text is not stable");
        }
    }
    if !data.is_empty() {
        let small = JsonLimits {
            max_bytes: data.len() - 1,
            ..limits
        };
        let e = json_to_frame(data, &small).expect_err("over the size limit");
        assert_eq!(e.code(), ErrorCode::FrameTooLarge);
    }
});
