//! The sans-IO receive side of one WebSocket connection (RFC 6455 5 and 7).
//!
//! The reactor calls [`WsState::feed`] with the bytes it has (a spilled partial frame
//! and what it just read); whole frames are checked, unmasked into a per-reactor
//! scratch buffer and handed to a [`WsSink`]; the bytes of a partial frame at the end
//! are left unconsumed for the reactor to keep. Between reads a connection holds only
//! its small `Copy` [`WsState`]: no buffer, exactly like a binary connection.
//!
//! Every header rule is checked from the header alone, before the payload arrives: a
//! frame announcing more than the message limit fails at once, so a client cannot make
//! the reactor buffer it. Text is UTF-8-checked as its bytes arrive, within a partial
//! frame too.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use bytes::Bytes;

use super::close;
use super::frame::{
    MAX_CONTROL_PAYLOAD, Opcode, apply_mask, close_frame, parse_header, server_frame,
};
use super::utf8::Utf8Stream;

/// Bounds of one WebSocket connection's receive side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Most bytes of one data message, all its fragments together (1009 past it).
    pub max_message: u32,
}

/// What the in-progress message is (`WsState::msg`).
const MSG_NONE: u8 = 0;
const MSG_TEXT: u8 = 1;
const MSG_BINARY: u8 = 2;

/// `WsState::flags`: we have sent our Close (the peer's Close is then not answered).
const CLOSE_SENT: u8 = 1;
/// `WsState::flags`: the peer's Close was received; `close_code` holds its code.
const CLOSE_RECEIVED: u8 = 2;

/// Receive state of one WebSocket connection between reads: the in-progress message's
/// opcode and size so far, the UTF-8 tail of a text message cut inside a code point,
/// the closing flags, and how far a partial text frame has been UTF-8-checked. 16
/// bytes, `Copy`; it lives in the reactor's per-connection context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WsState {
    /// Bytes of the in-progress message so far.
    len: u32,
    /// Pending bytes of a code point cut by a fragment boundary.
    utf8: Utf8Stream,
    /// `MSG_*`: which data message is in progress.
    msg: u8,
    /// `CLOSE_*` bits.
    flags: u8,
    /// The peer's close code, once received (1005 for an empty Close).
    close_code: u16,
    /// Payload bytes of the partial text frame at the start of the unconsumed input
    /// already UTF-8-checked (and pushed into `utf8`); 0 between frames.
    checked: u32,
}

const _: () = assert!(std::mem::size_of::<WsState>() <= 16);

/// Where the unmasked data of a connection goes.
pub trait WsSink {
    /// A piece of a data message, unmasked, in order; `fin` ends the message. Every data
    /// frame gives exactly one call (an empty frame an empty `chunk`). Text is valid
    /// UTF-8 up to the end of the chunk except, for a non-final chunk, up to three
    /// bytes of a code point the next chunk completes. Err(code): the sink refuses
    /// (e.g. bad JSON → 1007/1008): the endpoint fails with that code.
    fn data(&mut self, text: bool, chunk: &[u8], fin: bool) -> Result<(), u16>;
    /// A control frame to write to the peer (a Pong; the Close reply).
    fn control(&mut self, frame: Bytes);
}

/// The outcome of [`WsState::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// `consumed` bytes were whole frames; the rest is a partial frame to keep.
    More {
        /// Bytes of whole frames handled.
        consumed: usize,
    },
    /// The peer's Close was answered (the reply went to `control`, unless we had sent
    /// our Close first); the connection can be closed. Bytes after the Close frame are
    /// ignored.
    Closed {
        /// Bytes up to the end of the Close frame.
        consumed: usize,
        /// The peer's code (1005 for a Close without one).
        code: u16,
    },
}

/// A protocol violation by the peer; [`WsError::close_code`] is the code to close with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// A client frame without the MASK bit (RFC 6455 5.1).
    #[error("client frame not masked")]
    Unmasked,
    /// RSV bits set without a negotiated extension.
    #[error("reserved bits {0:#05b} set")]
    Reserved(u8),
    /// A reserved opcode.
    #[error("reserved opcode {0:#x}")]
    BadOpcode(u8),
    /// A 64-bit length with its most significant bit set.
    #[error("frame length with the top bit set")]
    BadLength,
    /// A control frame with more than 125 bytes of payload.
    #[error("control frame of {0} bytes (at most 125)")]
    ControlTooLong(u64),
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A continuation frame with no message in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new data message while a fragmented one is in progress.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// The message would be longer than `max_message`.
    #[error("message of at least {len} bytes exceeds the limit of {max}")]
    TooBig {
        /// Bytes of the message so far plus the announced frame.
        len: u64,
        /// The limit.
        max: u32,
    },
    /// Text (or a Close reason) that is not UTF-8.
    #[error("text is not valid UTF-8")]
    BadUtf8,
    /// A Close code a peer may not send.
    #[error("invalid close code {0}")]
    BadCloseCode(u16),
    /// A Close payload of one byte (a code is two).
    #[error("close payload of 1 byte")]
    BadClosePayload,
    /// The sink refused a message with this close code.
    #[error("message refused with close code {0}")]
    Refused(u16),
}

impl WsError {
    /// The close code to send before closing: 1009 for [`WsError::TooBig`], 1007 for
    /// bad UTF-8, the sink's code for [`WsError::Refused`], 1002 for the rest.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooBig { .. } => close::TOO_BIG,
            Self::BadUtf8 => close::INVALID_PAYLOAD,
            Self::Refused(code) => *code,
            Self::Unmasked
            | Self::Reserved(_)
            | Self::BadOpcode(_)
            | Self::BadLength
            | Self::ControlTooLong(_)
            | Self::FragmentedControl
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::BadCloseCode(_)
            | Self::BadClosePayload => close::PROTOCOL_ERROR,
        }
    }
}

impl WsState {
    /// Parses whole frames from `input`, unmasking payloads into `scratch` (a
    /// per-reactor buffer the caller keeps; it may grow up to one frame) and handing
    /// them to `sink`; Ping → Pong via `sink.control`; Pong ignored; Close → validated,
    /// answered (the peer's code echoed, or 1000 for an empty Close) and `Closed`. A
    /// frame header announcing more than the message limit fails at once (before its
    /// payload is buffered). Never allocates otherwise.
    ///
    /// Text is UTF-8-checked as it arrives, also the part of a frame that has not fully
    /// arrived yet (fail fast: 1007 at the first bad byte, not at the end of its
    /// frame); each byte is checked once.
    ///
    /// Restartable at frame boundaries: the caller keeps `input[consumed..]` and calls
    /// again with it and the next bytes (the same unconsumed bytes first: the state
    /// remembers how much of a partial text frame it has checked). After `Closed` further calls return `Closed`
    /// with nothing consumed. After an error the state is unspecified: close.
    pub fn feed(
        &mut self,
        input: &[u8],
        limits: &WsLimits,
        scratch: &mut Vec<u8>,
        sink: &mut impl WsSink,
    ) -> Result<Fed, WsError> {
        if self.flags & CLOSE_RECEIVED != 0 {
            return Ok(Fed::Closed {
                consumed: 0,
                code: self.close_code,
            });
        }
        let mut pos = 0usize;
        loop {
            let rest = input.get(pos..).unwrap_or_default();
            let Some(h) = parse_header(rest) else {
                return Ok(Fed::More { consumed: pos });
            };
            let op = self.check_header(&h, limits)?;
            // check_header bounded `len` by max_message (u32) or 125: it fits usize.
            let len = usize::try_from(h.len).map_err(|_| WsError::BadLength)?;
            let Some(payload) = h
                .header_len
                .checked_add(len)
                .and_then(|end| rest.get(h.header_len..end))
            else {
                let partial = rest.get(h.header_len..).unwrap_or_default();
                self.check_partial_text(op, &h, partial, scratch)?;
                return Ok(Fed::More { consumed: pos });
            };
            scratch.clear();
            scratch.extend_from_slice(payload);
            apply_mask(scratch, h.mask.unwrap_or_default());
            pos = pos.saturating_add(h.header_len).saturating_add(len);
            // Text bytes already checked while the frame was partial.
            let checked = std::mem::take(&mut self.checked) as usize;
            if let Some(code) = self.frame(op, h.fin, scratch, checked, sink)? {
                return Ok(Fed::Closed {
                    consumed: pos,
                    code,
                });
            }
        }
    }

    /// True while a fragmented message is in progress (the reactor's idle accounting).
    pub fn mid_message(&self) -> bool {
        self.msg != MSG_NONE
    }

    /// Records that the server sent its own Close first (shutdown, an idle timeout):
    /// the peer's Close is then the reply and is not answered again.
    pub fn close_sent(&mut self) {
        self.flags |= CLOSE_SENT;
    }

    /// Whether the peer's Close has been received.
    pub fn close_received(&self) -> bool {
        self.flags & CLOSE_RECEIVED != 0
    }

    /// UTF-8 fail-fast inside a frame that has not fully arrived: validates the bytes
    /// of a text frame's partial payload not checked by an earlier call (each byte once,
    /// so a frame trickled in byte by byte costs linear time) and remembers how far it
    /// got in `checked`. The caller feeds the frame again from its header, so the
    /// first `checked` bytes are skipped when it completes.
    fn check_partial_text(
        &mut self,
        op: Opcode,
        h: &super::frame::Header,
        partial: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Result<(), WsError> {
        let text = op == Opcode::Text || (op == Opcode::Continuation && self.msg == MSG_TEXT);
        let from = self.checked as usize;
        let Some(new) = partial.get(from..).filter(|n| text && !n.is_empty()) else {
            return Ok(());
        };
        scratch.clear();
        scratch.extend_from_slice(new);
        let mut mask = h.mask.unwrap_or_default();
        mask.rotate_left(from % 4);
        apply_mask(scratch, mask);
        self.utf8
            .push(scratch, false)
            .map_err(|_| WsError::BadUtf8)?;
        // A partial payload is shorter than the frame, which check_header bounded by
        // max_message (a u32).
        self.checked = u32::try_from(partial.len()).unwrap_or(u32::MAX);
        Ok(())
    }

    /// Every rule that the header alone decides.
    fn check_header(&self, h: &super::frame::Header, limits: &WsLimits) -> Result<Opcode, WsError> {
        if h.rsv != 0 {
            return Err(WsError::Reserved(h.rsv));
        }
        let op = Opcode::from_bits(h.opcode).ok_or(WsError::BadOpcode(h.opcode))?;
        if h.mask.is_none() {
            return Err(WsError::Unmasked);
        }
        if h.len > i64::MAX as u64 {
            return Err(WsError::BadLength);
        }
        if op.is_control() {
            if !h.fin {
                return Err(WsError::FragmentedControl);
            }
            if h.len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(WsError::ControlTooLong(h.len));
            }
            return Ok(op);
        }
        match (op, self.msg) {
            (Opcode::Continuation, MSG_NONE) => return Err(WsError::UnexpectedContinuation),
            (Opcode::Text | Opcode::Binary, m) if m != MSG_NONE => {
                return Err(WsError::ExpectedContinuation);
            }
            _ => {}
        }
        let total = u64::from(self.len).saturating_add(h.len);
        if total > u64::from(limits.max_message) {
            return Err(WsError::TooBig {
                len: total,
                max: limits.max_message,
            });
        }
        Ok(op)
    }

    /// Handles one whole, unmasked frame; `Some(code)` when it was the peer's Close.
    fn frame(
        &mut self,
        op: Opcode,
        fin: bool,
        payload: &[u8],
        checked: usize,
        sink: &mut impl WsSink,
    ) -> Result<Option<u16>, WsError> {
        match op {
            Opcode::Ping => {
                sink.control(server_frame(Opcode::Pong, payload));
                Ok(None)
            }
            Opcode::Pong => Ok(None),
            Opcode::Close => self.close(payload, sink).map(Some),
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                if op == Opcode::Text {
                    self.msg = MSG_TEXT;
                } else if op == Opcode::Binary {
                    self.msg = MSG_BINARY;
                }
                let text = self.msg == MSG_TEXT;
                if text {
                    let unchecked = payload.get(checked..).unwrap_or_default();
                    self.utf8
                        .push(unchecked, fin)
                        .map_err(|_| WsError::BadUtf8)?;
                }
                // check_header kept len + payload within max_message (a u32).
                self.len = u32::try_from(u64::from(self.len).saturating_add(payload.len() as u64))
                    .unwrap_or(u32::MAX);
                if fin {
                    *self = Self {
                        flags: self.flags,
                        ..Self::default()
                    };
                }
                sink.data(text, payload, fin).map_err(WsError::Refused)?;
                Ok(None)
            }
        }
    }

    /// Validates the peer's Close, answers it unless we closed first, returns its code.
    fn close(&mut self, payload: &[u8], sink: &mut impl WsSink) -> Result<u16, WsError> {
        let code = match payload {
            [] => close::NO_STATUS,
            [_] => return Err(WsError::BadClosePayload),
            [hi, lo, reason @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                if !close::valid_received(code) {
                    return Err(WsError::BadCloseCode(code));
                }
                simdutf8::basic::from_utf8(reason).map_err(|_| WsError::BadUtf8)?;
                code
            }
        };
        if self.flags & CLOSE_SENT == 0 {
            let reply = if code == close::NO_STATUS {
                close::NORMAL
            } else {
                code
            };
            sink.control(close_frame(reply, ""));
            self.flags |= CLOSE_SENT;
        }
        self.flags |= CLOSE_RECEIVED;
        self.close_code = code;
        Ok(code)
    }
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
