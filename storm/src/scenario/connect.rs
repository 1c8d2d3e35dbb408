//! `connect`: a connection storm. Opens `--connections` at `--rate` per second and
//! measures each one from the start of its `connect` to its `Welcome` (or to TCP
//! connected with `--raw`); that handshake is the scenario's round trip, so
//! `messages_per_s` equals the connect rate. Established sessions then only send
//! heartbeats until the run ends.

use super::pinger::{Pinger, Role};
use crate::cli::Plan;

/// The connect scenario.
pub fn new(_plan: &Plan) -> Pinger {
    Pinger::new(Role::Connect, 0.0, 0)
}
