//! How much memory the daemon may use: physical memory (`/proc/meminfo`), or the
//! limit of its cgroup (v2 `memory.max`, as systemd's `MemoryMax=` sets it) when
//! that is lower. Read once, when a budget is derived from it.

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
    fn auto_budget_is_a_sixteenth_with_a_floor() {
        use crate::config::auto_pending_total;
        assert_eq!(auto_pending_total(Some(24 << 30)), 3 << 29);
        assert_eq!(auto_pending_total(Some(256 << 20)), 64 << 20);
        assert_eq!(auto_pending_total(None), 256 << 20);
    }
}
