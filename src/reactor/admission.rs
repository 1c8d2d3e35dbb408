//! Connection limits against abuse: a global count, per-IP counts, and a per-reactor
//! accept rate. Checked once per accepted socket (a connection behind a PROXY header:
//! the total at accept, its client's address once the header is read); nothing here
//! runs per byte or frame.
//!
//! The global count is one shared atomic. Per-IP counts live in a few mutex-guarded
//! maps sharded by address hash, so reactors accepting from different addresses rarely
//! meet on a lock. The accept rate is a token bucket owned by each reactor (its share
//! of the configured rate), so it costs no shared state at all.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use crossbeam_utils::CachePadded;

use crate::clock::Mono;
use crate::config::Limits;
use crate::metrics::Reject;

/// Per-IP shards; a power of two.
const SHARDS: usize = 64;

/// A connection's per-IP key: a keyed hash of its address (an IPv6 address by its
/// /64 prefix, an IPv4-mapped IPv6 address as the IPv4 address).
pub(crate) type IpKey = u64;

/// One shard of the per-IP counts.
type IpCounts = CachePadded<Mutex<HashMap<IpKey, u32>>>;

/// The daemon-wide counts shared by every reactor.
#[derive(Debug)]
pub(crate) struct ConnLimits {
    /// Changed by a reload (SIGHUP); existing connections are never cut.
    max_total: AtomicU32,
    max_per_ip: AtomicU32,
    total: CachePadded<AtomicU32>,
    shards: Box<[IpCounts]>,
    hasher: RandomState,
}

impl ConnLimits {
    /// Empty counts for the configured limits.
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_total: AtomicU32::new(limits.max_connections),
            max_per_ip: AtomicU32::new(limits.max_connections_per_ip),
            total: CachePadded::new(AtomicU32::new(0)),
            shards: (0..SHARDS).map(|_| CachePadded::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Takes new limits (a reload); they apply to the next accepts.
    pub fn set(&self, limits: &Limits) {
        self.max_total
            .store(limits.max_connections, Ordering::Relaxed);
        self.max_per_ip
            .store(limits.max_connections_per_ip, Ordering::Relaxed);
    }

    /// The key counting `ip`.
    pub fn key(&self, ip: IpAddr) -> IpKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.hasher.hash_one(v4.octets()),
            IpAddr::V6(v6) => {
                let prefix = v6.octets();
                self.hasher.hash_one(prefix.get(..8).unwrap_or(&prefix))
            }
        }
    }

    fn shard(&self, key: IpKey) -> Option<&Mutex<HashMap<IpKey, u32>>> {
        self.shards.get((key as usize) & (SHARDS - 1)).map(|s| &**s)
    }

    /// Counts a new connection from `key`, or says which limit refuses it (and then
    /// counts nothing).
    pub fn admit(&self, key: IpKey) -> Result<(), Reject> {
        self.admit_total()?;
        let admitted = self.admit_ip(key);
        if admitted.is_err() {
            self.total.fetch_sub(1, Ordering::AcqRel);
        }
        admitted
    }

    /// Counts a new connection against `limits.max_connections` only: one behind a
    /// PROXY header, whose address is not known yet (see [`admit_ip`](Self::admit_ip)).
    pub fn admit_total(&self) -> Result<(), Reject> {
        let max = self.max_total.load(Ordering::Relaxed);
        self.total
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .map(drop)
            .map_err(|_| Reject::MaxConnections)
    }

    /// Counts a connection [`admit_total`](Self::admit_total) counted against its
    /// address's `limits.max_connections_per_ip`, or refuses it (counting nothing).
    pub fn admit_ip(&self, key: IpKey) -> Result<(), Reject> {
        let admitted = self.shard(key).and_then(|s| s.lock().ok()).map(|mut m| {
            let n = m.entry(key).or_insert(0);
            if *n < self.max_per_ip.load(Ordering::Relaxed) {
                *n += 1;
                true
            } else {
                false
            }
        });
        if admitted == Some(true) {
            Ok(())
        } else {
            Err(Reject::PerIp)
        }
    }

    /// Forgets a connection [`admit`](Self::admit) counted.
    pub fn release(&self, key: IpKey) {
        self.release_total();
        self.release_ip(key);
    }

    /// Forgets a connection only [`admit_total`](Self::admit_total) counted.
    pub fn release_total(&self) {
        self.total.fetch_sub(1, Ordering::AcqRel);
    }

    fn release_ip(&self, key: IpKey) {
        if let Some(mut m) = self.shard(key).and_then(|s| s.lock().ok())
            && let Some(n) = m.get_mut(&key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&key);
            }
        }
    }

    /// Connections counted now, over the whole daemon.
    #[cfg(test)]
    pub fn total(&self) -> u32 {
        self.total.load(Ordering::Relaxed)
    }
}

/// One reactor's share of `limits.accept_rate`: a token bucket refilled continuously.
#[derive(Debug)]
pub(crate) struct AcceptBucket {
    /// Tokens per second.
    rate: f64,
    burst: f64,
    tokens: f64,
    /// When tokens were last added (the bucket starts full, so the epoch will do).
    last: Mono,
}

impl AcceptBucket {
    /// A full bucket holding this reactor's share (of `reactors`) of the rate and burst.
    pub fn new(limits: &Limits, reactors: usize) -> Self {
        let n = reactors.max(1) as f64;
        let rate = (f64::from(limits.accept_rate) / n).max(1.0);
        let burst = (f64::from(limits.accept_burst) / n).max(1.0);
        Self {
            rate,
            burst,
            tokens: burst,
            last: Mono::ZERO,
        }
    }

    /// Takes one token if there is one at `now`.
    pub fn take(&mut self, now: Mono) -> bool {
        let elapsed = now.since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Rejections are logged at most once per second per reactor, with the count since
/// the last line, so a flood cannot flood the log.
#[derive(Debug)]
pub(crate) struct RejectLog {
    last: Option<Mono>,
    suppressed: u64,
}

impl RejectLog {
    /// Nothing logged yet.
    pub fn new() -> Self {
        Self {
            last: None,
            suppressed: 0,
        }
    }

    /// Logs a rejection unless one was logged in the last second.
    pub fn note(&mut self, reactor: u16, why: Reject, peer: IpAddr, now: Mono) {
        if self.last.is_some_and(|t| now.since(t).as_secs() < 1) {
            self.suppressed += 1;
            return;
        }
        self.last = Some(now);
        let suppressed = std::mem::take(&mut self.suppressed);
        tracing::warn!(
            reactor,
            reason = why.label(),
            %peer,
            suppressed_since_last_line = suppressed,
            "connection refused by a limit"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn limits(total: u32, per_ip: u32) -> Limits {
        Limits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..Limits::default()
        }
    }

    #[test]
    fn per_ip_and_total_limits_count_and_release() {
        let l = ConnLimits::new(&limits(3, 2));
        let a = l.key(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        let b = l.key(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(l.admit(a), Ok(()));
        assert_eq!(l.admit(a), Ok(()));
        assert_eq!(l.admit(a), Err(Reject::PerIp));
        assert_eq!(l.total(), 2);
        assert_eq!(l.admit(b), Ok(()));
        assert_eq!(l.admit(b), Err(Reject::MaxConnections));
        l.release(a);
        assert_eq!(l.admit(b), Ok(()));
        assert_eq!(l.admit(b), Err(Reject::MaxConnections));
        l.release(b);
        l.release(b);
        l.release(a);
        assert_eq!(l.total(), 0);
        assert!(l.shards.iter().all(|s| s.lock().unwrap().is_empty()));
    }

    #[test]
    fn a_proxied_connection_counts_in_two_steps() {
        let l = ConnLimits::new(&limits(3, 1));
        let a = l.key(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        // The proxy's connections count only in the total until their header says
        // who the client is.
        assert_eq!(l.admit_total(), Ok(()));
        assert_eq!(l.admit_total(), Ok(()));
        assert_eq!(l.admit_ip(a), Ok(()));
        assert_eq!(l.admit_ip(a), Err(Reject::PerIp));
        l.release_total();
        assert_eq!(l.total(), 1);
        assert_eq!(l.admit_total(), Ok(()));
        assert_eq!(l.admit_total(), Ok(()));
        assert_eq!(l.admit_total(), Err(Reject::MaxConnections));
        l.release(a);
        l.release_total();
        l.release_total();
        assert_eq!(l.total(), 0);
        assert!(l.shards.iter().all(|s| s.lock().unwrap().is_empty()));
    }

    #[test]
    fn ipv6_counts_by_64_prefix_and_mapped_v4_as_v4() {
        let l = ConnLimits::new(&limits(10, 10));
        let x: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let y: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let z: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(l.key(x.into()), l.key(y.into()));
        assert_ne!(l.key(x.into()), l.key(z.into()));
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(l.key(v4.into()), l.key(v4.to_ipv6_mapped().into()));
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let l = Limits {
            accept_rate: 20,
            accept_burst: 10,
            ..Limits::default()
        };
        let mut b = AcceptBucket::new(&l, 2);
        let t0 = Mono::from_ms(60_000);
        let burst = (0..100).filter(|_| b.take(t0)).count();
        assert_eq!(burst, 5);
        // 10 per second per reactor: 0.5 s refills 5.
        let later = t0.plus_ms(500);
        assert_eq!((0..100).filter(|_| b.take(later)).count(), 5);
    }
}
