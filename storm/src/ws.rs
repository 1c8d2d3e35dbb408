//! The client side of WebSocket for `--transport ws-json|ws-bin`: the upgrade request
//! and the check of its `101` answer, masked client frames, and an incremental reader
//! of server frames. Sans-IO: the engine owns the sockets.
//!
//! Frame headers are parsed with the crate's own [`switchboard::ws::frame::parse_header`];
//! the rules a client must check of a server are applied here (no mask, no reserved
//! bits, control frames short and whole, continuation only inside a message).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use switchboard::bench_support::XorShift;
use switchboard::ws::Opcode;
use switchboard::ws::frame::{self, MAX_CONTROL_PAYLOAD, parse_header};

/// Longest upgrade response head accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most headers in the upgrade response.
const MAX_HEADERS: usize = 32;

/// A cheap per-thread random source (xorshift64*) for keys and masks: masking only has
/// to be unpredictable to a browser page, not cryptographic, and a load generator must
/// not spend its time on it.
#[derive(Debug, Clone)]
pub struct Rng(XorShift);

impl Rng {
    /// Seeded from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(XorShift::new(seed))
    }

    /// Seeded from the clock, the thread and `salt`.
    pub fn from_entropy(salt: u64) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self::new(t ^ salt.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ u64::from(std::process::id()))
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A fresh masking key.
    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_ne_bytes()
    }

    /// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
    pub fn key(&mut self) -> String {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&self.next_u64().to_ne_bytes());
        raw[8..].copy_from_slice(&self.next_u64().to_ne_bytes());
        STANDARD.encode(raw)
    }
}

/// The upgrade request: `GET /` with Host, Upgrade, Connection, the key, version 13
/// and the subprotocol offered (if any). No `Origin`: storm is not a browser.
pub fn upgrade_request(host: &str, protocol: Option<&str>, key: &str) -> Vec<u8> {
    let mut head = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = protocol {
        head.push_str("Sec-WebSocket-Protocol: ");
        head.push_str(p);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Why an upgrade failed (each maps to an error kind in the report).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// The server answered with another status.
    #[error("upgrade answered with HTTP {0}")]
    Status(u16),
    /// Not an HTTP/1.1 response head.
    #[error("malformed upgrade response")]
    Malformed,
    /// The head is longer than [`MAX_HEAD`].
    #[error("upgrade response head too long")]
    TooLong,
    /// `Sec-WebSocket-Accept` missing or wrong.
    #[error("wrong Sec-WebSocket-Accept")]
    Accept,
    /// `Upgrade`/`Connection` headers missing.
    #[error("101 without Upgrade: websocket")]
    NotWebSocket,
    /// The subprotocol chosen is not the one offered.
    #[error("subprotocol not accepted")]
    Subprotocol,
}

impl UpgradeError {
    /// The error kind in storm's report.
    pub fn kind(&self) -> String {
        match self {
            Self::Status(s) => format!("ws_upgrade_{s}"),
            Self::Malformed => "ws_upgrade_malformed".into(),
            Self::TooLong => "ws_upgrade_too_long".into(),
            Self::Accept => "ws_upgrade_bad_accept".into(),
            Self::NotWebSocket => "ws_upgrade_not_websocket".into(),
            Self::Subprotocol => "ws_upgrade_subprotocol".into(),
        }
    }
}

/// Checks the response head at the start of `buf`: `Ok(None)` until it is complete,
/// `Ok(Some(len))` (the head's length; frames may follow) when it is a valid `101`
/// for `key` with `protocol` chosen (when one was offered).
pub fn check_response(
    buf: &[u8],
    key: &str,
    protocol: Option<&str>,
) -> Result<Option<usize>, UpgradeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(UpgradeError::TooLong);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(UpgradeError::Malformed),
    };
    let code = resp.code.ok_or(UpgradeError::Malformed)?;
    if code != 101 {
        return Err(UpgradeError::Status(code));
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let upgrade_ok = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection_ok = header("connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    if !upgrade_ok || !connection_ok {
        return Err(UpgradeError::NotWebSocket);
    }
    if header("sec-websocket-accept") != Some(switchboard::ws::accept_key(key).as_str()) {
        return Err(UpgradeError::Accept);
    }
    if let Some(p) = protocol
        && header("sec-websocket-protocol") != Some(p)
    {
        return Err(UpgradeError::Subprotocol);
    }
    Ok(Some(len))
}

/// Appends one masked client frame with FIN set to `out` (no allocation beyond
/// `out`'s growth).
pub fn push_frame(out: &mut Vec<u8>, op: Opcode, payload: &[u8], mask: [u8; 4]) {
    frame::push_client_frame(out, true, op.bits(), payload, mask);
}

/// What the reader found.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// A whole data message (`text`: opcode Text).
    Message {
        /// A text message (else binary).
        text: bool,
        /// Its payload.
        payload: &'a [u8],
    },
    /// A ping (to be answered with a pong carrying `.0`).
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// A Close with this code (1005 when it has none).
    Close(u16),
}

/// A server frame broke the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Masked frame, reserved bits or opcode, bad control frame, stray continuation.
    #[error("WebSocket protocol error from the server")]
    Protocol,
    /// A message longer than the reader's limit.
    #[error("WebSocket message too long")]
    TooLong,
}

impl ReadError {
    /// The error kind in storm's report.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Protocol => "ws_protocol",
            Self::TooLong => "ws_too_long",
        }
    }
}

/// An incremental reader of server frames. Holds nothing between frames: `spill`
/// keeps only a partial frame, `msg` only a message whose fragments are still coming.
#[derive(Debug, Default)]
pub struct Reader {
    spill: Vec<u8>,
    /// The opcode of the fragmented message being assembled.
    msg_op: Option<Opcode>,
    msg: Vec<u8>,
}

impl Reader {
    /// Feeds received bytes; `on` gets every event and returns false to stop reading.
    pub fn feed(
        &mut self,
        data: &[u8],
        max_message: usize,
        mut on: impl FnMut(WsEvent<'_>) -> bool,
    ) -> Result<(), ReadError> {
        if self.spill.is_empty() {
            let used = self.frames(data, max_message, &mut on)?;
            self.spill
                .extend_from_slice(data.get(used..).unwrap_or_default());
        } else {
            let mut buf = std::mem::take(&mut self.spill);
            buf.extend_from_slice(data);
            let used = self.frames(&buf, max_message, &mut on)?;
            // Keep only the partial frame, in a buffer its own size (a 64 KiB read
            // must not stay allocated per connection).
            self.spill = buf.get(used..).map(<[u8]>::to_vec).unwrap_or_default();
        }
        Ok(())
    }

    /// Handles the whole frames at the start of `buf`; returns the bytes used.
    fn frames(
        &mut self,
        buf: &[u8],
        max_message: usize,
        on: &mut impl FnMut(WsEvent<'_>) -> bool,
    ) -> Result<usize, ReadError> {
        let mut at = 0;
        loop {
            let rest = buf.get(at..).unwrap_or_default();
            let Some(h) = parse_header(rest) else {
                return Ok(at);
            };
            if h.mask.is_some() || h.rsv != 0 {
                return Err(ReadError::Protocol);
            }
            let op = Opcode::from_bits(h.opcode).ok_or(ReadError::Protocol)?;
            let len = usize::try_from(h.len).map_err(|_| ReadError::TooLong)?;
            if len > max_message.saturating_add(MAX_CONTROL_PAYLOAD) {
                return Err(ReadError::TooLong);
            }
            let end = h.header_len + len;
            let Some(payload) = rest.get(h.header_len..end) else {
                return Ok(at);
            };
            at += end;
            let go_on = match op {
                Opcode::Ping | Opcode::Pong | Opcode::Close => {
                    if !h.fin || len > MAX_CONTROL_PAYLOAD {
                        return Err(ReadError::Protocol);
                    }
                    match op {
                        Opcode::Ping => on(WsEvent::Ping(payload)),
                        Opcode::Pong => on(WsEvent::Pong),
                        _ => {
                            let code = match payload {
                                [a, b, ..] => u16::from_be_bytes([*a, *b]),
                                _ => 1005,
                            };
                            on(WsEvent::Close(code));
                            false
                        }
                    }
                }
                Opcode::Text | Opcode::Binary => {
                    if self.msg_op.is_some() {
                        return Err(ReadError::Protocol);
                    }
                    if len > max_message {
                        return Err(ReadError::TooLong);
                    }
                    if h.fin {
                        on(WsEvent::Message {
                            text: op == Opcode::Text,
                            payload,
                        })
                    } else {
                        self.msg_op = Some(op);
                        self.msg.extend_from_slice(payload);
                        true
                    }
                }
                Opcode::Continuation => {
                    let Some(first) = self.msg_op else {
                        return Err(ReadError::Protocol);
                    };
                    if self.msg.len() + len > max_message {
                        return Err(ReadError::TooLong);
                    }
                    self.msg.extend_from_slice(payload);
                    if h.fin {
                        self.msg_op = None;
                        let msg = std::mem::take(&mut self.msg);
                        on(WsEvent::Message {
                            text: first == Opcode::Text,
                            payload: &msg,
                        })
                    } else {
                        true
                    }
                }
            };
            if !go_on {
                return Ok(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard::ws::frame::server_frame;

    /// Collects what `feed` reports, as owned values.
    fn events(r: &mut Reader, data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ReadError> {
        let mut out = Vec::new();
        r.feed(data, 1 << 20, |e| {
            out.push(match e {
                WsEvent::Message { text, payload } => (
                    if text { "text" } else { "bin" }.to_owned(),
                    payload.to_vec(),
                ),
                WsEvent::Ping(p) => ("ping".to_owned(), p.to_vec()),
                WsEvent::Pong => ("pong".to_owned(), Vec::new()),
                WsEvent::Close(c) => ("close".to_owned(), c.to_be_bytes().to_vec()),
            });
            true
        })?;
        Ok(out)
    }

    #[test]
    fn the_rfc_example_key_gives_its_accept() {
        let resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                    Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
                    Sec-WebSocket-Protocol: switchboard.v1.bin\r\n\r\n\x02\x00";
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let head_len = resp.len() - 2;
        assert_eq!(
            check_response(resp.as_bytes(), key, Some("switchboard.v1.bin")),
            Ok(Some(head_len))
        );
        // Partial, wrong key, wrong protocol, another status.
        assert_eq!(check_response(&resp.as_bytes()[..40], key, None), Ok(None));
        assert_eq!(
            check_response(resp.as_bytes(), "AAAAAAAAAAAAAAAAAAAAAA==", None),
            Err(UpgradeError::Accept)
        );
        assert_eq!(
            check_response(resp.as_bytes(), key, Some("switchboard.v1.json")),
            Err(UpgradeError::Subprotocol)
        );
        assert_eq!(
            check_response(b"HTTP/1.1 426 Upgrade Required\r\n\r\n", key, None),
            Err(UpgradeError::Status(426))
        );
        assert_eq!(
            check_response(b"SSH-2.0\r\n\r\n", key, None),
            Err(UpgradeError::Malformed)
        );
        let no_upgrade = "HTTP/1.1 101 Switching Protocols\r\n\
                          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(
            check_response(no_upgrade.as_bytes(), key, None),
            Err(UpgradeError::NotWebSocket)
        );
        let endless = vec![b'X'; MAX_HEAD + 1];
        let mut long = b"HTTP/1.1 101 OK\r\nX: ".to_vec();
        long.extend_from_slice(&endless);
        assert_eq!(check_response(&long, key, None), Err(UpgradeError::TooLong));
    }

    #[test]
    fn request_carries_the_handshake_headers() {
        let mut rng = Rng::new(7);
        let key = rng.key();
        assert_eq!(STANDARD.decode(&key).unwrap().len(), 16);
        assert_ne!(key, rng.key(), "keys differ per connection");
        let req = String::from_utf8(upgrade_request("127.0.0.1:7700", Some("p"), &key)).unwrap();
        for line in [
            "GET / HTTP/1.1\r\n",
            "Host: 127.0.0.1:7700\r\n",
            "Upgrade: websocket\r\n",
            "Connection: Upgrade\r\n",
            &format!("Sec-WebSocket-Key: {key}\r\n"),
            "Sec-WebSocket-Version: 13\r\n",
            "Sec-WebSocket-Protocol: p\r\n",
        ] {
            assert!(req.contains(line), "{line:?} missing from {req:?}");
        }
        assert!(req.ends_with("\r\n\r\n"));
        let plain = String::from_utf8(upgrade_request("h", None, &key)).unwrap();
        assert!(!plain.contains("Protocol"));
    }

    #[test]
    fn client_frames_match_the_crate_encoder_and_unmask() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mask = [1, 2, 3, 4];
            let mut out = Vec::new();
            push_frame(&mut out, Opcode::Binary, &payload, mask);
            assert_eq!(
                out,
                frame::client_frame(true, 0x2, &payload, mask),
                "len {len}"
            );
            let h = parse_header(&out).unwrap();
            assert_eq!(
                (h.fin, h.opcode, h.mask, h.len),
                (true, 2, Some(mask), len as u64)
            );
            let mut body = out[h.header_len..].to_vec();
            frame::apply_mask(&mut body, mask);
            assert_eq!(body, payload);
        }
        let mut rng = Rng::new(1);
        assert_ne!(rng.mask(), rng.mask(), "a fresh mask per frame");
    }

    #[test]
    fn reader_splits_at_every_byte() {
        let mut wire = server_frame(Opcode::Binary, b"hello").to_vec();
        wire.extend_from_slice(&server_frame(Opcode::Ping, b"p"));
        wire.extend_from_slice(&[0x01, 0x02, b'a', b'b']); // text, not final
        wire.extend_from_slice(&server_frame(Opcode::Pong, b""));
        wire.extend_from_slice(&[0x80, 0x01, b'c']); // final continuation
        wire.extend_from_slice(&server_frame(Opcode::Text, &[b'x'; 300]));
        wire.extend_from_slice(&switchboard::ws::close_frame(1001, "bye"));
        let expected = vec![
            ("bin".to_owned(), b"hello".to_vec()),
            ("ping".to_owned(), b"p".to_vec()),
            ("pong".to_owned(), Vec::new()),
            ("text".to_owned(), b"abc".to_vec()),
            ("text".to_owned(), vec![b'x'; 300]),
            ("close".to_owned(), 1001u16.to_be_bytes().to_vec()),
        ];
        for cut in 0..=wire.len() {
            let mut r = Reader::default();
            let mut got = events(&mut r, &wire[..cut]).unwrap();
            got.extend(events(&mut r, &wire[cut..]).unwrap());
            assert_eq!(got, expected, "cut at {cut}");
        }
    }

    #[test]
    fn reader_refuses_what_a_server_must_not_send() {
        let bad: [&[u8]; 6] = [
            &[0x82, 0x81, 1, 2, 3, 4, 0], // masked
            &[0xC2, 0x00],                // RSV1
            &[0x83, 0x00],                // reserved opcode
            &[0x09, 0x00],                // fragmented ping
            &[0x80, 0x00],                // continuation outside a message
            &[0x89, 0x7E, 0x00, 0x7E],    // ping of 126 bytes
        ];
        for b in bad {
            let mut r = Reader::default();
            let mut wire = b.to_vec();
            wire.resize(wire.len() + 130, 0);
            assert_eq!(events(&mut r, &wire), Err(ReadError::Protocol), "{b:?}");
        }
        let mut r = Reader::default();
        let big = server_frame(Opcode::Binary, &[0u8; 100]);
        assert_eq!(r.feed(&big, 99, |_| true), Err(ReadError::TooLong));
    }
}
