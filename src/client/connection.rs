//! One TCP connection to the server: connect, write whole frames, and read the stream
//! into frames with one read buffer and [`frame::deframe`], every wait bounded by a
//! deadline.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;

use super::ClientError;
use crate::frame::{self, FrameHeader};

/// Size of the client's one read buffer.
const READ_CHUNK: usize = 64 * 1024;

/// A complete frame as it came off the wire, payload copied into a 16-aligned buffer
/// so it can be validated in place.
#[derive(Debug)]
pub(super) struct RawFrame {
    /// The parsed header.
    pub header: FrameHeader,
    /// The payload without padding.
    pub payload: AlignedVec<16>,
}

/// Where the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading and writing.
    Open,
    /// The server ended the stream.
    Eof,
    /// An error (or our own shutdown) ended it.
    Failed,
}

/// A connection's socket and read side.
#[derive(Debug)]
pub(super) struct Connection {
    stream: TcpStream,
    /// The one read buffer: each read lands here and is framed in place.
    read_buf: Box<[u8]>,
    /// Start of a frame that has not fully arrived (see [`frame::deframe`]); at most
    /// one frame of `max_frame` bytes plus header and padding.
    spill: Vec<u8>,
    /// Frames read but not yet taken, oldest first.
    frames: VecDeque<RawFrame>,
    /// Largest payload accepted.
    max_frame: u32,
    state: State,
    /// The error that ended the stream, reported once after the frames before it.
    failure: Option<ClientError>,
    /// When the last byte was written (heartbeats count from here).
    last_sent: Instant,
    /// When bytes last arrived (dead-peer detection counts from here).
    last_received: Instant,
    /// TLS, when the configuration asks for it (`None`: plain TCP).
    tls: Option<Box<rustls::ClientConnection>>,
}

impl Connection {
    /// Resolves `addr`, connects to the first address that answers within
    /// `connect_timeout`, and sets `TCP_NODELAY` and the write timeout.
    pub fn open(
        addr: &str,
        connect_timeout: Duration,
        write_timeout: Duration,
        max_frame: u32,
    ) -> Result<Self, ClientError> {
        let mut last_err = None;
        for sa in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&sa, nonzero(connect_timeout)) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(nonzero(write_timeout)))?;
                    return Ok(Self {
                        stream,
                        read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
                        spill: Vec::new(),
                        frames: VecDeque::new(),
                        max_frame,
                        state: State::Open,
                        failure: None,
                        last_sent: Instant::now(),
                        last_received: Instant::now(),
                        tls: None,
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(match last_err {
            Some(e) if is_timeout(&e) => ClientError::Timeout,
            Some(e) => ClientError::Io(e),
            None => ClientError::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{addr} resolves to no address"),
            )),
        })
    }

    /// Runs a TLS handshake (ALPN `switchboard/1`) on the fresh connection, bounded
    /// by `until`; from then on frames travel inside TLS.
    pub fn start_tls(
        &mut self,
        addr: &str,
        settings: &super::ClientTls,
        until: Instant,
    ) -> Result<(), ClientError> {
        let config = super::tls::client_config(settings)?;
        let name = super::tls::server_name(addr, settings)?;
        let mut tls = rustls::ClientConnection::new(config, name)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        while tls.is_handshaking() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.shutdown();
                return Err(ClientError::Timeout);
            }
            self.stream.set_read_timeout(Some(nonzero(left)))?;
            if let Err(e) = tls.complete_io(&mut self.stream) {
                self.shutdown();
                return Err(match e.kind() {
                    io::ErrorKind::InvalidData => ClientError::Tls(e.to_string()),
                    _ if is_timeout(&e) => ClientError::Timeout,
                    _ => ClientError::Io(e),
                });
            }
        }
        self.tls = Some(Box::new(tls));
        Ok(())
    }

    /// Whether the stream is still open both ways.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// When the last frame was written.
    pub fn last_sent(&self) -> Instant {
        self.last_sent
    }

    /// When bytes last arrived.
    pub fn last_received(&self) -> Instant {
        self.last_received
    }

    /// Writes a whole frame. A failed or timed-out write may leave part of a frame on
    /// the wire, so it ends the connection.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        if self.state != State::Open {
            return Err(ClientError::Closed);
        }
        let written = match self.tls.as_mut() {
            Some(tls) => tls.writer().write_all(bytes).and_then(|()| {
                while tls.wants_write() {
                    tls.write_tls(&mut self.stream)?;
                }
                Ok(())
            }),
            None => self.stream.write_all(bytes),
        };
        match written {
            Ok(()) => {
                self.last_sent = Instant::now();
                Ok(())
            }
            Err(e) => {
                self.shutdown();
                Err(if is_timeout(&e) {
                    ClientError::Timeout
                } else {
                    ClientError::Io(e)
                })
            }
        }
    }

    /// The oldest frame read and not yet taken. `Ok(None)`: none yet, the stream is
    /// open, call [`fill`](Self::fill). Once the stream has ended and its frames are
    /// taken: the error that ended it, once, then [`ClientError::Closed`].
    pub fn next_frame(&mut self) -> Result<Option<RawFrame>, ClientError> {
        if let Some(f) = self.frames.pop_front() {
            return Ok(Some(f));
        }
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        match self.state {
            State::Open => Ok(None),
            State::Eof | State::Failed => Err(ClientError::Closed),
        }
    }

    /// Reads once, waiting at most until `until`, and frames what arrived. A timeout
    /// is not an error; end-of-stream, socket errors and framing errors end the
    /// stream (see [`next_frame`](Self::next_frame)).
    pub fn fill(&mut self, until: Instant) -> Result<(), ClientError> {
        if self.state != State::Open {
            return Ok(());
        }
        let n = match read_within(&mut self.stream, &mut self.read_buf, until) {
            Ok(Some(0)) => {
                self.state = State::Eof;
                self.spill = Vec::new();
                return Ok(());
            }
            Ok(Some(n)) => {
                self.last_received = Instant::now();
                n
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                self.fail(ClientError::Io(e));
                return Ok(());
            }
        };
        let Self {
            read_buf,
            spill,
            frames,
            max_frame,
            tls,
            stream,
            ..
        } = self;
        let (plain, peer_closed) = match tls.as_mut() {
            None => (Vec::new(), false),
            Some(tls) => {
                match super::tls::decrypt(tls, stream, read_buf.get(..n).unwrap_or_default()) {
                    Ok(r) => r,
                    Err(e) => {
                        self.fail(e);
                        return Ok(());
                    }
                }
            }
        };
        let data = match tls {
            None => read_buf.get(..n).unwrap_or_default(),
            Some(_) => &plain[..],
        };
        let framed = frame::deframe(spill, data, *max_frame, |header, payload| {
            let mut copy = AlignedVec::<16>::with_capacity(payload.len());
            copy.extend_from_slice(payload);
            frames.push_back(RawFrame {
                header,
                payload: copy,
            });
            true
        });
        if let Err(e) = framed {
            self.fail(ClientError::Framing(e));
        } else if peer_closed {
            self.state = State::Eof;
            self.spill = Vec::new();
        }
        Ok(())
    }

    /// Ends the stream with `error`, reported after the frames already read.
    fn fail(&mut self, error: ClientError) {
        self.failure = Some(error);
        self.shutdown();
    }

    /// Closes the socket both ways; later writes fail with [`ClientError::Closed`].
    pub fn shutdown(&mut self) {
        if self.state == State::Open {
            self.state = State::Failed;
        }
        self.spill = Vec::new();
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = tls.write_tls(&mut self.stream);
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Reads once from `stream` into `buf`, waiting at most until `until`: `Some(0)` is
/// end-of-stream, `Some(n)` bytes read, `None` nothing before `until` (or a read
/// interrupted by a signal). The SDK's read, and the loopback tests' (hence public,
/// hidden from the docs).
#[doc(hidden)]
pub fn read_within(
    stream: &mut TcpStream,
    buf: &mut [u8],
    until: Instant,
) -> io::Result<Option<usize>> {
    stream.set_read_timeout(Some(nonzero(
        until.saturating_duration_since(Instant::now()),
    )))?;
    match stream.read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(e) => Err(e),
    }
}

/// Socket timeouts must not be zero (that means "block forever" to the OS).
fn nonzero(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
