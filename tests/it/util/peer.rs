//! Scenario helpers for the conversation service: an SDK client ([`Peer`]) that
//! remembers everything it received and lets a test wait for one kind of message
//! while the others stay queued, plus a non-deduplicating [`RawPeer`] that sees every
//! frame exactly as the server sent it.
//!
//! Every wait has a timeout; a timeout panics with what did arrive, so a failing
//! scenario says what the server sent instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchboard::client::{Client, ClientConfig, ClientError, Incoming};
use switchboard::protocol::messages::{self, Msg};

use super::{REPLY_TIMEOUT, TestServer};

/// A server for service scenarios: [`super::test_config`] with heartbeats relaxed so
/// clients that a test reads only now and then are not closed as idle, then `tweak`.
pub fn service_server(tweak: impl FnOnce(&mut switchboard::Config)) -> TestServer {
    TestServer::start(|c| {
        c.heartbeat.interval = Duration::from_secs(10);
        c.heartbeat.idle_timeout = Duration::from_secs(60);
        tweak(c);
    })
}

/// A conversation id nobody will ever be given (ids count up from 1).
pub const NO_SUCH_CONVERSATION: u64 = u64::MAX - 7;

/// One SDK connection of a user, with a log of everything it received.
pub struct Peer {
    /// Label used in failure messages.
    pub name: String,
    client: Client,
    /// Received and not yet taken by a `wait_*`/`take_*` call, in arrival order.
    pending: VecDeque<Incoming>,
    /// Everything received on this connection, in arrival order.
    pub log: Vec<Incoming>,
}

impl Peer {
    /// Connects with `token` and waits until the router has registered the
    /// connection (see [`Peer::router_barrier`]), so that whatever happens next in
    /// the test already counts this connection.
    pub fn connect(addr: SocketAddr, token: &str, name: &str) -> Peer {
        let config = ClientConfig {
            client_name: format!("scenario/{name}"),
            connect_timeout: REPLY_TIMEOUT,
            handshake_timeout: REPLY_TIMEOUT,
            ..ClientConfig::new(addr.to_string(), token)
        };
        let client =
            Client::connect(config).unwrap_or_else(|e| panic!("{name}: connect failed: {e}"));
        let mut peer = Peer {
            name: name.to_owned(),
            client,
            pending: VecDeque::new(),
            log: Vec::new(),
        };
        peer.router_barrier();
        peer
    }

    /// Sends without waiting; returns the request id.
    pub fn post(&mut self, msg: impl Into<Msg>) -> u32 {
        let msg = msg.into();
        let kind = msg.kind();
        self.client
            .post(msg)
            .unwrap_or_else(|e| panic!("{}: posting {kind:?} failed: {e}", self.name))
    }

    /// Sends and waits for the reply (an `Error` reply is `Err`). Frames arriving
    /// meanwhile reach the log on the next read.
    pub fn request(&mut self, msg: impl Into<Msg>) -> Result<Msg, ClientError> {
        self.client.request(msg, REPLY_TIMEOUT)
    }

    /// A text `Send` to `conversation` (0 opens one) with an explicit message id.
    pub fn send_with_id(&mut self, conversation: u64, client_msg_id: u64, body: &str) -> u32 {
        self.post(text(conversation, client_msg_id, body))
    }

    /// A text `Send` answered by `Accepted`; panics on anything else.
    pub fn send_accepted(
        &mut self,
        conversation: u64,
        client_msg_id: u64,
        body: &str,
    ) -> messages::Accepted {
        let rid = self.send_with_id(conversation, client_msg_id, body);
        self.reply_to(rid, |m| match m {
            Msg::Accepted(a) => Some(a.clone()),
            _ => None,
        })
    }

    /// Reads one frame into the log and `pending`; false when none came by `deadline`.
    fn pull(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.client.recv(left) {
            Ok(Some(incoming)) => {
                self.log.push(incoming.clone());
                self.pending.push_back(incoming);
                true
            }
            Ok(None) => false,
            Err(e) => panic!(
                "{}: connection failed while reading: {e}; pending: {}",
                self.name,
                summary(&self.pending)
            ),
        }
    }

    /// Takes the first message (already pending or arriving within `timeout`) for
    /// which `pick` returns `Some`; the others stay pending. Panics on timeout.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&Incoming) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut scanned = 0;
        loop {
            while scanned < self.pending.len() {
                if let Some(t) = self.pending.get(scanned).and_then(&mut pick) {
                    self.pending.remove(scanned);
                    return t;
                }
                scanned += 1;
            }
            if !self.pull(deadline) {
                panic!(
                    "{}: no {what} within {timeout:?}; received meanwhile: {}",
                    self.name,
                    summary(&self.pending)
                );
            }
        }
    }

    /// Waits for an unsolicited message (request id 0) matching `pick`.
    pub fn wait_event<T>(&mut self, what: &str, mut pick: impl FnMut(&Msg) -> Option<T>) -> T {
        self.wait_for(what, REPLY_TIMEOUT, |i| {
            if i.request_id == 0 {
                pick(&i.msg)
            } else {
                None
            }
        })
    }

    /// Waits for the reply to request `rid` and maps it with `pick`; panics when the
    /// reply is something else (e.g. an `Error`).
    pub fn reply_to<T>(&mut self, rid: u32, pick: impl FnOnce(&Msg) -> Option<T>) -> T {
        let name = self.name.clone();
        let msg = self.wait_for(&format!("reply to request {rid}"), REPLY_TIMEOUT, |i| {
            (i.request_id == rid).then(|| i.msg.clone())
        });
        pick(&msg).unwrap_or_else(|| panic!("{name}: unexpected reply to request {rid}: {msg:?}"))
    }

    /// Waits for the `Error` answering request `rid` and checks its code; returns it.
    pub fn expect_error(&mut self, rid: u32, code: u16) -> messages::Error {
        let name = self.name.clone();
        let e = self.reply_to(rid, |m| match m {
            Msg::Error(e) => Some(e.clone()),
            _ => None,
        });
        assert_eq!(e.code, code, "{name}: request {rid} answered {e:?}");
        e
    }

    /// Reads whatever arrives within `window` into `pending` (and the log); at
    /// least what the socket already holds (a window of zero still reads for 5 ms).
    pub fn settle(&mut self, window: Duration) {
        let deadline = Instant::now() + window.max(Duration::from_millis(5));
        while self.pull(deadline) {}
    }

    /// Checks that nothing matching `bad` is pending or arrives within `window`.
    pub fn expect_none(&mut self, what: &str, window: Duration, mut bad: impl FnMut(&Msg) -> bool) {
        self.settle(window);
        let found: Vec<&Incoming> = self.pending.iter().filter(|i| bad(&i.msg)).collect();
        assert!(
            found.is_empty(),
            "{}: expected no {what}, got {found:?}",
            self.name
        );
    }

    /// Checks that request `rid` gets no answer (pending or within `window`): the
    /// requests that have no success reply succeeded.
    pub fn no_reply(&mut self, rid: u32, window: Duration) {
        self.settle(window);
        let answers: Vec<&Incoming> = self.log.iter().filter(|i| i.request_id == rid).collect();
        assert!(
            answers.is_empty(),
            "{}: request {rid} was answered: {answers:?}",
            self.name
        );
    }

    /// Every message in the log that `pick` maps to `Some`, in arrival order.
    pub fn logged<T>(&self, mut pick: impl FnMut(&Msg) -> Option<T>) -> Vec<T> {
        self.log.iter().filter_map(|i| pick(&i.msg)).collect()
    }

    /// Waits until the router has handled everything this connection sent before:
    /// a `Claim` of a conversation that does not exist goes to the router like
    /// `Claim`, `Presence`, `Notice` and opening `Send`s, and is answered 404 after
    /// them (for any role).
    pub fn router_barrier(&mut self) {
        let rid = self.post(messages::Claim {
            conversation: NO_SUCH_CONVERSATION,
        });
        self.expect_error(rid, 404);
    }

    /// Waits until the shard owning `conversation` has handled everything sent to it
    /// before this call, whether or not this connection may read the conversation:
    /// the shard answers `History` itself (a page or an error), after anything it
    /// sent this connection earlier.
    pub fn shard_barrier(&mut self, conversation: u64) {
        let rid = self.post(messages::History {
            limit: 1,
            conversation,
            before_seq: 0,
        });
        self.wait_for(&format!("an answer to History {rid}"), REPLY_TIMEOUT, |i| {
            (i.request_id == rid).then_some(())
        });
    }

    /// Waits until the shard owning `conversation` has handled everything this
    /// connection sent it before, and returns the transcript's latest page (the
    /// caller must be allowed to read it).
    pub fn history(&mut self, conversation: u64) -> messages::HistoryPage {
        let rid = self.post(messages::History {
            limit: 1000,
            conversation,
            before_seq: 0,
        });
        self.reply_to(rid, |m| match m {
            Msg::HistoryPage(p) => Some(p.clone()),
            _ => None,
        })
    }

    /// One ping round trip: the connection is open and served.
    pub fn ping(&mut self) {
        if let Err(e) = self.client.ping(REPLY_TIMEOUT) {
            panic!("{}: ping failed: {e}", self.name);
        }
    }

    /// Waits for `Assigned` of `conversation`.
    pub fn assigned(&mut self, conversation: u64) -> messages::Assigned {
        self.wait_event(&format!("Assigned of {conversation}"), |m| match m {
            Msg::Assigned(a) if a.conversation == conversation => Some(a.clone()),
            _ => None,
        })
    }

    /// Waits for any `Assigned`.
    pub fn any_assigned(&mut self) -> messages::Assigned {
        self.wait_event("Assigned", |m| match m {
            Msg::Assigned(a) => Some(a.clone()),
            _ => None,
        })
    }

    /// Waits for a `Queued` of `conversation` with `position`.
    pub fn queued_at(&mut self, conversation: u64, position: u32) -> messages::Queued {
        self.wait_event(
            &format!("Queued of {conversation} at {position}"),
            |m| match m {
                Msg::Queued(q) if q.conversation == conversation && q.position == position => {
                    Some(q.clone())
                }
                _ => None,
            },
        )
    }

    /// Waits for a `Deliver` in `conversation`.
    pub fn deliver(&mut self, conversation: u64) -> messages::Deliver {
        self.wait_event(&format!("Deliver in {conversation}"), |m| match m {
            Msg::Deliver(d) if d.conversation == conversation => Some(d.clone()),
            _ => None,
        })
    }

    /// Waits for a `Close` of `conversation`.
    pub fn closed(&mut self, conversation: u64) -> messages::Close {
        self.wait_event(&format!("Close of {conversation}"), |m| match m {
            Msg::Close(c) if c.conversation == conversation => Some(c.clone()),
            _ => None,
        })
    }

    /// Waits for a `Notice` with `text`.
    pub fn notice(&mut self, text: &str) -> messages::Notice {
        self.wait_event(&format!("Notice {text:?}"), |m| match m {
            Msg::Notice(n) if n.text == text => Some(n.clone()),
            _ => None,
        })
    }

    /// Ends the session in order (`Bye`, then the server's end-of-stream).
    pub fn close(self) {
        let name = self.name;
        if let Err(e) = self.client.close() {
            panic!("{name}: close failed: {e}");
        }
    }
}

/// A text `Send`.
pub fn text(conversation: u64, client_msg_id: u64, body: &str) -> messages::Send {
    messages::Send {
        content_type: messages::content::TEXT,
        conversation,
        client_msg_id,
        group: String::new(),
        body: body.to_owned(),
    }
}

/// A `Notice` to `group` ("" for everyone); the server fills in time and sender.
pub fn notice(group: &str, text: &str) -> messages::Notice {
    messages::Notice {
        time_ms: 0,
        group: group.into(),
        from: String::new(),
        text: text.into(),
    }
}

/// One line per message, for failure output (at most 40).
pub fn summary<'a>(msgs: impl IntoIterator<Item = &'a Incoming>) -> String {
    let all: Vec<String> = msgs
        .into_iter()
        .map(|i| format!("\n  rid {} {:?}", i.request_id, i.msg))
        .collect();
    let n = all.len();
    let mut s: String = all.into_iter().take(40).collect();
    if n > 40 {
        s.push_str(&format!("\n  … and {} more", n - 40));
    }
    if n == 0 {
        s.push_str("nothing");
    }
    s
}

/// A connection that decodes every frame itself: no deduplication by sequence
/// number, no heartbeat swallowing. For checking what actually went over the wire.
pub struct RawPeer {
    conn: super::Client,
    /// Every message received, in order, with its request id.
    pub log: Vec<(u32, Msg)>,
}

impl RawPeer {
    /// Connects and performs the handshake with `token`.
    pub fn connect(addr: SocketAddr, token: &str) -> RawPeer {
        Self::connect_resuming(addr, token, Vec::new()).0
    }

    /// Connects with resume cursors; returns the peer and its `Welcome`. Frames the
    /// server sent after the `Welcome` (replays) are in the log.
    pub fn connect_resuming(
        addr: SocketAddr,
        token: &str,
        resume: Vec<messages::Cursor>,
    ) -> (RawPeer, messages::Welcome) {
        let mut conn = super::Client::connect(addr);
        let hello = Msg::from(messages::Hello {
            protocol: messages::PROTOCOL_VERSION,
            token: token.to_owned(),
            client: "scenario/raw".into(),
            resume,
        })
        .to_payload()
        .to_vec();
        conn.send(super::kind::HELLO, 1, &hello);
        let f = conn.read_raw_frame(REPLY_TIMEOUT);
        assert_eq!(
            f.ksr(),
            (super::kind::WELCOME, 0, 1),
            "raw handshake: {f:?}"
        );
        let Ok(Msg::Welcome(welcome)) = Msg::decode(f.header.kind, &f.payload) else {
            panic!("raw handshake: not a Welcome: {f:?}");
        };
        let mut peer = RawPeer {
            conn,
            log: Vec::new(),
        };
        // Router barrier, as in `Peer::router_barrier`.
        let claim = Msg::from(messages::Claim {
            conversation: NO_SUCH_CONVERSATION,
        })
        .to_frame(2);
        peer.conn.write_raw(&claim);
        peer.read_until(|rid, m| rid == 2 && matches!(m, Msg::Error(e) if e.code == 404));
        (peer, welcome)
    }

    /// Writes an encoded frame as it is (one the SDK client would refuse to send).
    pub fn write_frame(&mut self, frame: &[u8]) {
        self.conn.write_raw(frame);
    }

    /// The `Deliver`s in the log for `conversation`, in arrival order.
    pub fn delivers(&self, conversation: u64) -> Vec<messages::Deliver> {
        self.log
            .iter()
            .filter_map(|(_, m)| match m {
                Msg::Deliver(d) if d.conversation == conversation => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    /// Reads frames into the log until one satisfies `done` (panics after the reply
    /// timeout).
    pub fn read_until(&mut self, mut done: impl FnMut(u32, &Msg) -> bool) {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let f = match self.conn.try_read_frame(left) {
                super::Read1::Frame(f) => f,
                other => panic!("raw peer: {other:?}; received: {:?}", self.log),
            };
            // The util client hands Pongs over without their payload.
            let mut msg = if f.header.kind == super::kind::PONG && f.payload.is_empty() {
                Msg::Pong(messages::Pong::default())
            } else {
                Msg::decode(f.header.kind, &f.payload)
                    .unwrap_or_else(|e| panic!("raw peer: undecodable frame {f:?}: {e}"))
            };
            if let Msg::Error(e) = &mut msg {
                e.code = f.header.status;
            }
            let rid = f.header.request_id;
            let stop = done(rid, &msg);
            self.log.push((rid, msg));
            if stop {
                return;
            }
        }
    }

    /// Reads until the frames so far are followed by a `Pong`: everything the
    /// server queued for this connection before answering is then in the log.
    pub fn sync(&mut self, request_id: u32) {
        let ping = Msg::from(messages::Ping {
            stamp: u64::from(request_id),
            data: Vec::new(),
        })
        .to_frame(request_id);
        self.conn.write_raw(&ping);
        self.read_until(|rid, m| rid == request_id && matches!(m, Msg::Pong(_)));
    }
}
