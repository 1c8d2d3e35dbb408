//! `chat`: conversations between visitors and agents (PROTOCOL.md section 13).
//!
//! The connections with global indices below `--agents` are agents (role `agent`,
//! groups `[--group]`, `max_concurrent` = `--capacity`); they are opened first, the
//! rest are visitors. In the steady stage every visitor opens one conversation (a
//! `Send` with conversation 0 in `--group`); once it is `Assigned`, visitor and agent
//! each send `--size` byte messages at `--rate / 2` per second per conversation (an
//! agent serves its conversations round robin from one per-connection schedule).
//!
//! A message body is `"<v|a|o> <send time, µs since the Unix epoch> "` padded with
//! `x` to `--size` bytes (`o` marks the opening message, which the agent never gets
//! as a `Deliver`). The receiver's `Deliver` time minus the stamp is the latency:
//! visitor → agent in the `v2a` histogram, agent → visitor in `a2v`, both in the
//! combined one, and every such `Deliver` is one message. `Accepted`s of `v`/`a`
//! messages are counted as `accepted`, their `Deliver`s as `delivered`;
//! [`super::finalize`] reports the difference as `lost` errors (after the drain
//! period, `--drain`). Each side checks that the `seq`s of the `Deliver` and
//! `Assigned` frames of a conversation increase, else an `out_of_order` error.
//!
//! Visitors count `conversations_opened` (the opening `Accepted`) and
//! `conversations_assigned` (their first `Assigned`). User ids get a per-run suffix
//! (milliseconds since the Unix epoch), so runs against one daemon do not meet the
//! conversations of earlier runs.
//!
//! Every connection also sends an empty `Ping` when it has sent nothing for the
//! server's heartbeat interval, so it is not closed as idle while others connect.

use std::time::{Duration, Instant, SystemTime};

use switchboard::frame::FrameHeader;
use switchboard::protocol::Kind;
use switchboard::protocol::messages::{Msg, Ping, Send, content};

use super::{Ctx, Opened, Scenario, spread};
use crate::cli::Plan;
use crate::engine::msg_frame;
use crate::stats::unix_us;
use crate::token::{Minter, TokenError};

/// The chat scenario (one per engine thread).
#[derive(Debug, Clone)]
pub struct Chat {
    agents: u64,
    capacity: u32,
    group: String,
    first_index: u64,
    /// Time between messages of one direction of one conversation.
    period: Duration,
    size: usize,
    drain: Duration,
    /// Appended to every user id, so that a run against a daemon that still holds
    /// the conversations of an earlier run starts afresh (a visitor's `Send` with
    /// conversation 0 would otherwise land in its earlier, still open conversation).
    nonce: u64,
}

/// One conversation as one side sees it.
#[derive(Debug, Clone, Copy)]
struct Conv {
    id: u64,
    /// Highest `seq` of a `Deliver` or `Assigned` received.
    last_seq: u64,
}

/// Per-connection state.
#[derive(Debug, Default)]
pub struct ChatConn {
    agent: bool,
    /// Visitor: its conversation once known (assigned or not); agent: the
    /// conversations assigned to it.
    convs: Vec<Conv>,
    /// Visitor: its conversation has an agent.
    assigned: bool,
    /// When the next message is due (while sending).
    next_due: Option<Instant>,
    /// Agent: round-robin position.
    rr: usize,
    next_msg_id: u64,
    keepalive: Keepalive,
}

/// Sends an empty `Ping` when nothing was sent for the heartbeat interval.
#[derive(Debug, Default, Clone, Copy)]
pub struct Keepalive {
    /// The server's heartbeat interval.
    pub every: Option<Duration>,
    /// When something was last sent.
    pub last_sent: Option<Instant>,
}

impl Keepalive {
    /// Takes the interval from `Welcome`; counts now as the last send.
    pub fn open(&mut self, cx: &Ctx<'_>, opened: &Opened<'_>) {
        self.every = opened
            .welcome
            .map(|w| w.heartbeat_ms)
            .filter(|&ms| ms > 0)
            .map(|ms| Duration::from_millis(u64::from(ms)));
        self.last_sent = Some(cx.now());
    }

    /// Something was sent now.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
    }

    /// Pings if due; returns when the next ping is due.
    pub fn tick(&mut self, cx: &mut Ctx<'_>) -> Option<Instant> {
        let every = self.every?;
        let now = cx.now();
        let last = self.last_sent.unwrap_or(now);
        if now.saturating_duration_since(last) >= every {
            let rid = cx.request_id();
            let frame = msg_frame(
                &Msg::Ping(Ping {
                    stamp: unix_us(SystemTime::now()),
                    data: Vec::new(),
                }),
                rid,
            );
            cx.send(&frame);
            self.last_sent = Some(now);
            return Some(now + every);
        }
        Some(last + every)
    }
}

/// A message body: `"<tag> <µs> "` padded with `x` to `size` bytes.
pub fn body(tag: char, stamp_us: u64, size: usize) -> String {
    let mut b = format!("{tag} {stamp_us} ");
    if b.len() < size {
        b.extend(std::iter::repeat_n('x', size - b.len()));
    }
    b
}

/// The tag and stamp of a body made by [`body`].
pub fn parse_body(b: &str) -> Option<(char, u64)> {
    let mut it = b.splitn(3, ' ');
    let tag = it.next()?;
    let mut chars = tag.chars();
    let t = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    let stamp = it.next()?.parse().ok()?;
    Some((t, stamp))
}

/// The time since `stamp_us` (µs since the Unix epoch), 0 if it is in the future.
pub fn since_stamp(stamp_us: u64) -> Duration {
    Duration::from_micros(unix_us(SystemTime::now()).saturating_sub(stamp_us))
}

impl Chat {
    /// The scenario for `plan`.
    pub fn new(plan: &Plan) -> Self {
        let per_direction = (plan.message_rate / 2.0).max(1e-6);
        Self {
            agents: plan.agents,
            capacity: plan.capacity,
            group: plan.group.clone(),
            first_index: plan.first_index,
            period: Duration::from_secs_f64((1.0 / per_direction).min(1e6)),
            size: plan.size,
            drain: plan.drain,
            nonce: unix_us(SystemTime::now()) / 1000,
        }
    }

    /// Sends a `Send` with `body` to `conversation` (0 opens one).
    fn send(&self, cx: &mut Ctx<'_>, c: &mut ChatConn, conversation: u64, tag: char) {
        c.next_msg_id += 1;
        let msg = Msg::Send(Send {
            content_type: content::TEXT,
            conversation,
            client_msg_id: c.next_msg_id,
            group: if conversation == 0 {
                self.group.clone()
            } else {
                String::new()
            },
            body: body(tag, unix_us(SystemTime::now()), self.size),
        });
        let rid = cx.request_id();
        cx.send(&msg_frame(&msg, rid));
        c.keepalive.sent(cx.now());
    }

    /// Time between this connection's messages (0 conversations: none).
    fn interval(&self, c: &ChatConn) -> Option<Duration> {
        if c.agent {
            let n = u32::try_from(c.convs.len()).unwrap_or(u32::MAX);
            (n > 0).then(|| self.period / n)
        } else {
            c.assigned.then_some(self.period)
        }
    }

    /// Arms the timer for the next message or heartbeat, whichever is first.
    fn arm(&self, cx: &mut Ctx<'_>, c: &mut ChatConn) {
        let hb = c.keepalive.tick(cx);
        let msg = if cx.steady() { c.next_due } else { None };
        if let Some(at) = [hb, msg].into_iter().flatten().min() {
            cx.set_timer(at);
        }
    }

    /// Starts sending if this connection has something to send and is not yet.
    fn start(&self, cx: &mut Ctx<'_>, c: &mut ChatConn) {
        if c.next_due.is_some() || !cx.steady() {
            return;
        }
        if let Some(p) = self.interval(c) {
            c.next_due = Some(cx.now() + p.mul_f64(spread(cx.index())));
            self.arm(cx, c);
        }
    }

    /// Checks and records the `seq` of a conversation's frame.
    fn order(cx: &mut Ctx<'_>, c: &mut ChatConn, conversation: u64, seq: u64) {
        match c.convs.iter_mut().find(|v| v.id == conversation) {
            Some(v) => {
                if seq <= v.last_seq {
                    cx.error("out_of_order");
                }
                v.last_seq = v.last_seq.max(seq);
            }
            None => cx.error("unknown_conversation"),
        }
    }
}

impl Scenario for Chat {
    type Conn = ChatConn;

    fn on_open(&mut self, cx: &mut Ctx<'_>, c: &mut ChatConn, opened: &Opened<'_>) {
        c.agent = self.first_index + cx.index() < self.agents;
        c.keepalive.open(cx, opened);
        self.arm(cx, c);
    }

    fn on_steady(&mut self, cx: &mut Ctx<'_>, c: &mut ChatConn) {
        if c.agent {
            self.start(cx, c);
        } else if c.convs.is_empty() && c.next_msg_id == 0 {
            self.send(cx, c, 0, 'o');
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, c: &mut ChatConn) {
        let now = cx.now();
        if !cx.steady() {
            c.next_due = None;
        }
        if let (Some(due), Some(p)) = (c.next_due, self.interval(c))
            && now >= due
        {
            let conv = if c.agent {
                c.rr = c.rr.wrapping_add(1);
                c.convs.get(c.rr % c.convs.len().max(1)).map(|v| v.id)
            } else {
                c.convs.first().map(|v| v.id)
            };
            if let Some(id) = conv {
                let tag = if c.agent { 'a' } else { 'v' };
                self.send(cx, c, id, tag);
            }
            let mut next = due + p;
            if next <= now {
                // Behind schedule: skip the missed ticks.
                next = now + p;
            }
            c.next_due = Some(next);
        }
        self.arm(cx, c);
    }

    fn on_frame(&mut self, cx: &mut Ctx<'_>, c: &mut ChatConn, h: FrameHeader, payload: &[u8]) {
        let Some(kind) = Kind::from_u8(h.kind) else {
            return;
        };
        if !matches!(
            kind,
            Kind::Accepted | Kind::Deliver | Kind::Assigned | Kind::Close
        ) {
            return;
        }
        let msg = match Msg::decode(h.kind, payload) {
            Ok(m) => m,
            Err(_) => {
                cx.fail("bad_payload");
                return;
            }
        };
        match msg {
            Msg::Accepted(a) => {
                if !c.agent && a.client_msg_id == 1 {
                    cx.count("conversations_opened", 1);
                    if c.convs.is_empty() {
                        c.convs.push(Conv {
                            id: a.conversation,
                            last_seq: 0,
                        });
                    }
                }
                // The opening message (client id 1 of a visitor) is not delivered.
                if c.agent || a.client_msg_id > 1 {
                    cx.count("accepted", 1);
                }
            }
            Msg::Assigned(a) => {
                if c.agent {
                    if c.convs.iter().all(|v| v.id != a.conversation) {
                        c.convs.push(Conv {
                            id: a.conversation,
                            last_seq: a.seq,
                        });
                    } else {
                        Self::order(cx, c, a.conversation, a.seq);
                    }
                } else {
                    if c.convs.is_empty() {
                        c.convs.push(Conv {
                            id: a.conversation,
                            last_seq: 0,
                        });
                    }
                    Self::order(cx, c, a.conversation, a.seq);
                    if !c.assigned {
                        cx.count("conversations_assigned", 1);
                    }
                    c.assigned = true;
                }
                self.start(cx, c);
            }
            Msg::Deliver(d) => {
                Self::order(cx, c, d.conversation, d.seq);
                if let Some((tag @ ('v' | 'a'), stamp)) = parse_body(&d.body) {
                    let lat = since_stamp(stamp);
                    cx.count("delivered", 1);
                    cx.round_trip(lat);
                    cx.sample(if tag == 'v' { "v2a" } else { "a2v" }, lat);
                }
            }
            Msg::Close(cl) => {
                c.convs.retain(|v| v.id != cl.conversation);
                cx.error("closed_by_server");
            }
            _ => {}
        }
    }

    fn token(&self, minter: &Minter, sub: &str, global: u64) -> Result<String, TokenError> {
        let sub = format!("{sub}-{}", self.nonce);
        if global < self.agents {
            minter.token(&sub, "agent", &[&self.group], Some(self.capacity))
        } else {
            minter.visitor(&sub)
        }
    }

    fn drain(&self) -> Duration {
        self.drain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip() {
        let b = body('v', 1_700_000_000_123_456, 64);
        assert_eq!(b.len(), 64);
        assert_eq!(parse_body(&b), Some(('v', 1_700_000_000_123_456)));
        let short = body('a', 42, 1);
        assert_eq!(parse_body(&short), Some(('a', 42)));
        assert_eq!(parse_body("hello world"), None);
        assert_eq!(parse_body(""), None);
    }
}
