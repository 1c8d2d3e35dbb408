//! WebSocket close status codes (RFC 6455 7.4 and the IANA registry).

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The endpoint is going away (server shutdown, page navigated away).
pub const GOING_AWAY: u16 = 1001;
/// A protocol error.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A data type the endpoint cannot accept.
pub const UNSUPPORTED: u16 = 1003;
/// No status code was present (never sent; reported for an empty Close).
pub const NO_STATUS: u16 = 1005;
/// Data inconsistent with the message type (e.g. text that is not UTF-8).
pub const INVALID_PAYLOAD: u16 = 1007;
/// A message that violates the endpoint's policy.
pub const POLICY: u16 = 1008;
/// A message too big to process.
pub const TOO_BIG: u16 = 1009;
/// An unexpected condition in the server.
pub const INTERNAL: u16 = 1011;
/// Overloaded: try again later.
pub const TRY_AGAIN: u16 = 1013;

/// Whether a peer may send `code` in a Close frame: 1000-1003, 1007-1014 (1012-1014
/// are IANA-registered since RFC 6455), and the application ranges 3000-4999. 1004 is
/// reserved, 1005/1006/1015 are never sent, and 0-999, 1016-2999 and 5000+ are not
/// codes at all.
pub fn valid_received(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_valid_ranges() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(valid_received(ok), "{ok}");
        }
        for bad in [
            0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!valid_received(bad), "{bad}");
        }
    }
}
