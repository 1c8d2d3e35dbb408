//! The results: the JSON object (`--json`), the human summary, and the HdrHistogram
//! percentile distribution (`--hgrm`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::cli::{Plan, ScenarioKind};
use crate::cpu::CpuReport;
use crate::rss::RssReport;
use crate::stats::{Percentiles, SIGFIG, Stats};

/// The one JSON object `--json` prints. Field names are a contract with the bench
/// scripts (`benches/compare.sh`): only add fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// `connect`, `idle`, `echo`, `ping`, `chat` or `fanout`.
    pub scenario: String,
    /// The server address.
    pub target: String,
    /// `protocol` (Hello/Welcome, frames) or `raw` (plain TCP).
    pub wire: String,
    /// `tcp`, `ws-json` or `ws-bin` (`--transport`).
    #[serde(default)]
    pub transport: String,
    /// Echo: `flood` or `pingpong`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mode: Option<String>,
    /// Connections established (handshake done; TCP connected when raw).
    pub connections: u64,
    /// Connections asked for.
    pub connections_requested: u64,
    /// Connections that failed before being established.
    pub connections_failed: u64,
    /// Connections still open at the end of the measurement (survivors).
    pub connections_open_at_end: u64,
    /// Client processes.
    pub procs: usize,
    /// Engine threads per process.
    pub threads: usize,
    /// `--size`.
    pub size: usize,
    /// `--rate` as given (connections/s for connect and idle, messages/s per
    /// connection for echo and ping; 0 = as fast as possible).
    pub rate: f64,
    /// Connections established per second (after the warm-up for `connect`).
    pub connect_rate_per_s: f64,
    /// Messages completed in the window: handshakes (connect), heartbeat round
    /// trips (idle), echoes (echo), Pongs (ping).
    pub messages: u64,
    /// `messages` per second of window.
    pub messages_per_s: f64,
    /// Bytes received in the window.
    pub bytes: u64,
    /// `bytes` per second of window.
    pub bytes_per_s: f64,
    /// Bytes sent in the window.
    pub bytes_sent: u64,
    /// `bytes_sent` per second of window.
    pub bytes_sent_per_s: f64,
    /// The scenario's round-trip latency, µs (HdrHistogram, 3 significant digits).
    pub latency_us: Percentiles,
    /// Connect latency of every connection, µs (connect start → Welcome, or TCP
    /// connected when raw).
    pub connect_latency_us: Percentiles,
    /// chat: visitor → agent latency (send → `Deliver`), µs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_v2a_us: Option<Percentiles>,
    /// chat: agent → visitor latency (send → `Deliver`), µs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_a2v_us: Option<Percentiles>,
    /// fanout: latency of every single delivery (admin's send → member's receipt), µs.
    /// (`latency_us` holds one sample per notice: the time to reach every member.)
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_delivery_us: Option<Percentiles>,
    /// chat and fanout: the scenario's counters (`accepted`, `delivered`,
    /// `notices_sent`, `members`). Absent when none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub counters: BTreeMap<String, u64>,
    /// Errors by kind (`refused`, `timeout`, `reset`, `eof`,
    /// `server_error_<code>_<name>`, `bye_<code>_<name>`, ...). Empty when none.
    pub errors: BTreeMap<String, u64>,
    /// The measurement window, seconds (for connect: first attempt after the warm-up
    /// to the last connection established).
    pub duration_s: f64,
    /// `--warmup`, seconds.
    pub warmup_s: f64,
    /// Wall time of the whole run, seconds.
    pub elapsed_s: f64,
    /// Cut short by the overall timeout or a signal.
    pub interrupted: bool,
    /// The server's memory, with `--server-pid`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub server_rss: Option<RssReport>,
    /// The server's CPU time, with `--server-pid`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub server_cpu: Option<CpuReport>,
    /// connect with `--server-pid`: connections established per CPU-second the server
    /// spent over the whole run (with `--tls --raw`: TLS handshakes per CPU-second).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub connects_per_server_cpu_s: Option<f64>,
}

/// The percentiles of the scenario histogram `name` when running `kind` (empty
/// percentiles if nothing was recorded).
fn named(plan: &Plan, s: &Stats, kind: ScenarioKind, name: &str) -> Option<Percentiles> {
    (plan.scenario == kind).then(|| s.hists.get(name).map(Percentiles::of).unwrap_or_default())
}

impl Report {
    /// The report of a run.
    pub fn new(
        plan: &Plan,
        s: &Stats,
        rss: Option<RssReport>,
        cpu: Option<CpuReport>,
        elapsed_s: f64,
    ) -> Self {
        Self {
            scenario: plan.scenario.name().into(),
            target: plan.target.to_string(),
            wire: plan.wire().into(),
            transport: plan.transport.name().into(),
            mode: (plan.scenario == ScenarioKind::Echo).then(|| plan.mode.name().into()),
            connections: s.connected,
            connections_requested: s.requested,
            connections_failed: s.failed,
            connections_open_at_end: s.open_at_end,
            procs: plan.procs,
            threads: plan.threads,
            size: plan.size,
            rate: plan.rate,
            connect_rate_per_s: s.connect_rate(),
            messages: s.messages,
            messages_per_s: s.per_s(s.messages),
            bytes: s.bytes_in,
            bytes_per_s: s.per_s(s.bytes_in),
            bytes_sent: s.bytes_out,
            bytes_sent_per_s: s.per_s(s.bytes_out),
            latency_us: Percentiles::of(&s.rtt),
            connect_latency_us: Percentiles::of(&s.connect),
            latency_v2a_us: named(plan, s, ScenarioKind::Chat, "v2a"),
            latency_a2v_us: named(plan, s, ScenarioKind::Chat, "a2v"),
            latency_delivery_us: named(plan, s, ScenarioKind::Fanout, "delivery"),
            counters: s.counters.clone(),
            errors: s.errors.clone(),
            duration_s: s.window_s(),
            warmup_s: plan.warmup.as_secs_f64(),
            elapsed_s,
            interrupted: s.interrupted,
            server_rss: rss,
            connects_per_server_cpu_s: cpu
                .filter(|c| plan.scenario == ScenarioKind::Connect && c.total_s > 0.0)
                .map(|c| s.connected as f64 / c.total_s),
            server_cpu: cpu,
        }
    }

    /// The JSON object on one line.
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human summary.
    pub fn text(&self) -> String {
        let mut r = String::new();
        let mode = self
            .mode
            .as_deref()
            .map(|m| format!(" {m}"))
            .unwrap_or_default();
        let _ = writeln!(
            r,
            "storm {}{mode} -> {} ({} over {}), {} process{} x {} thread{}",
            self.scenario,
            self.target,
            self.wire,
            self.transport,
            self.procs,
            if self.procs == 1 { "" } else { "es" },
            self.threads,
            if self.threads == 1 { "" } else { "s" },
        );
        let _ = writeln!(
            r,
            "  connections  {} of {} established, {} failed, {} open at the end; {} conn/s",
            group(self.connections),
            group(self.connections_requested),
            group(self.connections_failed),
            group(self.connections_open_at_end),
            group_f(self.connect_rate_per_s),
        );
        let _ = writeln!(
            r,
            "  connect (us) {}",
            percentiles(&self.connect_latency_us)
        );
        let _ = writeln!(
            r,
            "  window       {:.2} s measured (warm-up {:.2} s excluded), {:.2} s in all{}",
            self.duration_s,
            self.warmup_s,
            self.elapsed_s,
            if self.interrupted {
                "; INTERRUPTED"
            } else {
                ""
            }
        );
        let _ = writeln!(
            r,
            "  messages     {} ({}/s)",
            group(self.messages),
            group_f(self.messages_per_s)
        );
        let _ = writeln!(
            r,
            "  bytes        {} received ({}/s), {} sent ({}/s)",
            bytes(self.bytes as f64),
            bytes(self.bytes_per_s),
            bytes(self.bytes_sent as f64),
            bytes(self.bytes_sent_per_s),
        );
        let _ = writeln!(r, "  latency (us) {}", percentiles(&self.latency_us));
        for (name, p) in [
            ("v->a (us)   ", &self.latency_v2a_us),
            ("a->v (us)   ", &self.latency_a2v_us),
            ("each (us)   ", &self.latency_delivery_us),
        ] {
            if let Some(p) = p {
                let _ = writeln!(r, "  {name} {}", percentiles(p));
            }
        }
        if !self.counters.is_empty() {
            let list: Vec<String> = self
                .counters
                .iter()
                .map(|(k, v)| format!("{k} {}", group(*v)))
                .collect();
            let _ = writeln!(r, "  counters     {}", list.join(", "));
        }
        if self.errors.is_empty() {
            let _ = writeln!(r, "  errors       none");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k} {}", group(*v)))
                .collect();
            let _ = writeln!(r, "  errors       {}", list.join(", "));
        }
        if let Some(m) = &self.server_rss {
            let _ = writeln!(
                r,
                "  server RSS   start {} kB, peak {} kB, end {} kB: {:+.0} B per open connection",
                group(m.start_kb),
                group(m.peak_kb),
                group(m.end_kb),
                m.growth_per_connection_bytes
            );
        }
        if let Some(c) = &self.server_cpu {
            let _ = writeln!(
                r,
                "  server CPU   {:.2} CPU-s in the window ({:.2} cores busy), {:.2} us per message; {:.2} CPU-s in all",
                c.window_cpu_s, c.cores_busy, c.us_per_message, c.total_s
            );
        }
        if let Some(per) = self.connects_per_server_cpu_s {
            let _ = writeln!(
                r,
                "  server CPU   {} connections per CPU-second of the server (whole run)",
                group_f(per)
            );
        }
        r
    }
}

fn percentiles(p: &Percentiles) -> String {
    if p.count == 0 {
        return "no samples".into();
    }
    format!(
        "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (n={})",
        p.p50,
        p.p90,
        p.p99,
        p.p999,
        p.max,
        group(p.count)
    )
}

/// `1234567` → `1,234,567`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn group_f(x: f64) -> String {
    group(x.max(0.0).round() as u64)
}

/// A byte count in B, kB, MB or GB (decimal).
pub fn bytes(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.2} GB", x / 1e9),
        x if x >= 1e6 => format!("{:.2} MB", x / 1e6),
        x if x >= 1e3 => format!("{:.1} kB", x / 1e3),
        x => format!("{x:.0} B"),
    }
}

/// Writes a nanosecond histogram as an HdrHistogram percentile distribution (the
/// `.hgrm` text that `HdrHistogram`'s `outputPercentileDistribution` prints and its
/// plotter reads), values in milliseconds, 5 ticks per half distance.
pub fn write_hgrm(out: &mut impl Write, h: &Histogram<u64>) -> io::Result<()> {
    const SCALE: f64 = 1e6; // ns → ms
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total: u64 = 0;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / SCALE;
            if q < 1.0 {
                writeln!(
                    out,
                    "{value:12.6} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(out, "{value:12.6} {q:2.12} {total:10}")?;
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / SCALE, h.stdev() / SCALE, h.max() as f64 / SCALE)
    };
    let sub_buckets = (2.0 * 10f64.powi(i32::from(SIGFIG))).log2().ceil().exp2();
    writeln!(
        out,
        "#[Mean    = {mean:12.6}, StdDeviation   = {stdev:12.6}]"
    )?;
    writeln!(
        out,
        "#[Max     = {max:12.6}, Total count    = {:12}]",
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets as u64
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::cli::{Cli, Machine};
    use crate::stats::Meter;
    use clap::Parser;

    fn plan(args: &[&str]) -> Plan {
        let mut v = vec!["storm"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v)
            .unwrap()
            .resolve(Machine {
                nofile: 20_000,
                cores: 2,
                ports: 28_000,
            })
            .unwrap()
    }

    fn sample_stats() -> Stats {
        let now = Instant::now();
        let mut s = Stats {
            meter: Meter::from(now),
            connect_meter: Meter::from(now),
            ..Stats::default()
        };
        for i in 1..=100 {
            s.round_trip(now, Duration::from_micros(i));
            s.connected(now, Duration::from_micros(100 + i));
            s.received(now, 10);
            s.sent(now, 10);
        }
        s.requested = 100;
        s.open_at_end = 100;
        s.window_us = (1_000_000, 3_000_000);
        s.connect_span_us = (0, 1_000_000);
        s.connects_measured = 100;
        s
    }

    #[test]
    fn json_has_the_contract_fields_and_types() {
        let p = plan(&["--scenario", "echo", "--mode", "flood", "--warmup", "1"]);
        let r = Report::new(
            &p,
            &sample_stats(),
            Some(RssReport {
                start_kb: 1,
                peak_kb: 3,
                end_kb: 2,
                growth_per_connection_bytes: 10.24,
            }),
            Some(CpuReport {
                total_s: 3.0,
                window_s: 2.0,
                window_cpu_s: 1.5,
                cores_busy: 0.75,
                us_per_message: 15.0,
            }),
            4.0,
        );
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o["scenario"], "echo");
        assert_eq!(o["mode"], "flood");
        assert_eq!(o["wire"], "raw");
        assert_eq!(o["transport"], "tcp");
        assert_eq!(o["connections"], 100);
        assert!(o["connect_rate_per_s"].is_f64());
        assert_eq!(o["messages_per_s"].as_f64().unwrap(), 50.0);
        assert_eq!(o["bytes_per_s"].as_f64().unwrap(), 500.0);
        assert_eq!(o["duration_s"].as_f64().unwrap(), 2.0);
        assert_eq!(o["warmup_s"].as_f64().unwrap(), 1.0);
        for k in ["p50", "p90", "p99", "p999", "max"] {
            assert!(o["latency_us"][k].is_f64(), "latency_us.{k}");
        }
        assert!(o["errors"].as_object().unwrap().is_empty());
        for k in ["start_kb", "peak_kb", "end_kb"] {
            assert!(o["server_rss"][k].is_u64(), "server_rss.{k}");
        }
        assert!(o["server_rss"]["growth_per_connection_bytes"].is_f64());
        assert_eq!(o["server_cpu"]["us_per_message"].as_f64(), Some(15.0));
        assert!(r.text().contains("15.00 us per message"), "{}", r.text());
        // Round-trips through serde.
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        // Without --server-pid there is no server_rss or server_cpu key, and no mode off echo.
        let r = Report::new(&plan(&[]), &sample_stats(), None, None, 1.0);
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert!(v.get("server_rss").is_none() && v.get("mode").is_none());
        assert!(v.get("server_cpu").is_none());
        assert!(r.text().contains("errors       none"), "{}", r.text());
    }

    #[test]
    fn hgrm_has_header_rows_and_footer() {
        let mut out = Vec::new();
        write_hgrm(&mut out, &sample_stats().rtt).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines[1], "");
        let rows: Vec<Vec<f64>> = lines[2..]
            .iter()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 10);
        // Values and percentiles never decrease; the last row is 100% of 100 samples.
        for w in rows.windows(2) {
            assert!(w[1][0] >= w[0][0] && w[1][1] >= w[0][1]);
        }
        let last = rows.last().unwrap();
        assert_eq!((last[1], last[2]), (1.0, 100.0));
        assert_eq!(last.len(), 3);
        assert!(
            (last[0] - 0.1).abs() < 0.0002,
            "max 100 µs = 0.1 ms: {last:?}"
        );
        assert!(text.contains("#[Mean    ="));
        assert!(text.contains("Total count    =          100]"));
        assert!(text.contains("SubBuckets     =         2048]"));
        // An empty histogram still has header and footer.
        let mut out = Vec::new();
        write_hgrm(&mut out, &crate::stats::histogram()).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("Total count    =            0]")
        );
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(bytes(1_500_000.0), "1.50 MB");
    }
}
