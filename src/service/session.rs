//! Per-connection protocol sessions (sans-IO): what a frame means in the state its
//! connection is in. Events in, effects out; no sockets, no clocks but the one given
//! (`now`, a [`UnixMs`] the worker loop reads once per turn).
//!
//! The handshake: the first frame must be `Hello` with a token that verifies; the
//! answer is `Welcome`, the reactor is told to switch the connection to its idle
//! deadline, and the router learns who is connected. After that `Ping` is answered
//! with `Pong` carrying the same request id and payload bytes, `Refresh` with
//! `Refreshed`, and conversation requests are decoded (104 for a broken archive, 400
//! for a field out of bounds) and routed: opening, claiming, presence and notices to
//! the router, everything else to the conversation's shard.
//!
//! A session lives as long as its token verifies: at the token's `exp` (plus
//! `auth.leeway`) it is closed with 201 `token_expired`, unless a `Refresh` with a
//! fresh token of the same user moved that deadline. The deadlines are kept in order
//! ([`Sessions::next_deadline`]); the worker loop calls [`Sessions::tick`] when the
//! first one is due, and a frame arriving past its session's deadline is dropped and
//! ends the session too, so no session acts past its token.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::deadlines::Deadlines;
use crate::auth::{Identity, Verifier};
use crate::clock::UnixMs;
use crate::fasthash::ServerMap;
use crate::frame::{self, FrameHeader};
use crate::handoff::{Command, ConnId, Event};
use crate::metrics::WorkerMetrics;
use crate::protocol::messages::{self, Resumed};
use crate::protocol::{DecodeError, ErrorCode, Kind, Msg, PROTOCOL_VERSION};
use crate::service::record::message_body_bytes;
use crate::service::{
    DisplayName, Effect, Principal, Resume, ResumeAnswer, RouterMsg, Sender, ShardControl,
    ShardMsg, UserRef, error_command, shard_of,
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
    /// `[[api.keys]]`: who an HTTP API request may be.
    pub api_keys: crate::api::keys::ApiKeys,
    /// `routing.visitor_address`: what a visitor's session keeps of its address.
    pub visitor_address: crate::config::VisitorAddress,
}

/// Where a session is.
#[derive(Debug)]
enum State {
    /// Accepted from this address; no `Hello` yet.
    AwaitingHello(std::net::IpAddr),
    /// Verified; waiting for the shards' answers to its resume cursors.
    Resuming(Box<Resuming>),
    Established(Live),
    /// The server is closing the connection after a closing error (an expired token,
    /// a refused `Refresh`, a broken payload): frames still on their way are dropped.
    /// `connected`: the router knows the connection and hears of it at `Closed`.
    Ending {
        connected: bool,
    },
}

/// An established session.
#[derive(Debug)]
struct Live {
    /// Shared with every request's [`Sender`].
    principal: Arc<Principal>,
    /// When its token stops verifying (Unix ms): the session ends then.
    until_ms: u64,
}

#[derive(Debug)]
struct Resuming {
    identity: Identity,
    /// What the session keeps of its address ([`Principal::addr`]).
    addr: Option<std::net::IpAddr>,
    /// When its token stops verifying (Unix ms).
    until_ms: u64,
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

/// An admin's `ListConversations` waiting for every shard's part.
#[derive(Debug)]
struct Listing {
    /// Shards that have not answered yet.
    waiting: usize,
    /// Most conversations on the page.
    limit: usize,
    /// What the shards answered so far.
    items: Vec<messages::ConversationInfo>,
    /// Some shard had more than its part.
    more: bool,
}

/// Most conversations in one `ConversationList` (a larger `limit` is cut to this).
pub(crate) const MAX_LIST: usize = 1000;

/// Most `ListConversations` one connection may have waiting for the shards; more
/// are refused with 429 (each one walks every shard's conversations).
pub(crate) const MAX_LISTINGS_PER_CONN: usize = 4;

/// The sessions one worker owns.
#[derive(Debug)]
pub(crate) struct Sessions {
    settings: SharedSettings,
    sessions: ServerMap<ConnId, State>,
    /// `ListConversations` requests waiting for the shards, by (connection, request id).
    listings: ServerMap<(ConnId, u32), Listing>,
    /// (end, connection) of every `Resuming` and `Established` session, soonest
    /// first: exactly one live entry each, moved by a `Refresh`, stale when it ends.
    deadlines: Deadlines,
    /// Worker index in the top bits, a counter below: unique per daemon run.
    next_session: u64,
    /// This worker's index (where shards send resume answers).
    worker: usize,
    /// [`SessionSettings::max_record`] (restart-only: read once).
    max_record: Option<usize>,
}

/// Whether `at` is still `conn`'s deadline (its entry in `deadlines` is live).
fn holds(sessions: &ServerMap<ConnId, State>, at: u64, conn: ConnId) -> bool {
    match sessions.get(&conn) {
        Some(State::Resuming(r)) => r.until_ms == at,
        Some(State::Established(live)) => live.until_ms == at,
        _ => false,
    }
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
            listings: ServerMap::default(),
            deadlines: Deadlines::default(),
            next_session: (worker as u64) << 48,
            worker,
            max_record,
        }
    }

    /// When the first session's token stops verifying (Unix ms): call
    /// [`Sessions::tick`] then.
    pub fn next_deadline(&self) -> Option<UnixMs> {
        self.deadlines.first().map(UnixMs)
    }

    /// Ends every session whose token stopped verifying by `now` (Unix ms): `Error`
    /// 201 `token_expired` (request id 0) and close.
    pub fn tick(&mut self, now: UnixMs, out: &mut Out, stats: &WorkerMetrics) {
        let now = now.get();
        while let Some(conn) = self
            .deadlines
            .pop_due(now, |at, c| holds(&self.sessions, at, c))
        {
            self.expire(conn, false, out, stats);
        }
    }

    /// Ends `conn`'s session because its token expired (`listed`: its deadline
    /// entry is still in `deadlines`).
    fn expire(&mut self, conn: ConnId, listed: bool, out: &mut Out, stats: &WorkerMetrics) {
        if let Some(State::Established(Live { principal, .. })) = self.sessions.get(&conn) {
            tracing::debug!(user = %principal.who.user, "session ended: its token expired");
        }
        stats.sessions_expired.inc();
        stats.errors_sent.inc();
        out.push(Effect::Reactor(error_command(
            conn,
            ErrorCode::TokenExpired,
            0,
            0,
        )));
        self.end(conn, listed);
    }

    /// The server is closing `conn`: drop its deadline (`listed`: its entry is still
    /// in `deadlines`), ignore what still arrives.
    fn end(&mut self, conn: ConnId, listed: bool) {
        let Some(state) = self.sessions.get_mut(&conn) else {
            return;
        };
        let (connected, until) = match state {
            State::AwaitingHello(_) => (false, None),
            State::Resuming(r) => (false, Some(r.until_ms)),
            State::Established(live) => (true, Some(live.until_ms)),
            State::Ending { .. } => return,
        };
        *state = State::Ending { connected };
        if let Some(at) = until.filter(|_| listed) {
            self.deadlines
                .remove(at, conn, |at, c| holds(&self.sessions, at, c));
        }
    }

    /// A shard answered some of a resuming session's cursors; once all have, the
    /// session is established: `Welcome`, then the replayed events, then live traffic.
    pub fn resumed(
        &mut self,
        conn: ConnId,
        answers: Vec<ResumeAnswer>,
        now: UnixMs,
        out: &mut Out,
        stats: &WorkerMetrics,
    ) {
        let now = now.get();
        let Some(State::Resuming(r)) = self.sessions.get_mut(&conn) else {
            return;
        };
        r.answers.extend(answers);
        r.waiting = r.waiting.saturating_sub(1);
        if r.waiting > 0 {
            return;
        }
        if now >= r.until_ms {
            // The token expired while the shards looked up the cursors.
            self.expire(conn, true, out, stats);
            return;
        }
        let Some(State::Resuming(r)) = self.sessions.remove(&conn) else {
            return;
        };
        let Resuming {
            identity,
            addr,
            until_ms,
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
        let welcome = Welcome {
            rid,
            resumed,
            replay: frames,
            now,
        };
        self.establish(conn, identity, addr, until_ms, welcome, out);
    }

    /// A shard's part of a `ListConversations`; once every shard has answered, the
    /// page goes out: the lowest ids of all parts, at most `limit`.
    pub fn listed(
        &mut self,
        conn: ConnId,
        rid: u32,
        items: Vec<messages::ConversationInfo>,
        more: bool,
        out: &mut Out,
    ) {
        let Some(l) = self.listings.get_mut(&(conn, rid)) else {
            return;
        };
        l.items.extend(items);
        l.more |= more;
        l.waiting = l.waiting.saturating_sub(1);
        if l.waiting > 0 {
            return;
        }
        let Some(mut l) = self.listings.remove(&(conn, rid)) else {
            return;
        };
        l.items.sort_unstable_by_key(|i| i.conversation);
        let mut more = l.more || l.items.len() > l.limit;
        l.items.truncate(l.limit);
        // The page stays within `max_frame` like a `HistoryPage`: what does not fit
        // comes with the next one (an item is its 72-byte struct and its strings).
        let mut budget = (current(&self.settings).max_frame as usize).saturating_sub(64);
        let fits = l
            .items
            .iter()
            .take_while(|i| {
                let cost =
                    80 + i.group.len() + i.visitor.len() + i.visitor_name.len() + i.agent.len();
                let ok = cost <= budget;
                budget = budget.saturating_sub(cost);
                ok
            })
            .count();
        if fits < l.items.len() {
            l.items.truncate(fits.max(1));
            more = true;
        }
        let next_after = l.items.last().map_or(0, |i| i.conversation);
        let page = Msg::from(messages::ConversationList {
            more,
            next_after,
            items: l.items,
        });
        if self.sessions.contains_key(&conn) {
            out.push(Effect::Reactor(Command::Send {
                conn,
                frame: page.to_frame(rid),
            }));
        }
    }

    /// An admin's `ListConversations`: every shard is asked for its part (the
    /// conversations of the admin's tenant matching the filter, lowest ids first, at
    /// most `limit` each).
    fn list(&mut self, from: Sender, q: messages::ListConversations, out: &mut Out) {
        if from.role != messages::role::ADMIN {
            out.push(Effect::Reactor(error_command(
                from.conn,
                ErrorCode::Forbidden,
                0,
                from.rid,
            )));
            return;
        }
        let waiting = self
            .listings
            .keys()
            .filter(|(c, _)| *c == from.conn)
            .count();
        if waiting >= MAX_LISTINGS_PER_CONN && !self.listings.contains_key(&(from.conn, from.rid)) {
            tracing::debug!(conn = ?from.conn, "too many ListConversations waiting");
            out.push(Effect::Reactor(error_command(
                from.conn,
                ErrorCode::RateLimited,
                0,
                from.rid,
            )));
            return;
        }
        let limit = usize::from(q.limit).clamp(1, MAX_LIST);
        let shards = current(&self.settings).shards.max(1);
        // A new request with the same id replaces a waiting one (a broken client).
        self.listings.insert(
            (from.conn, from.rid),
            Listing {
                waiting: shards,
                limit,
                items: Vec::new(),
                more: false,
            },
        );
        out.push(Effect::AllShards(ShardControl::List {
            worker: self.worker,
            conn: from.conn,
            rid: from.rid,
            tenant: from.who.tenant.clone(),
            limit,
            query: Arc::new(q),
        }));
    }

    /// Sends `Welcome` (and any replay), tells the reactor and the router. The
    /// session's deadline entry (`until_ms`) is in place already.
    fn establish(
        &mut self,
        conn: ConnId,
        identity: Identity,
        addr: Option<std::net::IpAddr>,
        until_ms: u64,
        w: Welcome,
        out: &mut Out,
    ) {
        let Welcome {
            rid,
            resumed,
            replay,
            now,
        } = w;
        self.next_session += 1;
        let welcome = welcome(
            &current(&self.settings),
            self.next_session,
            &identity,
            resumed,
            now,
        );
        out.push(Effect::Reactor(Command::Send {
            conn,
            frame: welcome.to_frame(rid),
        }));
        for frame in replay {
            out.push(Effect::Reactor(Command::Send { conn, frame }));
        }
        out.push(Effect::Reactor(Command::Established { conn }));
        let capacity = identity.max_concurrent;
        // One principal for the session, its requests and the router's directory.
        let name = DisplayName::of(identity.name, &identity.user);
        let principal = Arc::new(Principal {
            who: UserRef {
                tenant: identity.tenant,
                user: identity.user,
            },
            name,
            role: identity.role,
            groups: identity.groups.into_boxed_slice(),
            addr,
        });
        out.push(Effect::Router(RouterMsg::Connected {
            conn,
            principal: Arc::clone(&principal),
            capacity,
        }));
        self.sessions.insert(
            conn,
            State::Established(Live {
                principal,
                until_ms,
            }),
        );
    }

    /// Applies one event at `now` (Unix ms), appending the resulting commands to
    /// `out`.
    pub fn handle(&mut self, event: Event, now: UnixMs, out: &mut Out, stats: &WorkerMetrics) {
        let now = now.get();
        match event {
            Event::Opened { conn, peer } => {
                self.sessions.insert(conn, State::AwaitingHello(peer.ip()));
            }
            Event::Closed { conn, .. } => {
                self.listings.retain(|(c, _), _| *c != conn);
                let (connected, until) = match self.sessions.remove(&conn) {
                    Some(State::Established(live)) => (true, Some(live.until_ms)),
                    Some(State::Resuming(r)) => (false, Some(r.until_ms)),
                    Some(State::Ending { connected }) => (connected, None),
                    Some(State::AwaitingHello(_)) | None => (false, None),
                };
                if let Some(at) = until {
                    self.deadlines
                        .remove(at, conn, |at, c| holds(&self.sessions, at, c));
                }
                if connected {
                    out.push(Effect::Router(RouterMsg::Disconnected { conn }));
                }
            }
            Event::Frame {
                conn,
                header,
                payload,
            } => {
                if let Err(code) = self.frame(conn, header, payload, now, out, stats) {
                    stats.errors_sent.inc();
                    out.push(Effect::Reactor(error_command(
                        conn,
                        code,
                        0,
                        header.request_id,
                    )));
                    if code.closes_connection() {
                        self.end(conn, true);
                    }
                }
            }
            Event::Api { conn, call } => self.api(conn, *call, now, out),
            Event::Barrier(_) => {}
        }
    }

    /// An HTTP API request: its credential is checked (an API key with the scope the
    /// call needs, or an admin JWT; for attachments also any user's own JWT), then
    /// the call goes where a session's request would, as the key's tenant-wide admin
    /// principal (or the token's user). Every refusal is an `Error`
    /// with the call's request id; the connection stays open (keep-alive).
    fn api(&mut self, conn: ConnId, call: crate::api::ApiCall, now: u64, out: &mut Out) {
        use crate::api::keys::{Credential, credential};
        use crate::api::route::{Acting, Op};
        let crate::api::ApiCall {
            rid,
            authorization,
            call,
        } = call;
        let refuse = |out: &mut Out, code: ErrorCode, message: String| {
            let frame = Msg::from(messages::Error {
                code: code.as_u16(),
                retryable: code.retryable(),
                conversation: 0,
                message,
            })
            .to_frame(rid);
            out.push(Effect::Reactor(Command::Send { conn, frame }));
        };
        let settings = current(&self.settings);
        let principal = match credential(authorization.as_deref()) {
            Err(e) => return refuse(out, ErrorCode::TokenInvalid, e.to_string()),
            Ok(Credential::Key { id, secret }) => match settings.api_keys.check(id, secret) {
                Err(e) => {
                    tracing::debug!(key = id, "API request with a bad key");
                    return refuse(out, ErrorCode::TokenInvalid, e.to_string());
                }
                Ok(key) if !key.scopes.grants(call.scope) => {
                    let why = format!("API key {:?} lacks the scope {}", key.id, call.scope.name());
                    return refuse(out, ErrorCode::Forbidden, why);
                }
                Ok(key) => Principal {
                    who: UserRef {
                        tenant: key.tenant.clone(),
                        user: format!("api:{}", key.id),
                    },
                    name: format!("API key {}", key.id).into(),
                    role: messages::role::ADMIN,
                    groups: Box::default(),
                    addr: None,
                },
            },
            Ok(Credential::Jwt(token)) => {
                let verified = match settings.verifier.verify_token(token, unix_time(now)) {
                    Ok(v) => v,
                    Err(e) => return refuse(out, e.code(), e.to_string()),
                };
                let id = verified.identity;
                // Attachments also take the session's own token: the user acts as
                // itself, and the shard checks it is a party of the conversation.
                let files = matches!(call.op, Op::Upload { .. } | Op::Download { .. });
                // An agent reads a conversation it serves (the console's context
                // card): the shard checks that.
                let card = matches!(call.op, Op::Conversation { .. })
                    && crate::service::is_staff_role(id.role);
                if id.role != messages::role::ADMIN && !files && !card {
                    let why = "the HTTP API takes API keys or admin tokens".to_owned();
                    return refuse(out, ErrorCode::Forbidden, why);
                }
                Principal {
                    who: UserRef {
                        tenant: id.tenant,
                        user: id.user,
                    },
                    name: id.name.into(),
                    role: id.role,
                    groups: id.groups.into_boxed_slice(),
                    addr: None,
                }
            }
        };
        let principal = match call.acting {
            // An API key or an admin uploads as the gateway (it may write into any
            // conversation of its tenant); a session's user as itself.
            Acting::Admin
                if matches!(call.op, Op::Upload { .. })
                    && principal.role == messages::role::ADMIN =>
            {
                Principal {
                    role: messages::role::SYSTEM,
                    ..principal
                }
            }
            Acting::Admin => principal,
            Acting::System => Principal {
                role: messages::role::SYSTEM,
                ..principal
            },
            Acting::Visitor { user, name } => Principal {
                who: UserRef {
                    tenant: principal.who.tenant,
                    user,
                },
                name: name.into(),
                role: messages::role::VISITOR,
                groups: Box::default(),
                addr: None,
            },
            Acting::Staff { role, user } => Principal {
                who: UserRef {
                    tenant: principal.who.tenant,
                    user,
                },
                name: DisplayName::from(""),
                role,
                groups: Box::default(),
                addr: None,
            },
        };
        let from = Sender {
            id: Arc::new(principal),
            conn,
            rid,
        };
        let msg = match call.op {
            Op::Assign {
                conversation,
                agent,
            } => {
                out.push(Effect::Router(RouterMsg::Assign {
                    from,
                    conversation,
                    agent,
                }));
                out.push(Effect::Router(RouterMsg::Ack {
                    conversation,
                    conn,
                    rid,
                }));
                return;
            }
            Op::Agents { group } => {
                out.push(Effect::Router(RouterMsg::Agents { from, group }));
                return;
            }
            Op::Upload {
                conversation,
                name,
                media_type,
                bytes,
                client_msg_id,
            } => {
                let client_msg_id = if call.fresh_id {
                    self.next_session += 1;
                    let seed = format!("{now}:{}:{}", self.worker, self.next_session);
                    crate::api::route::idempotency_id(&seed)
                } else {
                    client_msg_id
                };
                let upload = Box::new(crate::files::Upload {
                    conversation,
                    name,
                    media_type,
                    bytes,
                    client_msg_id,
                });
                out.push(Effect::Shard(ShardMsg::Upload { from, upload }));
                return;
            }
            Op::Download { conversation, id } => {
                out.push(Effect::Shard(ShardMsg::Download {
                    from,
                    conversation,
                    id,
                }));
                return;
            }
            Op::Conversation { conversation } => {
                out.push(Effect::Shard(ShardMsg::Info { from, conversation }));
                return;
            }
            Op::Protocol(msg) => msg,
        };
        let msg = match msg {
            Msg::ListConversations(q) => return self.list(from, q, out),
            // Without an Idempotency-Key: an id no earlier message of this sender
            // can have (the time, this worker, a counter), so it is never a resend.
            Msg::Send(s) if call.fresh_id => {
                self.next_session += 1;
                let seed = format!("{now}:{}:{}", self.worker, self.next_session);
                Msg::from(messages::Send {
                    client_msg_id: crate::api::route::idempotency_id(&seed),
                    ..s
                })
            }
            Msg::Notice(n) => Msg::from(messages::Notice { time_ms: now, ..n }),
            msg => msg,
        };
        // Requests with no reply of their own are answered once the owner handled
        // them: an acknowledgement queued right behind them, to the same owner.
        let acked = matches!(msg, Msg::Close(_) | Msg::Notice(_) | Msg::Transfer(_));
        let conversation = crate::service::request_conversation(&msg);
        match route(from, msg) {
            Ok(effect) => {
                let ack = match &effect {
                    Effect::Router(_) => Effect::Router(RouterMsg::Ack {
                        conversation,
                        conn,
                        rid,
                    }),
                    _ => Effect::Shard(ShardMsg::Ack {
                        conversation,
                        conn,
                        rid,
                    }),
                };
                out.push(effect);
                if acked {
                    out.push(ack);
                }
            }
            Err(code) => refuse(out, code, String::new()),
        }
    }

    fn frame(
        &mut self,
        conn: ConnId,
        header: FrameHeader,
        payload: Bytes,
        now: u64,
        out: &mut Out,
        stats: &WorkerMetrics,
    ) -> Result<(), ErrorCode> {
        let rid = header.request_id;
        let Some(state) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        let until = match &*state {
            State::Resuming(r) => Some(r.until_ms),
            State::Established(live) => Some(live.until_ms),
            // Closing: what still arrives is not acted on.
            State::Ending { .. } => return Ok(()),
            State::AwaitingHello(_) => None,
        };
        if until.is_some_and(|until| now >= until) {
            // Its token expired before the worker's timer caught it.
            self.expire(conn, true, out, stats);
            return Ok(());
        }
        let kind = Kind::from_u8(header.kind);
        match (&mut *state, kind) {
            (State::Ending { .. }, _) => Ok(()),
            (State::AwaitingHello(peer), Some(Kind::Hello)) => {
                let peer = *peer;
                let Ok(Msg::Hello(hello)) = Msg::decode(header.kind, &payload) else {
                    return Err(ErrorCode::MalformedPayload);
                };
                if hello.protocol != PROTOCOL_VERSION {
                    return Err(ErrorCode::UnsupportedProtocol);
                }
                let settings = current(&self.settings);
                let verified = settings
                    .verifier
                    .verify_token(&hello.token, unix_time(now))
                    .map_err(|e| e.code())?;
                let (identity, until_ms) = (verified.identity, verified.valid_until_ms);
                // Only a visitor's address is kept, and only as much as configured.
                let addr = (identity.role == messages::role::VISITOR)
                    .then(|| settings.visitor_address.keep(peer))
                    .flatten();
                self.deadlines.insert(until_ms, conn);
                if hello.resume.is_empty() {
                    let welcome = Welcome {
                        rid,
                        resumed: Vec::new(),
                        replay: Vec::new(),
                        now,
                    };
                    self.establish(conn, identity, addr, until_ms, welcome, out);
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
                    out.push(Effect::Shard(ShardMsg::Resume(Resume {
                        conn,
                        who: who.clone(),
                        worker: self.worker,
                        cursors,
                        max_replay: settings.max_replay,
                    })));
                }
                *state = State::Resuming(Box::new(Resuming {
                    identity,
                    addr,
                    until_ms,
                    rid,
                    cursors: hello.resume,
                    waiting,
                    answers: Vec::new(),
                }));
                Ok(())
            }
            // The first frame must be Hello, whatever else it is; Hello comes once; a
            // resuming client waits for its Welcome.
            (State::AwaitingHello(_) | State::Resuming(_), _)
            | (State::Established(_), Some(Kind::Hello)) => Err(ErrorCode::UnexpectedKind),
            (State::Established(_), Some(Kind::Ping)) => {
                // Empty, or a valid archived Ping: echoed byte for byte.
                if !payload.is_empty() && Msg::decode(header.kind, &payload).is_err() {
                    return Err(ErrorCode::MalformedPayload);
                }
                let frame = frame::encode(FrameHeader::new(Kind::Pong.as_u8(), 0, rid), &payload);
                out.push(Effect::Reactor(Command::Send { conn, frame }));
                Ok(())
            }
            (State::Established(_), Some(Kind::Pong)) => Ok(()),
            (State::Established(live), Some(Kind::Refresh)) => {
                let token = match Msg::decode(header.kind, &payload) {
                    Ok(Msg::Refresh(r)) => r.token,
                    Err(DecodeError::Bound { .. }) => return Err(ErrorCode::BadRequest),
                    _ => return Err(ErrorCode::MalformedPayload),
                };
                let settings = current(&self.settings);
                let p = &live.principal;
                let verified = settings
                    .verifier
                    .verify_token(&token, unix_time(now))
                    .map_err(|e| e.code())
                    .and_then(|v| {
                        let id = &v.identity;
                        // A session is one user's: a token for anyone else is refused.
                        let same =
                            id.user == p.who.user && id.tenant == p.who.tenant && id.role == p.role;
                        if same {
                            Ok(v)
                        } else {
                            Err(ErrorCode::BadClaims)
                        }
                    })
                    .inspect_err(|code| {
                        tracing::debug!(user = %p.who.user, code = code.name(), "Refresh refused");
                    })?;
                // The latest token rules, also when it expires sooner than the last.
                if live.until_ms != verified.valid_until_ms {
                    let old = live.until_ms;
                    live.until_ms = verified.valid_until_ms;
                    self.deadlines.insert(live.until_ms, conn);
                    self.deadlines
                        .remove(old, conn, |at, c| holds(&self.sessions, at, c));
                }
                stats.sessions_refreshed.inc();
                let reply = Msg::from(messages::Refreshed {
                    expires_ms: verified.exp_ms,
                });
                out.push(Effect::Reactor(Command::Send {
                    conn,
                    frame: reply.to_frame(rid),
                }));
                Ok(())
            }
            (State::Established(_), Some(Kind::Bye)) => {
                out.push(Effect::Reactor(Command::ClientBye { conn }));
                Ok(())
            }
            (State::Established(Live { principal: id, .. }), Some(kind)) if kind.is_request() => {
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
                match msg {
                    Msg::ListConversations(q) => self.list(from, q, out),
                    // The router reads no clock: a notice gets its time here.
                    Msg::Notice(notice) => {
                        let notice = messages::Notice {
                            time_ms: now,
                            ..notice
                        };
                        out.push(route(from, notice.into())?);
                    }
                    msg => out.push(route(from, msg)?),
                }
                Ok(())
            }
            // Unknown kinds, and kinds a client does not send.
            (State::Established(_), _) => Err(ErrorCode::UnknownKind),
        }
    }
}

impl Sessions {
    /// Measurement only (`service::session_memory`): drops this worker's state piece
    /// by piece and names the heap bytes each piece held (`live`: the allocator's
    /// live bytes).
    pub(crate) fn dismantle(self, live: &dyn Fn() -> i64) -> Vec<(String, i64)> {
        use super::session_memory::{freed, table_bytes};
        let Sessions {
            sessions,
            listings,
            deadlines,
            settings,
            ..
        } = self;
        let table = table_bytes::<(ConnId, State)>(sessions.capacity());
        let mut parts = vec![
            (
                format!(
                    "worker: deadlines BinaryHeap<(u64, ConnId)>, {} B an entry",
                    std::mem::size_of::<(u64, ConnId)>()
                ),
                freed(deadlines, live),
            ),
            ("worker: listings map".to_owned(), freed(listings, live)),
        ];
        let all = freed(sessions, live);
        parts.push((
            format!(
                "worker: sessions map ConnId -> State, {} B a bucket + 1 control byte",
                std::mem::size_of::<(ConnId, State)>()
            ),
            table,
        ));
        // The principals are shared with the router (counted where the last goes).
        parts.push(("worker: its own beyond the table".to_owned(), all - table));
        drop(settings);
        parts
    }
}

/// Where a decoded request goes: the router for opening, claiming, presence and
/// notices, the conversation's shard for everything else.
fn route(from: Sender, msg: Msg) -> Result<Effect, ErrorCode> {
    use messages::{Claim, Disconnect, Presence, Watch};
    let to_router = match msg {
        Msg::Send(send) if send.conversation == 0 => RouterMsg::Open { from, send },
        Msg::Claim(Claim { conversation }) => RouterMsg::Claim { from, conversation },
        Msg::Presence(Presence { status, .. }) => RouterMsg::Presence { from, status },
        Msg::Notice(notice) => RouterMsg::Notice { from, notice },
        Msg::Watch(Watch { group }) => RouterMsg::Watch { from, group },
        Msg::Disconnect(Disconnect { user, reason }) => {
            RouterMsg::Disconnect { from, user, reason }
        }
        msg if crate::service::request_conversation(&msg) == 0 => {
            return Err(ErrorCode::BadRequest);
        }
        msg => return Ok(Effect::Shard(ShardMsg::Request { from, msg })),
    };
    Ok(Effect::Router(to_router))
}

/// What a `Welcome` answers and carries besides the identity.
struct Welcome {
    /// The `Hello`'s request id.
    rid: u32,
    resumed: Vec<Resumed>,
    /// Replayed frames, sent right after the `Welcome`.
    replay: Vec<Bytes>,
    /// Unix ms (`Welcome.server_time_ms`).
    now: u64,
}

/// `now` (Unix ms) as the clock value token checks take.
fn unix_time(now: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(now)
}

/// The `Welcome` for a verified identity.
fn welcome(
    s: &SessionSettings,
    session: u64,
    id: &Identity,
    resumed: Vec<Resumed>,
    now: u64,
) -> Msg {
    messages::Welcome {
        protocol: PROTOCOL_VERSION,
        role: id.role,
        heartbeat_ms: s.heartbeat_ms,
        idle_timeout_ms: s.idle_timeout_ms,
        max_frame: s.max_frame,
        session,
        server_time_ms: now,
        user: id.user.clone(),
        name: id.name.clone(),
        tenant: id.tenant.clone(),
        groups: id.groups.clone(),
        resumed,
    }
    .into()
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
