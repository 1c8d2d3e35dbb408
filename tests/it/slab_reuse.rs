//! Slab slots are reused constantly, and a reused slot must never receive traffic meant
//! for its previous occupant. Many rapid cycles of connect / `Hello` / `Ping` with a
//! payload unique to the connection / close (often closing right after the `Ping`, so
//! the worker's `Pong` arrives for a connection that is gone and whose slot may already
//! be taken), interleaved with long-lived connections doing the same: every frame a
//! connection reads is its own, and the first frame a new connection reads is its
//! `Welcome`.

use crate::util;

use std::time::Duration;

use crate::util::{Client, Frame, REPLY_TIMEOUT, TestServer, kind};

/// A payload naming the connection (`who`) and the request, of varying length.
fn payload(who: u64, rid: u32) -> Vec<u8> {
    let mut p = format!("conn {who} req {rid} ").into_bytes();
    p.resize(p.len() + (who as usize * 7 + rid as usize) % 40, b'.');
    p
}

fn check_pong(f: &Frame, who: u64, rid: u32) {
    assert_eq!(
        f.ksr(),
        (kind::PONG, 0, rid),
        "conn {who}: expected its pong {rid}, got {f:?} (payload {:?})",
        String::from_utf8_lossy(&f.payload)
    );
    assert_eq!(
        f.payload,
        payload(who, rid),
        "conn {who} got someone else's pong: {:?}",
        String::from_utf8_lossy(&f.payload)
    );
}

/// One short-lived connection; how it ends depends on `who`.
fn cycle(addr: std::net::SocketAddr, who: u64) {
    let mut c = Client::connect(addr);
    match who % 5 {
        // Close right after connecting.
        0 => return,
        // Hello and close without reading the Welcome.
        1 => {
            c.send(kind::HELLO, 1, b"");
            return;
        }
        _ => {}
    }
    c.send(kind::HELLO, 1, b"");
    let w = c.read_frame(REPLY_TIMEOUT);
    assert_eq!(
        w.ksr(),
        (kind::WELCOME, 0, 1),
        "conn {who}: first frame must be its Welcome, got {w:?} (payload {:?})",
        String::from_utf8_lossy(&w.payload)
    );
    match who % 5 {
        // Ping and close at once, without reading: the pong is in flight to a
        // connection that is gone.
        2 => c.send(kind::PING, 2, &payload(who, 2)),
        // Several pings, read only the first.
        3 => {
            for rid in 2..6 {
                c.send(kind::PING, rid, &payload(who, rid));
            }
            check_pong(&c.read_frame(REPLY_TIMEOUT), who, 2);
        }
        // Full round trips, then make sure nothing else is waiting.
        _ => {
            for rid in 2..5 {
                c.send(kind::PING, rid, &payload(who, rid));
                check_pong(&c.read_frame(REPLY_TIMEOUT), who, rid);
            }
        }
    }
}

#[test]
fn reused_slots_never_receive_a_previous_occupants_frames() {
    const THREADS: u64 = 3;
    const CYCLES: u64 = 400;
    const LIVE: u64 = 4;
    let server = TestServer::start(|_| {});
    let addr = server.addr();

    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                // Long-lived neighbours on this thread, pinging between cycles.
                let mut live: Vec<(u64, Client, u32)> = (0..LIVE)
                    .map(|i| {
                        let who = 1_000_000 + t * 100 + i;
                        (who, Client::established(addr), 10)
                    })
                    .collect();
                for n in 0..CYCLES {
                    cycle(addr, t * 10_000 + n);
                    let (who, c, rid) = &mut live[(n % LIVE) as usize];
                    *rid += 1;
                    c.send(kind::PING, *rid, &payload(*who, *rid));
                    check_pong(&c.read_frame(REPLY_TIMEOUT), *who, *rid);
                }
                // A last check that no stray frame is queued for any live connection.
                for (who, c, rid) in &mut live {
                    *rid += 1;
                    c.send(kind::PING, *rid, &payload(*who, *rid));
                    check_pong(&c.read_frame(REPLY_TIMEOUT), *who, *rid);
                    c.expect_nothing_more();
                }
                live
            })
        })
        .collect();
    // Keep the live connections open until the end.
    let live: Vec<_> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let live = live.len();

    // Every connection was accepted, and every short-lived one released: only the
    // live ones hold slots.
    let m = server.metrics();
    let want_accepted = THREADS * (CYCLES + LIVE);
    let settled = util::wait_until(Duration::from_secs(3), || {
        m.reactor_sum(|r| r.accepted.get()) == want_accepted && m.open_connections() == live as u64
    });
    assert!(
        settled,
        "accepted {} (expected {want_accepted}), open {} (expected {live})",
        m.reactor_sum(|r| r.accepted.get()),
        m.open_connections()
    );
}

#[test]
fn a_new_connection_sees_only_its_own_replies_after_many_abandoned_pings() {
    // Single-threaded and tight: each abandoned connection leaves pongs in flight and
    // the next connection very likely reuses its slot at once.
    let server = TestServer::start(|c| c.reactor.threads = 1);
    for who in 0..300u64 {
        let mut c = Client::connect(server.addr());
        c.send(kind::HELLO, 1, b"");
        assert_eq!(c.read_frame(REPLY_TIMEOUT).ksr(), (kind::WELCOME, 0, 1));
        check_pong(
            &{
                c.send(kind::PING, 7, &payload(who, 7));
                c.read_frame(REPLY_TIMEOUT)
            },
            who,
            7,
        );
        // Abandon it with more pongs on the way.
        for rid in 8..12 {
            c.send(kind::PING, rid, &payload(who, rid));
        }
    }
    let mut last = Client::established(server.addr());
    last.ping(1, b"mine");
    last.expect_nothing_more();
}
