//! The business worker pool: threads that turn [`Event`]s into [`Command`]s.
//!
//! Each worker owns the sessions of the connections routed to it, so their state needs
//! no lock. Commands are batched: a worker wakes each reactor it wrote to once per
//! batch of events, not once per command.

mod session;

use std::sync::Arc;
use std::thread::JoinHandle;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use crossbeam_utils::CachePadded;

use crate::clock::{millis, unix_ms};
use crate::handoff::{Command, ConnId, Event};
use crate::metrics::WorkerMetrics;
use crate::reactor::ReactorHandle;
use crate::service::conversation::Shard;
use crate::service::router::Router;
use crate::service::{Effect, RouterMsg, ShardMsg, shard_of};

pub(crate) use session::{SessionSettings, Sessions};

/// Events handled before pending wake-ups are sent.
const BATCH: usize = 256;

/// Where effects go: reactors (frames), conversation shards and the router.
#[derive(Clone)]
pub(crate) struct Links {
    /// Every reactor, by index.
    pub reactors: Arc<[ReactorHandle]>,
    /// Every conversation shard's queue, by shard index (= worker index).
    pub shards: Arc<[Sender<ShardMsg>]>,
    /// The router's queue (`None` in the router itself, so that the router's queue
    /// closes — and the router ends — once every worker is gone).
    pub router: Option<Sender<RouterMsg>>,
}

/// Carries out effects, noting which reactors need waking.
struct Dispatch {
    links: Links,
    dirty: Vec<bool>,
    /// Scratch for splitting a broadcast by reactor.
    members: Vec<Vec<ConnId>>,
}

impl Dispatch {
    fn new(links: Links) -> Self {
        let n = links.reactors.len();
        Self {
            links,
            dirty: vec![false; n],
            members: vec![Vec::new(); n],
        }
    }

    fn command(&mut self, reactor: u16, cmd: Command) {
        let i = usize::from(reactor);
        if let (Some(r), Some(d)) = (self.links.reactors.get(i), self.dirty.get_mut(i))
            && r.send(cmd)
        {
            *d = true;
        }
    }

    fn run(&mut self, effects: &mut Vec<Effect>) {
        for effect in effects.drain(..) {
            match effect {
                Effect::Conn(conn, cmd) => self.command(conn.reactor, cmd),
                Effect::Broadcast(conns, frame) => {
                    // One shared frame, one command per reactor with its members.
                    for conn in conns {
                        if let Some(m) = self.members.get_mut(usize::from(conn.reactor)) {
                            m.push(conn);
                        }
                    }
                    for i in 0..self.members.len() {
                        let conns = self
                            .members
                            .get_mut(i)
                            .map(std::mem::take)
                            .unwrap_or_default();
                        if !conns.is_empty() {
                            let frame = frame.clone();
                            self.command(i as u16, Command::SendMany { conns, frame });
                        }
                    }
                }
                // The router and shard queues are unbounded: every message on them is
                // caused by a bounded input event (see `server`), so they cannot grow
                // faster than the bounded queues feeding them.
                Effect::Router(msg) => {
                    if let Some(router) = &self.links.router {
                        let _ = router.send(msg);
                    }
                }
                Effect::Shard(msg) => {
                    let n = self.links.shards.len();
                    if let Some(tx) = self.links.shards.get(shard_of(msg.conversation(), n)) {
                        let _ = tx.send(msg);
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

/// Starts worker `id`: the sessions of the connections routed to it (from its event
/// queue) and conversation shard `id` (from its shard queue).
pub(crate) fn spawn(
    id: usize,
    (events, queued_bytes): (Receiver<Event>, Arc<CachePadded<AtomicU64>>),
    shard_rx: Receiver<ShardMsg>,
    links: Links,
    mut sessions: Sessions,
    mut shard: Shard,
    stats: Arc<CachePadded<WorkerMetrics>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("worker-{id}"))
        .spawn(move || {
            let mut dispatch = Dispatch::new(links);
            let mut effects = Vec::new();
            let mut on_event =
                |event: Event, effects: &mut Vec<Effect>, dispatch: &mut Dispatch| {
                    if let Event::Barrier(ack) = event {
                        dispatch.run(effects);
                        dispatch.wake_all();
                        let _ = ack.send(());
                    } else {
                        if let Event::Frame { payload, .. } = &event {
                            // Release the frame's share of the queue's byte bound.
                            queued_bytes.fetch_sub(payload.len() as u64, Ordering::Relaxed);
                        }
                        sessions.handle(event, effects, &stats);
                    }
                };
            loop {
                crossbeam_channel::select! {
                    recv(events) -> ev => match ev {
                        Ok(ev) => on_event(ev, &mut effects, &mut dispatch),
                        // Every reactor is gone: shutdown.
                        Err(_) => break,
                    },
                    recv(shard_rx) -> msg => if let Ok(msg) = msg {
                        shard.handle(msg, unix_ms(), &mut effects);
                    },
                }
                let mut handled = 1;
                while handled < BATCH {
                    if let Ok(ev) = events.try_recv() {
                        on_event(ev, &mut effects, &mut dispatch);
                    } else if let Ok(msg) = shard_rx.try_recv() {
                        shard.handle(msg, unix_ms(), &mut effects);
                    } else {
                        break;
                    }
                    handled += 1;
                    if effects.len() >= BATCH {
                        dispatch.run(&mut effects);
                    }
                }
                dispatch.run(&mut effects);
                stats.events.add(handled as u64);
                stats.queue_depth.set(events.len() as u64);
                dispatch.wake_all();
            }
        })
}

/// Starts the router thread; it ends when every worker (the senders) is gone.
pub(crate) fn spawn_router(
    rx: Receiver<RouterMsg>,
    mut links: Links,
    mut router: Router,
) -> std::io::Result<JoinHandle<()>> {
    links.router = None;
    std::thread::Builder::new()
        .name("router".into())
        .spawn(move || {
            let epoch = Instant::now();
            let now = || millis(epoch.elapsed());
            let mut dispatch = Dispatch::new(links);
            let mut effects = Vec::new();
            loop {
                let msg = match router.next_deadline() {
                    Some(at) => {
                        let wait = Duration::from_millis(at.saturating_sub(now()));
                        match rx.recv_timeout(wait) {
                            Ok(m) => Some(m),
                            Err(RecvTimeoutError::Timeout) => None,
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                    None => match rx.recv() {
                        Ok(m) => Some(m),
                        Err(_) => break,
                    },
                };
                if let Some(m) = msg {
                    router.handle(m, now(), &mut effects);
                }
                for m in rx.try_iter().take(BATCH) {
                    router.handle(m, now(), &mut effects);
                }
                router.tick(now(), &mut effects);
                dispatch.run(&mut effects);
                dispatch.wake_all();
            }
        })
}
