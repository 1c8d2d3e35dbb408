//! Switchboard: a self-hosted customer-service connection gateway.
//!
//! One daemon holds the long-lived connections of visitors and agents on a
//! thread-per-core reactor ([`reactor`] is internal), hands complete frames to a pool
//! of business workers over typed queues ([`handoff`]), and writes their answers back.
//! Start one with [`Server::start`]; see `DESIGN.md` and `proto-spec/` for the shape
//! and the wire format.

pub mod auth;
pub mod client;
mod clock;
pub mod config;
pub mod frame;
pub mod handoff;
pub mod metrics;
pub mod protocol;
mod reactor;
mod server;
mod service;
mod worker;

pub use config::Config;
pub use server::{Server, ShutdownReport, StartError};

/// Internals exposed only so `benches/` can measure them. Not a stable API.
#[doc(hidden)]
pub mod bench_support {
    /// The reactor's min-heap of (deadline, slot, generation) heartbeat entries.
    #[derive(Debug, Default)]
    pub struct TimerHeap(crate::reactor::timer::TimerHeap);

    impl TimerHeap {
        /// Arms a deadline.
        #[inline]
        pub fn push(&mut self, deadline: u64, slot: u32, generation: u32) {
            self.0.push(deadline, slot, generation);
        }

        /// The earliest armed deadline.
        #[inline]
        pub fn next_deadline(&self) -> Option<u64> {
            self.0.next_deadline()
        }

        /// Removes and returns the earliest entry, as (deadline, slot, generation), if
        /// it is due at `now`.
        #[inline]
        pub fn pop_due(&mut self, now: u64) -> Option<(u64, u32, u32)> {
            self.0
                .pop_due(now)
                .map(|e| (e.deadline, e.slot, e.generation))
        }
    }
}
