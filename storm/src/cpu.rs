//! The server's CPU time, from `/proc/PID/stat` (`utime + stime`, all threads),
//! sampled when the run starts, at the start and end of the measurement window
//! (`go + warmup`, `go + warmup + duration`) and at the end. CPU-seconds per message
//! are stable where latency percentiles on a shared machine are not.

use std::io;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Clock ticks per second of `/proc/PID/stat` (`USER_HZ`, 100 on every Linux ABI).
const TICKS_PER_S: f64 = 100.0;

/// `utime + stime` of `pid`, in clock ticks.
pub fn read_ticks(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_ticks(&text)
        .ok_or_else(|| io::Error::other(format!("cannot parse /proc/{pid}/stat")))
}

/// Fields 14 and 15 (`utime`, `stime`) of a `stat` line. The command name (field 2)
/// is in parentheses and may hold spaces, so fields are counted after its last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // After the name: state is field 3, so utime (14) is the 12th and stime the 13th.
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Samples of one process's CPU time over a run.
#[derive(Debug, Clone)]
pub struct Tracker {
    pid: u32,
    start: u64,
    warmup: Duration,
    duration: Duration,
    go: Option<Instant>,
    /// (when, ticks) at the window's start and end.
    window: [Option<(Instant, u64)>; 2],
    end: Option<u64>,
}

impl Tracker {
    /// Takes the start sample.
    pub fn start(pid: u32, warmup: Duration, duration: Duration) -> io::Result<Self> {
        Ok(Self {
            pid,
            start: read_ticks(pid)?,
            warmup,
            duration,
            go: None,
            window: [None, None],
            end: None,
        })
    }

    /// The steady stage started at `at`.
    pub fn go(&mut self, at: Instant) {
        self.go.get_or_insert(at);
    }

    /// Takes the window's samples when they are due (call every coordinator tick).
    pub fn tick(&mut self, now: Instant) {
        let Some(go) = self.go else {
            return;
        };
        let due = [go + self.warmup, go + self.warmup + self.duration];
        for (slot, at) in self.window.iter_mut().zip(due) {
            if slot.is_none() && now >= at {
                if let Ok(t) = read_ticks(self.pid) {
                    *slot = Some((now, t));
                }
                // The end is not taken in the same tick as the start.
                return;
            }
        }
    }

    /// The end sample (a vanished process keeps what was sampled).
    pub fn end(&mut self) {
        self.end = read_ticks(self.pid).ok();
    }

    /// The report for `messages` counted in the measurement window.
    pub fn report(&self, messages: u64) -> CpuReport {
        let secs = |ticks: u64| ticks as f64 / TICKS_PER_S;
        let total_s = secs(self.end.unwrap_or(self.start).saturating_sub(self.start));
        let (window_s, window_cpu_s) = match self.window {
            [Some((a, ta)), Some((b, tb))] => (
                b.saturating_duration_since(a).as_secs_f64(),
                secs(tb.saturating_sub(ta)),
            ),
            _ => (0.0, 0.0),
        };
        // The samples' span differs from the storm window by up to a tick: scale.
        let per_window = if window_s > 0.0 {
            window_cpu_s * self.duration.as_secs_f64() / window_s
        } else {
            0.0
        };
        CpuReport {
            total_s,
            window_s,
            window_cpu_s,
            cores_busy: if window_s > 0.0 {
                window_cpu_s / window_s
            } else {
                0.0
            },
            us_per_message: if messages > 0 {
                per_window * 1e6 / messages as f64
            } else {
                0.0
            },
        }
    }
}

/// The `server_cpu` object of the report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuReport {
    /// CPU-seconds (user + system, all threads) from start to end of the run.
    pub total_s: f64,
    /// Wall seconds between the window's two samples.
    pub window_s: f64,
    /// CPU-seconds between the window's two samples.
    pub window_cpu_s: f64,
    /// `window_cpu_s / window_s`: cores the server kept busy.
    pub cores_busy: f64,
    /// Server CPU per message counted in the window, µs.
    pub us_per_message: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let line = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_stat_ticks(line), Some(325));
        assert_eq!(parse_stat_ticks("42 (x) S 1"), None);
        assert!(read_ticks(std::process::id()).is_ok());
    }

    #[test]
    fn window_figures_scale_to_the_storm_window() {
        let t0 = Instant::now();
        let mut t = Tracker {
            pid: 0,
            start: 1000,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            go: Some(t0),
            window: [Some((t0, 1100)), Some((t0 + Duration::from_secs(10), 1600))],
            end: Some(1700),
        };
        let r = t.report(1_000_000);
        assert_eq!(r.total_s, 7.0);
        assert_eq!(r.window_cpu_s, 5.0);
        assert!((r.cores_busy - 0.5).abs() < 1e-9);
        assert!((r.us_per_message - 5.0).abs() < 1e-9);
        t.window[1] = None;
        assert_eq!(t.report(10).us_per_message, 0.0);
    }
}
