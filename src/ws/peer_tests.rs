//! The codec against an independent implementation: `tungstenite` as the client, in
//! memory. Its handshake request goes through our head parser and `accept`, its frames
//! through our endpoint; our server frames are read by it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

use bytes::Bytes;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::{Error, Message};

use super::*;
use crate::http::head::{HeadLimits, parse};

#[derive(Default)]
struct Pipe {
    to_server: Vec<u8>,
    to_client: VecDeque<u8>,
}

/// The client's end of an in-memory connection.
#[derive(Clone, Default)]
struct ClientSide(Rc<RefCell<Pipe>>);

impl io::Read for ClientSide {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut p = self.0.borrow_mut();
        if p.to_client.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(p.to_client.len());
        for (dst, src) in buf.iter_mut().zip(p.to_client.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl io::Write for ClientSide {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().to_server.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ClientSide {
    fn take_sent(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.borrow_mut().to_server)
    }
    fn deliver(&self, bytes: &[u8]) {
        self.0.borrow_mut().to_client.extend(bytes);
    }
}

/// Assembles whole messages from the endpoint's chunks.
#[derive(Default)]
struct Assembler {
    partial: Vec<u8>,
    messages: Vec<(bool, Vec<u8>)>,
    control: Vec<Bytes>,
}

impl WsSink for Assembler {
    fn data(&mut self, text: bool, chunk: &[u8], fin: bool) -> Result<(), u16> {
        self.partial.extend_from_slice(chunk);
        if fin {
            self.messages
                .push((text, std::mem::take(&mut self.partial)));
        }
        Ok(())
    }
    fn control(&mut self, frame: Bytes) {
        self.control.push(frame);
    }
}

const LIMITS: WsLimits = WsLimits {
    max_message: 1 << 20,
};

#[test]
fn tungstenite_handshake_is_accepted() {
    let side = ClientSide::default();
    let mut req = "ws://gw.example:7810/ws?site=demo"
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "chat, switchboard.v1.json".parse().unwrap(),
    );
    req.headers_mut()
        .insert("Origin", "http://gw.example:7810".parse().unwrap());
    let mid = match tungstenite::client(req, side.clone()) {
        Err(HandshakeError::Interrupted(mid)) => mid,
        other => panic!("expected to wait for the response: {:?}", other.err()),
    };
    let raw = side.take_sent();
    let (request, n) = parse(&raw, &HeadLimits::default()).unwrap().unwrap();
    assert_eq!(n, raw.len());
    assert_eq!(request.path, "/ws");
    let up = accept(&request, &OriginPolicy::same_host(), true).unwrap();
    assert_eq!(up.protocol, Some(Subprotocol::Json));
    side.deliver(&up.response);
    let (_ws, response) = mid.handshake().unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers()["Sec-WebSocket-Protocol"],
        "switchboard.v1.json"
    );
}

#[test]
fn tungstenite_client_frames_become_messages() {
    let side = ClientSide::default();
    let mut ws = WebSocket::from_raw_socket(side.clone(), Role::Client, None);
    let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    ws.send(Message::text("héllo")).unwrap();
    ws.send(Message::binary(big.clone())).unwrap();
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .unwrap();
    // A fragmented text message cut inside a code point, a ping between fragments.
    let text = "κόσμε".as_bytes();
    ws.send(Message::Frame(Frame::message(
        text[..3].to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .unwrap();
    ws.send(Message::Ping(Bytes::from_static(b"mid"))).unwrap();
    ws.send(Message::Frame(Frame::message(
        text[3..].to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .unwrap();
    ws.send(Message::text("")).unwrap();
    let wire = side.take_sent();

    // Delivered in uneven pieces, the way reads arrive.
    let mut state = WsState::default();
    let mut sink = Assembler::default();
    let mut scratch = Vec::new();
    let mut spill = Vec::new();
    for piece in wire.chunks(1000) {
        spill.extend_from_slice(piece);
        let Fed::More { consumed } = state
            .feed(&spill, &LIMITS, &mut scratch, &mut sink)
            .unwrap()
        else {
            panic!("closed");
        };
        spill.drain(..consumed);
    }
    assert!(spill.is_empty() && !state.mid_message());
    assert_eq!(
        sink.messages,
        [
            (true, "héllo".as_bytes().to_vec()),
            (false, big),
            (true, text.to_vec()),
            (true, vec![]),
        ]
    );
    // Our pongs, read by tungstenite.
    assert_eq!(sink.control.len(), 2);
    for pong in &sink.control {
        side.deliver(pong);
    }
    assert_eq!(
        ws.read().unwrap(),
        Message::Pong(Bytes::from_static(b"are you there"))
    );
    assert_eq!(
        ws.read().unwrap(),
        Message::Pong(Bytes::from_static(b"mid"))
    );
}

#[test]
fn tungstenite_reads_our_server_frames() {
    let side = ClientSide::default();
    let mut ws = WebSocket::from_raw_socket(side.clone(), Role::Client, None);
    let big = vec![7u8; 70_000];
    let medium = "x".repeat(300);
    side.deliver(&server_frame(Opcode::Text, "héllo".as_bytes()));
    side.deliver(&server_frame(Opcode::Binary, &big));
    side.deliver(&server_frame(Opcode::Text, medium.as_bytes()));
    side.deliver(&server_frame(Opcode::Ping, b"hb"));
    side.deliver(&close_frame(1001, &"going away ✓".repeat(20)));
    assert_eq!(ws.read().unwrap(), Message::text("héllo"));
    assert_eq!(ws.read().unwrap(), Message::binary(big));
    assert_eq!(ws.read().unwrap(), Message::text(medium));
    assert_eq!(ws.read().unwrap(), Message::Ping(Bytes::from_static(b"hb")));
    match ws.read().unwrap() {
        Message::Close(Some(CloseFrame { code, reason })) => {
            assert_eq!(code, CloseCode::Away);
            assert!(reason.as_str().starts_with("going away ✓"));
            assert!(reason.len() <= 123);
        }
        other => panic!("expected a close: {other:?}"),
    }
}

#[test]
fn closing_handshake_with_tungstenite() {
    let side = ClientSide::default();
    let mut ws = WebSocket::from_raw_socket(side.clone(), Role::Client, None);
    ws.close(Some(CloseFrame {
        code: CloseCode::Library(4001),
        reason: "done".into(),
    }))
    .unwrap();
    let wire = side.take_sent();
    let mut state = WsState::default();
    let mut sink = Assembler::default();
    let fed = state
        .feed(&wire, &LIMITS, &mut Vec::new(), &mut sink)
        .unwrap();
    assert_eq!(
        fed,
        Fed::Closed {
            consumed: wire.len(),
            code: 4001
        }
    );
    assert_eq!(sink.control.len(), 1);
    side.deliver(&sink.control[0]);
    // tungstenite sees our reply as the end of the closing handshake, then waits for
    // the server to close the TCP connection (RFC 6455 7.1.1: the server closes first).
    match ws.read().unwrap() {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Library(4001)),
        other => panic!("expected the close reply: {other:?}"),
    }
    assert!(!ws.can_write());
    match ws.read() {
        Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!("expected to wait for EOF: {other:?}"),
    }
}
