//! The API's routes: method, path, query and body → the protocol message a request
//! stands for and the scope it needs (`proto-spec/openapi.yaml` documents them).

use super::Scope;
use super::query::{QueryError, number, params};
use crate::http::head::Method;
use crate::protocol::Msg;
use crate::protocol::messages::{self, conversation_state};

/// Largest JavaScript-safe integer: ids travel as strings, but a number in a query
/// is still read as one.
const MAX_ID: u64 = u64::MAX;

/// A routed request: the message it stands for and the scope it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// What the request needs its credential to grant.
    pub scope: Scope,
    /// The protocol request to hand to the service.
    pub msg: Msg,
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
}

impl RouteError {
    /// The HTTP status that answers it.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::Method { .. } => 405,
            Self::Query(_) | Self::PathId(_) => 400,
        }
    }
}

/// Routes one request (`path` without its query). `HEAD` is routed as `GET`.
pub fn route(method: Method, path: &str, query: Option<&str>) -> Result<Call, RouteError> {
    let rest = path
        .strip_prefix(super::PREFIX)
        .ok_or(RouteError::NotFound)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let get = matches!(method, Method::Get | Method::Head);
    match segments.as_slice() {
        ["conversations"] => {
            if !get {
                return Err(RouteError::Method { allow: "GET, HEAD" });
            }
            list_conversations(query)
        }
        ["conversations", id, "messages"] => {
            if !get {
                return Err(RouteError::Method { allow: "GET, HEAD" });
            }
            let conversation = conversation_id(id)?;
            history(conversation, query)
        }
        _ => Err(RouteError::NotFound),
    }
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
    Ok(Call {
        scope: Scope::ConversationsRead,
        msg: Msg::from(messages::ListConversations {
            limit: u16::try_from(limit).unwrap_or(u16::MAX),
            state,
            after: number(arg(3), "after", MAX_ID, "a conversation id")?.unwrap_or(0),
            updated_since_ms: number(arg(4), "updated_since_ms", MAX_ID, "ms since 1970")?
                .unwrap_or(0),
            group: text(1, "group")?,
            agent: text(2, "agent")?,
        }),
    })
}

/// `GET /api/v1/conversations/{id}/messages`: a page of its transcript.
fn history(conversation: u64, query: Option<&str>) -> Result<Call, RouteError> {
    let v = params(query, &["before_seq", "limit"])?;
    let arg = |i: usize| v.get(i).and_then(|x| x.as_deref());
    let limit = number(arg(1), "limit", u64::from(u16::MAX), "from 1 to 65535")?
        .unwrap_or(50)
        .max(1);
    Ok(Call {
        scope: Scope::ConversationsRead,
        msg: Msg::from(messages::History {
            limit: u16::try_from(limit).unwrap_or(u16::MAX),
            conversation,
            before_seq: number(arg(0), "before_seq", MAX_ID, "a sequence number")?.unwrap_or(0),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversations_route_to_list_conversations() {
        let call = route(
            Method::Get,
            "/api/v1/conversations",
            Some("state=queued&group=sales&limit=5&after=7"),
        )
        .unwrap();
        assert_eq!(call.scope, Scope::ConversationsRead);
        let Msg::ListConversations(q) = call.msg else {
            panic!("{:?}", call.msg);
        };
        assert_eq!(
            (q.state, q.group.as_str(), q.limit, q.after),
            (conversation_state::QUEUED, "sales", 5, 7)
        );
        let Msg::ListConversations(q) = route(Method::Head, "/api/v1/conversations", None)
            .unwrap()
            .msg
        else {
            panic!();
        };
        assert_eq!(
            (q.state, q.limit, q.after),
            (conversation_state::ANY, 100, 0)
        );
    }

    #[test]
    fn messages_route_to_history() {
        let call = route(
            Method::Get,
            "/api/v1/conversations/42/messages",
            Some("before_seq=9&limit=3"),
        )
        .unwrap();
        assert_eq!(
            call.msg,
            Msg::from(messages::History {
                limit: 3,
                conversation: 42,
                before_seq: 9
            })
        );
    }

    #[test]
    fn bad_routes_say_why() {
        fn e(m: Method, p: &str, q: Option<&str>) -> RouteError {
            route(m, p, q).unwrap_err()
        }
        assert_eq!(e(Method::Get, "/api/v1/nope", None), RouteError::NotFound);
        assert_eq!(
            e(Method::Get, "/api/v1/conversations/", None),
            RouteError::NotFound
        );
        assert_eq!(e(Method::Get, "/elsewhere", None), RouteError::NotFound);
        assert_eq!(e(Method::Post, "/api/v1/conversations", None).status(), 405);
        for id in ["0", "x", "-1", "18446744073709551616", ""] {
            let path = format!("/api/v1/conversations/{id}/messages");
            let err = e(Method::Get, &path, None);
            assert_eq!(err.status(), 400, "{id}");
        }
        assert_eq!(
            e(Method::Get, "/api/v1/conversations", Some("state=lost")).status(),
            400
        );
        assert_eq!(
            e(Method::Get, "/api/v1/conversations", Some("limit=1001")).status(),
            400
        );
        assert_eq!(
            e(Method::Get, "/api/v1/conversations", Some("lmit=1")).status(),
            400
        );
    }
}
