//! `idle`: open `--connections`, hold them for `--duration`, and count how many are
//! still open at the end. In protocol mode each session answers server `Ping`s (the
//! engine does) and sends a `Ping` at the `Welcome.heartbeat_ms` interval, whose
//! round trips are the measured latency; with `--raw` the connections stay silent.

use super::pinger::{Pinger, Role};
use crate::cli::Plan;

/// The idle scenario.
pub fn new(_plan: &Plan) -> Pinger {
    Pinger::new(Role::Idle, 0.0, 0)
}
