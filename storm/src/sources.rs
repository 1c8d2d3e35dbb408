//! Source addresses: parsing `--source-addrs` (ranges and lists), the loopback rule,
//! and spreading connections over the addresses round-robin.
//!
//! Each client socket is bound to `(source, 0)` before it connects, so the kernel picks
//! its port from the ephemeral range *of that address*: N addresses give N times the
//! ports one address has, which is what lets one machine open tens of thousands of
//! connections to a single server port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Most addresses a range may expand to.
pub const MAX_SOURCES: usize = 4096;

/// Why a `--source-addrs` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// A part is not an IP address.
    #[error("{0:?} is not an IP address")]
    NotAnAddress(String),
    /// A range's ends are not both IPv4 or run backwards.
    #[error("{0:?} is not an IPv4 range low-high with low <= high")]
    BadRange(String),
    /// A range is too long.
    #[error("{0:?} expands to more than {MAX_SOURCES} addresses")]
    TooMany(String),
    /// Nothing was given.
    #[error("no source addresses given")]
    Empty,
    /// A source is not on loopback and `--allow-remote` was not given.
    #[error("source address {0} is not loopback; pass --allow-remote to use it")]
    NotLoopback(IpAddr),
    /// Sources and target are of different address families.
    #[error("source address {from} cannot reach target {target} (address family)")]
    Family {
        /// The source.
        from: IpAddr,
        /// The target.
        target: SocketAddr,
    },
}

/// Parses `127.0.0.2-127.0.0.9`, `127.0.0.2,127.0.0.3`, or a comma list mixing both
/// (`127.0.0.2-127.0.0.5,127.0.0.9`). `none` means "do not bind" (empty list).
/// Ranges are IPv4 only and inclusive; duplicates are kept (they weight an address).
pub fn parse(spec: &str) -> Result<Vec<IpAddr>, SourceError> {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((lo, hi)) => {
                let bad = || SourceError::BadRange(part.to_owned());
                let lo: Ipv4Addr = lo.trim().parse().map_err(|_| bad())?;
                let hi: Ipv4Addr = hi.trim().parse().map_err(|_| bad())?;
                let (lo, hi) = (u32::from(lo), u32::from(hi));
                if lo > hi {
                    return Err(bad());
                }
                let n = usize::try_from(hi - lo).unwrap_or(usize::MAX);
                if n >= MAX_SOURCES || out.len() + n >= MAX_SOURCES {
                    return Err(SourceError::TooMany(part.to_owned()));
                }
                out.extend((lo..=hi).map(|a| IpAddr::V4(Ipv4Addr::from(a))));
            }
            None => out.push(
                part.parse()
                    .map_err(|_| SourceError::NotAnAddress(part.to_owned()))?,
            ),
        }
        if out.len() > MAX_SOURCES {
            return Err(SourceError::TooMany(part.to_owned()));
        }
    }
    if out.is_empty() {
        return Err(SourceError::Empty);
    }
    Ok(out)
}

/// The sources used when `--source-addrs` is not given: 127.0.0.2 to 127.0.0.9 for an
/// IPv4 loopback target, none (the kernel chooses) otherwise.
pub fn default_for(target: SocketAddr) -> Vec<IpAddr> {
    match target.ip() {
        IpAddr::V4(v4) if v4.is_loopback() => (2..=9)
            .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether an address is loopback (IPv4-mapped IPv6 loopback counts).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Checks sources against the target: same family, and loopback unless
/// `allow_remote`.
pub fn check(
    sources: &[IpAddr],
    target: SocketAddr,
    allow_remote: bool,
) -> Result<(), SourceError> {
    for &s in sources {
        if s.is_ipv4() != target.is_ipv4() {
            return Err(SourceError::Family { from: s, target });
        }
        if !allow_remote && !is_loopback(s) {
            return Err(SourceError::NotLoopback(s));
        }
    }
    Ok(())
}

/// The source of connection `global_index` (0-based over the whole run, all
/// processes): round-robin over `sources`; `None` when there are none.
pub fn pick(sources: &[IpAddr], global_index: u64) -> Option<IpAddr> {
    if sources.is_empty() {
        return None;
    }
    let i = usize::try_from(global_index % sources.len() as u64).unwrap_or(0);
    sources.get(i).copied()
}

/// Connections per source address for `connections` spread round-robin (the most any
/// one address gets).
pub fn max_per_source(sources: usize, connections: u64) -> u64 {
    if sources == 0 {
        connections
    } else {
        connections.div_ceil(sources as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_lists_and_mixtures_parse() {
        let r = parse("127.0.0.2-127.0.0.9").unwrap();
        assert_eq!(r.len(), 8);
        assert_eq!(r[0], v4("127.0.0.2"));
        assert_eq!(r[7], v4("127.0.0.9"));
        assert_eq!(
            parse("127.0.0.2, 127.0.0.3").unwrap(),
            vec![v4("127.0.0.2"), v4("127.0.0.3")]
        );
        assert_eq!(
            parse("127.0.0.2-127.0.0.3,127.0.0.9").unwrap(),
            vec![v4("127.0.0.2"), v4("127.0.0.3"), v4("127.0.0.9")]
        );
        assert_eq!(parse("127.0.0.5-127.0.0.5").unwrap(), vec![v4("127.0.0.5")]);
        // Ranges cross octet boundaries.
        assert_eq!(parse("127.0.0.255-127.0.1.1").unwrap().len(), 3);
        assert_eq!(parse("::1").unwrap(), vec![v4("::1")]);
        assert_eq!(parse("none").unwrap(), Vec::<IpAddr>::new());
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(matches!(
            parse("127.0.0.9-127.0.0.2"),
            Err(SourceError::BadRange(_))
        ));
        assert!(matches!(
            parse("127.0.0.1-::1"),
            Err(SourceError::BadRange(_))
        ));
        assert!(matches!(
            parse("localhost"),
            Err(SourceError::NotAnAddress(_))
        ));
        assert!(matches!(
            parse("127.0.0.300"),
            Err(SourceError::NotAnAddress(_))
        ));
        assert_eq!(parse(" , "), Err(SourceError::Empty));
        assert!(matches!(
            parse("10.0.0.0-10.1.0.0"),
            Err(SourceError::TooMany(_))
        ));
    }

    #[test]
    fn round_robin_assignment() {
        let s = parse("127.0.0.2-127.0.0.4").unwrap();
        let picked: Vec<IpAddr> = (0..7).map(|i| pick(&s, i).unwrap()).collect();
        assert_eq!(
            picked,
            ["2", "3", "4", "2", "3", "4", "2"].map(|l| v4(&format!("127.0.0.{l}")))
        );
        assert_eq!(pick(&[], 5), None);
        // Every address gets within one of its fair share.
        let mut counts = [0u64; 3];
        for i in 0..1000 {
            let ip = pick(&s, i).unwrap();
            counts[s.iter().position(|&x| x == ip).unwrap()] += 1;
        }
        assert_eq!(counts, [334, 333, 333]);
        assert_eq!(max_per_source(3, 1000), 334);
        assert_eq!(max_per_source(0, 1000), 1000);
    }

    #[test]
    fn defaults_and_the_loopback_rule() {
        let lo: SocketAddr = "127.0.0.1:7700".parse().unwrap();
        let d = default_for(lo);
        assert_eq!(d.len(), 8);
        assert!(check(&d, lo, false).is_ok());
        assert!(default_for("[::1]:7700".parse().unwrap()).is_empty());
        assert!(default_for("192.0.2.1:7700".parse().unwrap()).is_empty());

        let remote = [v4("192.0.2.7")];
        assert_eq!(
            check(&remote, "192.0.2.1:7700".parse().unwrap(), false),
            Err(SourceError::NotLoopback(v4("192.0.2.7")))
        );
        assert!(check(&remote, "192.0.2.1:7700".parse().unwrap(), true).is_ok());
        assert!(matches!(
            check(&[v4("::1")], lo, false),
            Err(SourceError::Family { .. })
        ));
        assert!(is_loopback(v4("::ffff:127.0.0.1")));
    }
}
