//! Conversation shards (sans-IO): each conversation lives on exactly one shard, so its
//! events are totally ordered and its state needs no lock.
//!
//! A conversation's state is derived from its transcript of events, each with the next
//! gap-free sequence number; the shard also enforces who may do what (participants
//! only, tenants never mixed), makes `Send` idempotent by client message id, and
//! delivers every event to every connection of both participants.

use std::collections::HashMap;

use super::{Effect, RouterMsg, Sender, ShardMsg, UserRef, refuse, to_all};
use crate::handoff::ConnId;
use crate::protocol::messages::{self, Entry, Msg, role};
use crate::protocol::{ErrorCode, Kind};

/// Tunables of the conversation core.
#[derive(Debug, Clone)]
pub(crate) struct ShardSettings {
    /// At most one "typing" relay per participant per this many milliseconds.
    pub typing_interval_ms: u64,
    /// Most entries in one `HistoryPage`.
    pub history_page_max: usize,
    /// Largest payload a `HistoryPage` may take (stay within the announced frame limit).
    pub max_frame: usize,
}

/// Where a conversation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Waiting for an agent.
    Queued,
    /// An agent serves it.
    Assigned,
    /// Over; may be rated once.
    Closed,
}

#[derive(Debug)]
struct Conversation {
    tenant: String,
    group: String,
    visitor: UserRef,
    visitor_name: String,
    visitor_conns: Vec<ConnId>,
    agent: Option<UserRef>,
    agent_conns: Vec<ConnId>,
    state: State,
    rated: bool,
    /// The transcript; entry `i` has sequence number `i + 1`.
    events: Vec<Entry>,
    /// (sender, client message id) → sequence number, for idempotent `Send`.
    sent: HashMap<(String, u64), u64>,
    /// Last relayed "typing" per user (milliseconds).
    typing: HashMap<String, u64>,
    /// Every agent who ever served it (tests check deliveries against this).
    #[cfg(test)]
    served_by: Vec<UserRef>,
}

impl Conversation {
    fn next_seq(&self) -> u64 {
        self.events.len() as u64 + 1
    }

    /// Every connection of both participants.
    fn all_conns(&self) -> Vec<ConnId> {
        let mut v = self.visitor_conns.clone();
        v.extend_from_slice(&self.agent_conns);
        v
    }

    /// The connections of the side opposite to `who`.
    fn other_side(&self, who: &UserRef) -> &[ConnId] {
        if *who == self.visitor {
            &self.agent_conns
        } else {
            &self.visitor_conns
        }
    }

    fn is_agent(&self, who: &UserRef) -> bool {
        self.agent.as_ref() == Some(who)
    }

    fn append(&mut self, mut entry: Entry) -> u64 {
        entry.seq = self.next_seq();
        self.events.push(entry);
        self.events.len() as u64
    }
}

/// One shard's conversations.
#[derive(Debug)]
pub(crate) struct Shard {
    settings: ShardSettings,
    convs: HashMap<u64, Conversation>,
}

impl Shard {
    /// An empty shard.
    pub fn new(settings: ShardSettings) -> Self {
        Self {
            settings,
            convs: HashMap::new(),
        }
    }

    /// The transcript of a conversation (tests).
    #[cfg(test)]
    pub fn transcript(&self, conversation: u64) -> Option<&[Entry]> {
        self.convs.get(&conversation).map(|c| c.events.as_slice())
    }

    /// Conversations currently served, per agent (tests).
    #[cfg(test)]
    pub fn agent_loads(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for c in self.convs.values() {
            if let (State::Assigned, Some(a)) = (c.state, &c.agent) {
                *m.entry(a.user.clone()).or_default() += 1;
            }
        }
        m
    }

    /// Whether `who` is or was a participant (tests).
    #[cfg(test)]
    pub fn was_participant(&self, conversation: u64, who: &UserRef) -> bool {
        self.convs
            .get(&conversation)
            .is_some_and(|c| c.visitor == *who || c.served_by.contains(who))
    }

    /// Panics if a conversation's state is inconsistent (tests).
    #[cfg(test)]
    pub fn check_invariants(&self) {
        for (id, c) in &self.convs {
            for (i, e) in c.events.iter().enumerate() {
                assert_eq!(e.seq, i as u64 + 1, "conversation {id}: sequence gap");
            }
            match c.state {
                State::Assigned => assert!(c.agent.is_some(), "conversation {id}: no agent"),
                State::Queued => assert!(c.agent.is_none(), "conversation {id}: queued with agent"),
                State::Closed => {}
            }
        }
    }

    /// Applies one message at wall-clock time `now_ms` (Unix milliseconds).
    pub fn handle(&mut self, msg: ShardMsg, now_ms: u64, out: &mut Vec<Effect>) {
        match msg {
            ShardMsg::Open {
                conversation,
                visitor,
                visitor_name,
                group,
                visitor_conns,
            } => {
                self.convs.entry(conversation).or_insert(Conversation {
                    tenant: visitor.tenant.clone(),
                    group,
                    visitor,
                    visitor_name,
                    visitor_conns,
                    agent: None,
                    agent_conns: Vec::new(),
                    state: State::Queued,
                    rated: false,
                    events: Vec::new(),
                    sent: HashMap::new(),
                    typing: HashMap::new(),
                    #[cfg(test)]
                    served_by: Vec::new(),
                });
            }
            ShardMsg::Assign {
                conversation,
                agent,
                agent_name,
                agent_conns,
                group,
                note,
            } => self.assign(
                conversation,
                agent,
                agent_name,
                agent_conns,
                group,
                note,
                now_ms,
                out,
            ),
            ShardMsg::Requeued {
                conversation,
                group,
            } => {
                let Some(c) = self.convs.get_mut(&conversation) else {
                    return;
                };
                if c.state == State::Closed {
                    return;
                }
                c.state = State::Queued;
                c.agent = None;
                c.agent_conns.clear();
                // No transcript entry: a requeue reaches no client as an event, and a
                // sequence number nobody is sent would look like a gap. The next
                // Assigned entry records where it went.
                c.group = group;
            }
            ShardMsg::Conns {
                conversation,
                who,
                conns,
            } => {
                let Some(c) = self.convs.get_mut(&conversation) else {
                    return;
                };
                if who == c.visitor {
                    c.visitor_conns = conns;
                } else if c.is_agent(&who) {
                    c.agent_conns = conns;
                }
            }
            ShardMsg::Request { from, msg } => self.request(from, msg, now_ms, out),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn assign(
        &mut self,
        conversation: u64,
        agent: UserRef,
        agent_name: String,
        agent_conns: Vec<ConnId>,
        group: String,
        note: String,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let Some(c) = self.convs.get_mut(&conversation) else {
            return;
        };
        if c.state == State::Closed {
            // Closed while the assignment was on its way: hand the capacity back.
            out.push(Effect::Router(RouterMsg::Closed { conversation }));
            return;
        }
        c.state = State::Assigned;
        #[cfg(test)]
        c.served_by.push(agent.clone());
        c.agent = Some(agent.clone());
        c.agent_conns = agent_conns;
        c.group = group.clone();
        let seq = c.append(system_entry(
            Kind::Assigned,
            now_ms,
            &agent.user,
            agent_name.clone(),
        ));
        let frame = Msg::from(messages::Assigned {
            conversation,
            seq,
            agent: agent.user.clone(),
            agent_name,
            group: group.clone(),
            visitor: c.visitor.user.clone(),
            visitor_name: c.visitor_name.clone(),
        })
        .to_frame(0);
        to_all(out, &c.all_conns(), frame);
        if !note.is_empty() {
            // The note is for agents only: never in the visitor's transcript.
            let frame = Msg::from(messages::Transfer {
                conversation,
                to_agent: agent.user,
                to_group: group,
                note,
            })
            .to_frame(0);
            to_all(out, &c.agent_conns, frame);
        }
    }

    fn request(&mut self, from: Sender, msg: Msg, now_ms: u64, out: &mut Vec<Effect>) {
        let conversation = super::request_conversation(&msg);
        let Some(c) = self
            .convs
            .get_mut(&conversation)
            .filter(|c| c.tenant == from.who.tenant)
        else {
            // Another tenant's conversation does not exist, as far as this user knows.
            return refuse(out, &from, ErrorCode::NotFound, conversation);
        };
        let is_visitor = from.who == c.visitor && from.role == role::VISITOR;
        let is_agent = c.is_agent(&from.who);
        let participant = is_visitor || is_agent;
        match msg {
            Msg::History(h) => {
                // Agents of the group may read a queued conversation before claiming.
                let may_read = participant
                    || (c.state == State::Queued
                        && matches!(from.role, role::AGENT | role::BOT)
                        && from.groups.contains(&c.group));
                if !may_read {
                    return refuse(out, &from, ErrorCode::Forbidden, conversation);
                }
                let page = history_page(c, conversation, &h, &self.settings);
                reply(out, &from, page);
            }
            _ if !participant => refuse(out, &from, ErrorCode::Forbidden, conversation),
            Msg::Send(s) => {
                if c.state == State::Closed {
                    return refuse(out, &from, ErrorCode::Conflict, conversation);
                }
                let key = (from.who.user.clone(), s.client_msg_id);
                let seq = match c.sent.get(&key) {
                    // A resend: same answer, nothing stored or delivered twice.
                    Some(&seq) => seq,
                    None => {
                        let seq = c.append(Entry {
                            seq: 0,
                            time_ms: now_ms,
                            kind: Kind::Send.as_u8(),
                            sender_role: from.role,
                            content_type: s.content_type,
                            flags: 0,
                            sender: from.who.user.clone(),
                            body: s.body.clone(),
                        });
                        c.sent.insert(key, seq);
                        let frame = Msg::from(messages::Deliver {
                            sender_role: from.role,
                            content_type: s.content_type,
                            flags: 0,
                            conversation,
                            seq,
                            time_ms: now_ms,
                            client_msg_id: s.client_msg_id,
                            sender: from.who.user.clone(),
                            body: s.body,
                        })
                        .to_frame(0);
                        let others: Vec<ConnId> = c
                            .all_conns()
                            .into_iter()
                            .filter(|&k| k != from.conn)
                            .collect();
                        to_all(out, &others, frame);
                        seq
                    }
                };
                let time_ms = c.events.get(seq as usize - 1).map_or(now_ms, |e| e.time_ms);
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
            }
            Msg::Receipt(r) => {
                let frame = Msg::from(messages::Receipt {
                    user: from.who.user.clone(),
                    ..r
                })
                .to_frame(0);
                to_all(out, c.other_side(&from.who), frame);
            }
            Msg::Typing(t) => {
                let last = c.typing.get(&from.who.user).copied();
                let due = last
                    .is_none_or(|l| now_ms.saturating_sub(l) >= self.settings.typing_interval_ms);
                if t.typing && !due {
                    return;
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
            }
            Msg::Transfer(t) => {
                if !is_agent {
                    return refuse(out, &from, ErrorCode::Forbidden, conversation);
                }
                if c.state != State::Assigned {
                    return refuse(out, &from, ErrorCode::Conflict, conversation);
                }
                out.push(Effect::Router(RouterMsg::Transfer {
                    conversation,
                    group: c.group.clone(),
                    from: from.who.clone(),
                    to_agent: t.to_agent,
                    to_group: t.to_group,
                    note: t.note,
                }));
            }
            Msg::Close(cl) => {
                if c.state == State::Closed {
                    return refuse(out, &from, ErrorCode::Conflict, conversation);
                }
                c.state = State::Closed;
                let seq = c.append(Entry {
                    seq: 0,
                    time_ms: now_ms,
                    kind: Kind::Close.as_u8(),
                    sender_role: from.role,
                    content_type: 0,
                    flags: 0,
                    sender: from.who.user.clone(),
                    body: cl.reason.clone(),
                });
                let frame = Msg::from(messages::Close {
                    conversation,
                    seq,
                    reason: cl.reason,
                })
                .to_frame(0);
                to_all(out, &c.all_conns(), frame);
                out.push(Effect::Router(RouterMsg::Closed { conversation }));
            }
            Msg::Rate(r) => {
                if !is_visitor {
                    return refuse(out, &from, ErrorCode::Forbidden, conversation);
                }
                if c.state != State::Closed || c.rated {
                    return refuse(out, &from, ErrorCode::Conflict, conversation);
                }
                c.rated = true;
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
            }
            _ => refuse(out, &from, ErrorCode::BadRequest, conversation),
        }
    }
}

fn system_entry(kind: Kind, now_ms: u64, sender: &str, body: String) -> Entry {
    Entry {
        seq: 0,
        time_ms: now_ms,
        kind: kind.as_u8(),
        sender_role: role::SYSTEM,
        content_type: 0,
        flags: 0,
        sender: sender.to_owned(),
        body,
    }
}

fn reply(out: &mut Vec<Effect>, to: &Sender, msg: Msg) {
    super::send(out, to.conn, msg.to_frame(to.rid));
}

/// Up to `limit` entries before `before_seq` (0: the latest), oldest first, kept
/// within the frame limit.
fn history_page(
    c: &Conversation,
    conversation: u64,
    h: &messages::History,
    s: &ShardSettings,
) -> Msg {
    let end = if h.before_seq == 0 {
        c.events.len()
    } else {
        (h.before_seq.saturating_sub(1) as usize).min(c.events.len())
    };
    let limit = usize::from(h.limit).clamp(1, s.history_page_max.max(1));
    let mut budget = s.max_frame.saturating_sub(64);
    let mut start = end;
    // Walk back from the newest wanted entry while the page stays within the limits.
    while start > 0 && end - start < limit {
        let Some(e) = c.events.get(start - 1) else {
            break;
        };
        let cost = 40 + e.sender.len() + e.body.len();
        if cost > budget {
            break;
        }
        budget -= cost;
        start -= 1;
    }
    messages::HistoryPage {
        more: start > 0,
        conversation,
        entries: c
            .events
            .get(start..end)
            .map(<[Entry]>::to_vec)
            .unwrap_or_default(),
    }
    .into()
}
