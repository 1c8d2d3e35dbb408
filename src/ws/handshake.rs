//! The server side of the WebSocket opening handshake (RFC 6455 4.2): validating an
//! upgrade request, checking its Origin, negotiating the subprotocol, and the `101`
//! answer or the HTTP refusal.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};

use super::origin::OriginPolicy;
use crate::http::head::{Method, Request};
use crate::http::response::Response;

/// The GUID every accept key is derived with (RFC 6455 1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only WebSocket version there is (RFC 6455): sent back with a 426.
pub const VERSION: &str = "13";

/// The subprotocols this build speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subprotocol {
    /// `switchboard.v1.json`: one JSON message per text frame.
    Json,
    /// `switchboard.v1.bin`: binary Switchboard frames in binary WebSocket messages.
    Bin,
}

impl Subprotocol {
    /// Every subprotocol this build speaks.
    pub const ALL: [Self; 2] = [Self::Json, Self::Bin];

    /// The name on the wire (`Sec-WebSocket-Protocol`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "switchboard.v1.json",
            Self::Bin => "switchboard.v1.bin",
        }
    }

    /// The subprotocol with this exact name (names are case-sensitive tokens).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// An accepted upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The negotiated subprotocol (`None` when none was required and none offered
    /// matched, e.g. the echo listener).
    pub protocol: Option<Subprotocol>,
    /// The whole `101 Switching Protocols` head to write.
    pub response: Bytes,
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not `GET` (405).
    #[error("WebSocket upgrade must be GET")]
    NotGet,
    /// Not HTTP/1.1 (400).
    #[error("WebSocket upgrade needs HTTP/1.1")]
    NotHttp11,
    /// No `Upgrade: websocket` (400; an ordinary request never gets here).
    #[error("missing Upgrade: websocket")]
    NoUpgrade,
    /// No `upgrade` token in `Connection` (400).
    #[error("missing Connection: Upgrade")]
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13 (426 with `Sec-WebSocket-Version: 13`).
    #[error("unsupported WebSocket version (this server speaks 13)")]
    BadVersion,
    /// `Sec-WebSocket-Key` missing (400).
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
    /// `Sec-WebSocket-Key` not the base64 of 16 bytes (400).
    #[error("Sec-WebSocket-Key is not base64 of 16 bytes")]
    BadKey,
    /// The `Origin` is not allowed (403).
    #[error("origin not allowed")]
    Origin,
    /// None of the offered subprotocols is spoken here, or none was offered (400).
    #[error(
        "no supported subprotocol offered (this server speaks switchboard.v1.json, switchboard.v1.bin)"
    )]
    NoProtocol,
}

impl Refused {
    /// The HTTP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            Self::NotGet => 405,
            Self::BadVersion => 426,
            Self::Origin => 403,
            Self::NotHttp11
            | Self::NoUpgrade
            | Self::NoConnectionUpgrade
            | Self::MissingKey
            | Self::BadKey
            | Self::NoProtocol => 400,
        }
    }
}

/// A refused upgrade: why, and the response to write before closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub why: Refused,
    /// The HTTP error response (its body names the reason).
    pub response: Response,
}

impl From<Refused> for Refusal {
    fn from(why: Refused) -> Self {
        let mut response = Response::error(why.status(), &why.to_string());
        match why {
            Refused::BadVersion => {
                response = response.header("Sec-WebSocket-Version", VERSION);
            }
            Refused::NotGet => response = response.header("Allow", "GET"),
            _ => {}
        }
        Self { why, response }
    }
}

/// Validates an upgrade request and builds the `101` answer.
///
/// Checks, in order: `GET`, HTTP/1.1, `Upgrade: websocket`, `Connection: upgrade`,
/// version 13 (else 426 with `Sec-WebSocket-Version: 13`), a `Sec-WebSocket-Key` that
/// base64-decodes to 16 bytes, the Origin against `origins` (403), then picks the
/// subprotocol: the first of the client's offers this build speaks. With
/// `require_protocol`, an offer list with none we speak (or no offer at all) is refused
/// with 400 naming the two we speak; without it (the echo listener) no protocol is
/// negotiated.
pub fn accept(
    req: &Request,
    origins: &OriginPolicy,
    require_protocol: bool,
) -> Result<Upgrade, Refusal> {
    if req.method != Method::Get {
        return Err(Refused::NotGet.into());
    }
    if req.minor_version < 1 {
        return Err(Refused::NotHttp11.into());
    }
    if !req.upgrade_websocket {
        return Err(Refused::NoUpgrade.into());
    }
    if !req.connection_upgrade {
        return Err(Refused::NoConnectionUpgrade.into());
    }
    if req.ws_version.as_deref() != Some(VERSION) {
        return Err(Refused::BadVersion.into());
    }
    let key = req.ws_key.as_deref().ok_or(Refused::MissingKey)?;
    if !valid_key(key) {
        return Err(Refused::BadKey.into());
    }
    if !origins.allows(req.origin.as_deref(), req.host.as_deref()) {
        return Err(Refused::Origin.into());
    }
    let protocol = if require_protocol {
        let chosen = req
            .ws_protocols
            .iter()
            .find_map(|offer| Subprotocol::from_name(offer));
        Some(chosen.ok_or(Refused::NoProtocol)?)
    } else {
        None
    };
    Ok(Upgrade {
        protocol,
        response: switching_protocols(key, protocol),
    })
}

/// A key is the base64 of 16 random bytes: 24 characters, `==` at the end.
fn valid_key(key: &str) -> bool {
    let mut out = [0u8; 18];
    key.len() == 24 && STANDARD.decode_slice(key, &mut out) == Ok(16)
}

fn switching_protocols(key: &str, protocol: Option<Subprotocol>) -> Bytes {
    let mut out = BytesMut::with_capacity(160);
    out.put_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.put_slice(accept_key(key).as_bytes());
    out.put_slice(b"\r\n");
    if let Some(p) = protocol {
        out.put_slice(b"Sec-WebSocket-Protocol: ");
        out.put_slice(p.name().as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 4.2.2): the base64 of
/// the SHA-1 of the key and the protocol's GUID.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{HeadLimits, parse};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(extra: &str) -> Request {
        let raw = format!("GET /ws HTTP/1.1\r\nHost: gw.example:7810\r\n{extra}\r\n");
        parse(raw.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn good(extra: &str) -> Request {
        request(&format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}"
        ))
    }

    fn refused(req: &Request, require: bool) -> Refusal {
        accept(req, &OriginPolicy::same_host(), require).expect_err("refused")
    }

    fn body(r: &Response) -> String {
        String::from_utf8(r.to_bytes(false).to_vec()).unwrap()
    }

    #[test]
    fn rfc_accept_key() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn accepts_and_negotiates_the_first_offer_we_speak() {
        let req = good("Sec-WebSocket-Protocol: chat, switchboard.v1.bin, switchboard.v1.json\r\n");
        let up = accept(&req, &OriginPolicy::same_host(), true).unwrap();
        assert_eq!(up.protocol, Some(Subprotocol::Bin));
        assert_eq!(
            &up.response[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
              Sec-WebSocket-Protocol: switchboard.v1.bin\r\n\r\n"
        );
        let req = good(
            "Sec-WebSocket-Protocol: switchboard.v1.json\r\nOrigin: http://gw.example:7810\r\n",
        );
        let up = accept(&req, &OriginPolicy::same_host(), true).unwrap();
        assert_eq!(up.protocol, Some(Subprotocol::Json));
    }

    #[test]
    fn echo_listener_negotiates_nothing() {
        let up = accept(&good(""), &OriginPolicy::same_host(), false).unwrap();
        assert_eq!(up.protocol, None);
        assert!(!String::from_utf8_lossy(&up.response).contains("Sec-WebSocket-Protocol"));
        let up = accept(
            &good("Sec-WebSocket-Protocol: switchboard.v1.json\r\n"),
            &OriginPolicy::same_host(),
            false,
        )
        .unwrap();
        assert_eq!(up.protocol, None);
    }

    #[test]
    fn version_other_than_13_is_426_with_the_version() {
        for v in [
            "Sec-WebSocket-Version: 8\r\n",
            "Sec-WebSocket-Version: 14\r\n",
            "",
        ] {
            let req = request(&format!(
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n{v}"
            ));
            let r = refused(&req, false);
            assert_eq!(r.why, Refused::BadVersion);
            assert_eq!(r.response.status, 426);
            let text = body(&r.response);
            assert!(
                text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
                "{text}"
            );
            assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
        }
    }

    #[test]
    fn refusals_and_their_statuses() {
        let up = "Upgrade: websocket\r\n";
        let conn = "Connection: Upgrade\r\n";
        let ver = "Sec-WebSocket-Version: 13\r\n";
        let key = format!("Sec-WebSocket-Key: {KEY}\r\n");
        let cases: Vec<(Request, Refused, u16)> = vec![
            (
                parse(
                    format!("POST /ws HTTP/1.1\r\nHost: h\r\n{up}{conn}{ver}{key}\r\n").as_bytes(),
                    &HeadLimits::default(),
                )
                .unwrap()
                .unwrap()
                .0,
                Refused::NotGet,
                405,
            ),
            (
                parse(
                    format!("GET /ws HTTP/1.0\r\nHost: h\r\n{up}{conn}{ver}{key}\r\n").as_bytes(),
                    &HeadLimits::default(),
                )
                .unwrap()
                .unwrap()
                .0,
                Refused::NotHttp11,
                400,
            ),
            (
                request(&format!("{conn}{ver}{key}")),
                Refused::NoUpgrade,
                400,
            ),
            (
                request(&format!("{up}{ver}{key}")),
                Refused::NoConnectionUpgrade,
                400,
            ),
            (
                request(&format!("{up}{conn}{ver}")),
                Refused::MissingKey,
                400,
            ),
            (
                request(&format!("{up}{conn}{ver}Sec-WebSocket-Key: abc\r\n")),
                Refused::BadKey,
                400,
            ),
            // 15 bytes, base64 without padding (20 chars) and 17 bytes.
            (
                request(&format!(
                    "{up}{conn}{ver}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n"
                )),
                Refused::BadKey,
                400,
            ),
            (
                request(&format!(
                    "{up}{conn}{ver}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n"
                )),
                Refused::BadKey,
                400,
            ),
            (
                request(&format!(
                    "{up}{conn}{ver}Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n"
                )),
                Refused::BadKey,
                400,
            ),
            (
                good("Origin: https://evil.example\r\n"),
                Refused::Origin,
                403,
            ),
            (good("Origin: null\r\n"), Refused::Origin, 403),
            (good(""), Refused::NoProtocol, 400),
            (
                good("Sec-WebSocket-Protocol: chat, Switchboard.v1.json\r\n"),
                Refused::NoProtocol,
                400,
            ),
        ];
        for (req, why, status) in cases {
            let r = refused(&req, true);
            assert_eq!((r.why, r.response.status), (why, status), "{req:?}");
            assert_eq!(why.status(), status);
            assert!(body(&r.response).contains(&why.to_string()));
        }
        let r = refused(&good(""), true);
        let text = body(&r.response);
        assert!(text.contains("switchboard.v1.json") && text.contains("switchboard.v1.bin"));
    }

    #[test]
    fn subprotocol_names() {
        for p in Subprotocol::ALL {
            assert_eq!(Subprotocol::from_name(p.name()), Some(p));
        }
        assert_eq!(Subprotocol::from_name("switchboard.v1"), None);
    }
}
