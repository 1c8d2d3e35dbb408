//! Conversation shards (sans-IO): each conversation lives on exactly one shard, so its
//! events are totally ordered and its state needs no lock.
//!
//! A conversation's state is derived from its transcript of events, each with the next
//! gap-free sequence number; the shard also enforces who may do what (participants
//! only, tenants never mixed), makes `Send` idempotent by client message id, and
//! delivers every event to every connection of both participants.
//!
//! The shard's concerns live in children: `request` (one function per client request
//! kind), `history` (`History` pages, held back behind a slow connection's output),
//! `replay` (what a resuming connection missed), `assist` (FAQ auto-reply, canned
//! replies, abuse filter), `undo` (taking back what the journal did not make durable),
//! `records` (journal records out, locations in), `restore` (rebuilding from the
//! journal), `scan` (questions over all conversations: listing, inactivity,
//! retention), `profile` (the visitor profile `PROFILE` messages merge) and
//! `stats` (counters the worker publishes: the shard holds no metric handles).

use bytes::Bytes;

use super::deferred::{Deferred, Waiting};
use super::record::{self, Body, Record, RecordError, RecordKind};
use super::sent::SentIds;
pub(crate) use super::settings::ShardSettings;
use super::transcript::Transcript;
use super::{
    Assignment, Effect, Opening, RouterMsg, Sender, SessionReply, ShardControl, ShardMsg, UserRef,
    to_all, to_both,
};
use crate::clock::UnixMs;
use crate::fasthash::{ClientMap, ServerMap};
use crate::handoff::ConnId;
use crate::journal::{JournalReader, Location};
use crate::protocol::Kind;
use crate::protocol::messages::{self, Entry, Msg, role};
use crate::protocol::profile::Profile;

mod assist;
mod files;
mod history;
#[cfg(test)]
mod inspect;
mod outcome;
mod profile;
mod records;
mod replay;
mod request;
pub(crate) mod restore;
mod scan;
mod stats;
mod undo;

pub(crate) use stats::{GroupEvent, ShardStats};

/// The `Close` reason of a conversation closed for `routing.inactivity_close`.
pub(crate) const INACTIVE: &str = "inactive";

/// Resumed connections a conversation remembers until the router lists them (more
/// are connections that went away while resuming; the oldest is forgotten).
const MAX_CATCH_UP: usize = 16;

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
    /// The files its `ATTACHMENT` messages reference, oldest first (a download
    /// needs one; the transcript may have left memory).
    files: Vec<files::FileRef>,
    /// The visitor profile its `PROFILE` messages merged (`None`: nothing set, the
    /// usual case, so it costs a pointer).
    profile: Option<Box<Profile>>,
    /// The address the visitor last wrote from in this process (not journaled:
    /// `None` after a restart until it writes again, or when not kept).
    visitor_addr: Option<std::net::IpAddr>,
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
            visitor_addr: None,
            orphan: false,
            files: Vec::new(),
            profile: None,
            #[cfg(test)]
            served_by: Vec::new(),
        }
    }

    fn next_seq(&self) -> u64 {
        self.events.len() + 1
    }

    /// Time of the latest event (or of the opening, before any).
    fn updated_ms(&self) -> u64 {
        self.events.last_time_ms().unwrap_or(self.opened_ms)
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
        self.note_file(&entry);
        self.events.push(entry)
    }
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
    /// not exist), in the order taken, which is epoch order (epochs only grow). A
    /// queue, not an ordered map: taken and dropped once per journaled change.
    undo: std::collections::VecDeque<(u64, u64, Option<undo::Undo>)>,
    /// Undos dropped from the front of `undo` so far: positions in
    /// [`undo::Pending::at`] count from the first undo ever taken.
    undo_base: u64,
    /// Conversations with entries in `undo`: how many, and where the newest is (the
    /// per-message check).
    pending: ServerMap<u64, undo::Pending>,
    /// Whether the last `handle` changed state or read state that is not durable.
    dependent: bool,
    /// Restored records that came before what they follow (see `Shard::restore`).
    held: ServerMap<u64, Vec<Held>>,
    /// The highest conversation id a `Reserved` record (salvage) took.
    reserved_max: u64,
    /// What happened since the worker last took the counts.
    stats: ShardStats,
    /// Reads entries that left memory back from the journal (`None`: no journal, so
    /// every entry stays in memory).
    reader: Option<JournalReader>,
    /// The assistants: FAQ auto-reply, canned replies, abuse filter.
    assist: assist::Assist,
    /// Output owed per connection (`None`: not accounted, nothing is held back).
    ledger: Option<std::sync::Arc<crate::ledger::Ledger>>,
    /// `History` requests waiting for their connection to take what it owes.
    deferred: Deferred,
    /// Groups (tenant, group) with an agent or bot online, as the router last told
    /// (`ShardControl::GroupOnline`): a visitor's message in a queued conversation of
    /// any other group is an offline message.
    online_groups: std::collections::HashSet<(String, String)>,
}

/// A restored record held back: (seq, time, kind, body, location).
type Held = (u64, u64, RecordKind, Body, Option<Location>);

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
    /// Its visitor left an offline message while it waited (never abandoned).
    pub offline: bool,
}

impl Shard {
    /// An empty shard.
    pub fn new(settings: ShardSettings) -> Self {
        Self {
            settings,
            convs: ServerMap::default(),
            log: Vec::new(),
            epoch: 0,
            undo: std::collections::VecDeque::new(),
            undo_base: 0,
            pending: ServerMap::default(),
            dependent: false,
            held: ServerMap::default(),
            reserved_max: 0,
            stats: ShardStats::default(),
            reader: None,
            assist: assist::Assist::default(),
            ledger: None,
            deferred: Deferred::default(),
            online_groups: std::collections::HashSet::new(),
        }
    }

    /// Accounts expensive replies in `ledger` and holds them back for connections
    /// that owe `max_pending` bytes of output.
    pub fn set_ledger(&mut self, ledger: std::sync::Arc<crate::ledger::Ledger>) {
        self.ledger = Some(ledger);
    }

    /// The counts since the last call (the worker publishes them as metrics).
    pub fn stats_mut(&mut self) -> &mut ShardStats {
        &mut self.stats
    }

    /// Entries that are durable may leave memory and be read back through `reader`.
    pub fn set_reader(&mut self, reader: JournalReader) {
        self.reader = Some(reader);
    }

    /// Applies one message at wall-clock time `now` (it stamps the transcript).
    pub fn handle(&mut self, msg: ShardMsg, now: UnixMs, out: &mut Vec<Effect>) {
        let now_ms = now.get();
        if self.settings.journal {
            self.apply_undoable(msg, now_ms, out);
        } else {
            // Nothing durable to read older entries back from: the transcript keeps
            // its newest ones only (`Transcript::forget_old`).
            let conversation = msg.conversation();
            self.apply(msg, now_ms, out);
            if let Some(c) = self.convs.get_mut(&conversation) {
                c.events.forget_old();
            }
        }
    }

    /// Applies one shard-wide control message (it changes no conversation's journaled
    /// state, so nothing of it waits for the journal).
    pub fn control(&mut self, msg: ShardControl, out: &mut Vec<Effect>) {
        match msg {
            ShardControl::List {
                worker,
                conn,
                rid,
                tenant,
                limit,
                query,
            } => {
                let (items, more) = self.list(&tenant, &query, limit);
                let listed = SessionReply::Listed {
                    conn,
                    rid,
                    items,
                    more,
                };
                out.push(Effect::Session(worker, listed));
            }
            ShardControl::Retain { cutoff_ms, reply } => {
                let _ = reply.send(self.forget_closed(cutoff_ms));
            }
            ShardControl::Settings(settings) => {
                // Whether to journal is fixed at start.
                let journal = self.settings.journal;
                self.settings = ShardSettings {
                    journal,
                    ..settings
                };
            }
            ShardControl::Assist { libraries, config } => self.set_assist(&libraries, &config),
            ShardControl::Moved { moves, done } => {
                self.moved(&moves);
                let _ = done.send(());
            }
            ShardControl::GroupOnline {
                tenant,
                group,
                online,
            } => {
                if online {
                    self.online_groups.insert((tenant, group));
                } else {
                    self.online_groups.remove(&(tenant, group));
                }
            }
        }
    }

    fn apply(&mut self, msg: ShardMsg, now_ms: u64, out: &mut Vec<Effect>) {
        match msg {
            ShardMsg::Open(opening) => self.open(*opening, now_ms, out),
            ShardMsg::Assign(assignment) => self.assign(assignment, now_ms, out),
            ShardMsg::Requeued {
                conversation,
                group,
            } => self.requeued(conversation, group, now_ms),
            ShardMsg::SystemClose {
                conversation,
                reason,
            } => self.system_close(conversation, reason, now_ms, out),
            ShardMsg::Conns {
                conversation,
                who,
                conns,
            } => self.conns(conversation, who, conns, out),
            ShardMsg::Request { from, msg } => self.request(from, msg, now_ms, out),
            ShardMsg::Resume(resume) => self.resume(resume, out),
            ShardMsg::Upload { from, upload } => self.upload(from, upload, out),
            ShardMsg::Download {
                from,
                conversation,
                id,
            } => self.download(from, conversation, id, out),
            ShardMsg::Info { from, conversation } => self.info(from, conversation, out),
            // Through the router: behind whatever the request sent there (a
            // transfer, a close), so the answer comes after its effect.
            ShardMsg::Ack {
                conversation,
                conn,
                rid,
            } => out.push(Effect::Router(RouterMsg::Ack {
                conversation,
                conn,
                rid,
            })),
            ShardMsg::Answer { conn, rid, .. } => out.push(crate::service::api_ack(conn, rid)),
        }
    }

    /// Stores a conversation's opening message, once the abuse filter let it through.
    fn open(&mut self, o: Opening, now_ms: u64, out: &mut Vec<Effect>) {
        let Opening {
            conversation,
            visitor,
            visitor_name,
            group,
            visitor_conns,
            opener,
            send,
            offline,
        } = o;
        if self.convs.contains_key(&conversation) {
            return;
        }
        // The opening message is screened before anything exists: a refused
        // opener leaves no conversation, record, assignment or queue entry.
        let flags = match self
            .assist
            .screen(&opener, Some(&send.body), now_ms, &mut self.stats)
        {
            // The router knew at opening whether the group had anyone online.
            Ok(flags) if offline => flags | messages::flags::OFFLINE,
            Ok(flags) => flags,
            Err(code) => {
                assist::refuse_screened(out, &opener, code, 0);
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
            ..send
        };
        self.send(opener, send, now_ms, out, Some(flags));
        // Routing (assignment or the queue) follows only now.
        out.push(Effect::Router(RouterMsg::Opened { conversation }));
    }

    /// The conversation lost its agent and waits in `group`'s queue again.
    fn requeued(&mut self, conversation: u64, group: String, now_ms: u64) {
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

// The assistants' part of the shard (their state is `assist::Assist`).
impl Shard {
    /// Installs the assistants (at start and after a reload); the abuse filter keeps
    /// its per-visitor state across reloads.
    pub fn set_assist(
        &mut self,
        libs: &crate::assist::Libraries,
        cfg: &crate::assist::AssistConfig,
    ) {
        self.assist.set(libs, cfg);
    }

    /// The FAQ answer to a visitor's message in a conversation waiting for an agent,
    /// as an automatic message (`AUTO_REPLY`, sender role `system`) that both sides
    /// see; nothing when no entry scores above `assist.faq_threshold`.
    pub(super) fn auto_reply(
        &mut self,
        conversation: u64,
        text: &str,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let Some(faq) = self.assist.faq() else {
            return;
        };
        let Some(c) = self.convs.get_mut(&conversation) else {
            return;
        };
        let (threshold, margin) = faq.operating_point();
        let closest = faq.closest(&c.group, text);
        self.stats.observe_faq(closest.map_or(0.0, |m| m.score));
        let Some(m) = closest.filter(|m| faq.accepts(m, threshold, margin)) else {
            return;
        };
        tracing::debug!(
            conversation,
            faq = m.id,
            score = m.score,
            margin = m.margin,
            "faq auto-reply"
        );
        self.stats.auto_replies += 1;
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
}
