//! What this machine allows a load generator: open files per process, ephemeral ports
//! per source address, and cores.

/// File descriptors a process keeps for itself beyond its sockets (stdio, epoll
/// instances, wakers, pipes to child processes, `/proc` reads).
pub const FD_RESERVE: u64 = 256;

/// Raises the soft open-file limit to the hard limit and returns the new soft limit
/// (the library's, shared with the benches).
pub use switchboard::bench_support::raise_nofile;

/// Sockets one process may open under an open-file limit of `nofile`.
pub fn sockets_per_process(nofile: u64) -> u64 {
    nofile.saturating_sub(FD_RESERVE).max(1)
}

/// How many ephemeral ports one source address has (from
/// `/proc/sys/net/ipv4/ip_local_port_range`; 28,232 when it cannot be read, the
/// Linux default range 32768–60999).
pub fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut it = text.split_whitespace().map(|s| s.parse::<u64>().ok());
            let lo = it.next()??;
            let hi = it.next()??;
            Some(hi.saturating_sub(lo).saturating_add(1))
        })
        .unwrap_or(28_232)
}

/// Cores available to this process (at least 1).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nofile_is_raised_to_at_least_the_old_soft_limit() {
        let n = raise_nofile().unwrap();
        assert!(n >= 64, "{n}");
        assert_eq!(sockets_per_process(20_000), 19_744);
        assert_eq!(sockets_per_process(10), 1);
        assert!(ephemeral_ports() > 1000);
    }
}
