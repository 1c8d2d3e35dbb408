//! Conversation shards (sans-IO): each conversation lives on exactly one shard, so its
//! events are totally ordered and its state needs no lock.
//!
//! A conversation's state is derived from its transcript of events, each with the next
//! gap-free sequence number; the shard also enforces who may do what (participants
//! only, tenants never mixed), makes `Send` idempotent by client message id, and
//! delivers every event to every connection of both participants.

use std::collections::HashMap;

use bytes::Bytes;

use super::deferred::{Deferred, Waiting};
use super::record::{self, Body, Record, RecordError, RecordKind};
use super::sent::SentIds;
use super::transcript::Transcript;
use super::{
    Assignment, Effect, ResumeAnswer, RouterMsg, Sender, ShardMsg, UserRef, refuse, to_all, to_both,
};
use crate::assist::Verdict;
use crate::clock::UnixMs;
use crate::fasthash::{ClientMap, ServerMap};
use crate::handoff::ConnId;
use crate::journal::{JournalReader, Location};
use crate::protocol::messages::{self, Entry, Msg, role};
use crate::protocol::{ErrorCode, Kind};

/// The `Close` reason of a conversation closed for `routing.inactivity_close`.
pub(crate) const INACTIVE: &str = "inactive";

/// Resumed connections a conversation remembers until the router lists them (more
/// are connections that went away while resuming; the oldest is forgotten).
const MAX_CATCH_UP: usize = 16;

/// Tunables of the conversation core.
#[derive(Debug, Clone)]
pub(crate) struct ShardSettings {
    /// At most one "typing" relay per participant per this many milliseconds.
    pub typing_interval_ms: u64,
    /// Most entries in one `HistoryPage`.
    pub history_page_max: usize,
    /// Largest payload a `HistoryPage` may take (stay within the announced frame limit).
    pub max_frame: usize,
    /// `limits.max_pending_bytes`: while a connection owes this much output, its
    /// `HistoryPage`s wait (see [`super::deferred`]); it also bounds the bytes one
    /// reconnect is replayed.
    pub max_pending: u32,
    /// `limits.max_held_requests`: `History` requests one connection may have
    /// waiting.
    pub max_held: u32,
    /// Open conversations with no new event for this long are closed as inactive
    /// (0: never; see [`Shard::inactive`]).
    pub inactivity_ms: u64,
    /// Collect a journal [`Record`] for every state change ([`Shard::take_records`]).
    pub journal: bool,
}

impl ShardSettings {
    /// Conversation shard settings from a configuration.
    pub(crate) fn from_config(config: &crate::config::Config) -> Self {
        let r = &config.routing;
        let millis = crate::clock::millis;
        Self {
            typing_interval_ms: millis(r.typing_interval),
            history_page_max: usize::from(r.history_page_max),
            max_frame: config.limits.max_frame_bytes as usize,
            max_pending: config.limits.max_pending_bytes,
            max_held: config.limits.max_held_requests,
            inactivity_ms: millis(r.inactivity_close),
            journal: config.journal.enabled,
        }
    }
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
    /// An agent or bot has written in it (the first such message was measured for
    /// the first-reply metric).
    answered: bool,
    /// The transcript; entry `i` has sequence number `i + 1`.
    events: Transcript,
    /// (sender, client message id) → sequence number, for idempotent `Send`.
    sent: SentIds,
    /// Last relayed "typing" per user (milliseconds).
    typing: ClientMap<String, u64>,
    /// When it was opened or last queued (Unix milliseconds).
    since_ms: u64,
    /// When it was opened (Unix milliseconds).
    opened_ms: u64,
    /// When it was closed (Unix milliseconds; 0 while open).
    closed_ms: u64,
    /// Resumed connections not yet in the participants' lists, with the last `seq`
    /// they were replayed: when the router adds one, it gets what came since.
    catch_up: Vec<(ConnId, u64)>,
    /// Rebuilt by salvage without its opening record: its tenant is unknown, so no
    /// user may see it (kept, closed, until retention drops it).
    orphan: bool,
    /// Every agent who ever served it (tests check deliveries against this).
    #[cfg(test)]
    served_by: Vec<UserRef>,
}

impl Conversation {
    /// A queued conversation with no connections and no transcript yet.
    fn new(visitor: UserRef, visitor_name: String, group: String) -> Self {
        Conversation {
            tenant: visitor.tenant.clone(),
            group,
            visitor,
            visitor_name,
            visitor_conns: Vec::new(),
            agent: None,
            agent_conns: Vec::new(),
            state: State::Queued,
            rated: false,
            answered: false,
            events: Transcript::default(),
            sent: SentIds::default(),
            typing: ClientMap::default(),
            since_ms: 0,
            opened_ms: 0,
            closed_ms: 0,
            catch_up: Vec::new(),
            orphan: false,
            #[cfg(test)]
            served_by: Vec::new(),
        }
    }

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
    fn replay(
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

    fn next_seq(&self) -> u64 {
        self.events.len() + 1
    }

    /// Time of the latest event (or of the opening, before any).
    fn updated_ms(&self) -> u64 {
        self.events.last().map_or(self.opened_ms, |e| e.time_ms)
    }

    /// Sends `frame` to every connection of both participants but `except`.
    fn to_participants(&self, out: &mut Vec<Effect>, except: Option<ConnId>, frame: Bytes) {
        to_both(out, &self.visitor_conns, &self.agent_conns, except, frame);
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
        self.events.push(entry)
    }
}

/// What became of a `History` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// Answered (a page or an error), or dropped with its connection.
    Done,
    /// Its connection owes too much output; the page takes this many bytes (0: not
    /// built).
    Wait(u32),
}

/// One shard's conversations.
#[derive(Debug)]
pub(crate) struct Shard {
    settings: ShardSettings,
    convs: ServerMap<u64, Conversation>,
    /// Records of the state changes since the last [`Shard::take_records`].
    log: Vec<Record>,
    /// Journal batch the changes being made now belong to (set by the worker).
    epoch: u64,
    /// How to take back changes not yet durable: per (epoch, conversation), the
    /// conversation as it was before that epoch first changed it (`None`: it did
    /// not exist).
    undo: std::collections::BTreeMap<(u64, u64), Option<Undo>>,
    /// Conversations with entries in `undo`, and how many (the per-message check).
    pending: ServerMap<u64, u32>,
    /// Whether the last `handle` changed state or read state that is not durable.
    dependent: bool,
    /// Restored records that came before what they follow (see [`Shard::restore`]).
    held: ServerMap<u64, Vec<Held>>,
    /// The highest conversation id a `Reserved` record (salvage) took.
    reserved_max: u64,
    /// Where conversations closed are counted (`conversations_closed`, summed over
    /// shards; optional so tests need none).
    closed: Option<std::sync::Arc<crossbeam_utils::CachePadded<crate::metrics::RouterMetrics>>>,
    /// Reads entries that left memory back from the journal (`None`: no journal, so
    /// every entry stays in memory).
    reader: Option<JournalReader>,
    /// The assistants: FAQ auto-reply, canned replies, abuse filter.
    assist: Assist,
    /// Output owed per connection (`None`: not accounted, nothing is held back).
    ledger: Option<std::sync::Arc<crate::ledger::Ledger>>,
    /// `History` requests waiting for their connection to take what it owes.
    deferred: Deferred,
}

/// A shard's assistants (`[assist]`); each is off when `None`.
#[derive(Debug, Default)]
struct Assist {
    faq: Option<std::sync::Arc<crate::assist::FaqIndex>>,
    canned: Option<std::sync::Arc<crate::assist::CannedLibrary>>,
    /// Per-visitor state (rate buckets, blocks) of the visitors on this shard.
    filter: Option<crate::assist::SpamFilter>,
    /// Where the assistants' actions are counted (the worker's metrics).
    metrics: Option<std::sync::Arc<crossbeam_utils::CachePadded<crate::metrics::WorkerMetrics>>>,
    /// Scratch for the filter's subject (`tenant/user`): no allocation per message.
    subject: String,
}

#[path = "restore.rs"]
mod restore;
pub(crate) use restore::Unplaced;

impl Assist {
    /// The abuse filter's verdict on a new visitor message: the flags to store it with,
    /// or the code it is refused with (counted either way).
    fn screen(&mut self, from: &Sender, body: &str, now_ms: u64) -> Result<u8, ErrorCode> {
        let Some(filter) = self.filter.as_mut() else {
            return Ok(0);
        };
        let subject = &mut self.subject;
        subject.clear();
        subject.push_str(&from.who.tenant);
        subject.push('/');
        subject.push_str(&from.who.user);
        let verdict = filter.check(subject, body, now_ms);
        if let Some(m) = &self.metrics {
            match verdict {
                Verdict::Allow => {}
                Verdict::Flag { .. } => m.filtered.flagged.inc(),
                Verdict::Drop { .. } => m.filtered.dropped.inc(),
                Verdict::RateLimited => m.filtered.rate_limited.inc(),
                Verdict::Block { .. } => m.filtered.blocked.inc(),
            }
        }
        match verdict {
            Verdict::Allow => Ok(0),
            Verdict::Flag { .. } => Ok(messages::flags::FLAGGED),
            Verdict::Drop { .. } => Err(ErrorCode::Forbidden),
            Verdict::RateLimited => Err(ErrorCode::RateLimited),
            Verdict::Block { .. } => Err(ErrorCode::Blocked),
        }
    }
}

/// Answers a message the abuse filter refused (a block, 205, closes the connection
/// and names no conversation).
fn refuse_screened(out: &mut Vec<Effect>, to: &Sender, code: ErrorCode, conversation: u64) {
    let conversation = if code == ErrorCode::Blocked {
        0
    } else {
        conversation
    };
    refuse(out, to, code, conversation);
}

/// A restored record held back: (seq, time, kind, body, location).
type Held = (u64, u64, RecordKind, Body, Option<Location>);

/// What [`Shard::rollback`] restores of a conversation: its transcript length and,
/// unless its batch only appended messages to it, the rest of its state.
#[derive(Debug, Clone)]
struct Undo {
    events: u64,
    /// `None` while the batch only appended (`Send`): nothing else changed, so the
    /// copy is taken only when a later message of the same batch changes more.
    fields: Option<Box<UndoFields>>,
}

/// The state besides the transcript that [`Undo`] restores.
#[derive(Debug, Clone)]
struct UndoFields {
    state: State,
    agent: Option<UserRef>,
    agent_conns: Vec<ConnId>,
    group: String,
    rated: bool,
    since_ms: u64,
}

impl Undo {
    /// What takes `c` back to now; `appends_only` when the change to come only
    /// appends to the transcript.
    fn of(c: &Conversation, appends_only: bool) -> Self {
        Undo {
            events: c.events.len(),
            fields: (!appends_only).then(|| UndoFields::of(c)),
        }
    }

    /// Takes back what was appended after this undo was taken.
    fn truncate(&self, c: &mut Conversation) {
        c.events.truncate(self.events);
        c.sent.retain_up_to(self.events);
    }
}

impl UndoFields {
    fn of(c: &Conversation) -> Box<Self> {
        Box::new(UndoFields {
            state: c.state,
            agent: c.agent.clone(),
            agent_conns: c.agent_conns.clone(),
            group: c.group.clone(),
            rated: c.rated,
            since_ms: c.since_ms,
        })
    }

    fn apply(self, c: &mut Conversation) {
        c.state = self.state;
        c.agent = self.agent;
        c.agent_conns = self.agent_conns;
        c.group = self.group;
        c.rated = self.rated;
        c.since_ms = self.since_ms;
    }
}

/// A conversation that is not closed, as recovery hands it to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenConversation {
    /// Conversation id.
    pub id: u64,
    /// The visitor.
    pub visitor: UserRef,
    /// Group it waits or is served in.
    pub group: String,
    /// The agent serving it (`None`: queued).
    pub agent: Option<String>,
    /// When it was opened or last queued (Unix milliseconds; queue order).
    pub since_ms: u64,
}

impl Shard {
    /// An empty shard.
    pub fn new(settings: ShardSettings) -> Self {
        Self {
            settings,
            convs: ServerMap::default(),
            log: Vec::new(),
            epoch: 0,
            undo: std::collections::BTreeMap::new(),
            pending: ServerMap::default(),
            dependent: false,
            held: ServerMap::default(),
            reserved_max: 0,
            closed: None,
            reader: None,
            assist: Assist::default(),
            ledger: None,
            deferred: Deferred::default(),
        }
    }

    /// Accounts expensive replies in `ledger` and holds them back for connections
    /// that owe `max_pending` bytes of output.
    pub fn set_ledger(&mut self, ledger: std::sync::Arc<crate::ledger::Ledger>) {
        self.ledger = Some(ledger);
    }

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

    fn count_waiting(&self) {
        if let Some(m) = &self.assist.metrics {
            m.history_waiting.set(self.deferred.len() as u64);
        }
    }

    /// A `History` request: served now, or held back behind the connection's output
    /// (and its earlier requests).
    fn request_history(&mut self, from: Sender, h: messages::History, out: &mut Vec<Effect>) {
        let served = if self.deferred.has(from.conn) {
            Served::Wait(0)
        } else {
            self.history(&from, &h, 0, out)
        };
        let Served::Wait(needed) = served else {
            return;
        };
        if let Some(m) = &self.assist.metrics {
            m.history_deferred.inc();
        }
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
            out.push(Effect::Conn(
                conn,
                crate::handoff::Command::Close {
                    conn,
                    code: Some(ErrorCode::SlowConsumer),
                    farewell: None,
                },
            ));
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
        // Agents of the group may read a queued conversation before claiming; admins
        // read any of their tenant's.
        let may_read = visitor
            || c.is_agent(&from.who)
            || from.role == role::ADMIN
            || (c.state == State::Queued
                && matches!(from.role, role::AGENT | role::BOT)
                && from.groups.contains(&c.group));
        if !may_read {
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
            super::send(out, from.conn, frame);
            return Served::Done;
        };
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if no_room(len) {
            return Served::Wait(len);
        }
        if ledger.charge(from.conn, len) {
            out.push(Effect::Conn(
                from.conn,
                crate::handoff::Command::SendCharged {
                    conn: from.conn,
                    frame,
                },
            ));
        }
        Served::Done
    }

    /// Installs the assistants (at start and after a reload); the abuse filter keeps
    /// its per-visitor state across reloads.
    pub fn set_assist(
        &mut self,
        libs: &crate::assist::Libraries,
        cfg: &crate::assist::AssistConfig,
    ) {
        self.assist.faq = libs.faq.clone();
        self.assist.canned = libs.canned.clone();
        match (&mut self.assist.filter, cfg.spam_enabled) {
            (Some(f), true) => f.set_rules(libs.spam.clone()),
            (None, true) => {
                self.assist.filter = Some(crate::assist::SpamFilter::new(cfg, libs.spam.clone()));
            }
            (_, false) => self.assist.filter = None,
        }
    }

    /// Entries that are durable may leave memory and be read back through `reader`.
    pub fn set_reader(&mut self, reader: JournalReader) {
        self.reader = Some(reader);
    }

    /// Counts the assistants' actions in `metrics` (the worker's).
    pub fn count_assist_in(
        &mut self,
        metrics: std::sync::Arc<crossbeam_utils::CachePadded<crate::metrics::WorkerMetrics>>,
    ) {
        self.assist.metrics = Some(metrics);
    }

    /// Counts the conversations this shard closes from now on in
    /// `metrics.conversations_closed` (restored ones are not counted again).
    pub fn count_closed_in(
        &mut self,
        metrics: std::sync::Arc<crossbeam_utils::CachePadded<crate::metrics::RouterMetrics>>,
    ) {
        self.closed = Some(metrics);
    }

    /// Entry `seq` of `conversation` is durable at `at`.
    pub fn located(&mut self, conversation: u64, seq: u64, at: Location) {
        let evict = self.reader.is_some();
        if let Some(c) = self.convs.get_mut(&conversation) {
            c.events.located(seq, at, evict);
        }
    }

    /// Retention compaction moved records.
    pub fn moved(&mut self, moves: &HashMap<Location, Location>) {
        for c in self.convs.values_mut() {
            c.events.moved(moves);
        }
    }

    /// Starts journal batch `epoch`: changes from now on belong to it.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// Every batch up to `epoch` is durable: its changes can no longer be taken back.
    pub fn durable(&mut self, epoch: u64) {
        while let Some((&(e, id), _)) = self.undo.first_key_value() {
            if e > epoch {
                break;
            }
            self.undo.pop_first();
            if let Some(n) = self.pending.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    self.pending.remove(&id);
                }
            }
        }
    }

    /// The journal failed: takes back every change that is not durable, restoring
    /// each conversation as it was before its oldest pending batch.
    pub fn rollback(&mut self) {
        // Per conversation, in batch order: the oldest pending batch's undo has the
        // transcript length to go back to; the rest of the state comes from the oldest
        // one that copied it (the batches before it only appended).
        let mut done: ServerMap<u64, (bool, bool)> = ServerMap::default();
        self.pending.clear();
        for ((_, id), undo) in std::mem::take(&mut self.undo) {
            let (truncated, restored) = done.entry(id).or_insert((false, false));
            match undo {
                None if !*truncated => {
                    self.convs.remove(&id);
                    (*truncated, *restored) = (true, true);
                }
                None => {}
                Some(u) => {
                    let Some(c) = self.convs.get_mut(&id) else {
                        continue;
                    };
                    if !*truncated {
                        u.truncate(c);
                        *truncated = true;
                    }
                    if !*restored && let Some(fields) = u.fields {
                        fields.apply(c);
                        *restored = true;
                    }
                }
            }
        }
        self.log.clear();
    }

    /// Whether the last [`Shard::handle`] changed state, or answered from changes not
    /// yet durable: its effects must wait for the journal.
    pub fn last_dependent(&self) -> bool {
        self.dependent
    }

    /// The journal records of every state change since the last call, in order.
    pub fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.log)
    }

    /// Retention: forgets the conversations closed before `cutoff_ms` (Unix
    /// milliseconds) whose changes are all durable, and returns their ids so the
    /// journal can drop their records.
    pub fn forget_closed(&mut self, cutoff_ms: u64) -> Vec<u64> {
        let pending = &self.pending;
        let ids: Vec<u64> = self
            .convs
            .iter()
            .filter(|(id, c)| {
                c.state == State::Closed && c.closed_ms < cutoff_ms && !pending.contains_key(*id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.convs.remove(id);
        }
        ids
    }

    /// The conversations that are not closed, for the router after a restart.
    pub fn open_conversations(&self) -> Vec<OpenConversation> {
        let mut v: Vec<OpenConversation> = self
            .convs
            .iter()
            .filter(|(_, c)| c.state != State::Closed)
            .map(|(id, c)| OpenConversation {
                id: *id,
                visitor: c.visitor.clone(),
                group: c.group.clone(),
                agent: c.agent.as_ref().map(|a| a.user.clone()),
                since_ms: c.since_ms,
            })
            .collect();
        v.sort_unstable_by_key(|c| (c.since_ms, c.id));
        v
    }

    /// The highest conversation id this shard knows or was told is taken (0: none).
    pub fn max_conversation(&self) -> u64 {
        let known = self.convs.keys().chain(self.held.keys()).copied().max();
        known.unwrap_or(0).max(self.reserved_max)
    }

    /// The FAQ answer to a visitor's message in a conversation waiting for an agent,
    /// as an automatic message (`AUTO_REPLY`, sender role `system`) that both sides
    /// see; nothing when no entry scores above `assist.faq_threshold`.
    fn auto_reply(&mut self, conversation: u64, text: &str, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(faq) = self.assist.faq.clone() else {
            return;
        };
        let Some(c) = self.convs.get_mut(&conversation) else {
            return;
        };
        let Some(m) = faq.best_match(&c.group, text) else {
            return;
        };
        tracing::debug!(conversation, faq = m.id, score = m.score, "faq auto-reply");
        if let Some(m) = &self.assist.metrics {
            m.auto_replies.inc();
        }
        let flags = messages::flags::AUTO_REPLY;
        let seq = c.append(Entry {
            seq: 0,
            time_ms: now_ms,
            kind: Kind::Send.as_u8(),
            sender_role: role::SYSTEM,
            content_type: messages::content::TEXT,
            flags,
            sender: String::new(),
            body: m.answer.to_owned(),
        });
        let frame = Msg::from(messages::Deliver {
            sender_role: role::SYSTEM,
            content_type: messages::content::TEXT,
            flags,
            conversation,
            seq,
            time_ms: now_ms,
            client_msg_id: 0,
            sender: String::new(),
            body: m.answer.to_owned(),
        })
        .to_frame(0);
        c.to_participants(out, None, frame);
        self.log_entry(conversation, 0);
    }

    /// Notes the newest transcript entry of `conversation` as a record.
    fn log_entry(&mut self, conversation: u64, client_msg_id: u64) {
        if !self.settings.journal {
            return;
        }
        let Some(c) = self.convs.get_mut(&conversation) else {
            return;
        };
        let group = match c.events.last() {
            None => return,
            // A `Queued` entry's body is its group already.
            Some(e) if e.kind == Kind::Assigned.as_u8() => c.group.clone(),
            Some(_) => String::new(),
        };
        let Some(e) = c.events.last_mut() else {
            return;
        };
        // The entry is lent to the body for encoding, not copied.
        let body = Body {
            group,
            client_msg_id,
            entry: std::mem::take(e),
            ..Body::default()
        };
        let (seq, time_ms) = (body.entry.seq, body.entry.time_ms);
        let record = record::record(conversation, seq, time_ms, RecordKind::Entry, &body);
        *e = body.entry;
        self.log.push(record);
    }

    /// The transcript of a conversation (tests).
    #[cfg(test)]
    pub fn transcript(&self, conversation: u64) -> Option<Vec<Entry>> {
        self.convs
            .get(&conversation)
            .map(|c| c.events.all(self.reader.as_ref()))
    }

    /// The `seq` a sender's `client_msg_id` was stored under, and whether the
    /// conversation is a hidden orphan (tests).
    #[cfg(test)]
    pub fn sent_seq(&self, conversation: u64, sender: &str, id: u64) -> Option<(u64, bool)> {
        let c = self.convs.get(&conversation)?;
        Some((c.sent.get(sender, id)?, c.orphan))
    }

    /// Whether the conversation exists here, and is a hidden orphan (tests).
    #[cfg(test)]
    pub fn orphan(&self, conversation: u64) -> Option<bool> {
        self.convs.get(&conversation).map(|c| c.orphan)
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

    /// Everything recovery must rebuild, per conversation, comparable (tests).
    #[cfg(test)]
    pub fn digest(&self) -> std::collections::BTreeMap<u64, String> {
        self.convs
            .iter()
            .map(|(id, c)| {
                let sent = c.sent.sorted();
                let d = format!(
                    "{:?} {} {:?} {:?} {} {:?} {:?} {}",
                    c.visitor,
                    c.visitor_name,
                    c.state,
                    c.agent,
                    c.group,
                    c.events.all(self.reader.as_ref()),
                    sent,
                    c.rated
                );
                (*id, d)
            })
            .collect()
    }

    /// Panics if a conversation's state is inconsistent (tests).
    #[cfg(test)]
    pub fn check_invariants(&self) {
        for (id, c) in &self.convs {
            for (i, e) in c.events.all(self.reader.as_ref()).iter().enumerate() {
                assert_eq!(e.seq, i as u64 + 1, "conversation {id}: sequence gap");
            }
            match c.state {
                State::Assigned => assert!(c.agent.is_some(), "conversation {id}: no agent"),
                State::Queued => assert!(c.agent.is_none(), "conversation {id}: queued with agent"),
                State::Closed => {}
            }
        }
    }

    /// Applies one message at wall-clock time `now` (it stamps the transcript).
    pub fn handle(&mut self, msg: ShardMsg, now: UnixMs, out: &mut Vec<Effect>) {
        let now_ms = now.get();
        if !self.settings.journal {
            return self.apply(msg, now_ms, out);
        }
        let id = msg.conversation();
        let pending = if matches!(msg, ShardMsg::Resume { .. }) {
            // Never replay what is not durable yet.
            !self.undo.is_empty()
        } else {
            self.pending.contains_key(&id)
        };
        // A `Send` only appends: its undo needs no copy of the rest of the state.
        let appends_only = matches!(
            &msg,
            ShardMsg::Request {
                msg: Msg::Send(_),
                ..
            }
        );
        let before = match self.undo.get_mut(&(self.epoch, id)) {
            None => Some(self.convs.get(&id).map(|c| Undo::of(c, appends_only))),
            // This batch only appended so far: the state now is the state before it.
            Some(Some(u)) if u.fields.is_none() && !appends_only => {
                u.fields = self.convs.get(&id).map(UndoFields::of);
                None
            }
            Some(_) => None,
        };
        let logged = self.log.len();
        self.apply(msg, now_ms, out);
        let changed = self.log.len() > logged;
        if let (true, Some(before)) = (changed, before) {
            self.undo.insert((self.epoch, id), before);
            *self.pending.entry(id).or_default() += 1;
        }
        self.dependent = changed || pending;
    }

    fn apply(&mut self, msg: ShardMsg, now_ms: u64, out: &mut Vec<Effect>) {
        match msg {
            ShardMsg::Open {
                conversation,
                visitor,
                visitor_name,
                group,
                visitor_conns,
                opener,
                send,
            } => {
                if self.convs.contains_key(&conversation) {
                    return;
                }
                // The opening message is screened before anything exists: a refused
                // opener leaves no conversation, record, assignment or queue entry.
                let flags = match self.assist.screen(&opener, &send.body, now_ms) {
                    Ok(flags) => flags,
                    Err(code) => {
                        refuse_screened(out, &opener, code, 0);
                        out.push(Effect::Router(RouterMsg::OpenRefused { conversation }));
                        return;
                    }
                };
                if self.settings.journal {
                    let body = Body {
                        tenant: visitor.tenant.clone(),
                        visitor: visitor.user.clone(),
                        visitor_name: visitor_name.clone(),
                        group: group.clone(),
                        ..Body::default()
                    };
                    let r = record::record(conversation, 0, now_ms, RecordKind::Opened, &body);
                    self.log.push(r);
                }
                let mut c = Conversation::new(visitor, visitor_name, group);
                c.visitor_conns = visitor_conns;
                c.since_ms = now_ms;
                c.opened_ms = now_ms;
                self.convs.insert(conversation, c);
                let send = messages::Send {
                    conversation,
                    ..*send
                };
                self.send(*opener, send, now_ms, out, Some(flags));
                // Routing (assignment or the queue) follows only now.
                out.push(Effect::Router(RouterMsg::Opened { conversation }));
            }
            ShardMsg::Assign(assignment) => self.assign(assignment, now_ms, out),
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
                c.since_ms = now_ms;
                c.group = group.clone();
                // A transcript event, so whoever reads the transcript later sees where
                // it went; live it travels only as `Queued` positions, without its seq
                // (PROTOCOL.md section 13.9).
                c.append(system_entry(Kind::Queued, now_ms, "", group));
                self.log_entry(conversation, 0);
            }
            ShardMsg::SystemClose {
                conversation,
                reason,
            } => self.system_close(conversation, reason, now_ms, out),
            ShardMsg::Conns {
                conversation,
                who,
                conns,
            } => {
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
                    let frames =
                        c.replay(conversation, after, u64::MAX, self.reader.as_ref(), staff);
                    for frame in frames.unwrap_or_default() {
                        super::send(out, conn, frame);
                    }
                }
                if who == c.visitor {
                    c.visitor_conns = conns;
                } else if c.is_agent(&who) {
                    c.agent_conns = conns;
                }
            }
            ShardMsg::Request { from, msg } => self.request(from, msg, now_ms, out),
            ShardMsg::Resume {
                conn,
                who,
                worker,
                cursors,
                max_replay,
            } => self.resume(conn, &who, worker, &cursors, max_replay, out),
            // Answers travel to sessions; a shard has nothing to do with them.
            ShardMsg::Resumed { .. } | ShardMsg::Listed { .. } => {}
            ShardMsg::List {
                worker,
                conn,
                rid,
                tenant,
                limit,
                query,
                ..
            } => {
                let (items, more) = self.list(&tenant, &query, limit);
                out.push(Effect::Shard(ShardMsg::Listed {
                    worker,
                    conn,
                    rid,
                    items,
                    more,
                }));
            }
            ShardMsg::Retain {
                cutoff_ms, reply, ..
            } => {
                let _ = reply.send(self.forget_closed(cutoff_ms));
            }
            ShardMsg::Settings { settings, .. } => {
                // Whether to journal is fixed at start.
                let journal = self.settings.journal;
                self.settings = ShardSettings {
                    journal,
                    ..settings
                };
            }
            ShardMsg::Assist {
                libraries, config, ..
            } => self.set_assist(&libraries, &config),
            ShardMsg::Moved { moves, done, .. } => {
                self.moved(&moves);
                let _ = done.send(());
            }
        }
    }

    /// Answers a resuming session: for each cursor of a conversation `who` takes
    /// part in, the events after it (within `max_replay` for the whole reconnect).
    fn resume(
        &mut self,
        conn: ConnId,
        who: &UserRef,
        worker: usize,
        cursors: &[messages::Cursor],
        max_replay: u64,
        out: &mut Vec<Effect>,
    ) {
        let mut budget = max_replay;
        // What one reconnect is replayed stays within what one connection may owe.
        let mut bytes_left = u64::from(self.settings.max_pending);
        let mut answers = Vec::with_capacity(cursors.len());
        for cur in cursors {
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
        out.push(Effect::Shard(ShardMsg::Resumed {
            conn,
            worker,
            answers,
        }));
    }

    fn assign(&mut self, a: Assignment, now_ms: u64, out: &mut Vec<Effect>) {
        let Assignment {
            conversation,
            agent,
            agent_name,
            agent_conns,
            group,
            note,
        } = a;
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
        c.to_participants(out, None, frame);
        self.log_entry(conversation, 0);
        let Some(c) = self.convs.get(&conversation) else {
            return;
        };
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
        let msg = match msg {
            Msg::History(h) => return self.request_history(from, h, out),
            msg => msg,
        };
        let conversation = super::request_conversation(&msg);
        let Some(c) = self
            .convs
            .get_mut(&conversation)
            .filter(|c| c.tenant == from.who.tenant && !c.orphan)
        else {
            // Another tenant's conversation does not exist, as far as this user knows.
            return refuse(out, &from, ErrorCode::NotFound, conversation);
        };
        let is_visitor = from.who == c.visitor && from.role == role::VISITOR;
        let is_agent = c.is_agent(&from.who);
        let participant = is_visitor || is_agent;
        match msg {
            _ if !participant => refuse(out, &from, ErrorCode::Forbidden, conversation),
            Msg::Send(s) => {
                if c.state == State::Closed {
                    return refuse(out, &from, ErrorCode::Conflict, conversation);
                }
                self.send(from, s, now_ms, out, None);
            }
            Msg::Note(n) => {
                if !is_agent || !matches!(from.role, role::AGENT | role::BOT) {
                    return refuse(out, &from, ErrorCode::Forbidden, conversation);
                }
                // A resend of a stored note is answered even after the close.
                if c.state == State::Closed && c.sent.get(&from.who.user, n.client_msg_id).is_none()
                {
                    return refuse(out, &from, ErrorCode::Conflict, conversation);
                }
                let s = messages::Send {
                    content_type: messages::content::TEXT,
                    conversation,
                    client_msg_id: n.client_msg_id,
                    body: n.body,
                    group: String::new(),
                };
                self.send(from, s, now_ms, out, Some(messages::flags::PRIVATE));
            }
            Msg::Suggest(sg) => {
                if !matches!(from.role, role::AGENT | role::BOT) {
                    return refuse(out, &from, ErrorCode::Forbidden, conversation);
                }
                let items = self
                    .assist
                    .canned
                    .as_ref()
                    .map(|lib| lib.suggest(&c.group, &sg.prefix, usize::from(sg.limit)))
                    .unwrap_or_default();
                reply(
                    out,
                    &from,
                    messages::Suggestions {
                        prefix: sg.prefix,
                        items,
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
                let closer = (from.role, from.who.user.clone());
                self.close(conversation, closer, cl.reason, now_ms, out);
            }
            Msg::Rate(r) => {
                if !is_visitor {
                    return refuse(out, &from, ErrorCode::Forbidden, conversation);
                }
                if c.state != State::Closed || c.rated {
                    return refuse(out, &from, ErrorCode::Conflict, conversation);
                }
                c.rated = true;
                if let Some(m) = &self.closed
                    && let Some(n) = m
                        .by_group
                        .group(&c.group)
                        .ratings
                        .get(usize::from(r.score).wrapping_sub(1))
                {
                    n.inc();
                }
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
                self.log_entry(conversation, 0);
            }
            _ => refuse(out, &from, ErrorCode::BadRequest, conversation),
        }
    }

    /// Closes an open conversation: the `Close` event by `closer` (role, user id) with
    /// `reason`, the `Close` frame to every connection of both participants, and the
    /// router told.
    fn close(
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
        if let Some(m) = &self.closed {
            m.conversations_closed.inc();
        }
        out.push(Effect::Router(RouterMsg::Closed { conversation }));
        self.log_entry(conversation, 0);
    }

    /// The server closes a conversation by itself ([`ShardMsg::SystemClose`]).
    fn system_close(
        &mut self,
        conversation: u64,
        reason: String,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        if reason == INACTIVE
            && let (Some(m), Some(c)) = (&self.closed, self.convs.get(&conversation))
            && c.state != State::Closed
        {
            m.by_group.group(&c.group).inactive.inc();
        }
        self.close(
            conversation,
            (role::SYSTEM, String::new()),
            reason,
            now_ms,
            out,
        );
    }

    /// The conversations of `tenant` matching `q`, lowest ids first, at most `limit`
    /// (and whether more match).
    fn list(
        &self,
        tenant: &str,
        q: &messages::ListConversations,
        limit: usize,
    ) -> (Vec<messages::ConversationInfo>, bool) {
        use messages::conversation_state as cs;
        let mut ids: Vec<u64> = self
            .convs
            .iter()
            .filter(|&(&id, c)| {
                let state = match c.state {
                    State::Queued => cs::QUEUED,
                    State::Assigned => cs::ASSIGNED,
                    State::Closed => cs::CLOSED,
                };
                let state_ok = match q.state {
                    cs::OPEN => state != cs::CLOSED,
                    cs::ANY => true,
                    s => s == state,
                };
                id > q.after
                    && c.tenant == tenant
                    && !c.orphan
                    && state_ok
                    && (q.group.is_empty() || c.group == q.group)
                    && (q.agent.is_empty() || c.agent.as_ref().is_some_and(|a| a.user == q.agent))
                    && c.updated_ms() >= q.updated_since_ms
            })
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        let more = ids.len() > limit;
        ids.truncate(limit);
        let items = ids
            .into_iter()
            .filter_map(|id| {
                let c = self.convs.get(&id)?;
                Some(messages::ConversationInfo {
                    conversation: id,
                    opened_ms: c.opened_ms,
                    updated_ms: c.updated_ms(),
                    last_seq: c.events.len(),
                    state: match c.state {
                        State::Queued => cs::QUEUED,
                        State::Assigned => cs::ASSIGNED,
                        State::Closed => cs::CLOSED,
                    },
                    group: c.group.clone(),
                    visitor: c.visitor.user.clone(),
                    visitor_name: c.visitor_name.clone(),
                    agent: c.agent.as_ref().map(|a| a.user.clone()).unwrap_or_default(),
                })
            })
            .collect();
        (items, more)
    }

    /// How often [`Shard::inactive`] is worth asking: a tenth of
    /// `routing.inactivity_close` (within 1 s .. 60 s); `None` when it is off.
    pub fn sweep_every(&self) -> Option<std::time::Duration> {
        let idle = self.settings.inactivity_ms;
        (idle > 0).then(|| std::time::Duration::from_millis((idle / 10).clamp(1_000, 60_000)))
    }

    /// The open conversations with no new event since `now - inactivity` (none when
    /// `routing.inactivity_close` is off), to close as inactive.
    pub fn inactive(&self, now: UnixMs) -> Vec<u64> {
        let now_ms = now.get();
        let idle = self.settings.inactivity_ms;
        if idle == 0 {
            return Vec::new();
        }
        let cutoff = now_ms.saturating_sub(idle);
        let mut ids: Vec<u64> = self
            .convs
            .iter()
            .filter(|(_, c)| c.state != State::Closed && !c.orphan)
            .filter(|(_, c)| c.updated_ms() < cutoff)
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Stores a participant's `Send` (or answers a resend with its first `Accepted`).
    /// A new visitor message goes through the abuse filter first, unless `screened`
    /// carries the flags its screening already gave (a conversation's opener).
    fn send(
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
        let is_visitor = from.who == c.visitor && from.role == role::VISITOR;
        let stored = c.sent.get(&from.who.user, s.client_msg_id);
        let fresh = stored.is_none();
        // The abuse filter sees each new visitor message once, before it is stored:
        // dropped, refused or blocked ones change nothing.
        let mut flags = screened.unwrap_or(0);
        if fresh && is_visitor && screened.is_none() {
            match self.assist.screen(&from, &s.body, now_ms) {
                Ok(f) => flags = f,
                Err(code) => return refuse_screened(out, &from, code, conversation),
            }
        }
        let faq_text = (fresh && is_visitor && c.state == State::Queued).then(|| s.body.clone());
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
                if !note && !c.answered && super::is_staff_role(from.role) {
                    c.answered = true;
                    if let Some(m) = &self.closed {
                        m.by_group
                            .group(&c.group)
                            .first_reply
                            .observe_ms(now_ms.saturating_sub(c.opened_ms));
                    }
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
    while end > 0 && (entries.len() as u64) < limit && scanned < max_scan {
        let want = limit - entries.len() as u64;
        let from = end.saturating_sub(want) + 1;
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
    let more = skip > 0 || end > 0;
    Some(
        messages::HistoryPage {
            more,
            conversation,
            entries,
        }
        .into(),
    )
}
