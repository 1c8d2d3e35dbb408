//! The io_uring backend: one ring per reactor thread (`SINGLE_ISSUER` +
//! `DEFER_TASKRUN`), a multishot accept per listener, a multishot recv per connection
//! that takes buffers from one provided-buffer ring per reactor (an idle connection
//! owns no receive buffer), and output as `SEND`/`SENDMSG` requests: the core hands
//! each connection's queued output to [`Driver::send`] once per loop turn, so the
//! turn's one `io_uring_enter` submits every connection's writes (a fan-out to
//! thousands of members is one system call, not thousands). A one-shot `POLLOUT`
//! poll is used only if a send reports `EAGAIN`.
//!
//! Lifetimes, in one place:
//! - **Buffers**: a completion's buffer id becomes a move-only [`BufGuard`] that is
//!   recycled into the ring exactly once, after the core has copied or consumed the
//!   bytes (`bufring.rs`).
//! - **Requests**: each carries `user_data` = kind + core slot + 24 bits of the
//!   connection's generation; a completion whose generation is not the slot's live
//!   connection's is stale and only returns its buffer (`watch.rs`), so a late
//!   completion never reaches another connection and no record outlives one. The
//!   backend keeps one state byte per slot.
//! - **Sends**: each send request owns references to the bytes it sends (and its
//!   `msghdr`) until its completion (`send.rs`), whatever the core does with the
//!   connection meanwhile.
//! - **Close**: the core deregisters, then closes the descriptor. Deregistering
//!   cancels the recv, poll and send; the kernel holds its own file reference until they
//!   finish, so it never reads a reused descriptor. The kernel only writes into
//!   buffers published in the ring, and those are ours to free only after teardown.
//! - **Teardown**: cancel everything, wait (bounded) until the in-flight count reaches
//!   zero, unregister the buffer group, then free the buffers. If the count does not
//!   reach zero in time the buffers and the wake buffer are leaked instead of freed,
//!   so the kernel can never write into freed memory.

mod bufring;
mod eventfd;
mod files;
mod probe;
mod send;
mod watch;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use mio::Token;
use mio::net::TcpStream;

use self::bufring::{BufGuard, BufRing};
use self::files::{Files, Target, on_target};
use self::send::Sends;
use self::watch::{Kind, Op, Sqe, Table, Tag, decode, user_data};
use super::{Driver, Sent};
use crate::clock::{Clock, Mono};
use crate::reactor::conn::ListenerKind;
use crate::reactor::core::Core;

pub(crate) use eventfd::EventFd;
pub(crate) use probe::probe;

/// `IOU_PBUF_RING_INC`: receives consume provided buffers incrementally.
const INCREMENTAL: u16 = 2;

/// Bytes of receive buffers published at start (at least one buffer); the pool
/// doubles up to `uring_buffers` each time a receive finds the ring empty.
const INITIAL_POOL_BYTES: u32 = 256 << 10;

/// Buffers of `buffer_bytes` published at start: [`INITIAL_POOL_BYTES`] worth, at
/// least one (32 of the 8 KiB buffers that were the default before 2026-12-07, so
/// the idle figures stay comparable).
fn initial_buffers(buffer_bytes: u32) -> u32 {
    (INITIAL_POOL_BYTES / buffer_bytes.max(1)).max(1)
}

/// Buffer group id of the reactor's provided-buffer ring.
const BGID: u16 = 0;
/// After running out of file descriptors, wait this long before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait at teardown for cancelled requests to post their final completion.
const TEARDOWN_WAIT: Duration = Duration::from_secs(2);

/// Loop sizing from the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoopConfig {
    /// Submission queue entries (the completion queue is four times larger).
    pub entries: u32,
    /// Provided receive buffers.
    pub buffers: u32,
    /// Size of each.
    pub buffer_bytes: u32,
    /// Entries of the registered file table (0: none).
    pub fixed_files: u32,
    /// Longest wait between turns (the watchdog's progress tick; `None`: no cap).
    pub tick: Option<std::time::Duration>,
}

struct Listener {
    /// `None` once accepting stopped (the kernel keeps its own reference until the
    /// cancelled accept finishes).
    socket: Option<std::net::TcpListener>,
    kind: ListenerKind,
    armed: bool,
}

/// The [`Driver`] for io_uring: the ring, the request bookkeeping and the listeners.
struct Uring {
    ring: IoUring,
    table: Table,
    listeners: Vec<Listener>,
    accept_paused_until: Option<Mono>,
    /// Requests handed to the submission queue whose final completion has not arrived.
    inflight: usize,
    /// Entries that did not fit in a full submission queue; pushed after the next
    /// submit.
    backlog: Vec<squeue::Entry>,
    /// Connections whose recv ended for lack of buffers; re-armed after the
    /// completion batch has recycled buffers.
    starved: Vec<Token>,
    /// Send requests in flight and the memory they read.
    sends: Sends,
    /// Addresses of the receive buffers (`start..end`): queued bytes in this range
    /// are lent (see [`Driver::unlend`]).
    pool: std::ops::Range<usize>,
    /// Sends of lent bytes queued since the turn began (see [`reap_within_turn`]).
    lent_sends: usize,
    /// The registered file table: connection requests name a slot in it.
    files: Files,
}

impl Driver for Uring {
    fn register(&mut self, stream: &mut TcpStream, token: Token) -> io::Result<()> {
        let fd = stream.as_raw_fd();
        if self.backlog.is_empty() && self.ring.submission().is_empty() {
            self.files.drained();
        }
        // Only with nothing waiting to be submitted: a backlog entry of the slot's
        // previous connection would otherwise reach this socket (and a slot whose
        // close left requests in the submission queue stays stale until it drains).
        let fixed = if self.backlog.is_empty() {
            self.files.install(&self.ring, watch::slot_of(token), fd)
        } else {
            self.files.miss();
            false
        };
        let sqe = self.table.register(token, fixed);
        self.push(sqe, fd);
        Ok(())
    }

    fn set_writable(&mut self, stream: &mut TcpStream, token: Token, on: bool) -> io::Result<()> {
        if let Some(sqe) = self.table.set_writable(token, on) {
            self.push(sqe, stream.as_raw_fd());
        }
        Ok(())
    }

    fn write_now(&mut self, _stream: &TcpStream, _data: &[u8]) -> Option<Sent> {
        None
    }

    fn send(&mut self, stream: &TcpStream, token: Token, queue: &VecDeque<Bytes>) -> Sent {
        let ud = watch::conn_data(Kind::Send, token);
        let dontwait = reads_lent(&self.pool, queue);
        self.lent_sends += usize::from(dontwait);
        let file = self.target(token, stream.as_raw_fd());
        let (entry, n) = self.sends.build(file, ud, queue, dontwait);
        self.push_entry(entry);
        Sent::Submitted(n)
    }

    fn deregister(&mut self, stream: &mut TcpStream, token: Token) {
        let fixed = self.table.fixed(token);
        for sqe in self.table.deregister(token).into_iter().flatten() {
            self.push(sqe, stream.as_raw_fd());
        }
        let send = watch::conn_data(Kind::Send, token);
        if self.sends.in_flight(send) {
            self.push(Sqe::Cancel(send), -1);
        }
        // Requests naming this descriptor must reach the kernel (which then holds
        // its own reference) before the caller closes it: submitted later, the
        // number could already belong to a socket another thread opened.
        self.flush_backlog();
        let _ = self.ring.submit();
        let drained = self.backlog.is_empty() && self.ring.submission().is_empty();
        // The table's reference would keep the socket open past the close (a failed
        // clear is retried every turn).
        if fixed
            && let Err(e) = self
                .files
                .remove(&self.ring, watch::slot_of(token), drained)
        {
            tracing::warn!(error = %e, "io_uring: cannot clear a file table entry; retrying");
        }
    }

    fn unlend(&mut self, queue: &mut VecDeque<Bytes>) {
        for b in queue.iter_mut() {
            if self.pool.contains(&(b.as_ptr() as usize)) {
                *b = Bytes::copy_from_slice(b);
            }
        }
    }

    fn stop_accepting(&mut self) {
        for i in 0..self.listeners.len() {
            let armed = self.listeners.get(i).is_some_and(|l| l.armed);
            if armed {
                let target = user_data(Kind::Accept, i as u32, 0);
                self.push(Sqe::Cancel(target), -1);
            }
            if let Some(l) = self.listeners.get_mut(i) {
                l.socket = None;
            }
        }
    }
}

impl Uring {
    /// What connection `t`'s requests name: its file table slot, or `fd`.
    fn target(&self, t: Token, fd: RawFd) -> Target {
        if self.table.fixed(t) {
            // A slot in the table fits in u32 (`files::slot_in`).
            Target::Fixed(watch::slot_of(t) as u32)
        } else {
            Target::Fd(fd)
        }
    }

    /// Queues a request; `fd` is the connection's socket (unused by cancels).
    fn push(&mut self, sqe: Sqe, fd: RawFd) {
        let entry = match sqe {
            Sqe::Recv(t) => on_target!(self.target(t, fd), f => opcode::RecvMulti::new(f, BGID)
                .build()
                .user_data(watch::conn_data(Kind::Recv, t))),
            Sqe::PollOut(t) => {
                on_target!(self.target(t, fd), f => opcode::PollAdd::new(f, libc::POLLOUT as u32)
                .build()
                .user_data(watch::conn_data(Kind::PollOut, t)))
            }
            Sqe::Cancel(target) => opcode::AsyncCancel2::new(CancelBuilder::user_data(target))
                .build()
                .user_data(user_data(Kind::Cancel, 0, 0)),
        };
        self.push_entry(entry);
    }

    /// Queues an entry. Entries built here reference no user memory except the wake
    /// read's buffer, which lives as long as the ring (see `Backend`).
    fn push_entry(&mut self, entry: squeue::Entry) {
        if self.backlog.is_empty() && self.try_push(&entry) {
            return;
        }
        if self.backlog.is_empty() {
            // Full: hand the queue to the kernel and try once more.
            let _ = self.ring.submit();
            if self.try_push(&entry) {
                return;
            }
        }
        self.backlog.push(entry);
    }

    fn try_push(&mut self, entry: &squeue::Entry) -> bool {
        // SAFETY: every entry is one of ours: RECV selects buffers from the group
        // registered for the ring's whole life; SEND/SENDMSG read memory their
        // record in `sends` keeps alive until their completion (or leaks);
        // POLL_ADD, ACCEPT and ASYNC_CANCEL reference no memory; the wake READ targets a heap buffer freed only after
        // every request finished (or leaked). Descriptors stay valid until the
        // request is submitted because closing only happens after deregistering,
        // and the kernel takes its own file reference at submission.
        let ok = unsafe { self.ring.submission().push(entry) }.is_ok();
        if ok {
            self.inflight += 1;
        }
        ok
    }

    fn flush_backlog(&mut self) {
        while !self.backlog.is_empty() {
            let entry = self.backlog.remove(0);
            if !self.try_push(&entry) {
                self.backlog.insert(0, entry);
                let _ = self.ring.submit();
                if self.ring.submission().is_full() {
                    return;
                }
            }
        }
    }

    /// Arms the multishot accept of every open listener not armed, unless accepting
    /// is paused after an error.
    fn arm_accepts(&mut self, now: Mono) {
        if let Some(until) = self.accept_paused_until {
            if now < until {
                return;
            }
            self.accept_paused_until = None;
        }
        for i in 0..self.listeners.len() {
            let Some(l) = self.listeners.get_mut(i) else {
                continue;
            };
            let Some(sock) = &l.socket else {
                continue;
            };
            if l.armed {
                continue;
            }
            l.armed = true;
            let entry = opcode::AcceptMulti::new(Fd(sock.as_raw_fd()))
                .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                .build()
                .user_data(user_data(Kind::Accept, i as u32, 0));
            self.push_entry(entry);
        }
    }

    /// Submits and waits for at least one completion or `wait`.
    fn wait(&mut self, wait: Option<Duration>) -> io::Result<()> {
        let r = match wait {
            None => self.ring.submitter().submit_and_wait(1),
            Some(d) => {
                let ts = Timespec::from(d);
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
                _ => Err(e),
            },
        }
    }
}

/// Everything one reactor's io_uring loop owns. Field order does not matter for
/// safety: `Drop` tears down explicitly.
struct Backend {
    drv: Uring,
    /// `None` after teardown.
    bufs: Option<BufRing>,
    /// The wake read's target; a raw heap pointer so it can be leaked on an unclean
    /// teardown. Null after teardown.
    wake_buf: *mut u64,
    waker: Arc<EventFd>,
    wake_armed: bool,
    cqes: Vec<cqueue::Entry>,
    /// Completions other than sends posted by a submit in the middle of a batch,
    /// handled after it ([`Backend::send_now`]).
    posted: Vec<cqueue::Entry>,
    /// Bytes lent to echoes since the batch's output was last submitted.
    lent_since_send: usize,
    /// Lent bytes after which a batch submits its output so far (see [`send_now`]).
    send_every: usize,
    /// Size of one receive buffer: the piece size parked input is handed on in.
    buffer_bytes: usize,
    /// Longest wait between turns (the watchdog's progress tick; `None`: no cap).
    tick: Option<std::time::Duration>,
    /// The loop's clock (the core's), and its reading for this turn: completions
    /// are handed to the core with it.
    clock: Clock,
    now: Mono,
}

impl Backend {
    fn new(
        cfg: LoopConfig,
        waker: Arc<EventFd>,
        listeners: Vec<(std::net::TcpListener, ListenerKind)>,
        clock: Clock,
    ) -> io::Result<Self> {
        let entries = cfg.entries.clamp(64, 32_768).next_power_of_two();
        let ring = probe::build_ring(entries)?;
        let initial = initial_buffers(cfg.buffer_bytes);
        let mut bufs = BufRing::new(cfg.buffers, cfg.buffer_bytes, initial)?;
        let files = Files::register(&ring, cfg.fixed_files);
        tracing::debug!(entries = files.size(), "io_uring file table");
        let register = |flags: u16| {
            // SAFETY: the ring memory stays allocated until `teardown` unregisters the
            // group (or leaks the memory if it cannot prove the kernel is done with it).
            unsafe {
                ring.submitter().register_buf_ring_with_flags(
                    bufs.ring_addr(),
                    bufs.count(),
                    BGID,
                    flags,
                )
            }
        };
        // Incremental consumption where the kernel has it (6.12+): small receives
        // share a buffer instead of taking one each.
        let reg = match register(INCREMENTAL) {
            Ok(()) => Ok(true),
            Err(_) => register(0).map(|()| false),
        };
        if let Ok(incremental) = reg {
            tracing::debug!(incremental, "io_uring receive buffer ring registered");
            if incremental {
                bufs.set_incremental();
            }
        }
        if let Err(e) = reg {
            drop(ring);
            // SAFETY: registration failed and the ring is gone: the kernel never saw
            // this memory.
            unsafe { bufs.free() };
            return Err(e);
        }
        let drv = Uring {
            ring,
            table: Table::default(),
            listeners: listeners
                .into_iter()
                .map(|(socket, kind)| Listener {
                    socket: Some(socket),
                    kind,
                    armed: false,
                })
                .collect(),
            accept_paused_until: None,
            inflight: 0,
            backlog: Vec::new(),
            starved: Vec::new(),
            sends: Sends::default(),
            pool: bufs.range(),
            lent_sends: 0,
            files,
        };
        let mut me = Self {
            drv,
            bufs: Some(bufs),
            wake_buf: Box::into_raw(Box::new(0u64)),
            waker,
            wake_armed: false,
            cqes: Vec::with_capacity(entries as usize),
            posted: Vec::new(),
            lent_since_send: 0,
            send_every: send_every(cfg.buffers, cfg.buffer_bytes),
            buffer_bytes: cfg.buffer_bytes as usize,
            tick: cfg.tick,
            clock,
            now: clock.mono(),
        };
        me.arm_wake();
        me.drv.arm_accepts(me.now);
        Ok(me)
    }

    fn arm_wake(&mut self) {
        if self.wake_armed || self.wake_buf.is_null() {
            return;
        }
        self.wake_armed = true;
        let entry = opcode::Read::new(Fd(self.waker.as_raw_fd()), self.wake_buf.cast(), 8)
            .build()
            .user_data(user_data(Kind::Wake, 0, 0));
        self.drv.push_entry(entry);
    }

    fn run(&mut self, core: &mut Core) -> io::Result<()> {
        // Two clock reads a turn: when the wait returns (for what it brought) and
        // when the turn's work is done (for the deadlines and the next wait).
        self.now = self.clock.mono();
        loop {
            core.flush_deferred();
            let timer_wait = core.run_timers(&mut self.drv, self.now);
            self.drv.arm_accepts(self.now);
            self.drv.flush_backlog();
            let busy = core.has_resume() || !self.drv.starved.is_empty();
            let mut wait = if busy {
                Some(Duration::ZERO)
            } else {
                timer_wait
            };
            if let Some(until) = self.drv.accept_paused_until {
                let left = until.since(self.now);
                wait = Some(wait.map_or(left, |w| w.min(left)));
            }
            // With a systemd watchdog, turn at least every tick so progress shows.
            let wait = super::cap_wait(wait, self.tick);
            self.drv.wait(wait)?;
            let turn = Instant::now();
            self.now = self.clock.at(turn);
            self.drv.lent_sends = 0;
            self.turn(core);
            // Send within the turn: hand this turn's echoes to the kernel now and
            // handle the completions they posted at once (a send that fits the
            // socket completes inline), so their lent buffers are back in the ring
            // before the next wait's receives need them, not held across it.
            if reap_within_turn(self.drv.lent_sends) {
                self.drv.flush_backlog();
                let _ = self.drv.ring.submit();
                if !self.drv.ring.completion().is_empty() {
                    self.turn(core);
                }
            }
            let end = Instant::now();
            core.turn_took(end.saturating_duration_since(turn));
            self.now = self.clock.at(end);
            if core.drain_finished(self.now) {
                return Ok(());
            }
        }
    }

    /// One pass over the completions at hand and the work they make: the core's
    /// input, resumed and starved connections, commands, and the turn's output.
    fn turn(&mut self, core: &mut Core) {
        self.complete(core);
        self.reclaim();
        for t in core.take_resume() {
            self.resume(core, t);
        }
        if !self.drv.starved.is_empty()
            && let Some(b) = &mut self.bufs
            && b.grow()
        {
            tracing::debug!(published = b.published(), "io_uring receive pool grown");
        }
        for t in std::mem::take(&mut self.drv.starved) {
            self.rearm_recv(core, t);
        }
        core.run_commands(&mut self.drv, self.now);
        core.flush_dirty(&mut self.drv, self.now);
        core.end_turn(&mut self.drv, self.now);
        // Buffers whose lent bytes a close dropped this turn.
        self.reclaim();
        self.drv.files.retry(&self.drv.ring);
        let missed = self.drv.files.take_missed();
        if missed > 0 {
            core.unfixed(missed);
        }
    }

    /// Handles one batch of completions: the sends' first, then the rest in the
    /// order they came (see [`sends_first`]).
    fn complete(&mut self, core: &mut Core) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(self.drv.ring.completion());
        self.posted.clear();
        for cqe in sends_first(&cqes, cqueue::Entry::user_data) {
            self.handle(core, cqe);
            if send_now(self.lent_since_send, self.send_every) {
                self.send_now(core);
            }
        }
        // What posted during the batch besides sends, in the order it came: after
        // the whole batch, because it is newer than all of it (see `send_now`).
        let later = std::mem::take(&mut self.posted);
        for cqe in &later {
            self.handle(core, cqe);
        }
        self.posted = later;
        self.cqes = cqes;
    }

    /// Sends the output queued so far in this batch and handles the send
    /// completions that posted at once (see [`send_now`]): the lent buffers of the
    /// echoes that went out are back in the ring before the rest of the batch is
    /// handled. Anything else that posted (a receive issued by this submit) waits
    /// in `posted` until the batch is done: a receive's bytes are found by handling
    /// completions in the order the kernel posted them (with incremental
    /// consumption, at the offset where the buffer's previous completion ended),
    /// and the batch still holds older ones.
    fn send_now(&mut self, core: &mut Core) {
        self.lent_since_send = 0;
        core.flush_dirty(&mut self.drv, self.now);
        self.drv.flush_backlog();
        let _ = self.drv.ring.submit();
        let mut posted = std::mem::take(&mut self.posted);
        let from = posted.len();
        posted.extend(self.drv.ring.completion());
        let is_send =
            |c: &cqueue::Entry| decode(c.user_data()).is_some_and(|t| t.kind == Kind::Send);
        for cqe in posted.get(from..).unwrap_or_default() {
            if is_send(cqe) {
                self.handle(core, cqe);
            }
        }
        let mut at = 0;
        posted.retain(|c| {
            at += 1;
            at <= from || !is_send(c)
        });
        self.posted = posted;
        self.reclaim();
    }

    fn handle(&mut self, core: &mut Core, cqe: &cqueue::Entry) {
        let flags = cqe.flags();
        let more = cqueue::more(flags);
        if !more {
            self.drv.inflight = self.drv.inflight.saturating_sub(1);
        }
        let res = cqe.result();
        let buf = match &mut self.bufs {
            Some(b) => b.take(cqe),
            None => cqueue::buffer_select(flags).map(BufGuard::from_completion),
        };
        let tag = decode(cqe.user_data());
        // The live connection this request belongs to; `None` for stale requests
        // (closed connection, slot reused) and non-connection requests.
        let live =
            |core: &Core, tag: &Tag| core.token_at(tag.slot as usize).filter(|t| tag.matches(*t));
        match tag {
            Some(tag) if tag.kind == Kind::Recv => {
                let t = live(core, &tag);
                self.on_recv(core, t, res, more, buf);
            }
            _ => {
                if let Some(g) = buf {
                    self.recycle(g);
                }
                match tag {
                    Some(Tag {
                        kind: Kind::Accept,
                        slot,
                        ..
                    }) => self.on_accept(core, slot, res, more),
                    Some(tag) if tag.kind == Kind::Send => {
                        self.drv.sends.finished(cqe.user_data());
                        if let Some(t) = live(core, &tag) {
                            core.on_sent(&mut self.drv, self.now, t, res);
                        }
                    }
                    Some(tag) if tag.kind == Kind::PollOut => {
                        if let Some(t) = live(core, &tag) {
                            self.on_pollout(core, t, res);
                        }
                    }
                    Some(Tag {
                        kind: Kind::Wake, ..
                    }) => {
                        self.wake_armed = false;
                        self.arm_wake();
                    }
                    _ => {}
                }
            }
        }
    }

    /// Republishes the buffers whose last lent slice was dropped (its send done,
    /// or its connection closed).
    fn reclaim(&mut self) {
        if let Some(b) = &mut self.bufs {
            b.reclaim();
        }
    }

    fn recycle(&mut self, g: BufGuard) {
        match &mut self.bufs {
            Some(b) => b.recycle(g),
            // Only during teardown, when nothing reads the ring any more.
            None => std::mem::forget(g),
        }
    }

    /// A recv completion; `t` is the live connection it belongs to (`None`: stale).
    fn on_recv(
        &mut self,
        core: &mut Core,
        t: Option<Token>,
        res: i32,
        more: bool,
        buf: Option<BufGuard>,
    ) {
        let Some(t) = t else {
            if let Some(g) = buf {
                self.recycle(g);
            }
            return;
        };
        if !more {
            self.drv.table.finished(t, Op::Recv);
        }
        let direct = !self.drv.table.has_parked(t) && core.readable_stream(t).is_some();
        match (res, buf) {
            (n, Some(g)) if n > 0 => {
                if let Some(bufs) = &self.bufs {
                    let data = bufs.data(&g, n as usize);
                    if direct && core.takes_lent(t) {
                        // An echo sends the bytes from the buffer itself; the buffer
                        // returns to the ring when its last send is done.
                        match bufs.lend(&g, n as usize) {
                            Some(lent) => {
                                self.lent_since_send += lent.len();
                                core.on_data_lent(&mut self.drv, self.now, t, lent);
                            }
                            None => {
                                core.lend_refused();
                                core.on_data(&mut self.drv, self.now, t, data);
                            }
                        }
                    } else if direct {
                        core.on_data(&mut self.drv, self.now, t, data);
                    } else {
                        // Reading is paused: keep the bytes (in order) and stop the
                        // recv so no more buffers are spent on this connection.
                        self.drv.table.park(t, data);
                        if let Some(sqe) = self.drv.table.cancel_recv(t) {
                            self.drv.push(sqe, -1);
                        }
                    }
                }
                self.recycle(g);
            }
            (_, Some(g)) => self.recycle(g),
            (0, None) => {
                if direct {
                    core.on_eof(&mut self.drv, t);
                } else {
                    self.drv.table.set_eof(t);
                }
            }
            (e, None) if e < 0 => match -e {
                libc::ENOBUFS => {
                    if !more {
                        self.drv.starved.push(t);
                    }
                    return;
                }
                libc::ECANCELED | libc::EINTR | libc::EAGAIN => {}
                _ => core.on_read_error(&mut self.drv, t),
            },
            _ => {}
        }
        if !more {
            self.rearm_recv(core, t);
        }
    }

    /// Re-arms a connection's recv if none is in flight and the core wants input.
    fn rearm_recv(&mut self, core: &mut Core, t: Token) {
        if self.drv.table.has_parked(t) {
            return;
        }
        let Some(fd) = core.readable_stream(t).map(AsRawFd::as_raw_fd) else {
            return;
        };
        if let Some(sqe) = self.drv.table.arm(t, Op::Recv) {
            self.drv.push(sqe, fd);
        }
    }

    /// The core asked for a connection to be read again (reading resumed after
    /// backpressure, or closing with input waiting): deliver what was parked.
    fn resume(&mut self, core: &mut Core, t: Token) {
        if core.readable_stream(t).is_none() {
            return;
        }
        let parked = self.drv.table.take_parked(t);
        // In buffer-sized pieces, as the recv would have delivered them, so the
        // core can pause again part way (the rest stays parked, in order).
        let mut at = 0;
        while at < parked.len() {
            if core.readable_stream(t).is_none() {
                self.drv.table.park(t, parked.get(at..).unwrap_or_default());
                return;
            }
            let end = parked.len().min(at + self.buffer_bytes);
            core.on_data(
                &mut self.drv,
                self.now,
                t,
                parked.get(at..end).unwrap_or_default(),
            );
            at = end;
        }
        if self.drv.table.eof(t) {
            if core.readable_stream(t).is_some() {
                core.on_eof(&mut self.drv, t);
            }
            return;
        }
        self.rearm_recv(core, t);
    }

    fn on_pollout(&mut self, core: &mut Core, t: Token, res: i32) {
        self.drv.table.finished(t, Op::PollOut);
        if res == -libc::ECANCELED || !self.drv.table.wants_write(t) {
            return;
        }
        core.on_writable(&mut self.drv, self.now, t);
        // Still output queued: wait for the next writability.
        if let Some(fd) = core.stream(t).map(AsRawFd::as_raw_fd)
            && let Some(sqe) = self.drv.table.arm(t, Op::PollOut)
        {
            self.drv.push(sqe, fd);
        }
    }
    fn on_accept(&mut self, core: &mut Core, i: u32, res: i32, more: bool) {
        let Some(l) = self.drv.listeners.get_mut(i as usize) else {
            if res >= 0 {
                // SAFETY: a descriptor the kernel just created for us; closing it is
                // all we do with it.
                drop(unsafe { std::net::TcpStream::from_raw_fd(res as RawFd) });
            }
            return;
        };
        if !more {
            l.armed = false;
        }
        let (kind, open) = (l.kind, l.socket.is_some());
        if res >= 0 {
            // SAFETY: the accept completion hands us a new descriptor that nothing
            // else owns; the stream takes ownership and closes it on drop.
            let stream = unsafe { TcpStream::from_raw_fd(res as RawFd) };
            if !open {
                return;
            }
            match stream.peer_addr() {
                Ok(peer) => core.accept(&mut self.drv, self.now, kind, stream, peer),
                // Reset before we looked: nothing to serve.
                Err(_) => drop(stream),
            }
            return;
        }
        if res == -libc::ECANCELED {
            return;
        }
        let e = io::Error::from_raw_os_error(-res);
        core.accept_failed(&e);
        self.drv.accept_paused_until = Some(self.now.plus(ACCEPT_BACKOFF));
    }

    /// Cancels every request and waits for each to post its final completion, then
    /// unregisters and frees the buffers. Idempotent.
    fn teardown(&mut self) {
        if self.wake_buf.is_null() {
            return;
        }
        // Drop entries never submitted: they are not in flight.
        self.drv.backlog.clear();
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(user_data(Kind::Cancel, 0, 0));
        // SAFETY: ASYNC_CANCEL references no memory.
        let mut pushed = unsafe { self.drv.ring.submission().push(&cancel) }.is_ok();
        if pushed {
            self.drv.inflight += 1;
        }
        let deadline = Instant::now() + TEARDOWN_WAIT;
        while self.drv.inflight > 0 && Instant::now() < deadline {
            if !pushed {
                let _ = self.drv.ring.submit();
                // SAFETY: as above.
                pushed = unsafe { self.drv.ring.submission().push(&cancel) }.is_ok();
                if pushed {
                    self.drv.inflight += 1;
                }
            }
            if self.drv.wait(Some(Duration::from_millis(50))).is_err() {
                break;
            }
            let mut cq = self.drv.ring.completion();
            for cqe in &mut cq {
                if !cqueue::more(cqe.flags()) {
                    self.drv.inflight = self.drv.inflight.saturating_sub(1);
                }
                if let Some(b) = &mut self.bufs
                    && let Some(g) = b.take(&cqe)
                {
                    b.recycle(g);
                }
            }
        }
        let clean = self.drv.inflight == 0;
        let unregistered = clean && self.drv.ring.submitter().unregister_buf_ring(BGID).is_ok();
        if unregistered {
            if let Some(b) = self.bufs.take() {
                // SAFETY: no request is in flight and the group is unregistered, so
                // the kernel holds no reference to the ring or its buffers.
                unsafe { b.free() };
            }
            // SAFETY: the wake read finished (nothing in flight); the pointer came
            // from `Box::into_raw` and is nulled so it is freed once.
            drop(unsafe { Box::from_raw(self.wake_buf) });
        } else {
            tracing::warn!(
                inflight = self.drv.inflight,
                buffers_out = self.bufs.as_ref().map_or(0, BufRing::out),
                "io_uring requests outstanding at teardown; leaking their buffers"
            );
            // BufRing's Drop leaks its memory; the wake buffer is simply not freed.
            drop(self.bufs.take());
            self.drv.sends.leak();
        }
        self.wake_buf = std::ptr::null_mut();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// A batch in the order it is handled: its send completions first, then the rest,
/// each in the order they came. What the kernel took is then off a connection's
/// queue before the batch's input makes output that counts against the same bound
/// (the epoll loop handles writability before readability for the same reason); a
/// recv handled first would find bytes already sent still counted. Each connection
/// has one send in flight, so no send's completion overtakes another's.
fn sends_first<T>(batch: &[T], user_data: impl Fn(&T) -> u64 + Copy) -> impl Iterator<Item = &T> {
    let send = move |c: &&T| decode(user_data(c)).is_some_and(|t| t.kind == Kind::Send);
    let rest = move |c: &&T| !send(c);
    batch.iter().filter(send).chain(batch.iter().filter(rest))
}

/// Whether a send of `queue`'s head reads lent receive buffers (addresses in
/// `pool`). Such a send is `MSG_DONTWAIT` (issue 22): on a socket with no room it
/// completes with `EAGAIN` at once, the core copies the unsent rest out of the pool
/// ([`Driver::unlend`]) and waits for writability, as epoll does with what a write
/// refuses. Without it the kernel would keep the request, and the buffers, until the
/// peer reads, and a flood's slow readers would hold the pool. Other output (frames
/// the core owns) waits in the kernel as before.
fn reads_lent(pool: &std::ops::Range<usize>, queue: &VecDeque<Bytes>) -> bool {
    queue
        .iter()
        .take(send::MAX_SEND_IOVECS)
        .any(|b| pool.contains(&(b.as_ptr() as usize)))
}

/// The bytes a batch may lend to echoes before it submits their sends: an eighth of
/// the receive pool, at most 256 KiB (half this machine's L2 cache per core).
fn send_every(buffers: u32, buffer_bytes: u32) -> usize {
    (buffers as usize * buffer_bytes as usize / 8).clamp(1, 256 << 10)
}

/// Whether a batch of completions submits the output queued so far before handling
/// the rest (issue 22: send within the turn). A turn's batch can hold megabytes of
/// receives for a flood's connections; lent to echoes whose sends go out only at
/// the end of the turn, they held half the pool within a turn or two, and every
/// receive after that was copied. Sending every `every` lent bytes returns those
/// buffers in the middle of the batch (a send that fits the socket completes
/// inline, and [`reads_lent`] makes one that does not complete at once too), and
/// sends the bytes while they are still in cache. Only lent bytes count: protocol
/// output keeps waiting for the end of the turn, where one connection's frames
/// share a system call.
fn send_now(lent: usize, every: usize) -> bool {
    lent >= every
}

/// Whether a turn that queued `lent_sends` sends of lent bytes submits its output
/// before its wait and handles the completions that post inline, in a second pass
/// of the same turn (issue 22). Only after sends of lent bytes: with `DEFER_TASKRUN`
/// a submit without waiting runs no deferred work, so it posts the completions of
/// what it issued (sends that fit the socket) and nothing else; a turn of protocol
/// output only (chat) has no buffers to get back and would pay a system call per
/// turn for nothing. One extra pass at most: the sends that pass queues go with the
/// next wait, as before.
fn reap_within_turn(lent_sends: usize) -> bool {
    lent_sends > 0
}

/// Runs a reactor on io_uring until its core finishes draining.
pub(crate) fn run(
    waker: Arc<EventFd>,
    listeners: Vec<(std::net::TcpListener, ListenerKind)>,
    mut core: Core,
    cfg: LoopConfig,
) -> io::Result<()> {
    let mut backend = Backend::new(cfg, waker, listeners, core.clock())?;
    let r = backend.run(&mut core);
    backend.teardown();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_handles_its_sends_first_and_keeps_every_other_order() {
        let recv = |slot, n| (user_data(Kind::Recv, slot, 1), n);
        let send = |slot, n| (user_data(Kind::Send, slot, 1), n);
        let batch = [
            recv(3, 1),
            recv(3, 2),
            (user_data(Kind::Wake, 0, 0), 0),
            send(3, 3),
            recv(4, 4),
            send(4, 5),
            (0, 6),
        ];
        let order: Vec<i32> = sends_first(&batch, |c| c.0).map(|c| c.1).collect();
        assert_eq!(order, [3, 5, 1, 2, 0, 4, 6]);
    }

    #[test]
    fn the_start_pool_is_a_quarter_mebibyte_whatever_the_buffer_size() {
        assert_eq!(initial_buffers(8192), 32);
        assert_eq!(initial_buffers(16_384), 16);
        assert_eq!(initial_buffers(1 << 20), 1);
    }

    #[test]
    fn a_batch_sends_every_eighth_of_the_pool_or_256_kib() {
        assert_eq!(send_every(64, 16_384), 128 << 10);
        assert_eq!(send_every(512, 8192), 256 << 10, "capped");
        assert!(!send_now((128 << 10) - 1, 128 << 10));
        assert!(send_now(128 << 10, 128 << 10));
        assert!(reap_within_turn(1) && !reap_within_turn(0));
    }

    /// Only sends that read the pool are `MSG_DONTWAIT`, and only the head that the
    /// request covers counts.
    #[test]
    fn sends_of_lent_bytes_do_not_wait_in_the_kernel() {
        #![allow(clippy::unwrap_used)]
        let mut ring = BufRing::new(4, 1024, 4).unwrap();
        let pool = ring.range();
        let g = ring.on_completion(0, 10, false);
        let lent = ring.lend(&g, 10).unwrap();
        ring.recycle(g);
        let own = Bytes::from_static(b"frame");
        assert!(!reads_lent(&pool, &[own.clone()].into()));
        assert!(reads_lent(&pool, &[own.clone(), lent.clone()].into()));
        let mut behind: VecDeque<Bytes> = vec![own; send::MAX_SEND_IOVECS].into();
        behind.push_back(lent);
        assert!(!reads_lent(&pool, &behind), "past what one request carries");
        drop(behind);
        assert_eq!(ring.reclaim(), 1);
        // SAFETY: (test) never registered with a kernel ring.
        unsafe { ring.free() };
    }

    /// Fake completions: a batch of receives (each a whole buffer, the kernel taking
    /// buffers in ring order), echoed by lending. Sent at the end of the batch, half
    /// the pool is lent and the rest copied; sent every [`send_every`] bytes, with
    /// the sends completing inline as a socket with room does, no receive is copied
    /// however long the batch.
    #[test]
    fn sending_within_the_batch_lends_every_receive() {
        #![allow(clippy::unwrap_used)]
        const COUNT: u32 = 16;
        const LEN: u32 = 1024;
        let batch = |every: usize, receives: u32| -> usize {
            let mut ring = BufRing::new(COUNT, LEN, COUNT).unwrap();
            let pool = ring.range();
            let mut free: VecDeque<u16> = (0..COUNT as u16).collect();
            let mut sends = Sends::default();
            let mut queue = VecDeque::new();
            let mut queued = Vec::new();
            let (mut lent_since, mut copies) = (0, 0);
            for i in 0..receives {
                let bid = free.pop_front().expect("the kernel finds a buffer");
                let g = ring.on_completion(bid, LEN, false);
                match ring.lend(&g, LEN as usize) {
                    Some(b) => {
                        lent_since += b.len();
                        queue.push_back(b);
                        queued.push(bid);
                    }
                    None => {
                        copies += 1;
                        // Copied: the buffer goes straight back (below).
                    }
                }
                let before = ring.held();
                ring.recycle(g);
                if ring.held() == before {
                    free.push_back(bid);
                }
                if send_now(lent_since, every) {
                    lent_since = 0;
                    let ud = user_data(Kind::Send, i, 1);
                    assert!(reads_lent(&pool, &queue));
                    let (_, n) = sends.build(Target::Fd(5), ud, &queue, true);
                    assert_eq!(usize::from(n), queue.len());
                    // The send completed inline with all of it: the core's queue
                    // drops the slices, then the record its own.
                    queue.clear();
                    sends.finished(ud);
                    assert_eq!(ring.reclaim(), queued.len());
                    free.extend(queued.drain(..));
                }
            }
            drop(queue);
            ring.reclaim();
            // SAFETY: (test) never registered with a kernel ring.
            unsafe { ring.free() };
            copies
        };
        assert_eq!(batch(usize::MAX, COUNT), COUNT as usize / 2);
        let every = send_every(COUNT, LEN);
        assert_eq!(every, 2 * LEN as usize);
        assert_eq!(batch(every, 4 * COUNT), 0);
    }

    /// A connection released with a send in flight drops its queue, but the send's
    /// record keeps the lent bytes (and so their buffer) until the completion.
    #[test]
    fn lent_bytes_of_a_closed_connection_return_only_after_its_send_completes() {
        #![allow(clippy::unwrap_used)]
        let mut ring = BufRing::new(4, 1024, 4).unwrap();
        for (entries, ud) in [
            (1, user_data(Kind::Send, 3, 1)),
            (2, user_data(Kind::Send, 4, 1)),
        ] {
            let mut queue = VecDeque::new();
            for bid in 0..entries {
                let g = ring.on_completion(bid, 10, false);
                queue.push_back(ring.lend(&g, 10).unwrap());
                ring.recycle(g);
            }
            let mut sends = Sends::default();
            let _ = sends.build(Target::Fd(5), ud, &queue, true);
            drop(queue);
            assert_eq!(ring.reclaim(), 0, "the kernel may still read the bytes");
            sends.finished(ud);
            assert_eq!(ring.reclaim(), usize::from(entries));
        }
        assert_eq!(ring.out(), 0);
        // SAFETY: (test) never registered with a kernel ring.
        unsafe { ring.free() };
    }
}
