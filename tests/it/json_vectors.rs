//! The JSON vectors (`proto-spec/vectors/json-*.jsonl`, described in the vectors'
//! README) against the real conversions, `protocol::json`.
//!
//! - `json-messages.jsonl`: every line's `json` converts (`json_to_frame`) to exactly
//!   `frame`, and `frame` converts (`frame_to_json`) to exactly `json`; every name of
//!   `messages.jsonl` has its twin, with the same request id and frame, and the twin's
//!   JSON says the same as that file's serde form (read independently with
//!   serde_json: u64 as decimal strings, bytes as base64); the lines beyond the twins
//!   are header-only frames.
//! - `json-noncanonical-messages.jsonl`: each accepted non-canonical text converts to
//!   `frame`, which converts back to the `canonical` text.
//! - `json-bad-messages.jsonl`: each text is refused with its class, code and request id.
//!
//! The files were written by `write_json_vectors` below (run it with `--ignored` to
//! regenerate them after a deliberate change) and are compiled in with `include_str!`.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use switchboard::frame::{self, FrameHeader};
use switchboard::protocol::json::{JsonLimits, frame_to_json, json_to_frame};
use switchboard::protocol::{Kind, Msg};

const MESSAGES: &str = include_str!("../../proto-spec/vectors/messages.jsonl");
const JSON_MESSAGES: &str = include_str!("../../proto-spec/vectors/json-messages.jsonl");
const JSON_NONCANONICAL: &str =
    include_str!("../../proto-spec/vectors/json-noncanonical-messages.jsonl");
const JSON_BAD: &str = include_str!("../../proto-spec/vectors/json-bad-messages.jsonl");

fn lines(file: &str, text: &str, keys: &[&str], optional: &[&str]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, raw) in text.lines().enumerate() {
        let v: Value =
            serde_json::from_str(raw).unwrap_or_else(|e| panic!("{file}:{}: {e}", i + 1));
        let obj = v.as_object().unwrap();
        for k in keys {
            assert!(
                obj.contains_key(*k) || optional.contains(k),
                "{file}:{}: no {k}",
                i + 1
            );
        }
        for k in obj.keys() {
            assert!(
                keys.contains(&k.as_str()),
                "{file}:{}: unexpected key {k}",
                i + 1
            );
        }
        let name = v["name"].as_str().unwrap().to_owned();
        assert!(names.insert(name.clone()), "{file}: duplicate name {name}");
        out.push((format!("{file}:{} ({name})", i + 1), v));
    }
    assert!(!out.is_empty(), "{file} is empty");
    out
}

fn unhex(s: &Value) -> Vec<u8> {
    let s = s.as_str().unwrap();
    assert!(s.len().is_multiple_of(2) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn to_frame(text: &str) -> Vec<u8> {
    let (h, p) = json_to_frame(text.as_bytes(), &JsonLimits::default())
        .unwrap_or_else(|e| panic!("{text:.200}: {e}"));
    assert_eq!(h.len as usize, p.len());
    frame::encode(h, &p).to_vec()
}

fn to_json(frame: &[u8]) -> String {
    String::from_utf8(frame_to_json(frame).unwrap().to_vec()).unwrap()
}

/// Whether `got` (the JSON form) says the same as `want` (the serde form of
/// `messages.jsonl`): numbers equal or as their decimal string; byte arrays as base64.
fn same(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Number(n), Value::String(s)) => n.to_string() == *s,
        (Value::Array(a), Value::String(s)) => {
            let bytes: Option<Vec<u8>> = a
                .iter()
                .map(|x| x.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            bytes.is_some_and(|b| STANDARD.decode(s).is_ok_and(|d| d == b))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same(x, y)))
        }
        _ => want == got,
    }
}

#[test]
fn every_message_vector_has_a_json_twin() {
    let twins = lines(
        "json-messages.jsonl",
        JSON_MESSAGES,
        &["name", "request_id", "json", "frame"],
        &[],
    );
    let mut names: BTreeSet<&str> = twins
        .iter()
        .map(|(_, v)| v["name"].as_str().unwrap())
        .collect();
    let originals = lines(
        "messages.jsonl",
        MESSAGES,
        &["name", "request_id", "message", "frame"],
        &[],
    );
    for (ctx, m) in &originals {
        let name = m["name"].as_str().unwrap();
        let (_, twin) = twins
            .iter()
            .find(|(_, t)| t["name"] == m["name"])
            .unwrap_or_else(|| panic!("{ctx}: no JSON twin named {name}"));
        assert_eq!(twin["frame"], m["frame"], "{ctx}");
        assert_eq!(twin["request_id"], m["request_id"], "{ctx}");
        let j: Value = serde_json::from_str(twin["json"].as_str().unwrap()).unwrap();
        assert_eq!(j["kind"], m["message"]["kind"], "{ctx}");
        assert_eq!(j["request_id"], m["request_id"], "{ctx}");
        let kind = j["kind"].as_str().unwrap();
        assert_eq!(
            j.get("status").is_some(),
            kind == "Error" || kind == "Bye",
            "{ctx}"
        );
        if let Some(status) = j.get("status") {
            assert_eq!(status, &m["message"]["fields"]["code"], "{ctx}");
        }
        assert!(
            same(&m["message"]["fields"], &j["fields"]),
            "{ctx}: the JSON twin says something else"
        );
        names.remove(name);
    }
    // The lines that are not twins are the header-only frames (no `messages.jsonl`
    // form), and the extra lines have no `fields`.
    for (ctx, v) in &twins {
        if names.contains(v["name"].as_str().unwrap()) {
            assert_eq!(unhex(&v["frame"]).len(), frame::HEADER_LEN, "{ctx}");
            let j: Value = serde_json::from_str(v["json"].as_str().unwrap()).unwrap();
            assert!(j.get("fields").is_none(), "{ctx}");
        }
    }
}

#[test]
fn json_messages_convert_both_ways_byte_for_byte() {
    for (ctx, v) in lines(
        "json-messages.jsonl",
        JSON_MESSAGES,
        &["name", "request_id", "json", "frame"],
        &[],
    ) {
        let text = v["json"].as_str().unwrap();
        let frame = unhex(&v["frame"]);
        assert_eq!(hex(&to_frame(text)), hex(&frame), "{ctx}: JSON → frame");
        assert_eq!(to_json(&frame), text, "{ctx}: frame → JSON");
        let d = frame::decode(&frame, frame::MAX_PAYLOAD_LIMIT)
            .unwrap()
            .unwrap();
        assert_eq!(
            u64::from(d.header.request_id),
            v["request_id"].as_u64().unwrap()
        );
        // json_to_frame hands on the header and payload exactly as deframe does.
        let (h, p) = json_to_frame(text.as_bytes(), &JsonLimits::default()).unwrap();
        let mut spill = Vec::new();
        let mut seen: Option<(FrameHeader, Vec<u8>)> = None;
        frame::deframe(&mut spill, &frame, frame::MAX_PAYLOAD_LIMIT, |fh, fp| {
            seen = Some((fh, fp.to_vec()));
            true
        })
        .unwrap();
        assert_eq!(seen, Some((h, p.to_vec())), "{ctx}: not what deframe gives");
    }
}

#[test]
fn json_noncanonical_messages_are_accepted() {
    for (ctx, v) in lines(
        "json-noncanonical-messages.jsonl",
        JSON_NONCANONICAL,
        &["name", "json", "frame", "canonical", "why"],
        &[],
    ) {
        let text = v["json"].as_str().unwrap();
        let canonical = v["canonical"].as_str().unwrap();
        assert_ne!(text, canonical, "{ctx}");
        let frame = unhex(&v["frame"]);
        assert_eq!(hex(&to_frame(text)), hex(&frame), "{ctx}");
        assert_eq!(to_json(&frame), canonical, "{ctx}");
    }
}

fn limits_of(v: &Value) -> JsonLimits {
    let d = JsonLimits::default();
    match v.get("limits") {
        None => d,
        Some(l) => JsonLimits {
            max_bytes: l["max_bytes"].as_u64().map_or(d.max_bytes, |x| x as usize),
            max_depth: l["max_depth"].as_u64().map_or(d.max_depth, |x| x as usize),
        },
    }
}

#[test]
fn json_bad_messages_get_their_codes() {
    let mut classes = BTreeSet::new();
    for (ctx, v) in lines(
        "json-bad-messages.jsonl",
        JSON_BAD,
        &[
            "name",
            "json",
            "limits",
            "error",
            "code",
            "request_id",
            "why",
        ],
        &["limits"],
    ) {
        let text = v["json"].as_str().unwrap();
        let e = json_to_frame(text.as_bytes(), &limits_of(&v))
            .err()
            .unwrap_or_else(|| panic!("{ctx}: accepted"));
        assert_eq!(e.class(), v["error"].as_str().unwrap(), "{ctx}: {e}");
        assert_eq!(
            u64::from(e.code().as_u16()),
            v["code"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            u64::from(e.request_id()),
            v["request_id"].as_u64().unwrap(),
            "{ctx}"
        );
        classes.insert(e.class());
    }
    // Every input class of JSON.md section 5 has a vector (invalid UTF-8 cannot be
    // written in a JSON line; the unit tests cover it).
    for c in [
        "too_large",
        "too_deep",
        "syntax",
        "not_object",
        "missing_kind",
        "unknown_kind",
        "unknown_field",
        "duplicate_key",
        "wrong_type",
        "not_integer",
        "out_of_range",
        "unsafe_number",
        "bad_u64_string",
        "bad_base64",
        "lone_surrogate",
    ] {
        assert!(classes.contains(c), "no vector of class {c}");
    }
}

// ---------------------------------------------------------------------------------
// The generator.

fn line(fields: &[(&str, Value)]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}: {}", json!(k), serde_json::to_string(v).unwrap()))
        .collect();
    format!("{{{}}}\n", parts.join(", "))
}

/// Header-only frames: no `messages.jsonl` form, a JSON form without `fields`.
const HEADER_ONLY: &[(&str, u8, u16, u32)] = &[
    ("ping-empty", 3, 0, 30),
    ("pong-empty", 4, 0, 30),
    ("bye-empty-client", 6, 0, 0),
    ("bye-shutting-down-header-only", 6, 501, 0),
    ("error-bad-magic-header-only", 5, 100, 0),
    ("error-idle-timeout-header-only", 5, 301, 0),
    ("error-slow-consumer-header-only", 5, 302, 0),
    ("error-server-busy-header-only", 5, 500, 31),
];

/// Accepted non-canonical texts: (name, text, why).
const NONCANONICAL: &[(&str, &str, &str)] = &[
    (
        "send-reordered-with-space",
        " {\n  \"fields\": {\"body\": \"hi\", \"content_type\": 1, \"group\": \"\", \"client_msg_id\": \"3\", \"conversation\": \"0\"},\n  \"request_id\": 40,\n  \"kind\": \"Send\"\n}\n",
        "white space around every token, keys in another order, `fields` before `kind`",
    ),
    (
        "send-u64-as-numbers",
        r#"{"kind":"Send","request_id":41,"fields":{"content_type":1,"conversation":9007199254740991,"client_msg_id":0,"group":"","body":"hi"}}"#,
        "u64 fields as JSON numbers up to 2^53 - 1",
    ),
    (
        "send-absent-fields-are-zero",
        r#"{"kind":"Send","request_id":42,"fields":{"body":"hi"}}"#,
        "absent fields are zero or empty",
    ),
    (
        "ping-no-request-id",
        r#"{"kind":"Ping","fields":{"stamp":"1","data":""}}"#,
        "an absent request_id is 0",
    ),
    (
        "ping-empty-fields-object",
        r#"{"kind":"Ping","request_id":43,"fields":{}}"#,
        "`fields` present but empty: an archived Ping of zeros, not an empty payload",
    ),
    (
        "send-escapes",
        r#"{"kind":"Send","request_id":44,"fields":{"content_type":1,"conversation":"5","client_msg_id":"1","group":"\u0073upport","body":"caf\u00E9 \ud83d\ude00 \/ \u001F"}}"#,
        "escapes the encoder does not write: \\u for printable characters, upper-case hex, a surrogate pair, \\/",
    ),
    (
        "error-without-status",
        r#"{"kind":"Error","request_id":45,"fields":{"code":404,"retryable":false,"conversation":"5","message":"not_found"}}"#,
        "an absent status is the message's code for Error and Bye",
    ),
    (
        "hello-brackets-in-strings",
        r#"{"kind": "Hello", "request_id": 46, "fields": {"protocol": 1, "token": "[[[[[[[[[[[[[[[[[[[[", "client": "\\\"{{{{{{{{{{{{{{{{{{{{", "resume": []}}"#,
        "brackets inside strings (also after escaped quotes and backslashes) do not count towards the nesting limit",
    ),
];

/// Refused texts: (name, text, limits, class, code, request id, why).
type Bad = (
    &'static str,
    String,
    Option<Value>,
    &'static str,
    u16,
    u32,
    &'static str,
);

fn bad_vectors() -> Vec<Bad> {
    let s = |x: &str| x.to_owned();
    let deep = format!(
        r#"{{"kind":"Ping","request_id":7,"fields":{{"data":{}0{}}}}}"#,
        "[".repeat(15),
        "]".repeat(15)
    );
    vec![
        (
            "too-large",
            s(
                r#"{"kind":"Send","request_id":1,"fields":{"body":"this text is longer than the 64-byte limit set for this line"}}"#,
            ),
            Some(json!({"max_bytes": 64})),
            "too_large",
            102,
            0,
            "the text is longer than max_bytes (64 here, 1 MiB by default); refused before parsing, so the request id is not read",
        ),
        (
            "too-deep",
            deep,
            None,
            "too_deep",
            104,
            0,
            "17 levels of nesting (the envelope, fields, 15 arrays) against the default max_depth of 16; refused before parsing",
        ),
        (
            "too-deep-unbalanced",
            "[".repeat(17),
            None,
            "too_deep",
            104,
            0,
            "17 opening brackets: the nesting check runs before the syntax check",
        ),
        (
            "empty-text",
            s(""),
            None,
            "syntax",
            104,
            0,
            "no JSON value at all",
        ),
        (
            "white-space-only",
            s(" \n"),
            None,
            "syntax",
            104,
            0,
            "no JSON value at all",
        ),
        (
            "not-object-array",
            s(r#"[{"kind":"Ping"}]"#),
            None,
            "not_object",
            104,
            0,
            "the message must be an object",
        ),
        (
            "not-object-string",
            s(r#""Ping""#),
            None,
            "not_object",
            104,
            0,
            "the message must be an object",
        ),
        (
            "not-object-null",
            s("null"),
            None,
            "not_object",
            104,
            0,
            "the message must be an object",
        ),
        (
            "trailing-garbage",
            s(r#"{"kind":"Ping","request_id":8} x"#),
            None,
            "syntax",
            104,
            8,
            "bytes after the object",
        ),
        (
            "two-objects",
            s(r#"{"kind":"Ping","request_id":8}{"kind":"Ping","request_id":9}"#),
            None,
            "syntax",
            104,
            8,
            "one message per text",
        ),
        (
            "trailing-comma",
            s(r#"{"kind":"Ping","request_id":8,}"#),
            None,
            "syntax",
            104,
            8,
            "a comma before }",
        ),
        (
            "unterminated",
            s(r#"{"kind":"Ping","request_id":8"#),
            None,
            "syntax",
            104,
            8,
            "the text ends inside the object",
        ),
        (
            "single-quotes",
            s(r#"{'kind':'Ping'}"#),
            None,
            "syntax",
            104,
            0,
            "JSON strings use double quotes",
        ),
        (
            "number-leading-zero",
            s(r#"{"kind":"Ping","request_id":08}"#),
            None,
            "syntax",
            104,
            0,
            "a JSON number has no leading zero",
        ),
        (
            "raw-tab-in-string",
            s("{\"request_id\":8,\"kind\":\"Send\",\"fields\":{\"body\":\"a\tb\"}}"),
            None,
            "syntax",
            104,
            8,
            "control characters in strings must be escaped",
        ),
        (
            "bad-escape",
            s(r#"{"request_id":8,"kind":"Send","fields":{"body":"\x41"}}"#),
            None,
            "syntax",
            104,
            8,
            "\\x is not a JSON escape",
        ),
        (
            "missing-kind",
            s(r#"{"request_id":10,"fields":{}}"#),
            None,
            "missing_kind",
            104,
            10,
            "every message has a kind",
        ),
        (
            "unknown-kind",
            s(r#"{"kind":"Shout","request_id":11,"fields":{"text":"hi"}}"#),
            None,
            "unknown_kind",
            105,
            11,
            "no kind has that name; the request id is read even after the kind, and the connection stays open (105)",
        ),
        (
            "unknown-kind-lower-case",
            s(r#"{"request_id":12,"kind":"send"}"#),
            None,
            "unknown_kind",
            105,
            12,
            "kind names are case-sensitive",
        ),
        (
            "kind-as-number",
            s(r#"{"request_id":13,"kind":16}"#),
            None,
            "wrong_type",
            104,
            13,
            "the kind is its name, not its number",
        ),
        (
            "unknown-envelope-key",
            s(r#"{"request_id":14,"kind":"Ping","flags":0}"#),
            None,
            "unknown_field",
            104,
            14,
            "the envelope has kind, request_id, status and fields only",
        ),
        (
            "unknown-field",
            s(r#"{"request_id":15,"kind":"Ping","fields":{"stump":"1"}}"#),
            None,
            "unknown_field",
            104,
            15,
            "Ping has no field stump",
        ),
        (
            "unknown-element-field",
            s(
                r#"{"request_id":16,"kind":"Hello","fields":{"resume":[{"conversation":"1","seq":"2"}]}}"#,
            ),
            None,
            "unknown_field",
            104,
            16,
            "Cursor has no field seq",
        ),
        (
            "duplicate-envelope-key",
            s(r#"{"request_id":17,"kind":"Ping","kind":"Pong"}"#),
            None,
            "duplicate_key",
            104,
            17,
            "a key twice in one object",
        ),
        (
            "duplicate-field",
            s(r#"{"request_id":18,"kind":"Ping","fields":{"stamp":"1","stamp":"2"}}"#),
            None,
            "duplicate_key",
            104,
            18,
            "a key twice in one object",
        ),
        (
            "duplicate-element-field",
            s(
                r#"{"request_id":19,"kind":"Hello","fields":{"resume":[{"last_seq":"1","last_seq":"1"}]}}"#,
            ),
            None,
            "duplicate_key",
            104,
            19,
            "a key twice in one object",
        ),
        (
            "string-as-number",
            s(r#"{"request_id":20,"kind":"Send","fields":{"body":42}}"#),
            None,
            "wrong_type",
            104,
            20,
            "body is a string",
        ),
        (
            "bool-as-number",
            s(r#"{"request_id":21,"kind":"Typing","fields":{"typing":1}}"#),
            None,
            "wrong_type",
            104,
            21,
            "typing is true or false",
        ),
        (
            "bool-as-string",
            s(r#"{"request_id":21,"kind":"Typing","fields":{"typing":"true"}}"#),
            None,
            "wrong_type",
            104,
            21,
            "typing is true or false",
        ),
        (
            "u8-as-string",
            s(r#"{"request_id":22,"kind":"Rate","fields":{"score":"5"}}"#),
            None,
            "wrong_type",
            104,
            22,
            "u8, u16 and u32 fields are numbers",
        ),
        (
            "null-field",
            s(r#"{"request_id":23,"kind":"Send","fields":{"body":null}}"#),
            None,
            "wrong_type",
            104,
            23,
            "null is no value of any field; leave the field out instead",
        ),
        (
            "fields-null",
            s(r#"{"request_id":23,"kind":"Ping","fields":null}"#),
            None,
            "wrong_type",
            104,
            23,
            "fields is an object (or absent)",
        ),
        (
            "vector-as-object",
            s(r#"{"request_id":24,"kind":"Hello","fields":{"resume":{"conversation":"1"}}}"#),
            None,
            "wrong_type",
            104,
            24,
            "resume is an array",
        ),
        (
            "request-id-as-string",
            s(r#"{"kind":"Ping","request_id":"25"}"#),
            None,
            "wrong_type",
            104,
            0,
            "request_id is a number (u32)",
        ),
        (
            "u64-number-beyond-2-53",
            s(r#"{"request_id":26,"kind":"Ping","fields":{"stamp":9007199254740992}}"#),
            None,
            "unsafe_number",
            104,
            26,
            "2^53 as a JSON number: u64 values beyond 2^53 - 1 travel as strings",
        ),
        (
            "u64-max-as-number",
            s(
                r#"{"request_id":27,"kind":"History","fields":{"conversation":18446744073709551615}}"#,
            ),
            None,
            "unsafe_number",
            104,
            27,
            "2^64 - 1 as a JSON number",
        ),
        (
            "u64-string-beyond-max",
            s(
                r#"{"request_id":28,"kind":"History","fields":{"conversation":"18446744073709551616"}}"#,
            ),
            None,
            "bad_u64_string",
            104,
            28,
            "2^64 does not fit a u64",
        ),
        (
            "u64-string-leading-zero",
            s(r#"{"request_id":29,"kind":"History","fields":{"conversation":"07"}}"#),
            None,
            "bad_u64_string",
            104,
            29,
            "u64 strings are canonical decimals",
        ),
        (
            "u64-string-signed",
            s(r#"{"request_id":30,"kind":"History","fields":{"conversation":"+7"}}"#),
            None,
            "bad_u64_string",
            104,
            30,
            "no sign",
        ),
        (
            "u64-string-space",
            s(r#"{"request_id":31,"kind":"History","fields":{"conversation":" 7"}}"#),
            None,
            "bad_u64_string",
            104,
            31,
            "no white space",
        ),
        (
            "u64-string-empty",
            s(r#"{"request_id":32,"kind":"History","fields":{"conversation":""}}"#),
            None,
            "bad_u64_string",
            104,
            32,
            "an empty string is no number",
        ),
        (
            "negative-number",
            s(r#"{"request_id":33,"kind":"History","fields":{"limit":-1}}"#),
            None,
            "not_integer",
            104,
            33,
            "unsigned fields",
        ),
        (
            "fraction",
            s(r#"{"request_id":34,"kind":"History","fields":{"limit":10.0}}"#),
            None,
            "not_integer",
            104,
            34,
            "integers have no fraction, even .0",
        ),
        (
            "exponent",
            s(r#"{"request_id":35,"kind":"History","fields":{"limit":1e2}}"#),
            None,
            "not_integer",
            104,
            35,
            "integers have no exponent",
        ),
        (
            "u8-overflow",
            s(r#"{"request_id":36,"kind":"Rate","fields":{"score":300}}"#),
            None,
            "out_of_range",
            104,
            36,
            "300 does not fit a u8 (it is not wrapped to 44)",
        ),
        (
            "u16-overflow",
            s(r#"{"request_id":37,"kind":"History","fields":{"limit":65536}}"#),
            None,
            "out_of_range",
            104,
            37,
            "65536 does not fit a u16",
        ),
        (
            "u32-request-id-overflow",
            s(r#"{"kind":"Ping","request_id":4294967296}"#),
            None,
            "out_of_range",
            104,
            0,
            "request_id is a u32",
        ),
        (
            "status-overflow",
            s(r#"{"request_id":38,"kind":"Bye","status":65536}"#),
            None,
            "out_of_range",
            104,
            38,
            "status is a u16",
        ),
        (
            "base64-unpadded",
            s(r#"{"request_id":39,"kind":"Ping","fields":{"data":"AAE"}}"#),
            None,
            "bad_base64",
            104,
            39,
            "base64 with its = padding",
        ),
        (
            "base64-url-alphabet",
            s(r#"{"request_id":40,"kind":"Ping","fields":{"data":"-_8="}}"#),
            None,
            "bad_base64",
            104,
            40,
            "the standard alphabet (+ and /), not base64url",
        ),
        (
            "base64-trailing-bits",
            s(r#"{"request_id":41,"kind":"Ping","fields":{"data":"AAF="}}"#),
            None,
            "bad_base64",
            104,
            41,
            "non-zero bits after the last byte: not canonical",
        ),
        (
            "base64-white-space",
            s(r#"{"request_id":42,"kind":"Ping","fields":{"data":"AA E="}}"#),
            None,
            "bad_base64",
            104,
            42,
            "no white space or line breaks in base64",
        ),
        (
            "bytes-as-array",
            s(r#"{"request_id":43,"kind":"Ping","fields":{"data":[0,1]}}"#),
            None,
            "wrong_type",
            104,
            43,
            "bytes are a base64 string, not an array",
        ),
        (
            "lone-high-surrogate",
            s(r#"{"request_id":44,"kind":"Send","fields":{"body":"\ud800"}}"#),
            None,
            "lone_surrogate",
            104,
            44,
            "a high surrogate escape without its low half is no Unicode scalar value",
        ),
        (
            "lone-low-surrogate",
            s(r#"{"request_id":45,"kind":"Send","fields":{"body":"\udc00"}}"#),
            None,
            "lone_surrogate",
            104,
            45,
            "a low surrogate escape alone",
        ),
        (
            "reversed-surrogates",
            s(r#"{"request_id":46,"kind":"Send","fields":{"body":"\ude00\ud83d"}}"#),
            None,
            "lone_surrogate",
            104,
            46,
            "low before high",
        ),
        (
            "high-surrogate-then-letter",
            s(r#"{"request_id":47,"kind":"Send","fields":{"body":"\ud83d\u0041"}}"#),
            None,
            "lone_surrogate",
            104,
            47,
            "a high surrogate followed by a non-surrogate escape",
        ),
    ]
}

/// Writes the three JSON vector files from the reference implementation. Run only
/// on purpose: `cargo test --test it json_vectors::write_json_vectors -- --ignored`.
#[test]
#[ignore = "writes proto-spec/vectors/json-*.jsonl"]
fn write_json_vectors() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto-spec/vectors");
    let mut twins = String::new();
    for raw in MESSAGES.lines() {
        let v: Value = serde_json::from_str(raw).unwrap();
        let frame = unhex(&v["frame"]);
        // The frame the reference encoder gives from the serde form is this one.
        let msg: Msg = serde_json::from_value(v["message"].clone()).unwrap();
        let rid = v["request_id"].as_u64().unwrap() as u32;
        assert_eq!(msg.to_frame(rid).to_vec(), frame);
        twins += &line(&[
            ("name", v["name"].clone()),
            ("request_id", v["request_id"].clone()),
            ("json", json!(to_json(&frame))),
            ("frame", v["frame"].clone()),
        ]);
    }
    for &(name, kind, status, rid) in HEADER_ONLY {
        assert!(Kind::from_u8(kind).is_some());
        let frame = frame::encode_status(kind, status, rid);
        twins += &line(&[
            ("name", json!(name)),
            ("request_id", json!(rid)),
            ("json", json!(to_json(&frame))),
            ("frame", json!(hex(&frame))),
        ]);
    }
    std::fs::write(format!("{dir}/json-messages.jsonl"), twins).unwrap();

    let mut nc = String::new();
    for &(name, text, why) in NONCANONICAL {
        let frame = to_frame(text);
        nc += &line(&[
            ("name", json!(name)),
            ("json", json!(text)),
            ("frame", json!(hex(&frame))),
            ("canonical", json!(to_json(&frame))),
            ("why", json!(why)),
        ]);
    }
    std::fs::write(format!("{dir}/json-noncanonical-messages.jsonl"), nc).unwrap();

    let mut bad = String::new();
    for (name, text, limits, class, code, rid, why) in bad_vectors() {
        let mut fields = vec![("name", json!(name)), ("json", json!(text))];
        if let Some(l) = limits {
            fields.push(("limits", l));
        }
        let probe = json_to_frame(
            text.as_bytes(),
            &limits_of(&Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            )),
        )
        .err()
        .unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(
            (probe.class(), probe.code().as_u16(), probe.request_id()),
            (class, code, rid),
            "{name}: {probe}"
        );
        fields.extend([
            ("error", json!(class)),
            ("code", json!(code)),
            ("request_id", json!(rid)),
            ("why", json!(why)),
        ]);
        bad += &line(&fields);
    }
    std::fs::write(format!("{dir}/json-bad-messages.jsonl"), bad).unwrap();
}
