//! The business worker pool: threads that turn [`Event`]s into [`Command`]s.
//!
//! Each worker owns the sessions of the connections routed to it, so their state needs
//! no lock. Commands are batched: a worker wakes each reactor it wrote to once per
//! batch of events, not once per command.

use std::sync::Arc;
use std::thread::JoinHandle;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use crossbeam_utils::CachePadded;

use crate::clock::{Clock, Mono, Now};
use crate::handoff::{Command, ConnId, Event};
use crate::metrics::{RouterMetrics, WorkerMetrics};
use crate::reactor::ReactorHandle;
use crate::service::conversation::Shard;
use crate::service::durable::Durable;
use crate::service::router::Router;
use crate::service::{
    Effect, RouterMsg, SessionReply, ShardControl, ShardMsg, shard_of, tell_shards,
};

pub(crate) mod console_login;
pub(crate) mod files;
mod shard_stats;

pub(crate) use crate::service::session::{SessionSettings, Sessions, SharedSettings};

/// What a worker needs to journal its shard: the writer, its metrics, the health flag.
pub(crate) type JournalLink = (
    crate::journal::JournalHandle,
    Arc<CachePadded<crate::metrics::JournalMetrics>>,
    Arc<crate::metrics::Health>,
);

/// Events handled before pending wake-ups are sent.
const BATCH: usize = 256;
/// Longest wait for work without a watchdog (any long time does: nothing to do).
const IDLE_WAIT: Duration = Duration::from_secs(3600);
/// While `History` requests wait for their connections' output to drain, how often
/// the shard looks again (nothing tells it when a socket took bytes).
const DEFERRED_RETRY: Duration = Duration::from_millis(2);

/// Where effects go: reactors (frames), conversation shards, sessions and the router.
#[derive(Clone)]
pub(crate) struct Links {
    /// Every reactor, by index.
    pub reactors: Arc<[ReactorHandle]>,
    /// Every conversation shard's queue, by shard index (= worker index).
    pub shards: Arc<[Sender<ShardMsg>]>,
    /// Every shard's control queue (shard-wide messages), by shard index.
    pub controls: Arc<[Sender<ShardControl>]>,
    /// Every worker's queue of shard answers for its sessions, by worker index.
    pub sessions: Arc<[Sender<SessionReply>]>,
    /// The router's queue (`None` in the router itself, so that the router's queue
    /// closes — and the router ends — once every worker is gone).
    pub router: Option<Sender<RouterMsg>>,
    /// Messages the router's or a shard's queue may hold before client requests for
    /// it are refused (`workers.service_queue_depth`; see `service::busy`).
    pub service_queue_depth: usize,
    /// The files thread (attachments; `None` where there is none, as in tests).
    pub files: Option<Sender<crate::service::Job>>,
}

/// The bounded service queues a client request can find full.
#[derive(Debug, Clone, Copy)]
enum ServiceQueue {
    Router,
    Shard,
}

impl ServiceQueue {
    fn name(self) -> &'static str {
        match self {
            Self::Router => "router",
            Self::Shard => "shard",
        }
    }
}

/// Carries out effects, noting which reactors need waking.
struct Dispatch {
    links: Links,
    dirty: Vec<bool>,
    /// Scratch for splitting a broadcast by reactor.
    members: Vec<Vec<ConnId>>,
    /// Where refusals are counted (`None` in the router: it sends no client requests).
    stats: Option<Arc<CachePadded<WorkerMetrics>>>,
    /// Client requests refused because a service queue was full, logged at most once
    /// a second with the count held back.
    refusals: crate::log_gate::LogGate,
}

impl Dispatch {
    fn new(links: Links, stats: Option<Arc<CachePadded<WorkerMetrics>>>) -> Self {
        let n = links.reactors.len();
        Self {
            links,
            dirty: vec![false; n],
            members: vec![Vec::new(); n],
            stats,
            refusals: crate::log_gate::LogGate::default(),
        }
    }

    /// Closes the connection of a request that a full queue refused with 500
    /// `server_busy` (retryable: the client reconnects and resends), as the reactor
    /// does when a worker's queue is full. `now` paces the log line.
    /// Whether a message for `queue`, which holds `len` messages, may be queued: a
    /// fact always, a client `request` while the queue is under its bound; a request
    /// over it is refused here.
    fn admit(
        &mut self,
        request: Option<&crate::service::Sender>,
        len: usize,
        queue: ServiceQueue,
        now: Mono,
    ) -> bool {
        match request {
            Some(from) if len >= self.links.service_queue_depth => {
                self.refuse(from, queue, now);
                false
            }
            _ => true,
        }
    }

    fn refuse(&mut self, from: &crate::service::Sender, queue: ServiceQueue, now: Mono) {
        if let Some(stats) = &self.stats {
            match queue {
                ServiceQueue::Router => stats.router_queue_refused.inc(),
                ServiceQueue::Shard => stats.shard_queue_refused.inc(),
            }
        }
        if let Some(held) = self.refusals.pass(now.as_ms()) {
            tracing::warn!(
                queue = queue.name(),
                depth = self.links.service_queue_depth,
                held_back = held,
                "service queue full: request refused with 500 server_busy \
                 (workers.service_queue_depth)"
            );
        }
        let code = crate::protocol::ErrorCode::ServerBusy;
        let farewell = crate::frame::encode_status(
            crate::protocol::Kind::Error.as_u8(),
            code.as_u16(),
            from.rid,
        );
        self.command(
            from.conn.reactor,
            Command::Close {
                conn: from.conn,
                code: Some(code),
                farewell: Some(farewell),
            },
        );
    }

    fn command(&mut self, reactor: u16, cmd: Command) {
        let i = usize::from(reactor);
        if let (Some(r), Some(d)) = (self.links.reactors.get(i), self.dirty.get_mut(i))
            && r.send(cmd)
        {
            *d = true;
        }
    }

    /// Carries out `effects` (at `now`, the loop's reading of its clock).
    fn run(&mut self, effects: &mut Vec<Effect>, now: Mono) {
        for effect in effects.drain(..) {
            match effect {
                Effect::Reactor(cmd) => {
                    // Every command the service emits names one connection.
                    if let Some(conn) = cmd.conn() {
                        self.command(conn.reactor, cmd);
                    }
                }
                Effect::Broadcast(conns, frame) => {
                    let mut members = std::mem::take(&mut self.members);
                    split_broadcast(conns, &frame, &mut members, |i, cmd| self.command(i, cmd));
                    self.members = members;
                }
                // Client requests find room for at most `service_queue_depth`
                // messages; facts always go through (`service::busy` bounds them).
                Effect::Router(msg) => {
                    let Some(len) = self.links.router.as_ref().map(Sender::len) else {
                        continue;
                    };
                    if self.admit(msg.client_request(), len, ServiceQueue::Router, now)
                        && let Some(router) = &self.links.router
                    {
                        let _ = router.send(msg);
                    }
                }
                Effect::Shard(msg) => {
                    let i = shard_of(msg.conversation(), self.links.shards.len());
                    let Some(len) = self.links.shards.get(i).map(Sender::len) else {
                        continue;
                    };
                    if self.admit(msg.client_request(), len, ServiceQueue::Shard, now)
                        && let Some(tx) = self.links.shards.get(i)
                    {
                        let _ = tx.send(msg);
                    }
                }
                Effect::AllShards(msg) => {
                    tell_shards(&self.links.controls, msg);
                }
                Effect::Session(worker, reply) => {
                    if let Some(tx) = self.links.sessions.get(worker) {
                        let _ = tx.send(reply);
                    }
                }
                Effect::Files(job) => {
                    if let Some(tx) = &self.links.files {
                        let _ = tx.send(job);
                    }
                }
            }
        }
    }

    fn wake_all(&mut self) {
        for (r, d) in self.links.reactors.iter().zip(self.dirty.iter_mut()) {
            if std::mem::take(d) {
                r.wake();
            }
        }
    }
}

/// Splits a broadcast by reactor: the one encoded frame is shared (a reference count,
/// not a copy) by one `SendMany` per reactor holding that reactor's members.
/// `members` is scratch space with one list per reactor.
pub(crate) fn split_broadcast(
    conns: Vec<ConnId>,
    frame: &bytes::Bytes,
    members: &mut [Vec<ConnId>],
    mut emit: impl FnMut(u16, Command),
) {
    for conn in conns {
        if let Some(m) = members.get_mut(usize::from(conn.reactor)) {
            m.push(conn);
        }
    }
    for (i, m) in members.iter_mut().enumerate() {
        if !m.is_empty() {
            let conns = std::mem::take(m);
            let frame = frame.clone();
            emit(i as u16, Command::SendMany { conns, frame });
        }
    }
}

/// What one worker owns and listens to: the sessions of the connections routed to it
/// and conversation shard `id`, with the queues that feed them.
pub(crate) struct WorkerParts {
    /// Worker index (= its shard's index).
    pub id: usize,
    /// Events for its sessions, and the bytes of frames queued there (released as
    /// frames are taken).
    pub events: (crate::queue::Receiver<Event>, Arc<CachePadded<AtomicU64>>),
    /// Per-conversation messages for its shard.
    pub shard_rx: Receiver<ShardMsg>,
    /// Shard-wide control messages for its shard.
    pub control_rx: Receiver<ShardControl>,
    /// The shards' answers for its sessions.
    pub replies_rx: Receiver<SessionReply>,
    /// Its sessions.
    pub sessions: Sessions,
    /// Its conversation shard.
    pub shard: Shard,
    /// Its metrics.
    pub stats: Arc<CachePadded<WorkerMetrics>>,
    /// Where its shard's closes and per-group figures are published.
    pub conversations: Arc<CachePadded<RouterMetrics>>,
    /// How it journals its shard (`None`: no journal).
    pub journal: Option<JournalLink>,
    /// The scheduler slice it asks for (`reactor.sched_slice_us`; 0: the default).
    pub sched_slice_us: u32,
}

/// Starts a worker: its sessions (from its event queue), its shard (from the shard and
/// control queues) and the shards' answers for its sessions.
pub(crate) fn spawn(parts: WorkerParts, links: Links) -> std::io::Result<JoinHandle<()>> {
    let WorkerParts {
        id,
        events: (events, queued_bytes),
        shard_rx,
        control_rx,
        replies_rx,
        mut sessions,
        mut shard,
        stats,
        conversations,
        journal,
        sched_slice_us,
    } = parts;
    std::thread::Builder::new()
        .name(format!("worker-{id}"))
        .spawn(move || {
            crate::reactor::sys::sched::apply(sched_slice_us, "worker");
            let n_shards = links.shards.len();
            let mut dispatch = Dispatch::new(links, Some(stats.clone()));
            let mut effects = Vec::new();
            // A session's effects, before its requests for this worker's shard are
            // taken out of them.
            let mut asked = Vec::new();
            let mut durable = journal
                .map(|(h, m, health)| Durable::new(h, &mut shard, stats.clone(), (m, health)));
            // The journal's answers to this shard's batches.
            let commits = durable
                .as_ref()
                .map_or_else(crossbeam_channel::never, |d| d.replies.clone());
            // What the shard counted while the journal was replayed is not news.
            *shard.stats_mut() = Default::default();
            // The loop reads the clocks once per turn (after each wait) and hands the
            // reading to everything it calls: nothing below reads a clock.
            let clock = Clock::new();
            let on_shard = |msg: ShardMsg,
                            now: Now,
                            shard: &mut Shard,
                            durable: &mut Option<Durable>,
                            effects: &mut Vec<Effect>| {
                match durable {
                    Some(d) => d.handle(shard, msg, now, effects),
                    None => shard.handle(msg, now.unix, effects),
                }
                // Before the effects leave, so a scrape never lags their frames.
                shard_stats::publish(shard.stats_mut(), &stats, &conversations);
            };
            let on_reply = |reply: SessionReply,
                            now: Now,
                            sessions: &mut Sessions,
                            effects: &mut Vec<Effect>| {
                match reply {
                    SessionReply::Resumed { conn, answers } => {
                        sessions.resumed(conn, answers, now.unix, effects, &stats)
                    }
                    SessionReply::Listed {
                        conn,
                        rid,
                        items,
                        more,
                    } => sessions.listed(conn, rid, items, more, effects),
                }
            };
            let on_event = |event: Event,
                            now: Now,
                            sessions: &mut Sessions,
                            shard: &mut Shard,
                            durable: &mut Option<Durable>,
                            (asked, effects): (&mut Vec<Effect>, &mut Vec<Effect>),
                            dispatch: &mut Dispatch| {
                if let Event::Barrier(ack) = event {
                    dispatch.run(effects, now.mono);
                    dispatch.wake_all();
                    let _ = ack.send(());
                    return;
                }
                if let Event::Frame { payload, .. } = &event {
                    // Release the frame's share of the queue's byte bound.
                    queued_bytes.fetch_sub(payload.len() as u64, Ordering::Relaxed);
                }
                sessions.handle(event, now.unix, asked, &stats);
                for effect in asked.drain(..) {
                    match effect {
                        // A request for this worker's own shard is handled here and
                        // now, not sent through the shard queue to come back later.
                        // Order per conversation stays as through the queue: the
                        // queue's messages go first, because whatever the client saw
                        // before sending this (a `Queued` frame from the router, say)
                        // was caused by a message already in that queue; and every
                        // request of a session for this shard takes this same path, in
                        // the order the session emitted them.
                        Effect::Shard(msg) if shard_of(msg.conversation(), n_shards) == id => {
                            // Only what is there now: what comes later is not before it.
                            for queued in shard_rx.try_iter().take(shard_rx.len()) {
                                on_shard(queued, now, shard, durable, effects);
                            }
                            on_shard(msg, now, shard, durable, effects);
                        }
                        other => effects.push(other),
                    }
                }
            };
            // With a systemd watchdog, turn at least every tick so progress shows.
            let tick = crate::ops::watchdog::progress_tick().unwrap_or(IDLE_WAIT);
            // When the shard next looks for conversations to close as inactive.
            let mut next_sweep = Mono::ZERO;
            loop {
                stats.loops.inc();
                // Deadlines and the wait are reckoned from after the last turn's work.
                let mut now = clock.now();
                let mut handled = 1;
                // A failed journal batch is retried after a back-off.
                let mut wait = durable
                    .as_ref()
                    .and_then(Durable::wake_at)
                    .map_or(tick, |t| t.since(now.mono).min(tick));
                if shard.has_deferred() {
                    wait = wait.min(DEFERRED_RETRY);
                }
                // Sessions end when their tokens expire.
                if let Some(at) = sessions.next_deadline() {
                    let left = Duration::from_millis(at.get().saturating_sub(now.unix.get()));
                    wait = wait.min(left);
                }
                if let Some(every) = shard.sweep_every() {
                    if now.mono >= next_sweep {
                        next_sweep = now.mono.plus(every);
                        for conversation in shard.inactive(now.unix) {
                            let msg = ShardMsg::SystemClose {
                                conversation,
                                reason: crate::service::conversation::INACTIVE.to_owned(),
                            };
                            on_shard(msg, now, &mut shard, &mut durable, &mut effects);
                        }
                    }
                    wait = wait.min(next_sweep.since(now.mono));
                }
                crossbeam_channel::select! {
                    recv(events.selectable()) -> ev => match events.counted(ev) {
                        Ok(ev) => {
                            now = clock.now();
                            apply_controls(&control_rx, &mut shard, &mut effects);
                            let buffers = (&mut asked, &mut effects);
                            on_event(ev, now, &mut sessions, &mut shard, &mut durable, buffers, &mut dispatch);
                        }
                        // Every reactor is gone: shutdown.
                        Err(_) => break,
                    },
                    recv(shard_rx) -> msg => if let Ok(msg) = msg {
                        now = clock.now();
                        apply_controls(&control_rx, &mut shard, &mut effects);
                        on_shard(msg, now, &mut shard, &mut durable, &mut effects);
                    },
                    recv(control_rx) -> msg => if let Ok(msg) = msg {
                        now = clock.now();
                        shard.control(msg, &mut effects);
                    },
                    recv(replies_rx) -> reply => if let Ok(reply) = reply {
                        now = clock.now();
                        on_reply(reply, now, &mut sessions, &mut effects);
                    },
                    recv(commits) -> c => if let (Ok(c), Some(d)) = (c, durable.as_mut()) {
                        now = clock.now();
                        let send = &mut |e: &mut Vec<Effect>| dispatch.run(e, now.mono);
                        d.committed(c, &mut shard, now, &mut effects, send);
                    },
                    default(wait) => {
                        handled = 0;
                        now = clock.now();
                    }
                }
                while handled < BATCH {
                    // Controls before anything they may apply to (`apply_controls`).
                    if let Ok(msg) = control_rx.try_recv() {
                        shard.control(msg, &mut effects);
                    } else if let Ok(ev) = events.try_recv() {
                        let buffers = (&mut asked, &mut effects);
                        on_event(ev, now, &mut sessions, &mut shard, &mut durable, buffers, &mut dispatch);
                    } else if let Ok(msg) = shard_rx.try_recv() {
                        on_shard(msg, now, &mut shard, &mut durable, &mut effects);
                    } else if let Ok(reply) = replies_rx.try_recv() {
                        on_reply(reply, now, &mut sessions, &mut effects);
                    } else if let (Ok(c), Some(d)) = (commits.try_recv(), durable.as_mut()) {
                        let send = &mut |e: &mut Vec<Effect>| dispatch.run(e, now.mono);
                        d.committed(c, &mut shard, now, &mut effects, send);
                    } else {
                        break;
                    }
                    handled += 1;
                    if effects.len() >= BATCH {
                        dispatch.run(&mut effects, now.mono);
                    }
                }
                sessions.tick(now.unix, &mut effects, &stats);
                shard.retry_deferred(&mut effects);
                shard_stats::publish(shard.stats_mut(), &stats, &conversations);
                if let Some(d) = durable.as_mut() {
                    let send = &mut |e: &mut Vec<Effect>| dispatch.run(e, now.mono);
                    d.flush(&mut shard, now, &mut effects, send);
                }
                dispatch.run(&mut effects, now.mono);
                stats.events.add(handled as u64);
                stats.queue_depth.set(events.len() as u64);
                let shard_depth = shard_rx.len() as u64;
                stats.shard_queue_depth.set(shard_depth);
                stats.shard_queue_peak.max(shard_depth);
                dispatch.wake_all();
            }
        })
}

/// Applies the shard's pending control messages. Called before anything that may
/// reach the shard — a shard message, and an event too, since an event for a
/// conversation of this worker's own shard reaches it directly — so that a control
/// sent before it (a reload's libraries, a group going online) applies first.
fn apply_controls(
    control_rx: &Receiver<ShardControl>,
    shard: &mut Shard,
    effects: &mut Vec<Effect>,
) {
    while let Ok(c) = control_rx.try_recv() {
        shard.control(c, effects);
    }
}

/// Starts the router thread; it ends when every worker (the senders) is gone.
pub(crate) fn spawn_router(
    rx: Receiver<RouterMsg>,
    mut links: Links,
    mut router: Router,
    stats: Arc<CachePadded<RouterMetrics>>,
) -> std::io::Result<JoinHandle<()>> {
    links.router = None;
    std::thread::Builder::new()
        .name("router".into())
        .spawn(move || {
            // The router reads no clock: this loop reads it once per turn (and
            // after each wait) and hands the reading on.
            let clock = Clock::new();
            let mut dispatch = Dispatch::new(links, None);
            let mut effects = Vec::new();
            // With a systemd watchdog, turn at least every tick so progress shows.
            let tick = crate::ops::watchdog::progress_tick().unwrap_or(IDLE_WAIT);
            // Gauges at most every 100 ms after a change: a snapshot walks every user
            // and queue.
            const GAUGES_EVERY: Duration = Duration::from_millis(100);
            let mut published = Mono::ZERO;
            let mut dirty = true;
            loop {
                stats.loops.inc();
                let mut now = clock.mono();
                let depth = rx.len() as u64;
                stats.queue_depth.set(depth);
                stats.queue_peak.max(depth);
                if dirty && now.since(published) >= GAUGES_EVERY {
                    dirty = false;
                    published = now;
                    let g = router.gauges();
                    stats.agents_online.set(g.agents_online as u64);
                    let [q, a] = &stats.conversations;
                    q.set(g.queued as u64);
                    a.set(g.assigned as u64);
                    stats.set_queue_lengths(g.queues);
                }
                let mut wait = router
                    .next_deadline()
                    .map_or(tick, |at| at.since(now).min(tick));
                if dirty {
                    wait = wait.min(GAUGES_EVERY.saturating_sub(now.since(published)));
                }
                let msg = match rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                now = clock.mono();
                if let Some(m) = msg {
                    dirty = true;
                    router.handle(m, now, &mut effects);
                }
                for m in rx.try_iter().take(BATCH) {
                    router.handle(m, now, &mut effects);
                }
                router.tick(now, &mut effects);
                dispatch.run(&mut effects, now);
                dispatch.wake_all();
            }
        })
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
