//! Frames from the server turned into messages, including the header-only forms the
//! connection layer sends (FRAMING.md): an empty `Welcome`, `Ping`/`Pong` without a
//! stamp, and `Error`/`Bye` whose code is only in the header's status.

use crate::frame::FrameHeader;
use crate::protocol::messages::{self, DecodeError, Msg};
use crate::protocol::{ErrorCode, Kind};

/// One message from the server, as [`Client::recv`](super::Client::recv) hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The request id the server copied from the request this answers; 0 for an
    /// unsolicited frame (`Deliver`, `Notice`, `Queued`, …).
    pub request_id: u32,
    /// The decoded body. For `Error` and `Bye` the code is the header's status.
    pub msg: Msg,
}

/// Decodes a frame's body. `Ok(None)` for a kind this build does not know: the
/// protocol grows by adding kinds (FRAMING.md section 11), so a newer server's
/// message is skipped rather than treated as an error.
pub(super) fn decode(header: &FrameHeader, payload: &[u8]) -> Result<Option<Msg>, DecodeError> {
    let Some(kind) = Kind::from_u8(header.kind) else {
        return Ok(None);
    };
    if payload.is_empty() {
        let header_only: Option<Msg> = match kind {
            Kind::Welcome => Some(messages::Welcome::default().into()),
            Kind::Ping => Some(messages::Ping::default().into()),
            Kind::Pong => Some(messages::Pong::default().into()),
            Kind::Error => Some(error_from_status(header.status).into()),
            Kind::Bye => Some(
                messages::Bye {
                    code: header.status,
                    message: String::new(),
                }
                .into(),
            ),
            _ => None,
        };
        if let Some(msg) = header_only {
            return Ok(Some(msg));
        }
    }
    let mut msg = Msg::decode(header.kind, payload)?;
    match &mut msg {
        Msg::Error(e) => e.code = header.status,
        Msg::Bye(b) => b.code = header.status,
        _ => {}
    }
    Ok(Some(msg))
}

/// The body of a header-only `Error`: the code's documented retryability, no detail.
pub(super) fn error_from_status(code: u16) -> messages::Error {
    messages::Error {
        code,
        retryable: ErrorCode::from_u16(code).is_some_and(ErrorCode::retryable),
        conversation: 0,
        message: String::new(),
    }
}

/// Whether a message ends the session: a `Bye`, or an `Error` whose code closes the
/// connection. Anything the server sends after it is ignored (FRAMING.md section 6).
pub(super) fn ends_session(msg: &Msg) -> bool {
    match msg {
        Msg::Bye(_) => true,
        Msg::Error(e) => ErrorCode::from_u16(e.code).is_some_and(ErrorCode::closes_connection),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;

    fn header(kind: Kind, status: u16) -> FrameHeader {
        FrameHeader {
            status,
            ..FrameHeader::new(kind.as_u8(), 0, 3)
        }
    }

    #[test]
    fn header_only_forms_decode_with_the_status_as_code() {
        let e = decode(&header(Kind::Error, 301), b"").unwrap().unwrap();
        assert_eq!(
            e,
            Msg::Error(messages::Error {
                code: 301,
                retryable: true,
                conversation: 0,
                message: String::new()
            })
        );
        assert!(ends_session(&e));
        let e = decode(&header(Kind::Error, 404), b"").unwrap().unwrap();
        assert!(!ends_session(&e), "4xx keeps the connection");
        let b = decode(&header(Kind::Bye, 501), b"").unwrap().unwrap();
        assert_eq!(
            b,
            Msg::Bye(messages::Bye {
                code: 501,
                message: String::new()
            })
        );
        assert!(ends_session(&b));
        assert_eq!(
            decode(&header(Kind::Welcome, 0), b"").unwrap(),
            Some(messages::Welcome::default().into())
        );
    }

    #[test]
    fn archived_bodies_decode_and_the_header_status_wins() {
        let f = Msg::from(messages::Error {
            code: 404,
            message: "gone".into(),
            ..messages::Error::default()
        })
        .to_frame(9);
        let d = frame::decode(&f, 1 << 20).unwrap().unwrap();
        let mut h = d.header;
        h.status = 409;
        let Some(Msg::Error(e)) = decode(&h, d.payload).unwrap() else {
            panic!("not an error");
        };
        assert_eq!((e.code, e.message.as_str()), (409, "gone"));
    }

    #[test]
    fn empty_bodies_of_other_kinds_and_garbage_are_errors_unknown_kinds_skipped() {
        assert!(decode(&header(Kind::Deliver, 0), b"").is_err());
        assert!(decode(&header(Kind::Accepted, 0), &[0xff; 7]).is_err());
        let unknown = FrameHeader::new(200, 0, 0);
        assert!(matches!(decode(&unknown, b"whatever"), Ok(None)));
    }
}
