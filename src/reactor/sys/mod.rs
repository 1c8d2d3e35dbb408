//! I/O backends. Each backend is a module that drives a [`Core`](super::core::Core)
//! with the same five calls, whatever the kernel interface underneath:
//!
//! | backend calls on the core             | when                                    |
//! |---------------------------------------|-----------------------------------------|
//! | `accept(now, kind, stream, peer)`     | a listener produced a socket            |
//! | `on_data(now, token, bytes)`          | bytes arrived (from the backend's buffer) |
//! | `on_eof` / `on_read_error`            | the peer closed, or reading failed      |
//! | `on_writable(now, token)`             | a socket with queued output can take more |
//! | `on_sent(now, token, result)`         | an asynchronous send completed          |
//! | `run_commands(now)`, `run_timers(now)` | once per loop turn                     |
//! | `flush_dirty(now)`, `end_turn(now)`, `turn_took` | at the end of each loop turn  |
//!
//! and the core calls back through [`Driver`] to register sockets, switch write
//! interest and send. Reads land in a buffer the backend owns (one per reactor for
//! epoll; the provided-buffer ring for io_uring), so no connection owns a receive
//! buffer. The core queues a protocol connection's output for the turn and, at its
//! end, offers it once per connection through [`Driver::send`]: epoll writes it with
//! one `writev` (frames for one connection in one turn share a system call and a TCP
//! segment); io_uring turns it into a send request, so one `io_uring_enter` submits
//! every connection's output. Echo listeners' output goes out at once where the
//! backend writes synchronously ([`Driver::write_now`]: epoll).
//!
//! Contract: a backend delivers `on_data` for a token only while
//! `Core::readable_stream(token)` returns a stream, calls the core from one thread,
//! and ends its loop when `Core::drain_finished(now)` says so. Every loop turn it takes
//! `Core::take_resume()` and reads those connections again (a completion-based
//! backend delivers what it had to hold back while reading was paused). The core
//! reads no clock: the backend reads [`Clock`](crate::clock::Clock) (the core's, from
//! `Core::clock()`) when its wait returns and when the turn's work is done, and
//! passes that `now` to every call.

/// Caps a loop's wait at `tick` (with a systemd watchdog, every loop turns at least
/// that often so its progress shows; `None`: no cap).
pub(crate) fn cap_wait(
    wait: Option<std::time::Duration>,
    tick: Option<std::time::Duration>,
) -> Option<std::time::Duration> {
    match (wait, tick) {
        (Some(w), Some(t)) => Some(w.min(t)),
        (None, t) => t,
        (w, None) => w,
    }
}

#[allow(unsafe_code, reason = "mimalloc's option API is C")]
pub(crate) mod allocator;
pub(crate) mod epoll;
#[allow(unsafe_code, reason = "sched_setattr(2) has no safe wrapper")]
pub(crate) mod sched;
#[allow(
    unsafe_code,
    reason = "io_uring: buffers and submissions shared with the kernel"
)]
pub(crate) mod uring;

use std::io;
use std::sync::{Arc, OnceLock};

use std::collections::VecDeque;

use bytes::Bytes;
use mio::Token;
use mio::net::TcpStream;

/// What became of output offered with [`Driver::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// This many bytes from the head were written now.
    Wrote(usize),
    /// The kernel takes nothing now; wait for writability.
    Blocked,
    /// A send request for this many head entries is in flight; the backend reports
    /// its result through `Core::on_sent` and keeps the bytes alive until then.
    Submitted(u8),
    /// The socket is broken.
    Failed,
}

/// What the core may ask of the backend.
pub(crate) trait Driver {
    /// Starts watching a new connection for input.
    fn register(&mut self, stream: &mut TcpStream, token: Token) -> io::Result<()>;
    /// Turns interest in writability on or off (on only while output is queued).
    fn set_writable(&mut self, stream: &mut TcpStream, token: Token, on: bool) -> io::Result<()>;
    /// Writes `data` at once if this backend writes synchronously (epoll: the
    /// bytes are copied into the socket now, so nothing is held until the end of
    /// the turn); `None` if it batches sends per turn instead (io_uring). The core
    /// asks only for echo listeners' output: protocol output is batched per turn.
    fn write_now(&mut self, stream: &TcpStream, data: &[u8]) -> Option<Sent>;
    /// Offers the head of a connection's queued output to the kernel. Only one
    /// send per connection is outstanding: the core does not call this again for
    /// `token` until a [`Sent::Submitted`] send has completed.
    fn send(&mut self, stream: &TcpStream, token: Token, queue: &VecDeque<Bytes>) -> Sent;
    /// Stops watching a connection that is about to be closed.
    fn deregister(&mut self, stream: &mut TcpStream, token: Token);
    /// The kernel refused part of a connection's queued output (a short send, or
    /// `EAGAIN`): replaces any entry of `queue` that still points into the backend's
    /// receive buffers with a copy, so output waiting for a slow reader does not hold
    /// buffers that receives need (io_uring's lent echo bytes; nothing elsewhere).
    fn unlend(&mut self, _queue: &mut VecDeque<Bytes>) {}
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

impl Chosen {
    /// The name an operator sees (log field, metric label): `epoll` or `uring`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Epoll => "epoll",
            Self::Uring => "uring",
        }
    }
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
