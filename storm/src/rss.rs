//! The server's resident set, from `/proc/PID/status` (`VmRSS`), sampled before the
//! first connection, during the run (peak), and once every connection is open and
//! settled (end).

use std::io;

use serde::{Deserialize, Serialize};

/// Reads `VmRSS` (kB) of `pid`.
pub fn read_kb(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&text).ok_or_else(|| io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// `VmRSS:    8300 kB` → 8300.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Samples of one process's RSS over a run.
#[derive(Debug, Clone)]
pub struct Tracker {
    pid: u32,
    start_kb: u64,
    peak_kb: u64,
    end_kb: Option<u64>,
}

impl Tracker {
    /// Takes the start sample.
    pub fn start(pid: u32) -> io::Result<Self> {
        let kb = read_kb(pid)?;
        Ok(Self {
            pid,
            start_kb: kb,
            peak_kb: kb,
            end_kb: None,
        })
    }

    /// A sample during the run (a vanished process is ignored).
    pub fn sample(&mut self) -> Option<u64> {
        let kb = read_kb(self.pid).ok()?;
        self.peak_kb = self.peak_kb.max(kb);
        Some(kb)
    }

    /// The end sample.
    pub fn end(&mut self) {
        self.end_kb = self.sample().or(self.end_kb);
    }

    /// The report for `connections` open at the end.
    pub fn report(&self, connections: u64) -> RssReport {
        let end_kb = self.end_kb.unwrap_or(self.peak_kb);
        let growth = (end_kb as f64 - self.start_kb as f64) * 1024.0;
        RssReport {
            start_kb: self.start_kb,
            peak_kb: self.peak_kb,
            end_kb,
            growth_per_connection_bytes: if connections > 0 {
                growth / connections as f64
            } else {
                0.0
            },
        }
    }
}

/// The `server_rss` object of the report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RssReport {
    /// Before the first connection.
    pub start_kb: u64,
    /// Largest sample.
    pub peak_kb: u64,
    /// With every connection open and settled.
    pub end_kb: u64,
    /// `(end - start) / connections open at the end`, in bytes.
    pub growth_per_connection_bytes: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_samples_ourselves() {
        let text = "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    8300 kB\nThreads: 3\n";
        assert_eq!(parse_vm_rss(text), Some(8300));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        let mut t = Tracker::start(std::process::id()).unwrap();
        assert!(t.sample().unwrap() > 0);
        t.end();
        let r = t.report(0);
        assert!(r.peak_kb >= r.start_kb && r.peak_kb >= r.end_kb);
        assert_eq!(r.growth_per_connection_bytes, 0.0);
        let fixed = Tracker {
            pid: 0,
            start_kb: 1000,
            peak_kb: 3000,
            end_kb: Some(2000),
        };
        assert_eq!(fixed.report(1024).growth_per_connection_bytes, 1000.0);
    }
}
