//! Client requests about an existing conversation, one function per kind.

use super::assist::refuse_screened;
use super::profile::refuse_profile;
use super::{Conversation, GroupEvent, INACTIVE, Shard, ShardStats, State, reply};
use crate::protocol::messages::{self, Entry, Msg, role};
use crate::protocol::profile::ProfileError;
use crate::protocol::{ErrorCode, Kind};
use crate::service::{
    Effect, RouterMsg, Sender, is_staff_role, refuse, request_conversation, to_all, to_both,
};

/// What a request's sender is to its conversation.
#[derive(Debug, Clone, Copy)]
struct Party {
    /// The conversation's visitor (with the visitor role).
    visitor: bool,
    /// The agent serving it.
    agent: bool,
}

impl Shard {
    /// A client request about an existing conversation: checked against the
    /// conversation's tenant and participants, then handled by its kind.
    pub(super) fn request(&mut self, from: Sender, msg: Msg, now_ms: u64, out: &mut Vec<Effect>) {
        let msg = match msg {
            Msg::History(h) => return self.request_history(from, h, out),
            msg => msg,
        };
        let conversation = request_conversation(&msg);
        let Some(c) = self
            .convs
            .get_mut(&conversation)
            .filter(|c| c.tenant == from.who.tenant && !c.orphan)
        else {
            // Another tenant's conversation does not exist, as far as this user knows.
            return refuse(out, &from, ErrorCode::NotFound, conversation);
        };
        let party = Party {
            visitor: from.who == c.visitor && from.role == role::VISITOR,
            agent: c.is_agent(&from.who),
        };
        // The gateway itself (an HTTP API request acting as the system: no token
        // carries this role) may write into and close any conversation of its tenant.
        let system = from.role == role::SYSTEM
            && matches!(msg, Msg::Send(_) | Msg::Close(_) | Msg::Transfer(_));
        if !party.visitor && !party.agent && !system {
            return refuse(out, &from, ErrorCode::Forbidden, conversation);
        }
        // Each kind refuses what its conversation's state does not allow.
        let refused = match msg {
            Msg::Send(_) | Msg::Close(_) if c.state == State::Closed => Some(ErrorCode::Conflict),
            // The visitor's attributes: its visitor's (the system's as the visitor's).
            Msg::Send(s) if s.content_type == messages::content::PROFILE => {
                match c.profile_sender(&from, party.visitor) {
                    Ok(writer) => return self.send(writer, s, now_ms, out, None),
                    Err(code) => Some(code),
                }
            }
            Msg::Send(s) => return self.send(from, s, now_ms, out, None),
            Msg::Close(cl) => {
                let closer = (from.role, from.who.user.clone());
                return self.close(conversation, closer, cl.reason, now_ms, out);
            }
            Msg::Note(n) => match note(c, &from, n, party) {
                Ok(s) => return self.send(from, s, now_ms, out, Some(messages::flags::PRIVATE)),
                Err(code) => Some(code),
            },
            Msg::Suggest(sg) => suggest(c, &self.assist, &from, sg, out),
            Msg::Receipt(r) => receipt(c, &from, r, out),
            Msg::Typing(t) => typing(c, &from, t, self.settings.typing_interval_ms, now_ms, out),
            Msg::Transfer(t) => transfer(c, &from, t, party, out),
            Msg::WrongReply(w) => {
                let faq = self.assist.faq();
                let reader = self.reader.as_ref();
                wrong_reply(c, &from, w, party, reader, faq.as_deref(), &mut self.stats)
            }
            Msg::Rate(r) => {
                let refused = rate(c, &from, r, party, now_ms, &mut self.stats);
                if refused.is_none() {
                    self.log_entry(conversation, 0);
                }
                refused
            }
            _ => Some(ErrorCode::BadRequest),
        };
        if let Some(code) = refused {
            refuse(out, &from, code, conversation);
        }
    }

    /// Closes an open conversation: the `Close` event by `closer` (role, user id) with
    /// `reason`, the `Close` frame to every connection of both participants, and the
    /// router told.
    pub(super) fn close(
        &mut self,
        conversation: u64,
        (role, sender): (u8, String),
        reason: String,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let Some(c) = self
            .convs
            .get_mut(&conversation)
            .filter(|c| c.state != State::Closed)
        else {
            return;
        };
        c.state = State::Closed;
        c.closed_ms = now_ms;
        let seq = c.append(Entry {
            seq: 0,
            time_ms: now_ms,
            kind: Kind::Close.as_u8(),
            sender_role: role,
            content_type: 0,
            flags: 0,
            sender,
            body: reason.clone(),
        });
        let frame = Msg::from(messages::Close {
            conversation,
            seq,
            reason,
        })
        .to_frame(0);
        c.to_participants(out, None, frame);
        // A counter: a close a journal failure takes back stays counted.
        self.stats.closed += 1;
        out.push(Effect::Router(RouterMsg::Closed { conversation }));
        self.log_entry(conversation, 0);
    }

    /// The server closes a conversation by itself ([`crate::service::ShardMsg::SystemClose`]).
    pub(super) fn system_close(
        &mut self,
        conversation: u64,
        reason: String,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        if reason == INACTIVE
            && let Some(c) = self.convs.get(&conversation)
            && c.state != State::Closed
        {
            let inactive = GroupEvent::Inactive(c.group.clone());
            self.stats.groups.push(inactive);
        }
        self.close(
            conversation,
            (role::SYSTEM, String::new()),
            reason,
            now_ms,
            out,
        );
    }

    /// Stores a participant's `Send` (or answers a resend with its first `Accepted`).
    /// A new visitor message goes through the abuse filter first, unless `screened`
    /// carries the flags its screening already gave (a conversation's opener).
    pub(super) fn send(
        &mut self,
        from: Sender,
        s: messages::Send,
        now_ms: u64,
        out: &mut Vec<Effect>,
        screened: Option<u8>,
    ) {
        let conversation = s.conversation;
        let Some(c) = self.convs.get_mut(&conversation) else {
            return;
        };
        // A private note (`Note`): staff only, never screened, never answered by the FAQ.
        let note = screened == Some(messages::flags::PRIVATE);
        // The visitor's attributes: not chat, so its text is neither screened nor
        // answered.
        let profile = s.content_type == messages::content::PROFILE;
        let is_visitor = from.who == c.visitor && from.role == role::VISITOR;
        let stored = c.sent.get(&from.who.user, s.client_msg_id);
        let fresh = stored.is_none();
        // A new profile is checked against the merged one before anything is stored.
        let merged = match (fresh && profile).then(|| c.merged_profile(&s.body)) {
            Some(Err(e)) => {
                self.stats.profiles_refused += u64::from(e == ProfileError::MergedTooMany);
                return refuse_profile(out, &from, &e, conversation);
            }
            Some(Ok(p)) => Some(p),
            None => None,
        };
        // The abuse filter sees each new visitor message once, before it is stored:
        // dropped, refused or blocked ones change nothing.
        let mut flags = screened.unwrap_or(0);
        // A profile is not chat: its text is not screened, but a blocked visitor or
        // one over its rate is refused as for any other write.
        if fresh && is_visitor && screened.is_none() {
            let text = (!profile).then_some(s.body.as_str());
            match self.assist.screen(&from, text, now_ms, &mut self.stats) {
                Ok(f) => flags = f,
                Err(code) => return refuse_screened(out, &from, code, conversation),
            }
            // Waiting while nobody of its group is online: an offline message
            // (the opener's flag came from the router with the opening). The key is
            // built only for a waiting conversation: not on every message.
            if c.state == State::Queued
                && !profile
                && !self
                    .online_groups
                    .contains(&(c.tenant.clone(), c.group.clone()))
            {
                flags |= messages::flags::OFFLINE;
            }
        }
        // Where the visitor writes from now (a new connection may have another).
        if is_visitor && from.addr.is_some() {
            c.visitor_addr = from.addr;
        }
        // The visitor will not see it live: it may get it by email (a digest).
        if fresh && !note && is_staff_role(from.role) && c.visitor_conns.is_empty() {
            flags |= messages::flags::VISITOR_AWAY;
        }
        // An attachment's body is its JSON reference, a profile's the visitor's
        // attributes: nothing for the FAQ to answer.
        let faq_text = (fresh
            && is_visitor
            && c.state == State::Queued
            && s.content_type != messages::content::ATTACHMENT
            && !profile)
            .then(|| s.body.clone());
        let (seq, time_ms) = match stored {
            // A resend: same answer, nothing stored or delivered twice.
            Some(seq) => {
                let time_ms = c
                    .events
                    .get(seq, self.reader.as_ref())
                    .map_or(now_ms, |e| e.time_ms);
                (seq, time_ms)
            }
            None => {
                let seq = c.next_seq();
                let msg = Msg::from(messages::Deliver {
                    sender_role: from.role,
                    content_type: s.content_type,
                    flags,
                    conversation,
                    seq,
                    time_ms: now_ms,
                    client_msg_id: s.client_msg_id,
                    sender: from.who.user.clone(),
                    body: s.body,
                });
                let frame = msg.to_frame(0);
                // The transcript keeps the strings the frame was made of (the
                // message is always the `Deliver` built above).
                let (sender, body) = match msg {
                    Msg::Deliver(d) => (d.sender, d.body),
                    _ => Default::default(),
                };
                let kind = if note { Kind::Note } else { Kind::Send };
                c.append(Entry {
                    seq: 0,
                    time_ms: now_ms,
                    kind: kind.as_u8(),
                    sender_role: from.role,
                    content_type: s.content_type,
                    flags,
                    sender,
                    body,
                });
                c.sent.insert(&from.who.user, s.client_msg_id, seq);
                if flags & messages::flags::OFFLINE != 0 {
                    out.push(Effect::Router(RouterMsg::Offline { conversation }));
                }
                if let Some(p) = merged {
                    c.profile = p;
                }
                if !note && !c.answered && is_staff_role(from.role) {
                    c.answered = true;
                    let wait = now_ms.saturating_sub(c.opened_ms);
                    let first = GroupEvent::FirstReply(c.group.clone(), wait);
                    self.stats.groups.push(first);
                }
                if note {
                    to_both(out, &c.agent_conns, &[], Some(from.conn), frame);
                } else {
                    c.to_participants(out, Some(from.conn), frame);
                }
                (seq, now_ms)
            }
        };
        reply(
            out,
            &from,
            messages::Accepted {
                client_msg_id: s.client_msg_id,
                conversation,
                seq,
                time_ms,
            }
            .into(),
        );
        if fresh {
            self.log_entry(conversation, s.client_msg_id);
        }
        if let Some(text) = faq_text {
            self.auto_reply(conversation, &text, now_ms, out);
        }
    }
}

/// A private note by the serving agent or bot, as the `Send` it is stored as.
fn note(
    c: &Conversation,
    from: &Sender,
    n: messages::Note,
    party: Party,
) -> Result<messages::Send, ErrorCode> {
    if !party.agent || !matches!(from.role, role::AGENT | role::BOT) {
        return Err(ErrorCode::Forbidden);
    }
    // A resend of a stored note is answered even after the close.
    if c.state == State::Closed && c.sent.get(&from.who.user, n.client_msg_id).is_none() {
        return Err(ErrorCode::Conflict);
    }
    Ok(messages::Send {
        content_type: messages::content::TEXT,
        conversation: n.conversation,
        client_msg_id: n.client_msg_id,
        body: n.body,
        group: String::new(),
    })
}

/// Canned replies of the conversation's group starting with a prefix (staff only).
fn suggest(
    c: &Conversation,
    assist: &super::assist::Assist,
    from: &Sender,
    sg: messages::Suggest,
    out: &mut Vec<Effect>,
) -> Option<ErrorCode> {
    if !matches!(from.role, role::AGENT | role::BOT) {
        return Some(ErrorCode::Forbidden);
    }
    let items = if sg.faq {
        faq_hints(c, assist, &sg)
    } else {
        assist
            .canned
            .as_ref()
            .map(|lib| lib.suggest(&c.group, &sg.prefix, usize::from(sg.limit)))
            .unwrap_or_default()
    };
    let suggestions = messages::Suggestions {
        prefix: sg.prefix,
        items,
    };
    reply(out, from, suggestions.into());
    None
}

/// FAQ hints for a visitor's question (`Suggest` with `faq`): the closest entry of
/// the conversation's group or the global ones, if close enough to show an agent;
/// `uses` carries its similarity in thousandths, `id` is 0 (entries are named by
/// strings, not library numbers).
fn faq_hints(
    c: &Conversation,
    assist: &super::assist::Assist,
    sg: &messages::Suggest,
) -> Vec<messages::Suggestion> {
    let Some(faq) = assist.faq() else {
        return Vec::new();
    };
    faq.hint(&c.group, &sg.prefix)
        .map(|m| messages::Suggestion {
            id: 0,
            uses: (m.score.clamp(0.0, 1.0) * 1000.0).round() as u32,
            text: m.answer.to_owned(),
        })
        .into_iter()
        .collect()
}

/// A read receipt, relayed to the other side.
fn receipt(
    c: &Conversation,
    from: &Sender,
    r: messages::Receipt,
    out: &mut Vec<Effect>,
) -> Option<ErrorCode> {
    let frame = Msg::from(messages::Receipt {
        user: from.who.user.clone(),
        ..r
    })
    .to_frame(0);
    to_all(out, c.other_side(&from.who), frame);
    None
}

/// A "typing" indication, relayed to the other side at most once per
/// `interval_ms` per user (a stop always).
fn typing(
    c: &mut Conversation,
    from: &Sender,
    t: messages::Typing,
    interval_ms: u64,
    now_ms: u64,
    out: &mut Vec<Effect>,
) -> Option<ErrorCode> {
    let last = c.typing.get(&from.who.user).copied();
    let due = last.is_none_or(|l| now_ms.saturating_sub(l) >= interval_ms);
    if t.typing && !due {
        return None;
    }
    if t.typing {
        c.typing.insert(from.who.user.clone(), now_ms);
    } else {
        c.typing.remove(&from.who.user);
    }
    let frame = Msg::from(messages::Typing {
        user: from.who.user.clone(),
        ..t
    })
    .to_frame(0);
    to_all(out, c.other_side(&from.who), frame);
    None
}

/// The serving agent hands the conversation on: the router picks the next agent.
fn transfer(
    c: &Conversation,
    from: &Sender,
    t: messages::Transfer,
    party: Party,
    out: &mut Vec<Effect>,
) -> Option<ErrorCode> {
    let system = from.role == role::SYSTEM;
    if !party.agent && !system {
        return Some(ErrorCode::Forbidden);
    }
    if c.state != State::Assigned {
        return Some(ErrorCode::Conflict);
    }
    // The system hands the conversation over on behalf of the agent serving it.
    let giver = match (&c.agent, system) {
        (Some(agent), true) => agent.clone(),
        _ => from.who.clone(),
    };
    out.push(Effect::Router(RouterMsg::Transfer {
        conversation: t.conversation,
        group: c.group.clone(),
        from: giver,
        to_agent: t.to_agent,
        to_group: t.to_group,
        note: t.note,
    }));
    None
}

/// Characters of an answer quoted in the log line of a wrong automatic reply.
const QUOTED_ANSWER: usize = 80;

/// The serving agent marks the automatic reply at `w.seq` wrong: counted, and logged
/// with the visitor's message it answered (the entry just before it) and the FAQ entry
/// it came from (as the library matches it now), so the library can be improved.
/// Nothing is stored or sent.
fn wrong_reply(
    c: &Conversation,
    from: &Sender,
    w: messages::WrongReply,
    party: Party,
    reader: Option<&crate::journal::JournalReader>,
    faq: Option<&crate::assist::FaqIndex>,
    stats: &mut ShardStats,
) -> Option<ErrorCode> {
    if !party.agent || !matches!(from.role, role::AGENT | role::BOT) {
        return Some(ErrorCode::Forbidden);
    }
    let auto =
        |e: &Entry| e.kind == Kind::Send.as_u8() && e.flags & messages::flags::AUTO_REPLY != 0;
    let Some(answer) = c.events.get(w.seq, reader).filter(auto) else {
        return Some(ErrorCode::BadRequest);
    };
    let query = w
        .seq
        .checked_sub(1)
        .and_then(|s| c.events.get(s, reader))
        .filter(|e| e.sender_role == role::VISITOR)
        .map(|e| e.body)
        .unwrap_or_default();
    let entry = faq
        .and_then(|f| f.closest(&c.group, &query))
        .map(|m| m.id.to_owned());
    stats.faq_wrong += 1;
    let quoted: String = answer.body.chars().take(QUOTED_ANSWER).collect();
    tracing::info!(
        conversation = w.conversation,
        seq = w.seq,
        agent = %from.who.user,
        group = %c.group,
        faq = entry.as_deref().unwrap_or(""),
        query = %query,
        answer = %quoted,
        comment = %w.comment,
        "faq: automatic reply marked wrong"
    );
    None
}

/// The visitor rates a closed conversation, once: a `Rate` entry (the caller
/// journals it).
fn rate(
    c: &mut Conversation,
    from: &Sender,
    r: messages::Rate,
    party: Party,
    now_ms: u64,
    stats: &mut ShardStats,
) -> Option<ErrorCode> {
    if !party.visitor {
        return Some(ErrorCode::Forbidden);
    }
    if c.state != State::Closed || c.rated {
        return Some(ErrorCode::Conflict);
    }
    c.rated = true;
    stats
        .groups
        .push(GroupEvent::Rated(c.group.clone(), r.score));
    // A rating entry carries its score (1–5) in `content_type`.
    c.append(Entry {
        seq: 0,
        time_ms: now_ms,
        kind: Kind::Rate.as_u8(),
        sender_role: from.role,
        content_type: r.score,
        flags: 0,
        sender: from.who.user.clone(),
        body: r.comment,
    });
    None
}
