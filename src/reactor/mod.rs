//! The reactor: one thread per core owning its sockets, connection slab, timers and
//! outbox. Backends live in `sys/`; the backend-independent logic in `core`.

mod conn;
mod core;
mod listen;
mod sys;
pub(crate) mod timer;

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::CachePadded;

use crate::config::Config;
use crate::handoff::{Command, WorkerQueue};
use crate::metrics::ReactorMetrics;

pub(crate) use conn::ListenerKind;
pub(crate) use listen::bind_group;

/// How workers and the server reach one reactor.
#[derive(Debug, Clone)]
pub(crate) struct ReactorHandle {
    commands: Sender<Command>,
    waker: Arc<mio::Waker>,
}

impl ReactorHandle {
    /// Queues a command; false if the reactor is gone. Blocks while the queue is full
    /// (the reactor never blocks, so it always makes room).
    pub fn send(&self, cmd: Command) -> bool {
        self.commands.send(cmd).is_ok()
    }

    /// Wakes the reactor so it looks at its queue.
    pub fn wake(&self) {
        let _ = self.waker.wake();
    }
}

/// A reactor that has its poller and queue but no thread yet.
pub(crate) struct Pending {
    id: u16,
    poll: mio::Poll,
    commands: Receiver<Command>,
}

/// Creates the poller, waker and command queue of reactor `id`.
pub(crate) fn prepare(id: u16, config: &Config) -> io::Result<(Pending, ReactorHandle)> {
    let poll = mio::Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), sys::epoll::WAKER)?);
    let (tx, rx) = crossbeam_channel::bounded(config.reactor.command_queue_depth);
    Ok((
        Pending {
            id,
            poll,
            commands: rx,
        },
        ReactorHandle {
            commands: tx,
            waker,
        },
    ))
}

/// Starts the reactor thread.
pub(crate) fn spawn(
    pending: Pending,
    config: &Config,
    listeners: Vec<(TcpListener, ListenerKind)>,
    workers: Arc<[WorkerQueue]>,
    stats: Arc<CachePadded<ReactorMetrics>>,
) -> io::Result<JoinHandle<()>> {
    let Pending { id, poll, commands } = pending;
    let settings = core::Settings::from_config(config);
    let loop_cfg = sys::epoll::LoopConfig {
        events_per_poll: config.reactor.events_per_poll,
        read_buffer_bytes: config.reactor.read_buffer_bytes,
    };
    std::thread::Builder::new()
        .name(format!("reactor-{id}"))
        .spawn(move || {
            let core = core::Core::new(id, settings, commands, workers, stats);
            if let Err(e) = sys::epoll::run(poll, listeners, core, loop_cfg) {
                tracing::error!(reactor = id, error = %e, "reactor stopped on an I/O error");
            }
        })
}
