//! The wire spec's test vectors, checked against the real codec, both directions.
//!
//! - `proto-spec/vectors/frames.txt`: encoding the listed fields gives the listed bytes,
//!   and decoding the bytes gives back the fields (also as one stream, whole and byte
//!   by byte, through `frame::deframe`).
//! - `proto-spec/vectors/bad-frames.txt`: each input yields the listed number of frames
//!   and then the listed `FrameError` (mapped to the listed error code) or "need more".
//! - `proto-spec/PROTOCOL.md`'s kinds table and error-code table, and
//!   `proto-spec/FRAMING.md`'s defaults table, say what `protocol::Kind`,
//!   `protocol::ErrorCode` (all of `ErrorCode::ALL`) and `Config::default()` say, so
//!   the spec cannot silently drift from the code.
//!
//! The files are compiled in with `include_str!`, so editing a vector reruns the test.

use std::collections::BTreeSet;

use switchboard::Config;
use switchboard::frame::{
    self, FrameError, FrameHeader, HEADER_LEN, MAX_PAYLOAD_LIMIT, decode, encode,
};
use switchboard::protocol::{ErrorCode, Kind};

const FRAMES: &str = include_str!("../../proto-spec/vectors/frames.txt");
const BAD_FRAMES: &str = include_str!("../../proto-spec/vectors/bad-frames.txt");
const FRAMING_MD: &str = include_str!("../../proto-spec/FRAMING.md");
const PROTOCOL_MD: &str = include_str!("../../proto-spec/PROTOCOL.md");

// ---------------------------------------------------------------------------------
// Parsing the vector files.

/// The non-comment lines of a vector file, split on `|` and trimmed, with their line
/// numbers; every line must have exactly `fields` fields.
fn rows(text: &str, fields: usize) -> Vec<(usize, Vec<&str>)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(
            cells.len(),
            fields,
            "line {}: expected {fields} fields: {line}",
            i + 1
        );
        out.push((i + 1, cells));
    }
    out
}

/// Hex with optional spaces; `-` is empty.
fn hex(s: &str) -> Vec<u8> {
    if s == "-" {
        return Vec::new();
    }
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {s:?}"
    );
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).unwrap();
            u8::from_str_radix(pair, 16).unwrap_or_else(|e| panic!("bad hex {pair:?}: {e}"))
        })
        .collect()
}

/// A decimal number, or hex with a `0x` prefix, that must fit `T`.
fn num<T: TryFrom<u64>>(s: &str) -> T {
    let v = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse::<u64>(),
    }
    .unwrap_or_else(|e| panic!("bad number {s:?}: {e}"));
    T::try_from(v).unwrap_or_else(|_| panic!("{s} out of range"))
}

/// One line of `frames.txt`.
#[derive(Debug)]
struct Vector {
    line: usize,
    name: String,
    header: FrameHeader,
    payload: Vec<u8>,
    frame: Vec<u8>,
}

fn vectors() -> Vec<Vector> {
    rows(FRAMES, 7)
        .into_iter()
        .map(|(line, c)| {
            let payload = hex(c[5]);
            Vector {
                line,
                name: c[0].to_owned(),
                header: FrameHeader {
                    kind: num(c[1]),
                    flags: num(c[2]),
                    status: num(c[3]),
                    len: u32::try_from(payload.len()).unwrap(),
                    request_id: num(c[4]),
                },
                payload,
                frame: hex(c[6]),
            }
        })
        .collect()
}

/// What a receiver concludes after the complete frames of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Error(FrameError),
    NeedMore,
}

/// One line of `bad-frames.txt`.
#[derive(Debug)]
struct BadVector {
    line: usize,
    name: String,
    max: u32,
    input: Vec<u8>,
    frames: usize,
    outcome: Outcome,
    code: Option<u16>,
}

fn parse_outcome(s: &str) -> Outcome {
    let arg = |prefix: &str| {
        s.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("bad outcome {s:?}"))
    };
    match s {
        "NeedMore" => Outcome::NeedMore,
        "BadMagic" => Outcome::Error(FrameError::BadMagic),
        "BadPadding" => Outcome::Error(FrameError::BadPadding),
        _ if s.starts_with("UnsupportedVersion(") => Outcome::Error(
            FrameError::UnsupportedVersion(num(arg("UnsupportedVersion("))),
        ),
        _ if s.starts_with("TooLarge(") => {
            let (len, max) = arg("TooLarge(")
                .split_once(',')
                .unwrap_or_else(|| panic!("bad outcome {s:?}"));
            let field = |kv: &str, key: &str| {
                num(kv
                    .trim()
                    .strip_prefix(key)
                    .unwrap_or_else(|| panic!("bad outcome {s:?}")))
            };
            Outcome::Error(FrameError::TooLarge {
                len: field(len, "len="),
                max: field(max, "max="),
            })
        }
        _ => panic!("unknown outcome {s:?}"),
    }
}

fn bad_vectors() -> Vec<BadVector> {
    rows(BAD_FRAMES, 6)
        .into_iter()
        .map(|(line, c)| BadVector {
            line,
            name: c[0].to_owned(),
            max: num(c[1]),
            input: hex(c[2]),
            frames: num(c[3]),
            outcome: parse_outcome(c[4]),
            code: (c[5] != "-").then(|| num(c[5])),
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Running inputs through the codec.

type Frames = Vec<(FrameHeader, Vec<u8>)>;

/// Decodes frames from the start of `buf` with `decode` until it stops returning one.
fn decode_all(buf: &[u8], max: u32) -> (Frames, Outcome, usize) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        match decode(&buf[at..], max) {
            Ok(Some(d)) => {
                assert!(d.consumed > 0 && d.consumed <= buf.len() - at);
                frames.push((d.header, d.payload.to_vec()));
                at += d.consumed;
            }
            Ok(None) => return (frames, Outcome::NeedMore, at),
            Err(e) => return (frames, Outcome::Error(e), at),
        }
    }
}

/// Feeds `chunks` to `frame::deframe` in order, stopping at the first error.
fn deframe_chunks(chunks: &[&[u8]], max: u32) -> (Frames, Outcome, Vec<u8>) {
    let mut spill = Vec::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        let r = frame::deframe(&mut spill, chunk, max, |h, p| {
            frames.push((h, p.to_vec()));
            true
        });
        if let Err(e) = r {
            return (frames, Outcome::Error(e), spill);
        }
    }
    (frames, Outcome::NeedMore, spill)
}

// ---------------------------------------------------------------------------------
// frames.txt

#[test]
fn frames_txt_encodes_to_the_listed_bytes() {
    for v in vectors() {
        let ctx = format!("frames.txt line {} ({})", v.line, v.name);
        // `encode` must take the length from the payload, whatever the header says.
        let stale = FrameHeader {
            len: 0xdead_beef,
            ..v.header
        };
        let wire = encode(stale, &v.payload);
        assert_eq!(wire.as_ref(), v.frame.as_slice(), "{ctx}: encode");
        assert_eq!(v.frame.len() % 16, 0, "{ctx}: not a multiple of 16");
        assert_eq!(v.frame.len(), v.header.wire_len(), "{ctx}: wire_len");
        assert_eq!(
            &v.frame[..HEADER_LEN],
            &v.header.to_bytes(),
            "{ctx}: header"
        );
        if v.payload.is_empty() && v.header.flags == 0 {
            let status = frame::encode_status(v.header.kind, v.header.status, v.header.request_id);
            assert_eq!(status.as_ref(), v.frame.as_slice(), "{ctx}: encode_status");
        }
    }
}

#[test]
fn frames_txt_decodes_to_the_listed_fields() {
    for v in vectors() {
        let ctx = format!("frames.txt line {} ({})", v.line, v.name);
        // The tightest limit that admits the payload, and the hard ceiling.
        for max in [v.header.len, MAX_PAYLOAD_LIMIT] {
            let d = decode(&v.frame, max)
                .unwrap_or_else(|e| panic!("{ctx}: {e}"))
                .unwrap_or_else(|| panic!("{ctx}: incomplete"));
            assert_eq!(d.header, v.header, "{ctx}: header");
            assert_eq!(d.payload, v.payload.as_slice(), "{ctx}: payload");
            assert_eq!(d.consumed, v.frame.len(), "{ctx}: consumed");
        }
        // Trailing bytes (the start of the next frame) are not consumed.
        let mut longer = v.frame.clone();
        longer.extend_from_slice(b"SB\x01");
        let d = decode(&longer, MAX_PAYLOAD_LIMIT).unwrap().unwrap();
        assert_eq!(
            d.consumed,
            v.frame.len(),
            "{ctx}: consumed with trailing bytes"
        );
        // Every strict prefix needs more bytes.
        for cut in 0..v.frame.len() {
            assert_eq!(
                decode(&v.frame[..cut], MAX_PAYLOAD_LIMIT),
                Ok(None),
                "{ctx}: prefix of {cut} bytes"
            );
        }
        // One byte under the payload length is over the limit, from the header alone.
        if let Some(max) = v.header.len.checked_sub(1) {
            assert_eq!(
                decode(&v.frame[..HEADER_LEN], max),
                Err(FrameError::TooLarge {
                    len: v.header.len,
                    max
                }),
                "{ctx}: limit"
            );
        }
    }
}

#[test]
fn frames_txt_as_one_stream_deframes_whole_and_byte_by_byte() {
    let vs = vectors();
    let stream: Vec<u8> = vs.iter().flat_map(|v| v.frame.iter().copied()).collect();
    let expected: Frames = vs.iter().map(|v| (v.header, v.payload.clone())).collect();

    let (frames, outcome, rest) = decode_all(&stream, MAX_PAYLOAD_LIMIT);
    assert_eq!(
        (frames, outcome, rest),
        (expected.clone(), Outcome::NeedMore, stream.len())
    );

    let (frames, outcome, spill) = deframe_chunks(&[&stream], MAX_PAYLOAD_LIMIT);
    assert_eq!(frames, expected);
    assert_eq!(outcome, Outcome::NeedMore);
    assert!(spill.is_empty());

    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    let (frames, outcome, spill) = deframe_chunks(&bytes, MAX_PAYLOAD_LIMIT);
    assert_eq!(frames, expected);
    assert_eq!(outcome, Outcome::NeedMore);
    assert!(spill.is_empty() && spill.capacity() == 0);
}

#[test]
fn frames_txt_covers_the_required_cases() {
    let vs = vectors();
    let sizes: BTreeSet<usize> = vs.iter().map(|v| v.payload.len()).collect();
    for size in [0, 1, 15, 16, 17] {
        assert!(
            sizes.contains(&size),
            "no vector with a {size}-byte payload"
        );
    }
    let has = |pred: &dyn Fn(&Vector) -> bool| vs.iter().any(pred);
    assert!(
        has(&|v| v.header.kind == Kind::Error.as_u8()
            && v.header.status == ErrorCode::FrameTooLarge.as_u16()),
        "no Error 102 vector"
    );
    assert!(
        has(&|v| v.header.kind == Kind::Bye.as_u8()
            && v.header.status == ErrorCode::ShuttingDown.as_u16()),
        "no Bye 501 vector"
    );
    assert!(has(&|v| v.header.flags == u16::MAX), "no max-flags vector");
    let names: BTreeSet<&str> = vs.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names.len(), vs.len(), "duplicate vector names");
}

// ---------------------------------------------------------------------------------
// bad-frames.txt

#[test]
fn bad_frames_txt_gives_the_listed_outcome() {
    for v in bad_vectors() {
        let ctx = format!("bad-frames.txt line {} ({})", v.line, v.name);

        let (frames, outcome, at) = decode_all(&v.input, v.max);
        assert_eq!(frames.len(), v.frames, "{ctx}: frames before the outcome");
        assert_eq!(outcome, v.outcome, "{ctx}: decode");

        match (v.outcome, v.code) {
            (Outcome::Error(e), Some(code)) => {
                assert_eq!(ErrorCode::from(e).as_u16(), code, "{ctx}: error code");
            }
            (Outcome::NeedMore, None) => {}
            _ => panic!("{ctx}: an error needs a code and NeedMore none"),
        }

        // The incremental deframer agrees, in one piece and byte by byte, and keeps
        // exactly the incomplete rest when it needs more.
        let bytes: Vec<&[u8]> = v.input.chunks(1).collect();
        for chunks in [vec![v.input.as_slice()], bytes] {
            let (d_frames, d_outcome, spill) = deframe_chunks(&chunks, v.max);
            assert_eq!(d_frames, frames, "{ctx}: deframe frames");
            assert_eq!(d_outcome, v.outcome, "{ctx}: deframe outcome");
            if v.outcome == Outcome::NeedMore {
                assert_eq!(spill, &v.input[at..], "{ctx}: spill");
            }
        }
    }
}

#[test]
fn bad_frames_txt_covers_every_frame_error() {
    let vs = bad_vectors();
    let has = |pred: &dyn Fn(&Outcome) -> bool| vs.iter().any(|v| pred(&v.outcome));
    assert!(has(&|o| *o == Outcome::Error(FrameError::BadMagic)));
    assert!(has(&|o| matches!(
        o,
        Outcome::Error(FrameError::UnsupportedVersion(_))
    )));
    assert!(
        vs.iter().any(|v| v.max == 1024
            && matches!(
                v.outcome,
                Outcome::Error(FrameError::TooLarge { max: 1024, .. })
            )),
        "no oversize vector with max 1024"
    );
    assert!(has(&|o| *o == Outcome::Error(FrameError::BadPadding)));
    assert!(has(&|o| *o == Outcome::NeedMore));
}

// ---------------------------------------------------------------------------------
// The spec's tables against the code.

/// The data rows of the markdown table in `doc` (named `doc_name`) whose header row
/// starts with `| {first} |`.
fn md_table(doc_name: &str, doc: &str, first: &str) -> Vec<Vec<String>> {
    let start = format!("| {first} |");
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(&start));
    assert!(lines.next().is_some(), "{doc_name} has no `{start}` table");
    lines
        .skip(1) // the |---| separator row
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn protocol_md_kind_table_matches_protocol_kind() {
    let mut listed = BTreeSet::new();
    for row in md_table("PROTOCOL.md", PROTOCOL_MD, "Kind") {
        let n: u8 = num(&row[0]);
        let kind = Kind::from_u8(n).unwrap_or_else(|| panic!("kind {n} is not in kind.rs"));
        assert_eq!(format!("{kind:?}"), row[1], "name of kind {n}");
        assert!(listed.insert(n), "kind {n} listed twice");
    }
    let known: BTreeSet<u8> = (0..=u8::MAX)
        .filter(|&v| Kind::from_u8(v).is_some())
        .collect();
    assert_eq!(listed, known, "kinds in PROTOCOL.md vs kind.rs");
}

/// Every error code.
fn all_codes() -> Vec<ErrorCode> {
    ErrorCode::ALL.to_vec()
}

#[test]
fn protocol_md_error_table_matches_protocol_error_code() {
    let yes_no = |cell: &str, what: &str| match cell.split_whitespace().next() {
        Some("yes") => true,
        Some("no") => false,
        _ => panic!("{what}: expected yes/no, got {cell:?}"),
    };
    let codes = all_codes();
    let mut listed = BTreeSet::new();
    for row in md_table("PROTOCOL.md", PROTOCOL_MD, "Code") {
        let n: u16 = num(&row[0]);
        let code = codes
            .iter()
            .copied()
            .find(|c| c.as_u16() == n)
            .unwrap_or_else(|| panic!("code {n} is not in error_code.rs"));
        assert_eq!(code.name(), row[1], "name of code {n}");
        assert_eq!(
            code.closes_connection(),
            yes_no(&row[3], "closes"),
            "`Closes` of code {n}"
        );
        assert_eq!(
            code.retryable(),
            yes_no(&row[4], "retryable"),
            "`Retryable` of code {n}"
        );
        assert!(listed.insert(n), "code {n} listed twice");
    }
    let all: BTreeSet<u16> = codes.iter().map(|c| c.as_u16()).collect();
    assert_eq!(listed, all, "codes in PROTOCOL.md vs error_code.rs");
    assert_eq!(
        all.len(),
        ErrorCode::ALL.len(),
        "ErrorCode::ALL has duplicates"
    );
}

#[test]
fn framing_md_defaults_match_config() {
    let c = Config::default();
    let secs = |d: std::time::Duration| format!("{} s", d.as_secs());
    let rows = md_table("FRAMING.md", FRAMING_MD, "Key");
    let value = |key: &str| {
        rows.iter()
            .find(|r| r[0] == key)
            .map(|r| r[1].clone())
            .unwrap_or_else(|| panic!("FRAMING.md defaults table lacks {key}"))
    };
    let starts = |key: &str, want: String| {
        let got = value(key);
        assert!(
            got.starts_with(&want),
            "{key}: spec says {got:?}, code {want:?}"
        );
    };
    starts("listeners.client.addr", c.listeners.client.addr.to_string());
    starts(
        "listeners.client.proxy_max_header_bytes",
        c.listeners.client.proxy_max_header_bytes.to_string(),
    );
    starts(
        "limits.max_frame_bytes",
        c.limits.max_frame_bytes.to_string(),
    );
    starts(
        "limits.max_pending_bytes",
        c.limits.max_pending_bytes.to_string(),
    );
    starts("limits.close_linger", secs(c.limits.close_linger));
    starts(
        "heartbeat.handshake_timeout",
        secs(c.heartbeat.handshake_timeout),
    );
    starts("heartbeat.idle_timeout", secs(c.heartbeat.idle_timeout));
    starts("heartbeat.interval", secs(c.heartbeat.interval));
    starts("shutdown.drain_timeout", secs(c.shutdown.drain_timeout));
    assert!(c.listeners.echo.is_none());
    assert!(value("listeners.echo.addr").starts_with("off"));
    assert!(FRAMING_MD.contains(&format!("1 to {MAX_PAYLOAD_LIMIT}")));
}
