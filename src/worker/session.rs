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

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::auth::{Identity, Verifier};
use crate::fasthash::ServerMap;
use crate::frame::{self, FrameHeader};
use crate::handoff::{Command, ConnId, Event};
use crate::metrics::WorkerMetrics;
use crate::protocol::messages::{self, Resumed};
use crate::protocol::{DecodeError, ErrorCode, Kind, Msg, PROTOCOL_VERSION};
use crate::service::record::message_body_bytes;
use crate::service::{
    Effect, Principal, ResumeAnswer, RouterMsg, Sender, ShardMsg, UserRef, error_command, shard_of,
};

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
    /// Conversation shards (to find the owner of a resume cursor).
    pub shards: usize,
    /// Most events replayed to one reconnecting connection.
    pub max_replay: u64,
    /// `journal.max_record_bytes` when the journal is on: a `Send` whose record would
    /// not fit is refused (400) before anything changes. Config validation makes it
    /// hold every valid message, so this only guards against a record format that
    /// outgrew the derived bound.
    pub max_record: Option<usize>,
}

/// Where a session is.
#[derive(Debug)]
enum State {
    AwaitingHello,
    /// Verified; waiting for the shards' answers to its resume cursors.
    Resuming(Box<Resuming>),
    /// Shared with every request's [`Sender`].
    Established(Arc<Principal>),
}

#[derive(Debug)]
struct Resuming {
    identity: Identity,
    rid: u32,
    cursors: Vec<messages::Cursor>,
    /// Shards that have not answered yet.
    waiting: usize,
    answers: Vec<ResumeAnswer>,
}

/// Session settings shared by every worker; SIGHUP swaps in new ones (read only at
/// `Hello`, so the lock is off the per-frame path).
pub(crate) type SharedSettings = Arc<std::sync::RwLock<Arc<SessionSettings>>>;

/// The settings in force now.
fn current(s: &SharedSettings) -> Arc<SessionSettings> {
    s.read()
        .map_or_else(|e| e.into_inner().clone(), |g| g.clone())
}

/// The sessions one worker owns.
#[derive(Debug)]
pub(crate) struct Sessions {
    settings: SharedSettings,
    sessions: ServerMap<ConnId, State>,
    /// Worker index in the top bits, a counter below: unique per daemon run.
    next_session: u64,
    /// This worker's index (where shards send resume answers).
    worker: usize,
    /// [`SessionSettings::max_record`] (restart-only: read once).
    max_record: Option<usize>,
}

/// Effects produced by one event, in order.
pub(crate) type Out = Vec<Effect>;

impl Sessions {
    /// Sessions for worker `worker`.
    pub fn new(worker: usize, settings: SharedSettings) -> Self {
        let max_record = current(&settings).max_record;
        Self {
            settings,
            sessions: ServerMap::default(),
            next_session: (worker as u64) << 48,
            worker,
            max_record,
        }
    }

    /// A shard answered some of a resuming session's cursors; once all have, the
    /// session is established: `Welcome`, then the replayed events, then live traffic.
    pub fn resumed(&mut self, conn: ConnId, answers: Vec<ResumeAnswer>, out: &mut Out) {
        let Some(State::Resuming(r)) = self.sessions.get_mut(&conn) else {
            return;
        };
        r.answers.extend(answers);
        r.waiting = r.waiting.saturating_sub(1);
        if r.waiting > 0 {
            return;
        }
        let Some(State::Resuming(r)) = self.sessions.remove(&conn) else {
            return;
        };
        let Resuming {
            identity,
            rid,
            cursors,
            mut answers,
            ..
        } = *r;
        let mut resumed = Vec::with_capacity(cursors.len());
        let mut frames = Vec::new();
        for cur in &cursors {
            let found = answers
                .iter()
                .position(|a| a.conversation == cur.conversation && a.from_seq == cur.last_seq);
            let answer = found.map(|i| answers.swap_remove(i));
            let recovered = answer.as_ref().is_some_and(|a| a.recovered);
            resumed.push(Resumed {
                conversation: cur.conversation,
                from_seq: cur.last_seq,
                recovered,
            });
            frames.extend(answer.map(|a| a.frames).unwrap_or_default());
        }
        self.establish(conn, identity, rid, resumed, frames, out);
    }

    /// Sends `Welcome` (and any replay), tells the reactor and the router.
    fn establish(
        &mut self,
        conn: ConnId,
        identity: Identity,
        rid: u32,
        resumed: Vec<Resumed>,
        replay: Vec<Bytes>,
        out: &mut Out,
    ) {
        self.next_session += 1;
        let welcome = welcome(
            &current(&self.settings),
            self.next_session,
            &identity,
            resumed,
        );
        out.push(Effect::Conn(
            conn,
            Command::Send {
                conn,
                frame: welcome.to_frame(rid),
            },
        ));
        for frame in replay {
            out.push(Effect::Conn(conn, Command::Send { conn, frame }));
        }
        out.push(Effect::Conn(conn, Command::Established { conn }));
        let capacity = identity.max_concurrent;
        let principal = Principal {
            who: UserRef {
                tenant: identity.tenant,
                user: identity.user,
            },
            name: identity.name,
            role: identity.role,
            groups: identity.groups,
        };
        out.push(Effect::Router(RouterMsg::Connected {
            conn,
            who: principal.who.clone(),
            name: principal.name.clone(),
            role: principal.role,
            groups: principal.groups.clone(),
            capacity,
        }));
        self.sessions
            .insert(conn, State::Established(Arc::new(principal)));
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
                        error_command(conn, code, 0, header.request_id),
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
                let settings = current(&self.settings);
                let identity = settings
                    .verifier
                    .verify(&hello.token, SystemTime::now())
                    .map_err(|e| e.code())?;
                if hello.resume.is_empty() {
                    self.establish(conn, identity, rid, Vec::new(), Vec::new(), out);
                    return Ok(());
                }
                // Ask each shard owning a cursor what the connection missed.
                let who = UserRef {
                    tenant: identity.tenant.clone(),
                    user: identity.user.clone(),
                };
                let mut by_shard: std::collections::BTreeMap<usize, Vec<messages::Cursor>> =
                    std::collections::BTreeMap::new();
                for c in &hello.resume {
                    by_shard
                        .entry(shard_of(c.conversation, settings.shards))
                        .or_default()
                        .push(c.clone());
                }
                let waiting = by_shard.len();
                for cursors in by_shard.into_values() {
                    out.push(Effect::Shard(ShardMsg::Resume {
                        conn,
                        who: who.clone(),
                        worker: self.worker,
                        cursors,
                        max_replay: settings.max_replay,
                    }));
                }
                *state = State::Resuming(Box::new(Resuming {
                    identity,
                    rid,
                    cursors: hello.resume,
                    waiting,
                    answers: Vec::new(),
                }));
                Ok(())
            }
            // The first frame must be Hello, whatever else it is; Hello comes once; a
            // resuming client waits for its Welcome.
            (State::AwaitingHello | State::Resuming(_), _)
            | (State::Established(_), Some(Kind::Hello)) => Err(ErrorCode::UnexpectedKind),
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
                out.push(Effect::Conn(conn, Command::ClientBye { conn }));
                Ok(())
            }
            (State::Established(id), Some(kind)) if kind.is_request() => {
                let msg = match Msg::decode(header.kind, &payload) {
                    Ok(msg) => msg,
                    // A broken archive ends the session; a field out of range is one
                    // bad request.
                    Err(DecodeError::Bound { .. }) => return Err(ErrorCode::BadRequest),
                    Err(_) => return Err(ErrorCode::MalformedPayload),
                };
                if let (Msg::Send(send), Some(max)) = (&msg, self.max_record)
                    && message_body_bytes(&id.who.user, &send.body) > max
                {
                    // Could never be stored: not retryable, and not a storage error.
                    tracing::warn!(
                        bytes = send.body.len(),
                        max_record = max,
                        "Send refused: its journal record would exceed journal.max_record_bytes"
                    );
                    return Err(ErrorCode::BadRequest);
                }
                let from = Sender {
                    id: id.clone(),
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
fn welcome(s: &SessionSettings, session: u64, id: &Identity, resumed: Vec<Resumed>) -> Msg {
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
        resumed,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::Claims;
    use crate::config::{AuthKey, Config};
    use crate::protocol::messages::content;

    fn sessions(max_record: Option<usize>) -> (Sessions, Verifier) {
        let mut config = Config::default();
        config.auth.keys = vec![AuthKey {
            kid: "k".into(),
            secret: Some("0123456789abcdef0123456789abcdef".into()),
            secret_file: None,
        }];
        let settings = SessionSettings {
            verifier: Verifier::from_config(&config).unwrap(),
            heartbeat_ms: 1000,
            idle_timeout_ms: 3000,
            max_frame: 1 << 20,
            shards: 1,
            max_replay: 10,
            max_record,
        };
        let shared = Arc::new(std::sync::RwLock::new(Arc::new(settings)));
        (
            Sessions::new(0, shared),
            Verifier::from_config(&config).unwrap(),
        )
    }

    fn frame(conn: ConnId, rid: u32, msg: impl Into<Msg>) -> Event {
        let msg = msg.into();
        Event::Frame {
            conn,
            header: FrameHeader::new(msg.kind().as_u8(), 0, rid),
            payload: Bytes::copy_from_slice(&msg.to_payload()),
        }
    }

    /// A `Send` whose record could not be stored is refused with 400 (not
    /// retryable) before it reaches the router or a shard; one that fits goes on.
    #[test]
    fn a_send_whose_record_would_not_fit_is_a_bad_request() {
        let (mut s, verifier) = sessions(Some(1000));
        let conn = ConnId {
            reactor: 0,
            slot: 1,
            generation: 1,
        };
        let claims = Claims::new(
            "vera",
            "visitor",
            SystemTime::now(),
            Duration::from_secs(60),
        );
        let hello = messages::Hello {
            protocol: PROTOCOL_VERSION,
            token: verifier.mint(&claims, None).unwrap(),
            client: "test".into(),
            resume: Vec::new(),
        };
        let stats = WorkerMetrics::default();
        let mut out = Vec::new();
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        s.handle(Event::Opened { conn, peer }, &mut out, &stats);
        s.handle(frame(conn, 1, hello), &mut out, &stats);
        out.clear();
        let send = |body: usize| messages::Send {
            content_type: content::TEXT,
            conversation: 7,
            client_msg_id: 1,
            group: String::new(),
            body: "x".repeat(body),
        };
        s.handle(frame(conn, 2, send(1000)), &mut out, &stats);
        let refused = match out.as_slice() {
            [Effect::Conn(_, Command::Send { frame, .. })] => {
                let f = frame::decode(frame, u32::MAX).unwrap().unwrap();
                Msg::decode(f.header.kind, f.payload).unwrap()
            }
            other => panic!("{other:?}"),
        };
        assert!(
            matches!(&refused, Msg::Error(e) if e.code == 400 && !e.retryable),
            "{refused:?}"
        );
        out.clear();
        s.handle(frame(conn, 3, send(100)), &mut out, &stats);
        assert!(
            matches!(out.as_slice(), [Effect::Shard(ShardMsg::Request { .. })]),
            "{out:?}"
        );
    }
}
