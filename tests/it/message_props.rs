//! Property tests for the message bodies (`switchboard::protocol::messages`).
//!
//! Strategies build every one of the 23 [`Msg`] kinds with arbitrary field values:
//! strings mixing ASCII, Latin, CJK, emoji, NUL and any other `char`, around rkyv's
//! 8-byte inline-string limit and up to exactly their protocol bound; vectors from
//! empty to a few elements (and `Hello.resume` at exactly `MAX_CURSORS`); byte
//! vectors (`Ping.data`) short, or up to exactly their bound. Fields
//! that `Msg::check_bounds` constrains stay within it; so do strings it does not
//! check, which keep to the bound of their category (`MAX_SHORT` for names, ids,
//! groups; `MAX_BODY` for bodies and texts; `MAX_TOKEN` for the token). Other
//! integers (codes the decoder does not check, like `Deliver.sender_role`) are
//! arbitrary. Properties:
//!
//! - in-bounds messages round-trip: `to_frame` → `frame::decode` → `Msg::decode`
//!   gives back the message, under its kind byte, request id and (for `Error`/`Bye`)
//!   the status mirroring the code, at every payload alignment;
//! - a message breaking exactly one bound decodes to `DecodeError::Bound` naming its
//!   kind and that field;
//! - random bytes, truncated payloads, bit-flipped payloads and valid payloads under
//!   the wrong kind byte never make `Msg::decode` panic; the answer is the same at
//!   every misalignment offset (1..=15, which takes the copying path) as aligned; and
//!   whatever decodes `Ok` has the kind it was decoded under and re-encodes to bytes
//!   that decode to the same message. Unknown kind bytes give `UnknownKind`.

use std::cell::Cell;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use switchboard::bench_support::{DecodeOutcome as Outcome, decode_at};
use switchboard::frame::{self, MAX_PAYLOAD_LIMIT};
use switchboard::protocol::messages::{
    self as m, MAX_BODY, MAX_CURSORS, MAX_SHORT, MAX_TOKEN, MAX_USER,
};
use switchboard::protocol::{DecodeError, Kind, Msg};

// ---------------------------------------------------------------------------------
// Strings
// ---------------------------------------------------------------------------------

/// Characters worth mixing: ASCII, 2-byte (Latin, Greek, Cyrillic...), 3-byte (CJK),
/// 4-byte (emoji), NUL and anything else.
fn ch() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        1 => proptest::char::range('\u{80}', '\u{7ff}'),
        1 => proptest::char::range('\u{4e00}', '\u{9fff}'),
        1 => proptest::char::range('\u{1f300}', '\u{1faff}'),
        1 => Just('\0'),
        2 => any::<char>(),
    ]
}

/// A string of `min..=max` characters (so at most `4 * max` bytes).
fn text(min: usize, max: usize) -> impl Strategy<Value = String> {
    vec(ch(), min..=max).prop_map(String::from_iter)
}

/// Repeats `pattern` and pads with ASCII to exactly `len` bytes.
fn fill(pattern: &[char], len: usize) -> String {
    let mut s = String::with_capacity(len);
    for &c in pattern.iter().cycle() {
        if s.len() + c.len_utf8() > len {
            break;
        }
        s.push(c);
    }
    while s.len() < len {
        s.push('x');
    }
    s
}

/// A string of exactly as many bytes as `len` picks (cheap even at 64 KiB).
fn sized(len: impl Strategy<Value = usize>) -> impl Strategy<Value = String> {
    (vec(ch(), 1..12), len).prop_map(|(pattern, len)| fill(&pattern, len))
}

/// A string of `min..=max` bytes (`min` is 0 or 1, `max` at least 256): mostly short
/// (around the 8-byte inline limit), sometimes anywhere up to `max`, sometimes exactly
/// `max`.
fn string_in(min: usize, max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        4 => text(min, 12),
        2 => text(min, 64),
        1 => sized(min..=16),
        1 => sized(min..=max),
        1 => sized(Just(max)),
    ]
    .boxed()
}

fn short() -> BoxedStrategy<String> {
    string_in(0, MAX_SHORT)
}

fn body() -> BoxedStrategy<String> {
    string_in(0, MAX_BODY)
}

/// A string breaking a `max`-byte bound: just over it, or far over it.
fn over(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => sized(max + 1..=max + 8),
        1 => sized(max + 1..=2 * max),
    ]
}

// ---------------------------------------------------------------------------------
// In-bounds messages
// ---------------------------------------------------------------------------------

/// A strategy for the struct `$ty`, each field drawn from its own strategy: the
/// tuple of the field strategies, mapped onto the struct field by field.
macro_rules! fields {
    ($($ty:ident)::+ { $($field:ident: $strategy:expr),+ $(,)? }) => {
        ($($strategy,)+).prop_map(|($($field,)+)| $($ty)::+ { $($field),+ })
    };
}

fn cursor() -> impl Strategy<Value = m::Cursor> {
    fields!(m::Cursor {
        conversation: any::<u64>(),
        last_seq: any::<u64>()
    })
}

fn resumed() -> impl Strategy<Value = m::Resumed> {
    fields!(m::Resumed {
        conversation: any::<u64>(),
        from_seq: any::<u64>(),
        recovered: any::<bool>(),
    })
}

fn entry() -> impl Strategy<Value = m::Entry> {
    fields!(m::Entry {
        seq: any::<u64>(),
        time_ms: any::<u64>(),
        kind: any::<u8>(),
        sender_role: any::<u8>(),
        content_type: any::<u8>(),
        flags: any::<u8>(),
        sender: short(),
        body: body(),
    })
}

fn suggestion() -> impl Strategy<Value = m::Suggestion> {
    fields!(m::Suggestion {
        id: any::<u32>(),
        uses: any::<u32>(),
        text: short()
    })
}

fn hello() -> impl Strategy<Value = m::Hello> {
    fields!(m::Hello {
        protocol: any::<u16>(),
        token: string_in(0, MAX_TOKEN),
        client: short(),
        resume: prop_oneof![
            8 => vec(cursor(), 0..6),
            1 => vec(cursor(), MAX_CURSORS..=MAX_CURSORS),
        ],
    })
}

fn welcome() -> impl Strategy<Value = m::Welcome> {
    fields!(m::Welcome {
        protocol: any::<u16>(),
        role: any::<u8>(),
        heartbeat_ms: any::<u32>(),
        idle_timeout_ms: any::<u32>(),
        max_frame: any::<u32>(),
        session: any::<u64>(),
        server_time_ms: any::<u64>(),
        user: short(),
        name: short(),
        tenant: short(),
        groups: vec(short(), 0..5),
        resumed: vec(resumed(), 0..5),
    })
}

/// Bytes: mostly a few, sometimes anywhere up to `max`, sometimes exactly `max`.
fn blob(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let filled = |len: BoxedStrategy<usize>| {
        (vec(any::<u8>(), 1..16), len)
            .prop_map(|(pattern, len)| pattern.iter().copied().cycle().take(len).collect())
    };
    prop_oneof![
        6 => vec(any::<u8>(), 0..24),
        1 => filled((0..=max).boxed()),
        1 => filled(Just(max).boxed()),
    ]
}

/// Bytes breaking a `max`-byte bound.
fn blob_over(max: usize) -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), max + 1..=max + 8).prop_map(|(b, len)| vec![b; len])
}

fn ping() -> impl Strategy<Value = m::Ping> {
    fields!(m::Ping {
        stamp: any::<u64>(),
        data: blob(MAX_BODY)
    })
}

fn pong() -> impl Strategy<Value = m::Pong> {
    fields!(m::Pong {
        stamp: any::<u64>(),
        data: blob(MAX_BODY)
    })
}

fn error() -> impl Strategy<Value = m::Error> {
    fields!(m::Error {
        code: any::<u16>(),
        retryable: any::<bool>(),
        conversation: any::<u64>(),
        message: short(),
    })
}

fn bye() -> impl Strategy<Value = m::Bye> {
    fields!(m::Bye {
        code: any::<u16>(),
        message: short()
    })
}

fn refresh() -> impl Strategy<Value = m::Refresh> {
    fields!(m::Refresh {
        token: string_in(0, MAX_TOKEN)
    })
}

fn refreshed() -> impl Strategy<Value = m::Refreshed> {
    fields!(m::Refreshed {
        expires_ms: any::<u64>()
    })
}

fn send() -> impl Strategy<Value = m::Send> {
    fields!(m::Send {
        content_type: 1u8..=4,
        conversation: any::<u64>(),
        client_msg_id: any::<u64>(),
        group: short(),
        body: string_in(1, MAX_BODY),
    })
}

fn accepted() -> impl Strategy<Value = m::Accepted> {
    fields!(m::Accepted {
        client_msg_id: any::<u64>(),
        conversation: any::<u64>(),
        seq: any::<u64>(),
        time_ms: any::<u64>(),
    })
}

fn deliver() -> impl Strategy<Value = m::Deliver> {
    fields!(m::Deliver {
        sender_role: any::<u8>(),
        content_type: any::<u8>(),
        flags: any::<u8>(),
        conversation: any::<u64>(),
        seq: any::<u64>(),
        time_ms: any::<u64>(),
        client_msg_id: any::<u64>(),
        sender: short(),
        body: body(),
    })
}

fn receipt() -> impl Strategy<Value = m::Receipt> {
    fields!(m::Receipt {
        status: 1u8..=2,
        conversation: any::<u64>(),
        seq: any::<u64>(),
        user: short(),
    })
}

fn typing() -> impl Strategy<Value = m::Typing> {
    fields!(m::Typing {
        typing: any::<bool>(),
        conversation: any::<u64>(),
        user: short()
    })
}

fn queued() -> impl Strategy<Value = m::Queued> {
    fields!(m::Queued {
        position: any::<u32>(),
        conversation: any::<u64>(),
        group: short()
    })
}

fn assigned() -> impl Strategy<Value = m::Assigned> {
    fields!(m::Assigned {
        conversation: any::<u64>(),
        seq: any::<u64>(),
        agent: short(),
        agent_name: short(),
        group: short(),
        visitor: short(),
        visitor_name: short(),
    })
}

fn transfer() -> impl Strategy<Value = m::Transfer> {
    fields!(m::Transfer {
        conversation: any::<u64>(),
        to_agent: short(),
        to_group: short(),
        note: short(),
    })
}

fn claim() -> impl Strategy<Value = m::Claim> {
    fields!(m::Claim {
        conversation: any::<u64>()
    })
}

fn close() -> impl Strategy<Value = m::Close> {
    fields!(m::Close {
        conversation: any::<u64>(),
        seq: any::<u64>(),
        reason: short()
    })
}

fn rate() -> impl Strategy<Value = m::Rate> {
    fields!(m::Rate {
        score: 1u8..=5,
        conversation: any::<u64>(),
        comment: short()
    })
}

fn presence() -> impl Strategy<Value = m::Presence> {
    fields!(m::Presence {
        status: 1u8..=3,
        user: short()
    })
}

fn history() -> impl Strategy<Value = m::History> {
    fields!(m::History {
        limit: any::<u16>(),
        conversation: any::<u64>(),
        before_seq: any::<u64>()
    })
}

fn history_page() -> impl Strategy<Value = m::HistoryPage> {
    fields!(m::HistoryPage {
        more: any::<bool>(),
        conversation: any::<u64>(),
        entries: vec(entry(), 0..5),
    })
}

fn suggest() -> impl Strategy<Value = m::Suggest> {
    fields!(m::Suggest {
        limit: any::<u8>(),
        faq: any::<bool>(),
        conversation: any::<u64>(),
        prefix: short()
    })
}

fn suggestions() -> impl Strategy<Value = m::Suggestions> {
    fields!(m::Suggestions {
        prefix: short(),
        items: vec(suggestion(), 0..5)
    })
}

fn notice() -> impl Strategy<Value = m::Notice> {
    fields!(m::Notice {
        time_ms: any::<u64>(),
        group: short(),
        from: short(),
        text: body()
    })
}

fn note() -> impl Strategy<Value = m::Note> {
    fields!(m::Note {
        conversation: any::<u64>(),
        client_msg_id: any::<u64>(),
        body: string_in(1, MAX_BODY),
    })
}

fn group_availability() -> impl Strategy<Value = m::GroupAvailability> {
    fields!(m::GroupAvailability {
        online: any::<bool>(),
        estimated_wait_ms: any::<u64>(),
        group: short(),
    })
}

fn availability() -> impl Strategy<Value = m::Availability> {
    fields!(m::Availability {
        groups: vec(group_availability(), 0..5)
    })
}

fn list_conversations() -> impl Strategy<Value = m::ListConversations> {
    fields!(m::ListConversations {
        limit: any::<u16>(),
        state: 0u8..=4,
        after: any::<u64>(),
        updated_since_ms: any::<u64>(),
        group: short(),
        agent: short(),
    })
}

fn conversation_info() -> impl Strategy<Value = m::ConversationInfo> {
    fields!(m::ConversationInfo {
        conversation: any::<u64>(),
        opened_ms: any::<u64>(),
        updated_ms: any::<u64>(),
        last_seq: any::<u64>(),
        state: any::<u8>(),
        group: short(),
        visitor: short(),
        visitor_name: short(),
        agent: short(),
    })
}

fn conversation_list() -> impl Strategy<Value = m::ConversationList> {
    fields!(m::ConversationList {
        more: any::<bool>(),
        next_after: any::<u64>(),
        items: vec(conversation_info(), 0..5),
    })
}

fn watch() -> impl Strategy<Value = m::Watch> {
    fields!(m::Watch { group: short() })
}

fn wrong_reply() -> impl Strategy<Value = m::WrongReply> {
    fields!(m::WrongReply {
        conversation: any::<u64>(),
        seq: any::<u64>(),
        comment: short()
    })
}

fn disconnect() -> impl Strategy<Value = m::Disconnect> {
    fields!(m::Disconnect {
        user: string_in(1, MAX_USER),
        reason: short()
    })
}

fn disconnected() -> impl Strategy<Value = m::Disconnected> {
    fields!(m::Disconnected {
        sessions: any::<u32>(),
        user: short()
    })
}

/// In-bounds messages of one kind. (The match is exhaustive: a new kind does not
/// compile until it has a strategy.)
fn msg_of(kind: Kind) -> BoxedStrategy<Msg> {
    match kind {
        Kind::Hello => hello().prop_map(Msg::from).boxed(),
        Kind::Welcome => welcome().prop_map(Msg::from).boxed(),
        Kind::Ping => ping().prop_map(Msg::from).boxed(),
        Kind::Pong => pong().prop_map(Msg::from).boxed(),
        Kind::Error => error().prop_map(Msg::from).boxed(),
        Kind::Bye => bye().prop_map(Msg::from).boxed(),
        Kind::Refresh => refresh().prop_map(Msg::from).boxed(),
        Kind::Refreshed => refreshed().prop_map(Msg::from).boxed(),
        Kind::Send => send().prop_map(Msg::from).boxed(),
        Kind::Accepted => accepted().prop_map(Msg::from).boxed(),
        Kind::Deliver => deliver().prop_map(Msg::from).boxed(),
        Kind::Receipt => receipt().prop_map(Msg::from).boxed(),
        Kind::Typing => typing().prop_map(Msg::from).boxed(),
        Kind::Queued => queued().prop_map(Msg::from).boxed(),
        Kind::Assigned => assigned().prop_map(Msg::from).boxed(),
        Kind::Transfer => transfer().prop_map(Msg::from).boxed(),
        Kind::Claim => claim().prop_map(Msg::from).boxed(),
        Kind::Close => close().prop_map(Msg::from).boxed(),
        Kind::Rate => rate().prop_map(Msg::from).boxed(),
        Kind::Presence => presence().prop_map(Msg::from).boxed(),
        Kind::History => history().prop_map(Msg::from).boxed(),
        Kind::HistoryPage => history_page().prop_map(Msg::from).boxed(),
        Kind::Suggest => suggest().prop_map(Msg::from).boxed(),
        Kind::Suggestions => suggestions().prop_map(Msg::from).boxed(),
        Kind::Notice => notice().prop_map(Msg::from).boxed(),
        Kind::Note => note().prop_map(Msg::from).boxed(),
        Kind::Availability => availability().prop_map(Msg::from).boxed(),
        Kind::Watch => watch().prop_map(Msg::from).boxed(),
        Kind::WrongReply => wrong_reply().prop_map(Msg::from).boxed(),
        Kind::ListConversations => list_conversations().prop_map(Msg::from).boxed(),
        Kind::ConversationList => conversation_list().prop_map(Msg::from).boxed(),
        Kind::Disconnect => disconnect().prop_map(Msg::from).boxed(),
        Kind::Disconnected => disconnected().prop_map(Msg::from).boxed(),
    }
}

/// Every kind this build knows.
fn kinds() -> Vec<Kind> {
    (0..=u8::MAX).filter_map(Kind::from_u8).collect()
}

/// An in-bounds message of any kind.
fn any_msg() -> impl Strategy<Value = Msg> {
    proptest::sample::select(kinds()).prop_flat_map(msg_of)
}

// ---------------------------------------------------------------------------------
// Out-of-bounds messages: an in-bounds message with exactly one bound broken
// ---------------------------------------------------------------------------------

/// Messages of `kind` breaking one bound, with the field `DecodeError::Bound` must
/// name; `None` for kinds without bounds.
fn out_of_bounds(kind: Kind) -> Option<BoxedStrategy<(Msg, &'static str)>> {
    fn set<T: std::fmt::Debug + Into<Msg> + 'static, V: std::fmt::Debug + 'static>(
        base: impl Strategy<Value = T> + 'static,
        bad: impl Strategy<Value = V> + 'static,
        field: &'static str,
        apply: fn(&mut T, V),
    ) -> BoxedStrategy<(Msg, &'static str)> {
        (base, bad)
            .prop_map(move |(mut msg, v)| {
                apply(&mut msg, v);
                (msg.into(), field)
            })
            .boxed()
    }
    // A code outside `lo..=hi`: mostly just outside it, or anywhere.
    let bad_u8 = |lo: u8, hi: u8| {
        prop_oneof![
            Just(lo.wrapping_sub(1)),
            Just(hi.wrapping_add(1)),
            Just(u8::MAX),
            any::<u8>(),
        ]
        .prop_filter("inside the range", move |v| !(lo..=hi).contains(v))
    };
    Some(match kind {
        Kind::Hello => prop_oneof![
            set(hello(), over(MAX_TOKEN), "token", |x, v| x.token = v),
            set(hello(), over(MAX_SHORT), "client", |x, v| x.client = v),
            set(
                hello(),
                vec(cursor(), MAX_CURSORS + 1..=MAX_CURSORS + 3),
                "resume",
                |x, v| x.resume = v
            ),
        ]
        .boxed(),
        Kind::Refresh => set(refresh(), over(MAX_TOKEN), "token", |x, v| x.token = v),
        Kind::Send => {
            let code = bad_u8(1, 4);
            prop_oneof![
                set(send(), over(MAX_BODY), "body", |x, v| x.body = v),
                set(send(), Just(String::new()), "body", |x, v| x.body = v),
                set(send(), code, "content_type", |x, v| x.content_type = v),
                set(send(), over(MAX_SHORT), "group", |x, v| x.group = v),
            ]
            .boxed()
        }
        Kind::Ping => set(ping(), blob_over(MAX_BODY), "data", |x, v| x.data = v),
        Kind::Pong => set(pong(), blob_over(MAX_BODY), "data", |x, v| x.data = v),
        Kind::Rate => prop_oneof![
            set(rate(), bad_u8(1, 5), "score", |x, v| x.score = v),
            set(rate(), over(MAX_SHORT), "comment", |x, v| x.comment = v),
        ]
        .boxed(),
        Kind::Receipt => set(receipt(), bad_u8(1, 2), "status", |x, v| x.status = v),
        Kind::Presence => set(presence(), bad_u8(1, 3), "status", |x, v| x.status = v),
        Kind::Transfer => {
            let agent = set(transfer(), over(MAX_SHORT), "to_agent", |x, v| {
                x.to_agent = v
            });
            let group = set(transfer(), over(MAX_SHORT), "to_group", |x, v| {
                x.to_group = v
            });
            let note = set(transfer(), over(MAX_SHORT), "note", |x, v| x.note = v);
            prop_oneof![agent, group, note].boxed()
        }
        Kind::Close => set(close(), over(MAX_SHORT), "reason", |x, v| x.reason = v),
        Kind::Suggest => set(suggest(), over(MAX_SHORT), "prefix", |x, v| x.prefix = v),
        Kind::Notice => prop_oneof![
            set(notice(), over(MAX_BODY), "text", |x, v| x.text = v),
            set(notice(), over(MAX_SHORT), "group", |x, v| x.group = v),
        ]
        .boxed(),
        Kind::Note => prop_oneof![
            set(note(), over(MAX_BODY), "body", |x, v| x.body = v),
            set(note(), Just(String::new()), "body", |x, v| x.body = v),
        ]
        .boxed(),
        Kind::ListConversations => prop_oneof![
            set(list_conversations(), bad_u8(0, 4), "state", |x, v| x
                .state =
                v),
            set(list_conversations(), over(MAX_SHORT), "group", |x, v| x
                .group =
                v),
            set(list_conversations(), over(MAX_SHORT), "agent", |x, v| x
                .agent =
                v),
        ]
        .boxed(),
        Kind::Watch => set(watch(), over(MAX_SHORT), "group", |x, v| x.group = v),
        Kind::WrongReply => set(wrong_reply(), over(MAX_SHORT), "comment", |x, v| {
            x.comment = v
        }),
        Kind::Disconnect => prop_oneof![
            set(disconnect(), over(MAX_USER), "user", |x, v| x.user = v),
            set(disconnect(), Just(String::new()), "user", |x, v| x.user = v),
            set(disconnect(), over(MAX_SHORT), "reason", |x, v| x.reason = v),
        ]
        .boxed(),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------
// Decoding helpers
// ---------------------------------------------------------------------------------

/// Checks a message that decoded `Ok` under `kind`: it has that kind, and its
/// re-encoding (payload, and whole frame) decodes to the same message.
fn check_reencodes(kind: u8, msg: &Msg) -> Result<(), TestCaseError> {
    prop_assert_eq!(msg.kind().as_u8(), kind, "decoded under another kind");
    let again = decode_at(kind, &msg.to_payload(), 0);
    prop_assert_eq!(&again, &Outcome::Ok(msg.clone()), "re-encoded payload");
    let wire = msg.to_frame(1);
    let d = frame::decode(&wire, MAX_PAYLOAD_LIMIT).unwrap().unwrap();
    prop_assert_eq!(d.header.kind, kind);
    prop_assert_eq!(
        Outcome::from(Msg::decode(kind, d.payload)),
        Outcome::Ok(msg.clone())
    );
    Ok(())
}

/// Decodes `payload` at each of `offsets` (the first is the reference), checks every
/// offset gives the same outcome and that an `Ok` re-encodes faithfully; returns the
/// outcome.
fn decode_checked(kind: u8, payload: &[u8], offsets: &[usize]) -> Result<Outcome, TestCaseError> {
    let first = decode_at(kind, payload, offsets[0]);
    for &off in &offsets[1..] {
        let other = decode_at(kind, payload, off);
        prop_assert_eq!(
            &other,
            &first,
            "offset {} disagrees with offset {}",
            off,
            offsets[0]
        );
    }
    if let Outcome::UnknownKind(k) = first {
        prop_assert_eq!(k, kind);
        prop_assert!(
            Kind::from_u8(kind).is_none(),
            "known kind {} reported unknown",
            kind
        );
    } else {
        prop_assert!(
            Kind::from_u8(kind).is_some(),
            "unknown kind {} decoded",
            kind
        );
    }
    if let Outcome::Ok(msg) = &first {
        check_reencodes(kind, msg)?;
    }
    Ok(first)
}

/// Every offset from 16-aligned (0) through 15.
const ALL_OFFSETS: [usize; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// Runs `test` on `cases` values of `strategy(kind)` for every kind, so each kind is
/// covered on every run.
fn per_kind<S: Strategy>(
    cases: u32,
    strategy: impl Fn(Kind) -> Option<S>,
    test: impl Fn(Kind, S::Value) -> Result<(), TestCaseError>,
) {
    for kind in kinds() {
        let Some(s) = strategy(kind) else { continue };
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&s, |v| test(kind, v)) {
            panic!("{kind:?}: {e}");
        }
    }
}

/// A byte that is a known kind three times in four.
fn kind_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => proptest::sample::select(kinds()).prop_map(Kind::as_u8),
        1 => any::<u8>(),
    ]
}

// ---------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------

#[test]
fn every_kind_has_a_strategy() {
    let kinds = kinds();
    assert_eq!(kinds.len(), 33);
    let mut runner = TestRunner::deterministic();
    for &kind in &kinds {
        let s = msg_of(kind);
        for _ in 0..4 {
            let m = s.new_tree(&mut runner).unwrap().current();
            assert_eq!(m.kind(), kind);
        }
    }
    // `any_msg` reaches every kind.
    let s = any_msg();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..500 {
        seen.insert(s.new_tree(&mut runner).unwrap().current().kind().as_u8());
    }
    assert_eq!(seen.len(), kinds.len());
}

#[test]
fn in_bounds_messages_round_trip_through_frames() {
    per_kind(
        24,
        |k| Some(msg_of(k)),
        |kind, msg| {
            prop_assert_eq!(msg.kind(), kind);
            let wire = msg.to_frame(0x0102_0304);
            let d = frame::decode(&wire, MAX_PAYLOAD_LIMIT).unwrap().unwrap();
            prop_assert_eq!(d.consumed, wire.len());
            prop_assert_eq!(d.header.kind, kind.as_u8());
            prop_assert_eq!(d.header.request_id, 0x0102_0304);
            prop_assert_eq!(d.header.flags, 0);
            let status = match &msg {
                Msg::Error(e) => e.code,
                Msg::Bye(b) => b.code,
                _ => 0,
            };
            prop_assert_eq!(d.header.status, status);
            let payload = msg.to_payload();
            prop_assert_eq!(d.payload, payload.as_slice());
            // Straight from the frame buffer (aligned: header is 16 bytes)...
            let direct = Msg::decode(d.header.kind, d.payload).unwrap();
            prop_assert_eq!(&direct, &msg);
            // ...and at every alignment.
            let out = decode_checked(d.header.kind, d.payload, &ALL_OFFSETS)?;
            prop_assert_eq!(out, Outcome::Ok(msg));
            Ok(())
        },
    );
}

#[test]
fn out_of_bounds_messages_are_bound_errors() {
    per_kind(24, out_of_bounds, |kind, (msg, field)| {
        prop_assert_eq!(msg.kind(), kind);
        let wire = msg.to_frame(9);
        let d = frame::decode(&wire, MAX_PAYLOAD_LIMIT).unwrap().unwrap();
        let out = decode_checked(d.header.kind, d.payload, &[0, 1])?;
        match out {
            Outcome::Bound(k, f, _) => {
                prop_assert_eq!(k, kind);
                prop_assert_eq!(f, field);
            }
            other => {
                return Err(TestCaseError::fail(format!(
                    "expected a bound error on {field}, got {other:?}"
                )));
            }
        }
        Ok(())
    });
}

#[test]
fn bit_flipped_payloads_never_panic_and_reencode() {
    // Counts flips that still decode, to show the `Ok` branch is exercised.
    let oks = Cell::new(0u32);
    let strategy = (any_msg(), vec((any::<Index>(), 0u8..8), 1..4));
    let mut runner = TestRunner::new(Config {
        cases: 160,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |(msg, flips)| {
        let mut payload = msg.to_payload().to_vec();
        for (at, bit) in flips {
            let i = at.index(payload.len());
            payload[i] ^= 1 << bit;
        }
        let kind = msg.kind().as_u8();
        if let Outcome::Ok(_) = decode_checked(kind, &payload, &ALL_OFFSETS)? {
            oks.set(oks.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(oks.get() > 0, "no bit-flipped payload decoded in 160 cases");
}

#[test]
fn valid_payloads_under_every_kind_byte_never_panic() {
    let oks = Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&any_msg(), |msg| {
        let payload = msg.to_payload();
        for kind in 0..=u8::MAX {
            // Aligned and one odd offset for known kinds; unknown ones stop early.
            let out = decode_checked(kind, &payload, &[0, 1 + usize::from(kind) % 15])?;
            match out {
                Outcome::UnknownKind(_) => {}
                Outcome::Ok(_) if kind == msg.kind().as_u8() => {}
                Outcome::Ok(_) => oks.set(oks.get() + 1),
                _ => prop_assert_ne!(kind, msg.kind().as_u8(), "own kind rejected"),
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // rkyv reads the root from the end of the buffer and any u64 is valid, so every
    // payload of 8 bytes or more (whose length is a multiple of 8) decodes as a `Claim`.
    assert!(oks.get() > 0, "no payload decoded under another kind");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        kind in kind_byte(),
        bytes in prop_oneof![
            vec(any::<u8>(), 0..64),
            vec(any::<u8>(), 0..512),
        ],
    ) {
        decode_checked(kind, &bytes, &ALL_OFFSETS)?;
    }

    #[test]
    fn random_words_never_panic(
        kind in kind_byte(),
        // Small values and 0xff.. words look more like lengths, offsets and codes.
        words in vec(prop_oneof![0u32..64, Just(u32::MAX), any::<u32>()], 0..48),
    ) {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        decode_checked(kind, &bytes, &ALL_OFFSETS)?;
    }

    #[test]
    fn truncated_payloads_never_panic(
        msg in any_msg(),
        picks in vec(any::<Index>(), 16),
    ) {
        let payload = msg.to_payload();
        let kind = msg.kind().as_u8();
        let cuts: Vec<usize> = if payload.len() <= 256 {
            (0..payload.len()).collect()
        } else {
            // The tail holds the root object: cut all through it, elsewhere sample.
            let mut c: Vec<usize> = (payload.len() - 128..payload.len()).collect();
            c.extend(picks.iter().map(|i| i.index(payload.len())));
            c
        };
        for cut in cuts {
            decode_checked(kind, &payload[..cut], &[0, 1 + cut % 15])?;
        }
    }

    #[test]
    fn payloads_with_trailing_or_leading_bytes_never_panic(
        msg in any_msg(),
        extra in vec(any::<u8>(), 1..24),
        leading in any::<bool>(),
    ) {
        let payload = msg.to_payload();
        let mut bytes = Vec::new();
        if leading {
            bytes.extend_from_slice(&extra);
            bytes.extend_from_slice(&payload);
        } else {
            bytes.extend_from_slice(&payload);
            bytes.extend_from_slice(&extra);
        }
        decode_checked(msg.kind().as_u8(), &bytes, &[0, 1, 8])?;
    }
}

// ---------------------------------------------------------------------------------
// Fixed cases
// ---------------------------------------------------------------------------------

#[test]
fn bounds_are_inclusive() {
    let at = |msg: Msg| Outcome::from(Msg::decode(msg.kind().as_u8(), &msg.to_payload()));
    let s = |n: usize| "é".repeat(n / 2) + &"x".repeat(n % 2);
    let hello = m::Hello {
        token: s(MAX_TOKEN),
        client: s(MAX_SHORT),
        resume: vec![m::Cursor::default(); MAX_CURSORS],
        ..m::Hello::default()
    };
    assert!(matches!(at(hello.clone().into()), Outcome::Ok(_)));
    let token = m::Hello {
        token: s(MAX_TOKEN + 1),
        ..hello.clone()
    };
    assert!(matches!(
        at(token.into()),
        Outcome::Bound(Kind::Hello, "token", _)
    ));
    let refresh = |n| m::Refresh { token: s(n) }.into();
    assert!(matches!(at(refresh(MAX_TOKEN)), Outcome::Ok(_)));
    assert!(matches!(
        at(refresh(MAX_TOKEN + 1)),
        Outcome::Bound(Kind::Refresh, "token", _)
    ));
    let resume = m::Hello {
        resume: vec![m::Cursor::default(); MAX_CURSORS + 1],
        ..hello
    };
    assert!(matches!(
        at(resume.into()),
        Outcome::Bound(Kind::Hello, "resume", _)
    ));
    for (kind, code, ok) in [
        (Kind::Send, 0, false),
        (Kind::Send, 1, true),
        (Kind::Send, 4, true),
        (Kind::Send, 5, false),
        (Kind::Rate, 0, false),
        (Kind::Rate, 1, true),
        (Kind::Rate, 5, true),
        (Kind::Rate, 6, false),
        (Kind::Receipt, 0, false),
        (Kind::Receipt, 1, true),
        (Kind::Receipt, 2, true),
        (Kind::Receipt, 3, false),
        (Kind::Presence, 0, false),
        (Kind::Presence, 1, true),
        (Kind::Presence, 3, true),
        (Kind::Presence, 4, false),
    ] {
        let msg: Msg = match kind {
            Kind::Send => m::Send {
                content_type: code,
                body: "b".into(),
                ..m::Send::default()
            }
            .into(),
            Kind::Rate => m::Rate {
                score: code,
                ..m::Rate::default()
            }
            .into(),
            Kind::Receipt => m::Receipt {
                status: code,
                ..m::Receipt::default()
            }
            .into(),
            _ => m::Presence {
                status: code,
                ..m::Presence::default()
            }
            .into(),
        };
        let out = at(msg.clone());
        if ok {
            assert_eq!(out, Outcome::Ok(msg), "{kind:?} code {code}");
        } else {
            assert!(
                matches!(out, Outcome::Bound(k, _, _) if k == kind),
                "{kind:?} code {code}: {out:?}"
            );
        }
    }
    let send = m::Send {
        content_type: 4,
        body: s(MAX_BODY),
        group: s(MAX_SHORT),
        ..m::Send::default()
    };
    assert!(matches!(at(send.clone().into()), Outcome::Ok(_)));
    let long = m::Send {
        body: s(MAX_BODY + 1),
        ..send
    };
    assert!(matches!(
        at(long.into()),
        Outcome::Bound(Kind::Send, "body", _)
    ));
    let ping = m::Ping {
        stamp: 1,
        data: vec![0xff; MAX_BODY],
    };
    assert!(matches!(at(ping.clone().into()), Outcome::Ok(_)));
    let ping = m::Ping {
        data: vec![0xff; MAX_BODY + 1],
        ..ping
    };
    assert!(matches!(
        at(ping.into()),
        Outcome::Bound(Kind::Ping, "data", _)
    ));
}

#[test]
fn unknown_kind_bytes_are_rejected_before_the_payload() {
    let payload = Msg::from(m::Claim { conversation: 1 }).to_payload();
    for kind in (0..=u8::MAX).filter(|&k| Kind::from_u8(k).is_none()) {
        assert!(matches!(
            Msg::decode(kind, &payload),
            Err(DecodeError::UnknownKind(k)) if k == kind
        ));
        assert!(matches!(
            Msg::decode(kind, &[]),
            Err(DecodeError::UnknownKind(_))
        ));
    }
}
