//! The io_uring backend's registered file table (`reactor.uring_fixed_files`, issue
//! 22): connections inside the table and past it both echo and close (the table's
//! reference must not keep a closed socket open), a slot's next connection replaces
//! the entry, and connections past the table are counted in `uring_unfixed_total`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use switchboard::config::Backend;

use crate::util::{self, TestServer, wait_until};

/// Echoes `msg` on `s` and reads it back whole.
fn echo(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

/// Half-closes `s` and expects the daemon to close it in turn (EOF, not a timeout).
fn closes(mut s: TcpStream) {
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("the daemon closes the socket (EOF, not a read timeout)");
    assert!(rest.is_empty());
}

#[test]
fn connections_in_and_past_the_table_echo_and_close() {
    let server = TestServer::start(|c| {
        util::with_echo(c);
        c.reactor.backend = Backend::Uring;
        c.reactor.threads = 1;
        c.reactor.uring_fixed_files = 2;
    });
    let unfixed = || server.metrics().reactor_sum(|r| r.uring_unfixed.get());
    for round in 0..3u8 {
        let mut conns: Vec<TcpStream> = (0..5)
            .map(|_| {
                let s = TcpStream::connect(server.echo_addr()).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s
            })
            .collect();
        for (i, s) in conns.iter_mut().enumerate() {
            echo(s, format!("round {round}, connection {i}").as_bytes());
        }
        // Slots 0 and 1 are in the table; at least the other three are not.
        let past = 3 * (u64::from(round) + 1);
        assert!(
            wait_until(Duration::from_secs(10), || unfixed() >= past),
            "round {round}: {} connections counted past the table, want >= {past}",
            unfixed()
        );
        for s in conns {
            closes(s);
        }
        // Every slot is free again before the next round reuses them.
        assert!(wait_until(Duration::from_secs(10), || {
            server.metrics().reactor_sum(|r| r.open.get()) == 0
        }));
    }
    assert!(unfixed() <= 15, "{} past a table of 2", unfixed());
}
