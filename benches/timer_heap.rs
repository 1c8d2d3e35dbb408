//! The reactor's heartbeat timer heap (`reactor::timer::TimerHeap`, reached through
//! `switchboard::bench_support`) at 100,000 armed entries: filling it, draining it, and
//! the steady state where each due entry is popped and re-armed.
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench timer_heap
//! cargo bench --bench timer_heap -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Deadlines are spread over 30–90 s ahead of a reactor clock in milliseconds, as
//! heartbeat re-arms are. Throughput is in heap operations (criterion's `elem/s`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use switchboard::bench_support::TimerHeap;

/// Entries armed at once.
const ENTRIES: u32 = 100_000;
/// Reactor clock at the start, in milliseconds.
const START_MS: u64 = 1_000_000;

/// (deadline, slot, generation) for every slot, deadlines 30–90 s ahead, shuffled.
fn entries() -> Vec<(u64, u32, u32)> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..ENTRIES)
        .map(|slot| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (START_MS + 30_000 + x % 60_000, slot, (x >> 40) as u32)
        })
        .collect()
}

fn filled(entries: &[(u64, u32, u32)]) -> TimerHeap {
    let mut h = TimerHeap::default();
    for &(d, s, g) in entries {
        h.push(d, s, g);
    }
    h
}

fn benches(c: &mut Criterion) {
    let entries = entries();
    let mut g = c.benchmark_group("timer_heap");

    g.throughput(Throughput::Elements(u64::from(ENTRIES)));
    g.bench_function("push_100k", |b| {
        b.iter(|| filled(black_box(&entries)));
    });
    g.bench_function("pop_due_100k", |b| {
        b.iter_batched(
            || filled(&entries),
            |mut h| {
                let mut n = 0u32;
                while let Some(e) = h.pop_due(u64::MAX) {
                    black_box(e);
                    n += 1;
                }
                assert_eq!(n, ENTRIES);
                h
            },
            BatchSize::LargeInput,
        );
    });

    // One pop of the earliest due entry and one push re-arming it 60 s later, on a heap
    // that stays at 100,000 entries: what a reactor does when heartbeats come due.
    g.throughput(Throughput::Elements(1));
    let mut heap = filled(&entries);
    g.bench_function("pop_rearm_at_100k", |b| {
        b.iter(|| {
            let now = heap.next_deadline().expect("armed");
            let (d, s, gen_) = heap.pop_due(black_box(now)).expect("due");
            heap.push(d + 60_000, s, gen_);
        });
    });
    g.bench_function("next_deadline_not_due_at_100k", |b| {
        b.iter(|| heap.pop_due(black_box(START_MS)));
    });
    g.finish();
}

criterion_group!(timer, benches);
criterion_main!(timer);
