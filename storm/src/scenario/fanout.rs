//! `fanout`: one admin's `Notice`s delivered to many members (PROTOCOL.md
//! section 4.23).
//!
//! The connection with global index 0 is the admin (role `admin`); the other
//! `--connections` are the members: agents listing `--group` (default `fanout`), or
//! with `--visitors` visitors of the same (default) tenant, and the notices then go
//! to everyone (empty group). In the steady stage the admin sends `--count` notices,
//! one every `1 / --rate` seconds (default 1 per second), each with the text
//! `"storm-notice <k> <send time, µs since the Unix epoch>"`, so that members in
//! other processes can measure it against the wall clock.
//!
//! Every member counts each notice it receives (`delivered`) and its delay (the
//! `delivery` histogram); the largest delay per notice over all members, threads and
//! processes (maximum `notice_<k>`) is the time it took to reach them all, and
//! [`super::finalize`] puts those per-notice figures in the main latency histogram.
//! `lost` errors are `notices_sent × members − delivered`.

use std::time::{Duration, Instant, SystemTime};

use switchboard::frame::FrameHeader;
use switchboard::protocol::Kind;
use switchboard::protocol::messages::{Msg, Notice};

use super::chat::Keepalive;
use super::{Ctx, Opened, Scenario};
use crate::cli::Plan;
use crate::engine::msg_frame;
use crate::stats::unix_us;
use crate::token::{Minter, TokenError};

/// The prefix of the notices' text.
const PREFIX: &str = "storm-notice ";

/// The fanout scenario (one per engine thread).
#[derive(Debug, Clone)]
pub struct Fanout {
    first_index: u64,
    group: String,
    visitors: bool,
    count: u64,
    period: Duration,
    drain: Duration,
}

/// Per-connection state.
#[derive(Debug, Default)]
pub struct FanConn {
    admin: bool,
    /// Admin: notices sent.
    sent: u64,
    /// Admin: when the next notice is due.
    next_due: Option<Instant>,
    keepalive: Keepalive,
}

/// The name of the maximum holding notice `k`'s last-delivery delay.
pub fn notice_key(k: u64) -> String {
    format!("notice_{k:06}")
}

/// `(k, stamp)` of a notice text made by the admin.
pub fn parse_text(text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix(PREFIX)?;
    let (k, stamp) = rest.split_once(' ')?;
    Some((k.parse().ok()?, stamp.trim().parse().ok()?))
}

impl Fanout {
    /// The scenario for `plan`.
    pub fn new(plan: &Plan) -> Self {
        Self {
            first_index: plan.first_index,
            group: plan.group.clone(),
            visitors: plan.visitors,
            count: plan.count,
            period: Duration::from_secs_f64((1.0 / plan.message_rate.max(1e-6)).min(1e6)),
            drain: plan.drain,
        }
    }

    fn arm(&self, cx: &mut Ctx<'_>, c: &mut FanConn) {
        let hb = c.keepalive.tick(cx);
        let due = if cx.steady() { c.next_due } else { None };
        if let Some(at) = [hb, due].into_iter().flatten().min() {
            cx.set_timer(at);
        }
    }
}

impl Scenario for Fanout {
    type Conn = FanConn;

    fn on_open(&mut self, cx: &mut Ctx<'_>, c: &mut FanConn, opened: &Opened<'_>) {
        c.admin = self.first_index + cx.index() == 0;
        if !c.admin {
            cx.count("members", 1);
        }
        c.keepalive.open(cx, opened);
        self.arm(cx, c);
    }

    fn on_steady(&mut self, cx: &mut Ctx<'_>, c: &mut FanConn) {
        if c.admin && c.sent < self.count {
            c.next_due = Some(cx.now());
            self.arm(cx, c);
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, c: &mut FanConn) {
        let now = cx.now();
        if let Some(due) = c.next_due
            && now >= due
            && cx.steady()
            && c.sent < self.count
        {
            let msg = Msg::Notice(Notice {
                time_ms: 0,
                group: self.group.clone(),
                from: String::new(),
                text: format!("{PREFIX}{} {}", c.sent, unix_us(SystemTime::now())),
            });
            let rid = cx.request_id();
            cx.send(&msg_frame(&msg, rid));
            c.keepalive.sent(now);
            cx.count("notices_sent", 1);
            c.sent += 1;
            c.next_due = (c.sent < self.count).then_some(due + self.period);
        }
        self.arm(cx, c);
    }

    fn on_frame(&mut self, cx: &mut Ctx<'_>, c: &mut FanConn, h: FrameHeader, payload: &[u8]) {
        if c.admin || h.kind != Kind::Notice.as_u8() {
            return;
        }
        let Ok(Msg::Notice(n)) = Msg::decode(h.kind, payload) else {
            cx.fail("bad_payload");
            return;
        };
        let Some((k, stamp)) = parse_text(&n.text) else {
            return;
        };
        let lat = super::chat::since_stamp(stamp);
        cx.count("delivered", 1);
        cx.messages(1);
        cx.sample_always("delivery", lat);
        cx.max(
            &notice_key(k),
            u64::try_from(lat.as_nanos()).unwrap_or(u64::MAX),
        );
    }

    fn token(&self, minter: &Minter, sub: &str, global: u64) -> Result<String, TokenError> {
        if global == 0 {
            minter.token(sub, "admin", &[], None)
        } else if self.visitors {
            minter.visitor(sub)
        } else {
            minter.token(sub, "agent", &[&self.group], None)
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
    fn notice_texts_parse() {
        assert_eq!(
            parse_text("storm-notice 3 1700000000000000"),
            Some((3, 1_700_000_000_000_000))
        );
        assert_eq!(parse_text("hello"), None);
        assert_eq!(notice_key(7), "notice_000007");
    }
}
