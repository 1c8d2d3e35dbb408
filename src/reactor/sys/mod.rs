//! I/O backends. Each backend is a module that drives a [`Core`](super::core::Core)
//! with the same five calls, whatever the kernel interface underneath:
//!
//! | backend calls on the core        | when                                         |
//! |----------------------------------|----------------------------------------------|
//! | `accept(kind, stream, peer)`     | a listener produced a socket                 |
//! | `on_data(token, bytes)`          | bytes arrived (from the backend's buffer)    |
//! | `on_eof` / `on_read_error`       | the peer closed, or reading failed           |
//! | `on_writable(token)`             | a socket with queued output can take more    |
//! | `run_commands`, `run_timers`     | once per loop turn                           |
//!
//! and the core calls back through [`Driver`] to register sockets and switch write
//! interest. Reads land in a buffer the backend owns (one per reactor for epoll; the
//! provided-buffer ring for io_uring), so no connection owns a receive buffer. Writes
//! are plain non-blocking `write`/`writev` calls on the socket made by the core.
//!
//! Contract: a backend delivers `on_data` for a token only while
//! `Core::readable_stream(token)` returns a stream, calls the core from one thread,
//! and ends its loop when `Core::drain_finished()` says so. Every loop turn it takes
//! `Core::take_resume()` and reads those connections again (a completion-based
//! backend delivers what it had to hold back while reading was paused).

pub(crate) mod epoll;
pub(crate) mod uring;

use std::io;
use std::sync::{Arc, OnceLock};

use mio::Token;
use mio::net::TcpStream;

/// What the core may ask of the backend.
pub(crate) trait Driver {
    /// Starts watching a new connection for input.
    fn register(&mut self, stream: &mut TcpStream, token: Token) -> io::Result<()>;
    /// Turns interest in writability on or off (on only while output is queued).
    fn set_writable(&mut self, stream: &mut TcpStream, token: Token, on: bool) -> io::Result<()>;
    /// Stops watching a connection that is about to be closed.
    fn deregister(&mut self, stream: &mut TcpStream, token: Token);
    /// Closes the listeners: shutdown has begun.
    fn stop_accepting(&mut self);
}

/// The backend a reactor runs on, after resolving `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chosen {
    /// epoll through mio.
    Epoll,
    /// io_uring.
    Uring,
}

/// Resolves the configured backend. `auto` probes the kernel once per process and
/// logs (when `log` is set) which backend it picked and why; an explicit `uring` on a
/// kernel without the features is an error.
pub(crate) fn choose(want: crate::config::Backend, log: bool) -> io::Result<Chosen> {
    use crate::config::Backend;
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    let probe = || PROBE.get_or_init(uring::probe).clone();
    match want {
        Backend::Epoll => Ok(Chosen::Epoll),
        Backend::Uring => probe()
            .map(|()| Chosen::Uring)
            .map_err(|why| io::Error::new(io::ErrorKind::Unsupported, why)),
        Backend::Auto => match probe() {
            Ok(()) => {
                if log {
                    tracing::info!(
                        backend = "uring",
                        "reactor backend auto: io_uring supports SINGLE_ISSUER, DEFER_TASKRUN, \
                         multishot accept/recv and buffer rings"
                    );
                }
                Ok(Chosen::Uring)
            }
            Err(why) => {
                if log {
                    tracing::info!(backend = "epoll", reason = %why, "reactor backend auto: io_uring unusable, using epoll");
                }
                Ok(Chosen::Epoll)
            }
        },
    }
}

/// How other threads wake a reactor.
#[derive(Debug)]
pub(crate) enum Waker {
    /// The epoll backend's waker.
    Mio(mio::Waker),
    /// The io_uring backend's eventfd.
    Event(Arc<uring::EventFd>),
}

impl Waker {
    /// Wakes the reactor.
    pub(crate) fn wake(&self) -> io::Result<()> {
        match self {
            Self::Mio(w) => w.wake(),
            Self::Event(e) => e.wake(),
        }
    }
}
