//! The business worker pool: threads that turn [`Event`]s into [`Command`]s.
//!
//! Each worker owns the sessions of the connections routed to it, so their state needs
//! no lock. Commands are batched: a worker wakes each reactor it wrote to once per
//! batch of events, not once per command.

mod session;

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use crossbeam_utils::CachePadded;

use crate::handoff::Event;
use crate::metrics::WorkerMetrics;
use crate::reactor::ReactorHandle;

pub(crate) use session::{SessionSettings, Sessions};

/// Events handled before pending wake-ups are sent.
const BATCH: usize = 256;

/// Where a worker's commands go: the reactors, with a note of which need waking.
struct Outbox {
    reactors: Arc<[ReactorHandle]>,
    dirty: Vec<bool>,
}

impl Outbox {
    fn new(reactors: Arc<[ReactorHandle]>) -> Self {
        let dirty = vec![false; reactors.len()];
        Self { reactors, dirty }
    }

    /// Queues commands for the reactors that own their connections.
    fn push_all(&mut self, cmds: &mut session::Out) {
        for (conn, cmd) in cmds.drain(..) {
            let i = usize::from(conn.reactor);
            if let (Some(r), Some(d)) = (self.reactors.get(i), self.dirty.get_mut(i))
                && r.send(cmd)
            {
                *d = true;
            }
        }
    }

    fn wake_all(&mut self) {
        for (r, d) in self.reactors.iter().zip(self.dirty.iter_mut()) {
            if std::mem::take(d) {
                r.wake();
            }
        }
    }
}

/// Starts worker `id` on its queue.
pub(crate) fn spawn(
    id: usize,
    events: Receiver<Event>,
    reactors: Arc<[ReactorHandle]>,
    mut sessions: Sessions,
    stats: Arc<CachePadded<WorkerMetrics>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("worker-{id}"))
        .spawn(move || {
            let mut out = Outbox::new(reactors);
            let mut cmds = session::Out::new();
            // Ends when every reactor (the senders) is gone.
            while let Ok(first) = events.recv() {
                let mut next = Some(first);
                let mut handled = 0;
                while let Some(event) = next.take() {
                    match event {
                        Event::Barrier(ack) => {
                            out.wake_all();
                            let _ = ack.send(());
                        }
                        event => {
                            sessions.handle(event, &mut cmds, &stats);
                            out.push_all(&mut cmds);
                        }
                    }
                    handled += 1;
                    if handled < BATCH {
                        next = events.try_recv().ok();
                    }
                }
                stats.events.add(handled as u64);
                stats.queue_depth.set(events.len() as u64);
                out.wake_all();
            }
        })
}
