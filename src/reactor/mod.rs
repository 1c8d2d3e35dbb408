//! The reactor: one thread per core owning its sockets, connection slab, timers and
//! outbox. Backends live in `sys/`; the backend-independent logic in `core`.

pub(crate) mod admission;
mod api_desk;
mod conn;
mod conn_buffers;
mod console_desk;
mod core;
mod dialect;
mod listen;
pub(crate) mod sys;
pub(crate) mod timer;
mod visitor_desk;
mod web_widget;

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::queue::{Receiver, Sender};
use crossbeam_utils::CachePadded;

use crate::config::Config;
use crate::handoff::{Command, WorkerQueue};
use crate::metrics::ReactorMetrics;
use crate::reactor::admission::{AcceptBucket, ConnLimits};

pub(crate) use conn::ListenerKind;
pub(crate) use console_desk::ConsoleLinks;
pub(crate) use listen::bind_group;
pub(crate) use sys::Chosen as Backend;
pub(crate) use visitor_desk::signer as visitor_signer;

/// Resolves `reactor.backend` (`auto` probes the kernel once per process; with `log`
/// the choice and its reason are logged). An explicit `uring` on a kernel that lacks
/// a feature is an error saying which.
pub(crate) fn resolve_backend(want: crate::config::Backend, log: bool) -> io::Result<Backend> {
    sys::choose(want, log)
}

/// How workers and the server reach one reactor.
#[derive(Debug, Clone)]
pub(crate) struct ReactorHandle {
    commands: Sender<Command>,
    waker: Arc<sys::Waker>,
}

impl ReactorHandle {
    /// A handle whose commands land in `commands` (tests of the threads that send
    /// commands, with no reactor behind them). Also returns the poll the waker
    /// belongs to, which must outlive the handle's use.
    #[cfg(test)]
    pub fn for_test(commands: Sender<Command>) -> std::io::Result<(Self, mio::Poll)> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), mio::Token(0))?;
        let handle = Self {
            commands,
            waker: Arc::new(sys::Waker::Mio(waker)),
        };
        Ok((handle, poll))
    }

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
    io: PendingIo,
    commands: Receiver<Command>,
}

/// The backend half a reactor thread starts with.
enum PendingIo {
    Epoll(mio::Poll),
    Uring(Arc<sys::uring::EventFd>),
}

/// Creates the poller, waker and command queue of reactor `id` on `backend` (see
/// [`resolve_backend`]).
pub(crate) fn prepare(
    id: u16,
    config: &Config,
    backend: Backend,
) -> io::Result<(Pending, ReactorHandle)> {
    let (io, waker) = match backend {
        sys::Chosen::Epoll => {
            let poll = mio::Poll::new()?;
            let waker = mio::Waker::new(poll.registry(), sys::epoll::WAKER)?;
            (PendingIo::Epoll(poll), sys::Waker::Mio(waker))
        }
        sys::Chosen::Uring => {
            let efd = Arc::new(sys::uring::EventFd::new()?);
            (PendingIo::Uring(efd.clone()), sys::Waker::Event(efd))
        }
    };
    let waker = Arc::new(waker);
    let (tx, rx) = crate::queue::bounded(config.reactor.command_queue_depth);
    Ok((
        Pending {
            id,
            io,
            commands: rx,
        },
        ReactorHandle {
            commands: tx,
            waker,
        },
    ))
}

/// What every reactor shares with the rest of the daemon.
pub(crate) struct Shared {
    /// The workers' event queues.
    pub workers: Arc<[WorkerQueue]>,
    /// Connection limits (per IP, in total).
    pub limits: Arc<ConnLimits>,
    /// Output owed per connection and in total.
    pub ledger: Arc<crate::ledger::Ledger>,
    /// Longest wait between loop turns: the systemd watchdog's progress tick (`None`:
    /// no watchdog).
    pub tick: Option<std::time::Duration>,
    /// The console's users and login threads.
    pub console: ConsoleLinks,
    /// TLS on the client listener (`None`: plaintext only).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Starts the reactor thread.
pub(crate) fn spawn(
    pending: Pending,
    config: &Config,
    listeners: Vec<(TcpListener, ListenerKind)>,
    stats: Arc<CachePadded<ReactorMetrics>>,
    shared: &Shared,
) -> io::Result<JoinHandle<()>> {
    let (workers, limits, ledger, tick, console) = (
        shared.workers.clone(),
        shared.limits.clone(),
        shared.ledger.clone(),
        shared.tick,
        shared.console.clone(),
    );
    let bucket = AcceptBucket::new(&config.limits, config.reactor_threads());
    let Pending { id, io, commands } = pending;
    let settings = core::Settings {
        tls: shared.tls.clone(),
        ..core::Settings::from_config(config)
    };
    let loop_cfg = sys::epoll::LoopConfig {
        events_per_poll: config.reactor.events_per_poll,
        read_buffer_bytes: config.reactor.read_buffer_bytes,
        tick,
    };
    let uring_cfg = sys::uring::LoopConfig {
        entries: u32::try_from(config.reactor.events_per_poll).unwrap_or(u32::MAX),
        buffers: config.reactor.uring_buffers,
        buffer_bytes: config.reactor.uring_buffer_bytes,
        fixed_files: config.reactor.uring_fixed_files,
        tick,
    };
    let slice_us = config.reactor.sched_slice_us;
    std::thread::Builder::new()
        .name(format!("reactor-{id}"))
        .spawn(move || {
            sys::sched::apply(slice_us, "reactor");
            let links = core::Links {
                commands,
                workers,
                stats,
                limits,
                bucket,
                ledger,
                console: Some(console),
            };
            let core = core::Core::new(id, settings, links, crate::clock::Clock::new());
            let r = match io {
                PendingIo::Epoll(poll) => sys::epoll::run(poll, listeners, core, loop_cfg),
                PendingIo::Uring(efd) => sys::uring::run(efd, listeners, core, uring_cfg),
            };
            if let Err(e) = r {
                tracing::error!(reactor = id, error = %e, "reactor stopped on an I/O error");
            }
        })
}
