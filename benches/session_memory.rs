//! Heap bytes per established session, per structure: `n` visitor sessions go
//! through the real handshake (`Hello` with a verified token → `Welcome` →
//! `RouterMsg::Connected`) on one session worker and the router, in this process,
//! under a counting allocator; then each structure is dropped in turn and what it
//! freed is printed. The bytes are those asked of the allocator (mimalloc rounds a
//! request up to its size class and keeps freed pages a while: the daemon's RSS per
//! session, `storm --scenario idle --server-pid`, adds that and the reactor's
//! `Conn`).
//!
//! ```sh
//! cargo bench --bench session_memory            # 10,000 sessions
//! cargo bench --bench session_memory -- 19000
//! ```

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live() -> i64 {
    let s = GLOBAL.stats();
    let net = s.bytes_allocated as i128 - s.bytes_deallocated as i128 + s.bytes_reallocated as i128;
    i64::try_from(net).unwrap_or(i64::MAX)
}

fn main() {
    // `cargo bench` passes `--bench`; the first number is the session count.
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(10_000);
    let m = switchboard::bench_support::session_memory(n, &live);
    let per = |b: i64| b as f64 / m.sessions.max(1) as f64;
    println!(
        "{} established visitor sessions (one worker, the router)",
        m.sessions
    );
    println!("| structure | bytes per session |");
    println!("|---|---:|");
    for (name, bytes) in &m.parts {
        println!("| {name} | {:.1} |", per(*bytes));
    }
    println!(
        "| **session worker, measured** | **{:.1}** |",
        per(m.worker)
    );
    println!("| **router, measured** | **{:.1}** |", per(m.router));
    println!("| **total** | **{:.1}** |", per(m.worker + m.router));
}
