//! The client against fake servers: a `TcpListener` on loopback in a thread that
//! speaks frames with [`Msg::to_frame`], so these tests pin the client's behaviour
//! without depending on the real server. Every blocking call is bounded.

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::*;
use crate::frame::{FrameError, FrameHeader};
use crate::protocol::messages::{
    Accepted, Assigned, Claim, Close, Deliver, Hello, History, HistoryPage, Notice, Ping, Suggest,
    Suggestions, Welcome, flags,
};

/// Bound on any single wait in these tests.
const WAIT: Duration = Duration::from_secs(5);
/// Empty `recv`s (each waiting tens of milliseconds) after which a test calls the
/// client stuck: a hang guard, not a bound on how long the machine may take.
const GIVE_UP_POLLS: u32 = 2_000;

/// The fake server's side of one connection.
struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
enum Got {
    Frame(FrameHeader, Vec<u8>),
    Eof,
    Timeout,
}

impl Peer {
    fn read(&mut self, wait: Duration) -> Got {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(d) = frame::decode(&self.buf, 1 << 24).expect("client sent bad framing") {
                let got = Got::Frame(d.header, d.payload.to_vec());
                let n = d.consumed;
                self.buf.drain(..n);
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Got::Timeout;
            }
            let mut chunk = [0u8; 4096];
            match super::read_within(&mut self.stream, &mut chunk, deadline) {
                Ok(Some(0)) | Err(_) => return Got::Eof,
                Ok(Some(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(None) => {}
            }
        }
    }

    fn frame(&mut self) -> (FrameHeader, Vec<u8>) {
        match self.read(WAIT) {
            Got::Frame(h, p) => (h, p),
            other => panic!("expected a frame from the client, got {other:?}"),
        }
    }

    fn msg(&mut self) -> (u32, Msg) {
        let (h, p) = self.frame();
        (
            h.request_id,
            Msg::decode(h.kind, &p).expect("client sent an invalid body"),
        )
    }

    fn send(&mut self, msg: impl Into<Msg>, request_id: u32) {
        self.raw(&msg.into().to_frame(request_id));
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads `Hello`, answers `welcome` with its request id, returns the `Hello`.
    fn handshake(&mut self, welcome: Welcome) -> Hello {
        let (rid, msg) = self.msg();
        let Msg::Hello(hello) = msg else {
            panic!("expected Hello, got {msg:?}")
        };
        self.send(welcome, rid);
        hello
    }

    /// Waits for the client to close (bounded).
    fn until_eof(&mut self) {
        loop {
            match self.read(WAIT) {
                Got::Frame(..) => {}
                Got::Eof => return,
                Got::Timeout => panic!("client never closed"),
            }
        }
    }
}

fn accept(listener: &TcpListener) -> Peer {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_nodelay(true).unwrap();
                stream.set_write_timeout(Some(WAIT)).unwrap();
                return Peer {
                    stream,
                    buf: Vec::new(),
                };
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("no client connected: {e}"),
        }
    }
}

/// Runs `script` as the server in a thread; returns the address to connect to.
fn serve<T: Send + 'static>(
    script: impl FnOnce(TcpListener) -> T + Send + 'static,
) -> (String, JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (addr, thread::spawn(move || script(listener)))
}

fn welcome() -> Welcome {
    Welcome {
        protocol: PROTOCOL_VERSION,
        role: messages::role::VISITOR,
        heartbeat_ms: 30_000,
        idle_timeout_ms: 90_000,
        max_frame: 1 << 20,
        session: 77,
        server_time_ms: 1_700_000_000_000,
        user: "v1".into(),
        name: "Vera".into(),
        ..Welcome::default()
    }
}

fn config(addr: &str) -> ClientConfig {
    ClientConfig {
        client_name: "test-app/1.0".into(),
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(2),
        close_timeout: Duration::from_secs(2),
        reconnect: ReconnectPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        },
        ..ClientConfig::new(addr, "tok.en.sig")
    }
}

fn deliver(conversation: u64, seq: u64, body: &str) -> Deliver {
    Deliver {
        sender_role: messages::role::AGENT,
        content_type: messages::content::TEXT,
        conversation,
        seq,
        sender: "a1".into(),
        body: body.into(),
        ..Deliver::default()
    }
}

fn notice(text: &str) -> Notice {
    Notice {
        text: text.into(),
        ..Notice::default()
    }
}

fn cursor(conversation: u64, last_seq: u64) -> Cursor {
    Cursor {
        conversation,
        last_seq,
    }
}

/// The next message the application sees; fails on timeout or error.
fn next(client: &mut Client) -> Incoming {
    match client.recv(WAIT) {
        Ok(Some(i)) => i,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn handshake_sends_token_name_and_cursors_and_keeps_the_welcome() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        let hello = peer.handshake(welcome());
        peer.until_eof();
        hello
    });
    let mut cfg = config(&addr);
    cfg.resume = vec![cursor(5, 3), cursor(2, 9)];
    let client = Client::connect(cfg).unwrap();
    assert_eq!(client.welcome(), &welcome());
    assert_eq!(client.heartbeat(), Duration::from_secs(30));
    assert_eq!(client.cursors(), vec![cursor(2, 9), cursor(5, 3)]);
    drop(client);
    let hello = server.join().unwrap();
    assert_eq!(
        hello,
        Hello {
            protocol: PROTOCOL_VERSION,
            token: "tok.en.sig".into(),
            client: "test-app/1.0".into(),
            resume: vec![cursor(2, 9), cursor(5, 3)],
        }
    );
}

#[test]
fn handshake_error_is_a_typed_server_error() {
    let (addr, server) = serve(|l| {
        // An archived Error body...
        let mut peer = accept(&l);
        let (rid, _) = peer.msg();
        peer.send(
            messages::Error {
                code: 200,
                retryable: false,
                conversation: 0,
                message: "bad signature".into(),
            },
            rid,
        );
        drop(peer);
        // ... and a header-only one.
        let mut peer = accept(&l);
        let (rid, _) = peer.msg();
        peer.raw(&frame::encode_status(Kind::Error.as_u8(), 201, rid));
    });
    let e = Client::connect(config(&addr)).unwrap_err();
    let ClientError::Server {
        code,
        name,
        message,
        retryable,
        closes,
        request_id,
        ..
    } = &e
    else {
        panic!("expected a server error, got {e:?}");
    };
    assert_eq!(
        (
            *code,
            *name,
            message.as_str(),
            *retryable,
            *closes,
            *request_id
        ),
        (200, "token_invalid", "bad signature", false, true, 1)
    );
    assert!(!e.is_retryable());
    let e = Client::connect(config(&addr)).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Server {
                code: 201,
                name: "token_expired",
                retryable: true,
                closes: true,
                ..
            }
        ),
        "{e:?}"
    );
    server.join().unwrap();
}

#[test]
fn handshake_rejects_silence_wrong_replies_and_garbage() {
    let (addr, server) = serve(|l| {
        // 1: never answers.
        let mut peer = accept(&l);
        peer.msg();
        peer.until_eof();
        // 2: Welcome under another request id.
        let mut peer = accept(&l);
        let (rid, _) = peer.msg();
        peer.send(welcome(), rid + 1);
        // 3: something other than Welcome.
        let mut peer = accept(&l);
        let (rid, _) = peer.msg();
        peer.send(notice("hi"), rid);
        // 4: not our protocol at all.
        let mut peer = accept(&l);
        peer.msg();
        peer.raw(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        // 5: another protocol version.
        let mut peer = accept(&l);
        peer.handshake(Welcome {
            protocol: 9,
            ..welcome()
        });
    });
    let mut cfg = config(&addr);
    cfg.handshake_timeout = Duration::from_millis(300);
    let start = Instant::now();
    let e = Client::connect(cfg.clone()).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(e, ClientError::Timeout), "{e:?}");
    // Not before the deadline; how long after depends on the machine's load (the
    // deadline logic is `now >= deadline`, checked where the clock is read).
    assert!(took >= Duration::from_millis(300), "{took:?}");
    for want in ["request id", "Notice", "bad magic", "protocol 9"] {
        match (want, Client::connect(cfg.clone())) {
            ("bad magic", Err(ClientError::Framing(FrameError::BadMagic))) => {}
            (want, Err(ClientError::Handshake(why))) if want != "bad magic" => {
                assert!(why.contains(want), "{why}")
            }
            (want, other) => panic!("expected a handshake error ({want}), got {other:?}"),
        }
    }
    server.join().unwrap();
}

#[test]
fn an_empty_welcome_from_a_framing_only_server_is_accepted() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        let (rid, _) = peer.msg();
        peer.raw(&frame::encode(
            FrameHeader::new(Kind::Welcome.as_u8(), 0, rid),
            b"",
        ));
        peer.until_eof();
    });
    let mut cfg = config(&addr);
    cfg.heartbeat = Duration::from_secs(7);
    let client = Client::connect(cfg).unwrap();
    assert_eq!(client.welcome(), &Welcome::default());
    assert_eq!(client.heartbeat(), Duration::from_secs(7));
    drop(client);
    server.join().unwrap();
}

#[test]
fn server_pings_are_answered_with_the_same_id_and_bytes_and_not_surfaced() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        peer.handshake(welcome());
        let ping = Msg::from(Ping {
            stamp: 77,
            data: b"load".to_vec(),
        })
        .to_frame(42);
        peer.raw(&ping);
        let (h, p) = peer.frame();
        assert_eq!((h.kind, h.request_id), (Kind::Pong.as_u8(), 42));
        assert_eq!(
            p,
            Msg::from(Ping {
                stamp: 77,
                data: b"load".to_vec(),
            })
            .to_payload()
            .to_vec()
        );
        peer.raw(&frame::encode(
            FrameHeader::new(Kind::Ping.as_u8(), 0, 43),
            b"",
        ));
        let (h, p) = peer.frame();
        assert_eq!((h.kind, h.request_id, p.len()), (Kind::Pong.as_u8(), 43, 0));
        peer.send(notice("after the pings"), 0);
        peer.until_eof();
    });
    let mut client = Client::connect(config(&addr)).unwrap();
    let got = next(&mut client);
    assert_eq!(got.msg, notice("after the pings").into());
    drop(client);
    server.join().unwrap();
}

#[test]
fn client_pings_when_it_has_been_quiet_for_the_heartbeat() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        peer.handshake(Welcome {
            heartbeat_ms: 100,
            ..welcome()
        });
        let mut gaps = Vec::new();
        let mut since = Instant::now();
        for _ in 0..2 {
            let (h, p) = peer.frame();
            gaps.push(since.elapsed());
            since = Instant::now();
            assert_eq!(h.kind, Kind::Ping.as_u8(), "expected a heartbeat Ping");
            assert!(matches!(Msg::decode(h.kind, &p), Ok(Msg::Ping(_))));
            peer.raw(&frame::encode(
                FrameHeader::new(Kind::Pong.as_u8(), 0, h.request_id),
                &p,
            ));
        }
        peer.send(notice("done"), 0);
        peer.until_eof();
        gaps
    });
    let mut client = Client::connect(config(&addr)).unwrap();
    assert_eq!(client.heartbeat(), Duration::from_millis(100));
    // Each empty recv waits 30 ms: this many add up to far more than the server needs.
    for attempt in 0.. {
        assert!(attempt < GIVE_UP_POLLS, "no notice");
        match client.recv(Duration::from_millis(30)).unwrap() {
            None => {}
            Some(i) => {
                assert_eq!(
                    i.msg,
                    notice("done").into(),
                    "heartbeat Pongs must be swallowed"
                );
                break;
            }
        }
    }
    drop(client);
    let gaps = server.join().unwrap();
    for gap in gaps {
        // When exactly a heartbeat is due is tested on a fake clock (liveness.rs);
        // here only that the client waits for the interval instead of spinning.
        assert!(gap >= Duration::from_millis(50), "heartbeat after {gap:?}");
    }
}

#[test]
fn requests_get_their_own_replies_and_interleaved_frames_are_queued_in_order() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        peer.handshake(welcome());
        let (suggest_id, m) = peer.msg();
        assert!(matches!(m, Msg::Suggest(_)), "{m:?}");
        let (history_id, m) = peer.msg();
        assert!(matches!(m, Msg::History(_)), "{m:?}");
        peer.send(notice("n1"), 0);
        peer.send(deliver(3, 1, "d1"), 0);
        peer.send(
            HistoryPage {
                conversation: 3,
                ..HistoryPage::default()
            },
            history_id,
        );
        peer.send(
            Suggestions {
                prefix: "thx".into(),
                items: Vec::new(),
            },
            suggest_id,
        );
        let (claim_id, m) = peer.msg();
        assert!(matches!(m, Msg::Claim(_)), "{m:?}");
        peer.send(
            messages::Error {
                code: 404,
                retryable: false,
                conversation: 9,
                message: "no such conversation".into(),
            },
            claim_id,
        );
        let (ping_id, m) = peer.msg();
        let Msg::Ping(p) = m else {
            panic!("expected Ping, got {m:?}")
        };
        peer.send(
            messages::Pong {
                stamp: p.stamp,
                data: p.data,
            },
            ping_id,
        );
        peer.until_eof();
        suggest_id
    });
    let mut client = Client::connect(config(&addr)).unwrap();
    let suggest_id = client
        .post(Suggest {
            limit: 3,
            faq: false,
            conversation: 3,
            prefix: "thx".into(),
        })
        .unwrap();
    let page = client
        .request(
            History {
                limit: 10,
                conversation: 3,
                before_seq: 0,
            },
            WAIT,
        )
        .unwrap();
    assert!(matches!(
        page,
        Msg::HistoryPage(HistoryPage {
            conversation: 3,
            ..
        })
    ));
    assert_eq!(
        next(&mut client),
        Incoming {
            request_id: 0,
            msg: notice("n1").into()
        }
    );
    assert_eq!(next(&mut client).msg, deliver(3, 1, "d1").into());
    let s = next(&mut client);
    assert_eq!(s.request_id, suggest_id);
    assert!(matches!(s.msg, Msg::Suggestions(_)));

    let e = client.request(Claim { conversation: 9 }, WAIT).unwrap_err();
    assert!(
        matches!(
            &e,
            ClientError::Server { code: 404, name: "not_found", closes: false, conversation: 9, message, .. }
                if message == "no such conversation"
        ),
        "{e:?}"
    );
    // A 4xx keeps the connection.
    client.ping(WAIT).unwrap();
    drop(client);
    assert_eq!(server.join().unwrap(), suggest_id);
}

#[test]
fn replayed_delivers_after_a_reconnect_are_dropped_and_cursors_are_resumed() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        let first = peer.handshake(welcome());
        peer.send(deliver(7, 1, "a"), 0);
        peer.send(deliver(7, 2, "b"), 0);
        peer.send(deliver(8, 1, "x"), 0);
        drop(peer);
        let mut peer = accept(&l);
        let second = peer.handshake(welcome());
        let replay = |mut d: Deliver| {
            d.flags |= flags::REPLAY;
            d
        };
        peer.send(replay(deliver(7, 2, "b")), 0);
        peer.send(replay(deliver(8, 1, "x")), 0);
        peer.send(deliver(7, 1, "old, not a replay"), 0);
        peer.send(deliver(7, 3, "c"), 0);
        peer.send(notice("end"), 0);
        peer.until_eof();
        (first, second)
    });
    let mut client = Client::connect(config(&addr)).unwrap();
    for (c, s) in [(7, 1), (7, 2), (8, 1)] {
        let Msg::Deliver(d) = next(&mut client).msg else {
            panic!("expected Deliver")
        };
        assert_eq!((d.conversation, d.seq), (c, s));
    }
    let e = client.recv(WAIT).unwrap_err();
    assert!(matches!(e, ClientError::Closed), "{e:?}");
    assert!(matches!(client.post(notice("x")), Err(ClientError::Closed)));
    assert_eq!(client.cursors(), vec![cursor(7, 2), cursor(8, 1)]);

    assert_eq!(client.reconnect().unwrap(), Vec::<u32>::new());
    let Msg::Deliver(d) = next(&mut client).msg else {
        panic!("expected Deliver")
    };
    assert_eq!((d.conversation, d.seq, d.body.as_str()), (7, 3, "c"));
    assert_eq!(next(&mut client).msg, notice("end").into());
    assert_eq!(client.cursors(), vec![cursor(7, 3), cursor(8, 1)]);
    drop(client);
    let (first, second) = server.join().unwrap();
    assert!(first.resume.is_empty());
    assert_eq!(second.resume, vec![cursor(7, 2), cursor(8, 1)]);
}

#[test]
fn garbage_after_the_handshake_is_a_typed_error_then_closed() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        peer.handshake(welcome());
        // A valid frame whose body is not a valid Deliver: the stream stays usable.
        peer.raw(&frame::encode(
            FrameHeader::new(Kind::Deliver.as_u8(), 0, 0),
            &[0xa5; 40],
        ));
        // A kind from the future is skipped.
        peer.raw(&frame::encode(FrameHeader::new(99, 0, 0), b"future"));
        peer.send(notice("still here"), 0);
        peer.raw(b"HTTP/1.1 200 OK\r\n\r\n");
        peer.until_eof();

        let mut peer = accept(&l);
        peer.handshake(welcome());
        // A header announcing more than the client's limit.
        peer.raw(&FrameHeader::new(Kind::Notice.as_u8(), u32::MAX, 0).to_bytes());
        peer.until_eof();
    });
    let mut client = Client::connect(config(&addr)).unwrap();
    let e = client.recv(WAIT).unwrap_err();
    assert!(matches!(e, ClientError::Decode(_)), "{e:?}");
    assert_eq!(next(&mut client).msg, notice("still here").into());
    let e = client.recv(WAIT).unwrap_err();
    assert!(
        matches!(e, ClientError::Framing(FrameError::BadMagic)),
        "{e:?}"
    );
    assert!(matches!(client.recv(WAIT), Err(ClientError::Closed)));
    assert!(matches!(client.ping(WAIT), Err(ClientError::Closed)));
    drop(client);

    let mut client = Client::connect(config(&addr)).unwrap();
    let e = client.recv(WAIT).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Framing(FrameError::TooLarge { len: u32::MAX, .. })
        ),
        "{e:?}"
    );
    drop(client);
    server.join().unwrap();
}

#[test]
fn random_server_bytes_never_panic_and_always_end() {
    const ROUNDS: u64 = 16;
    let (addr, server) = serve(|l| {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for round in 0..ROUNDS {
            let mut peer = accept(&l);
            peer.handshake(welcome());
            let mut out = Vec::new();
            for _ in 0..40 {
                let r = next();
                let len = (r >> 8) as usize % 64;
                let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if round % 2 == 0 || r % 5 != 0 {
                    // Well framed, random kind and body.
                    let kinds = [2u8, 3, 4, 5, 6, 17, 18, 19, 33, 49, 51, 52, 77];
                    let kind = kinds[(r % kinds.len() as u64) as usize];
                    let h = FrameHeader {
                        status: (r >> 40) as u16,
                        ..FrameHeader::new(kind, 0, (r >> 20) as u32 % 4)
                    };
                    out.extend_from_slice(&frame::encode(h, &body));
                } else {
                    out.extend_from_slice(&body);
                }
            }
            let _ = peer.stream.write_all(&out);
            drop(peer);
        }
    });
    for _ in 0..ROUNDS {
        let mut client = Client::connect(config(&addr)).unwrap();
        let mut closed = false;
        for _ in 0..400 {
            match client.recv(Duration::from_millis(500)) {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the server closed; the client must notice"),
                Err(ClientError::Closed) => {
                    closed = true;
                    break;
                }
                // Frames read before a failure are still handed out after it.
                Err(ClientError::Decode(_) | ClientError::Framing(_) | ClientError::Io(_)) => {}
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        assert!(closed, "never reported the end of the stream");
        assert!(matches!(client.recv(WAIT), Err(ClientError::Closed)));
    }
    server.join().unwrap();
}

#[test]
fn timeouts_are_bounded_and_late_replies_reach_recv() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        peer.handshake(welcome());
        let (rid, m) = peer.msg();
        assert!(matches!(m, Msg::History(_)), "{m:?}");
        thread::sleep(Duration::from_millis(400));
        peer.send(HistoryPage::default(), rid);
        peer.until_eof();
        rid
    });
    let mut client = Client::connect(config(&addr)).unwrap();
    let start = Instant::now();
    assert_eq!(client.recv(Duration::from_millis(100)).unwrap(), None);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");

    let start = Instant::now();
    let e = client
        .request(History::default(), Duration::from_millis(100))
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(e, ClientError::Timeout), "{e:?}");
    assert!(took >= Duration::from_millis(100), "{took:?}");
    let late = next(&mut client);
    assert!(matches!(late.msg, Msg::HistoryPage(_)));
    drop(client);
    assert_eq!(server.join().unwrap(), late.request_id);
}

#[test]
fn send_text_posts_a_send_and_invalid_messages_are_refused_unsent() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        peer.handshake(Welcome {
            max_frame: 4096,
            ..welcome()
        });
        let (rid, m) = peer.msg();
        let Msg::Send(s) = m else {
            panic!("expected Send, got {m:?}")
        };
        assert_eq!(
            (s.content_type, s.conversation, s.body.as_str()),
            (messages::content::TEXT, 0, "你好, I need help")
        );
        peer.send(
            Accepted {
                client_msg_id: s.client_msg_id,
                conversation: 12,
                seq: 1,
                time_ms: 5,
            },
            rid,
        );
        // Nothing invalid was sent in between.
        let (_, m) = peer.msg();
        assert!(matches!(&m, Msg::Send(s) if s.body == "ok"), "{m:?}");
        let (_, m) = peer.msg();
        assert!(matches!(m, Msg::Bye(_)), "{m:?}");
        (rid, s.client_msg_id)
    });
    let mut client = Client::connect(config(&addr)).unwrap();
    let id = client.send_text(0, "你好, I need help").unwrap();
    let got = next(&mut client);
    let Msg::Accepted(a) = &got.msg else {
        panic!("expected Accepted, got {got:?}")
    };
    assert_eq!((a.client_msg_id, a.conversation, a.seq), (id, 12, 1));

    let e = client.send_text(12, "").unwrap_err();
    assert!(
        matches!(&e, ClientError::Invalid(why) if why.contains("body")),
        "{e:?}"
    );
    let e = client.send_text(12, &"x".repeat(5000)).unwrap_err();
    assert!(
        matches!(&e, ClientError::Invalid(why) if why.contains("4096")),
        "{e:?}"
    );
    assert!(client.send_text(12, "ok").unwrap() > id);
    client.close().unwrap();
    let (rid, sent_id) = server.join().unwrap();
    assert_eq!((got.request_id, sent_id), (rid, id));
}

#[test]
fn bye_from_the_server_ends_the_session_and_later_frames_are_ignored() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        peer.handshake(welcome());
        peer.raw(&frame::encode_status(Kind::Bye.as_u8(), 501, 0));
        peer.send(notice("after bye: must be ignored"), 0);
        thread::sleep(Duration::from_millis(50));
        drop(peer);

        let mut peer = accept(&l);
        peer.handshake(welcome());
        let (rid, _) = peer.msg();
        peer.send(notice("queued before the bye"), 0);
        peer.raw(&frame::encode_status(Kind::Bye.as_u8(), 501, 0));
        drop(peer);
        rid
    });
    let mut client = Client::connect(config(&addr)).unwrap();
    let got = next(&mut client);
    assert_eq!(
        got.msg,
        messages::Bye {
            code: 501,
            message: String::new()
        }
        .into()
    );
    assert!(matches!(client.post(notice("x")), Err(ClientError::Closed)));
    assert!(matches!(client.recv(WAIT), Err(ClientError::Closed)));

    let mut client = Client::connect(config(&addr)).unwrap();
    let e = client.request(History::default(), WAIT).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Server {
                code: 501,
                name: "shutting_down",
                retryable: true,
                closes: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        next(&mut client).msg,
        notice("queued before the bye").into()
    );
    assert!(matches!(client.recv(WAIT), Err(ClientError::Closed)));
    server.join().unwrap();
}

#[test]
fn reconnect_reports_lost_requests_stops_on_fatal_errors_and_gives_up_when_bounded() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        peer.handshake(welcome());
        let (send_id, _) = peer.msg(); // never answered
        peer.raw(&frame::encode_status(Kind::Bye.as_u8(), 501, 0));
        drop(peer);

        let mut peer = accept(&l);
        let (rid, _) = peer.msg();
        peer.raw(&frame::encode_status(Kind::Error.as_u8(), 200, rid));
        drop(peer);

        let mut peer = accept(&l);
        let hello = peer.handshake(welcome());
        drop(peer);
        drop(l);
        (send_id, hello.token)
    });
    let mut client = Client::connect(config(&addr)).unwrap();
    client.send_text(4, "lost?").unwrap();
    assert!(matches!(next(&mut client).msg, Msg::Bye(_)));

    let start = Instant::now();
    let e = client.reconnect().unwrap_err();
    assert!(matches!(e, ClientError::Server { code: 200, .. }), "{e:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(5),
        "backs off after a Bye"
    );
    assert!(matches!(client.recv(WAIT), Err(ClientError::Closed)));

    client.set_token("fresh");
    let lost = client.reconnect().unwrap();
    assert!(matches!(client.recv(WAIT), Err(ClientError::Closed)));
    let (send_id, token) = server.join().unwrap();
    assert_eq!(lost, vec![send_id]);
    assert_eq!(token, "fresh");

    let e = client.reconnect().unwrap_err();
    assert!(
        matches!(&e, ClientError::ReconnectFailed { attempts: 3, last } if last.is_retryable()),
        "{e:?}"
    );
}

#[test]
fn close_sends_bye_and_waits_for_the_end_of_stream() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        peer.handshake(welcome());
        let (_, m) = peer.msg();
        peer.send(notice("discarded by close"), 0);
        drop(peer);
        let mut peer = accept(&l);
        peer.handshake(welcome());
        let (_, m2) = peer.msg();
        peer.until_eof(); // never closes first: the client gives up after close_timeout
        (m, m2)
    });
    Client::connect(config(&addr)).unwrap().close().unwrap();
    let mut cfg = config(&addr);
    cfg.close_timeout = Duration::from_millis(200);
    let e = Client::connect(cfg).unwrap().close().unwrap_err();
    assert!(matches!(e, ClientError::Timeout), "{e:?}");
    let (m, m2) = server.join().unwrap();
    assert!(matches!(m, Msg::Bye(_)) && matches!(m2, Msg::Bye(_)));
}

#[test]
fn assigned_and_close_events_count_as_seen_and_their_replays_are_dropped() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        peer.handshake(welcome());
        peer.send(deliver(9, 1, "hi"), 0);
        peer.send(
            Assigned {
                conversation: 9,
                seq: 2,
                agent: "a1".into(),
                ..Assigned::default()
            },
            0,
        );
        peer.send(
            Close {
                conversation: 9,
                seq: 3,
                reason: "solved".into(),
            },
            0,
        );
        // Replays of events 2 and 3 (as Deliver), then something new.
        peer.send(deliver(9, 2, "assigned"), 0);
        peer.send(deliver(9, 3, "closed"), 0);
        peer.send(notice("end"), 0);
        peer.until_eof();
    });
    let mut client = Client::connect(config(&addr)).unwrap();
    let kinds: Vec<Kind> = (0..4).map(|_| next(&mut client).msg.kind()).collect();
    assert_eq!(
        kinds,
        [Kind::Deliver, Kind::Assigned, Kind::Close, Kind::Notice]
    );
    assert_eq!(client.cursors(), vec![cursor(9, 3)]);
    drop(client);
    server.join().unwrap();
}

#[test]
fn a_server_silent_after_a_heartbeat_is_given_up_as_dead() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        peer.handshake(Welcome {
            heartbeat_ms: 100,
            idle_timeout_ms: 200,
            ..welcome()
        });
        // Reads the heartbeats but never answers anything.
        let mut pings = 0;
        loop {
            match peer.read(WAIT) {
                Got::Frame(h, _) => {
                    assert_eq!(h.kind, Kind::Ping.as_u8());
                    pings += 1;
                }
                Got::Eof => return pings,
                Got::Timeout => panic!("client never gave up"),
            }
        }
    });
    let mut client = Client::connect(config(&addr)).unwrap();
    let start = Instant::now();
    let mut polls = 0;
    let e = loop {
        match client.recv(Duration::from_millis(50)) {
            Ok(None) => {
                polls += 1;
                assert!(polls < GIVE_UP_POLLS, "never gave up");
            }
            Ok(Some(i)) => panic!("nothing was sent, got {i:?}"),
            Err(e) => break e,
        }
    };
    let took = start.elapsed();
    assert!(
        matches!(e, ClientError::Unresponsive(d) if d == Duration::from_millis(300)),
        "{e:?}"
    );
    assert!(e.is_retryable());
    // First heartbeat at 100 ms, dead 300 ms later (to the millisecond in
    // liveness.rs; here no earlier, however loaded the machine).
    assert!(took >= Duration::from_millis(350), "{took:?}");
    assert!(matches!(client.recv(WAIT), Err(ClientError::Closed)));
    let pings = server.join().unwrap();
    assert!((1..=4).contains(&pings), "{pings} heartbeats");
}

#[test]
fn refresh_returns_the_new_expiry_and_keeps_the_token_for_reconnects() {
    let (addr, server) = serve(|l| {
        let mut peer = accept(&l);
        peer.handshake(welcome());
        // Accepted: `Refreshed` with its request id.
        let (rid, msg) = peer.msg();
        let Msg::Refresh(first) = msg else {
            panic!("expected Refresh, got {msg:?}")
        };
        peer.send(
            messages::Refreshed {
                expires_ms: 4_102_444_800_000,
            },
            rid,
        );
        // Refused: a closing 203 with its request id.
        let (rid, msg) = peer.msg();
        assert!(matches!(msg, Msg::Refresh(_)), "{msg:?}");
        peer.send(
            messages::Error {
                code: 203,
                retryable: false,
                conversation: 0,
                message: "bad_claims".into(),
            },
            rid,
        );
        drop(peer);
        // The reconnect presents the accepted token, not the refused one.
        let mut peer = accept(&l);
        let hello = peer.handshake(welcome());
        // The session ends at its token's exp: 201, request id 0.
        peer.send(
            messages::Error {
                code: 201,
                retryable: true,
                conversation: 0,
                message: "token_expired".into(),
            },
            0,
        );
        drop(peer);
        (first.token, hello.token)
    });
    let mut client = Client::connect(config(&addr)).unwrap();
    assert_eq!(
        client.refresh("fresh.tok.en", WAIT).unwrap(),
        4_102_444_800_000
    );
    // Over MAX_TOKEN: refused here, nothing sent.
    let e = client
        .refresh("t".repeat(messages::MAX_TOKEN + 1), WAIT)
        .unwrap_err();
    assert!(matches!(e, ClientError::Invalid(_)), "{e:?}");
    let e = client.refresh("someone.else's.token", WAIT).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Server {
                code: 203,
                closes: true,
                retryable: false,
                ..
            }
        ),
        "{e:?}"
    );
    client.reconnect().unwrap();
    let got = next(&mut client);
    assert!(
        matches!(&got.msg, Msg::Error(e) if e.code == 201 && e.retryable),
        "{got:?}"
    );
    assert_eq!(got.request_id, 0);
    assert!(matches!(client.recv(WAIT), Err(ClientError::Closed)));
    let (refreshed, reconnected) = server.join().unwrap();
    assert_eq!(refreshed, "fresh.tok.en");
    assert_eq!(reconnected, "fresh.tok.en");
}
