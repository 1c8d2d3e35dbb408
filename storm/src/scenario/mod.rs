//! Scenarios: what the engine does with a connection once it is established.
//!
//! The engine ([`crate::engine`]) owns sockets, framing, handshakes, timers and
//! counters; a scenario only decides what to send and what a reply means, through
//! the callbacks of [`Scenario`] and the connection handle [`Ctx`]. Each engine
//! thread gets its own scenario value and keeps one `Scenario::Conn` (small, `Default`)
//! per connection beside its socket — the engine is generic over the scenario, so
//! dispatch is static.
//!
//! - `connect.rs`, `idle.rs`, `ping.rs`: protocol sessions built on [`pinger`]
//!   (heartbeats, `Ping`/`Pong` round trips);
//! - `echo.rs`: raw echo, flood or ping-pong;
//! - `chat.rs`: agents and visitors exchanging `Send`/`Deliver` in conversations;
//! - `fanout.rs`: one admin's `Notice`s delivered to many members.
//!
//! **Adding a scenario** (e.g. `chat`: visitors and agents exchanging `Send`/`Deliver`;
//! `fanout`: one admin `Notice` delivered to many): write a module with a type that
//! implements [`Scenario`] (its `Conn` holds per-connection state such as a role or
//! a conversation id; `on_open` sees the `Welcome`, `on_frame` every frame the engine
//! does not handle itself), add a [`ScenarioKind`] variant in `cli.rs`, and one arm in
//! [`spawn`] below. Tokens with other roles would be minted in `token.rs`.

pub mod chat;
pub mod connect;
pub mod echo;
pub mod fanout;
pub mod idle;
pub mod ping;
pub mod pinger;

use std::io;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchboard::frame::FrameHeader;

use crate::cli::{Plan, ScenarioKind};
use crate::engine::{Control, ThreadEvent, ThreadSpec, run_thread};
pub use crate::engine::{Ctx, Opened};
use crate::stats::{Clock, Stats, histogram, record};
use crate::token::{Minter, TokenError};

/// A load pattern the engine drives. Every callback gets the connection's handle
/// and its per-connection state; none may block.
pub trait Scenario: Send + 'static {
    /// Per-connection state, kept beside the socket.
    type Conn: Default + Send;

    /// The connection is established: `Welcome` received (protocol) or TCP connected
    /// (raw).
    fn on_open(&mut self, cx: &mut Ctx<'_>, c: &mut Self::Conn, opened: &Opened<'_>);

    /// The steady stage begins (called for every open connection, and at open for
    /// connections established later).
    fn on_steady(&mut self, _cx: &mut Ctx<'_>, _c: &mut Self::Conn) {}

    /// A frame the engine does not handle itself (it answers `Ping`, and handles
    /// `Error` and `Bye`). Protocol mode only.
    fn on_frame(
        &mut self,
        _cx: &mut Ctx<'_>,
        _c: &mut Self::Conn,
        _header: FrameHeader,
        _payload: &[u8],
    ) {
    }

    /// Bytes received. Raw mode only.
    fn on_data(&mut self, _cx: &mut Ctx<'_>, _c: &mut Self::Conn, _data: &[u8]) {}

    /// Every message of one read from a WebSocket has been handed to
    /// [`Scenario::on_data`] (raw mode over a WebSocket only), so a scenario can write
    /// once per read rather than once per message.
    fn after_read(&mut self, _cx: &mut Ctx<'_>, _c: &mut Self::Conn) {}

    /// The socket can take more bytes and nothing is queued.
    fn on_writable(&mut self, _cx: &mut Ctx<'_>, _c: &mut Self::Conn) {}

    /// The timer set with [`Ctx::set_timer`] is due.
    fn on_timer(&mut self, _cx: &mut Ctx<'_>, _c: &mut Self::Conn) {}

    /// The token for the connection with global index `global` (over all processes)
    /// and user id `sub`: a visitor's unless the scenario needs other roles.
    fn token(&self, minter: &Minter, sub: &str, _global: u64) -> Result<String, TokenError> {
        minter.visitor(sub)
    }

    /// How long after the steady stage the thread keeps reading before it reports,
    /// with no new load ([`Ctx::steady`] is false), so messages in flight are counted.
    fn drain(&self) -> Duration {
        Duration::ZERO
    }
}

/// A number in `[0, 1)` that spreads consecutive indices evenly (golden ratio), used
/// to stagger per-connection timers so thousands of connections do not fire at once.
pub fn spread(index: u64) -> f64 {
    (index as f64 * 0.618_033_988_749_895).fract()
}

/// Turns the merged counters of a `chat` or `fanout` run into its figures (in the
/// parent, after merging every thread and process):
///
/// - chat: `accepted − delivered` messages (when positive) are `lost` errors;
/// - fanout: `messages` = notices delivered; the per-notice last-delivery delays
///   (maxima `notice_<k>`) replace the main latency histogram, so `latency_us` describes
///   the time to reach every member; `notices_sent × members − delivered` (when
///   positive) are `lost` errors, a surplus `duplicate` errors.
pub fn finalize(plan: &Plan, s: &mut Stats) {
    let counter = |s: &Stats, k: &str| s.counters.get(k).copied().unwrap_or(0);
    match plan.scenario {
        ScenarioKind::Chat => {
            let lost = counter(s, "accepted").saturating_sub(counter(s, "delivered"));
            if lost > 0 {
                *s.errors.entry("lost".into()).or_insert(0) += lost;
            }
        }
        ScenarioKind::Fanout => {
            let delivered = counter(s, "delivered");
            let expected = counter(s, "notices_sent") * counter(s, "members");
            s.messages = delivered;
            let mut h = histogram();
            for (k, ns) in &s.maxima {
                if k.starts_with("notice_") {
                    record(&mut h, Duration::from_nanos(*ns));
                }
            }
            s.rtt = h;
            if expected > delivered {
                *s.errors.entry("lost".into()).or_insert(0) += expected - delivered;
            } else if delivered > expected {
                *s.errors.entry("duplicate".into()).or_insert(0) += delivered - expected;
            }
        }
        _ => {}
    }
}

/// Starts this process's engine threads for the plan's scenario.
pub fn spawn(
    plan: &Arc<Plan>,
    minter: Option<Arc<Minter>>,
    ctl: &Arc<Control>,
    tx: &Sender<ThreadEvent>,
    t0: Instant,
    clock: Clock,
) -> io::Result<Vec<JoinHandle<()>>> {
    (0..plan.threads)
        .map(|thread| {
            let spec = ThreadSpec {
                thread,
                threads: plan.threads,
                plan: plan.clone(),
                minter: minter.clone(),
                t0,
                clock,
            };
            let (ctl, tx, plan) = (ctl.clone(), tx.clone(), plan.clone());
            std::thread::Builder::new()
                .name(format!("storm-{thread}"))
                .spawn(move || match plan.scenario {
                    ScenarioKind::Connect => run_thread(spec, connect::new(&plan), ctl, tx),
                    ScenarioKind::Idle => run_thread(spec, idle::new(&plan), ctl, tx),
                    ScenarioKind::Echo => run_thread(spec, echo::Echo::new(&plan), ctl, tx),
                    ScenarioKind::Ping => run_thread(spec, ping::new(&plan), ctl, tx),
                    ScenarioKind::Chat => run_thread(spec, chat::Chat::new(&plan), ctl, tx),
                    ScenarioKind::Fanout => run_thread(spec, fanout::Fanout::new(&plan), ctl, tx),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_covers_the_unit_interval() {
        let mut buckets = [0u32; 10];
        for i in 0..1000 {
            let s = spread(i);
            assert!((0.0..1.0).contains(&s));
            buckets[(s * 10.0) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (90..=110).contains(&b)),
            "{buckets:?}"
        );
    }
}
