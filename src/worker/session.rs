//! Per-connection protocol sessions (sans-IO): what a frame means in the state its
//! connection is in.
//!
//! The handshake: the first frame must be `Hello`; the answer is `Welcome` and the
//! reactor is told to switch the connection to its idle deadline. After that `Ping`
//! is answered with `Pong` carrying the same request id and payload.

use std::collections::HashMap;

use bytes::Bytes;

use super::Outbox;
use crate::frame::{self, FrameHeader};
use crate::handoff::{Command, ConnId, Event};
use crate::metrics::WorkerMetrics;
use crate::protocol::{ErrorCode, Kind};

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitingHello,
    Established,
}

/// The sessions one worker owns.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    sessions: HashMap<ConnId, State>,
}

impl Sessions {
    /// Applies one event, pushing any resulting commands.
    pub fn handle(&mut self, event: Event, out: &mut Outbox, stats: &WorkerMetrics) {
        match event {
            Event::Opened { conn, .. } => {
                self.sessions.insert(conn, State::AwaitingHello);
            }
            Event::Closed { conn, .. } => {
                self.sessions.remove(&conn);
            }
            Event::Frame {
                conn,
                header,
                payload,
            } => self.frame(conn, header, payload, out, stats),
            Event::Barrier(_) => {}
        }
    }

    fn frame(
        &mut self,
        conn: ConnId,
        header: FrameHeader,
        payload: Bytes,
        out: &mut Outbox,
        stats: &WorkerMetrics,
    ) {
        let Some(state) = self.sessions.get_mut(&conn) else {
            return;
        };
        let rid = header.request_id;
        let reply = |kind: Kind, body: &[u8]| Command::Send {
            conn,
            frame: frame::encode(FrameHeader::new(kind.as_u8(), 0, rid), body),
        };
        let fail = |code: ErrorCode| {
            stats.errors_sent.inc();
            if code.closes_connection() {
                Command::Close {
                    conn,
                    code: Some(code),
                    request_id: rid,
                }
            } else {
                Command::Send {
                    conn,
                    frame: frame::encode_status(Kind::Error.as_u8(), code.as_u16(), rid),
                }
            }
        };
        let kind = Kind::from_u8(header.kind);
        let cmd = match (*state, kind) {
            (State::AwaitingHello, Some(Kind::Hello)) => {
                *state = State::Established;
                out.push(conn, reply(Kind::Welcome, &[]));
                Command::Established { conn }
            }
            // The first frame must be Hello, whatever else it is.
            (State::AwaitingHello, _) | (State::Established, Some(Kind::Hello)) => {
                fail(ErrorCode::UnexpectedKind)
            }
            (State::Established, None) => fail(ErrorCode::UnknownKind),
            (State::Established, Some(Kind::Ping)) => reply(Kind::Pong, &payload),
            (State::Established, Some(Kind::Pong)) => return,
            (State::Established, Some(Kind::Bye)) => Command::Close {
                conn,
                code: None,
                request_id: rid,
            },
            // Known kinds whose handling lands with later parts of the service.
            (State::Established, Some(_)) => fail(ErrorCode::UnknownKind),
        };
        out.push(conn, cmd);
    }
}
