//! The JSON form of the protocol (`proto-spec/JSON.md`): one JSON text per message, for
//! browsers on the WebSocket subprotocol `switchboard.v1.json`.
//!
//! Two pure conversions, sans-IO: [`json_to_frame`] turns a client's JSON text into
//! the frame the binary dialect would carry (header and unpadded payload, as
//! [`crate::frame::deframe`] hands them on), so the session layer sees no difference;
//! [`frame_to_json`] turns a frame the service built into its JSON text, written
//! straight into one buffer. Both are strict and bounded and never panic on input.

mod field;
mod problem;
mod read;
mod write;

use bytes::Bytes;

use crate::frame::{self, FrameError, FrameHeader, HEADER_LEN, MAX_PAYLOAD_LIMIT};
use crate::protocol::messages::{self, DecodeError};
use crate::protocol::{ErrorCode, Kind, Msg};

use field::JsonField;
pub use field::{MAX_ELEMENTS, MAX_SAFE_INTEGER};
pub use problem::Problem;
use problem::quoted;
use read::Reader;

/// Bounds on one inbound JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Largest text accepted, in bytes (larger: [`JsonError::TooLarge`], code 102).
    pub max_bytes: usize,
    /// Deepest nesting of objects and arrays accepted (deeper: [`JsonError::TooDeep`],
    /// code 104), at most [`MAX_DEPTH_LIMIT`] whatever is set. Valid messages nest at
    /// most 4 deep.
    pub max_depth: usize,
}

/// Hard ceiling for [`JsonLimits::max_depth`], whatever the config says: skipping a
/// value recurses once per level, so this bounds the stack the reader can use.
pub const MAX_DEPTH_LIMIT: usize = 128;

impl Default for JsonLimits {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_depth: 16,
        }
    }
}

/// Why a JSON text gives no frame, or a frame no JSON text.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The text is longer than [`JsonLimits::max_bytes`] (not parsed at all).
    #[error("JSON text of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The text's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text nests deeper than [`JsonLimits::max_depth`] (not parsed at all).
    #[error("JSON nesting deeper than {max}")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The text is not a valid message.
    #[error("malformed JSON message at byte {at}: {problem}")]
    Malformed {
        /// The message's `request_id` if it was read before the problem, else 0.
        request_id: u32,
        /// Byte offset where the problem was found.
        at: usize,
        /// What is wrong.
        problem: Problem,
    },
    /// A well-formed message whose `kind` names no kind this build knows.
    #[error("unknown kind {name:?}")]
    UnknownKind {
        /// The message's `request_id` (0 when absent).
        request_id: u32,
        /// The name given (at most 64 bytes of it).
        name: String,
    },
    /// [`frame_to_json`]: the bytes are not exactly one frame.
    #[error("not exactly one frame: {0}")]
    NotOneFrame(&'static str),
    /// [`frame_to_json`]: the frame is not valid.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// [`frame_to_json`]: the payload is not a message of the frame's kind.
    #[error("bad payload: {0}")]
    Payload(#[from] DecodeError),
}

impl JsonError {
    /// The protocol error code this input class gets (proto-spec/JSON.md section 5):
    /// 102 for an oversize text, 105 for an unknown `kind`, 104 for every other bad
    /// text; 502 for a frame [`frame_to_json`] cannot convert (a server bug).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::TooDeep { .. } | Self::Malformed { .. } => ErrorCode::MalformedPayload,
            Self::UnknownKind { .. } => ErrorCode::UnknownKind,
            Self::NotOneFrame(_) | Self::Frame(_) | Self::Payload(_) => ErrorCode::Internal,
        }
    }

    /// A short stable name of the error's class (proto-spec/JSON.md section 5; the
    /// `error` of `vectors/json-bad-messages.jsonl`), for logs and metric labels.
    pub fn class(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::TooDeep { .. } => "too_deep",
            Self::UnknownKind { .. } => "unknown_kind",
            Self::Malformed { problem, .. } => match problem {
                Problem::Syntax(_) => "syntax",
                Problem::Utf8 => "utf8",
                Problem::LoneSurrogate => "lone_surrogate",
                Problem::NotObject => "not_object",
                Problem::MissingKind => "missing_kind",
                Problem::UnknownField(_) => "unknown_field",
                Problem::DuplicateKey(_) => "duplicate_key",
                Problem::WrongType { .. } => "wrong_type",
                Problem::NotAnInteger { .. } => "not_integer",
                Problem::OutOfRange { .. } => "out_of_range",
                Problem::UnsafeNumber { .. } => "unsafe_number",
                Problem::BadU64String { .. } => "bad_u64_string",
                Problem::TooManyElements { .. } => "too_many_elements",
                Problem::BadBase64 { .. } => "bad_base64",
            },
            Self::NotOneFrame(_) => "not_one_frame",
            Self::Frame(_) => "bad_frame",
            Self::Payload(_) => "bad_payload",
        }
    }

    /// The request id if it could be read before the error (so the `Error` answer can
    /// carry it), else 0.
    pub fn request_id(&self) -> u32 {
        match self {
            Self::Malformed { request_id, .. } | Self::UnknownKind { request_id, .. } => {
                *request_id
            }
            _ => 0,
        }
    }
}

/// What the envelope held, as far as it was read.
#[derive(Default)]
struct Envelope {
    kind: Option<Result<Kind, String>>,
    request_id: Option<u32>,
    status: Option<u16>,
    /// Fields read (the kind came first).
    msg: Option<Msg>,
    /// Where `fields` starts when it came before `kind` (read once the kind is known).
    fields_at: Option<usize>,
}

/// One JSON text → the frame the binary dialect would carry: its header and its
/// payload without padding (exactly what [`frame::deframe`] hands its callback), so
/// the reactor passes it on like a binary frame. The payload is the canonical archive
/// of the message (PROTOCOL.md section 3.8), empty when the text has no `fields`.
/// Strict and bounded: the length and nesting are checked before parsing.
pub fn json_to_frame(text: &[u8], limits: &JsonLimits) -> Result<(FrameHeader, Bytes), JsonError> {
    if text.len() > limits.max_bytes {
        return Err(JsonError::TooLarge {
            len: text.len(),
            max: limits.max_bytes,
        });
    }
    let max_depth = limits.max_depth.min(MAX_DEPTH_LIMIT);
    read::check_depth(text, max_depth).map_err(|_| JsonError::TooDeep { max: max_depth })?;
    let mut r = Reader::new(text);
    let mut env = Envelope::default();
    let parsed = read_envelope(&mut r, &mut env);
    let request_id = env.request_id.unwrap_or(0);
    let malformed = |r: &Reader<'_>, problem| JsonError::Malformed {
        request_id,
        at: r.pos(),
        problem,
    };
    parsed.map_err(|p| malformed(&r, p))?;
    let kind = match env.kind.take() {
        None => return Err(malformed(&r, Problem::MissingKind)),
        Some(Err(name)) => return Err(JsonError::UnknownKind { request_id, name }),
        Some(Ok(kind)) => kind,
    };
    if let Some(at) = env.fields_at {
        r.seek(at);
        env.msg = Some(field::read_fields(kind, &mut r).map_err(|p| malformed(&r, p))?);
    }
    let (status, payload) = match &env.msg {
        None => (0, Bytes::new()),
        Some(msg) => {
            let code = match msg {
                Msg::Error(e) => e.code,
                Msg::Bye(b) => b.code,
                _ => 0,
            };
            (code, payload_of(msg))
        }
    };
    let header = FrameHeader {
        kind: kind.as_u8(),
        flags: 0,
        status: env.status.unwrap_or(status),
        len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        request_id,
    };
    Ok((header, payload))
}

/// The canonical archive of `msg`, as a slice of a frame built the way the service
/// builds them (one allocation, 16-aligned after the header).
fn payload_of(msg: &Msg) -> Bytes {
    let wire = msg.to_frame(0);
    let len = wire
        .first_chunk::<HEADER_LEN>()
        .and_then(|raw| FrameHeader::parse(raw, MAX_PAYLOAD_LIMIT).ok())
        .map_or(0, |h| h.len as usize);
    let end = HEADER_LEN.saturating_add(len).min(wire.len());
    wire.slice(HEADER_LEN.min(end)..end)
}

fn read_envelope(r: &mut Reader<'_>, env: &mut Envelope) -> Result<(), Problem> {
    r.begin_object("message").map_err(|e| match e {
        Problem::WrongType { .. } => Problem::NotObject,
        e => e,
    })?;
    let mut first = true;
    let mut seen = 0u8;
    while let Some(key) = r.next_key(&mut first)? {
        let bit = match &*key {
            "kind" => 1,
            "request_id" => 2,
            "status" => 4,
            "fields" => 8,
            other => return Err(Problem::unknown_field(other)),
        };
        if seen & bit != 0 {
            return Err(Problem::duplicate_key(&key));
        }
        seen |= bit;
        match bit {
            1 => {
                let name = r.string("kind")?;
                env.kind = Some(Kind::from_name(&name).ok_or_else(|| quoted(&name)));
            }
            2 => env.request_id = Some(JsonField::read_json(r, "request_id")?),
            4 => env.status = Some(JsonField::read_json(r, "status")?),
            _ => {
                match env.kind {
                    Some(Ok(kind)) => env.msg = Some(field::read_fields(kind, r)?),
                    _ => {
                        // The kind is not known yet (or never will be): check the
                        // syntax now, read the fields once the kind is known.
                        env.fields_at = Some(r.pos());
                        r.skip_value()?;
                    }
                }
            }
        }
    }
    r.end()
}

/// One encoded binary frame (header + payload + padding, as the service builds them
/// with `Msg::to_frame`, or header-only with `frame::encode_status`) → its JSON text:
/// `{"kind":…,"request_id":…,"status":…,"fields":{…}}`, `status` only on `Error` and
/// `Bye` (or when not 0), `fields` only when the payload is not empty. Bounds of
/// PROTOCOL.md section 4 are not checked: this converts, the receiver judges.
pub fn frame_to_json(frame: &[u8]) -> Result<Bytes, JsonError> {
    let Some(d) = frame::decode(frame, MAX_PAYLOAD_LIMIT)? else {
        return Err(JsonError::NotOneFrame("incomplete frame"));
    };
    if d.consumed != frame.len() {
        return Err(JsonError::NotOneFrame("bytes after the frame"));
    }
    let kind = Kind::from_u8(d.header.kind).ok_or(DecodeError::UnknownKind(d.header.kind))?;
    let msg = if d.payload.is_empty() {
        None
    } else {
        Some(messages::decode_unchecked(kind, d.payload)?)
    };
    let mut out = Vec::with_capacity(
        frame
            .len()
            .saturating_add(frame.len() / 3)
            .saturating_add(64),
    );
    out.extend_from_slice(b"{\"kind\":\"");
    out.extend_from_slice(kind.name().as_bytes());
    out.extend_from_slice(b"\",\"request_id\":");
    write::number(&mut out, u64::from(d.header.request_id));
    if matches!(kind, Kind::Error | Kind::Bye) || d.header.status != 0 {
        out.extend_from_slice(b",\"status\":");
        write::number(&mut out, u64::from(d.header.status));
    }
    if let Some(msg) = msg {
        out.extend_from_slice(b",\"fields\":");
        field::write_fields(&msg, &mut out);
    }
    out.push(b'}');
    Ok(Bytes::from(out))
}

/// The header of one encoded frame and its message's `fields` object alone (`{}`
/// when the payload is empty): the body of an HTTP API answer (`crate::api`).
pub fn frame_fields_json(frame: &[u8]) -> Result<(FrameHeader, Bytes), JsonError> {
    let Some(d) = frame::decode(frame, MAX_PAYLOAD_LIMIT)? else {
        return Err(JsonError::NotOneFrame("incomplete frame"));
    };
    if d.consumed != frame.len() {
        return Err(JsonError::NotOneFrame("bytes after the frame"));
    }
    let kind = Kind::from_u8(d.header.kind).ok_or(DecodeError::UnknownKind(d.header.kind))?;
    if d.payload.is_empty() {
        return Ok((d.header, Bytes::from_static(b"{}")));
    }
    let msg = messages::decode_unchecked(kind, d.payload)?;
    let mut out = Vec::with_capacity(frame.len().saturating_add(frame.len() / 3));
    field::write_fields(&msg, &mut out);
    Ok((d.header, Bytes::from(out)))
}

#[cfg(test)]
mod tests;
