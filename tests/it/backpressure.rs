//! Output that a client does not read is bounded: a client that floods `Ping`s with
//! large payloads and never reads its `Pong`s is cut off as a slow consumer once its
//! queued output passes `limits.max_pending_bytes`, while a neighbour's round trips go
//! on undisturbed throughout. And backpressure on the raw echo listener (reading pauses
//! while output is queued) loses and reorders nothing: 8 MiB of pseudo-random bytes come
//! back exactly.

use crate::util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::util::{Client, TestServer, encode, kind};
use switchboard::handoff::CloseReason;
use switchboard::protocol::ErrorCode;

#[test]
fn flooding_client_that_never_reads_is_cut_off_while_neighbour_keeps_going() {
    const PAYLOAD: usize = 32 * 1024;
    const MAX_PINGS: u32 = 4000; // 128 MiB: far beyond any kernel buffering.
    let server = TestServer::start(|c| {
        c.limits.max_pending_bytes = 8192;
        c.limits.max_frame_bytes = 64 * 1024;
        c.reactor.read_buffer_bytes = 8192;
        c.workers.queue_bytes = 1 << 20;
    });
    // Cut either for its unread replies (302) or, when it outruns the worker, for
    // the frames piling up in the worker's queue (500): both bound its memory.
    let slow_consumer = || {
        let m = server.metrics();
        m.closed_for(CloseReason::Error(ErrorCode::SlowConsumer))
            + m.closed_for(CloseReason::Error(ErrorCode::ServerBusy))
    };
    let mut neighbour = Client::established(server.addr());
    let mut flooder = Client::established(server.addr());
    let mut writer_sock = flooder.stream().try_clone().unwrap();
    writer_sock
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut rng = util::Rng::new(7);
            let payload = rng.bytes(PAYLOAD);
            for rid in 0..MAX_PINGS {
                if let Err(e) = writer_sock.write_all(&encode(kind::PING, rid, &payload)) {
                    done.store(true, Ordering::SeqCst);
                    return Err((rid, e));
                }
            }
            done.store(true, Ordering::SeqCst);
            Ok(MAX_PINGS)
        })
    };

    // The neighbour does round trips during the whole episode, each answered (within
    // the client's reply timeout). How fast is a figure for a quiet machine: the
    // `slow_readers` bench measures the neighbour's latency.
    let start = Instant::now();
    let mut rid = 0u32;
    let mut after_cut = 0;
    while after_cut < 20 && start.elapsed() < Duration::from_secs(15) {
        rid += 1;
        neighbour.ping(rid, &rid.to_le_bytes());
        if slow_consumer() >= 1 && done.load(Ordering::SeqCst) {
            after_cut += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let outcome = writer.join().unwrap();
    assert!(
        slow_consumer() >= 1,
        "flooder never cut off; writer: {outcome:?}"
    );
    match outcome {
        Err((_, e)) => assert!(
            matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
            ),
            "flooder's writes should fail because the server closed it, got {e:?}"
        ),
        Ok(n) => panic!("all {n} flooding pings were accepted"),
    }
    assert!(rid >= 20, "neighbour only did {rid} round trips");
    // The flooder's socket ends with a reset or EOF, never with a frame not its own:
    // its Pongs, then possibly the Error saying why it was cut.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match flooder.try_read_frame(Duration::from_secs(5)) {
            util::Read1::Frame(f) if f.header.kind == kind::ERROR => {
                assert!([302, 500].contains(&f.header.status), "{f:?}");
            }
            util::Read1::Frame(f) => assert_eq!(f.header.kind, kind::PONG, "{f:?}"),
            util::Read1::Eof | util::Read1::Failed(_) => break,
            util::Read1::Timeout => panic!("flooder's connection still open"),
        }
        assert!(Instant::now() < deadline, "flooder's connection still open");
    }
    neighbour.ping(u32::MAX, b"last");
    assert_eq!(server.metrics().open_connections(), 1);
}

/// Pushes `total` pseudo-random bytes through the echo listener in random-sized writes
/// from one thread while this thread reads (starting late, so output piles up and
/// reading pauses), and compares.
fn echo_round_trip(server: &TestServer, total: usize, read_delay: Duration) {
    let data = Arc::new(util::Rng::new(0xec40).bytes(total));
    let mut sock = TcpStream::connect(server.echo_addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut wsock = sock.try_clone().unwrap();
    wsock
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || {
            let mut rng = util::Rng::new(99);
            let mut at = 0;
            while at < data.len() {
                let n = (1 + rng.next_u64() % 100_000) as usize;
                let end = (at + n).min(data.len());
                wsock.write_all(&data[at..end])?;
                at = end;
            }
            Ok::<_, std::io::Error>(())
        })
    };
    std::thread::sleep(read_delay);
    let mut got = vec![0u8; total];
    let mut at = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while at < total {
        assert!(Instant::now() < deadline, "echo too slow: {at} of {total}");
        match sock.read(&mut got[at..]) {
            Ok(0) => panic!("echo closed after {at} of {total} bytes"),
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("echo read failed after {at} of {total} bytes: {e}"),
        }
    }
    writer.join().unwrap().unwrap();
    if let Some(i) = (0..total).find(|&i| got[i] != data[i]) {
        panic!("echo differs first at byte {i} of {total}");
    }
    // Nothing extra either.
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    sock.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{} extra bytes echoed", rest.len());
}

#[test]
fn echo_backpressure_loses_nothing_over_8_mib() {
    // Pending bound above two read buffers, so pausing (not cutting) is what happens.
    let server = TestServer::start(|c| {
        util::with_echo(c);
        c.limits.max_pending_bytes = 256 * 1024;
    });
    echo_round_trip(&server, 8 << 20, Duration::from_millis(300));
    let m = server.metrics();
    assert!(
        m.reactor_sum(|r| r.read_pauses.get()) >= 1,
        "output never piled up enough to pause reading; the test proves nothing"
    );
    assert_eq!(m.closed_for(CloseReason::Error(ErrorCode::SlowConsumer)), 0);
}

#[test]
fn echo_with_default_limits_loses_nothing_over_8_mib() {
    let server = TestServer::start(util::with_echo);
    echo_round_trip(&server, 8 << 20, Duration::ZERO);
}
