//! A minimal blocking WebSocket client for the web edge tests, written from RFC 6455
//! alone (not with the server's codec, so a shared misreading cannot pass): it sends
//! masked frames exactly as told (also invalid ones) and reads server frames.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest any read or write may take.
pub const WS_TIMEOUT: Duration = Duration::from_secs(5);

/// The key of RFC 6455 section 1.3 and its accept value.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Opcodes.
pub mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl WsFrame {
    /// The close code of a Close frame (1005 when it has none).
    pub fn close_code(&self) -> u16 {
        assert_eq!(self.opcode, op::CLOSE, "not a Close frame: {self:?}");
        match self.payload[..] {
            [a, b, ..] => u16::from_be_bytes([a, b]),
            _ => 1005,
        }
    }

    /// The payload as text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).expect("UTF-8 payload")
    }
}

/// The request head of an upgrade; `extra` lines are added as they are.
pub fn upgrade_request(
    addr: SocketAddr,
    protocol: Option<&str>,
    origin: Option<&str>,
    extra: &[&str],
) -> String {
    let mut head = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = protocol {
        head.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    if let Some(o) = origin {
        head.push_str(&format!("Origin: {o}\r\n"));
    }
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// A WebSocket connection after a successful upgrade.
pub struct WsClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The response head of the upgrade.
    pub head: String,
}

impl WsClient {
    /// Upgrades with `protocol` offered and `origin` sent (if any); panics unless the
    /// answer is 101 with the right accept key.
    pub fn connect(addr: SocketAddr, protocol: Option<&str>, origin: Option<&str>) -> Self {
        match Self::try_connect(addr, &upgrade_request(addr, protocol, origin, &[])) {
            Ok(c) => c,
            Err((status, head)) => panic!("upgrade refused with {status}: {head}"),
        }
    }

    /// Sends `request` and reads the answer head: the client on 101, else the status
    /// and the whole answer (read to EOF).
    pub fn try_connect(addr: SocketAddr, request: &str) -> Result<Self, (u16, String)> {
        let stream = TcpStream::connect_timeout(&addr, WS_TIMEOUT).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(WS_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(WS_TIMEOUT)).unwrap();
        let mut c = Self {
            stream,
            buf: Vec::new(),
            head: String::new(),
        };
        c.stream.write_all(request.as_bytes()).unwrap();
        let end = loop {
            if let Some(i) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !c.fill() {
                panic!(
                    "EOF before a response head: {:?}",
                    String::from_utf8_lossy(&c.buf)
                );
            }
        };
        let head = String::from_utf8(c.buf[..end].to_vec()).unwrap();
        c.buf.drain(..end);
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        if status != 101 {
            while c.fill() {}
            let body = String::from_utf8_lossy(&c.buf).into_owned();
            return Err((status, format!("{head}{body}")));
        }
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains(&format!(
                "sec-websocket-accept: {}",
                ACCEPT.to_ascii_lowercase()
            )),
            "{head}"
        );
        c.head = head;
        Ok(c)
    }

    /// Reads more; false at EOF (or a reset after the server's close).
    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 16 * 1024];
        loop {
            return match self.stream.read(&mut tmp) {
                Ok(0) => false,
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    true
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
                Err(e) => panic!("read: {e} (have {} bytes)", self.buf.len()),
            };
        }
    }

    /// Writes bytes as they are.
    pub fn write_raw(&mut self, bytes: &[u8]) {
        // The server may close before taking everything.
        let _ = self.stream.write_all(bytes);
    }

    /// Sends one masked frame.
    pub fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let bytes = masked(fin, opcode, payload, [0x37, 0xfa, 0x21, 0x3d]);
        self.write_raw(&bytes);
    }

    /// Sends one text message.
    pub fn send_text(&mut self, text: &str) {
        self.send(true, op::TEXT, text.as_bytes());
    }

    /// The next frame, or `None` at EOF.
    pub fn read_frame(&mut self) -> Option<WsFrame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if !self.fill() {
                assert!(self.buf.is_empty(), "EOF inside a frame: {:?}", self.buf);
                return None;
            }
        }
    }

    /// The next frame that is not a Ping or Pong.
    pub fn read_data(&mut self) -> WsFrame {
        loop {
            let f = self.read_frame().expect("a frame before EOF");
            if f.opcode != op::PING && f.opcode != op::PONG {
                return f;
            }
        }
    }

    /// Expects a Close with `code` next (after any data frames, which are returned),
    /// then the end of the stream.
    pub fn expect_close(&mut self, code: u16) -> Vec<WsFrame> {
        let mut before = Vec::new();
        loop {
            let f = self.read_frame().expect("a Close before EOF");
            if f.opcode == op::CLOSE {
                assert_eq!(
                    f.close_code(),
                    code,
                    "close reason {:?}",
                    String::from_utf8_lossy(&f.payload[2.min(f.payload.len())..])
                );
                assert!(self.read_frame().is_none(), "nothing after the Close");
                return before;
            }
            before.push(f);
        }
    }
}

/// A masked client frame, built by hand.
pub fn masked(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Parses one unmasked server frame from the front of `buf`.
fn parse_server_frame(buf: &[u8]) -> Option<(WsFrame, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    assert_eq!(b0 & 0x70, 0, "server set reserved bits");
    assert_eq!(b1 & 0x80, 0, "server frames are never masked");
    let (len, at) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    Some((
        WsFrame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0f,
            payload,
        },
        at + len,
    ))
}
