//! The PROXY protocol, versions 1 (text) and 2 (binary), as haproxy, nginx and cloud
//! load balancers send it first on a connection to tell the real client's address
//! (<https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt>).
//!
//! Sans-IO: [`parse`] looks at the bytes received so far and answers "need more",
//! a complete [`ProxyHeader`] with its length (the bytes after it belong to the
//! connection's own protocol), or a typed [`ProxyError`]. It never reads past the
//! header, never allocates and never panics. [`trusted`] holds the CIDR lists of
//! `trusted_proxies`; `encode.rs` the encoder the tests use.
//!
//! - `parse.rs`: the parser and its errors;
//! - `cidr.rs`: `trusted_proxies` entries (`10.0.0.0/8`);
//! - `encode.rs`: header encoder (tests, fuzz seeds, and anyone writing a client).

mod cidr;
mod encode;
mod parse;

pub use cidr::{Cidr, CidrError};
pub use encode::{encode_v1, encode_v2};
pub use parse::{MAX_V1_BYTES, MIN_V2_BYTES, ProxyError, ProxyHeader, Step, V2_SIGNATURE, parse};

/// Whether `ip` falls in any of `list` (an IPv4-mapped IPv6 address as its IPv4).
pub fn trusted(list: &[Cidr], ip: std::net::IpAddr) -> bool {
    let ip = ip.to_canonical();
    list.iter().any(|c| c.contains(ip))
}

#[cfg(test)]
mod tests;

/// The fuzz target's body (`fuzz/fuzz_targets/proxy_header.rs`), also run by the
/// unit properties so it builds and holds without nightly: parsing never panics, a
/// complete header is no longer than the input nor the bound, parsing exactly the
/// header's bytes gives the same answer, and every shorter prefix needs more or
/// fails the same way.
#[doc(hidden)]
pub fn fuzz_check(bytes: &[u8], max: usize) {
    let bound = max.max(MIN_V2_BYTES);
    match parse(bytes, max) {
        Ok(Step::Done { header, len }) => {
            assert!(
                len <= bytes.len() && len <= bound.max(MAX_V1_BYTES),
                "len {len}"
            );
            let alone = bytes.get(..len).unwrap_or(bytes);
            assert_eq!(parse(alone, max), Ok(Step::Done { header, len }));
            if let Some(shorter) = bytes.get(..len.saturating_sub(1))
                && len > 0
            {
                assert_eq!(parse(shorter, max), Ok(Step::NeedMore));
            }
        }
        Ok(Step::NeedMore) => {}
        Err(e) => {
            assert!(ProxyError::REASONS.contains(&e.reason()));
            let _ = e.to_string();
        }
    }
}
