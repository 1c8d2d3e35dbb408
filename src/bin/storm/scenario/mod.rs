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
//! - `echo.rs`: raw echo, flood or ping-pong.
//!
//! **Adding a scenario** (e.g. `chat`: visitors and agents exchanging `Send`/`Deliver`;
//! `fanout`: one admin `Notice` delivered to many): write a module with a type that
//! implements [`Scenario`] (its `Conn` holds per-connection state such as a role or
//! a conversation id; `on_open` sees the `Welcome`, `on_frame` every frame the engine
//! does not handle itself), add a [`ScenarioKind`] variant in `cli.rs`, and one arm in
//! [`spawn`] below. Tokens with other roles would be minted in `token.rs`.

pub mod connect;
pub mod echo;
pub mod idle;
pub mod ping;
pub mod pinger;

use std::io;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::Instant;

use switchboard::frame::FrameHeader;

use crate::cli::{Plan, ScenarioKind};
use crate::engine::{Control, ThreadEvent, ThreadSpec, run_thread};
pub use crate::engine::{Ctx, Opened};
use crate::stats::Clock;
use crate::token::Minter;

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

    /// The socket can take more bytes and nothing is queued.
    fn on_writable(&mut self, _cx: &mut Ctx<'_>, _c: &mut Self::Conn) {}

    /// The timer set with [`Ctx::set_timer`] is due.
    fn on_timer(&mut self, _cx: &mut Ctx<'_>, _c: &mut Self::Conn) {}
}

/// A number in `[0, 1)` that spreads consecutive indices evenly (golden ratio), used
/// to stagger per-connection timers so thousands of connections do not fire at once.
pub fn spread(index: u64) -> f64 {
    (index as f64 * 0.618_033_988_749_895).fract()
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
