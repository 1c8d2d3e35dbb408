//! The JSON form against the binary one: round trips, accepted variants, every error
//! class with its code.

use proptest::prelude::*;

use super::*;
use crate::protocol::messages::{Error, Hello, Ping, Send, content};

const ALL_KINDS: [u8; 32] = [
    1, 2, 3, 4, 5, 6, 7, 8, 16, 17, 18, 19, 20, 21, 32, 33, 34, 35, 36, 37, 38, 39, 40, 48, 49, 50,
    51, 52, 53, 54, 55, 56,
];

fn to_frame(text: &str) -> Result<Bytes, JsonError> {
    json_to_frame(text.as_bytes(), &JsonLimits::default())
        .map(|(header, payload)| frame::encode(header, &payload))
}

fn to_json(frame: &[u8]) -> String {
    String::from_utf8(frame_to_json(frame).unwrap().to_vec()).unwrap()
}

fn err(text: &str) -> JsonError {
    match to_frame(text) {
        Ok(f) => panic!("{text} gave a frame {f:?}"),
        Err(e) => e,
    }
}

#[test]
fn send_has_the_documented_form() {
    let msg = Msg::from(Send {
        content_type: content::TEXT,
        conversation: 0,
        client_msg_id: 18_446_744_073_709_551_615,
        group: String::new(),
        body: "hi \"you\"\n".into(),
    });
    let frame = msg.to_frame(7);
    let json = to_json(&frame);
    assert_eq!(
        json,
        r#"{"kind":"Send","request_id":7,"fields":{"content_type":1,"conversation":"0","client_msg_id":"18446744073709551615","group":"","body":"hi \"you\"\n"}}"#
    );
    assert_eq!(to_frame(&json).unwrap(), frame);
}

#[test]
fn header_only_frames_have_no_fields() {
    for (kind, status, rid, want) in [
        (5, 301, 0, r#"{"kind":"Error","request_id":0,"status":301}"#),
        (5, 500, 9, r#"{"kind":"Error","request_id":9,"status":500}"#),
        (6, 501, 0, r#"{"kind":"Bye","request_id":0,"status":501}"#),
        (3, 0, 4, r#"{"kind":"Ping","request_id":4}"#),
    ] {
        let frame = frame::encode_status(kind, status, rid);
        assert_eq!(to_json(&frame), want);
        assert_eq!(to_frame(want).unwrap(), frame, "{want}");
    }
}

#[test]
fn error_status_defaults_to_the_code() {
    let msg = Msg::from(Error {
        code: 404,
        retryable: false,
        conversation: 5,
        message: "not_found".into(),
    });
    let frame = msg.to_frame(3);
    let json = to_json(&frame);
    assert!(json.starts_with(r#"{"kind":"Error","request_id":3,"status":404,"fields":"#));
    let without_status = json.replace(r#""status":404,"#, "");
    assert_eq!(to_frame(&without_status).unwrap(), frame);
}

#[test]
fn accepted_variants_give_the_canonical_frame() {
    let canonical = to_frame(
        r#"{"kind":"Ping","request_id":1,"fields":{"stamp":"9007199254740991","data":"AAE="}}"#,
    )
    .unwrap();
    for text in [
        // A u64 as a number up to 2^53 - 1.
        r#"{"kind":"Ping","request_id":1,"fields":{"stamp":9007199254740991,"data":"AAE="}}"#,
        // Any key order, fields before kind, white space, escapes in keys and values.
        " {\r\n\t\"fields\" : { \"data\":\"AAE=\" , \"stamp\":\"9007199254740991\" },\n \"request_id\": 1, \"kind\":\"Ping\" } \n",
        r#"{"\u006bind":"P\u0069ng","request_id":1,"fields":{"stamp":"9007199254740991","data":"AAE\u003d"}}"#,
    ] {
        assert_eq!(to_frame(text).unwrap(), canonical, "{text}");
    }
    // Absent fields are zero or empty; absent request_id is 0.
    let ping0 = Msg::from(Ping::default()).to_frame(0);
    assert_eq!(to_frame(r#"{"kind":"Ping","fields":{}}"#).unwrap(), ping0);
    assert_eq!(
        to_frame(r#"{"kind":"Hello","fields":{"resume":[{}]}}"#).unwrap(),
        Msg::from(Hello {
            resume: vec![Default::default()],
            ..Hello::default()
        })
        .to_frame(0)
    );
}

#[test]
fn every_error_class_has_its_code() {
    use ErrorCode::*;
    let cases: &[(&str, ErrorCode, u32)] = &[
        ("", MalformedPayload, 0),
        ("[]", MalformedPayload, 0),
        ("\"Ping\"", MalformedPayload, 0),
        ("null", MalformedPayload, 0),
        ("{", MalformedPayload, 0),
        (r#"{"request_id":5}"#, MalformedPayload, 5),
        (r#"{"kind":"Nope","request_id":5}"#, UnknownKind, 5),
        (
            r#"{"kind":"Nope","fields":{"x":[1,{"y":null}]},"request_id":6}"#,
            UnknownKind,
            6,
        ),
        (r#"{"kind":"ping","request_id":5}"#, UnknownKind, 5),
        (r#"{"kind":3,"request_id":5}"#, MalformedPayload, 0),
        (
            r#"{"request_id":5,"kind":"Ping","extra":1}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Ping","kind":"Ping"}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Ping","fields":{"stamp":1,"stamp":2}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Ping","fields":{"stump":1}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Ping","fields":{"stamp":9007199254740992}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Ping","fields":{"stamp":"18446744073709551616"}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Ping","fields":{"stamp":"01"}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Ping","fields":{"stamp":1.0}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Ping","fields":{"stamp":-1}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Ping","fields":{"data":"AAE"}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Ping","fields":{"data":[0,1]}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Rate","fields":{"score":300}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Rate","fields":{"score":"5"}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Typing","fields":{"typing":1}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Send","fields":{"body":"\ud800"}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Send","fields":{"body":"\udc00\ud800"}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Send","fields":{"body":null}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":4294967296,"kind":"Ping"}"#,
            MalformedPayload,
            0,
        ),
        (r#"{"request_id":"5","kind":"Ping"}"#, MalformedPayload, 0),
        (
            r#"{"request_id":5,"kind":"Ping","status":65536}"#,
            MalformedPayload,
            5,
        ),
        (r#"{"request_id":5,"kind":"Ping"} x"#, MalformedPayload, 5),
        (r#"{"request_id":5,"kind":"Ping"}{}"#, MalformedPayload, 5),
        (r#"{"request_id":5,"kind":"Ping",}"#, MalformedPayload, 5),
        (
            r#"{"request_id":5,"kind":"Hello","fields":{"resume":[{},]}}"#,
            MalformedPayload,
            5,
        ),
        (
            r#"{"request_id":5,"kind":"Hello","fields":{"resume":[[]]}}"#,
            MalformedPayload,
            5,
        ),
        (
            "{\"request_id\":5,\"kind\":\"Send\",\"fields\":{\"body\":\"a\tb\"}}",
            MalformedPayload,
            5,
        ),
    ];
    for &(text, code, rid) in cases {
        let e = err(text);
        assert_eq!((e.code(), e.request_id()), (code, rid), "{text}: {e}");
    }
    let bad_utf8 = b"{\"kind\":\"Send\",\"fields\":{\"body\":\"\xff\"}}";
    let e = json_to_frame(bad_utf8, &JsonLimits::default()).unwrap_err();
    assert_eq!(e.code(), MalformedPayload);
}

#[test]
fn size_and_depth_are_refused_before_parsing() {
    let limits = JsonLimits {
        max_bytes: 32,
        max_depth: 4,
    };
    let long = r#"{"kind":"Ping","request_id":1,"fields":{}}"#;
    let e = json_to_frame(long.as_bytes(), &limits).unwrap_err();
    assert!(matches!(e, JsonError::TooLarge { len: 42, max: 32 }), "{e}");
    assert_eq!(e.code(), ErrorCode::FrameTooLarge);
    // Deep nesting is refused even where the schema would refuse it anyway, and even
    // when it is not valid JSON: nothing deeper than the limit is parsed.
    let deep = format!("{}{}", "[".repeat(5), "]".repeat(5));
    let e = json_to_frame(deep.as_bytes(), &limits).unwrap_err();
    assert!(matches!(e, JsonError::TooDeep { max: 4 }), "{e}");
    assert_eq!(e.code(), ErrorCode::MalformedPayload);
    let e = json_to_frame("[".repeat(100_000).as_bytes(), &JsonLimits::default()).unwrap_err();
    assert!(matches!(e, JsonError::TooDeep { max: 16 }), "{e}");
    // The ceiling holds whatever the limits say.
    let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
    let huge = JsonLimits {
        max_depth: usize::MAX,
        ..JsonLimits::default()
    };
    let e = json_to_frame(deep.as_bytes(), &huge).unwrap_err();
    assert!(
        matches!(
            e,
            JsonError::TooDeep {
                max: MAX_DEPTH_LIMIT
            }
        ),
        "{e}"
    );
    // Brackets inside strings do not count; the deepest valid message fits 4.
    let hello = r#"{"kind":"Hello","fields":{"client":"[[[[[[","resume":[{"conversation":"1"}]}}"#;
    let depth_only = JsonLimits {
        max_depth: 4,
        ..JsonLimits::default()
    };
    assert!(json_to_frame(hello.as_bytes(), &depth_only).is_ok());
    let e = json_to_frame(
        hello.as_bytes(),
        &JsonLimits {
            max_depth: 3,
            ..depth_only
        },
    )
    .unwrap_err();
    assert!(matches!(e, JsonError::TooDeep { max: 3 }), "{e}");
}

#[test]
fn arrays_are_bounded() {
    let groups = |n: usize| {
        let items = vec!["\"\""; n].join(",");
        format!(r#"{{"kind":"Welcome","request_id":3,"fields":{{"groups":[{items}]}}}}"#)
    };
    assert!(to_frame(&groups(MAX_ELEMENTS)).is_ok());
    let e = err(&groups(MAX_ELEMENTS + 1));
    assert_eq!(
        (e.class(), e.code(), e.request_id()),
        ("too_many_elements", ErrorCode::MalformedPayload, 3)
    );
}

#[test]
fn every_prefix_of_a_message_is_refused_without_panic() {
    let msg = Msg::from(Hello {
        protocol: 1,
        token: "a.b.c".into(),
        client: "web/1 \u{1f600} \"q\"".into(),
        resume: vec![Default::default(); 2],
    });
    let json = to_json(&msg.to_frame(77));
    for cut in 0..json.len() {
        let e = json_to_frame(&json.as_bytes()[..cut], &JsonLimits::default()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::MalformedPayload, "cut {cut}");
    }
}

#[test]
fn frame_to_json_refuses_what_is_not_one_frame() {
    let frame = Msg::from(Ping::default()).to_frame(1);
    assert!(matches!(
        frame_to_json(&frame[..frame.len() - 1]),
        Err(JsonError::NotOneFrame(_))
    ));
    let mut two = frame.to_vec();
    two.extend_from_slice(&frame);
    assert!(matches!(
        frame_to_json(&two),
        Err(JsonError::NotOneFrame(_))
    ));
    assert!(matches!(
        frame_to_json(&frame::encode_status(9, 0, 1)),
        Err(JsonError::Payload(_))
    ));
    assert!(matches!(
        frame_to_json(&frame::encode(FrameHeader::new(3, 0, 1), b"x")),
        Err(JsonError::Payload(_))
    ));
    assert_eq!(
        frame_to_json(b"GET /").unwrap_err().code(),
        ErrorCode::Internal
    );
}

#[test]
fn kind_names_round_trip() {
    for b in ALL_KINDS {
        let k = Kind::from_u8(b).unwrap();
        assert_eq!(Kind::from_name(k.name()), Some(k));
    }
    assert_eq!(Kind::from_name("send"), None);
}

fn sampled() -> impl Strategy<Value = (Msg, u32)> {
    (
        0..ALL_KINDS.len(),
        prop::collection::vec(any::<u64>(), 64),
        any::<u32>(),
    )
        .prop_map(|(k, seeds, rid)| {
            let mut i = 0usize;
            let mut src = || {
                i += 1;
                seeds[i % seeds.len()].rotate_left(i as u32)
            };
            let kind = Kind::from_u8(ALL_KINDS[k]).unwrap();
            (field::sample(kind, &mut src), rid)
        })
}

proptest! {
    /// Any message → frame → JSON → frame is the same frame, and the JSON is stable.
    #[test]
    fn frame_json_frame_is_identical((msg, rid) in sampled()) {
        let frame = msg.to_frame(rid);
        let json = frame_to_json(&frame).unwrap();
        let back = json_to_frame(&json, &JsonLimits::default()).unwrap();
        let again = frame::encode(back.0, &back.1);
        prop_assert_eq!(&again, &frame);
        prop_assert_eq!(frame_to_json(&again).unwrap(), json.clone());
        // The JSON is valid JSON for an independent parser, and u64 values are strings.
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(v["kind"].as_str(), Some(msg.kind().name()));
    }

    /// Arbitrary bytes never panic and never give an unexpected code.
    #[test]
    fn arbitrary_text_never_panics(text in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(e) = json_to_frame(&text, &JsonLimits::default()) {
            prop_assert!(matches!(
                e.code(),
                ErrorCode::MalformedPayload | ErrorCode::UnknownKind
            ));
        }
    }

    /// Mutating one byte of a valid text gives a frame or an error, never a panic.
    #[test]
    fn mutated_messages_never_panic((msg, rid) in sampled(), at in any::<usize>(), b in any::<u8>()) {
        let mut json = frame_to_json(&msg.to_frame(rid)).unwrap().to_vec();
        let i = at % json.len();
        json[i] = b;
        if let Ok((h, p)) = json_to_frame(&json, &JsonLimits::default()) {
            // Whatever was accepted converts back to a JSON text that reads the same.
            let again = frame_to_json(&frame::encode(h, &p)).unwrap();
            let (h2, p2) = json_to_frame(&again, &JsonLimits::default()).unwrap();
            prop_assert_eq!((h, p), (h2, p2));
        }
    }
}

/// Every one-line JSON example of JSON.md converts and is in canonical form.
#[test]
fn json_md_examples_are_canonical() {
    let doc = include_str!("../../../proto-spec/JSON.md");
    let mut in_json = false;
    let mut seen = 0;
    for line in doc.lines() {
        match line {
            "```json" => in_json = true,
            "```" => in_json = false,
            l if in_json => {
                let frame = to_frame(l).unwrap_or_else(|e| panic!("{l}: {e}"));
                assert_eq!(to_json(&frame), l);
                seen += 1;
            }
            _ => {}
        }
    }
    assert!(seen >= 8, "{seen}");
}
