//! The customer-service core: conversations, routing, queues, presence and broadcast.
//!
//! Two kinds of sans-IO state machine talk by message (DESIGN.md, rule 3):
//! - the [`router::Router`] (one instance, its own thread) owns agents — presence,
//!   groups, capacity, load —, the per-group FIFO queues, and the directory of which
//!   connections each user holds;
//! - [`conversation::Shard`]s (one per worker, a conversation lives on shard
//!   `id % shards`) own conversations: state, gap-free sequence numbers, the
//!   transcript, idempotency of `Send`, authorization, and delivery to participants.
//!
//! Per-message traffic touches only the conversation's shard: the router pushes each
//! conversation the connection lists of its participants whenever they change, so a
//! shard delivers without asking anyone. The router sees only lifecycle events
//! (connect, open, assign, transfer, close, presence). Every handler appends
//! [`Effect`]s; the threads in `worker` and `server` carry them out. Each message
//! says where it goes by what it carries: a [`ShardMsg`] its conversation, a
//! [`ShardControl`] every shard, a [`SessionReply`] the worker named with it, a
//! `Command` its connection.
//!
//! Also here: the per-connection protocol [`session`] (handshake, decode, route),
//! the per-shard group commit to the journal ([`durable`]), and rebuilding all of it
//! from the journal at start ([`recovery`]) and forgetting old conversations
//! ([`retention`]). The journal is the source of truth: shards apply the same events
//! they write, so replaying them gives back the state.

mod availability;
mod busy;
pub(crate) mod conversation;
pub(crate) mod damage;
mod deadlines;
mod deferred;
pub(crate) mod durable;
mod locs;
mod parked;
pub(crate) mod record;
pub(crate) mod recovery;
pub(crate) mod retention;
pub(crate) mod router;
mod sent;
pub(crate) mod session;
pub(crate) mod session_memory;
pub(crate) mod settings;
#[cfg(test)]
pub(crate) mod sim;
mod transcript;

use std::sync::Arc;

use bytes::Bytes;

use crate::handoff::{Command, ConnId};
use crate::protocol::messages;

/// A user within a tenant: tenants never see each other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct UserRef {
    /// Tenant (empty when the deployment has none).
    pub tenant: String,
    /// User id (the token's `sub`).
    pub user: String,
}

/// Who a session verified. One per established connection, shared by all of its
/// requests: a [`Sender`] costs a reference count, not copies of these strings.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// The user.
    pub who: UserRef,
    /// Display name (read it with [`Principal::display_name`]).
    pub name: DisplayName,
    /// Role code.
    pub role: u8,
    /// Agent groups (boxed: 8 bytes less than a `Vec`, one per session).
    pub groups: Box<[String]>,
    /// A visitor session's network address (the PROXY protocol's client address
    /// behind a trusted proxy) as `routing.visitor_address` keeps it; `None` for
    /// staff, HTTP API callers, and when nothing is kept.
    pub addr: Option<std::net::IpAddr>,
}

/// A principal's display name. A token without a `name` claim (storm's, most
/// visitors') names the user by its id: that is kept once, not copied (16 bytes an
/// idle session, README "Memory per authenticated session").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DisplayName {
    /// The user id.
    User,
    /// A name of its own.
    Own(String),
}

impl DisplayName {
    /// `name` for `user`: [`DisplayName::User`] when they are the same.
    pub(crate) fn of(name: String, user: &str) -> Self {
        if name == user {
            Self::User
        } else {
            Self::Own(name)
        }
    }
}

impl From<String> for DisplayName {
    fn from(name: String) -> Self {
        Self::Own(name)
    }
}

impl From<&str> for DisplayName {
    fn from(name: &str) -> Self {
        Self::Own(name.to_owned())
    }
}

impl Principal {
    /// The display name.
    pub(crate) fn display_name(&self) -> &str {
        match &self.name {
            DisplayName::User => &self.who.user,
            DisplayName::Own(name) => name,
        }
    }
}

/// Equal when they name the same user the same way, however the name is kept.
impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        self.who == other.who
            && self.display_name() == other.display_name()
            && self.role == other.role
            && self.groups == other.groups
            && self.addr == other.addr
    }
}

impl Eq for Principal {}

/// Who sent a request, as the session verified it. Reads as its [`Principal`]
/// (`from.who`, `from.role`, ...) through `Deref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sender {
    /// Who (shared with the session).
    pub id: Arc<Principal>,
    /// The connection the request came on (replies go there).
    pub conn: ConnId,
    /// The request id to answer.
    pub rid: u32,
}

#[cfg(test)]
impl Sender {
    /// A request's sender for tests: `user` (no tenant, display name empty, no
    /// groups) with `role`, asking on `conn` with request id `rid`.
    pub(crate) fn test(user: &str, role: u8, conn: ConnId, rid: u32) -> Self {
        Self {
            id: Arc::new(Principal {
                who: UserRef {
                    tenant: String::new(),
                    user: user.to_owned(),
                },
                name: DisplayName::from(""),
                role,
                groups: Box::default(),
                addr: None,
            }),
            conn,
            rid,
        }
    }
}

impl std::ops::Deref for Sender {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.id
    }
}

/// What a shard can replay of one conversation for a resuming connection.
#[derive(Debug, Clone)]
pub(crate) struct ResumeAnswer {
    /// The cursor's conversation.
    pub conversation: u64,
    /// The cursor's `last_seq`.
    pub from_seq: u64,
    /// Whether `frames` holds every event after `from_seq`.
    pub recovered: bool,
    /// The missed events as frames (`Deliver` with `REPLAY`, `Assigned`, `Close`).
    pub frames: Vec<Bytes>,
}

/// Messages for the router.
#[derive(Debug, Clone)]
pub(crate) enum RouterMsg {
    /// A session completed its handshake.
    Connected {
        /// The connection.
        conn: ConnId,
        /// Who, as the session verified it: the session's own, shared (the router's
        /// directory keeps this reference, not copies of its strings).
        principal: Arc<Principal>,
        /// Concurrent conversations the agent takes (token claim), else the default.
        capacity: Option<u32>,
    },
    /// A session ended.
    Disconnected {
        /// The connection.
        conn: ConnId,
    },
    /// An agent set its presence.
    Presence {
        /// Who asked.
        from: Sender,
        /// `messages::presence` code.
        status: u8,
    },
    /// A `Watch`: send this connection `Availability` from now on.
    Watch {
        /// Who asked.
        from: Sender,
        /// The group (empty: the user's own).
        group: String,
    },
    /// A visitor's `Send` with conversation 0: open (or continue) a conversation.
    Open {
        /// Who asked.
        from: Sender,
        /// The message that opens it.
        send: messages::Send,
    },
    /// An agent claims a queued conversation.
    Claim {
        /// Who asked.
        from: Sender,
        /// The conversation.
        conversation: u64,
    },
    /// A shard authorized a transfer by the assigned agent.
    Transfer {
        /// The conversation.
        conversation: u64,
        /// The group it is in.
        group: String,
        /// The agent giving it up.
        from: UserRef,
        /// Target agent (empty: any agent of `to_group`).
        to_agent: String,
        /// Target group (empty: the conversation's group).
        to_group: String,
        /// Note for the next agent.
        note: String,
    },
    /// A shard closed a conversation.
    Closed {
        /// The conversation.
        conversation: u64,
    },
    /// A shard stored a conversation's opening message: route it now.
    Opened {
        /// The conversation.
        conversation: u64,
    },
    /// A shard stored an offline message (`flags::OFFLINE`) in a queued conversation
    /// that had none: it stays open while its visitor is away, never abandoned.
    Offline {
        /// The conversation.
        conversation: u64,
    },
    /// A shard refused a conversation's opening message (abuse filter): forget it.
    OpenRefused {
        /// The conversation.
        conversation: u64,
    },
    /// A configuration reload changed the routing settings.
    Settings(settings::RouterSettings),
    /// An admin's broadcast.
    Notice {
        /// Who asked.
        from: Sender,
        /// The notice (group empty: everyone in the tenant).
        notice: messages::Notice,
    },
    /// An admin ends every session of a user of its tenant.
    Disconnect {
        /// Who asked.
        from: Sender,
        /// The user.
        user: String,
        /// Told to the user's clients.
        reason: String,
    },
    /// An HTTP API request (`POST .../assign`): assign a queued conversation of the
    /// sender's tenant to a connected agent or bot with room.
    Assign {
        /// Who asked (an API principal).
        from: Sender,
        /// The conversation.
        conversation: u64,
        /// The agent's or bot's user id.
        agent: String,
    },
    /// An HTTP API request (`GET /api/v1/agents`): the tenant's agents and bots
    /// (of `group`, or all), answered as JSON.
    Agents {
        /// Who asked (an API principal).
        from: Sender,
        /// Only this group's (empty: all).
        group: String,
    },
    /// An HTTP API request with no reply of its own was handled (a `Notice` or an
    /// `Assign` here, or a [`ShardMsg::Ack`] passed on). Without a conversation it is
    /// answered with [`api_ack`] at once; with one, it goes on to that conversation's
    /// shard as [`ShardMsg::Answer`], behind whatever the router just told the shard (a
    /// transfer's requeue or new agent, an assignment), so the answer comes only once
    /// the conversation's own state shows the change: a back end that reads right
    /// after the answer sees what it did.
    Ack {
        /// The request's conversation (0: none).
        conversation: u64,
        /// The API connection.
        conn: ConnId,
        /// Its request id.
        rid: u32,
    },
}

/// The router's assignment of a conversation to an agent or bot.
#[derive(Debug, Clone)]
pub(crate) struct Assignment {
    /// The conversation.
    pub conversation: u64,
    /// The agent.
    pub agent: UserRef,
    /// Agent's display name.
    pub agent_name: String,
    /// Agent's connections now.
    pub agent_conns: Vec<ConnId>,
    /// Group it is assigned in.
    pub group: String,
    /// Transfer note for the agent (empty for none).
    pub note: String,
}

/// A visitor's opening message, as the router hands it to the shard of the
/// conversation it opens.
#[derive(Debug, Clone)]
pub(crate) struct Opening {
    /// New conversation id.
    pub conversation: u64,
    /// The visitor.
    pub visitor: UserRef,
    /// Visitor's display name.
    pub visitor_name: String,
    /// Group it is queued in.
    pub group: String,
    /// The visitor's connections now.
    pub visitor_conns: Vec<ConnId>,
    /// The visitor's session that sent the opening message.
    pub opener: Sender,
    /// The opening message (screened by the abuse filter before anything is created).
    pub send: messages::Send,
    /// No agent or bot of the group was online when it was opened: the opening
    /// message is an offline message (`flags::OFFLINE`).
    pub offline: bool,
}

/// A session resuming after a reconnect asks what it missed (cursors of
/// conversations on one shard).
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    /// The new connection.
    pub conn: ConnId,
    /// Who it is.
    pub who: UserRef,
    /// The worker whose session waits for the answer ([`SessionReply::Resumed`]).
    pub worker: usize,
    /// The client's cursors for conversations on this shard.
    pub cursors: Vec<messages::Cursor>,
    /// Most events replayed per conversation.
    pub max_replay: u64,
}

/// Messages for the shard owning one conversation ([`ShardMsg::conversation`]).
#[derive(Debug, Clone)]
pub(crate) enum ShardMsg {
    /// The router opened a conversation: store its opening message (the router
    /// routes it once told [`RouterMsg::Opened`]).
    Open(Box<Opening>),
    /// A request from a session about an existing conversation.
    Request {
        /// Who asked.
        from: Sender,
        /// The request (Send, Receipt, Typing, Transfer, Close, Rate, History).
        msg: messages::Msg,
    },
    /// The router gave the conversation an agent (assignment, claim or transfer).
    Assign(Assignment),
    /// The conversation lost its agent and waits in the queue again.
    Requeued {
        /// The conversation.
        conversation: u64,
        /// Group it waits in.
        group: String,
    },
    /// What a resuming connection missed in the conversations of its cursors (all on
    /// the shard of the first).
    Resume(Resume),
    /// The server closes a conversation by itself (its visitor abandoned it while it
    /// waited; nothing happened in it for `routing.inactivity_close`): a `Close`
    /// event with sender role `SYSTEM` and `reason` as its body.
    SystemClose {
        /// The conversation.
        conversation: u64,
        /// Why (`abandoned`, `inactive`).
        reason: String,
    },
    /// A participant's connection list changed.
    Conns {
        /// The conversation.
        conversation: u64,
        /// Whose.
        who: UserRef,
        /// Their connections now.
        conns: Vec<ConnId>,
    },
    /// An HTTP API upload (`POST .../attachments`): checked like a `Send` by its
    /// uploader, then handed to the files thread ([`Effect::Files`]).
    Upload {
        /// The uploader.
        from: Sender,
        /// The file.
        upload: Box<crate::files::Upload>,
    },
    /// An HTTP API download (`GET .../attachments/{id}`): checked like a `History`,
    /// and the file must be referenced by a message of the conversation.
    Download {
        /// The reader.
        from: Sender,
        /// The conversation.
        conversation: u64,
        /// The file's id.
        id: String,
    },
    /// An HTTP API read (`GET /api/v1/conversations/{id}`): the conversation's
    /// `ConversationInfo` fields and merged visitor profile, answered as JSON.
    Info {
        /// The reader (an API principal of the conversation's tenant).
        from: Sender,
        /// The conversation.
        conversation: u64,
    },
    /// An HTTP API request with no reply of its own (a `Close`, a `Transfer`) was
    /// handled: the request before it on this queue took effect (or its `Error` went
    /// out first). Passed to the router as [`RouterMsg::Ack`] once what the request
    /// changed is durable, so it also follows what the request told the router.
    Ack {
        /// The request's conversation.
        conversation: u64,
        /// The API connection.
        conn: ConnId,
        /// Its request id.
        rid: u32,
    },
    /// The last leg of an HTTP API request's answer ([`RouterMsg::Ack`]): everything
    /// the router did for the request reached this shard before it, so the shard's
    /// view (what `GET` reads) shows the change; answered with [`api_ack`].
    Answer {
        /// The request's conversation.
        conversation: u64,
        /// The API connection.
        conn: ConnId,
        /// Its request id.
        rid: u32,
    },
}

/// The answer to an HTTP API request that has no reply of its own: a header-only
/// `Pong` with the request's id (it never reaches a wire: the reactor turns it into
/// `204 No Content`).
pub(crate) fn api_ack(conn: ConnId, rid: u32) -> Effect {
    let frame = crate::frame::encode_status(crate::protocol::Kind::Pong.as_u8(), 0, rid);
    Effect::Reactor(Command::Send { conn, frame })
}

impl ShardMsg {
    /// The conversation this message is about, which picks the shard.
    pub fn conversation(&self) -> u64 {
        match self {
            ShardMsg::Open(o) => o.conversation,
            ShardMsg::Assign(Assignment { conversation, .. })
            | ShardMsg::Requeued { conversation, .. }
            | ShardMsg::SystemClose { conversation, .. }
            | ShardMsg::Conns { conversation, .. }
            | ShardMsg::Ack { conversation, .. }
            | ShardMsg::Answer { conversation, .. }
            | ShardMsg::Download { conversation, .. }
            | ShardMsg::Info { conversation, .. } => *conversation,
            ShardMsg::Upload { upload, .. } => upload.conversation,
            ShardMsg::Request { msg, .. } => request_conversation(msg),
            ShardMsg::Resume(r) => r.cursors.first().map_or(0, |c| c.conversation),
        }
    }
}

/// Shard-wide control: the same message goes to every shard, on its control queue
/// (about no one conversation, so it is not a [`ShardMsg`]).
#[derive(Debug, Clone)]
pub(crate) enum ShardControl {
    /// Retention: forget the conversations closed before `cutoff_ms` and answer
    /// their ids.
    Retain {
        /// Unix milliseconds.
        cutoff_ms: u64,
        /// Where the forgotten ids go.
        reply: crossbeam_channel::Sender<Vec<u64>>,
    },
    /// Retention compaction moved journal records.
    Moved {
        /// Old location → new location.
        moves: Arc<std::collections::HashMap<crate::journal::Location, crate::journal::Location>>,
        /// Told once the shard uses the new locations.
        done: crossbeam_channel::Sender<()>,
    },
    /// A configuration reload changed the conversation settings.
    Settings(settings::ShardSettings),
    /// A reload changed the assistant libraries.
    Assist {
        /// The new libraries.
        libraries: crate::assist::Libraries,
        /// The new `[assist]` settings.
        config: crate::assist::AssistConfig,
    },
    /// A group's agents and bots went online (at least one is connected and not away)
    /// or all went offline: the visitor messages a shard stores in the group's queued
    /// conversations are offline messages while it is offline.
    GroupOnline {
        /// The group's tenant.
        tenant: String,
        /// The group.
        group: String,
        /// At least one of its agents or bots is online.
        online: bool,
    },
    /// An admin's `ListConversations`: each shard answers its part
    /// ([`SessionReply::Listed`]).
    List {
        /// The worker whose session waits for the parts.
        worker: usize,
        /// The admin's connection.
        conn: ConnId,
        /// The request id.
        rid: u32,
        /// The admin's tenant.
        tenant: String,
        /// Most conversations wanted.
        limit: usize,
        /// The filter.
        query: Arc<messages::ListConversations>,
    },
}

/// A shard's answer for the sessions of one worker, on that worker's session queue.
#[derive(Debug, Clone)]
pub(crate) enum SessionReply {
    /// The answer to a [`Resume`].
    Resumed {
        /// The connection.
        conn: ConnId,
        /// One answer per cursor, in the cursors' order.
        answers: Vec<ResumeAnswer>,
    },
    /// A shard's part of a listing ([`ShardControl::List`]).
    Listed {
        /// The admin's connection.
        conn: ConnId,
        /// The request id.
        rid: u32,
        /// This shard's matches, lowest ids first.
        items: Vec<messages::ConversationInfo>,
        /// The shard had more matches than `limit`.
        more: bool,
    },
}

/// Sends `msg` to every shard's control queue; returns how many took it (a shard
/// whose worker is gone does not).
pub(crate) fn tell_shards(
    shards: &[crossbeam_channel::Sender<ShardControl>],
    msg: ShardControl,
) -> usize {
    shards
        .iter()
        .filter(|q| q.send(msg.clone()).is_ok())
        .count()
}

/// The conversation a client request names (0 when it names none).
pub(crate) fn request_conversation(msg: &messages::Msg) -> u64 {
    use messages::Msg;
    match msg {
        Msg::Send(m) => m.conversation,
        Msg::Receipt(m) => m.conversation,
        Msg::Typing(m) => m.conversation,
        Msg::Transfer(m) => m.conversation,
        Msg::Claim(m) => m.conversation,
        Msg::Close(m) => m.conversation,
        Msg::Rate(m) => m.conversation,
        Msg::WrongReply(m) => m.conversation,
        Msg::History(m) => m.conversation,
        Msg::Suggest(m) => m.conversation,
        Msg::Note(m) => m.conversation,
        _ => 0,
    }
}

/// Which of `shards` owns a conversation.
pub(crate) fn shard_of(conversation: u64, shards: usize) -> usize {
    (conversation % shards.max(1) as u64) as usize
}

/// What a state machine wants done, each variant addressed by what it carries.
#[derive(Debug)]
pub(crate) enum Effect {
    /// A message for the router.
    Router(RouterMsg),
    /// A message for the shard owning its conversation.
    Shard(ShardMsg),
    /// A message for every shard.
    AllShards(ShardControl),
    /// An answer for the sessions of worker `.0`.
    Session(usize, SessionReply),
    /// A command for the reactor owning its connection ([`Command::conn`]).
    Reactor(Command),
    /// The same frame to many connections (encoded once).
    Broadcast(Vec<ConnId>, Bytes),
    /// Work for the files thread (attachments).
    Files(Job),
}

/// Sends `frame` to one connection.
pub(crate) fn send(out: &mut Vec<Effect>, conn: ConnId, frame: Bytes) {
    out.push(Effect::Reactor(Command::Send { conn, frame }));
}

/// Sends `frame` to every connection in `conns`.
pub(crate) fn to_all(out: &mut Vec<Effect>, conns: &[ConnId], frame: Bytes) {
    match conns {
        [] => {}
        [one] => send(out, *one, frame),
        many => out.push(Effect::Broadcast(many.to_vec(), frame)),
    }
}

/// Sends `frame` to every connection in `a` and `b` but `except`, as [`to_all`]
/// would to the list of them, without building that list for a single target.
pub(crate) fn to_both(
    out: &mut Vec<Effect>,
    a: &[ConnId],
    b: &[ConnId],
    except: Option<ConnId>,
    frame: Bytes,
) {
    let mut targets = a.iter().chain(b).filter(|&&k| Some(k) != except);
    let Some(&first) = targets.next() else {
        return;
    };
    match targets.next() {
        None => send(out, first, frame),
        Some(&second) => {
            let mut many = Vec::with_capacity(a.len() + b.len());
            many.extend([first, second]);
            many.extend(targets);
            out.push(Effect::Broadcast(many, frame));
        }
    }
}

/// Agents and bots serve conversations.
pub(crate) fn is_staff_role(r: u8) -> bool {
    r == messages::role::AGENT || r == messages::role::BOT
}

/// Answers a request with an error; the connection stays open unless the code
/// closes it.
pub(crate) fn refuse(
    out: &mut Vec<Effect>,
    from: &Sender,
    code: crate::protocol::ErrorCode,
    conversation: u64,
) {
    let cmd = error_command(from.conn, code, conversation, from.rid);
    out.push(Effect::Reactor(cmd));
}

/// The `Error` answer to request `rid` on `conn`: sent, and the connection closed
/// after it when the code says so (`ErrorCode::closes_connection`).
pub(crate) fn error_command(
    conn: ConnId,
    code: crate::protocol::ErrorCode,
    conversation: u64,
    rid: u32,
) -> Command {
    let frame = messages::Msg::from(messages::Error {
        code: code.as_u16(),
        retryable: code.retryable(),
        conversation,
        message: code.name().to_owned(),
    })
    .to_frame(rid);
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

/// A download the shard let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Download {
    /// The API connection.
    pub conn: ConnId,
    /// Its request id.
    pub rid: u32,
    /// The conversation.
    pub conversation: u64,
    /// The file's id (lower-case hex SHA-256).
    pub id: String,
    /// Its name, from the message that references it.
    pub name: String,
    /// Its media type, from the message that references it.
    pub media_type: String,
}

/// Work for the files thread.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    /// Store the file, then route the message that references it as `from`'s `Send`.
    Store {
        /// The uploader (its connection and request id get the answer).
        from: Sender,
        /// The file.
        upload: Box<crate::files::Upload>,
    },
    /// Read a file and answer the download with it.
    Read(Box<Download>),
}

/// Work for the console's login threads (`worker::console_login`): a password to
/// check; the answer goes back to the connection's reactor as
/// [`Command::ConsoleLogin`].
#[derive(Debug)]
pub(crate) struct LoginJob {
    /// The HTTP connection waiting for the answer.
    pub conn: ConnId,
    /// The body it sent (`Debug` never shows the password).
    pub request: crate::console::LoginRequest,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(user: &str, name: DisplayName) -> Principal {
        Principal {
            who: UserRef {
                tenant: String::new(),
                user: user.to_owned(),
            },
            name,
            role: messages::role::VISITOR,
            groups: Box::default(),
            addr: None,
        }
    }

    #[test]
    fn a_name_equal_to_the_user_id_is_kept_once_and_reads_the_same() {
        let same = DisplayName::of("storm-0-7".to_owned(), "storm-0-7");
        assert_eq!(same, DisplayName::User);
        let p = principal("storm-0-7", same);
        assert_eq!(p.display_name(), "storm-0-7");
        let own = DisplayName::of("Ann".to_owned(), "storm-0-7");
        assert_eq!(own, DisplayName::Own("Ann".to_owned()));
        assert_eq!(principal("storm-0-7", own).display_name(), "Ann");
        // An empty name is a name of its own (staff acting through the HTTP API).
        assert_eq!(principal("u", DisplayName::from("")).display_name(), "");
    }

    #[test]
    fn principals_compare_by_the_name_they_show_not_how_it_is_kept() {
        let kept_once = principal("v", DisplayName::User);
        let copied = principal("v", DisplayName::from("v"));
        assert_eq!(kept_once, copied);
        assert_ne!(kept_once, principal("v", DisplayName::from("V")));
        assert_ne!(kept_once, principal("w", DisplayName::User));
    }
}
