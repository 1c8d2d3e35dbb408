//! Per-connection protocol sessions (sans-IO): what a frame means in the state its
//! connection is in. Events in, effects out; no sockets, no clocks but the one given.
//!
//! The handshake: the first frame must be `Hello` with a token that verifies; the
//! answer is `Welcome`, the reactor is told to switch the connection to its idle
//! deadline, and the router learns who is connected. After that `Ping` is answered
//! with `Pong` carrying the same request id and payload bytes, and conversation
//! requests are decoded (104 for a broken archive, 400 for a field out of bounds) and
//! routed: opening, claiming, presence and notices to the router, everything else to
//! the conversation's shard.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::auth::{Identity, Verifier};
use crate::frame::{self, FrameHeader};
use crate::handoff::{Command, ConnId, Event};
use crate::metrics::WorkerMetrics;
use crate::protocol::messages::{self, Resumed};
use crate::protocol::{DecodeError, ErrorCode, Kind, Msg, PROTOCOL_VERSION};
use crate::service::{Effect, RouterMsg, Sender, ShardMsg, UserRef};

/// What sessions need to know about the deployment.
#[derive(Debug)]
pub(crate) struct SessionSettings {
    /// Checks `Hello` tokens.
    pub verifier: Verifier,
    /// Told to clients in `Welcome` (milliseconds).
    pub heartbeat_ms: u32,
    /// Told to clients in `Welcome` (milliseconds).
    pub idle_timeout_ms: u32,
    /// Told to clients in `Welcome`.
    pub max_frame: u32,
}

/// Where a session is.
#[derive(Debug)]
enum State {
    AwaitingHello,
    Established(Box<Identity>),
}

/// The sessions one worker owns.
#[derive(Debug)]
pub(crate) struct Sessions {
    settings: Arc<SessionSettings>,
    sessions: HashMap<ConnId, State>,
    /// Worker index in the top bits, a counter below: unique per daemon run.
    next_session: u64,
}

/// Effects produced by one event, in order.
pub(crate) type Out = Vec<Effect>;

impl Sessions {
    /// Sessions for worker `worker`.
    pub fn new(worker: usize, settings: Arc<SessionSettings>) -> Self {
        Self {
            settings,
            sessions: HashMap::new(),
            next_session: (worker as u64) << 48,
        }
    }

    /// Applies one event, appending the resulting commands to `out`.
    pub fn handle(&mut self, event: Event, out: &mut Out, stats: &WorkerMetrics) {
        match event {
            Event::Opened { conn, .. } => {
                self.sessions.insert(conn, State::AwaitingHello);
            }
            Event::Closed { conn, .. } => {
                if let Some(State::Established(_)) = self.sessions.remove(&conn) {
                    out.push(Effect::Router(RouterMsg::Disconnected { conn }));
                }
            }
            Event::Frame {
                conn,
                header,
                payload,
            } => {
                if let Err(code) = self.frame(conn, header, payload, out) {
                    stats.errors_sent.inc();
                    out.push(Effect::Conn(
                        conn,
                        error_command(conn, code, header.request_id),
                    ));
                }
            }
            Event::Barrier(_) => {}
        }
    }

    fn frame(
        &mut self,
        conn: ConnId,
        header: FrameHeader,
        payload: Bytes,
        out: &mut Out,
    ) -> Result<(), ErrorCode> {
        let rid = header.request_id;
        let Some(state) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        let kind = Kind::from_u8(header.kind);
        match (&*state, kind) {
            (State::AwaitingHello, Some(Kind::Hello)) => {
                let Ok(Msg::Hello(hello)) = Msg::decode(header.kind, &payload) else {
                    return Err(ErrorCode::MalformedPayload);
                };
                if hello.protocol != PROTOCOL_VERSION {
                    return Err(ErrorCode::UnsupportedProtocol);
                }
                let identity = self
                    .settings
                    .verifier
                    .verify(&hello.token, SystemTime::now())
                    .map_err(|e| e.code())?;
                self.next_session += 1;
                let welcome = welcome(&self.settings, self.next_session, &identity, &hello.resume);
                out.push(Effect::Conn(
                    conn,
                    Command::Send {
                        conn,
                        frame: welcome.to_frame(rid),
                    },
                ));
                out.push(Effect::Conn(conn, Command::Established { conn }));
                out.push(Effect::Router(RouterMsg::Connected {
                    conn,
                    who: UserRef {
                        tenant: identity.tenant.clone(),
                        user: identity.user.clone(),
                    },
                    name: identity.name.clone(),
                    role: identity.role,
                    groups: identity.groups.clone(),
                    capacity: identity.max_concurrent,
                }));
                *state = State::Established(Box::new(identity));
                Ok(())
            }
            // The first frame must be Hello, whatever else it is; Hello comes once.
            (State::AwaitingHello, _) | (State::Established(_), Some(Kind::Hello)) => {
                Err(ErrorCode::UnexpectedKind)
            }
            (State::Established(_), Some(Kind::Ping)) => {
                // Empty, or a valid archived Ping: echoed byte for byte.
                if !payload.is_empty() && Msg::decode(header.kind, &payload).is_err() {
                    return Err(ErrorCode::MalformedPayload);
                }
                let frame = frame::encode(FrameHeader::new(Kind::Pong.as_u8(), 0, rid), &payload);
                out.push(Effect::Conn(conn, Command::Send { conn, frame }));
                Ok(())
            }
            (State::Established(_), Some(Kind::Pong)) => Ok(()),
            (State::Established(_), Some(Kind::Bye)) => {
                out.push(Effect::Conn(
                    conn,
                    Command::Close {
                        conn,
                        code: None,
                        farewell: None,
                    },
                ));
                Ok(())
            }
            (State::Established(id), Some(kind)) if is_request(kind) => {
                let msg = match Msg::decode(header.kind, &payload) {
                    Ok(msg) => msg,
                    // A broken archive ends the session; a field out of range is one
                    // bad request.
                    Err(DecodeError::Bound { .. }) => return Err(ErrorCode::BadRequest),
                    Err(_) => return Err(ErrorCode::MalformedPayload),
                };
                let from = Sender {
                    who: UserRef {
                        tenant: id.tenant.clone(),
                        user: id.user.clone(),
                    },
                    name: id.name.clone(),
                    role: id.role,
                    groups: id.groups.clone(),
                    conn,
                    rid,
                };
                out.push(route(from, msg)?);
                Ok(())
            }
            // Unknown kinds, and kinds a client does not send.
            (State::Established(_), _) => Err(ErrorCode::UnknownKind),
        }
    }
}

/// Kinds a client sends about conversations, presence and broadcasts.
fn is_request(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Send
            | Kind::Receipt
            | Kind::Typing
            | Kind::Transfer
            | Kind::Claim
            | Kind::Close
            | Kind::Rate
            | Kind::Presence
            | Kind::History
            | Kind::Notice
    )
}

/// Where a decoded request goes: the router for opening, claiming, presence and
/// notices, the conversation's shard for everything else.
fn route(from: Sender, msg: Msg) -> Result<Effect, ErrorCode> {
    Ok(match msg {
        Msg::Send(send) if send.conversation == 0 => Effect::Router(RouterMsg::Open { from, send }),
        Msg::Claim(c) => Effect::Router(RouterMsg::Claim {
            from,
            conversation: c.conversation,
        }),
        Msg::Presence(p) => Effect::Router(RouterMsg::Presence {
            from,
            status: p.status,
        }),
        Msg::Notice(notice) => Effect::Router(RouterMsg::Notice { from, notice }),
        msg if crate::service::request_conversation(&msg) == 0 => {
            return Err(ErrorCode::BadRequest);
        }
        msg => Effect::Shard(ShardMsg::Request { from, msg }),
    })
}

/// The `Welcome` for a verified identity.
fn welcome(s: &SessionSettings, session: u64, id: &Identity, resume: &[messages::Cursor]) -> Msg {
    messages::Welcome {
        protocol: PROTOCOL_VERSION,
        role: id.role,
        heartbeat_ms: s.heartbeat_ms,
        idle_timeout_ms: s.idle_timeout_ms,
        max_frame: s.max_frame,
        session,
        server_time_ms: crate::clock::unix_ms(),
        user: id.user.clone(),
        name: id.name.clone(),
        tenant: id.tenant.clone(),
        groups: id.groups.clone(),
        // Conversations are not replayed by this version: every cursor is
        // answered as not recovered, so clients fall back to History.
        resumed: resume
            .iter()
            .map(|c| Resumed {
                conversation: c.conversation,
                from_seq: c.last_seq,
                recovered: false,
            })
            .collect(),
    }
    .into()
}

/// An `Error` frame for `code`, closing the connection when the code says so.
fn error_command(conn: ConnId, code: ErrorCode, request_id: u32) -> Command {
    let frame = Msg::from(messages::Error {
        code: code.as_u16(),
        retryable: code.retryable(),
        conversation: 0,
        message: code.name().to_owned(),
    })
    .to_frame(request_id);
    if code.closes_connection() {
        Command::Close {
            conn,
            code: Some(code),
            farewell: Some(frame),
        }
    } else {
        Command::Send { conn, frame }
    }
}
