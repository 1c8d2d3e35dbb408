//! The PROXY header parser (v1 and v2), incremental over the bytes received so far.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, `\r\n` included (the specification's bound).
pub const MAX_V1_BYTES: usize = 107;
/// The smallest `max_bytes` [`parse`] accepts: a v2 header with IPv6 addresses and
/// the 216 bytes of TLVs the specification asks receivers to take.
pub const MIN_V2_BYTES: usize = 16 + 216;
/// What a v1 header starts with.
const V1_PREFIX: &[u8] = b"PROXY ";
/// Length of the fixed part of a v2 header.
const V2_FIXED: usize = 16;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied connection: the client's address and the one it connected to.
    Proxied {
        /// The real client.
        source: SocketAddr,
        /// The address the client connected to (the proxy's front).
        destination: SocketAddr,
    },
    /// v2 `LOCAL`: the proxy speaks for itself (a health check); the socket's peer
    /// is the address to use.
    Local,
    /// v1 `UNKNOWN`, or v2 with an address family this gateway does not use
    /// (`AF_UNSPEC`, `AF_UNIX`): the socket's peer is the address to use.
    Unknown,
}

impl ProxyHeader {
    /// The client's address, if the header names one.
    pub fn source(&self) -> Option<SocketAddr> {
        match *self {
            Self::Proxied { source, .. } => Some(source),
            Self::Local | Self::Unknown => None,
        }
    }
}

/// One step of [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The bytes so far are a valid start; more are needed.
    NeedMore,
    /// A complete header of `len` bytes (what follows is the connection's own data).
    Done {
        /// What it says.
        header: ProxyHeader,
        /// Its length in bytes.
        len: usize,
    },
}

/// Why the bytes are not a PROXY header (the connection is closed as bad input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Neither `PROXY ` nor the v2 signature.
    #[error("no PROXY protocol signature")]
    Signature,
    /// A v1 line without `\r\n` within 107 bytes.
    #[error("PROXY v1 header longer than {MAX_V1_BYTES} bytes")]
    V1TooLong,
    /// A v1 line that does not follow the grammar.
    #[error("malformed PROXY v1 header: {0}")]
    V1Syntax(&'static str),
    /// A v2 version nibble other than 2.
    #[error("PROXY v2 header with version {0}")]
    V2Version(u8),
    /// A v2 command other than LOCAL (0) or PROXY (1).
    #[error("PROXY v2 header with command {0}")]
    V2Command(u8),
    /// A v2 address family or transport that is not TCP over IPv4/IPv6 (or
    /// unspecified/unix, taken as unknown).
    #[error("PROXY v2 header with family/transport byte {0:#04x}")]
    V2Family(u8),
    /// A v2 header longer than the listener's bound.
    #[error("PROXY v2 header of {len} bytes, more than the {max} allowed")]
    V2TooLarge {
        /// The header's length (fixed part included).
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A v2 address block shorter than its family needs.
    #[error("PROXY v2 address block of {0} bytes is too short for its family")]
    V2Address(u16),
    /// A v2 TLV running past the end of the header.
    #[error("PROXY v2 TLV runs past the header")]
    V2Tlv,
}

impl ProxyError {
    /// Every [`ProxyError::reason`], in order (the `reason` label of
    /// `proxy_header_errors_total`, after `timeout`).
    pub const REASONS: [&'static str; 9] = [
        "signature",
        "v1_too_long",
        "v1_syntax",
        "v2_version",
        "v2_command",
        "v2_family",
        "v2_too_large",
        "v2_address",
        "v2_tlv",
    ];

    /// A short label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        let i = match self {
            Self::Signature => 0,
            Self::V1TooLong => 1,
            Self::V1Syntax(_) => 2,
            Self::V2Version(_) => 3,
            Self::V2Command(_) => 4,
            Self::V2Family(_) => 5,
            Self::V2TooLarge { .. } => 6,
            Self::V2Address(_) => 7,
            Self::V2Tlv => 8,
        };
        Self::REASONS.get(i).copied().unwrap_or("other")
    }
}

/// Parses the start of a connection's input: `buf` holds every byte received so
/// far. A v2 header longer than `max_bytes` (at least [`MIN_V2_BYTES`] is used) is
/// refused as soon as its length field arrives; a v1 header is at most
/// [`MAX_V1_BYTES`]. Errors are reported as early as the bytes allow (a wrong first
/// byte fails at once).
pub fn parse(buf: &[u8], max_bytes: usize) -> Result<Step, ProxyError> {
    let max_bytes = max_bytes.max(MIN_V2_BYTES);
    let Some(&first) = buf.first() else {
        return Ok(Step::NeedMore);
    };
    match first {
        b'P' => parse_v1(buf),
        b'\r' => parse_v2(buf, max_bytes),
        _ => Err(ProxyError::Signature),
    }
}

/// Whether `buf` and `prefix` agree on their common length.
fn agrees(buf: &[u8], prefix: &[u8]) -> bool {
    let n = buf.len().min(prefix.len());
    buf.get(..n) == prefix.get(..n)
}

fn parse_v1(buf: &[u8]) -> Result<Step, ProxyError> {
    if !agrees(buf, V1_PREFIX) {
        return Err(ProxyError::Signature);
    }
    let window = buf.get(..buf.len().min(MAX_V1_BYTES)).unwrap_or(buf);
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        if window.len() >= MAX_V1_BYTES {
            return Err(ProxyError::V1TooLong);
        }
        // A lone `\r` may be followed by anything but `\n` only at the end.
        if let Some(p) = window.iter().position(|&b| b == b'\r')
            && p + 1 < window.len()
        {
            return Err(ProxyError::V1Syntax("CR without LF"));
        }
        return Ok(Step::NeedMore);
    };
    // The same refusal once the CRLF is in: the answer must not depend on where
    // the reads were cut (fuzz `proxy_header`, 2026-12-07).
    if window.get(..cr).unwrap_or_default().contains(&b'\r') {
        return Err(ProxyError::V1Syntax("CR without LF"));
    }
    let line = window.get(V1_PREFIX.len()..cr).unwrap_or_default();
    let header = v1_line(line)?;
    Ok(Step::Done {
        header,
        len: cr + 2,
    })
}

/// The part of a v1 line after `PROXY `, without `\r\n`.
fn v1_line(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let text = std::str::from_utf8(line).map_err(|_| ProxyError::V1Syntax("not ASCII"))?;
    if let Some(rest) = text.strip_prefix("UNKNOWN") {
        // Anything may follow UNKNOWN up to the CRLF; it is ignored.
        return if rest.is_empty() || rest.starts_with(' ') {
            Ok(ProxyHeader::Unknown)
        } else {
            Err(ProxyError::V1Syntax("protocol"))
        };
    }
    let mut parts = text.split(' ');
    let proto = parts.next().unwrap_or_default();
    let v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(ProxyError::V1Syntax("protocol")),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(ProxyError::V1Syntax("field count"));
    };
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        if v6 {
            s.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            s.parse::<Ipv4Addr>().map(IpAddr::V4)
        }
        .map_err(|_| ProxyError::V1Syntax("address"))
    };
    Ok(ProxyHeader::Proxied {
        source: SocketAddr::new(ip(src)?, v1_port(sport)?),
        destination: SocketAddr::new(ip(dst)?, v1_port(dport)?),
    })
}

/// A decimal port, 0-65535, digits only, no leading zero.
fn v1_port(s: &str) -> Result<u16, ProxyError> {
    let bad = ProxyError::V1Syntax("port");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(bad);
    }
    s.parse().map_err(|_| bad)
}

fn parse_v2(buf: &[u8], max_bytes: usize) -> Result<Step, ProxyError> {
    if !agrees(buf, &V2_SIGNATURE) {
        return Err(ProxyError::Signature);
    }
    if let Some(&ver_cmd) = buf.get(12) {
        if ver_cmd >> 4 != 2 {
            return Err(ProxyError::V2Version(ver_cmd >> 4));
        }
        if ver_cmd & 0x0f > 1 {
            return Err(ProxyError::V2Command(ver_cmd & 0x0f));
        }
    }
    let (Some(&ver_cmd), Some(&fam), Some(&hi), Some(&lo)) =
        (buf.get(12), buf.get(13), buf.get(14), buf.get(15))
    else {
        return Ok(Step::NeedMore);
    };
    let body_len = u16::from_be_bytes([hi, lo]);
    let len = V2_FIXED + usize::from(body_len);
    if len > max_bytes {
        return Err(ProxyError::V2TooLarge {
            len,
            max: max_bytes,
        });
    }
    let Some(body) = buf.get(V2_FIXED..len) else {
        return Ok(Step::NeedMore);
    };
    // LOCAL: the proxy speaks for itself; the specification says to ignore the
    // address block (and so whatever follows it).
    if ver_cmd & 0x0f == 0 {
        return Ok(Step::Done {
            header: ProxyHeader::Local,
            len,
        });
    }
    // (address block length, IPv6) of TCP; `None`: no address this gateway counts by.
    let (used, addresses) = match fam {
        0x11 => (12usize, Some(false)),
        0x21 => (36, Some(true)),
        0x00 => (0, None),
        // Unix stream sockets: two 108-byte paths.
        0x31 => (216, None),
        _ => return Err(ProxyError::V2Family(fam)),
    };
    let tlvs = body.get(used..).ok_or(ProxyError::V2Address(body_len))?;
    // TLVs are skipped, but must frame within the header.
    check_tlvs(tlvs)?;
    let header = match addresses {
        None => ProxyHeader::Unknown,
        Some(v6) => v2_addresses(body, v6),
    };
    Ok(Step::Done { header, len })
}

/// The TLVs after the addresses: type (1), length (2, big endian), value.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let (Some(&hi), Some(&lo)) = (tlvs.get(1), tlvs.get(2)) else {
            return Err(ProxyError::V2Tlv);
        };
        let end = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = tlvs.get(end..).ok_or(ProxyError::V2Tlv)?;
    }
    Ok(())
}

fn v2_addresses(body: &[u8], v6: bool) -> ProxyHeader {
    let take = |at: usize, n: usize| body.get(at..at + n).unwrap_or_default();
    let port = |at: usize| {
        let p = take(at, 2);
        u16::from_be_bytes([
            p.first().copied().unwrap_or(0),
            p.get(1).copied().unwrap_or(0),
        ])
    };
    let (src, dst, ports) = if v6 {
        let a = |at| {
            IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(take(at, 16)).unwrap_or_default(),
            ))
        };
        (a(0), a(16), 32)
    } else {
        let a = |at| {
            IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(take(at, 4)).unwrap_or_default(),
            ))
        };
        (a(0), a(4), 8)
    };
    ProxyHeader::Proxied {
        source: SocketAddr::new(src, port(ports)),
        destination: SocketAddr::new(dst, port(ports + 2)),
    }
}
