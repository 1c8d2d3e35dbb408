//! The SDK: a blocking client over `std::net` for the Switchboard protocol
//! (`proto-spec/FRAMING.md`, `proto-spec/PROTOCOL.md`).
//!
//! [`Client::connect`] opens a TCP connection (`TCP_NODELAY`), sends `Hello` (token,
//! client name, resume cursors) and waits for `Welcome`. After that:
//!
//! - [`Client::request`] sends a message and waits for the reply carrying its request
//!   id; whatever else arrives meanwhile is queued for [`Client::recv`];
//! - [`Client::post`] and [`Client::send_text`] send without waiting;
//! - [`Client::recv`] hands out the next message from the server.
//!
//! The client has no thread of its own: heartbeats happen inside those calls, so an
//! application keeps calling [`Client::recv`] (the protocol requires clients to keep
//! reading anyway). While it reads, the client answers the server's `Ping`s, sends a
//! `Ping` when it has sent nothing for `Welcome.heartbeat_ms`, swallows the `Pong`s to
//! its own heartbeats, gives the connection up as dead when nothing arrives for
//! `heartbeat_ms + idle_timeout_ms` after a heartbeat, tracks the last sequence number
//! handed out per conversation (`Deliver`, `Assigned`, `Close`) and drops events it
//! has already handed out, as replays after a reconnect may repeat them.
//! [`Client::reconnect`] resumes from those cursors.
//!
//! A session lasts as long as its token: at the token's `exp` the server ends it with
//! `Error` 201 `token_expired`. To stay connected, get a fresh token from your back
//! end before then and hand it to [`Client::refresh`], which also keeps it for the next
//! reconnect; or reconnect with a fresh one ([`Client::set_token`]).
//!
//! Every call that waits takes a timeout or uses one from [`ClientConfig`]; nothing
//! the server sends can make the client panic or grow a buffer past
//! [`ClientConfig::max_frame_bytes`].
//!
//! ```no_run
//! use std::time::Duration;
//! use switchboard::client::{Client, ClientConfig};
//! use switchboard::protocol::Msg;
//!
//! # fn main() -> Result<(), switchboard::client::ClientError> {
//! let mut client = Client::connect(ClientConfig::new("127.0.0.1:7700", "<jwt>"))?;
//! let rtt = client.ping(Duration::from_secs(5))?;
//! client.send_text(0, "Hello, I need help with my order")?;
//! while let Some(incoming) = client.recv(Duration::from_secs(30))? {
//!     if let Msg::Deliver(d) = incoming.msg {
//!         println!("{}: {} ({rtt:?})", d.sender, d.body);
//!     }
//! }
//! client.close()
//! # }
//! ```

mod config;
mod connection;
mod cursors;
mod error;
mod incoming;
mod liveness;
#[cfg(test)]
mod tests;
mod tls;

use std::collections::{BTreeSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use config::{ClientConfig, ClientTls, MIN_HEARTBEAT, ReconnectPolicy};
#[doc(hidden)]
pub use connection::read_within;
pub use error::ClientError;
pub use incoming::Incoming;
pub use tls::client_config as tls_client_config;

use connection::{Connection, RawFrame};
use cursors::Cursors;
use liveness::{Liveness, Step};

use crate::frame::{self, FrameHeader};
use crate::protocol::Kind;
use crate::protocol::messages::{self, Cursor, Msg, PROTOCOL_VERSION};

/// Most request ids remembered as awaiting a reply (oldest forgotten first).
const MAX_PENDING: usize = 1024;
/// Most heartbeat `Ping`s remembered as awaiting their `Pong`.
const MAX_HEARTBEATS: usize = 8;

/// A blocking connection to a Switchboard server. See the [module docs](self).
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    conn: Connection,
    welcome: messages::Welcome,
    /// Heartbeat and dead-connection deadlines (send something at least every
    /// `live.heartbeat`).
    live: Liveness,
    /// Last request id used (ids are never 0).
    request_id: u32,
    /// Last `Send.client_msg_id` used.
    client_msg_id: u64,
    cursors: Cursors,
    /// Messages received while a [`request`](Self::request) waited, for `recv`.
    inbox: VecDeque<Incoming>,
    /// Request ids of heartbeat pings whose `Pong` is swallowed.
    heartbeats: VecDeque<u32>,
    /// Request ids posted and not answered yet.
    pending: BTreeSet<u32>,
    /// Set once a `Bye` or closing `Error` arrived: nothing more is sent, and what
    /// follows is ignored until end-of-stream.
    ending: bool,
}

impl Client {
    /// Connects and performs the handshake: `Hello` with the config's token, client
    /// name and resume cursors, answered by `Welcome` within
    /// [`ClientConfig::handshake_timeout`]. An `Error` (e.g. 200 `token_invalid`) or
    /// `Bye` in its place is [`ClientError::Server`].
    pub fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let cursors = Cursors::from_list(&config.resume);
        let first_request_id = 1;
        let (conn, welcome) = handshake(&config, cursors.for_hello(), first_request_id)?;
        let mut client = Client {
            live: Liveness::default(),
            conn,
            welcome: messages::Welcome::default(),
            request_id: first_request_id,
            client_msg_id: unix_micros(),
            cursors,
            inbox: VecDeque::new(),
            heartbeats: VecDeque::new(),
            pending: BTreeSet::new(),
            ending: false,
            config,
        };
        client.install_welcome(welcome);
        Ok(client)
    }

    /// The server's `Welcome` on the current connection. An older server that sends an
    /// empty `Welcome` (FRAMING.md version 1) yields `Welcome::default()`.
    pub fn welcome(&self) -> &messages::Welcome {
        &self.welcome
    }

    /// The heartbeat interval in use: `Welcome.heartbeat_ms`, or
    /// [`ClientConfig::heartbeat`] when the server sent 0, never below
    /// [`MIN_HEARTBEAT`].
    pub fn heartbeat(&self) -> Duration {
        self.live.heartbeat
    }

    /// Replaces the token used by the next [`reconnect`](Self::reconnect) (tokens
    /// expire; 201 `token_expired` asks for a fresh one). The current session keeps
    /// its token: [`refresh`](Self::refresh) replaces that one.
    pub fn set_token(&mut self, token: impl Into<String>) {
        self.config.token = token.into();
    }

    /// Hands the server a fresh `token` for this session (`Refresh`, PROTOCOL.md
    /// section 4.6a) and waits up to `timeout` for its `Refreshed`: the session then
    /// ends at the new token's `exp` instead of the old one's. Returns that `exp` in
    /// milliseconds since the Unix epoch. The token must be for the same user, tenant
    /// and role; once accepted it is also the one the next
    /// [`reconnect`](Self::reconnect) presents.
    ///
    /// A token the server refuses is [`ClientError::Server`] with the code the
    /// handshake would give (200–203), and the server closes the connection; a token
    /// over `MAX_TOKEN` bytes is [`ClientError::Invalid`] and not sent.
    pub fn refresh(
        &mut self,
        token: impl Into<String>,
        timeout: Duration,
    ) -> Result<u64, ClientError> {
        let token = token.into();
        let request_id = self.post(messages::Refresh {
            token: token.clone(),
        })?;
        match self.wait_reply(request_id, timeout)? {
            Msg::Refreshed(r) => {
                self.config.token = token;
                Ok(r.expires_ms)
            }
            other => Err(ClientError::UnexpectedReply {
                request_id,
                got: other.kind(),
            }),
        }
    }

    /// Posts a text message to `conversation` (0 opens a conversation, for visitors)
    /// without waiting, and returns its `client_msg_id`; the server's `Accepted`
    /// (carrying that id) or `Error` arrives through [`recv`](Self::recv). The ids
    /// count up from the current time in microseconds, so they stay unique across
    /// restarts; a resend of a `Send` with the same id (through
    /// [`post`](Self::post)) is stored once.
    pub fn send_text(&mut self, conversation: u64, body: &str) -> Result<u64, ClientError> {
        self.client_msg_id = self.client_msg_id.wrapping_add(1);
        let client_msg_id = self.client_msg_id;
        self.post(messages::Send {
            content_type: messages::content::TEXT,
            conversation,
            client_msg_id,
            group: String::new(),
            body: body.to_owned(),
        })?;
        Ok(client_msg_id)
    }

    /// Posts a private note (agents and bots; PROTOCOL.md `Note`) to `conversation`
    /// without waiting, and returns its `client_msg_id`, like
    /// [`send_text`](Self::send_text). The conversation's other staff connections get
    /// it as a `Deliver` flagged `PRIVATE`; visitors never see it.
    pub fn note(&mut self, conversation: u64, body: &str) -> Result<u64, ClientError> {
        self.client_msg_id = self.client_msg_id.wrapping_add(1);
        let client_msg_id = self.client_msg_id;
        self.post(messages::Note {
            conversation,
            client_msg_id,
            body: body.to_owned(),
        })?;
        Ok(client_msg_id)
    }

    /// Asks to be told the availability of `group` (empty: the user's own groups)
    /// from now on: `Availability` messages arrive through [`recv`](Self::recv), the
    /// first at once with every group this connection watches. Returns the request
    /// id (an `Error` carrying it means the server refused, e.g. 429 past
    /// `MAX_WATCHED` groups).
    pub fn watch(&mut self, group: &str) -> Result<u32, ClientError> {
        self.post(messages::Watch {
            group: group.to_owned(),
        })
    }

    /// Admins: one page of the tenant's conversations matching `query`, waiting up to
    /// `timeout`. Ask again with `after = page.next_after` while `page.more`.
    pub fn list_conversations(
        &mut self,
        query: messages::ListConversations,
        timeout: Duration,
    ) -> Result<messages::ConversationList, ClientError> {
        let request_id = self.post(query)?;
        match self.wait_reply(request_id, timeout)? {
            Msg::ConversationList(page) => Ok(page),
            other => Err(ClientError::UnexpectedReply {
                request_id,
                got: other.kind(),
            }),
        }
    }

    /// Admins: ends every session of `user` (same tenant), each closed with 206
    /// carrying `reason`; returns how many there were.
    pub fn disconnect_user(
        &mut self,
        user: &str,
        reason: &str,
        timeout: Duration,
    ) -> Result<u32, ClientError> {
        let request_id = self.post(messages::Disconnect {
            user: user.to_owned(),
            reason: reason.to_owned(),
        })?;
        match self.wait_reply(request_id, timeout)? {
            Msg::Disconnected(d) => Ok(d.sessions),
            other => Err(ClientError::UnexpectedReply {
                request_id,
                got: other.kind(),
            }),
        }
    }

    /// Sends `msg` and waits up to `timeout` for the reply carrying its request id.
    /// Messages that arrive meanwhile are queued for [`recv`](Self::recv). An `Error`
    /// reply is [`ClientError::Server`]; so is a `Bye` or closing `Error` that ends
    /// the session while waiting. A reply arriving after the timeout is handed out by
    /// `recv`.
    pub fn request(&mut self, msg: impl Into<Msg>, timeout: Duration) -> Result<Msg, ClientError> {
        let request_id = self.post(msg)?;
        self.wait_reply(request_id, timeout)
    }

    /// Waits for the reply to `request_id` (see [`request`](Self::request)).
    fn wait_reply(&mut self, request_id: u32, timeout: Duration) -> Result<Msg, ClientError> {
        let deadline = deadline_after(timeout);
        loop {
            let Some(incoming) = self.pump(deadline)? else {
                return Err(ClientError::Timeout);
            };
            if incoming.request_id == request_id {
                return match incoming.msg {
                    Msg::Error(e) => Err(ClientError::server(&e, request_id)),
                    Msg::Bye(b) => Err(ClientError::server(&bye_as_error(&b), request_id)),
                    msg => Ok(msg),
                };
            }
            if incoming::ends_session(&incoming.msg) {
                return Err(match incoming.msg {
                    Msg::Error(e) => ClientError::server(&e, incoming.request_id),
                    Msg::Bye(b) => ClientError::server(&bye_as_error(&b), incoming.request_id),
                    _ => ClientError::Closed,
                });
            }
            self.inbox.push_back(incoming);
            if self.inbox.len() >= self.config.max_inbox {
                return Err(ClientError::InboxFull(self.inbox.len()));
            }
        }
    }

    /// Sends `msg` without waiting and returns its request id; the reply (if the
    /// kind has one) arrives through [`recv`](Self::recv) carrying that id. A message
    /// the server would reject as malformed, or larger than `Welcome.max_frame`, is
    /// refused here with [`ClientError::Invalid`] and not sent.
    pub fn post(&mut self, msg: impl Into<Msg>) -> Result<u32, ClientError> {
        let msg = msg.into();
        if self.ending {
            return Err(ClientError::Closed);
        }
        let request_id = self.next_request_id();
        let bytes = checked_frame(&msg, request_id, self.welcome.max_frame)?;
        self.conn.write(&bytes)?;
        if expects_reply(msg.kind()) {
            if self.pending.len() >= MAX_PENDING {
                self.pending.pop_first();
            }
            self.pending.insert(request_id);
        }
        Ok(request_id)
    }

    /// The next message from the server, waiting up to `timeout` (`Ok(None)` when
    /// none came). Meanwhile it answers the server's `Ping`s, sends heartbeat `Ping`s
    /// and drops conversation events already handed out (same conversation, `seq`
    /// not above the last one). A connection silent too long after a heartbeat is
    /// [`ClientError::Unresponsive`]. Once the session has ended
    /// (after end-of-stream, or after the `Bye`/closing `Error` it returned and
    /// whatever followed) it returns [`ClientError::Closed`].
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Incoming>, ClientError> {
        if let Some(incoming) = self.inbox.pop_front() {
            return Ok(Some(incoming));
        }
        self.pump(deadline_after(timeout))
    }

    /// One `Ping` round trip, waiting up to `timeout` for the `Pong`.
    pub fn ping(&mut self, timeout: Duration) -> Result<Duration, ClientError> {
        let start = Instant::now();
        let stamp = unix_micros();
        let request_id = self.post(messages::Ping {
            stamp,
            data: Vec::new(),
        })?;
        match self.wait_reply(request_id, timeout)? {
            Msg::Pong(p) if p.stamp == stamp => Ok(start.elapsed()),
            other => Err(ClientError::UnexpectedReply {
                request_id,
                got: other.kind(),
            }),
        }
    }

    /// The last sequence number delivered per conversation, by conversation id (what
    /// the next `Hello` resumes from; persist it to resume across restarts through
    /// [`ClientConfig::resume`]).
    pub fn cursors(&self) -> Vec<Cursor> {
        self.cursors.all()
    }

    /// Replaces the connection: a new TCP connection and a `Hello` resuming from
    /// [`cursors`](Self::cursors), retried with back-off per
    /// [`ClientConfig::reconnect`] while the failure is retryable. After a `Bye` or
    /// closing `Error` it backs off before the first attempt too. Messages already
    /// received stay queued for [`recv`](Self::recv).
    ///
    /// Returns the request ids posted on the old connection whose replies never
    /// came; they never will. (A `Send` may or may not have been stored: resend it
    /// with the same `client_msg_id`, which the server stores once.)
    pub fn reconnect(&mut self) -> Result<Vec<u32>, ClientError> {
        let lost: Vec<u32> = std::mem::take(&mut self.pending).into_iter().collect();
        let polite = self.ending;
        self.conn.shutdown();
        self.ending = false;
        self.heartbeats.clear();
        let policy = self.config.reconnect;
        let attempts = policy.max_attempts.max(1);
        let mut last = ClientError::Closed;
        for attempt in 0..attempts {
            if attempt > 0 || polite {
                let retry = if polite { attempt } else { attempt - 1 };
                std::thread::sleep(policy.backoff(retry, jitter()));
            }
            let request_id = self.next_request_id();
            match handshake(&self.config, self.cursors.for_hello(), request_id) {
                Ok((conn, welcome)) => {
                    self.conn = conn;
                    self.install_welcome(welcome);
                    return Ok(lost);
                }
                Err(e) if e.is_retryable() => last = e,
                Err(e) => {
                    self.pending.extend(lost);
                    return Err(e);
                }
            }
        }
        self.pending.extend(lost);
        Err(ClientError::ReconnectFailed {
            attempts,
            last: Box::new(last),
        })
    }

    /// Ends the session: sends `Bye`, reads (and discards) until the server's
    /// end-of-stream or [`ClientConfig::close_timeout`], and closes the socket either
    /// way. [`ClientError::Timeout`] if the server did not close in time.
    pub fn close(mut self) -> Result<(), ClientError> {
        if !self.ending && self.conn.is_open() {
            let request_id = self.next_request_id();
            self.conn
                .write(&Msg::from(messages::Bye::default()).to_frame(request_id))?;
        }
        let deadline = deadline_after(self.config.close_timeout);
        loop {
            match self.conn.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) if Instant::now() >= deadline => {
                    self.conn.shutdown();
                    return Err(ClientError::Timeout);
                }
                Ok(None) => self.conn.fill(deadline)?,
                Err(ClientError::Closed) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until a message for the application arrives or `deadline` passes,
    /// doing the connection's chores (heartbeats, pongs, dedupe) on the way.
    fn pump(&mut self, deadline: Instant) -> Result<Option<Incoming>, ClientError> {
        loop {
            if let Some(raw) = self.conn.next_frame()? {
                if let Some(incoming) = self.process(raw)? {
                    return Ok(Some(incoming));
                }
                continue;
            }
            // The clock is read here, in the I/O loop; the deadlines are decided
            // sans-IO (liveness.rs).
            let now = Instant::now();
            let io = (self.conn.last_sent(), self.conn.last_received());
            match self.live.next(now, deadline, io, !self.ending) {
                Step::Done => return Ok(None),
                Step::Dead => {
                    self.conn.shutdown();
                    return Err(ClientError::Unresponsive(self.live.dead_after));
                }
                Step::Heartbeat => self.send_heartbeat(now)?,
                Step::Wait(wake) => self.conn.fill(wake)?,
            }
        }
    }

    /// One frame's chores; `Some` when the application should see it.
    fn process(&mut self, raw: RawFrame) -> Result<Option<Incoming>, ClientError> {
        if self.ending {
            return Ok(None);
        }
        let request_id = raw.header.request_id;
        let Some(msg) = incoming::decode(&raw.header, &raw.payload)? else {
            return Ok(None);
        };
        if request_id != 0 {
            self.pending.remove(&request_id);
        }
        match &msg {
            Msg::Ping(_) => {
                let pong = FrameHeader::new(Kind::Pong.as_u8(), 0, request_id);
                self.conn.write(&frame::encode(pong, &raw.payload))?;
                return Ok(None);
            }
            Msg::Pong(_) => {
                if let Some(i) = self.heartbeats.iter().position(|&r| r == request_id) {
                    self.heartbeats.remove(i);
                    return Ok(None);
                }
            }
            // Conversation events carry a sequence number: each (conversation, seq)
            // is handed out once (PROTOCOL.md 10.2).
            Msg::Deliver(d) if !self.cursors.accept(d.conversation, d.seq) => {
                return Ok(None);
            }
            Msg::Assigned(a) if a.seq != 0 && !self.cursors.accept(a.conversation, a.seq) => {
                return Ok(None);
            }
            Msg::Close(c) if c.seq != 0 && !self.cursors.accept(c.conversation, c.seq) => {
                return Ok(None);
            }
            _ => {}
        }
        self.ending = incoming::ends_session(&msg);
        Ok(Some(Incoming { request_id, msg }))
    }

    /// Sends a heartbeat `Ping` at `now`; its `Pong` is swallowed.
    fn send_heartbeat(&mut self, now: Instant) -> Result<(), ClientError> {
        let request_id = self.next_request_id();
        let ping = Msg::from(messages::Ping {
            stamp: unix_micros(),
            data: Vec::new(),
        });
        self.conn.write(&ping.to_frame(request_id))?;
        if self.heartbeats.len() >= MAX_HEARTBEATS {
            self.heartbeats.pop_front();
        }
        self.heartbeats.push_back(request_id);
        self.live.heartbeat_sent(now);
        Ok(())
    }

    fn install_welcome(&mut self, welcome: messages::Welcome) {
        let announced = Duration::from_millis(u64::from(welcome.heartbeat_ms));
        let heartbeat = if announced.is_zero() {
            self.config.heartbeat
        } else {
            announced
        };
        let heartbeat = heartbeat.max(MIN_HEARTBEAT);
        // PROTOCOL.md 6.4: dead after `heartbeat_ms + idle_timeout_ms` of silence
        // following a Ping; a server that sends no idle timeout gets three intervals.
        let idle = match welcome.idle_timeout_ms {
            0 => heartbeat.saturating_mul(3),
            ms => Duration::from_millis(u64::from(ms)),
        };
        self.live = Liveness::new(heartbeat, heartbeat.saturating_add(idle));
        self.welcome = welcome;
    }

    /// The next request id: counts up, skipping 0 (reserved for unsolicited frames).
    fn next_request_id(&mut self) -> u32 {
        self.request_id = self.request_id.wrapping_add(1).max(1);
        self.request_id
    }
}

/// Connects and runs `Hello`/`Welcome` with `request_id`.
fn handshake(
    config: &ClientConfig,
    resume: Vec<Cursor>,
    request_id: u32,
) -> Result<(Connection, messages::Welcome), ClientError> {
    let hello = Msg::from(messages::Hello {
        protocol: PROTOCOL_VERSION,
        token: config.token.clone(),
        client: config.client_name.clone(),
        resume,
    });
    let bytes = checked_frame(&hello, request_id, 0)?;
    let mut conn = Connection::open(
        &config.addr,
        config.connect_timeout,
        config.write_timeout,
        config.max_frame_bytes,
    )?;
    if let Some(tls) = &config.tls {
        conn.start_tls(&config.addr, tls, deadline_after(config.handshake_timeout))?;
    }
    conn.write(&bytes)?;
    let deadline = deadline_after(config.handshake_timeout);
    let raw = loop {
        if let Some(raw) = conn.next_frame()? {
            break raw;
        }
        if Instant::now() >= deadline {
            conn.shutdown();
            return Err(ClientError::Timeout);
        }
        conn.fill(deadline)?;
    };
    let got = raw.header.request_id;
    let welcome = match incoming::decode(&raw.header, &raw.payload)? {
        Some(Msg::Welcome(w)) if got == request_id => w,
        Some(Msg::Welcome(_)) => {
            return Err(ClientError::Handshake(format!(
                "Welcome for request id {got}, expected {request_id}"
            )));
        }
        Some(Msg::Error(e)) => return Err(ClientError::server(&e, got)),
        Some(Msg::Bye(b)) => return Err(ClientError::server(&bye_as_error(&b), got)),
        Some(other) => {
            return Err(ClientError::Handshake(format!(
                "expected Welcome, got {:?}",
                other.kind()
            )));
        }
        None => {
            return Err(ClientError::Handshake(format!(
                "expected Welcome, got unknown kind {}",
                raw.header.kind
            )));
        }
    };
    if welcome.protocol != PROTOCOL_VERSION && welcome.protocol != 0 {
        return Err(ClientError::Handshake(format!(
            "server speaks protocol {}, this client {PROTOCOL_VERSION}",
            welcome.protocol
        )));
    }
    Ok((conn, welcome))
}

/// Encodes `msg` and checks it the way the server will: its body must decode and
/// meet the protocol's bounds, and fit `max_frame` (0: no limit known).
fn checked_frame(msg: &Msg, request_id: u32, max_frame: u32) -> Result<bytes::Bytes, ClientError> {
    let bytes = msg.to_frame(request_id);
    let invalid = |why: String| ClientError::Invalid(format!("{:?}: {why}", msg.kind()));
    let decoded = frame::decode(&bytes, u32::MAX)
        .map_err(|e| invalid(e.to_string()))?
        .ok_or_else(|| invalid("frame incomplete".to_owned()))?;
    if max_frame != 0 && decoded.header.len > max_frame {
        return Err(invalid(format!(
            "{} bytes exceed the server's limit of {max_frame}",
            decoded.header.len
        )));
    }
    Msg::decode(decoded.header.kind, decoded.payload).map_err(|e| invalid(e.to_string()))?;
    Ok(bytes)
}

/// Whether the server answers this kind (so its request id is worth remembering).
fn expects_reply(kind: Kind) -> bool {
    !matches!(
        kind,
        Kind::Pong | Kind::Bye | Kind::Typing | Kind::Receipt | Kind::Presence | Kind::Watch
    )
}

fn bye_as_error(bye: &messages::Bye) -> messages::Error {
    messages::Error {
        message: bye.message.clone(),
        ..incoming::error_from_status(bye.code)
    }
}

/// `now + timeout`, saturating far in the future instead of overflowing.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A number in `0.0..1.0` that differs between calls and processes (back-off jitter).
fn jitter() -> f64 {
    let bits = RandomState::new().hash_one(unix_micros());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
