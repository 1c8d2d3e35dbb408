//! The message vectors and `proto-spec/PROTOCOL.md`, checked against the real codec.
//!
//! - `proto-spec/vectors/messages.jsonl`: each line's `message` (the serde form of
//!   `protocol::Msg`) encodes with `Msg::to_frame` to exactly `frame`, and `frame`
//!   decodes with `frame::decode` + `Msg::decode` back to exactly `message` (every
//!   field present), under the right kind byte, request id and status.
//! - `proto-spec/vectors/bad-messages.jsonl`: each well-formed frame's payload is
//!   rejected by `Msg::decode` for the listed reason, with a consistent error code.
//! - `proto-spec/vectors/noncanonical-messages.jsonl`: each non-canonical payload is
//!   accepted, decodes to `message`, and re-encodes to the listed canonical frame.
//! - `PROTOCOL.md`: its layout tables (offsets, sizes, types, padding) match the
//!   archived types; its code tables and limits table match the constants and the
//!   default config; its worked example is byte for byte the vector it names.
//!
//! The files are compiled in with `include_str!`, so editing a vector reruns the test.

use std::collections::{BTreeMap, BTreeSet};
use std::mem::{align_of, offset_of, size_of};

use serde_json::Value;
use switchboard::Config;
use switchboard::frame::{self, HEADER_LEN, MAX_PAYLOAD_LIMIT};
use switchboard::protocol::messages::{
    self, ArchivedAccepted, ArchivedAssigned, ArchivedAvailability, ArchivedBye, ArchivedClaim,
    ArchivedClose, ArchivedConversationInfo, ArchivedConversationList, ArchivedCursor,
    ArchivedDeliver, ArchivedDisconnect, ArchivedDisconnected, ArchivedEntry, ArchivedError,
    ArchivedGroupAvailability, ArchivedHello, ArchivedHistory, ArchivedHistoryPage,
    ArchivedListConversations, ArchivedNote, ArchivedNotice, ArchivedPing, ArchivedPong,
    ArchivedPresence, ArchivedQueued, ArchivedRate, ArchivedReceipt, ArchivedRefresh,
    ArchivedRefreshed, ArchivedResumed, ArchivedSend, ArchivedSuggest, ArchivedSuggestion,
    ArchivedSuggestions, ArchivedTransfer, ArchivedTyping, ArchivedWatch, ArchivedWelcome,
    ArchivedWrongReply,
};
use switchboard::protocol::{DecodeError, ErrorCode, Kind, Msg};

const MESSAGES: &str = include_str!("../../proto-spec/vectors/messages.jsonl");
const BAD_MESSAGES: &str = include_str!("../../proto-spec/vectors/bad-messages.jsonl");
const NONCANONICAL: &str = include_str!("../../proto-spec/vectors/noncanonical-messages.jsonl");
const PROTOCOL_MD: &str = include_str!("../../proto-spec/PROTOCOL.md");

// ---------------------------------------------------------------------------------
// Reading the vector files.

/// One parsed line of a `.jsonl` file, with its line number and file name.
struct Line {
    ctx: String,
    v: Value,
}

/// The lines of a `.jsonl` file; each must be an object with exactly `keys` (the
/// `optional` ones may be missing).
fn jsonl(file: &str, text: &str, keys: &[&str], optional: &[&str]) -> Vec<Line> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let ctx = format!("{file} line {}", i + 1);
        assert!(!raw.trim().is_empty(), "{ctx}: blank line");
        let v: Value = serde_json::from_str(raw).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("{ctx}: not an object"));
        for k in keys {
            assert!(
                obj.contains_key(*k) || optional.contains(k),
                "{ctx}: no `{k}`"
            );
        }
        for k in obj.keys() {
            assert!(keys.contains(&k.as_str()), "{ctx}: unexpected key `{k}`");
        }
        let name = obj["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{ctx}: name"));
        out.push(Line {
            ctx: format!("{ctx} ({name})"),
            v,
        });
    }
    let names: BTreeSet<&str> = out.iter().map(|l| l.v["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), out.len(), "{file}: duplicate names");
    out
}

/// Lowercase hex, no separators.
fn hex(ctx: &str, s: &Value) -> Vec<u8> {
    let s = s
        .as_str()
        .unwrap_or_else(|| panic!("{ctx}: hex is not a string"));
    assert!(
        s.len().is_multiple_of(2)
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{ctx}: not lowercase hex of even length"
    );
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn u32_of(ctx: &str, v: &Value) -> u32 {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or_else(|| panic!("{ctx}: not a u32: {v}"))
}

fn msg_of(ctx: &str, v: &Value) -> Msg {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{ctx}: message: {e}"))
}

/// The frame's single complete frame, which must take all of `bytes`.
fn one_frame<'a>(ctx: &str, bytes: &'a [u8]) -> frame::Decoded<'a> {
    let d = frame::decode(bytes, MAX_PAYLOAD_LIMIT)
        .unwrap_or_else(|e| panic!("{ctx}: framing error {e}"))
        .unwrap_or_else(|| panic!("{ctx}: incomplete frame"));
    assert_eq!(d.consumed, bytes.len(), "{ctx}: frame length");
    d
}

/// `Msg::decode` of a payload also when it does not start 16-aligned (the copying
/// path); both must agree, and the result is returned.
fn decode_both_ways(kind: u8, payload: &[u8]) -> Result<Msg, DecodeError> {
    let direct = Msg::decode(kind, payload);
    let mut shifted = vec![0u8; payload.len() + 1];
    shifted[1..].copy_from_slice(payload);
    let copied = Msg::decode(kind, &shifted[1..]);
    assert_eq!(
        outcome(&direct),
        outcome(&copied),
        "aligned and unaligned decoding disagree"
    );
    direct
}

/// A decoding result without the addresses rkyv puts in its error messages.
fn outcome(r: &Result<Msg, DecodeError>) -> String {
    match r {
        Ok(m) => format!("{m:?}"),
        Err(DecodeError::Invalid { kind, .. }) => format!("invalid {kind:?}"),
        Err(e) => e.to_string(),
    }
}

fn expected_status(m: &Msg) -> u16 {
    match m {
        Msg::Error(e) => e.code,
        Msg::Bye(b) => b.code,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------
// messages.jsonl

fn messages() -> Vec<Line> {
    jsonl(
        "messages.jsonl",
        MESSAGES,
        &["name", "request_id", "message", "frame"],
        &[],
    )
}

#[test]
fn messages_jsonl_encode_to_the_listed_frames() {
    for l in messages() {
        let ctx = &l.ctx;
        let msg = msg_of(ctx, &l.v["message"]);
        let rid = u32_of(ctx, &l.v["request_id"]);
        let want = hex(ctx, &l.v["frame"]);
        assert_eq!(msg.to_frame(rid).as_ref(), want.as_slice(), "{ctx}: encode");
        assert_eq!(
            msg.to_payload().as_slice(),
            &want[HEADER_LEN..HEADER_LEN + msg.to_payload().len()],
            "{ctx}: payload"
        );
    }
}

#[test]
fn messages_jsonl_frames_decode_to_the_listed_messages() {
    for l in messages() {
        let ctx = &l.ctx;
        let want = msg_of(ctx, &l.v["message"]);
        let bytes = hex(ctx, &l.v["frame"]);
        let d = one_frame(ctx, &bytes);
        let kind = Kind::from_u8(d.header.kind)
            .unwrap_or_else(|| panic!("{ctx}: unknown kind byte {}", d.header.kind));
        assert_eq!(kind, want.kind(), "{ctx}: kind byte");
        assert_eq!(
            l.v["message"]["kind"].as_str(),
            Some(format!("{kind:?}").as_str()),
            "{ctx}: kind name"
        );
        assert_eq!(
            d.header.request_id,
            u32_of(ctx, &l.v["request_id"]),
            "{ctx}: request id"
        );
        assert_eq!(d.header.flags, 0, "{ctx}: flags");
        assert_eq!(d.header.status, expected_status(&want), "{ctx}: status");
        let got = decode_both_ways(d.header.kind, d.payload)
            .unwrap_or_else(|e| panic!("{ctx}: decode: {e}"));
        assert_eq!(got, want, "{ctx}: decoded message");
        // The listed JSON is exactly the serde form: every field present, no extras.
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            l.v["message"],
            "{ctx}: JSON form"
        );
    }
}

/// Every JSON value below `v`.
fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
        Value::Object(o) => o.values().for_each(|x| walk(x, out)),
        _ => {}
    }
}

#[test]
fn messages_jsonl_cover_every_kind_and_the_edge_cases() {
    let ls = messages();
    let kinds: BTreeSet<String> = ls
        .iter()
        .map(|l| l.v["message"]["kind"].as_str().unwrap().to_owned())
        .collect();
    for b in 0..=u8::MAX {
        if let Some(k) = Kind::from_u8(b) {
            assert!(kinds.contains(&format!("{k:?}")), "no vector for {k:?}");
        }
    }
    let mut all = Vec::new();
    for l in &ls {
        walk(&l.v["message"]["fields"], &mut all);
    }
    let strings: Vec<&str> = all.iter().filter_map(|v| v.as_str()).collect();
    let lens: BTreeSet<usize> = strings.iter().map(|s| s.len()).collect();
    for n in [0, 8, 9, 1024, 8192, 65536] {
        assert!(lens.contains(&n), "no string of {n} bytes");
    }
    assert!(strings.iter().any(|s| s.contains('好')), "no Chinese text");
    assert!(
        strings.iter().any(|s| s.chars().any(|c| c.len_utf8() == 4)),
        "no 4-byte UTF-8"
    );
    assert!(strings.iter().any(|s| s.contains('\0')), "no NUL byte");
    assert!(
        strings.iter().any(|s| !s.is_ascii() && s.len() <= 8),
        "no inline non-ASCII text"
    );
    let arrays: BTreeSet<usize> = all
        .iter()
        .filter_map(|v| v.as_array().map(Vec::len))
        .collect();
    assert!(arrays.contains(&0), "no empty vector");
    assert!(arrays.iter().any(|&n| n >= 2), "no multi-element vector");
    assert!(arrays.contains(&1024), "no 1024-element vector");
    let numbers: BTreeSet<u64> = all.iter().filter_map(|v| v.as_u64()).collect();
    for n in [u64::MAX, u64::from(u32::MAX), u64::from(u16::MAX)] {
        assert!(numbers.contains(&n), "no number {n}");
    }
    let rids: BTreeSet<u32> = ls
        .iter()
        .map(|l| u32_of(&l.ctx, &l.v["request_id"]))
        .collect();
    assert!(rids.contains(&0) && rids.contains(&u32::MAX));
    // Both Error and Bye vectors with a non-zero status.
    for k in ["Error", "Bye"] {
        assert!(
            ls.iter().any(|l| l.v["message"]["kind"] == k
                && l.v["message"]["fields"]["code"].as_u64() != Some(0)),
            "no {k} with a code"
        );
    }
}

// ---------------------------------------------------------------------------------
// bad-messages.jsonl

fn bad_messages() -> Vec<Line> {
    jsonl(
        "bad-messages.jsonl",
        BAD_MESSAGES,
        &[
            "name",
            "kind",
            "request_id",
            "frame",
            "error",
            "field",
            "rkyv_error",
            "code",
            "why",
        ],
        &["field", "rkyv_error"],
    )
}

#[test]
fn bad_messages_jsonl_are_rejected_as_listed() {
    for l in bad_messages() {
        let ctx = &l.ctx;
        let bytes = hex(ctx, &l.v["frame"]);
        // The frame itself is well formed: only the payload is bad.
        let d = one_frame(ctx, &bytes);
        let kind = u8::try_from(l.v["kind"].as_u64().unwrap()).unwrap();
        assert_eq!(d.header.kind, kind, "{ctx}: kind byte");
        assert_eq!(
            d.header.request_id,
            u32_of(ctx, &l.v["request_id"]),
            "{ctx}: request id"
        );
        let err = match decode_both_ways(kind, d.payload) {
            Ok(m) => panic!("{ctx}: accepted as {m:?}"),
            Err(e) => e,
        };
        let what = l.v["error"].as_str().unwrap();
        match (what, &err) {
            ("invalid", DecodeError::Invalid { kind: k, source }) => {
                assert_eq!(k.as_u8(), kind, "{ctx}");
                if let Some(s) = l.v.get("rkyv_error") {
                    let s = s.as_str().unwrap();
                    assert!(
                        source.to_string().contains(s),
                        "{ctx}: rkyv error {source} lacks {s:?}"
                    );
                }
                assert!(l.v.get("field").is_none(), "{ctx}: field on invalid");
            }
            ("bound", DecodeError::Bound { kind: k, field, .. }) => {
                assert_eq!(k.as_u8(), kind, "{ctx}");
                assert_eq!(Some(*field), l.v["field"].as_str(), "{ctx}: field");
            }
            ("unknown_kind", DecodeError::UnknownKind(k)) => {
                assert_eq!(*k, kind, "{ctx}");
                assert!(Kind::from_u8(kind).is_none(), "{ctx}");
            }
            _ => panic!("{ctx}: expected {what}, got {err}"),
        }
        // The code the server answers with (PROTOCOL.md section 6.6).
        let code = match &l.v["code"] {
            Value::Null => None,
            v => {
                let n = u16::try_from(v.as_u64().unwrap()).unwrap();
                Some(ErrorCode::from_u16(n).unwrap_or_else(|| panic!("{ctx}: code {n}")))
            }
        };
        assert_eq!(code, expected_code(what, kind), "{ctx}: code");
    }
}

/// What the server answers a client's frame of `kind` whose payload fails to decode
/// with `what`; `None` for kinds it never decodes from clients (PROTOCOL.md 6.6).
fn expected_code(what: &str, kind: u8) -> Option<ErrorCode> {
    use Kind::*;
    match (what, Kind::from_u8(kind)) {
        ("unknown_kind", _) => Some(ErrorCode::UnknownKind),
        (_, Some(Hello | Ping)) => Some(ErrorCode::MalformedPayload),
        (
            "invalid",
            Some(
                Refresh | Send | Receipt | Typing | Note | Transfer | Claim | Close | Rate
                | Presence | Watch | WrongReply | History | Suggest | Notice | ListConversations
                | Disconnect,
            ),
        ) => Some(ErrorCode::MalformedPayload),
        (
            "bound",
            Some(
                Refresh | Send | Receipt | Typing | Note | Transfer | Claim | Close | Rate
                | Presence | Watch | WrongReply | History | Suggest | Notice | ListConversations
                | Disconnect,
            ),
        ) => Some(ErrorCode::BadRequest),
        _ => None,
    }
}

#[test]
fn bad_messages_jsonl_cover_every_rule() {
    let ls = bad_messages();
    let rkyv: BTreeSet<&str> = ls
        .iter()
        .filter_map(|l| l.v.get("rkyv_error").and_then(Value::as_str))
        .collect();
    for want in [
        "subtree pointer overran range",
        "unaligned pointer",
        "invalid UTF-8",
        "bool set to invalid byte",
        "String representation was out-of-line but the length was too short",
    ] {
        assert!(rkyv.contains(want), "no bad vector for {want:?}");
    }
    let bounds: BTreeSet<(u64, &str)> = ls
        .iter()
        .filter(|l| l.v["error"] == "bound")
        .map(|l| {
            (
                l.v["kind"].as_u64().unwrap(),
                l.v["field"].as_str().unwrap(),
            )
        })
        .collect();
    // Every bound `Msg::check_bounds` enforces.
    for (kind, field) in [
        (Kind::Hello, "token"),
        (Kind::Hello, "client"),
        (Kind::Hello, "resume"),
        (Kind::Send, "body"),
        (Kind::Send, "content_type"),
        (Kind::Send, "group"),
        (Kind::Rate, "score"),
        (Kind::Rate, "comment"),
        (Kind::Receipt, "status"),
        (Kind::Presence, "status"),
        (Kind::Transfer, "to_agent"),
        (Kind::Transfer, "to_group"),
        (Kind::Transfer, "note"),
        (Kind::Close, "reason"),
        (Kind::Suggest, "prefix"),
        (Kind::Notice, "text"),
        (Kind::Notice, "group"),
        (Kind::Ping, "data"),
        (Kind::Pong, "data"),
        (Kind::Refresh, "token"),
        (Kind::Note, "body"),
        (Kind::Watch, "group"),
        (Kind::WrongReply, "comment"),
        (Kind::ListConversations, "state"),
        (Kind::ListConversations, "group"),
        (Kind::ListConversations, "agent"),
        (Kind::Disconnect, "user"),
        (Kind::Disconnect, "reason"),
    ] {
        assert!(
            bounds.contains(&(u64::from(kind.as_u8()), field)),
            "no bound vector for {kind:?}.{field}"
        );
    }
    assert!(ls.iter().any(|l| l.v["error"] == "unknown_kind"));
    // An invalid archive of a conversation kind (104, not 400).
    assert!(ls.iter().any(|l| l.v["error"] == "invalid"
        && l.v["code"] == 104
        && l.v["kind"].as_u64().is_some_and(|k| k >= 16)));
}

// ---------------------------------------------------------------------------------
// noncanonical-messages.jsonl

#[test]
fn noncanonical_messages_jsonl_are_accepted() {
    let ls = jsonl(
        "noncanonical-messages.jsonl",
        NONCANONICAL,
        &["name", "request_id", "message", "frame", "canonical", "why"],
        &[],
    );
    assert!(!ls.is_empty());
    for l in ls {
        let ctx = &l.ctx;
        let want = msg_of(ctx, &l.v["message"]);
        let rid = u32_of(ctx, &l.v["request_id"]);
        let bytes = hex(ctx, &l.v["frame"]);
        let canonical = hex(ctx, &l.v["canonical"]);
        assert_ne!(bytes, canonical, "{ctx}: the frame is canonical");
        let d = one_frame(ctx, &bytes);
        assert_eq!(d.header.kind, want.kind().as_u8(), "{ctx}: kind");
        assert_eq!(d.header.request_id, rid, "{ctx}: request id");
        assert_eq!(d.header.status, expected_status(&want), "{ctx}: status");
        let got = decode_both_ways(d.header.kind, d.payload)
            .unwrap_or_else(|e| panic!("{ctx}: decode: {e}"));
        assert_eq!(got, want, "{ctx}: decoded");
        assert_eq!(
            want.to_frame(rid).as_ref(),
            canonical.as_slice(),
            "{ctx}: canonical"
        );
    }
}

// ---------------------------------------------------------------------------------
// PROTOCOL.md against the code.

/// The data rows (cells trimmed, backticks removed) of the markdown table whose
/// header row is the first line at or after `from` starting with `| {first} |`.
fn md_table_from(from: usize, first: &str) -> Vec<Vec<String>> {
    let start = format!("| {first} |");
    let mut lines = PROTOCOL_MD
        .lines()
        .skip(from)
        .skip_while(|l| !l.starts_with(&start));
    assert!(lines.next().is_some(), "PROTOCOL.md has no `{start}` table");
    lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(cells)
        .collect()
}

/// The cells of a markdown table row, split at `|` but not at an escaped `\|`.
fn cells(row: &str) -> Vec<String> {
    let row = row.trim();
    let inner = row
        .strip_prefix('|')
        .and_then(|r| r.strip_suffix('|'))
        .unwrap_or_else(|| panic!("not a table row: {row}"));
    let mut out = vec![String::new()];
    let mut escaped = false;
    for ch in inner.chars() {
        match ch {
            '|' if !escaped => out.push(String::new()),
            _ => out.last_mut().unwrap().push(ch),
        }
        escaped = ch == '\\';
    }
    out.iter()
        .map(|c| c.trim().trim_matches('`').to_owned())
        .collect()
}

/// How a field's archived type is written in PROTOCOL.md.
trait WireType {
    fn wire() -> String;
}
macro_rules! wire {
    ($($t:ty => $name:literal),* $(,)?) => {
        $(impl WireType for $t { fn wire() -> String { $name.to_owned() } })*
    };
}
wire! {
    u8 => "u8",
    bool => "bool",
    rkyv::rend::u16_le => "u16",
    rkyv::rend::u32_le => "u32",
    rkyv::rend::u64_le => "u64",
    rkyv::string::ArchivedString => "string",
    ArchivedCursor => "Cursor",
    ArchivedResumed => "Resumed",
    ArchivedEntry => "Entry",
    ArchivedSuggestion => "Suggestion",
    ArchivedGroupAvailability => "GroupAvailability",
    ArchivedConversationInfo => "ConversationInfo",
}
impl<T: WireType> WireType for rkyv::vec::ArchivedVec<T> {
    fn wire() -> String {
        format!("vec<{}>", T::wire())
    }
}

fn field<S, F: WireType>(_: fn(&S) -> &F) -> (String, usize) {
    (F::wire(), size_of::<F>())
}

/// An archived struct as the compiler lays it out: name, size, alignment, and
/// (field, type, offset, size) in declaration order.
type Layout = (String, usize, usize, Vec<(String, String, usize, usize)>);

macro_rules! layouts {
    ($($name:literal: $t:ty { $($f:ident),* }),* $(,)?) => {
        vec![$(
            (
                $name.to_owned(),
                size_of::<$t>(),
                align_of::<$t>(),
                vec![$({
                    let (ty, size) = field(|s: &$t| &s.$f);
                    (stringify!($f).to_owned(), ty, offset_of!($t, $f), size)
                }),*],
            )
        ),*]
    };
}

fn code_layouts() -> Vec<Layout> {
    layouts! {
        "Hello": ArchivedHello { protocol, token, client, resume },
        "Welcome": ArchivedWelcome { protocol, role, heartbeat_ms, idle_timeout_ms, max_frame,
            session, server_time_ms, user, name, tenant, groups, resumed },
        "Ping": ArchivedPing { stamp, data },
        "Pong": ArchivedPong { stamp, data },
        "Error": ArchivedError { code, retryable, conversation, message },
        "Bye": ArchivedBye { code, message },
        "Refresh": ArchivedRefresh { token },
        "Refreshed": ArchivedRefreshed { expires_ms },
        "Send": ArchivedSend { content_type, conversation, client_msg_id, group, body },
        "Accepted": ArchivedAccepted { client_msg_id, conversation, seq, time_ms },
        "Deliver": ArchivedDeliver { sender_role, content_type, flags, conversation, seq,
            time_ms, client_msg_id, sender, body },
        "Receipt": ArchivedReceipt { status, conversation, seq, user },
        "Typing": ArchivedTyping { typing, conversation, user },
        "Note": ArchivedNote { conversation, client_msg_id, body },
        "Queued": ArchivedQueued { position, conversation, group },
        "Assigned": ArchivedAssigned { conversation, seq, agent, agent_name, group, visitor,
            visitor_name },
        "Transfer": ArchivedTransfer { conversation, to_agent, to_group, note },
        "Claim": ArchivedClaim { conversation },
        "Close": ArchivedClose { conversation, seq, reason },
        "Rate": ArchivedRate { score, conversation, comment },
        "Presence": ArchivedPresence { status, user },
        "Availability": ArchivedAvailability { groups },
        "Watch": ArchivedWatch { group },
        "WrongReply": ArchivedWrongReply { conversation, seq, comment },
        "History": ArchivedHistory { limit, conversation, before_seq },
        "HistoryPage": ArchivedHistoryPage { more, conversation, entries },
        "Suggest": ArchivedSuggest { limit, faq, conversation, prefix },
        "Suggestions": ArchivedSuggestions { prefix, items },
        "Notice": ArchivedNotice { time_ms, group, from, text },
        "ListConversations": ArchivedListConversations { limit, state, after, updated_since_ms,
            group, agent },
        "ConversationList": ArchivedConversationList { more, next_after, items },
        "Disconnect": ArchivedDisconnect { user, reason },
        "Disconnected": ArchivedDisconnected { sessions, user },
        "Entry": ArchivedEntry { seq, time_ms, kind, sender_role, content_type, flags, sender,
            body },
        "Cursor": ArchivedCursor { conversation, last_seq },
        "Suggestion": ArchivedSuggestion { id, uses, text },
        "Resumed": ArchivedResumed { conversation, from_seq, recovered },
        "GroupAvailability": ArchivedGroupAvailability { online, estimated_wait_ms, group },
        "ConversationInfo": ArchivedConversationInfo { conversation, opened_ms, updated_ms,
            last_seq, state, group, visitor, visitor_name, agent },
    }
}

/// The layouts PROTOCOL.md documents: after each `Layout of `X`: size N, alignment A.`
/// line, the table of its fields and padding.
fn doc_layouts() -> BTreeMap<String, Layout> {
    let mut out = BTreeMap::new();
    for (i, line) in PROTOCOL_MD.lines().enumerate() {
        let Some(rest) = line.strip_prefix("Layout of `") else {
            continue;
        };
        let (name, rest) = rest
            .split_once("`: size ")
            .unwrap_or_else(|| panic!("{line}"));
        let (size, align) = rest
            .strip_suffix('.')
            .and_then(|r| r.split_once(", alignment "))
            .unwrap_or_else(|| panic!("{line}"));
        let mut at = 0;
        let mut fields = Vec::new();
        for row in md_table_from(i, "Field") {
            let ctx = format!("PROTOCOL.md layout of {name}: {row:?}");
            let (offset, size): (usize, usize) = (row[2].parse().unwrap(), row[3].parse().unwrap());
            assert_eq!(offset, at, "{ctx}: rows must tile the struct without gaps");
            at += size;
            if row[0] == "*(padding)*" {
                assert!(row[1].is_empty() && row[4].starts_with("zero"), "{ctx}");
            } else {
                fields.push((row[0].clone(), row[1].clone(), offset, size));
            }
        }
        let layout = (
            name.to_owned(),
            size.parse().unwrap(),
            align.parse().unwrap(),
            fields,
        );
        assert_eq!(
            at, layout.1,
            "PROTOCOL.md layout of {name}: rows do not add up to its size"
        );
        assert!(
            out.insert(name.to_owned(), layout).is_none(),
            "{name} twice"
        );
    }
    out
}

#[test]
fn protocol_md_layouts_match_the_archived_types() {
    let doc = doc_layouts();
    let code = code_layouts();
    for c in &code {
        let d = doc
            .get(&c.0)
            .unwrap_or_else(|| panic!("PROTOCOL.md has no layout of {}", c.0));
        assert_eq!(d, c, "PROTOCOL.md layout of {}", c.0);
    }
    let names: BTreeSet<&String> = code.iter().map(|c| &c.0).collect();
    assert_eq!(doc.keys().collect::<BTreeSet<_>>(), names);
    // Every kind has a body, documented.
    for b in 0..=u8::MAX {
        if let Some(k) = Kind::from_u8(b) {
            assert!(doc.contains_key(&format!("{k:?}")), "no layout of {k:?}");
        }
    }
    // The primitive sizes of section 3.2.
    assert_eq!(size_of::<rkyv::string::ArchivedString>(), 8);
    assert_eq!(align_of::<rkyv::string::ArchivedString>(), 4);
    assert_eq!(size_of::<rkyv::vec::ArchivedVec<ArchivedCursor>>(), 8);
    assert_eq!(align_of::<rkyv::vec::ArchivedVec<ArchivedCursor>>(), 4);
    assert_eq!(align_of::<rkyv::Archived<u64>>(), 8);
}

#[test]
fn protocol_md_code_tables_match_the_constants() {
    use messages::{content, conversation_state as cs, flags, gap, presence, receipt, role};
    let tables: [(&str, Vec<(&str, u8)>); 7] = [
        (
            "role",
            vec![
                ("VISITOR", role::VISITOR),
                ("AGENT", role::AGENT),
                ("BOT", role::BOT),
                ("ADMIN", role::ADMIN),
                ("SYSTEM", role::SYSTEM),
            ],
        ),
        (
            "content",
            vec![
                ("TEXT", content::TEXT),
                ("MARKDOWN", content::MARKDOWN),
                ("URL", content::URL),
                ("JSON", content::JSON),
                ("ATTACHMENT", content::ATTACHMENT),
            ],
        ),
        (
            "presence",
            vec![
                ("ONLINE", presence::ONLINE),
                ("AWAY", presence::AWAY),
                ("OFFLINE", presence::OFFLINE),
            ],
        ),
        (
            "receipt",
            vec![("DELIVERED", receipt::DELIVERED), ("READ", receipt::READ)],
        ),
        (
            "flags",
            vec![
                ("AUTO_REPLY", flags::AUTO_REPLY),
                ("FLAGGED", flags::FLAGGED),
                ("REPLAY", flags::REPLAY),
                ("PRIVATE", flags::PRIVATE),
                ("OFFLINE", flags::OFFLINE),
                ("VISITOR_AWAY", flags::VISITOR_AWAY),
            ],
        ),
        (
            "gap",
            vec![("LOST", gap::LOST), ("RESERVED", gap::RESERVED)],
        ),
        (
            "state",
            vec![
                ("OPEN", cs::OPEN),
                ("QUEUED", cs::QUEUED),
                ("ASSIGNED", cs::ASSIGNED),
                ("CLOSED", cs::CLOSED),
                ("ANY", cs::ANY),
            ],
        ),
    ];
    for (table, want) in tables {
        let got: Vec<(String, u8)> = md_table_from(0, table)
            .into_iter()
            .map(|r| (r[1].clone(), r[0].parse().unwrap()))
            .collect();
        let want: Vec<(String, u8)> = want.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        assert_eq!(got, want, "PROTOCOL.md `{table}` table");
    }
}

#[test]
fn protocol_md_limits_match_the_code() {
    let c = Config::default();
    let rows = md_table_from(0, "Limit");
    let value = |key: &str| {
        rows.iter()
            .find(|r| r[0] == key)
            .map(|r| r[1].clone())
            .unwrap_or_else(|| panic!("PROTOCOL.md limits table lacks {key}"))
    };
    let starts = |key: &str, want: String| {
        let got = value(key);
        assert!(
            got.starts_with(&want),
            "{key}: spec says {got:?}, code {want:?}"
        );
    };
    let secs = |d: std::time::Duration| format!("{} s", d.as_secs());
    starts("MAX_TOKEN", format!("{} bytes", messages::MAX_TOKEN));
    starts("MAX_BODY", format!("{} bytes", messages::MAX_BODY));
    starts("MAX_SHORT", format!("{} bytes", messages::MAX_SHORT));
    starts("MAX_CURSORS", format!("{} cursors", messages::MAX_CURSORS));
    starts("MAX_USER", format!("{} bytes", messages::MAX_USER));
    starts("MAX_WATCHED", format!("{} groups", messages::MAX_WATCHED));
    starts(
        "MAX_QUEUE_SNAPSHOT",
        format!("{} conversations", messages::MAX_QUEUE_SNAPSHOT),
    );
    // The wait steps `Availability.estimated_wait_ms` takes (section 4.18a).
    let steps: Vec<String> = messages::WAIT_STEPS_MS.iter().map(u64::to_string).collect();
    let steps = format!("`WAIT_STEPS_MS`: {}", steps.join(", "));
    assert!(PROTOCOL_MD.contains(&steps), "PROTOCOL.md lacks {steps:?}");
    starts(
        "limits.max_frame_bytes",
        c.limits.max_frame_bytes.to_string(),
    );
    assert!(value("limits.max_frame_bytes").contains(&format!("1 to {MAX_PAYLOAD_LIMIT}")));
    starts(
        "limits.max_pending_bytes",
        c.limits.max_pending_bytes.to_string(),
    );
    starts(
        "heartbeat.handshake_timeout",
        secs(c.heartbeat.handshake_timeout),
    );
    starts("heartbeat.idle_timeout", secs(c.heartbeat.idle_timeout));
    starts("heartbeat.interval", secs(c.heartbeat.interval));
    starts("auth.leeway", secs(c.auth.leeway));
    // The Welcome defaults quoted in section 4.2 follow from the same config.
    for quoted in [
        format!("default {})", c.heartbeat.interval.as_millis()),
        format!("default {})", c.heartbeat.idle_timeout.as_millis()),
        format!("default {})", c.limits.max_frame_bytes),
    ] {
        assert!(
            PROTOCOL_MD.contains(&quoted),
            "PROTOCOL.md lacks {quoted:?}"
        );
    }
    assert_eq!(messages::PROTOCOL_VERSION, 1);
}

/// The frame bytes of the hex dump that follows `<!-- vector: NAME -->`: lines
/// `OFFSET  16 hex bytes | comment`, offsets counting up by 16.
fn doc_dump(name: &str) -> Vec<u8> {
    let marker = format!("<!-- vector: {name} -->");
    let mut lines = PROTOCOL_MD.lines().skip_while(|l| *l != marker);
    assert!(lines.next().is_some(), "PROTOCOL.md has no {marker}");
    assert_eq!(lines.next(), Some("```"), "{marker}: no code block");
    let mut out = Vec::new();
    for line in lines.take_while(|l| *l != "```") {
        let (bytes, _comment) = line.split_once(" | ").unwrap_or_else(|| panic!("{line}"));
        let mut cells = bytes.split_whitespace();
        let offset = usize::from_str_radix(cells.next().unwrap(), 16).unwrap();
        assert_eq!(offset, out.len(), "{marker}: offset of {line}");
        let row: Vec<u8> = cells.map(|c| u8::from_str_radix(c, 16).unwrap()).collect();
        assert!(row.len() == 16, "{marker}: {line}");
        out.extend(row);
    }
    out
}

#[test]
fn protocol_md_worked_example_is_the_vector() {
    let ls = messages();
    for name in ["example-hello", "example-welcome"] {
        let l = ls
            .iter()
            .find(|l| l.v["name"] == name)
            .unwrap_or_else(|| panic!("no vector {name}"));
        assert_eq!(
            doc_dump(name),
            hex(&l.ctx, &l.v["frame"]),
            "PROTOCOL.md {name}"
        );
    }
}

/// Section 2's kind table: every kind the code knows, by number and name, and nothing
/// else; the kinds a client may send are those whose direction has a client sending.
/// Section 6.1's list of server-only kinds says the same.
#[test]
fn protocol_md_kind_table_matches_the_code() {
    let rows = md_table_from(0, "Kind");
    let doc: Vec<(u8, String, String)> = rows
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].clone(), r[2].clone()))
        .collect();
    let code: Vec<(u8, String)> = (0..=u8::MAX)
        .filter_map(|v| Kind::from_u8(v).map(|k| (v, format!("{k:?}"))))
        .collect();
    assert_eq!(
        doc.iter()
            .map(|(n, name, _)| (*n, name.clone()))
            .collect::<Vec<_>>(),
        code,
        "section 2 lists exactly the kinds the code knows"
    );
    let mut server_only = Vec::new();
    for (n, name, direction) in &doc {
        let client_sends = direction == "either way"
            || direction.starts_with("client →")
            || direction.starts_with("visitor →")
            || direction.starts_with("agent →")
            || direction.starts_with("admin →");
        let kind = Kind::from_u8(*n).unwrap();
        assert_eq!(
            kind.from_client(),
            client_sends,
            "{name}: direction {direction:?}"
        );
        if !client_sends {
            server_only.push(n.to_string());
        }
    }
    let listed = format!(
        "the kinds only the server sends ({})",
        server_only.join(", ")
    );
    assert!(
        PROTOCOL_MD.contains(&listed),
        "section 6.1 should say {listed:?}"
    );
}

/// Section 7's error table: every code with its name, whether it closes the
/// connection and whether it is retryable, exactly as the code has them.
#[test]
fn protocol_md_error_table_matches_the_code() {
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let doc: Vec<(u16, String, String, String)> = md_table_from(0, "Code")
        .iter()
        .map(|r| {
            (
                r[0].parse().unwrap(),
                r[1].clone(),
                r[3].clone(),
                r[4].clone(),
            )
        })
        .collect();
    let code: Vec<(u16, String, String, String)> = ErrorCode::ALL
        .iter()
        .map(|c| {
            (
                c.as_u16(),
                c.name().to_owned(),
                yes(c.closes_connection()),
                yes(c.retryable()),
            )
        })
        .collect();
    assert_eq!(doc, code);
}

/// Section 13.9's transcript table: the kind number of each event is the one the
/// server stores.
#[test]
fn protocol_md_transcript_table_matches_the_code() {
    let doc: BTreeMap<String, u8> = md_table_from(0, "Event")
        .iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect();
    let code: BTreeMap<String, u8> = [
        ("message", Kind::Send.as_u8()),
        ("note", Kind::Note.as_u8()),
        ("assignment", Kind::Assigned.as_u8()),
        ("requeue", Kind::Queued.as_u8()),
        ("close", Kind::Close.as_u8()),
        ("rating", Kind::Rate.as_u8()),
        ("gap", messages::entry_kind::GAP),
    ]
    .into_iter()
    .map(|(e, k)| (e.to_owned(), k))
    .collect();
    assert_eq!(doc, code);
}
