//! Message bodies: one flat struct per [`Kind`], archived with rkyv (little-endian,
//! aligned, 32-bit relative pointers; `proto-spec/PROTOCOL.md` gives every layout).
//!
//! Wire types stay flat — integers, bools, strings and vectors of flat structs; no
//! maps, options, boxes or shared pointers — so a third party can write them by hand
//! and validation stays shallow. Enumerations travel as `u8` codes (see [`role`],
//! [`content`], [`presence`], [`receipt`], [`flags`]).

use bytes::Bytes;
use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use super::Kind;
use crate::frame::{self, ALIGN, FrameHeader};

/// Largest scratch buffer a thread keeps between [`Msg::to_frame`] calls.
const MAX_KEPT_SCRATCH: usize = 64 * 1024;

thread_local! {
    /// Where [`Msg::to_frame`] archives payloads: reused, so encoding a message
    /// allocates only the frame itself.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The protocol version this build speaks in `Hello.protocol` / `Welcome.protocol`.
pub const PROTOCOL_VERSION: u16 = 1;

/// Role codes (`Welcome.role`, `Deliver.sender_role`, ...).
pub mod role {
    /// A website/app user asking for help.
    pub const VISITOR: u8 = 1;
    /// A human support agent.
    pub const AGENT: u8 = 2;
    /// An automated agent.
    pub const BOT: u8 = 3;
    /// An operator with broadcast rights.
    pub const ADMIN: u8 = 4;
    /// The gateway itself (automatic replies, lifecycle events).
    pub const SYSTEM: u8 = 5;
}

/// Content type codes (`Send.content_type`, `Deliver.content_type`).
pub mod content {
    /// UTF-8 plain text.
    pub const TEXT: u8 = 1;
    /// CommonMark.
    pub const MARKDOWN: u8 = 2;
    /// A URL to an image or file.
    pub const URL: u8 = 3;
    /// A JSON document (cards, forms) for the client to render.
    pub const JSON: u8 = 4;
    /// A file uploaded over the HTTP API: the body is JSON `{"id","name","size","type"}`
    /// (`GET /api/v1/conversations/{conversation}/attachments/{id}` downloads it).
    /// Only the upload route makes it: a client's `Send` with it is refused (400).
    pub const ATTACHMENT: u8 = 5;
    /// The visitor's attributes (name, email, custom fields): the body is a JSON
    /// object that updates the conversation's visitor profile (PROTOCOL.md 5.2).
    pub const PROFILE: u8 = 6;
}

/// Presence codes (`Presence.status`).
pub mod presence {
    /// Takes new conversations.
    pub const ONLINE: u8 = 1;
    /// Connected, keeps current conversations, takes no new ones.
    pub const AWAY: u8 = 2;
    /// Not connected.
    pub const OFFLINE: u8 = 3;
}

/// Receipt codes (`Receipt.status`).
pub mod receipt {
    /// Shown on a device.
    pub const DELIVERED: u8 = 1;
    /// Seen by the person.
    pub const READ: u8 = 2;
}

/// Transcript event kinds that are not message kinds (`Entry.kind`; PROTOCOL.md
/// section 13.9).
pub mod entry_kind {
    /// Sequence numbers lost to journal damage or skipped so none is reused
    /// (`Entry.content_type` says which, see [`super::gap`]).
    pub const GAP: u8 = 60;
}

/// What a gap entry says (`Entry.content_type` of an [`entry_kind::GAP`] entry).
pub mod gap {
    /// An entry existed and was lost to journal damage.
    pub const LOST: u8 = 1;
    /// The number was skipped after journal damage so that none is ever reused: an
    /// entry may or may not have existed.
    pub const RESERVED: u8 = 2;
}

/// Bits of `Deliver.flags` / `Entry.flags`.
pub mod flags {
    /// Sent by the FAQ auto-responder, not a person.
    pub const AUTO_REPLY: u8 = 1;
    /// The abuse filter flagged it for the agent's attention.
    pub const FLAGGED: u8 = 2;
    /// Replayed after a reconnect (the client may have seen it).
    pub const REPLAY: u8 = 4;
    /// A private note: staff only, never shown to the visitor.
    pub const PRIVATE: u8 = 8;
    /// An offline message: a visitor's message stored while its conversation waited
    /// in a queue and no agent or bot of its group was online.
    pub const OFFLINE: u8 = 16;
    /// An agent's or bot's message stored while the visitor had no connection (the
    /// visitor may get it by email, in a digest).
    pub const VISITOR_AWAY: u8 = 32;
}

/// States of a conversation, in `ListConversations.state` (a filter) and
/// `ConversationInfo.state`.
pub mod conversation_state {
    /// Filter: queued or assigned.
    pub const OPEN: u8 = 0;
    /// Waiting in a queue.
    pub const QUEUED: u8 = 1;
    /// Served by an agent or bot.
    pub const ASSIGNED: u8 = 2;
    /// Closed.
    pub const CLOSED: u8 = 3;
    /// Filter: any state.
    pub const ANY: u8 = 4;
}

/// Largest `Hello.token` and `Refresh.token`, in bytes.
pub const MAX_TOKEN: usize = 8 * 1024;
/// Largest message body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest short text field (names, ids, groups, notes, reasons), in bytes.
pub const MAX_SHORT: usize = 1024;
/// Longest user id (a token's `sub`), in bytes.
pub const MAX_USER: usize = 256;

/// Most groups one user's connections watch the availability of (`Watch` past it:
/// 429).
pub const MAX_WATCHED: usize = 16;
/// Most waiting conversations per group a new staff connection is told of at once
/// (`Queued` frames, the head of each of its groups' queues).
pub const MAX_QUEUE_SNAPSHOT: usize = 200;
/// Most resume cursors in one `Hello`.
pub const MAX_CURSORS: usize = 1024;

/// Why a payload is not a valid message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The kind byte names no message body.
    #[error("kind {0} has no message body")]
    UnknownKind(u8),
    /// rkyv validation (bytecheck) rejected the archive.
    #[error("invalid {kind:?} archive: {source}")]
    Invalid {
        /// The kind being decoded.
        kind: Kind,
        /// What bytecheck found.
        source: rancor::Error,
    },
    /// The archive is valid but a field breaks a protocol bound.
    #[error("{kind:?}.{field}: {reason}")]
    Bound {
        /// The kind being decoded.
        kind: Kind,
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Defines flat structs that travel inside message vectors, with the derives every
/// wire type has (rkyv; serde for the test vectors, absent fields defaulting).
macro_rules! elements {
    ($( $(#[$doc:meta])* $name:ident { $( $(#[$fdoc:meta])* $field:ident : $ty:ty ),* $(,)? } )*) => {
        $(
            $(#[$doc])*
            #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
            #[derive(serde::Serialize, serde::Deserialize)]
            #[serde(default, deny_unknown_fields)]
            pub struct $name { $( $(#[$fdoc])* pub $field: $ty, )* }
        )*
    };
}

elements! {
    /// A resume cursor: the last sequence number a client saw in a conversation.
    Cursor {
        /// Conversation id.
        conversation: u64,
        /// Last sequence number the client has.
        last_seq: u64,
    }
}

elements! {
    /// Per-conversation outcome of a resume.
    Resumed {
        /// Conversation id.
        conversation: u64,
        /// Events after this sequence number follow as `Deliver` with the `REPLAY` flag.
        from_seq: u64,
        /// False when the gap was too large to replay; fetch with `History` instead.
        recovered: bool,
    }
}

elements! {
    /// One transcript event in a `HistoryPage`.
    Entry {
        /// Sequence number within the conversation.
        seq: u64,
        /// Server time, milliseconds since the Unix epoch.
        time_ms: u64,
        /// What happened, as a message kind (`Send` for a message, `Assigned`, `Transfer`,
        /// `Close`, `Rate`, ...).
        kind: u8,
        /// Role code of the sender.
        sender_role: u8,
        /// Content type code (messages only).
        content_type: u8,
        /// [`flags`] bits.
        flags: u8,
        /// User id of the sender.
        sender: String,
        /// Text of the event.
        body: String,
    }
}

elements! {
    /// One canned-reply suggestion.
    Suggestion {
        /// Library id of the canned reply.
        id: u32,
        /// How often agents used it.
        uses: u32,
        /// The reply text.
        text: String,
    }
}

elements! {
    /// One group's availability, as a visitor sees it (element of `Availability.groups`).
    GroupAvailability {
        /// Some agent or bot of the group is online (connected, not away).
        online: bool,
        /// How long a conversation opened now is expected to wait for an agent, in
        /// milliseconds, rounded up to a step of [`WAIT_STEPS_MS`] (0: an agent has
        /// room now, or nobody is online).
        estimated_wait_ms: u64,
        /// The group.
        group: String,
    }
}

/// The values `GroupAvailability.estimated_wait_ms` takes besides 0: an estimate is
/// rounded up to the next step (and capped at the last).
pub const WAIT_STEPS_MS: [u64; 12] = [
    15_000, 30_000, 60_000, 120_000, 180_000, 300_000, 600_000, 900_000, 1_200_000, 1_800_000,
    2_700_000, 3_600_000,
];

elements! {
    /// One conversation in a `ConversationList`.
    ConversationInfo {
        /// Conversation id.
        conversation: u64,
        /// When it was opened, milliseconds since the Unix epoch.
        opened_ms: u64,
        /// Time of its latest event, milliseconds since the Unix epoch.
        updated_ms: u64,
        /// Sequence number of its latest event.
        last_seq: u64,
        /// [`conversation_state`] code: queued, assigned or closed.
        state: u8,
        /// Group it waits, is served or was closed in.
        group: String,
        /// Visitor's user id.
        visitor: String,
        /// Visitor's display name.
        visitor_name: String,
        /// Agent serving it (or that served it when it closed); empty while queued.
        agent: String,
    }
}

macro_rules! messages {
    ($( $(#[$doc:meta])* $name:ident { $( $(#[$fdoc:meta])* $field:ident : $ty:ty ),* $(,)? } )*) => {
        $(
            elements! { $(#[$doc])* $name { $( $(#[$fdoc])* $field: $ty ),* } }

            impl From<$name> for Msg {
                fn from(m: $name) -> Msg { Msg::$name(m) }
            }
        )*

        /// Hands every message struct with its fields, in order, to
        /// `protocol::json::field::json_messages!`, which derives their JSON form there (so
        /// that this module does not depend on the JSON one).
        macro_rules! with_every_message {
            () => {
                crate::protocol::json::field::json_messages! { $( $name { $($field),* } )* }
            };
        }
        pub(crate) use with_every_message;

        /// Any message body, tagged by kind. (Its serde form, used by the test
        /// vectors, is `{"kind": "Hello", "fields": {...}}`.)
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "kind", content = "fields")]
        pub enum Msg { $( $(#[$doc])* $name($name), )* }

        impl Msg {
            /// The kind byte this message travels under.
            pub fn kind(&self) -> Kind {
                match self { $( Msg::$name(_) => Kind::$name, )* }
            }

            /// The archived payload (unpadded).
            pub fn to_payload(&self) -> AlignedVec {
                let archived = match self {
                    $( Msg::$name(m) => rkyv::to_bytes::<rancor::Error>(m), )*
                };
                // Serializing plain owned data into memory cannot fail.
                archived.unwrap_or_default()
            }

            /// Archives the payload into `out` (emptied first): the same bytes as
            /// [`Msg::to_payload`], whose positions also count from the start.
            fn payload_into(&self, mut out: Vec<u8>) -> Vec<u8> {
                out.clear();
                let written = match self {
                    $( Msg::$name(m) => rkyv::api::high::to_bytes_in::<_, rancor::Error>(m, out), )*
                };
                // Serializing plain owned data into memory cannot fail; if it did,
                // the payload is empty, as with `to_payload`.
                written.unwrap_or_default()
            }

            /// Validates (bytecheck) and deserializes a payload of `kind`.
            /// `payload` must be 16-aligned; see [`decode`] for the copying wrapper.
            /// `bounds`: also check the protocol bounds of section 4.
            fn from_aligned(kind: Kind, payload: &[u8], bounds: bool) -> Result<Msg, DecodeError> {
                let invalid = |source| DecodeError::Invalid { kind, source };
                let msg = match kind {
                    $( Kind::$name => Msg::$name(
                        rkyv::from_bytes::<$name, rancor::Error>(payload).map_err(invalid)?
                    ), )*
                };
                if bounds {
                    msg.check_bounds()?;
                }
                Ok(msg)
            }
        }
    };
}

messages! {
    /// Client → server, first frame: who I am and where I left off.
    Hello {
        /// Protocol version the client speaks ([`PROTOCOL_VERSION`]).
        protocol: u16,
        /// A JWT (HS256) minted by the customer's back end.
        token: String,
        /// Free-form client name and version, for logs.
        client: String,
        /// Last sequence number seen per conversation, for resume.
        resume: Vec<Cursor>,
    }
    /// Server → client: the handshake succeeded.
    Welcome {
        /// Protocol version the server will speak on this connection.
        protocol: u16,
        /// Role code of the user.
        role: u8,
        /// Send something at least this often (milliseconds).
        heartbeat_ms: u32,
        /// The server closes a connection silent for this long (milliseconds).
        idle_timeout_ms: u32,
        /// Largest frame payload the server accepts.
        max_frame: u32,
        /// Server-chosen session id (unique per daemon run).
        session: u64,
        /// Server time, milliseconds since the Unix epoch.
        server_time_ms: u64,
        /// User id (the token's `sub`).
        user: String,
        /// Display name (the token's `name`).
        name: String,
        /// Tenant (the token's `tenant`, empty when none).
        tenant: String,
        /// Agent groups (the token's `groups`).
        groups: Vec<String>,
        /// Outcome of each resume cursor in `Hello`.
        resumed: Vec<Resumed>,
    }
    /// Either way: liveness probe (an empty payload is a valid `Ping` too).
    Ping {
        /// Opaque to the receiver, echoed in `Pong` (e.g. a send time).
        stamp: u64,
        /// Opaque bytes echoed in `Pong` (at most 64 KiB; lets load tools size
        /// round trips).
        data: Vec<u8>,
    }
    /// Either way: answer to `Ping`, with the `Ping`'s payload bytes unchanged.
    Pong {
        /// The `Ping`'s stamp.
        stamp: u64,
        /// The `Ping`'s data.
        data: Vec<u8>,
    }
    /// Server → client: a request failed (the header's status holds the same code).
    Error {
        /// Error code.
        code: u16,
        /// Whether trying again can succeed.
        retryable: bool,
        /// Conversation the error concerns (0 for none).
        conversation: u64,
        /// Human-readable detail (never a secret).
        message: String,
    }
    /// Either way: the session ends (the header's status holds the reason code).
    Bye {
        /// Reason code (0 for a normal goodbye).
        code: u16,
        /// Human-readable detail.
        message: String,
    }
    /// Client → server: a fresh token for this session (same user, tenant and role);
    /// the session then ends at its `exp` instead of the old token's.
    Refresh {
        /// A JWT (HS256) minted by the customer's back end, checked like `Hello.token`.
        token: String,
    }
    /// Server → client: the `Refresh` was accepted.
    Refreshed {
        /// The new token's `exp`, milliseconds since the Unix epoch.
        expires_ms: u64,
    }
    /// Client → server: post a message.
    Send {
        /// Content type code.
        content_type: u8,
        /// Conversation id; 0 asks to open a conversation (visitors).
        conversation: u64,
        /// Client-chosen id; a resend with the same id is not stored twice.
        client_msg_id: u64,
        /// Group to open the conversation in (empty: the token's or the default).
        group: String,
        /// The message.
        body: String,
    }
    /// Server → client: a `Send` was stored.
    Accepted {
        /// The `Send`'s client message id.
        client_msg_id: u64,
        /// Conversation it went to (the new one when `Send.conversation` was 0).
        conversation: u64,
        /// Its sequence number.
        seq: u64,
        /// Server time, milliseconds since the Unix epoch.
        time_ms: u64,
    }
    /// Server → client: a message in a conversation.
    Deliver {
        /// Role code of the sender.
        sender_role: u8,
        /// Content type code.
        content_type: u8,
        /// [`flags`] bits.
        flags: u8,
        /// Conversation id.
        conversation: u64,
        /// Sequence number.
        seq: u64,
        /// Server time, milliseconds since the Unix epoch.
        time_ms: u64,
        /// The sender's client message id (lets a sender's other devices dedupe).
        client_msg_id: u64,
        /// User id of the sender.
        sender: String,
        /// The message.
        body: String,
    }
    /// Either way: delivered/read up to a sequence number.
    Receipt {
        /// [`receipt`] code.
        status: u8,
        /// Conversation id.
        conversation: u64,
        /// Up to and including this sequence number.
        seq: u64,
        /// Who (server → client; empty client → server).
        user: String,
    }
    /// Agent → server: a private note in a conversation (staff only, never shown to
    /// the visitor). Answered with `Accepted`.
    Note {
        /// Conversation id.
        conversation: u64,
        /// Sender-chosen id, for idempotent retries (shared with `Send`).
        client_msg_id: u64,
        /// The note (UTF-8 text).
        body: String,
    }
    /// Either way: typing indicator.
    Typing {
        /// Started (true) or stopped (false).
        typing: bool,
        /// Conversation id.
        conversation: u64,
        /// Who (server → client; empty client → server).
        user: String,
    }
    /// Server → visitor: position in the queue.
    Queued {
        /// 1-based position.
        position: u32,
        /// Conversation id.
        conversation: u64,
        /// Group queued in.
        group: String,
    }
    /// Server → both sides: a conversation has an agent.
    Assigned {
        /// Conversation id.
        conversation: u64,
        /// Sequence number of the event.
        seq: u64,
        /// Agent's user id.
        agent: String,
        /// Agent's display name.
        agent_name: String,
        /// Group.
        group: String,
        /// Visitor's user id.
        visitor: String,
        /// Visitor's display name.
        visitor_name: String,
    }
    /// Agent → server: hand a conversation on (to an agent, or else a group).
    Transfer {
        /// Conversation id.
        conversation: u64,
        /// Target agent's user id (empty: any agent of `to_group`).
        to_agent: String,
        /// Target group (empty: the conversation's group).
        to_group: String,
        /// Note for the next agent; never shown to the visitor.
        note: String,
    }
    /// Agent → server: pick up a queued conversation.
    Claim {
        /// Conversation id.
        conversation: u64,
    }
    /// Either way: close a conversation.
    Close {
        /// Conversation id.
        conversation: u64,
        /// Sequence number of the close event (server → client; 0 client → server).
        seq: u64,
        /// Why.
        reason: String,
    }
    /// Visitor → server: rate a closed conversation.
    Rate {
        /// 1 to 5.
        score: u8,
        /// Conversation id.
        conversation: u64,
        /// Free text.
        comment: String,
    }
    /// Agent → server: the automatic (FAQ) reply at `seq` in my conversation was
    /// wrong (counted and logged with the question it answered; nothing is stored).
    WrongReply {
        /// Conversation id.
        conversation: u64,
        /// Sequence number of the automatic reply.
        seq: u64,
        /// Free text: what was wrong, or the right answer.
        comment: String,
    }
    /// Agent → server: my presence; server → agents: someone's presence.
    Presence {
        /// [`presence`] code.
        status: u8,
        /// Whose (server → client; empty client → server).
        user: String,
    }
    /// Client → server: a page of a conversation's transcript.
    History {
        /// Most entries wanted.
        limit: u16,
        /// Conversation id.
        conversation: u64,
        /// Entries before this sequence number (0: the latest).
        before_seq: u64,
    }
    /// Server → client: one page of transcript, oldest first.
    HistoryPage {
        /// Older entries exist.
        more: bool,
        /// Conversation id.
        conversation: u64,
        /// The entries.
        entries: Vec<Entry>,
    }
    /// Agent → server: canned replies starting like this, or (`faq`) FAQ entries
    /// whose questions match it.
    Suggest {
        /// Most suggestions wanted.
        limit: u8,
        /// FAQ hints instead of canned replies: `prefix` is a visitor's question.
        faq: bool,
        /// Conversation the reply is for (its group's library is searched too).
        conversation: u64,
        /// What the agent has typed.
        prefix: String,
    }
    /// Server → agent: canned-reply suggestions, best first.
    Suggestions {
        /// The `Suggest` prefix answered.
        prefix: String,
        /// The suggestions.
        items: Vec<Suggestion>,
    }
    /// Admin → server, server → many: a broadcast notice.
    Notice {
        /// Server time, milliseconds since the Unix epoch (server → client).
        time_ms: u64,
        /// Target group (empty: everyone).
        group: String,
        /// Sender's user id (server → client).
        from: String,
        /// The notice.
        text: String,
    }
    /// Server → client: whether the groups it watches can answer now (after a
    /// `Watch`, and when it changes).
    Availability {
        /// One entry per group (all the connection watches after a `Watch`, those
        /// that changed later).
        groups: Vec<GroupAvailability>,
    }
    /// Client → server: send this connection `Availability` from now on.
    Watch {
        /// The group to watch (empty: the user's own — a visitor's token groups or
        /// the default group, an agent's groups).
        group: String,
    }
    /// Admin → server: a page of the tenant's conversations. Answered with
    /// `ConversationList`.
    ListConversations {
        /// Most conversations wanted (0 counts as 1; capped by the server).
        limit: u16,
        /// [`conversation_state`] filter.
        state: u8,
        /// Only conversations with a larger id (0: from the first): the previous
        /// page's `next_after`.
        after: u64,
        /// Only conversations with an event at or after this time (ms since the Unix
        /// epoch; 0: any).
        updated_since_ms: u64,
        /// Only this group's (empty: any).
        group: String,
        /// Only those this agent serves or served (empty: any).
        agent: String,
    }
    /// Server → admin: a page of conversations, by id.
    ConversationList {
        /// More match after this page: ask again with `after = next_after`.
        more: bool,
        /// The last id on this page (0 when empty).
        next_after: u64,
        /// The conversations, by increasing id.
        items: Vec<ConversationInfo>,
    }
    /// Admin → server: end every session of a user of the admin's tenant. Answered
    /// with `Disconnected`.
    Disconnect {
        /// The user id.
        user: String,
        /// Why (told to the user's clients with the `Error` that closes them).
        reason: String,
    }
    /// Server → admin: how many sessions a `Disconnect` ended.
    Disconnected {
        /// Sessions ended.
        sessions: u32,
        /// The user id.
        user: String,
    }
}

fn check(
    ok: bool,
    kind: Kind,
    field: &'static str,
    reason: &'static str,
) -> Result<(), DecodeError> {
    if ok {
        Ok(())
    } else {
        Err(DecodeError::Bound {
            kind,
            field,
            reason,
        })
    }
}

fn short(kind: Kind, field: &'static str, s: &str) -> Result<(), DecodeError> {
    check(s.len() <= MAX_SHORT, kind, field, "longer than 1024 bytes")
}

impl Msg {
    /// Protocol bounds beyond what the types express.
    fn check_bounds(&self) -> Result<(), DecodeError> {
        let k = self.kind();
        match self {
            Msg::Hello(m) => {
                check(m.token.len() <= MAX_TOKEN, k, "token", "longer than 8 KiB")?;
                short(k, "client", &m.client)?;
                check(
                    m.resume.len() <= MAX_CURSORS,
                    k,
                    "resume",
                    "more than 1024 cursors",
                )
            }
            Msg::Refresh(m) => check(m.token.len() <= MAX_TOKEN, k, "token", "longer than 8 KiB"),
            Msg::Send(m) => {
                check(m.body.len() <= MAX_BODY, k, "body", "longer than 64 KiB")?;
                check(!m.body.is_empty(), k, "body", "empty")?;
                check(
                    (content::TEXT..=content::JSON).contains(&m.content_type)
                        || m.content_type == content::PROFILE,
                    k,
                    "content_type",
                    "1 to 4 or 6 (5, ATTACHMENT, is made by the upload route only)",
                )?;
                if m.content_type == content::PROFILE {
                    // A profile updates an existing conversation: it cannot open one.
                    check(m.conversation != 0, k, "conversation", "0 with PROFILE")?;
                    if let Err(e) = super::profile::ProfileUpdate::parse(&m.body) {
                        return Err(DecodeError::Bound {
                            kind: k,
                            field: "body",
                            reason: e.reason(),
                        });
                    }
                }
                short(k, "group", &m.group)
            }
            Msg::Ping(m) => check(m.data.len() <= MAX_BODY, k, "data", "longer than 64 KiB"),
            Msg::Pong(m) => check(m.data.len() <= MAX_BODY, k, "data", "longer than 64 KiB"),
            Msg::Rate(m) => {
                check((1..=5).contains(&m.score), k, "score", "not 1 to 5")?;
                short(k, "comment", &m.comment)
            }
            Msg::WrongReply(m) => short(k, "comment", &m.comment),
            Msg::Receipt(m) => check(
                m.status == receipt::DELIVERED || m.status == receipt::READ,
                k,
                "status",
                "unknown receipt status",
            ),
            Msg::Presence(m) => check(
                (presence::ONLINE..=presence::OFFLINE).contains(&m.status),
                k,
                "status",
                "unknown presence",
            ),
            Msg::Transfer(m) => {
                short(k, "to_agent", &m.to_agent)?;
                short(k, "to_group", &m.to_group)?;
                short(k, "note", &m.note)
            }
            Msg::Close(m) => short(k, "reason", &m.reason),
            Msg::Suggest(m) => short(k, "prefix", &m.prefix),
            Msg::Notice(m) => {
                check(m.text.len() <= MAX_BODY, k, "text", "longer than 64 KiB")?;
                short(k, "group", &m.group)
            }
            Msg::Watch(m) => short(k, "group", &m.group),
            Msg::Note(m) => {
                check(m.body.len() <= MAX_BODY, k, "body", "longer than 64 KiB")?;
                check(!m.body.is_empty(), k, "body", "empty")
            }
            Msg::ListConversations(m) => {
                check(
                    m.state <= conversation_state::ANY,
                    k,
                    "state",
                    "unknown conversation state",
                )?;
                short(k, "group", &m.group)?;
                short(k, "agent", &m.agent)
            }
            Msg::Disconnect(m) => {
                check(!m.user.is_empty(), k, "user", "empty")?;
                check(m.user.len() <= MAX_USER, k, "user", "longer than 256 bytes")?;
                short(k, "reason", &m.reason)
            }
            _ => Ok(()),
        }
    }

    /// A whole frame (header, archived payload, padding) carrying this message.
    /// `Error` and `Bye` put their code in the header's status too.
    pub fn to_frame(&self, request_id: u32) -> Bytes {
        let status = match self {
            Msg::Error(e) => e.code,
            Msg::Bye(b) => b.code,
            _ => 0,
        };
        let header = FrameHeader {
            status,
            ..FrameHeader::new(self.kind().as_u8(), 0, request_id)
        };
        // Archived into the thread's scratch buffer, then copied once into a frame
        // of exactly its wire size (queued output is bounded by that size).
        let payload = self.payload_into(SCRATCH.take());
        let frame = frame::encode(header, &payload);
        if payload.capacity() <= MAX_KEPT_SCRATCH {
            SCRATCH.set(payload);
        }
        frame
    }

    /// Validates and decodes a payload (copying it to an aligned buffer only when it
    /// is not 16-aligned already). Never reads unvalidated bytes.
    pub fn decode(kind_byte: u8, payload: &[u8]) -> Result<Msg, DecodeError> {
        let kind = Kind::from_u8(kind_byte).ok_or(DecodeError::UnknownKind(kind_byte))?;
        decode_as(kind, payload, true)
    }
}

/// Validates and decodes a payload like [`Msg::decode`] but without the protocol
/// bounds of section 4: for converting the server's own frames (`protocol::json`),
/// where the receiver judges the values.
pub(crate) fn decode_unchecked(kind: Kind, payload: &[u8]) -> Result<Msg, DecodeError> {
    decode_as(kind, payload, false)
}

fn decode_as(kind: Kind, payload: &[u8], bounds: bool) -> Result<Msg, DecodeError> {
    if (payload.as_ptr() as usize).is_multiple_of(ALIGN) {
        return Msg::from_aligned(kind, payload, bounds);
    }
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    Msg::from_aligned(kind, &aligned, bounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Msg) {
        let frame = m.to_frame(7);
        let d = frame::decode(&frame, 1 << 20).unwrap().unwrap();
        assert_eq!(d.header.kind, m.kind().as_u8());
        assert_eq!(d.header.request_id, 7);
        assert_eq!(Msg::decode(d.header.kind, d.payload).unwrap(), m);
    }

    #[test]
    fn frames_are_exact_whatever_the_scratch_held_before() {
        let big = Msg::from(Notice {
            group: "support".into(),
            text: "t".repeat(3000),
            ..Notice::default()
        });
        let small = Msg::from(Accepted {
            client_msg_id: 3,
            seq: 9,
            ..Accepted::default()
        });
        for m in [&big, &small, &big, &small] {
            let frame = m.to_frame(5);
            let header = FrameHeader::new(m.kind().as_u8(), 0, 5);
            assert_eq!(frame, frame::encode(header, &m.to_payload()));
            round_trip(m.clone());
        }
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(
            Hello {
                protocol: 1,
                token: "a.b.c".into(),
                client: "test/1".into(),
                resume: vec![Cursor {
                    conversation: 9,
                    last_seq: 4,
                }],
            }
            .into(),
        );
        round_trip(
            Send {
                content_type: content::TEXT,
                conversation: 0,
                client_msg_id: 1,
                group: String::new(),
                body: "你好, I need help with my order".into(),
            }
            .into(),
        );
        round_trip(
            HistoryPage {
                more: true,
                conversation: 3,
                entries: vec![Entry {
                    seq: 1,
                    time_ms: 2,
                    kind: Kind::Send.as_u8(),
                    sender_role: role::VISITOR,
                    content_type: content::TEXT,
                    flags: 0,
                    sender: "v1".into(),
                    body: "hi".into(),
                }],
            }
            .into(),
        );
        round_trip(
            Refresh {
                token: "a.b.c".into(),
            }
            .into(),
        );
        round_trip(
            Refreshed {
                expires_ms: 4_102_444_800_000,
            }
            .into(),
        );
        round_trip(
            Ping {
                stamp: 42,
                data: vec![1, 2, 3],
            }
            .into(),
        );
        round_trip(
            Error {
                code: 403,
                retryable: false,
                conversation: 5,
                message: "not yours".into(),
            }
            .into(),
        );
    }

    #[test]
    fn error_status_mirrors_code() {
        let f = Msg::from(Error {
            code: 404,
            ..Error::default()
        })
        .to_frame(1);
        let d = frame::decode(&f, 1 << 20).unwrap().unwrap();
        assert_eq!(d.header.status, 404);
    }

    #[test]
    fn misaligned_payload_is_copied_not_rejected() {
        let ping = Ping {
            stamp: 5,
            data: b"abc".to_vec(),
        };
        let p = Msg::from(ping.clone()).to_payload();
        let mut shifted = vec![0u8; p.len() + 1];
        shifted[1..].copy_from_slice(&p);
        assert_eq!(Msg::decode(3, &shifted[1..]).unwrap(), ping.into());
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let p = Msg::from(Hello {
            token: "x".repeat(40),
            ..Hello::default()
        })
        .to_payload();
        for cut in 0..p.len() {
            assert!(Msg::decode(1, &p[..cut]).is_err(), "cut {cut}");
        }
        assert!(matches!(
            Msg::decode(99, &p),
            Err(DecodeError::UnknownKind(99))
        ));
    }

    #[test]
    fn bounds_are_enforced() {
        let p = Msg::from(Rate {
            score: 9,
            ..Rate::default()
        })
        .to_payload();
        assert!(matches!(
            Msg::decode(Kind::Rate.as_u8(), &p),
            Err(DecodeError::Bound { field: "score", .. })
        ));
        // A refreshed token is bounded like the handshake's.
        for (len, ok) in [(MAX_TOKEN, true), (MAX_TOKEN + 1, false)] {
            let p = Msg::from(Refresh {
                token: "t".repeat(len),
            })
            .to_payload();
            let got = Msg::decode(Kind::Refresh.as_u8(), &p);
            assert_eq!(got.is_ok(), ok, "{len}: {got:?}");
            if !ok {
                assert!(matches!(
                    got,
                    Err(DecodeError::Bound { field: "token", .. })
                ));
            }
        }
    }
}
