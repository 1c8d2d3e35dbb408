//! Protocol `Ping`/`Pong` on established sessions, shared by the `connect`, `idle`
//! and `ping` scenarios.
//!
//! Every session sends a `Ping` (`stamp`: send time in µs since the Unix epoch,
//! `data`: `--size` bytes for `ping`, empty otherwise) at the heartbeat interval the
//! server gave in `Welcome.heartbeat_ms`, staggered over the interval so thousands of
//! connections do not ping at once. In the `ping` scenario's steady stage pings are
//! the load instead: one in flight per connection, sent back to back (`--rate 0`) or
//! on a per-connection schedule of `--rate` per second (a tick whose previous ping is
//! still unanswered is skipped). A `Pong` is matched to its `Ping` by request id; the
//! round trip is measured from our send to the `Pong`'s arrival (the echoed stamp is
//! not needed for that, but lets a packet capture be read).

use std::time::{Duration, Instant, SystemTime};

use switchboard::frame::{self, FrameHeader};
use switchboard::protocol::Kind;
use switchboard::protocol::messages::{Msg, Ping};

use super::{Ctx, Opened, Scenario, spread};
use crate::stats::unix_us;

/// What the pings are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Heartbeats only; the handshake is the measured round trip.
    Connect,
    /// Heartbeats, whose round trips are measured.
    Idle,
    /// Pings are the load in the steady stage.
    Load,
}

/// The shared ping logic.
#[derive(Debug, Clone)]
pub struct Pinger {
    role: Role,
    /// Load: time between pings per connection (`None`: back to back).
    period: Option<Duration>,
    /// `Ping.data` for load pings.
    data: Vec<u8>,
}

/// Per-connection ping state.
#[derive(Debug, Default)]
pub struct PingConn {
    heartbeat: Option<Duration>,
    /// Request id, send time and payload length of the ping in flight.
    in_flight: Option<(u32, Instant, usize)>,
    next_due: Option<Instant>,
}

impl Pinger {
    /// A pinger in `role`; `rate` pings per second per connection (0 = back to back)
    /// carrying `size` bytes of data (load only).
    pub fn new(role: Role, rate: f64, size: usize) -> Self {
        let period = (rate > 0.0).then(|| Duration::from_secs_f64((1.0 / rate).min(1e6)));
        let data = if role == Role::Load {
            (0..size).map(|i| (i % 251) as u8).collect()
        } else {
            Vec::new()
        };
        Self { role, period, data }
    }

    fn send(&self, cx: &mut Ctx<'_>, c: &mut PingConn, data: &[u8]) {
        let rid = cx.request_id();
        let msg = Msg::Ping(Ping {
            stamp: unix_us(SystemTime::now()),
            data: data.to_vec(),
        });
        let payload = msg.to_payload();
        let frame = frame::encode(FrameHeader::new(Kind::Ping.as_u8(), 0, rid), &payload);
        c.in_flight = Some((rid, cx.now(), payload.len()));
        cx.send(&frame);
    }

    fn load(&self, cx: &Ctx<'_>) -> bool {
        self.role == Role::Load && cx.steady()
    }

    fn heartbeat(&self, cx: &mut Ctx<'_>, c: &mut PingConn) {
        if c.in_flight.is_none() {
            let data: &[u8] = if self.role == Role::Load {
                &self.data
            } else {
                &[]
            };
            self.send(cx, c, data);
        }
        if let Some(hb) = c.heartbeat {
            let at = cx.now() + hb;
            cx.set_timer(at);
        }
    }
}

impl Scenario for Pinger {
    type Conn = PingConn;

    fn on_open(&mut self, cx: &mut Ctx<'_>, c: &mut PingConn, opened: &Opened<'_>) {
        if self.role == Role::Connect {
            cx.round_trip(opened.latency);
        }
        c.heartbeat = opened
            .welcome
            .map(|w| w.heartbeat_ms)
            .filter(|&ms| ms > 0)
            .map(|ms| Duration::from_millis(u64::from(ms)));
        if let Some(hb) = c.heartbeat {
            let at = cx.now() + hb.mul_f64(spread(cx.index()));
            cx.set_timer(at);
        }
    }

    fn on_steady(&mut self, cx: &mut Ctx<'_>, c: &mut PingConn) {
        if self.role != Role::Load {
            return;
        }
        match self.period {
            None => {
                let data = std::mem::take(&mut self.data);
                self.send(cx, c, &data);
                self.data = data;
            }
            Some(p) => {
                let due = cx.now() + p.mul_f64(spread(cx.index()));
                c.next_due = Some(due);
                cx.set_timer(due);
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, c: &mut PingConn) {
        if !self.load(cx) {
            self.heartbeat(cx, c);
            return;
        }
        let now = cx.now();
        if c.in_flight.is_none() {
            let data = std::mem::take(&mut self.data);
            self.send(cx, c, &data);
            self.data = data;
        }
        if let Some(p) = self.period {
            let mut due = c.next_due.unwrap_or(now) + p;
            if due <= now {
                // Behind schedule (a slow reply): skip the missed ticks.
                due = now + p;
            }
            c.next_due = Some(due);
            cx.set_timer(due);
        }
    }

    fn on_frame(&mut self, cx: &mut Ctx<'_>, c: &mut PingConn, h: FrameHeader, payload: &[u8]) {
        if h.kind != Kind::Pong.as_u8() {
            return;
        }
        let Some((rid, sent, len)) = c.in_flight else {
            return;
        };
        if h.request_id != rid {
            return;
        }
        if payload.len() != len {
            cx.fail("pong_mismatch");
            return;
        }
        c.in_flight = None;
        let rtt = cx.now().saturating_duration_since(sent);
        if self.role != Role::Connect {
            cx.round_trip(rtt);
        }
        if self.load(cx) {
            if self.period.is_none() {
                let data = std::mem::take(&mut self.data);
                self.send(cx, c, &data);
                self.data = data;
            }
        } else if self.role == Role::Load
            && let Some(hb) = c.heartbeat
        {
            // The load is over: keep the session alive until released.
            let at = cx.now() + hb;
            cx.set_timer(at);
        }
    }
}
