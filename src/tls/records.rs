//! The record layer after the handshake ("kTLS in user space"): once rustls has
//! finished the handshake, its connection is turned into raw traffic keys
//! (`dangerous_into_kernel_connection`) and dropped, and records are sealed and
//! opened here with *ring*'s AEADs. Per direction only the key bytes, the IV and
//! the sequence number stay between records (about 100 bytes for both); the key
//! schedule (AES round keys, GHASH table) is expanded for each batch of records and
//! dropped after it. For TLS 1.3 rustls' small `KernelConnection` is kept too: it
//! holds the traffic secrets that a KeyUpdate advances.
//!
//! What it accepts after the handshake is what a server needs and nothing more:
//! application data, close_notify (and the warnings RFC 8446/5246 allow to be
//! ignored), and in TLS 1.3 a KeyUpdate alone at the end of its record. Everything
//! else (renegotiation, stray handshake messages, change_cipher_spec, a bad tag,
//! an oversize record, a fatal alert) fails the connection with the alert rustls
//! would send.

use ring::aead;
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{
    AlertDescription, ConnectionTrafficSecrets, ContentType, Error, ExtractedSecrets,
    HandshakeType, InvalidMessage, PeerMisbehaved, SupportedCipherSuite,
};
use zeroize::Zeroize;

/// Most plaintext in one record (RFC 8446 §5.1, RFC 5246 §6.2.1).
pub(crate) const MAX_PLAIN: usize = 16_384;
/// Most ciphertext a record may carry (RFC 8446 §5.2: 2^14 + 256); longer is
/// `record_overflow` before anything is decrypted.
pub(crate) const MAX_CIPHER: usize = MAX_PLAIN + 256;
const HEADER: usize = 5;
const TAG: usize = 16;
/// TLS 1.2 AES-GCM: the explicit part of the nonce carried in each record.
const EXPLICIT: usize = 8;
/// Records kept in reserve below the confidentiality limit: the KeyUpdate (TLS
/// 1.3) or close_notify (TLS 1.2) that has to go out under the old key.
const LIMIT_RESERVE: u64 = 2;

/// The AEADs the daemon's suites use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Alg {
    fn ring(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes128Gcm => &aead::AES_128_GCM,
            Self::Aes256Gcm => &aead::AES_256_GCM,
            Self::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// One direction's key material: raw bytes (wiped on drop) and the next
/// sequence number.
struct Keys {
    alg: Alg,
    key: [u8; 32],
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

impl Keys {
    fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Result<Self, Error> {
        let (alg, key, iv) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Alg::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Alg::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Alg::Chacha20Poly1305, key, iv)
            }
            _ => return Err(Error::General("unsupported traffic secrets".into())),
        };
        let mut keys = Self {
            alg,
            key: [0; 32],
            iv: [0; aead::NONCE_LEN],
            seq,
        };
        let (k, i) = (key.as_ref(), iv.as_ref());
        if k.len() != alg.ring().key_len() || i.len() != aead::NONCE_LEN {
            return Err(Error::General("traffic secrets of the wrong size".into()));
        }
        keys.key
            .get_mut(..k.len())
            .unwrap_or_default()
            .copy_from_slice(k);
        keys.iv.copy_from_slice(i);
        Ok(keys)
    }

    /// The expanded key (AES key schedule or ChaCha key), for one batch of records.
    fn expand(&self) -> Result<aead::LessSafeKey, Error> {
        let alg = self.alg.ring();
        let key = self.key.get(..alg.key_len()).unwrap_or_default();
        aead::UnboundKey::new(alg, key)
            .map(aead::LessSafeKey::new)
            .map_err(|_| Error::EncryptError)
    }

    /// Takes a sequence number (refusing the last: RFC 8446 §5.3).
    fn next_seq(&mut self) -> Result<u64, Error> {
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(Error::EncryptError)?;
        Ok(seq)
    }
}

/// A fatal condition: the error (for the failure metric and log) and the alert to
/// send, if one is due (none after the peer's own fatal alert).
#[derive(Debug)]
pub(crate) struct Fatal {
    pub error: Error,
    pub alert: Option<AlertDescription>,
}

impl Fatal {
    fn new(error: Error, alert: AlertDescription) -> Self {
        Self {
            error,
            alert: Some(alert),
        }
    }

    fn unexpected(got: ContentType) -> Self {
        Self::new(
            Error::InappropriateMessage {
                expect_types: vec![ContentType::ApplicationData],
                got_type: got,
            },
            AlertDescription::UnexpectedMessage,
        )
    }

    fn decode(e: InvalidMessage) -> Self {
        Self::new(Error::InvalidMessage(e), AlertDescription::DecodeError)
    }

    fn overflow() -> Self {
        Self::new(
            Error::InvalidMessage(InvalidMessage::MessageTooLarge),
            AlertDescription::RecordOverflow,
        )
    }

    fn bad_mac() -> Self {
        Self::new(Error::DecryptError, AlertDescription::BadRecordMac)
    }
}

impl From<Error> for Fatal {
    fn from(error: Error) -> Self {
        Self::new(error, AlertDescription::InternalError)
    }
}

/// What [`Traffic::open`] did with a buffer.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Opened {
    /// Bytes of whole records consumed (the rest starts a record).
    pub consumed: usize,
    /// close_notify arrived: no more plaintext comes (what followed it is dropped).
    pub peer_closed: bool,
}

/// Why [`Traffic::seal`] refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SealRefused {
    /// TLS 1.2 reached its key's confidentiality limit: close_notify is all that
    /// may still go out.
    Limit,
    /// Sequence numbers or the key are unusable (not expected).
    Broken,
}

/// A connection's record layer after the handshake.
pub(crate) struct Traffic {
    tls13: bool,
    rx: Keys,
    tx: Keys,
    /// Records one key may encrypt (the suite's confidentiality limit).
    limit: u64,
    /// TLS 1.3: the traffic secrets behind the keys, for KeyUpdate.
    kernel: Option<Box<KernelConnection<ServerConnectionData>>>,
    peer_closed: bool,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic")
            .field("tls13", &self.tls13)
            .field("alg", &self.tx.alg)
            .field("rx_seq", &self.rx.seq)
            .field("tx_seq", &self.tx.seq)
            .finish_non_exhaustive()
    }
}

impl Traffic {
    /// The record layer for a finished handshake's `secrets`.
    pub fn new(
        secrets: ExtractedSecrets,
        kernel: KernelConnection<ServerConnectionData>,
    ) -> Result<Self, Error> {
        let suite = kernel.negotiated_cipher_suite();
        let (tls13, limit) = match suite {
            SupportedCipherSuite::Tls13(s) => (true, s.common.confidentiality_limit),
            SupportedCipherSuite::Tls12(s) => (false, s.common.confidentiality_limit),
        };
        Self::from_parts(secrets, tls13, limit, tls13.then(|| Box::new(kernel)))
    }

    /// The layer from raw parts (the fuzz entry drives a client end this way).
    pub(crate) fn from_parts(
        secrets: ExtractedSecrets,
        tls13: bool,
        limit: u64,
        kernel: Option<Box<KernelConnection<ServerConnectionData>>>,
    ) -> Result<Self, Error> {
        let ExtractedSecrets { tx, rx } = secrets;
        Ok(Self {
            tls13,
            rx: Keys::new(rx.0, rx.1)?,
            tx: Keys::new(tx.0, tx.1)?,
            limit,
            kernel,
            peer_closed: false,
        })
    }

    /// A layer on a rustls *client*'s extracted `secrets` (no key updates): the
    /// tests and the fuzz entry seal records with it that a rustls client would
    /// not send, and read what the server sends.
    pub(crate) fn client_end(secrets: ExtractedSecrets, tls13: bool) -> Result<Self, Error> {
        Self::from_parts(secrets, tls13, u64::MAX, None)
    }

    /// Whether this is TLS 1.3.
    pub fn tls13(&self) -> bool {
        self.tls13
    }

    /// Lowers the confidentiality limit (tests reach it without 2^24 records).
    #[cfg(test)]
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Opens the whole records at the start of `buf` (decrypted in place):
    /// application data is appended to `plain`, a KeyUpdate answer to `wire`.
    pub fn open(
        &mut self,
        buf: &mut [u8],
        plain: &mut Vec<u8>,
        wire: &mut Vec<u8>,
    ) -> Result<Opened, Fatal> {
        let mut out = Opened::default();
        if self.peer_closed {
            out.consumed = buf.len();
            out.peer_closed = true;
            return Ok(out);
        }
        let mut key = None;
        while let Some(header) = buf.get(out.consumed..out.consumed + HEADER) {
            let typ = ContentType::from(header[0]);
            if header[1] != 3 {
                return Err(Fatal::decode(InvalidMessage::UnknownProtocolVersion));
            }
            if matches!(typ, ContentType::Unknown(_)) {
                return Err(Fatal::decode(InvalidMessage::InvalidContentType));
            }
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if len > MAX_CIPHER {
                return Err(Fatal::overflow());
            }
            let end = out.consumed + HEADER + len;
            let Some(record) = buf.get_mut(out.consumed..end) else {
                break;
            };
            out.consumed = end;
            let (header, body) = record.split_at_mut(HEADER);
            let k = match &key {
                Some(k) => k,
                None => key.insert(self.rx.expand()?),
            };
            let (inner, payload) = self.open_record(k, header, body)?;
            match inner {
                ContentType::ApplicationData => plain.extend_from_slice(payload),
                ContentType::Alert => {
                    if self.on_alert(payload)? {
                        self.peer_closed = true;
                        out.peer_closed = true;
                        out.consumed = buf.len();
                        return Ok(out);
                    }
                }
                ContentType::Handshake if self.tls13 => {
                    let requested = key_update(payload)?;
                    self.update_rx()?;
                    key = None;
                    if requested {
                        self.send_key_update(wire)?;
                    }
                }
                other => return Err(Fatal::unexpected(other)),
            }
        }
        Ok(out)
    }

    /// Decrypts one record in place; its inner content type and plaintext.
    fn open_record<'a>(
        &mut self,
        key: &aead::LessSafeKey,
        header: &[u8],
        body: &'a mut [u8],
    ) -> Result<(ContentType, &'a [u8]), Fatal> {
        let outer = ContentType::from(header[0]);
        let seq = self.rx.next_seq().map_err(Fatal::from)?;
        let mut nonce = self.rx.nonce_at(seq);
        let plain: &'a mut [u8] = if self.tls13 {
            if outer != ContentType::ApplicationData {
                // change_cipher_spec is only tolerated during the handshake.
                return Err(Fatal::unexpected(outer));
            }
            key.open_in_place(nonce_of(nonce), aead::Aad::from(header), body)
                .map_err(|_| Fatal::bad_mac())?
        } else {
            if outer == ContentType::ChangeCipherSpec {
                return Err(Fatal::unexpected(outer));
            }
            let body = if self.rx.alg == Alg::Chacha20Poly1305 {
                body
            } else {
                let Some((explicit, rest)) = body.split_at_mut_checked(EXPLICIT) else {
                    return Err(Fatal::bad_mac());
                };
                nonce
                    .get_mut(4..)
                    .unwrap_or_default()
                    .copy_from_slice(explicit);
                rest
            };
            let Some(len) = body.len().checked_sub(TAG) else {
                return Err(Fatal::bad_mac());
            };
            let aad = tls12_aad(seq, header[0], len);
            key.open_in_place(nonce_of(nonce), aead::Aad::from(aad), body)
                .map_err(|_| Fatal::bad_mac())?
        };
        let (inner, payload) = if self.tls13 {
            // TLSInnerPlaintext: content ‖ type ‖ zero padding.
            let Some(at) = plain.iter().rposition(|&b| b != 0) else {
                return Err(Fatal::new(
                    Error::PeerMisbehaved(PeerMisbehaved::IllegalTlsInnerPlaintext),
                    AlertDescription::UnexpectedMessage,
                ));
            };
            let (payload, rest) = plain.split_at(at);
            (ContentType::from(rest[0]), payload)
        } else {
            (outer, &*plain)
        };
        if payload.len() > MAX_PLAIN {
            return Err(Fatal::overflow());
        }
        if inner != ContentType::ApplicationData && payload.is_empty() {
            return Err(Fatal::decode(InvalidMessage::InvalidEmptyPayload));
        }
        Ok((inner, payload))
    }

    /// An alert from the peer: true for close_notify, false for a warning that
    /// may be ignored, an error for anything else (no alert is sent back).
    fn on_alert(&self, payload: &[u8]) -> Result<bool, Fatal> {
        let [level, desc] = payload else {
            return Err(Fatal::decode(InvalidMessage::TrailingData("Alert")));
        };
        let desc = AlertDescription::from(*desc);
        if desc == AlertDescription::CloseNotify {
            return Ok(true);
        }
        // TLS 1.3 ignores only user_canceled (RFC 8446 §6.1); TLS 1.2 warnings.
        let ignorable = if self.tls13 {
            desc == AlertDescription::UserCanceled
        } else {
            *level == 1
        };
        if ignorable {
            return Ok(false);
        }
        Err(Fatal {
            error: Error::AlertReceived(desc),
            alert: None,
        })
    }

    fn update_rx(&mut self) -> Result<(), Fatal> {
        let kernel = self
            .kernel
            .as_mut()
            .ok_or(Fatal::unexpected(ContentType::Handshake))?;
        let (seq, secrets) = kernel.update_rx_secret()?;
        self.rx = Keys::new(seq, secrets)?;
        Ok(())
    }

    /// Sends KeyUpdate(update_not_requested) under the current key, then moves
    /// to the next.
    fn send_key_update(&mut self, wire: &mut Vec<u8>) -> Result<(), Fatal> {
        let key = self.tx.expand()?;
        let msg = [u8::from(HandshakeType::KeyUpdate), 0, 0, 1, 0];
        self.seal_record(&key, ContentType::Handshake, &msg, wire)?;
        let kernel = self.kernel.as_mut().ok_or(Error::EncryptError)?;
        let (seq, secrets) = kernel.update_tx_secret()?;
        self.tx = Keys::new(seq, secrets)?;
        Ok(())
    }

    /// `data` as application-data records appended to `out`. In TLS 1.3 a
    /// KeyUpdate goes out first when the key nears its confidentiality limit; in
    /// TLS 1.2 the layer refuses instead (only close_notify may follow).
    pub fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SealRefused> {
        let mut key = self.tx.expand().map_err(|_| SealRefused::Broken)?;
        let mut rest = data;
        loop {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_PLAIN));
            rest = tail;
            if self.tx.seq >= self.limit.saturating_sub(LIMIT_RESERVE) {
                if !self.tls13 {
                    return Err(SealRefused::Limit);
                }
                self.send_key_update(out).map_err(|_| SealRefused::Broken)?;
                key = self.tx.expand().map_err(|_| SealRefused::Broken)?;
            }
            self.seal_record(&key, ContentType::ApplicationData, chunk, out)
                .map_err(|_| SealRefused::Broken)?;
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    /// An alert record (`fatal`: level 2, else 1).
    pub fn seal_alert(&mut self, desc: AlertDescription, fatal: bool, out: &mut Vec<u8>) {
        let Ok(key) = self.tx.expand() else {
            return;
        };
        let payload = [if fatal { 2 } else { 1 }, u8::from(desc)];
        // Failing here means the sequence space is exhausted: nothing can be sent.
        let _ = self.seal_record(&key, ContentType::Alert, &payload, out);
    }

    /// Seals one record of type `typ` (payload at most [`MAX_PLAIN`]) onto `out`.
    pub(crate) fn seal_record(
        &mut self,
        key: &aead::LessSafeKey,
        typ: ContentType,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let seq = self.tx.next_seq()?;
        let nonce = self.tx.nonce_at(seq);
        let start = out.len();
        let (outer, explicit) = if self.tls13 {
            (ContentType::ApplicationData, 0)
        } else if self.tx.alg == Alg::Chacha20Poly1305 {
            (typ, 0)
        } else {
            (typ, EXPLICIT)
        };
        let inner = usize::from(self.tls13);
        let len = explicit + payload.len() + inner + TAG;
        let len16 = u16::try_from(len).map_err(|_| Error::EncryptError)?;
        out.push(u8::from(outer));
        out.extend_from_slice(&[3, 3]);
        out.extend_from_slice(&len16.to_be_bytes());
        out.extend_from_slice(nonce.get(4..4 + explicit).unwrap_or_default());
        let body = out.len();
        out.extend_from_slice(payload);
        if self.tls13 {
            out.push(u8::from(typ));
        }
        let sealed = if self.tls13 {
            let (head, body) = out.split_at_mut(body);
            let header = head.get(start..start + HEADER).unwrap_or_default();
            key.seal_in_place_separate_tag(nonce_of(nonce), aead::Aad::from(header), body)
        } else {
            let aad = tls12_aad(seq, u8::from(typ), payload.len());
            let body = out.get_mut(body..).unwrap_or_default();
            key.seal_in_place_separate_tag(nonce_of(nonce), aead::Aad::from(aad), body)
        };
        let Ok(tag) = sealed else {
            // No plaintext may stay behind in the output.
            out.truncate(start);
            return Err(Error::EncryptError);
        };
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// The expanded transmit key (for callers sealing several records).
    pub(crate) fn tx_key(&self) -> Result<aead::LessSafeKey, Error> {
        self.tx.expand()
    }
}

impl Keys {
    /// The nonce of record `seq` (RFC 8446 §5.3, and RFC 7905 for ChaCha in TLS
    /// 1.2; for AES-GCM in TLS 1.2 rustls' IV holds salt ‖ initial explicit
    /// nonce, and the explicit nonce sent is this nonce's last 8 bytes).
    fn nonce_at(&self, seq: u64) -> [u8; aead::NONCE_LEN] {
        let mut n = self.iv;
        for (b, s) in n.iter_mut().skip(4).zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }
}

fn nonce_of(bytes: [u8; aead::NONCE_LEN]) -> aead::Nonce {
    aead::Nonce::assume_unique_for_key(bytes)
}

/// TLS 1.2's additional data: seq ‖ type ‖ version ‖ plaintext length.
fn tls12_aad(seq: u64, typ: u8, len: usize) -> [u8; 13] {
    let mut aad = [0; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = typ;
    aad[9] = 3;
    aad[10] = 3;
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// A TLS 1.3 post-handshake handshake record: only a single KeyUpdate, whole in
/// its record, is accepted (RFC 8446 §5.1: it must end the record; a server
/// without client authentication expects no other). Whether an update was
/// requested.
fn key_update(payload: &[u8]) -> Result<bool, Fatal> {
    let [typ, 0, 0, 1, request] = payload else {
        let got = payload
            .first()
            .copied()
            .map_or(HandshakeType::KeyUpdate, HandshakeType::from);
        if got == HandshakeType::KeyUpdate {
            // Fragmented, longer, or followed by more: refused rather than joined.
            return Err(Fatal::new(
                Error::PeerMisbehaved(PeerMisbehaved::KeyEpochWithPendingFragment),
                AlertDescription::UnexpectedMessage,
            ));
        }
        return Err(unexpected_handshake(got));
    };
    let typ = HandshakeType::from(*typ);
    if typ != HandshakeType::KeyUpdate {
        return Err(unexpected_handshake(typ));
    }
    match request {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Fatal::new(
            Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate),
            AlertDescription::IllegalParameter,
        )),
    }
}

fn unexpected_handshake(got: HandshakeType) -> Fatal {
    Fatal::new(
        Error::InappropriateHandshakeMessage {
            expect_types: vec![HandshakeType::KeyUpdate],
            got_type: got,
        },
        AlertDescription::UnexpectedMessage,
    )
}
