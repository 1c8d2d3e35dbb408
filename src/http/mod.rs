//! Sans-IO HTTP/1.1 for the client listener: telling HTTP from binary frames by the
//! first byte ([`sniff`]), parsing a bounded request head ([`head`]), writing the
//! small responses the gateway sends itself ([`response`]) and serving the web
//! assets embedded in the binary ([`assets`]).
//!
//! Nothing here touches a socket or a clock: the reactor feeds bytes in and writes the
//! bytes that come out.

pub mod assets;
pub mod body;
pub mod head;
pub mod response;

/// What the first byte of a client connection says it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// A binary Switchboard frame (or garbage, which the framing layer refuses).
    Binary,
    /// An HTTP/1.x request: a WebSocket upgrade or a plain request.
    Http,
}

/// Tells the dialect of a connection from its first byte.
///
/// Every HTTP method is upper-case ASCII letters, and binary frames start with `SB`
/// (`crate::frame::MAGIC`): `b'A'..=b'Z'` except `b'S'` is HTTP, anything else binary,
/// so garbage still gets the binary layer's `BadMagic` error as before HTTP existed.
/// (No method the gateway serves starts with `S`.)
pub fn sniff(first: u8) -> Dialect {
    match first {
        b'S' => Dialect::Binary,
        b'A'..=b'Z' => Dialect::Http,
        _ => Dialect::Binary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_tells_methods_from_frames() {
        for m in [b"GET", b"PUT"] {
            assert_eq!(sniff(m[0]), Dialect::Http);
        }
        for first in [b'H', b'P', b'D', b'O', b'C', b'T', b'A', b'Z'] {
            assert_eq!(sniff(first), Dialect::Http);
        }
        assert_eq!(sniff(crate::frame::MAGIC[0]), Dialect::Binary);
        for first in [
            0u8, b'g', b'\r', b' ', 0x16, /* TLS */
            0xff, b'@', b'[',
        ] {
            assert_eq!(sniff(first), Dialect::Binary, "{first:#x}");
        }
    }
}
