//! One connection's TLS, sans-IO: the handshake over rustls' unbuffered API, then
//! the record layer of [`super::records`] with the raw traffic keys (rustls'
//! connection is dropped). The reactor hands in what it read and gets back the
//! handshake bytes to send and the plaintext to process; it hands in plaintext to
//! send and gets back records. Between records nothing is buffered: a partly
//! arrived record is kept (bounded by the record size) until the rest comes,
//! decryption happens in place in the reactor's scratch buffer, and output is
//! encrypted straight into the `Bytes` the connection queues.

use std::sync::Arc;

use bytes::Bytes;
use rustls::ServerConfig;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};

use super::records::{Fatal, SealRefused, Traffic};

/// Per-record expansion reserved when encrypting (header, explicit nonce, tag,
/// content type); rustls says so if more is needed.
const RECORD_OVERHEAD: usize = 40;

/// Most plaintext messages held while the handshake does not allow application
/// data yet (nothing the daemon says comes before the client speaks, so any is
/// rare); past it the connection fails.
const MAX_HELD: usize = 16;

/// What one read produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ReadOutcome {
    /// The handshake completed with this input.
    pub handshake_done: bool,
    /// The peer sent close_notify: no more plaintext comes.
    pub peer_closed: bool,
}

/// Why TLS on a connection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsFailure {
    /// rustls refused the peer's records (the alert, if any, is in the wire output).
    #[error("{0}")]
    Protocol(#[from] rustls::Error),
    /// More plaintext waited for the handshake than [`MAX_HELD`] messages.
    #[error("too much output before the handshake completed")]
    TooEarly,
    /// The record layer cannot encrypt any more (sequence numbers exhausted).
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
    /// A TLS 1.2 key reached its confidentiality limit: close_notify is all that
    /// may still be sent (TLS 1.3 moves to a new key instead).
    #[error("the key reached its confidentiality limit")]
    KeyLimit,
}

impl TlsFailure {
    /// The `reason` slot in [`super::FAILURE_REASONS`].
    pub fn reason(&self) -> usize {
        match self {
            Self::Protocol(e) => super::failure_reason(e),
            Self::TooEarly | Self::Encrypt(_) | Self::KeyLimit => super::FAILURE_REASONS.len() - 1,
        }
    }
}

/// Where a session is.
enum Stage {
    /// rustls runs the handshake (boxed: it is most of a session's memory, and
    /// goes once the handshake is done).
    Handshake(Box<UnbufferedServerConnection>),
    /// Our record layer runs on the extracted keys.
    Traffic(Traffic),
    /// The handshake finished but its keys could not be taken over (the session
    /// failed).
    Gone,
}

/// A connection's TLS state.
pub(crate) struct TlsSession {
    stage: Stage,
    /// The start of a record that has not fully arrived; empty (unallocated)
    /// between records.
    partial: Vec<u8>,
    /// Plaintext sent before the handshake allowed application data, in order;
    /// empty (unallocated) otherwise.
    held: Vec<Bytes>,
    /// No more output: a fatal alert or close_notify went out, or records were
    /// dropped (a slow-consumer cut), so anything encrypted now would not decrypt.
    finished: bool,
    /// The handshake completed (counted once).
    established: bool,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("partial", &self.partial.len())
            .field("held", &self.held.len())
            .field("finished", &self.finished)
            .field("established", &self.established)
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    /// A session that will answer a ClientHello with `config`.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(Self {
            stage: Stage::Handshake(Box::new(UnbufferedServerConnection::new(config)?)),
            partial: Vec::new(),
            held: Vec::new(),
            finished: false,
            established: false,
        })
    }

    /// The negotiated protocol version (`"1.2"`, `"1.3"`) once established.
    pub fn version(&self) -> Option<&'static str> {
        match &self.stage {
            Stage::Handshake(conn) => version_name(conn.protocol_version()?),
            Stage::Traffic(t) => Some(if t.tls13() { "1.3" } else { "1.2" }),
            Stage::Gone => None,
        }
    }

    /// Whether the handshake completed.
    pub fn established(&self) -> bool {
        self.established
    }

    /// Marks the record stream as broken (output records were dropped, or the
    /// session failed): nothing more is encrypted.
    pub fn abandon(&mut self) {
        self.finished = true;
        self.held = Vec::new();
    }

    /// Processes `data` read from the socket: handshake and alert bytes to send go
    /// to `wire` (in order, before anything encrypted after this call), decrypted
    /// application data to `plain`. `scratch` is the reactor's decryption buffer.
    /// On error, `wire` holds the alert to send, and the session takes no more
    /// output.
    pub fn read(
        &mut self,
        data: &[u8],
        scratch: &mut Vec<u8>,
        plain: &mut Vec<u8>,
        wire: &mut Vec<u8>,
    ) -> Result<ReadOutcome, TlsFailure> {
        let mut out = ReadOutcome::default();
        scratch.clear();
        scratch.extend_from_slice(&self.partial);
        scratch.extend_from_slice(data);
        self.partial = Vec::new();
        let mut start = 0;
        if let Stage::Handshake(conn) = &mut self.stage {
            match handshake(conn, scratch, &mut start, plain, wire, &mut out) {
                Err(e) => {
                    let rest = scratch.get_mut(start..).unwrap_or_default();
                    self.fail(rest, wire);
                    return Err(e.into());
                }
                Ok(true) => {
                    out.handshake_done = true;
                    if let Err(e) = self.take_keys() {
                        self.fail(&mut [], wire);
                        return Err(e.into());
                    }
                }
                Ok(false) => {}
            }
        }
        if let Stage::Traffic(t) = &mut self.stage {
            let rest = scratch.get_mut(start..).unwrap_or_default();
            match t.open(rest, plain, wire) {
                Ok(opened) => {
                    start += opened.consumed;
                    out.peer_closed |= opened.peer_closed;
                }
                Err(Fatal { error, alert }) => {
                    if let Some(alert) = alert {
                        t.seal_alert(alert, true, wire);
                    }
                    self.abandon();
                    return Err(error.into());
                }
            }
        }
        if let Some(rest) = scratch.get(start..)
            && !rest.is_empty()
        {
            self.partial = rest.to_vec();
        }
        if self.established && !self.held.is_empty() {
            for msg in std::mem::take(&mut self.held) {
                let sealed = self.seal(&msg)?;
                wire.extend_from_slice(&sealed.unwrap_or_default());
            }
        }
        Ok(out)
    }

    /// The handshake is done: rustls' connection gives up its traffic keys and is
    /// dropped; our record layer takes over at the sequence numbers it reached.
    fn take_keys(&mut self) -> Result<(), rustls::Error> {
        self.established = true;
        let Stage::Handshake(conn) = std::mem::replace(&mut self.stage, Stage::Gone) else {
            return Ok(());
        };
        let (secrets, kernel) = conn.dangerous_into_kernel_connection()?;
        self.stage = Stage::Traffic(Traffic::new(secrets, kernel)?);
        Ok(())
    }

    /// Stops output after a failure: what rustls queued (its alert last) goes to
    /// `wire`. `rest` is the input rustls has not discarded, as it last saw it: it
    /// may hold the start of a handshake message that rustls refers to by offset,
    /// so it is given back whole (an empty buffer made rustls slice past its end,
    /// a panic any TLS client could cause: fuzz `tls_records`, 2026-12-07).
    fn fail(&mut self, rest: &mut [u8], wire: &mut Vec<u8>) {
        self.abandon();
        self.partial = Vec::new();
        let Stage::Handshake(conn) = &mut self.stage else {
            return;
        };
        // rustls hands back what it queued (its alert last) before it reads input
        // again; once the queue is empty it reads `rest` again. So stop at the
        // alert: reading on would meet the bad record that failed, if it is there,
        // and queue a second alert (which rustls asserts against).
        for _ in 0..8 {
            match conn.process_tls_records(rest).state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    let at = wire.len();
                    encode_into(wire, |buf| e.encode(buf));
                    if is_alert(wire.get(at..).unwrap_or_default()) {
                        return;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(t)) => return t.done(),
                _ => return,
            }
        }
    }

    /// `data` as TLS records (`None`: held until the handshake completes, or the
    /// session takes no more output and it is dropped).
    pub fn seal(&mut self, data: &[u8]) -> Result<Option<Bytes>, TlsFailure> {
        if self.finished {
            return Ok(None);
        }
        let conn = match &mut self.stage {
            Stage::Handshake(conn) => conn,
            Stage::Traffic(t) => {
                let mut out = Vec::with_capacity(data.len() + 64);
                return match t.seal(data, &mut out) {
                    Ok(()) => Ok(Some(Bytes::from(out))),
                    Err(SealRefused::Limit) => Err(TlsFailure::KeyLimit),
                    Err(SealRefused::Broken) => {
                        self.finished = true;
                        Err(TlsFailure::Encrypt("sequence numbers exhausted".into()))
                    }
                };
            }
            Stage::Gone => return Ok(None),
        };
        let mut out = Vec::new();
        // Handshake messages rustls still has to send precede the data; a few
        // rounds at most.
        for _ in 0..8 {
            let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut self.partial);
            // Only whole records are ever consumed, and `partial` holds none: a
            // discard here would be a bug, and what it covers is dropped below.
            let step = match state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    encode_into(&mut out, |buf| e.encode(buf));
                    None
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    None
                }
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    // Not reached in practice: `read` hands over to our record
                    // layer as soon as rustls allows traffic.
                    let at = out.len();
                    let need = data.len() + (data.len() / 16_384 + 1) * RECORD_OVERHEAD;
                    out.resize(at + need, 0);
                    let n = loop {
                        match w.encrypt(data, out.get_mut(at..).unwrap_or_default()) {
                            Ok(n) => break n,
                            Err(EncryptError::InsufficientSize(s)) => {
                                out.resize(at + s.required_size, 0);
                            }
                            Err(e) => return Err(TlsFailure::Encrypt(e.to_string())),
                        }
                    };
                    out.truncate(at + n);
                    Some(true)
                }
                Ok(_) => Some(false),
                Err(e) => return Err(e.into()),
            };
            if discard > 0 {
                self.partial.drain(..discard.min(self.partial.len()));
            }
            match step {
                Some(true) => return Ok(Some(Bytes::from(out))),
                Some(false) => break,
                None => {}
            }
        }
        // The handshake has not allowed application data yet.
        if self.held.len() >= MAX_HELD {
            return Err(TlsFailure::TooEarly);
        }
        self.held.push(Bytes::copy_from_slice(data));
        Ok((!out.is_empty()).then(|| Bytes::from(out)))
    }

    /// The close_notify alert, once (`None`: the session takes no more output or
    /// the handshake never completed).
    pub fn close_notify(&mut self) -> Option<Bytes> {
        let done = std::mem::replace(&mut self.finished, true);
        let Stage::Traffic(t) = &mut self.stage else {
            return None;
        };
        if done {
            return None;
        }
        let mut out = Vec::with_capacity(32);
        t.seal_alert(rustls::AlertDescription::CloseNotify, false, &mut out);
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    /// The record layer after the handshake (tests reach into it).
    #[cfg(test)]
    pub fn traffic(&mut self) -> Option<&mut Traffic> {
        match &mut self.stage {
            Stage::Traffic(t) => Some(t),
            _ => None,
        }
    }

    /// Bytes kept for a partly arrived record (never more than one record: rustls
    /// refuses a longer record header).
    pub fn kept(&self) -> usize {
        self.partial.len()
    }
}

/// Drives rustls' handshake over `buf[*start..]`: handshake bytes to `wire`,
/// any application data rustls decrypts itself to `plain`. True once rustls
/// allows traffic (the handshake is done and its last flight, the TLS 1.3
/// tickets included, encoded); `*start` then points past what it consumed.
fn handshake(
    conn: &mut UnbufferedServerConnection,
    buf: &mut [u8],
    start: &mut usize,
    plain: &mut Vec<u8>,
    wire: &mut Vec<u8>,
    out: &mut ReadOutcome,
) -> Result<bool, rustls::Error> {
    loop {
        let Some(rest) = buf.get_mut(*start..) else {
            return Ok(false);
        };
        let UnbufferedStatus { mut discard, state } = conn.process_tls_records(rest);
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                *start += discard;
                return Err(e);
            }
        };
        let done = match state {
            ConnectionState::ReadTraffic(mut r) => {
                let mut failed = None;
                while let Some(rec) = r.next_record() {
                    match rec {
                        Ok(rec) => {
                            discard += rec.discard;
                            plain.extend_from_slice(rec.payload);
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    *start += discard;
                    return Err(e);
                }
                None
            }
            ConnectionState::EncodeTlsData(mut e) => {
                encode_into(wire, |buf| e.encode(buf));
                None
            }
            ConnectionState::TransmitTlsData(t) => {
                // The caller sends `wire` before anything encrypted later.
                t.done();
                None
            }
            ConnectionState::PeerClosed => {
                out.peer_closed = true;
                None
            }
            ConnectionState::WriteTraffic(_) => Some(true),
            // BlockedHandshake (more input needed), Closed, early data (not
            // enabled) and anything newer.
            _ => Some(false),
        };
        *start += discard;
        if let Some(done) = done {
            return Ok(done);
        }
    }
}

/// Whether `record` is one alert record as rustls sends it when a handshake
/// fails: in plaintext, or under TLS 1.2 keys (content type 21 outside), or
/// sealed under TLS 1.3 handshake keys (type 23 outside; 2 alert bytes, the inner
/// type and a 16-byte tag make 19, which no handshake message of rustls' fits).
fn is_alert(record: &[u8]) -> bool {
    match record {
        [21, 3, ..] => true,
        [23, 3, 3, 0, 19, ..] => record.len() == 24,
        _ => false,
    }
}

fn version_name(v: rustls::ProtocolVersion) -> Option<&'static str> {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => Some("1.3"),
        rustls::ProtocolVersion::TLSv1_2 => Some("1.2"),
        _ => None,
    }
}

/// Appends what `encode` writes to `wire`, growing it as rustls asks.
fn encode_into(
    wire: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) {
    let at = wire.len();
    let mut room = 4096;
    loop {
        wire.resize(at + room, 0);
        match encode(wire.get_mut(at..).unwrap_or_default()) {
            Ok(n) => {
                wire.truncate(at + n);
                return;
            }
            Err(EncodeError::InsufficientSize(s)) => room = s.required_size,
            Err(EncodeError::AlreadyEncoded) => {
                wire.truncate(at);
                return;
            }
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "traffic_tests.rs"]
mod traffic_tests;
