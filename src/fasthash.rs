//! Hash maps for the per-message paths, where std's SipHash was a visible share of
//! the workers' CPU. Which hasher a map gets depends on who chooses its keys:
//!
//! - [`ClientMap`]: keys a client can choose (message ids, user ids, group names).
//!   foldhash, seeded at random per map: fast, and keys crafted to collide cannot be
//!   found from outside (HashDoS).
//! - [`ServerMap`]: keys only the server assigns (connection ids, conversation ids).
//!   FxHash, unseeded: the fastest, and nobody outside picks what goes in (a lookup of
//!   a made-up key costs no more than any other miss).

/// A map keyed by values a client can choose: randomly seeded foldhash.
pub(crate) type ClientMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A map keyed by values only the server assigns: FxHash.
pub(crate) type ServerMap<K, V> = rustc_hash::FxHashMap<K, V>;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn client_maps_are_seeded_differently() {
        // Two maps hash the same key differently: the seed is random, not fixed.
        let (a, b) = (
            ClientMap::<u64, ()>::default(),
            ClientMap::<u64, ()>::default(),
        );
        let differs = (0..8u64).any(|k| a.hasher().hash_one(k) != b.hasher().hash_one(k));
        assert!(differs);
    }

    #[test]
    fn maps_work_as_maps() {
        let mut c = ClientMap::default();
        c.insert("user".to_owned(), 1);
        assert_eq!(c.get("user"), Some(&1));
        let mut s = ServerMap::default();
        s.insert(7u64, "x");
        assert_eq!(s.remove(&7), Some("x"));
    }
}
