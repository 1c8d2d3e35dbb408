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
//! and ends its loop when `Core::drain_finished()` says so.

pub(crate) mod epoll;

use std::io;

use mio::Token;
use mio::net::TcpStream;

/// What the core may ask of the backend.
pub(crate) trait Driver {
    /// Starts watching a new connection for input.
    fn register(&mut self, stream: &mut TcpStream, token: Token) -> io::Result<()>;
    /// Turns interest in writability on or off (on only while output is queued).
    fn set_writable(&mut self, stream: &mut TcpStream, token: Token, on: bool) -> io::Result<()>;
    /// Stops watching a connection that is about to be closed.
    fn deregister(&mut self, stream: &mut TcpStream);
    /// Closes the listeners: shutdown has begun.
    fn stop_accepting(&mut self);
}
