//! Broadcast fan-out: one notice to many connections, encoded once.
//!
//! - `plan`: what a worker does for a broadcast — encode the `Notice` frame once and
//!   split 10,000 members into one `SendMany` per reactor sharing that frame
//!   (`switchboard::bench_support::fanout`), for 2 and 8 reactors.
//! - `write`: what a reactor then does per member — one non-blocking `write` of the
//!   same shared bytes to each of 1,000 connected loopback sockets (the kernel's
//!   share of a delivery; the receivers drain in a background thread).
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench fanout -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Throughput is in members (criterion's `elem/s`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard::bench_support::fanout;

const MEMBERS: u32 = 10_000;
const SOCKETS: usize = 1_000;

fn plan(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout/plan");
    g.throughput(Throughput::Elements(u64::from(MEMBERS)));
    for reactors in [2usize, 8] {
        let members: Vec<(u16, u32, u32)> = (0..MEMBERS)
            .map(|i| ((i as usize % reactors) as u16, i, 1))
            .collect();
        g.bench_function(format!("{MEMBERS}_members_{reactors}_reactors"), |b| {
            b.iter(|| {
                black_box(fanout(
                    black_box(&members),
                    reactors,
                    "maintenance at 22:00",
                ))
            })
        });
    }
    g.finish();
}

fn write(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut senders = Vec::with_capacity(SOCKETS);
    let mut receivers = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        let s = TcpStream::connect(addr).unwrap();
        let (r, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        s.set_nonblocking(true).unwrap();
        r.set_nonblocking(true).unwrap();
        senders.push(s);
        receivers.push(r);
    }
    // Drain the receivers so the senders never fill up.
    let stop = Arc::new(AtomicBool::new(false));
    let drain = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                for r in &mut receivers {
                    while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
                }
                std::thread::yield_now();
            }
        })
    };
    let frame = bytes::Bytes::from(vec![0x5au8; 96]);
    let mut g = c.benchmark_group("fanout/write");
    g.throughput(Throughput::Elements(SOCKETS as u64));
    g.bench_function(format!("{SOCKETS}_sockets_96B"), |b| {
        b.iter(|| {
            let mut written = 0;
            for s in &mut senders {
                if let Ok(n) = s.write(&frame) {
                    written += n;
                }
            }
            black_box(written)
        })
    });
    g.finish();
    stop.store(true, Ordering::Relaxed);
    drain.join().unwrap();
}

criterion_group!(benches, plan, write);
criterion_main!(benches);
