//! The epoll backend, through `mio` (edge-triggered readiness).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};

use bytes::Bytes;

use super::{Driver, Sent};
use crate::clock::Mono;
use crate::reactor::conn::ListenerKind;
use crate::reactor::core::Core;

/// Token of the cross-thread waker.
pub(crate) const WAKER: Token = Token(usize::MAX);
/// Connections accepted from one listener per loop turn before others get a turn.
const ACCEPT_BATCH: usize = 256;
/// Most buffers handed to one `writev`.
const MAX_IOVECS: usize = 64;
/// After running out of file descriptors, wait this long before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Loop sizing from the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoopConfig {
    pub events_per_poll: usize,
    pub read_buffer_bytes: usize,
    /// Longest wait between turns (the watchdog's progress tick; `None`: no cap).
    pub tick: Option<Duration>,
}

struct Listener {
    socket: TcpListener,
    kind: ListenerKind,
    /// More connections may be waiting (accept batch used up).
    backlog: bool,
}

/// The [`Driver`] for epoll: a registry handle and the listeners.
struct Epoll {
    registry: Registry,
    listeners: Vec<Listener>,
    accept_paused_until: Option<Mono>,
}

impl Driver for Epoll {
    fn register(&mut self, stream: &mut TcpStream, token: Token) -> io::Result<()> {
        self.registry.register(stream, token, Interest::READABLE)
    }

    fn set_writable(&mut self, stream: &mut TcpStream, token: Token, on: bool) -> io::Result<()> {
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        self.registry.reregister(stream, token, interest)
    }

    fn write_now(&mut self, stream: &TcpStream, data: &[u8]) -> Option<Sent> {
        loop {
            return Some(match (&*stream).write(data) {
                Ok(n) => Sent::Wrote(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => Sent::Failed,
            });
        }
    }

    fn send(&mut self, stream: &TcpStream, _token: Token, queue: &VecDeque<Bytes>) -> Sent {
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n_iov = 0;
        for (dst, src) in iov.iter_mut().zip(queue.iter()) {
            *dst = IoSlice::new(src);
            n_iov += 1;
        }
        let iov = iov.get(..n_iov).unwrap_or_default();
        loop {
            return match (&*stream).write_vectored(iov) {
                Ok(n) => Sent::Wrote(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => Sent::Failed,
            };
        }
    }

    fn deregister(&mut self, stream: &mut TcpStream, _token: Token) {
        let _ = self.registry.deregister(stream);
    }

    fn stop_accepting(&mut self) {
        for mut l in self.listeners.drain(..) {
            let _ = self.registry.deregister(&mut l.socket);
        }
    }
}

/// Runs a reactor on epoll until its core finishes draining.
pub(crate) fn run(
    mut poll: Poll,
    listeners: Vec<(std::net::TcpListener, ListenerKind)>,
    mut core: Core,
    cfg: LoopConfig,
) -> io::Result<()> {
    let mut drv = Epoll {
        registry: poll.registry().try_clone()?,
        listeners: Vec::with_capacity(listeners.len()),
        accept_paused_until: None,
    };
    for (i, (socket, kind)) in listeners.into_iter().enumerate() {
        let mut socket = TcpListener::from_std(socket);
        drv.registry
            .register(&mut socket, Token(i), Interest::READABLE)?;
        drv.listeners.push(Listener {
            socket,
            kind,
            backlog: false,
        });
    }
    let mut events = Events::with_capacity(cfg.events_per_poll);
    let mut buf = vec![0u8; cfg.read_buffer_bytes].into_boxed_slice();
    // Two clock reads a turn: when the poll returns (for the events it brought) and
    // when the turn's work is done (for the deadlines and the next wait).
    let clock = core.clock();
    let mut now = clock.mono();
    loop {
        core.flush_deferred();
        let timer_wait = core.run_timers(&mut drv, now);
        let busy = core.has_resume() || drv.listeners.iter().any(|l| l.backlog);
        let mut wait = if busy {
            Some(Duration::ZERO)
        } else {
            timer_wait
        };
        if let Some(until) = drv.accept_paused_until {
            let left = until.since(now);
            wait = Some(wait.map_or(left, |w| w.min(left)));
        }
        // With a systemd watchdog, turn at least every tick so progress shows.
        let wait = super::cap_wait(wait, cfg.tick);
        if let Err(e) = poll.poll(&mut events, wait)
            && e.kind() != io::ErrorKind::Interrupted
        {
            return Err(e);
        }
        let turn = Instant::now();
        now = clock.at(turn);
        for ev in events.iter() {
            let t = ev.token();
            if t == WAKER {
                continue;
            }
            if t.0 < drv.listeners.len() {
                if let Some(l) = drv.listeners.get_mut(t.0) {
                    l.backlog = true;
                }
                continue;
            }
            if ev.is_writable() {
                core.on_writable(&mut drv, now, t);
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                read_ready(&mut core, &mut drv, now, t, &mut buf);
                if ev.is_read_closed() {
                    // The FIN may sit behind data a short read left; no later edge
                    // will report it, so read once more next turn.
                    core.read_again(t);
                }
            }
        }
        accept_ready(&mut core, &mut drv, now);
        for t in core.take_resume() {
            read_ready(&mut core, &mut drv, now, t, &mut buf);
        }
        core.run_commands(&mut drv, now);
        core.flush_dirty(&mut drv, now);
        core.end_turn(&mut drv, now);
        let end = Instant::now();
        core.turn_took(end.saturating_duration_since(turn));
        now = clock.at(end);
        if core.drain_finished(now) {
            return Ok(());
        }
    }
}

/// Accepts up to a batch from each listener with a backlog.
fn accept_ready(core: &mut Core, drv: &mut Epoll, now: Mono) {
    if let Some(until) = drv.accept_paused_until {
        if now < until {
            return;
        }
        drv.accept_paused_until = None;
        for l in &mut drv.listeners {
            l.backlog = true;
        }
    }
    for i in 0..drv.listeners.len() {
        for _ in 0..ACCEPT_BATCH {
            let Some(l) = drv.listeners.get_mut(i) else {
                break;
            };
            if !l.backlog {
                break;
            }
            let kind = l.kind;
            match l.socket.accept() {
                Ok((stream, peer)) => core.accept(drv, now, kind, stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => l.backlog = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE/ENOMEM: the connection waits in the backlog; try
                    // again shortly rather than spin.
                    core.accept_failed(&e);
                    drv.accept_paused_until = Some(now.plus(ACCEPT_BACKOFF));
                    l.backlog = false;
                    break;
                }
            }
        }
    }
}

/// Reads a connection until the kernel has nothing more (a short read or WouldBlock:
/// new input raises a new edge), the read budget is spent (then it is read again next
/// turn), or the core stops wanting input.
fn read_ready(core: &mut Core, drv: &mut Epoll, now: Mono, t: Token, buf: &mut [u8]) {
    let mut budget = core.read_budget();
    loop {
        let Some(mut stream) = core.readable_stream(t) else {
            return;
        };
        match stream.read(buf) {
            Ok(0) => {
                core.on_eof(drv, t);
                return;
            }
            Ok(n) => {
                let full = n == buf.len();
                core.on_data(drv, now, t, buf.get(..n).unwrap_or_default());
                if !full {
                    return;
                }
                budget = budget.saturating_sub(n);
                if budget == 0 {
                    core.read_again(t);
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                core.on_read_error(drv, t);
                return;
            }
        }
    }
}
