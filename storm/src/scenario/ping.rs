//! `ping`: protocol-level round trips over authenticated sessions. In the steady
//! stage every connection sends `Ping { stamp: send time in µs, data: --size bytes }`
//! and waits for the `Pong` — back to back with `--rate 0`, else at `--rate` per
//! second per connection, one in flight — and the send → `Pong` time is the latency.

use super::pinger::{Pinger, Role};
use crate::cli::Plan;

/// The ping scenario.
pub fn new(plan: &Plan) -> Pinger {
    Pinger::new(Role::Load, plan.message_rate, plan.size)
}
