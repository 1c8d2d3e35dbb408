//! The visitor profile (`PROFILE` messages, content type 6): who may write one, how
//! a conversation merges them, and the API's read of a conversation with its
//! profile. The body's syntax and the merge are [`crate::protocol::profile`]'s.

use std::sync::Arc;

use super::{Conversation, Shard};
use crate::handoff::Command;
use crate::protocol::messages::{self, Entry, Msg, content, role};
use crate::protocol::profile::{self, Profile, ProfileError, ProfileUpdate};
use crate::protocol::{ErrorCode, Kind};
use crate::service::{Effect, Principal, Sender, is_staff_role, refuse};

impl Conversation {
    /// The profile with the `PROFILE` body `body` merged in (`None`: nothing left
    /// set); the conversation is not changed.
    pub(super) fn merged_profile(&self, body: &str) -> Result<Option<Box<Profile>>, ProfileError> {
        let update = ProfileUpdate::parse(body)?;
        profile::merged(self.profile.as_deref(), &update)
    }

    /// Merges a restored entry when it is a visitor's `PROFILE` message. One that
    /// does not parse or merge (no live shard stores such) changes nothing.
    pub(super) fn note_profile(&mut self, e: &Entry) {
        if !is_profile(e) {
            return;
        }
        match self.merged_profile(&e.body) {
            Ok(p) => self.profile = p,
            Err(error) => tracing::warn!(seq = e.seq, %error, "stored PROFILE entry not merged"),
        }
    }

    /// Who writes a `PROFILE` message into this conversation: its visitor; the
    /// gateway (an API request) writes it as the visitor. Anyone else: 403.
    pub(super) fn profile_sender(&self, from: &Sender, visitor: bool) -> Result<Sender, ErrorCode> {
        if visitor {
            return Ok(from.clone());
        }
        if from.role != role::SYSTEM {
            return Err(ErrorCode::Forbidden);
        }
        let principal = Principal {
            who: self.visitor.clone(),
            name: self.visitor_name.clone().into(),
            role: role::VISITOR,
            groups: Box::default(),
            addr: None,
        };
        Ok(Sender {
            id: Arc::new(principal),
            conn: from.conn,
            rid: from.rid,
        })
    }
}

/// Whether an entry is a visitor's `PROFILE` message (the only ones merged).
pub(super) fn is_profile(e: &Entry) -> bool {
    e.kind == Kind::Send.as_u8()
        && e.content_type == content::PROFILE
        && e.sender_role == role::VISITOR
}

/// Answers a `PROFILE` the merge refuses: 400 with the reason.
pub(super) fn refuse_profile(
    out: &mut Vec<Effect>,
    from: &Sender,
    e: &ProfileError,
    conversation: u64,
) {
    tracing::debug!(conversation, user = %from.who.user, error = %e, "PROFILE refused");
    let frame = Msg::from(messages::Error {
        code: ErrorCode::BadRequest.as_u16(),
        retryable: false,
        conversation,
        message: e.to_string(),
    })
    .to_frame(from.rid);
    out.push(Effect::Reactor(Command::Send {
        conn: from.conn,
        frame,
    }));
}

impl Shard {
    /// `GET /api/v1/conversations/{id}`: the conversation's `ConversationInfo`
    /// fields (as in `ConversationList`) with `visitor_profile`, the merged profile
    /// `{name, email, fields}` (members only when set), as JSON. Another tenant's:
    /// 404.
    pub(super) fn info(&mut self, from: Sender, conversation: u64, out: &mut Vec<Effect>) {
        let Some(c) = self
            .convs
            .get(&conversation)
            .filter(|c| c.tenant == from.who.tenant && !c.orphan)
        else {
            return refuse(out, &from, ErrorCode::NotFound, conversation);
        };
        // An agent (its own token) sees only a conversation assigned to it now.
        if is_staff_role(from.role) && c.agent.as_ref() != Some(&from.who) {
            return refuse(out, &from, ErrorCode::NotFound, conversation);
        }
        let list = Msg::from(messages::ConversationList {
            more: false,
            next_after: conversation,
            items: vec![Self::info_of(conversation, c)],
        });
        let item = crate::protocol::json::frame_fields_json(&list.to_frame(0))
            .ok()
            .and_then(|(_, fields)| serde_json::from_slice::<serde_json::Value>(&fields).ok())
            .and_then(|mut v| v.get_mut("items")?.get_mut(0).map(serde_json::Value::take));
        let Some(serde_json::Value::Object(mut item)) = item else {
            // The shard built the message: failing to convert it is a bug.
            tracing::error!(conversation, "no JSON form for a ConversationInfo");
            return refuse(out, &from, ErrorCode::Internal, conversation);
        };
        let profile = c.profile.as_deref().map(Profile::to_value);
        item.insert(
            "visitor_profile".into(),
            profile.unwrap_or_else(|| serde_json::json!({})),
        );
        item.insert(
            "visitor_address".into(),
            c.visitor_addr
                .map_or(serde_json::Value::Null, |a| a.to_string().into()),
        );
        let mut body = serde_json::to_vec(&item).unwrap_or_default();
        body.push(b'\n');
        out.push(Effect::Reactor(Command::Answer {
            conn: from.conn,
            rid: from.rid,
            body: body.into(),
        }));
    }
}
