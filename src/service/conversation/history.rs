//! `History` requests: a page of the transcript, held back while its connection
//! owes too much output (see [`crate::service::deferred`]).

use super::outcome::Served;
use super::{Conversation, Shard, ShardSettings, State, Waiting};
use crate::handoff::{Command, ConnId};
use crate::journal::JournalReader;
use crate::protocol::messages::{self, Msg, role};
use crate::protocol::{ErrorCode, Kind};
use crate::service::{Effect, Sender, refuse};

impl Shard {
    /// Whether `History` requests wait (the worker then calls
    /// [`Shard::retry_deferred`] again soon, with or without new input).
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Serves the waiting `History` requests whose connections have room now, in
    /// order; drops those of connections that are gone.
    pub fn retry_deferred(&mut self, out: &mut Vec<Effect>) {
        if self.deferred.is_empty() {
            return;
        }
        let mut pass = self.deferred.take();
        // Connections found still owing too much: their later requests wait too.
        let mut blocked: Vec<ConnId> = Vec::new();
        while let Some(mut w) = pass.pop_front() {
            let conn = w.from.conn;
            if blocked.contains(&conn) {
                self.deferred.requeue(w);
                continue;
            }
            match self.history(&w.from, &w.history, w.needed, out) {
                Served::Done => self.deferred.done(conn),
                Served::Wait(needed) => {
                    w.needed = needed;
                    blocked.push(conn);
                    self.deferred.requeue(w);
                }
            }
        }
        self.count_waiting();
    }

    fn count_waiting(&mut self) {
        self.stats.history_waiting = Some(self.deferred.len() as u64);
    }

    /// A `History` request: served now, or held back behind the connection's output
    /// (and its earlier requests).
    pub(super) fn request_history(
        &mut self,
        from: Sender,
        h: messages::History,
        out: &mut Vec<Effect>,
    ) {
        let served = if self.deferred.has(from.conn) {
            Served::Wait(0)
        } else {
            self.history(&from, &h, 0, out)
        };
        let Served::Wait(needed) = served else {
            return;
        };
        self.stats.history_deferred += 1;
        let conn = from.conn;
        let waiting = Waiting {
            from,
            history: h,
            needed,
        };
        if self.deferred.push(waiting, self.settings.max_held).is_err() {
            tracing::info!(
                ?conn,
                "History requests waiting for a connection that reads nothing passed their \
                 bound; cutting it as a slow consumer"
            );
            out.push(Effect::Reactor(Command::Close {
                conn,
                code: Some(ErrorCode::SlowConsumer),
                farewell: None,
            }));
        }
        self.count_waiting();
    }

    /// Answers one `History` request unless its connection owes too much output to
    /// take the page (`Wait` with the page's size, 0 if not built), given that the
    /// page took `needed` bytes when last built. The page is charged to the
    /// connection in the ledger before it leaves.
    fn history(
        &mut self,
        from: &Sender,
        h: &messages::History,
        needed: u32,
        out: &mut Vec<Effect>,
    ) -> Served {
        let max = self.settings.max_pending;
        let owed = match self.ledger.as_ref().map(|l| l.owed(from.conn)) {
            // Closing or gone: the answer would be dropped.
            Some(None) => return Served::Done,
            Some(Some(owed)) => owed,
            None => 0,
        };
        // A connection that owes nothing always gets its page, however large.
        let no_room = |len: u32| owed > 0 && (owed >= max || owed.saturating_add(len) > max);
        if no_room(needed) {
            return Served::Wait(needed);
        }
        let conversation = h.conversation;
        let Some(c) = self
            .convs
            .get(&conversation)
            .filter(|c| c.tenant == from.who.tenant && !c.orphan)
        else {
            // Another tenant's conversation does not exist, as far as this user knows.
            refuse(out, from, ErrorCode::NotFound, conversation);
            return Served::Done;
        };
        let visitor = from.who == c.visitor && from.role == role::VISITOR;
        if !may_read(c, from) {
            refuse(out, from, ErrorCode::Forbidden, conversation);
            return Served::Done;
        }
        let page = history_page(
            c,
            conversation,
            h,
            &self.settings,
            self.reader.as_ref(),
            !visitor,
        );
        let Some(page) = page else {
            refuse(out, from, ErrorCode::StorageUnavailable, conversation);
            return Served::Done;
        };
        let frame = page.to_frame(from.rid);
        let Some(ledger) = &self.ledger else {
            crate::service::send(out, from.conn, frame);
            return Served::Done;
        };
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if no_room(len) {
            return Served::Wait(len);
        }
        if ledger.charge(from.conn, len) {
            out.push(Effect::Reactor(Command::SendCharged {
                conn: from.conn,
                frame,
            }));
        }
        Served::Done
    }
}

/// Whether `from` may read `c` (of its tenant): its visitor, its agent, an admin;
/// agents of the group may read a queued conversation before claiming it.
pub(super) fn may_read(c: &Conversation, from: &Sender) -> bool {
    (from.who == c.visitor && from.role == role::VISITOR)
        || c.is_agent(&from.who)
        || from.role == role::ADMIN
        || (c.state == State::Queued
            && matches!(from.role, role::AGENT | role::BOT)
            && from.groups.contains(&c.group))
}

/// Up to `limit` entries before `before_seq` (0: the latest), oldest first, kept
/// within the frame limit; `None` when entries that left memory cannot be read back.
/// Private notes are left out unless the reader is `staff`; the page then reaches
/// further back to stay full.
fn history_page(
    c: &Conversation,
    conversation: u64,
    h: &messages::History,
    s: &ShardSettings,
    reader: Option<&JournalReader>,
    staff: bool,
) -> Option<Msg> {
    let len = c.events.len();
    let mut end = if h.before_seq == 0 {
        len
    } else {
        h.before_seq.saturating_sub(1).min(len)
    };
    let limit = usize::from(h.limit).clamp(1, s.history_page_max.max(1)) as u64;
    // A visitor's page skips notes; past this many entries read, it goes out short
    // (`more` set) rather than reading back through a conversation of notes.
    let max_scan = limit.saturating_mul(8);
    let mut scanned = 0;
    let mut entries = Vec::new();
    // Without a journal the oldest entries of a long conversation are gone: the
    // history ends after them.
    let floor = c.events.forgotten();
    while end > floor && (entries.len() as u64) < limit && scanned < max_scan {
        let want = limit - entries.len() as u64;
        let from = end.saturating_sub(want).max(floor) + 1;
        let mut older = c.events.range(from, end, reader)?;
        scanned += end + 1 - from;
        if !staff {
            older.retain(|e| e.kind != Kind::Note.as_u8());
        }
        older.append(&mut entries);
        entries = older;
        end = from - 1;
    }
    // Walk back from the newest wanted entry while the page stays within the frame.
    let mut budget = s.max_frame.saturating_sub(64);
    let mut keep = 0;
    for e in entries.iter().rev() {
        let cost = 40 + e.sender.len() + e.body.len();
        if cost > budget {
            break;
        }
        budget -= cost;
        keep += 1;
    }
    let skip = entries.len() - keep;
    entries.drain(..skip);
    // Older entries exist (for a visitor: some may be notes only, and the next
    // page comes back empty).
    let more = skip > 0 || end > floor;
    Some(
        messages::HistoryPage {
            more,
            conversation,
            entries,
        }
        .into(),
    )
}
