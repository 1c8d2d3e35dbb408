//! How much memory the daemon may use: physical memory (`/proc/meminfo`), or the
//! limit of its cgroup (v2 `memory.max`, as systemd's `MemoryMax=` sets it) when
//! that is lower. Read once, when a budget is derived from it. And whether the
//! kernel's TCP stack is short of socket memory (`net.ipv4.tcp_mem`).

use std::path::Path;

/// Bytes of memory available to this process, if it can be told.
pub(crate) fn available_bytes() -> Option<u64> {
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| mem_total(&s));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| cgroup_path(&s).map(str::to_owned))
        .and_then(|p| {
            let file = Path::new("/sys/fs/cgroup")
                .join(p.trim_start_matches('/'))
                .join("memory.max");
            std::fs::read_to_string(file).ok()
        })
        .and_then(|s| memory_max(&s));
    match (physical, cgroup) {
        (Some(p), Some(c)) => Some(p.min(c)),
        (p, c) => p.or(c),
    }
}

/// Whether the kernel's TCP memory is under pressure (past `net.ipv4.tcp_mem`'s
/// middle value, until it falls below the first): sockets then get no room to
/// receive, and output to even a reading peer stalls. `false` if it cannot be told.
pub(crate) fn tcp_memory_pressure() -> bool {
    std::fs::read_to_string("/proc/net/protocols").is_ok_and(|s| tcp_pressure_in(&s))
}

/// The `press` column of the `TCP` line of `/proc/net/protocols`.
fn tcp_pressure_in(protocols: &str) -> bool {
    let mut lines = protocols.lines();
    let Some(col) = lines
        .next()
        .and_then(|h| h.split_whitespace().position(|c| c == "press"))
    else {
        return false;
    };
    lines
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("TCP")).then(|| l.split_whitespace().nth(col))
        })
        .flatten()
        .any(|p| p == "yes")
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The cgroup v2 path (`0::/path`) from `/proc/self/cgroup`.
fn cgroup_path(cgroup: &str) -> Option<&str> {
    cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

/// A cgroup v2 `memory.max` value in bytes (`max`: no limit).
fn memory_max(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo_cgroup_and_memory_max() {
        let meminfo = "MemFree:  1000 kB\nMemTotal:       24683064 kB\nBuffers: 1 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_683_064 * 1024));
        assert_eq!(mem_total("nothing here"), None);
        assert_eq!(
            cgroup_path("1:name=systemd:/x\n0::/system.slice/switchboard.service\n"),
            Some("/system.slice/switchboard.service")
        );
        assert_eq!(memory_max("max\n"), None);
        assert_eq!(memory_max("1073741824\n"), Some(1 << 30));
    }

    #[test]
    fn reads_the_tcp_pressure_column() {
        let head = "protocol  size sockets  memory press maxhdr  slab module\n";
        let tcp6 = "TCPv6     2432      0  153925   yes     192   yes  kernel\n";
        let tcp = |p: &str| format!("TCP       2304    425  153925   {p}     192   yes  kernel\n");
        assert!(tcp_pressure_in(&format!("{head}{tcp6}{}", tcp("yes"))));
        assert!(!tcp_pressure_in(&format!("{head}{tcp6}{}", tcp("no"))));
        assert!(!tcp_pressure_in("garbage"));
        // Whatever this machine says, reading it works.
        let _ = tcp_memory_pressure();
    }

    #[test]
    fn auto_budget_is_a_sixteenth_with_a_floor() {
        use crate::config::auto_pending_total;
        assert_eq!(auto_pending_total(Some(24 << 30)), 3 << 29);
        assert_eq!(auto_pending_total(Some(256 << 20)), 64 << 20);
        assert_eq!(auto_pending_total(None), 256 << 20);
    }
}
