//! Switchboard: a self-hosted customer-service connection gateway.
//!
//! One daemon holds the long-lived connections of visitors and agents on a
//! thread-per-core reactor ([`reactor`] is internal), hands complete frames to a pool
//! of business workers over typed queues ([`handoff`]), and writes their answers back.
//! Start one with [`Server::start`]; see `DESIGN.md` and `proto-spec/` for the shape
//! and the wire format.

pub mod auth;
pub mod client;
pub mod config;
pub mod frame;
pub mod handoff;
pub mod metrics;
pub mod protocol;
mod reactor;
mod server;
mod worker;

pub use config::Config;
pub use server::{Server, ShutdownReport, StartError};
