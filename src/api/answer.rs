//! HTTP answers of the API: a reply frame of the service becomes a JSON response
//! (the message's fields as `proto-spec/JSON.md` writes them), an `Error` frame a
//! JSON error with the protocol's code and the HTTP status that matches it.

use bytes::Bytes;

use crate::http::response::Response;
use crate::protocol::messages::{self, Msg};
use crate::protocol::{ErrorCode, Kind};

/// The media type of every API answer.
pub const JSON: &str = "application/json";

/// The media type of a transcript export: one JSON object per line.
pub const JSONL: &str = "application/x-ndjson";

/// The entries of a `HistoryPage` answer body as JSON Lines (oldest first), with
/// the first entry's `seq` (0 when empty) and whether older entries exist.
pub fn entry_lines(body: &[u8]) -> Result<(Vec<u8>, u64, bool), &'static str> {
    let page: serde_json::Value = serde_json::from_slice(body).map_err(|_| "not JSON")?;
    let entries = page
        .get("entries")
        .and_then(|e| e.as_array())
        .ok_or("no entries")?;
    let more = page.get("more").and_then(|m| m.as_bool()).unwrap_or(false);
    let first_seq = entries
        .first()
        .and_then(|e| e.get("seq")?.as_str()?.parse().ok())
        .unwrap_or(0);
    let mut out = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut out, e).map_err(|_| "unwritable entry")?;
        out.push(b'\n');
    }
    Ok((out, first_seq, more))
}

/// The HTTP status that stands for a protocol error code.
pub fn http_status(code: ErrorCode) -> u16 {
    use ErrorCode::*;
    match code {
        TokenInvalid | TokenExpired | UnknownKey | BadClaims => 401,
        Blocked | Forbidden => 403,
        NotFound => 404,
        Conflict => 409,
        FrameTooLarge => 413,
        RateLimited => 429,
        ServerBusy | ShuttingDown | StorageUnavailable | SlowConsumer => 503,
        Internal => 500,
        _ => 400,
    }
}

/// The protocol code that stands for an HTTP status the API answers by itself.
pub fn code_for_status(status: u16) -> ErrorCode {
    match status {
        401 => ErrorCode::TokenInvalid,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::FrameTooLarge,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::ServerBusy,
        500 => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}

/// A JSON error answer: `{"error":{"status","code","name","retryable","message"[,
/// "conversation"]}}`; 401 carries `WWW-Authenticate`, 405 the `Allow` header the
/// caller adds.
pub fn error(status: u16, code: ErrorCode, message: &str, conversation: u64) -> Response {
    let mut body = serde_json::json!({
        "error": {
            "status": status,
            "code": code.as_u16(),
            "name": code.name(),
            "retryable": code.retryable(),
            "message": message,
        }
    });
    if conversation != 0
        && let Some(e) = body.get_mut("error").and_then(|e| e.as_object_mut())
    {
        e.insert("conversation".into(), conversation.to_string().into());
    }
    let mut text = serde_json::to_vec(&body).unwrap_or_default();
    text.push(b'\n');
    let r = Response::new(status, JSON, text);
    if status == 401 {
        r.header("WWW-Authenticate", "Bearer realm=\"switchboard\"")
    } else if status == 503 {
        r.header("Retry-After", "1")
    } else {
        r
    }
}

/// The answer for a reply frame of the service: `Accepted` is 201 with its fields, a
/// header-only `Pong` (an acknowledgement, [`crate::service`]'s `api_ack`) 204, any
/// other reply 200 with its fields, an `Error` its status.
pub fn from_frame(frame: &[u8]) -> Response {
    let (header, fields) = match crate::protocol::json::frame_fields_json(frame) {
        Ok(x) => x,
        Err(e) => {
            // The service built the frame: failing to convert it is a bug.
            tracing::error!(error = %e, "no JSON form for an API reply");
            return error(500, ErrorCode::Internal, "reply could not be converted", 0);
        }
    };
    if header.kind == Kind::Pong.as_u8() {
        // The acknowledgement of a request with no reply of its own.
        return Response::new(204, JSON, Bytes::new());
    }
    if header.kind != Kind::Error.as_u8() {
        let mut body = fields.to_vec();
        body.push(b'\n');
        // A stored message (or a resend of one) is a created resource.
        let status = if header.kind == Kind::Accepted.as_u8() {
            201
        } else {
            200
        };
        return Response::new(status, JSON, Bytes::from(body));
    }
    // An Error: its message when it has one, else the header's status.
    let payload = frame
        .get(crate::frame::HEADER_LEN..)
        .and_then(|p| p.get(..header.len as usize))
        .unwrap_or_default();
    let (code, conversation, message) = match messages::decode_unchecked(Kind::Error, payload).ok()
    {
        Some(Msg::Error(e)) => (e.code, e.conversation, e.message),
        _ => (header.status, 0, String::new()),
    };
    let code = ErrorCode::from_u16(code).unwrap_or(ErrorCode::Internal);
    let message = if message.is_empty() {
        code.name().replace('_', " ")
    } else {
        message
    };
    error(http_status(code), code, &message, conversation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(r: &Response) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn a_reply_becomes_its_fields() {
        let frame = Msg::from(messages::ConversationList {
            more: true,
            next_after: 9,
            items: Vec::new(),
        })
        .to_frame(3);
        let r = from_frame(&frame);
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, JSON);
        assert_eq!(
            json(&r),
            serde_json::json!({"more": true, "next_after": "9", "items": []})
        );
    }

    #[test]
    fn an_error_becomes_a_json_error_with_its_status() {
        let frame = Msg::from(messages::Error {
            code: ErrorCode::NotFound.as_u16(),
            retryable: false,
            conversation: 42,
            message: "no such conversation".into(),
        })
        .to_frame(1);
        let r = from_frame(&frame);
        assert_eq!(r.status, 404);
        let v = json(&r);
        assert_eq!(v["error"]["code"], 404);
        assert_eq!(v["error"]["name"], "not_found");
        assert_eq!(v["error"]["conversation"], "42");
        assert_eq!(v["error"]["message"], "no such conversation");
        // Header-only: the status is the code.
        let bare =
            crate::frame::encode_status(Kind::Error.as_u8(), ErrorCode::Forbidden.as_u16(), 1);
        let r = from_frame(&bare);
        assert_eq!(r.status, 403);
        assert_eq!(json(&r)["error"]["name"], "forbidden");
    }

    #[test]
    fn statuses_and_codes_agree_both_ways() {
        for status in [400, 401, 403, 404, 409, 413, 429, 500, 503] {
            assert_eq!(http_status(code_for_status(status)), status, "{status}");
        }
        let r = error(401, ErrorCode::TokenInvalid, "no", 0);
        assert!(r.headers.iter().any(|(n, _)| *n == "WWW-Authenticate"));
    }
}
