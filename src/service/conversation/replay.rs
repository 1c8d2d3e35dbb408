//! What a resuming connection missed: the transcript after its cursor, and what came
//! between that replay and the connection joining the live lists.

use bytes::Bytes;

use super::{Conversation, MAX_CATCH_UP, Shard, State};
use crate::handoff::ConnId;
use crate::journal::JournalReader;
use crate::protocol::Kind;
use crate::protocol::messages::{self, Entry, Msg};
use crate::service::{Effect, Resume, ResumeAnswer, SessionReply, UserRef};

impl Conversation {
    /// The frame a transcript entry is replayed as (`None`: not replayed — a rating
    /// is seen only with `History`, a note only by `staff`).
    fn replay_frame(
        &self,
        conversation: u64,
        e: &Entry,
        client_msg_id: u64,
        staff: bool,
    ) -> Option<Bytes> {
        let msg: Msg = match Kind::from_u8(e.kind)? {
            Kind::Note if !staff => return None,
            Kind::Send | Kind::Note => messages::Deliver {
                sender_role: e.sender_role,
                content_type: e.content_type,
                flags: e.flags | messages::flags::REPLAY,
                conversation,
                seq: e.seq,
                time_ms: e.time_ms,
                client_msg_id,
                sender: e.sender.clone(),
                body: e.body.clone(),
            }
            .into(),
            Kind::Assigned => messages::Assigned {
                conversation,
                seq: e.seq,
                agent: e.sender.clone(),
                agent_name: e.body.clone(),
                group: self.group.clone(),
                visitor: self.visitor.user.clone(),
                visitor_name: self.visitor_name.clone(),
            }
            .into(),
            Kind::Close => messages::Close {
                conversation,
                seq: e.seq,
                reason: e.body.clone(),
            }
            .into(),
            _ => return None,
        };
        Some(msg.to_frame(0))
    }

    /// Frames of the entries after `after`, at most `budget` of them (`None`: more,
    /// or they cannot be read back).
    pub(super) fn replay(
        &self,
        conversation: u64,
        after: u64,
        budget: u64,
        reader: Option<&JournalReader>,
        staff: bool,
    ) -> Option<Vec<Bytes>> {
        let len = self.events.len();
        if after > len || len - after > budget {
            return None;
        }
        let ids = self.sent.ids_after(after);
        Some(
            self.events
                .range(after + 1, len, reader)?
                .iter()
                .filter_map(|e| {
                    let id = ids.get(&e.seq).copied().unwrap_or(0);
                    self.replay_frame(conversation, e, id, staff)
                })
                .collect(),
        )
    }
}

impl Shard {
    /// Answers a resuming session: for each cursor of a conversation `who` takes
    /// part in, the events after it (within `max_replay` for the whole reconnect).
    pub(super) fn resume(&mut self, r: Resume, out: &mut Vec<Effect>) {
        let Resume {
            conn,
            who,
            worker,
            cursors,
            max_replay,
        } = r;
        let who = &who;
        let mut budget = max_replay;
        // What one reconnect is replayed stays within what one connection may owe.
        let mut bytes_left = u64::from(self.settings.max_pending);
        let mut answers = Vec::with_capacity(cursors.len());
        for cur in &cursors {
            let mut answer = ResumeAnswer {
                conversation: cur.conversation,
                from_seq: cur.last_seq,
                recovered: false,
                frames: Vec::new(),
            };
            let c = self.convs.get_mut(&cur.conversation).filter(|c| {
                c.tenant == who.tenant && !c.orphan && (c.visitor == *who || c.is_agent(who))
            });
            if let Some(c) = c
                && let Some(frames) = c.replay(
                    cur.conversation,
                    cur.last_seq,
                    budget,
                    self.reader.as_ref(),
                    c.visitor != *who,
                )
                && let Some(left) =
                    bytes_left.checked_sub(frames.iter().map(|f| f.len() as u64).sum::<u64>())
            {
                bytes_left = left;
                budget -= c.events.len() - cur.last_seq;
                if c.state != State::Closed {
                    if c.catch_up.len() >= MAX_CATCH_UP {
                        c.catch_up.remove(0);
                    }
                    c.catch_up.push((conn, c.events.len()));
                }
                answer.recovered = true;
                answer.frames = frames;
            }
            answers.push(answer);
        }
        out.push(Effect::Session(
            worker,
            SessionReply::Resumed { conn, answers },
        ));
    }

    /// A participant's connection list changed: resumed connections that joined it
    /// get what happened since their replay.
    pub(super) fn conns(
        &mut self,
        conversation: u64,
        who: UserRef,
        conns: Vec<ConnId>,
        out: &mut Vec<Effect>,
    ) {
        let Some(c) = self.convs.get_mut(&conversation) else {
            return;
        };
        let mut caught = Vec::new();
        c.catch_up.retain(|(conn, after)| {
            let added = conns.contains(conn);
            if added {
                caught.push((*conn, *after));
            }
            !added
        });
        for (conn, after) in caught {
            // What happened between the replay and joining the live list.
            let staff = who != c.visitor;
            let frames = c.replay(conversation, after, u64::MAX, self.reader.as_ref(), staff);
            for frame in frames.unwrap_or_default() {
                crate::service::send(out, conn, frame);
            }
        }
        if who == c.visitor {
            c.visitor_conns = conns;
        } else if c.is_agent(&who) {
            c.agent_conns = conns;
        }
    }
}
