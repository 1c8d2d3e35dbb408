//! Writing PROXY headers: what the tests (and fuzz seeds) send, and a reference
//! for anyone writing a proxy in front of the gateway.

use std::net::SocketAddr;

use super::parse::{ProxyHeader, V2_SIGNATURE};

/// A v1 (text) header. `Local` has no v1 form and is written as `UNKNOWN`, like
/// a pair of addresses of different families.
pub fn encode_v1(header: &ProxyHeader) -> Vec<u8> {
    let line = match *header {
        ProxyHeader::Proxied {
            source: SocketAddr::V4(s),
            destination: SocketAddr::V4(d),
        } => format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        ProxyHeader::Proxied {
            source: SocketAddr::V6(s),
            destination: SocketAddr::V6(d),
        } => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        _ => "PROXY UNKNOWN\r\n".to_owned(),
    };
    line.into_bytes()
}

/// A v2 (binary) header followed by `tlvs` (type, value) pairs. Addresses of two
/// different families are written as `AF_UNSPEC`.
pub fn encode_v2(header: &ProxyHeader, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    let mut body = Vec::new();
    let (cmd, fam) = match *header {
        ProxyHeader::Local => (0x20, 0x00),
        ProxyHeader::Unknown => (0x21, 0x00),
        ProxyHeader::Proxied {
            source: SocketAddr::V4(s),
            destination: SocketAddr::V4(d),
        } => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
            (0x21, 0x11)
        }
        ProxyHeader::Proxied {
            source: SocketAddr::V6(s),
            destination: SocketAddr::V6(d),
        } => {
            body.extend_from_slice(&s.ip().octets());
            body.extend_from_slice(&d.ip().octets());
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
            (0x21, 0x21)
        }
        ProxyHeader::Proxied { .. } => (0x21, 0x00),
    };
    for (kind, value) in tlvs {
        body.push(*kind);
        let n = u16::try_from(value.len()).unwrap_or(u16::MAX);
        body.extend_from_slice(&n.to_be_bytes());
        body.extend_from_slice(value.get(..usize::from(n)).unwrap_or(value));
    }
    out.push(cmd);
    out.push(fam);
    let n = u16::try_from(body.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&body);
    out
}
