//! The API's routes: method, path, query and body → the protocol message a request
//! stands for and the scope it needs (`proto-spec/openapi.yaml` documents them).

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Scope;
use super::query::{QueryError, number, params};
use crate::http::head::{Method, Request};
use crate::protocol::messages::{self, conversation_state, role};
use crate::protocol::profile::ProfileUpdate;
use crate::protocol::{DecodeError, Msg};

/// Largest JavaScript-safe integer: ids travel as strings, but a number in a query
/// is still read as one.
const MAX_ID: u64 = u64::MAX;

/// A routed request: the message it stands for and the scope it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// What the request needs its credential to grant.
    pub scope: Scope,
    /// What to ask the service.
    pub op: Op,
    /// Who the request acts as.
    pub acting: Acting,
    /// A `Send` without `Idempotency-Key`: the service gives it a fresh
    /// `client_msg_id` (so it is never taken for a resend).
    pub fresh_id: bool,
    /// How the reply becomes the answer.
    pub shape: Shape,
}

/// How the service's reply becomes the HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The reply's fields (the usual case).
    Fields,
    /// `GET /conversations/{id}/export`: every `HistoryPage` back to the first
    /// entry, as JSON Lines, oldest first.
    Export,
    /// `POST /conversations/{id}/attachments`: the reply's fields, as `Fields`; the
    /// reactor counts a refusal.
    Upload,
}

/// What an API request asks the service.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A protocol request, handled as a session's would be.
    Protocol(Msg),
    /// The tenant's agents and bots with their presence and load (of `group`, or
    /// all); the router answers with JSON.
    Agents {
        /// Only this group's (empty: all).
        group: String,
    },
    /// `POST /conversations/{id}/attachments`: store a file and send the message that
    /// references it (content type `ATTACHMENT`) as the uploader.
    Upload {
        /// The conversation.
        conversation: u64,
        /// The file name (checked).
        name: String,
        /// The media type (`Content-Type` without parameters, lower case; the
        /// reactor checked it against `api.attachment_types`).
        media_type: String,
        /// The content (the reactor moves the body in after routing).
        bytes: bytes::Bytes,
        /// The message's `client_msg_id` (from `Idempotency-Key`, else 0 with
        /// `fresh_id`).
        client_msg_id: u64,
    },
    /// `GET /conversations/{id}/attachments/{file}`: a file of the conversation.
    Download {
        /// The conversation.
        conversation: u64,
        /// The file's id (lower-case hex SHA-256).
        id: String,
    },
    /// `GET /conversations/{id}`: the conversation's `ConversationInfo` fields and
    /// its `visitor_profile`; its shard answers with JSON.
    Conversation {
        /// The conversation.
        conversation: u64,
    },
    /// Assign a queued conversation to a connected agent or bot (no protocol
    /// request does this: an agent claims for itself).
    Assign {
        /// The conversation.
        conversation: u64,
        /// The agent's or bot's user id.
        agent: String,
    },
}

impl Call {
    /// A protocol request needing `scope`, acting as `acting`, answered with the
    /// reply's fields.
    fn protocol(scope: Scope, acting: Acting, msg: impl Into<Msg>) -> Self {
        Call {
            scope,
            acting,
            fresh_id: false,
            shape: Shape::Fields,
            op: Op::Protocol(msg.into()),
        }
    }

    /// The protocol request, when the call is one.
    pub fn msg(&self) -> Option<&Msg> {
        match &self.op {
            Op::Protocol(m) => Some(m),
            Op::Assign { .. }
            | Op::Agents { .. }
            | Op::Upload { .. }
            | Op::Download { .. }
            | Op::Conversation { .. } => None,
        }
    }
}

/// Who an API request acts as in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acting {
    /// The credential's own principal: a tenant-wide admin (reads, notices).
    Admin,
    /// The gateway itself (role `SYSTEM`), on behalf of the credential: may write
    /// into and close any conversation of its tenant.
    System,
    /// A visitor of the tenant (an "API channel": an email, SMS or chat bridge
    /// writes for its visitors): opens conversations and writes into its own.
    Visitor {
        /// The visitor's user id.
        user: String,
        /// Display name (for a conversation it opens).
        name: String,
    },
    /// An agent or bot of the tenant (role and user id): only where that user
    /// serves the conversation, as if it had sent the request itself.
    Staff {
        /// `role::AGENT` or `role::BOT`.
        role: u8,
        /// The user id.
        user: String,
    },
}

/// Why a request names no call; [`RouteError::status`] is the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No such route (404).
    #[error("no such API route")]
    NotFound,
    /// The route exists, not with this method (405).
    #[error("method not allowed here; allowed: {allow}")]
    Method {
        /// The methods it takes, for the `Allow` header.
        allow: &'static str,
    },
    /// A query that is not what the route takes (400).
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A path parameter that is not what the route takes (400).
    #[error("path parameter {0}: a conversation id is a decimal number from 1 to 2^64-1")]
    PathId(&'static str),
    /// A body that is not the JSON object the route takes (400).
    #[error("request body: {0}")]
    Body(String),
    /// A body that is not `application/json` (415).
    #[error("request body must be application/json")]
    MediaType,
    /// An attachment's name that is not a plain file name (400).
    #[error("query parameter name: {0}")]
    Name(#[from] crate::files::name::NameError),
    /// An attachment id that is not a lower-case hex SHA-256 (404: no such file).
    #[error("no such attachment: an id is 64 lower-case hex digits")]
    FileId,
}

impl RouteError {
    /// The HTTP status that answers it.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound | Self::FileId => 404,
            Self::Method { .. } => 405,
            Self::Query(_) | Self::PathId(_) | Self::Body(_) | Self::Name(_) => 400,
            Self::MediaType => 415,
        }
    }
}

/// Routes one request with its `body`. `HEAD` is routed as `GET`.
pub fn route(req: &Request, body: &[u8]) -> Result<Call, RouteError> {
    let (method, query) = (req.method, req.query.as_deref());
    let rest = req
        .path
        .strip_prefix(super::PREFIX)
        .ok_or(RouteError::NotFound)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let get = matches!(method, Method::Get | Method::Head);
    let post = method == Method::Post;
    const WRITE: RouteError = RouteError::Method { allow: "POST" };
    const BOTH: RouteError = RouteError::Method {
        allow: "GET, HEAD, POST",
    };
    let json = || -> Result<&[u8], RouteError> {
        let media = req.content_type.as_deref().unwrap_or_default();
        let essence = media.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(RouteError::MediaType);
        }
        Ok(body)
    };
    let call = match segments.as_slice() {
        ["conversations"] if get => list_conversations(query)?,
        ["conversations"] if post => {
            params(query, &[])?;
            open(json()?, req.idempotency_key.as_deref())?
        }
        ["conversations"] => return Err(BOTH),
        ["conversations", id] if get => {
            params(query, &[])?;
            Call {
                scope: Scope::ConversationsRead,
                acting: Acting::Admin,
                fresh_id: false,
                shape: Shape::Fields,
                op: Op::Conversation {
                    conversation: conversation_id(id)?,
                },
            }
        }
        ["conversations", _] => return Err(RouteError::Method { allow: "GET, HEAD" }),
        ["conversations", id, "messages"] if get => history(conversation_id(id)?, query)?,
        ["conversations", id, "messages"] if post => {
            params(query, &[])?;
            post_message(
                conversation_id(id)?,
                json()?,
                req.idempotency_key.as_deref(),
            )?
        }
        ["conversations", _, "messages"] => return Err(BOTH),
        ["conversations", id, "export"] if get => {
            params(query, &[])?;
            Call {
                shape: Shape::Export,
                ..history(conversation_id(id)?, Some("limit=65535"))?
            }
        }
        ["conversations", _, "export"] => return Err(RouteError::Method { allow: "GET, HEAD" }),
        ["conversations", id, "visitor"] if method == Method::Put => {
            params(query, &[])?;
            put_visitor(
                conversation_id(id)?,
                json()?,
                req.idempotency_key.as_deref(),
            )?
        }
        ["conversations", _, "visitor"] => return Err(RouteError::Method { allow: "PUT" }),
        ["conversations", id, "close"] if post => {
            params(query, &[])?;
            // Every field is optional: no body at all is fine.
            let body = if body.is_empty() { body } else { json()? };
            close(conversation_id(id)?, body)?
        }
        ["conversations", _, "close"] => return Err(WRITE),
        ["conversations", id, "transfer"] if post => {
            params(query, &[])?;
            transfer(conversation_id(id)?, json()?)?
        }
        ["conversations", id, "assign"] if post => {
            params(query, &[])?;
            assign(conversation_id(id)?, json()?)?
        }
        ["conversations", _, "transfer" | "assign"] => return Err(WRITE),
        ["conversations", id, "attachments"] if post => {
            upload(conversation_id(id)?, req, query, body)?
        }
        ["conversations", _, "attachments"] => return Err(WRITE),
        ["conversations", id, "attachments", file] if get => {
            params(query, &[])?;
            let conversation = conversation_id(id)?;
            if !crate::files::store::valid_id(file) {
                return Err(RouteError::FileId);
            }
            Call {
                scope: Scope::ConversationsRead,
                acting: Acting::Admin,
                fresh_id: false,
                shape: Shape::Fields,
                op: Op::Download {
                    conversation,
                    id: (*file).to_owned(),
                },
            }
        }
        ["conversations", _, "attachments", _] => {
            return Err(RouteError::Method { allow: "GET, HEAD" });
        }
        ["agents"] if get => {
            let v = params(query, &["group"])?;
            let group = v
                .into_iter()
                .next()
                .flatten()
                .unwrap_or_default()
                .into_owned();
            Call {
                scope: Scope::AgentsRead,
                acting: Acting::Admin,
                fresh_id: false,
                shape: Shape::Fields,
                op: Op::Agents { group },
            }
        }
        ["agents"] => return Err(RouteError::Method { allow: "GET, HEAD" }),
        ["notices"] if post => {
            params(query, &[])?;
            notice(json()?)?
        }
        ["notices"] => return Err(WRITE),
        _ => return Err(RouteError::NotFound),
    };
    if let Some(msg) = call.msg() {
        check_bounds(msg)?;
    }
    Ok(call)
}

/// The protocol's bounds (PROTOCOL.md section 4) hold for an API-built message as
/// for a decoded one: checked by the same decoder, on the message's own archive.
fn check_bounds(msg: &Msg) -> Result<(), RouteError> {
    let frame = msg.to_frame(0);
    let Some(d) = crate::frame::decode(&frame, crate::frame::MAX_PAYLOAD_LIMIT)
        .ok()
        .flatten()
    else {
        return Err(RouteError::Body("message does not encode".into()));
    };
    match Msg::decode(d.header.kind, d.payload) {
        Ok(_) => Ok(()),
        Err(DecodeError::Bound { field, reason, .. }) => {
            Err(RouteError::Body(format!("{field}: {reason}")))
        }
        Err(e) => Err(RouteError::Body(e.to_string())),
    }
}

/// A strict JSON body: unknown fields and wrong types are errors.
fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, RouteError> {
    // serde would also take a struct's fields from a JSON array: only objects here.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(RouteError::Body("must be a JSON object".into()));
    }
    serde_json::from_slice(body).map_err(|e| RouteError::Body(e.to_string()))
}

/// Who a write acts as, from a body's `sender_role` and `sender`.
fn acting(sender_role: Option<&str>, sender: Option<String>) -> Result<Acting, RouteError> {
    let staff = |role| match &sender {
        Some(user) if !user.is_empty() => Ok(Acting::Staff {
            role,
            user: user.clone(),
        }),
        _ => Err(RouteError::Body(
            "`sender` (the user id) is required with sender_role agent or bot".into(),
        )),
    };
    match sender_role {
        None | Some("system") if sender.is_none() => Ok(Acting::System),
        None | Some("system") => Err(RouteError::Body(
            "`sender` is only for sender_role agent or bot".into(),
        )),
        Some("agent") => staff(role::AGENT),
        Some("bot") => staff(role::BOT),
        Some("visitor") => match sender {
            Some(user) if !user.is_empty() => Ok(Acting::Visitor {
                user,
                name: String::new(),
            }),
            _ => Err(RouteError::Body(
                "`sender` (the user id) is required with sender_role visitor".into(),
            )),
        },
        Some(_) => Err(RouteError::Body(
            "`sender_role`: one of system, agent, bot, visitor".into(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostMessage {
    body: String,
    #[serde(default)]
    content_type: Option<u8>,
    #[serde(default)]
    sender_role: Option<String>,
    #[serde(default)]
    sender: Option<String>,
}

/// The `client_msg_id` of an `Idempotency-Key`: the same key, the same id.
pub fn idempotency_id(key: &str) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(id).max(1)
}

/// `POST /api/v1/conversations/{id}/messages`.
fn post_message(conversation: u64, body: &[u8], key: Option<&str>) -> Result<Call, RouteError> {
    let m: PostMessage = parse_body(body)?;
    check_key(key)?;
    let content_type = m.content_type.unwrap_or(messages::content::TEXT);
    let send = messages::Send {
        content_type,
        conversation,
        client_msg_id: key.map_or(0, idempotency_id),
        group: String::new(),
        body: m.body,
    };
    let acting = acting(m.sender_role.as_deref(), m.sender)?;
    Ok(Call {
        fresh_id: key.is_none(),
        ..Call::protocol(Scope::MessagesWrite, acting, send)
    })
}

/// `PUT /api/v1/conversations/{id}/visitor`: the body is a `PROFILE` object,
/// stored (compact) as the conversation's visitor's `Send` with content type 6;
/// the shard writes it as the visitor ([`Acting::System`] sends it there).
fn put_visitor(conversation: u64, body: &[u8], key: Option<&str>) -> Result<Call, RouteError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| RouteError::Body("must be a JSON object in UTF-8".into()))?;
    let update = ProfileUpdate::parse(text).map_err(|e| RouteError::Body(e.to_string()))?;
    check_key(key)?;
    let send = messages::Send {
        content_type: messages::content::PROFILE,
        conversation,
        client_msg_id: key.map_or(0, idempotency_id),
        group: String::new(),
        body: update.to_json(),
    };
    Ok(Call {
        fresh_id: key.is_none(),
        ..Call::protocol(Scope::MessagesWrite, Acting::System, send)
    })
}

/// Whether `path` is an attachment route (`conversations/{id}/attachments`, or
/// `.../attachments/{file}`): the routes a page of a site calls across origins (the
/// visitor widget uploads and shows files), so the only ones answered with CORS.
pub fn is_attachment_path(path: &str) -> bool {
    path.strip_prefix(super::PREFIX)
        .and_then(|p| p.strip_prefix("conversations/"))
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(_, rest)| {
            rest == "attachments"
                || rest
                    .strip_prefix("attachments/")
                    .is_some_and(|f| !f.is_empty() && !f.contains('/'))
        })
}

/// Whether a request is an attachment upload (its body limit is
/// `api.max_attachment_bytes`, and its `Content-Type` is checked before the body).
pub fn is_upload(req: &Request) -> bool {
    req.method == Method::Post
        && req
            .path
            .strip_prefix(super::PREFIX)
            .and_then(|p| p.strip_prefix("conversations/"))
            .and_then(|p| p.split_once('/'))
            .is_some_and(|(_, rest)| rest == "attachments")
}

/// The media type of a request: its `Content-Type` without parameters, in lower case
/// (empty without one).
pub fn media_type(req: &Request) -> String {
    let media = req.content_type.as_deref().unwrap_or_default();
    media
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// `POST /api/v1/conversations/{id}/attachments?name=<file name>`: the body is the
/// file (its bytes go into [`Op::Upload`] after routing).
fn upload(
    conversation: u64,
    req: &Request,
    query: Option<&str>,
    body: &[u8],
) -> Result<Call, RouteError> {
    let v = params(query, &["name"])?;
    let name = v
        .into_iter()
        .next()
        .flatten()
        .ok_or(QueryError::Value {
            name: "name",
            why: "the file name is required",
        })?
        .into_owned();
    crate::files::name::check(&name)?;
    if body.is_empty() {
        return Err(RouteError::Body("an attachment cannot be empty".into()));
    }
    let key = req.idempotency_key.as_deref();
    check_key(key)?;
    Ok(Call {
        scope: Scope::MessagesWrite,
        acting: Acting::Admin,
        fresh_id: key.is_none(),
        shape: Shape::Upload,
        op: Op::Upload {
            conversation,
            name,
            media_type: media_type(req),
            bytes: bytes::Bytes::new(),
            client_msg_id: key.map_or(0, idempotency_id),
        },
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostClose {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    sender_role: Option<String>,
    #[serde(default)]
    sender: Option<String>,
}

/// `POST /api/v1/conversations/{id}/close`.
fn close(conversation: u64, body: &[u8]) -> Result<Call, RouteError> {
    let c: PostClose = if body.is_empty() {
        parse_body(b"{}")?
    } else {
        parse_body(body)?
    };
    Ok(Call::protocol(
        Scope::ConversationsWrite,
        acting(c.sender_role.as_deref(), c.sender)?,
        messages::Close {
            conversation,
            seq: 0,
            reason: c.reason,
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostOpen {
    visitor: String,
    #[serde(default)]
    visitor_name: String,
    #[serde(default)]
    group: String,
    body: String,
    #[serde(default)]
    content_type: Option<u8>,
}

/// `POST /api/v1/conversations`: a visitor's first message (the API channel), which
/// continues the visitor's open conversation in the group or opens one.
fn open(body: &[u8], key: Option<&str>) -> Result<Call, RouteError> {
    let o: PostOpen = parse_body(body)?;
    check_key(key)?;
    if o.visitor.is_empty() || o.visitor.len() > crate::auth::MAX_SUB_BYTES {
        return Err(RouteError::Body("`visitor`: 1 to 256 bytes".into()));
    }
    if o.visitor_name.len() > messages::MAX_SHORT {
        return Err(RouteError::Body(
            "`visitor_name`: at most 1024 bytes".into(),
        ));
    }
    let send = messages::Send {
        content_type: o.content_type.unwrap_or(messages::content::TEXT),
        conversation: 0,
        client_msg_id: key.map_or(0, idempotency_id),
        group: o.group,
        body: o.body,
    };
    let visitor = Acting::Visitor {
        user: o.visitor,
        name: o.visitor_name,
    };
    Ok(Call {
        fresh_id: key.is_none(),
        ..Call::protocol(Scope::ConversationsWrite, visitor, send)
    })
}

fn check_key(key: Option<&str>) -> Result<(), RouteError> {
    match key {
        Some(k) if k.is_empty() || k.len() > 255 => {
            Err(RouteError::Body("Idempotency-Key: 1 to 255 bytes".into()))
        }
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostTransfer {
    #[serde(default)]
    to_agent: String,
    #[serde(default)]
    to_group: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    sender_role: Option<String>,
    #[serde(default)]
    sender: Option<String>,
}

/// `POST /api/v1/conversations/{id}/transfer`.
fn transfer(conversation: u64, body: &[u8]) -> Result<Call, RouteError> {
    let t: PostTransfer = parse_body(body)?;
    let acting = acting(t.sender_role.as_deref(), t.sender)?;
    if matches!(acting, Acting::Visitor { .. }) {
        return Err(RouteError::Body("a visitor cannot transfer".into()));
    }
    let transfer = messages::Transfer {
        conversation,
        to_agent: t.to_agent,
        to_group: t.to_group,
        note: t.note,
    };
    Ok(Call::protocol(Scope::ConversationsWrite, acting, transfer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostAssign {
    agent: String,
}

/// `POST /api/v1/conversations/{id}/assign`.
fn assign(conversation: u64, body: &[u8]) -> Result<Call, RouteError> {
    let a: PostAssign = parse_body(body)?;
    if a.agent.is_empty() || a.agent.len() > crate::auth::MAX_SUB_BYTES {
        return Err(RouteError::Body("`agent`: 1 to 256 bytes".into()));
    }
    Ok(Call {
        scope: Scope::ConversationsWrite,
        acting: Acting::Admin,
        fresh_id: false,
        shape: Shape::Fields,
        op: Op::Assign {
            conversation,
            agent: a.agent,
        },
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostNotice {
    text: String,
    #[serde(default)]
    group: String,
}

/// `POST /api/v1/notices`.
fn notice(body: &[u8]) -> Result<Call, RouteError> {
    let n: PostNotice = parse_body(body)?;
    Ok(Call::protocol(
        Scope::NoticesWrite,
        Acting::Admin,
        messages::Notice {
            time_ms: 0,
            group: n.group,
            from: String::new(),
            text: n.text,
        },
    ))
}

fn conversation_id(s: &str) -> Result<u64, RouteError> {
    match number(Some(s), "id", MAX_ID, "") {
        Ok(Some(n)) if n > 0 => Ok(n),
        _ => Err(RouteError::PathId("id")),
    }
}

/// `GET /api/v1/conversations`: a page of the tenant's conversations.
fn list_conversations(query: Option<&str>) -> Result<Call, RouteError> {
    let names = [
        "state",
        "group",
        "agent",
        "after",
        "updated_since_ms",
        "limit",
    ];
    let v = params(query, &names)?;
    let arg = |i: usize| v.get(i).and_then(|x| x.as_deref());
    let state = match arg(0) {
        None | Some("any") => conversation_state::ANY,
        Some("open") => conversation_state::OPEN,
        Some("queued") => conversation_state::QUEUED,
        Some("assigned") => conversation_state::ASSIGNED,
        Some("closed") => conversation_state::CLOSED,
        Some(_) => {
            return Err(QueryError::Value {
                name: "state",
                why: "one of any, open, queued, assigned, closed",
            }
            .into());
        }
    };
    let text = |i: usize, name: &'static str| -> Result<String, RouteError> {
        let s = arg(i).unwrap_or_default();
        if s.len() > messages::MAX_SHORT {
            return Err(QueryError::Value {
                name,
                why: "too long",
            }
            .into());
        }
        Ok(s.to_owned())
    };
    let limit = number(
        arg(5),
        "limit",
        crate::service::session::MAX_LIST as u64,
        "from 1 to 1000",
    )?
    .unwrap_or(100)
    .max(1);
    Ok(Call::protocol(
        Scope::ConversationsRead,
        Acting::Admin,
        messages::ListConversations {
            limit: u16::try_from(limit).unwrap_or(u16::MAX),
            state,
            after: number(arg(3), "after", MAX_ID, "a conversation id")?.unwrap_or(0),
            updated_since_ms: number(arg(4), "updated_since_ms", MAX_ID, "ms since 1970")?
                .unwrap_or(0),
            group: text(1, "group")?,
            agent: text(2, "agent")?,
        },
    ))
}

/// `GET /api/v1/conversations/{id}/messages`: a page of its transcript.
fn history(conversation: u64, query: Option<&str>) -> Result<Call, RouteError> {
    let v = params(query, &["before_seq", "limit"])?;
    let arg = |i: usize| v.get(i).and_then(|x| x.as_deref());
    let limit = number(arg(1), "limit", u64::from(u16::MAX), "from 1 to 65535")?
        .unwrap_or(50)
        .max(1);
    Ok(Call::protocol(
        Scope::ConversationsRead,
        Acting::Admin,
        messages::History {
            limit: u16::try_from(limit).unwrap_or(u16::MAX),
            conversation,
            before_seq: number(arg(0), "before_seq", MAX_ID, "a sequence number")?.unwrap_or(0),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{HeadLimits, parse};

    fn req(method: &str, target: &str, headers: &str) -> Request {
        let head = format!("{method} {target} HTTP/1.1\r\nHost: h\r\n{headers}\r\n");
        parse(head.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn get(target: &str) -> Result<Call, RouteError> {
        route(&req("GET", target, ""), b"")
    }

    fn post(target: &str, body: &str) -> Result<Call, RouteError> {
        route(
            &req("POST", target, "Content-Type: application/json\r\n"),
            body.as_bytes(),
        )
    }

    #[test]
    fn conversations_route_to_list_conversations() {
        let call = get("/api/v1/conversations?state=queued&group=sales&limit=5&after=7").unwrap();
        assert_eq!(call.scope, Scope::ConversationsRead);
        assert_eq!(call.acting, Acting::Admin);
        let Some(Msg::ListConversations(q)) = call.msg() else {
            panic!("{call:?}");
        };
        assert_eq!(
            (q.state, q.group.as_str(), q.limit, q.after),
            (conversation_state::QUEUED, "sales", 5, 7)
        );
        let head = route(&req("HEAD", "/api/v1/conversations", ""), b"").unwrap();
        let Some(Msg::ListConversations(q)) = head.msg() else {
            panic!();
        };
        assert_eq!(
            (q.state, q.limit, q.after),
            (conversation_state::ANY, 100, 0)
        );
    }

    #[test]
    fn messages_route_to_history() {
        let call = get("/api/v1/conversations/42/messages?before_seq=9&limit=3").unwrap();
        assert_eq!(
            call.msg(),
            Some(&Msg::from(messages::History {
                limit: 3,
                conversation: 42,
                before_seq: 9
            }))
        );
    }

    #[test]
    fn posted_messages_become_sends_acting_as_asked() {
        let call = post("/api/v1/conversations/7/messages", r#"{"body":"hi"}"#).unwrap();
        assert_eq!(call.scope, Scope::MessagesWrite);
        assert_eq!(call.acting, Acting::System);
        assert!(call.fresh_id);
        let Some(Msg::Send(s)) = call.msg() else {
            panic!()
        };
        assert_eq!(
            (s.conversation, s.body.as_str(), s.content_type),
            (7, "hi", 1)
        );
        let r = req(
            "POST",
            "/api/v1/conversations/7/messages",
            "Content-Type: application/json; charset=utf-8\r\nIdempotency-Key: k1\r\n",
        );
        let body = br#"{"body":"hi","sender_role":"agent","sender":"alice"}"#;
        let call = route(&r, body).unwrap();
        assert!(!call.fresh_id);
        assert_eq!(
            call.acting,
            Acting::Staff {
                role: role::AGENT,
                user: "alice".into()
            }
        );
        let Some(Msg::Send(s)) = call.msg() else {
            panic!()
        };
        assert_eq!(s.client_msg_id, idempotency_id("k1"));
        assert_ne!(idempotency_id("k1"), idempotency_id("k2"));
    }

    #[test]
    fn the_visitor_profile_routes_to_a_profile_send_and_one_conversation_to_its_shard() {
        let r = req(
            "PUT",
            "/api/v1/conversations/7/visitor",
            "Content-Type: application/json\r\nIdempotency-Key: p1\r\n",
        );
        let call = route(&r, br#"{ "name": "Ann", "fields": {"plan": null} }"#).unwrap();
        assert_eq!(call.scope, Scope::MessagesWrite);
        assert_eq!(call.acting, Acting::System);
        assert!(!call.fresh_id);
        let Some(Msg::Send(s)) = call.msg() else {
            panic!("{call:?}")
        };
        assert_eq!(
            (s.content_type, s.conversation, s.client_msg_id),
            (messages::content::PROFILE, 7, idempotency_id("p1"))
        );
        assert_eq!(
            s.body, r#"{"fields":{"plan":null},"name":"Ann"}"#,
            "compact"
        );
        let put = |body: &str| {
            let r = req(
                "PUT",
                "/api/v1/conversations/7/visitor",
                "Content-Type: application/json\r\n",
            );
            route(&r, body.as_bytes())
        };
        assert!(put(r#"{"name":"Ann"}"#).unwrap().fresh_id);
        for bad in ["{}", r#"{"nick":"x"}"#, r#"{"email":"x"}"#, "[]", "\u{ff}"] {
            let e = put(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
        let e = post("/api/v1/conversations/7/visitor", r#"{"name":"Ann"}"#).unwrap_err();
        assert_eq!(e, RouteError::Method { allow: "PUT" });
        let e = route(&req("PUT", "/api/v1/conversations/0/visitor", ""), b"{}").unwrap_err();
        assert_eq!(e.status(), 400);
        // A content type 6 message is a profile wherever it is posted.
        let e = post(
            "/api/v1/conversations/7/messages",
            r#"{"body":"{}","content_type":6}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("body"), "{e}");
        assert_eq!(
            get("/api/v1/conversations/7").unwrap().op,
            Op::Conversation { conversation: 7 }
        );
    }

    #[test]
    fn close_and_notice_route() {
        let call = post("/api/v1/conversations/7/close", r#"{"reason":"done"}"#).unwrap();
        assert_eq!(call.scope, Scope::ConversationsWrite);
        assert!(
            matches!(call.msg(), Some(Msg::Close(c)) if c.conversation == 7 && c.reason == "done")
        );
        let empty = route(
            &req(
                "POST",
                "/api/v1/conversations/7/close",
                "Content-Type: application/json\r\n",
            ),
            b"",
        );
        assert!(empty.is_ok());
        let call = post("/api/v1/notices", r#"{"text":"lunch","group":"sales"}"#).unwrap();
        assert_eq!(call.scope, Scope::NoticesWrite);
        assert!(
            matches!(call.msg(), Some(Msg::Notice(n)) if n.text == "lunch" && n.group == "sales")
        );
    }

    #[test]
    fn open_transfer_and_assign_route() {
        let call = post(
            "/api/v1/conversations",
            r#"{"visitor":"sms:+4917","visitor_name":"Ann","group":"sales","body":"hello"}"#,
        )
        .unwrap();
        assert_eq!(call.scope, Scope::ConversationsWrite);
        assert_eq!(
            call.acting,
            Acting::Visitor {
                user: "sms:+4917".into(),
                name: "Ann".into()
            }
        );
        assert!(
            matches!(call.msg(), Some(Msg::Send(s)) if s.conversation == 0 && s.group == "sales")
        );
        let call = post(
            "/api/v1/conversations/3/transfer",
            r#"{"to_group":"billing"}"#,
        )
        .unwrap();
        assert_eq!(call.acting, Acting::System);
        assert!(matches!(call.msg(), Some(Msg::Transfer(t)) if t.to_group == "billing"));
        let bad = post(
            "/api/v1/conversations/3/transfer",
            r#"{"sender_role":"visitor","sender":"v"}"#,
        );
        assert_eq!(bad.unwrap_err().status(), 400);
        let call = post("/api/v1/conversations/3/assign", r#"{"agent":"bob"}"#).unwrap();
        assert_eq!(
            call.op,
            Op::Assign {
                conversation: 3,
                agent: "bob".into()
            }
        );
        assert_eq!(
            post("/api/v1/conversations/3/assign", "{}")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            post("/api/v1/conversations", r#"{"body":"x"}"#)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn bad_bodies_say_why() {
        for (body, what) in [
            (r#"{"body":"hi","extra":1}"#, "unknown field"),
            (r#"{"body":5}"#, "invalid type"),
            (r#"{"body":"hi""#, "EOF"),
            (r#"{"body":"hi","sender_role":"agent"}"#, "required"),
            (r#"{"body":"hi","sender_role":"king"}"#, "one of"),
            (r#"{"body":"hi","sender_role":"visitor"}"#, "required"),
            (r#"{"body":"hi","sender":"x"}"#, "only for"),
            (r#"{"body":""}"#, "body"),
            (r#"["hi"]"#, "object"),
        ] {
            let e = post("/api/v1/conversations/7/messages", body).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            assert!(e.to_string().contains(what), "{body}: {e}");
        }
        let big = format!(r#"{{"body":"{}"}}"#, "x".repeat(messages::MAX_BODY + 1));
        assert_eq!(
            post("/api/v1/conversations/7/messages", &big)
                .unwrap_err()
                .status(),
            400
        );
        let plain = route(
            &req("POST", "/api/v1/notices", "Content-Type: text/plain\r\n"),
            b"{}",
        );
        assert_eq!(plain.unwrap_err(), RouteError::MediaType);
    }

    #[test]
    fn attachments_route_to_upload_and_download() {
        let r = req(
            "POST",
            "/api/v1/conversations/7/attachments?name=a%20b.png",
            "Content-Type: Image/PNG; x=1\r\nIdempotency-Key: k\r\n",
        );
        assert!(is_upload(&r));
        assert_eq!(media_type(&r), "image/png");
        let call = route(&r, b"\x89PNG").unwrap();
        assert_eq!(call.scope, Scope::MessagesWrite);
        assert!(!call.fresh_id);
        assert_eq!(
            call.op,
            Op::Upload {
                conversation: 7,
                name: "a b.png".into(),
                media_type: "image/png".into(),
                bytes: bytes::Bytes::new(),
                client_msg_id: idempotency_id("k"),
            }
        );
        for (target, body, status) in [
            (
                "/api/v1/conversations/7/attachments?name=..",
                &b"x"[..],
                400,
            ),
            ("/api/v1/conversations/7/attachments?name=a%2Fb", b"x", 400),
            ("/api/v1/conversations/7/attachments?name=a%00", b"x", 400),
            ("/api/v1/conversations/7/attachments", b"x", 400),
            ("/api/v1/conversations/7/attachments?name=a", b"", 400),
            ("/api/v1/conversations/0/attachments?name=a", b"x", 400),
        ] {
            let r = req("POST", target, "Content-Type: image/png\r\n");
            assert_eq!(route(&r, body).unwrap_err().status(), status, "{target}");
        }
        let id = crate::files::store::sha256_hex(b"x");
        let call = get(&format!("/api/v1/conversations/7/attachments/{id}")).unwrap();
        assert_eq!(call.scope, Scope::ConversationsRead);
        assert_eq!(
            call.op,
            Op::Download {
                conversation: 7,
                id: id.clone()
            }
        );
        let upper = id.to_uppercase();
        let e = get(&format!("/api/v1/conversations/7/attachments/{upper}")).unwrap_err();
        assert_eq!(e.status(), 404);
        assert!(!is_upload(&req(
            "GET",
            "/api/v1/conversations/7/attachments",
            ""
        )));
        assert!(!is_upload(&req(
            "POST",
            "/api/v1/conversations/7/messages",
            ""
        )));
        assert_eq!(
            get("/api/v1/conversations/7/attachments")
                .unwrap_err()
                .status(),
            405
        );
    }

    #[test]
    fn bad_routes_say_why() {
        assert_eq!(get("/api/v1/nope").unwrap_err(), RouteError::NotFound);
        assert_eq!(
            get("/api/v1/conversations/").unwrap_err(),
            RouteError::PathId("id")
        );
        assert_eq!(
            get("/api/v1/conversations/1/nope").unwrap_err(),
            RouteError::NotFound
        );
        assert_eq!(
            route(&req("PUT", "/api/v1/conversations", ""), b"")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(get("/api/v1/notices").unwrap_err().status(), 405);
        for id in ["0", "x", "-1", "18446744073709551616", ""] {
            let err = get(&format!("/api/v1/conversations/{id}/messages")).unwrap_err();
            assert_eq!(err.status(), 400, "{id}");
        }
        for q in ["state=lost", "limit=1001", "lmit=1"] {
            let err = get(&format!("/api/v1/conversations?{q}")).unwrap_err();
            assert_eq!(err.status(), 400, "{q}");
        }
        assert_eq!(
            post("/api/v1/notices?x=1", r#"{"text":"a"}"#)
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn attachment_paths() {
        assert!(super::is_attachment_path(
            "/api/v1/conversations/7/attachments"
        ));
        assert!(super::is_attachment_path(
            "/api/v1/conversations/7/attachments/abc"
        ));
        assert!(!super::is_attachment_path(
            "/api/v1/conversations/7/attachments/"
        ));
        assert!(!super::is_attachment_path(
            "/api/v1/conversations/7/attachments/a/b"
        ));
        assert!(!super::is_attachment_path("/api/v1/conversations/7"));
        assert!(!super::is_attachment_path(
            "/api/v1/conversations/7/messages"
        ));
    }
}
