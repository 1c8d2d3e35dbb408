//! `echo`: raw round trips against any echo server (Switchboard's `[listeners.echo]`,
//! gnet, ...). Messages are `--size` bytes; nothing in them is interpreted, so any
//! server that returns the bytes it receives works.
//!
//! - `--mode pingpong`: one message in flight per connection; the next is sent when
//!   the previous one has fully come back (`--rate 0`), or on a per-connection
//!   schedule of `--rate` messages per second (a tick whose message is still in flight
//!   is skipped). Latency: the send → the last byte of the echo.
//! - `--mode flood`: every connection keeps writing while fewer than `--window` bytes
//!   are in flight and reads whatever comes back, like tcpkali; messages/s counts
//!   complete echoed messages and bytes/s the bytes echoed back. Latency is measured
//!   **per message by stream position**: the echo preserves order, so message `k`
//!   is back when `(k + 1) × size` bytes have been read; its send time is when the
//!   write that carried its last byte returned. At most 64 messages per connection
//!   are timed at once (with small messages and a large window the rest are counted
//!   but not timed — a sample).
//!
//! `--transport ws-bin` (alias `ws`): against a WebSocket echo listener. The
//! connection upgrades first (no subprotocol); every message is one masked binary
//! WebSocket message of `--size` bytes, and the payloads of the messages coming back
//! are counted as the echoed stream, so the figures mean the same as over TCP (bytes/s
//! counts the wire, frame headers included). In flood mode, whole messages are sent
//! in batches of up to 64 KiB within the window; a message's send time is when its
//! batch was handed to the socket.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Ctx, Opened, Scenario, spread};
use crate::cli::{EchoMode, Plan};

/// Most messages per connection timed at once in flood mode.
const MAX_STAMPS: usize = 64;
/// Flood writes come from a buffer of whole messages about this long.
const FLOOD_CHUNK: usize = 64 * 1024;

/// The echo scenario.
#[derive(Debug, Clone)]
pub struct Echo {
    mode: EchoMode,
    size: usize,
    window: usize,
    period: Option<Duration>,
    /// Whole messages back to back (one for ping-pong).
    chunk: Vec<u8>,
}

/// Per-connection echo state.
#[derive(Debug, Default)]
pub struct EchoConn {
    /// Bytes written.
    sent: u64,
    /// Bytes read.
    received: u64,
    /// Ping-pong: when the message in flight was sent.
    in_flight: Option<Instant>,
    /// Ping-pong with a rate: when the next message is due.
    next_due: Option<Instant>,
    /// Flood: (stream offset just past a message, time its last byte was written).
    stamps: VecDeque<(u64, Instant)>,
}

impl Echo {
    /// The echo scenario for `plan`.
    pub fn new(plan: &Plan) -> Self {
        let size = plan.size.max(1);
        let per_chunk = match plan.mode {
            EchoMode::Flood => (FLOOD_CHUNK / size).max(1),
            EchoMode::Pingpong => 1,
        };
        let chunk = (0..size * per_chunk)
            .map(|i| b'a' + (i % size % 26) as u8)
            .collect();
        let period = (plan.message_rate > 0.0)
            .then(|| Duration::from_secs_f64((1.0 / plan.message_rate).min(1e6)));
        Self {
            mode: plan.mode,
            size,
            window: plan.window.max(size),
            period,
            chunk,
        }
    }

    fn size(&self) -> u64 {
        self.size as u64
    }

    /// Ping-pong: send one message.
    fn send_one(&self, cx: &mut Ctx<'_>, c: &mut EchoConn) {
        c.in_flight = Some(cx.now());
        c.sent += self.size();
        cx.send(&self.chunk);
    }

    /// Flood: write while the window allows and the socket takes bytes.
    fn pump(&self, cx: &mut Ctx<'_>, c: &mut EchoConn) {
        if !cx.steady() {
            return;
        }
        if cx.is_ws() {
            return self.pump_messages(cx, c);
        }
        let size = self.size();
        loop {
            let in_flight = c.sent.saturating_sub(c.received);
            let room = (self.window as u64).saturating_sub(in_flight);
            if room == 0 {
                return;
            }
            let pos = usize::try_from(c.sent % size).unwrap_or(0);
            let len = usize::try_from(room)
                .unwrap_or(usize::MAX)
                .min(self.chunk.len() - pos);
            let Some(bytes) = self.chunk.get(pos..pos + len) else {
                return;
            };
            let n = cx.write_some(bytes);
            if n == 0 {
                return;
            }
            let before = c.sent;
            c.sent += n as u64;
            let now = Instant::now();
            // Stamp the messages whose last byte went out in this write.
            let mut end = (before / size + 1) * size;
            while end <= c.sent && c.stamps.len() < MAX_STAMPS {
                c.stamps.push_back((end, now));
                end += size;
            }
            if n < len {
                return;
            }
        }
    }
}

impl Echo {
    /// Flood over a WebSocket: whole messages (one masked binary frame each), as many
    /// as the window allows, a batch per write, until the kernel queues some.
    fn pump_messages(&self, cx: &mut Ctx<'_>, c: &mut EchoConn) {
        let size = self.size();
        while cx.queued() == 0 {
            let in_flight = c.sent.saturating_sub(c.received);
            let room = (self.window as u64).saturating_sub(in_flight) / size;
            let n = usize::try_from(room)
                .unwrap_or(usize::MAX)
                .min(self.chunk.len() / self.size);
            let Some(batch) = self.chunk.get(..n * self.size) else {
                return;
            };
            if n == 0 {
                return;
            }
            cx.send_messages(batch, self.size);
            let now = Instant::now();
            for _ in 0..n {
                c.sent += size;
                if c.stamps.len() < MAX_STAMPS {
                    c.stamps.push_back((c.sent, now));
                }
            }
        }
    }
}

impl Scenario for Echo {
    type Conn = EchoConn;

    fn on_open(&mut self, _cx: &mut Ctx<'_>, _c: &mut EchoConn, _opened: &Opened<'_>) {}

    fn on_steady(&mut self, cx: &mut Ctx<'_>, c: &mut EchoConn) {
        match (self.mode, self.period) {
            (EchoMode::Flood, _) => self.pump(cx, c),
            (EchoMode::Pingpong, None) => self.send_one(cx, c),
            (EchoMode::Pingpong, Some(p)) => {
                let due = cx.now() + p.mul_f64(spread(cx.index()));
                c.next_due = Some(due);
                cx.set_timer(due);
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, c: &mut EchoConn) {
        if self.mode != EchoMode::Pingpong || !cx.steady() {
            return;
        }
        let Some(p) = self.period else {
            return;
        };
        let now = cx.now();
        if c.in_flight.is_none() {
            self.send_one(cx, c);
        }
        let mut due = c.next_due.unwrap_or(now) + p;
        if due <= now {
            due = now + p;
        }
        c.next_due = Some(due);
        cx.set_timer(due);
    }

    fn on_data(&mut self, cx: &mut Ctx<'_>, c: &mut EchoConn, data: &[u8]) {
        let size = self.size();
        let before = c.received;
        c.received += data.len() as u64;
        match self.mode {
            EchoMode::Pingpong => {
                if let Some(sent) = c.in_flight
                    && c.received >= c.sent
                {
                    c.in_flight = None;
                    cx.round_trip(cx.now().saturating_duration_since(sent));
                    // With a rate, the timer sends the next one; back to back, now.
                    if self.period.is_none() && cx.steady() {
                        self.send_one(cx, c);
                    }
                }
            }
            EchoMode::Flood => {
                let done = c.received / size - before / size;
                if done > 0 {
                    cx.messages(done);
                }
                let now = cx.now();
                while let Some(&(end, at)) = c.stamps.front() {
                    if end > c.received {
                        break;
                    }
                    c.stamps.pop_front();
                    cx.latency(now.saturating_duration_since(at));
                }
                // Over a WebSocket this is one message: write once per read instead.
                if !cx.is_ws() {
                    self.pump(cx, c);
                }
            }
        }
    }

    fn after_read(&mut self, cx: &mut Ctx<'_>, c: &mut EchoConn) {
        if self.mode == EchoMode::Flood {
            self.pump(cx, c);
        }
    }

    fn on_writable(&mut self, cx: &mut Ctx<'_>, c: &mut EchoConn) {
        if self.mode == EchoMode::Flood {
            self.pump(cx, c);
        }
    }
}
