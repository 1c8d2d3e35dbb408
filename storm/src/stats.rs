//! What a run measured: latency histograms (hdrhistogram, nanoseconds), counters and
//! errors by kind, the measurement window, and how they merge across threads and
//! processes.
//!
//! Recording is gated by a [`Meter`]: a sample counts only if it completes inside the
//! measurement window, which is how `--warmup` is excluded. Errors are counted from the
//! start of the run to the end of the window, warm-up included.
//!
//! Child processes send their [`Stats`] to the parent as [`StatsWire`] (JSON, with
//! the histograms in HdrHistogram's V2 encoding, base64); merging those equals one
//! histogram of all values.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

/// Largest latency recorded (larger ones are clamped): one hour, in nanoseconds.
pub const MAX_LATENCY_NS: u64 = 3_600_000_000_000;
/// Significant decimal digits the histograms keep.
pub const SIGFIG: u8 = 3;

/// A new, empty latency histogram (nanoseconds, 1 ns to one hour, 3 digits).
#[allow(clippy::expect_used)]
pub fn histogram() -> Histogram<u64> {
    // `new_with_bounds` fails only for invalid constant arguments (low < 1,
    // high < 2 * low, sigfig > 5); these are valid, which the unit tests exercise.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, SIGFIG).expect("valid histogram bounds")
}

/// Records one duration (clamped to the histogram's range).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    h.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
}

/// The window in which samples count: `[from, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meter {
    /// First instant that counts; `None`: nothing counts.
    pub from: Option<Instant>,
    /// First instant that no longer counts; `None`: open-ended.
    pub until: Option<Instant>,
}

impl Meter {
    /// Counts nothing.
    pub const CLOSED: Meter = Meter {
        from: None,
        until: None,
    };

    /// Counts from `from`, open-ended.
    pub fn from(from: Instant) -> Self {
        Self {
            from: Some(from),
            until: None,
        }
    }

    /// Counts in `[from, until)`.
    pub fn between(from: Instant, until: Instant) -> Self {
        Self {
            from: Some(from),
            until: Some(until),
        }
    }

    /// Whether a sample completing at `now` counts.
    pub fn on(&self, now: Instant) -> bool {
        self.from.is_some_and(|f| now >= f) && self.until.is_none_or(|u| now < u)
    }
}

/// Converts `Instant`s to microseconds since the Unix epoch, so windows from different
/// threads and processes can be compared.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_unix_us: u64,
}

impl Clock {
    /// A clock anchored now.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            base_unix_us: unix_us(SystemTime::now()),
        }
    }

    /// `t` in microseconds since the Unix epoch.
    pub fn unix_us(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.base) {
            Some(after) => self.base_unix_us.saturating_add(micros(after)),
            None => self.base_unix_us.saturating_sub(micros(self.base - t)),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Microseconds since the Unix epoch.
pub fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, micros)
}

/// Everything one thread (or, merged, a whole run) measured, with the histograms as
/// `H` and the meters as `M`: [`Stats`] while measuring, [`StatsWire`] between
/// processes (one field list for both, so the wire form cannot drift from it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatsOf<H, M> {
    /// The scenario's round trips (ns): handshakes for `connect`, echoes for `echo`,
    /// `Ping`→`Pong` for `ping` and `idle`.
    pub rtt: H,
    /// Connect latency (ns): connect start → `Welcome` (protocol) or → TCP connected
    /// (raw), every connection, warm-up included except for the `connect` scenario.
    pub connect: H,
    /// Messages completed in the window (round trips, or echoed messages in flood).
    pub messages: u64,
    /// Bytes received in the window.
    pub bytes_in: u64,
    /// Bytes sent in the window.
    pub bytes_out: u64,
    /// Connections asked for.
    pub requested: u64,
    /// Connections established (handshake done, or TCP connected in raw mode).
    pub connected: u64,
    /// Connections that failed before being established.
    pub failed: u64,
    /// Connections still open when the window closed.
    pub open_at_end: u64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// The measurement window in Unix microseconds (`0, 0` if it never opened).
    pub window_us: (u64, u64),
    /// First connect start and last successful connect, Unix microseconds (`0` if none).
    pub connect_span_us: (u64, u64),
    /// Connections established inside the `connect` scenario's window.
    pub connects_measured: u64,
    /// The run was cut short by its overall timeout or a signal.
    pub interrupted: bool,
    /// Scenario-specific latency histograms by name (ns, gated like `rtt`), e.g.
    /// chat's `v2a` and `a2v`.
    #[serde(default)]
    pub hists: BTreeMap<String, H>,
    /// Scenario-specific counters by name, not gated (summed when merging), e.g.
    /// chat's `accepted` and `delivered`.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
    /// Scenario-specific maxima by name (the largest wins when merging), e.g.
    /// fanout's last-delivery time per notice.
    #[serde(default)]
    pub maxima: BTreeMap<String, u64>,
    /// Gates `rtt`, `messages` and the byte counters (not sent).
    #[serde(skip)]
    pub meter: M,
    /// Gates `connect` (not sent).
    #[serde(skip)]
    pub connect_meter: M,
}

/// What a thread measures: histograms in nanoseconds, gated by meters.
pub type Stats = StatsOf<Histogram<u64>, Meter>;

/// [`Stats`] as a child process sends it to the parent (one JSON line): each
/// histogram in HdrHistogram's V2 encoding, base64 (see [`encode_hist`]); no meters.
pub type StatsWire = StatsOf<String, ()>;

impl Default for Stats {
    fn default() -> Self {
        Self {
            rtt: histogram(),
            connect: histogram(),
            messages: 0,
            bytes_in: 0,
            bytes_out: 0,
            requested: 0,
            connected: 0,
            failed: 0,
            open_at_end: 0,
            errors: BTreeMap::new(),
            window_us: (0, 0),
            connect_span_us: (0, 0),
            connects_measured: 0,
            interrupted: false,
            hists: BTreeMap::new(),
            counters: BTreeMap::new(),
            maxima: BTreeMap::new(),
            meter: Meter::CLOSED,
            connect_meter: Meter::CLOSED,
        }
    }
}

impl Stats {
    /// A round trip of `d` completed at `now`: one message and one latency sample.
    pub fn round_trip(&mut self, now: Instant, d: Duration) {
        if self.meter.on(now) {
            self.messages += 1;
            record(&mut self.rtt, d);
        }
    }

    /// `n` messages completed at `now` without a latency sample.
    pub fn messages(&mut self, now: Instant, n: u64) {
        if self.meter.on(now) {
            self.messages += n;
        }
    }

    /// A latency sample without counting a message (flood samples some messages).
    pub fn latency(&mut self, now: Instant, d: Duration) {
        if self.meter.on(now) {
            record(&mut self.rtt, d);
        }
    }

    /// Bytes received at `now`.
    pub fn received(&mut self, now: Instant, n: usize) {
        if self.meter.on(now) {
            self.bytes_in += n as u64;
        }
    }

    /// Bytes sent at `now`.
    pub fn sent(&mut self, now: Instant, n: usize) {
        if self.meter.on(now) {
            self.bytes_out += n as u64;
        }
    }

    /// A connection established at `now` after `d`.
    pub fn connected(&mut self, now: Instant, d: Duration) {
        self.connected += 1;
        if self.connect_meter.on(now) {
            record(&mut self.connect, d);
        }
    }

    /// A sample of `d` in the named histogram `name`, completing at `now` (counted
    /// only inside the window, unless `always`).
    pub fn sample(&mut self, name: &str, now: Instant, d: Duration, always: bool) {
        if always || self.meter.on(now) {
            match self.hists.get_mut(name) {
                Some(h) => record(h, d),
                None => {
                    let mut h = histogram();
                    record(&mut h, d);
                    self.hists.insert(name.to_owned(), h);
                }
            }
        }
    }

    /// Adds `n` to the counter `name` (not gated).
    pub fn count(&mut self, name: &str, n: u64) {
        match self.counters.get_mut(name) {
            Some(c) => *c += n,
            None => {
                self.counters.insert(name.to_owned(), n);
            }
        }
    }

    /// Raises the maximum `name` to `v` (not gated).
    pub fn max(&mut self, name: &str, v: u64) {
        match self.maxima.get_mut(name) {
            Some(m) => *m = (*m).max(v),
            None => {
                self.maxima.insert(name.to_owned(), v);
            }
        }
    }

    /// One error of `kind`.
    pub fn error(&mut self, kind: &str) {
        match self.errors.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.errors.insert(kind.to_owned(), 1);
            }
        }
    }

    /// Adds another thread's or process's stats to these.
    pub fn merge(&mut self, o: &Stats) {
        // Both histograms come from `histogram()` (same bounds), so adding cannot fail;
        // if it ever did, the larger one would be kept rather than panicking.
        merge_hist(&mut self.rtt, &o.rtt);
        merge_hist(&mut self.connect, &o.connect);
        self.messages += o.messages;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.requested += o.requested;
        self.connected += o.connected;
        self.failed += o.failed;
        self.open_at_end += o.open_at_end;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
        self.window_us = merge_span(self.window_us, o.window_us);
        self.connect_span_us = merge_span(self.connect_span_us, o.connect_span_us);
        self.connects_measured += o.connects_measured;
        self.interrupted |= o.interrupted;
        for (k, h) in &o.hists {
            match self.hists.get_mut(k) {
                Some(mine) => merge_hist(mine, h),
                None => {
                    self.hists.insert(k.clone(), h.clone());
                }
            }
        }
        for (k, v) in &o.counters {
            *self.counters.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &o.maxima {
            self.max(k, *v);
        }
    }

    /// The window length in seconds.
    pub fn window_s(&self) -> f64 {
        self.window_us.1.saturating_sub(self.window_us.0) as f64 / 1e6
    }

    /// `n` per second of window (0 when the window is empty).
    pub fn per_s(&self, n: u64) -> f64 {
        let s = self.window_s();
        if s > 0.0 { n as f64 / s } else { 0.0 }
    }

    /// Connections established per second over the connect span.
    pub fn connect_rate(&self) -> f64 {
        let s = self
            .connect_span_us
            .1
            .saturating_sub(self.connect_span_us.0) as f64
            / 1e6;
        if s > 0.0 {
            self.connects_measured as f64 / s
        } else {
            0.0
        }
    }
}

fn merge_hist(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// The union of two spans, where `(0, 0)` is empty.
fn merge_span(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    match (a == (0, 0), b == (0, 0)) {
        (true, _) => b,
        (_, true) => a,
        _ => (a.0.min(b.0), a.1.max(b.1)),
    }
}

/// Why a child's stats could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not base64.
    #[error("histogram is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// Not a V2 histogram.
    #[error("histogram does not decode: {0}")]
    Histogram(String),
}

/// A histogram in the V2 encoding, base64.
pub fn encode_hist(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    match V2Serializer::new().serialize(h, &mut buf) {
        Ok(_) => B64.encode(buf),
        // Serializing into a Vec only fails for histograms over 2^31 buckets.
        Err(_) => String::new(),
    }
}

/// The inverse of [`encode_hist`] (an empty string is an empty histogram).
pub fn decode_hist(s: &str) -> Result<Histogram<u64>, WireError> {
    if s.is_empty() {
        return Ok(histogram());
    }
    let bytes = B64.decode(s)?;
    let decoded: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| WireError::Histogram(format!("{e:?}")))?;
    // Re-home the values into a histogram with our bounds so merging always works.
    let mut h = histogram();
    merge_hist(&mut h, &decoded);
    Ok(h)
}

impl<H, M> StatsOf<H, M> {
    /// The same figures with each histogram converted by `hist`, and `meter` for
    /// both meters.
    fn convert<H2, M2: Copy, E>(
        &self,
        hist: impl Fn(&H) -> Result<H2, E>,
        meter: M2,
    ) -> Result<StatsOf<H2, M2>, E> {
        Ok(StatsOf {
            rtt: hist(&self.rtt)?,
            connect: hist(&self.connect)?,
            messages: self.messages,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            requested: self.requested,
            connected: self.connected,
            failed: self.failed,
            open_at_end: self.open_at_end,
            errors: self.errors.clone(),
            window_us: self.window_us,
            connect_span_us: self.connect_span_us,
            connects_measured: self.connects_measured,
            interrupted: self.interrupted,
            hists: self
                .hists
                .iter()
                .map(|(k, h)| Ok((k.clone(), hist(h)?)))
                .collect::<Result<_, E>>()?,
            counters: self.counters.clone(),
            maxima: self.maxima.clone(),
            meter,
            connect_meter: meter,
        })
    }
}

impl Stats {
    /// The wire form.
    pub fn to_wire(&self) -> StatsWire {
        match self.convert(|h| Ok::<_, std::convert::Infallible>(encode_hist(h)), ()) {
            Ok(w) => w,
            Err(never) => match never {},
        }
    }

    /// Back from the wire form (meters closed).
    pub fn from_wire(w: &StatsWire) -> Result<Self, WireError> {
        w.convert(|h| decode_hist(h), Meter::CLOSED)
    }
}

/// Latency percentiles in microseconds, as reported.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
    /// Smallest sample.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Number of samples.
    pub count: u64,
}

impl Percentiles {
    /// The percentiles of a nanosecond histogram, in microseconds (all 0 when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            min: us(h.min()),
            mean: h.mean() / 1000.0,
            stdev: h.stdev() / 1000.0,
            count: h.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn open_stats(now: Instant) -> Stats {
        Stats {
            meter: Meter::from(now),
            connect_meter: Meter::from(now),
            ..Stats::default()
        }
    }

    /// Within hdrhistogram's 3-digit precision.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b * 0.001 + 0.001
    }

    #[test]
    fn percentiles_of_known_inputs() {
        let now = Instant::now();
        let mut s = open_stats(now);
        for v in 1..=1000 {
            s.round_trip(now, us(v));
        }
        let p = Percentiles::of(&s.rtt);
        assert_eq!(p.count, 1000);
        assert_eq!(s.messages, 1000);
        assert!(close(p.p50, 500.0), "{p:?}");
        assert!(close(p.p90, 900.0), "{p:?}");
        assert!(close(p.p99, 990.0), "{p:?}");
        assert!(close(p.p999, 999.0), "{p:?}");
        assert!(close(p.max, 1000.0), "{p:?}");
        assert!(close(p.min, 1.0), "{p:?}");
        assert!(close(p.mean, 500.5), "{p:?}");

        // A skewed distribution: 99% at 10 µs, 1% at 5 ms.
        let mut s = open_stats(now);
        for i in 0..10_000 {
            s.round_trip(now, if i % 100 == 0 { us(5000) } else { us(10) });
        }
        let p = Percentiles::of(&s.rtt);
        assert!(
            close(p.p50, 10.0) && close(p.p90, 10.0) && close(p.p99, 10.0),
            "{p:?}"
        );
        assert!(close(p.p999, 5000.0) && close(p.max, 5000.0), "{p:?}");
        assert_eq!(Percentiles::of(&histogram()), Percentiles::default());
    }

    #[test]
    fn merged_children_equal_one_histogram_of_all_values() {
        let now = Instant::now();
        let mut all = open_stats(now);
        let mut parts = [open_stats(now), open_stats(now), open_stats(now)];
        let mut x: u64 = 12345;
        for i in 0..30_000u64 {
            // xorshift: spread values over 1 µs .. ~1 s
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = Duration::from_nanos(1000 + x % 1_000_000_000);
            all.round_trip(now, d);
            parts[(i % 3) as usize].round_trip(now, d);
            parts[(i % 3) as usize].error(if i % 2 == 0 { "reset" } else { "timeout" });
        }
        parts[0].window_us = (100, 200);
        parts[1].window_us = (90, 150);
        let mut merged = Stats::default();
        for p in &parts {
            // Through the wire, as from child processes.
            let line = serde_json::to_string(&p.to_wire()).unwrap();
            let back = Stats::from_wire(&serde_json::from_str(&line).unwrap()).unwrap();
            merged.merge(&back);
        }
        assert_eq!(merged.rtt, all.rtt);
        assert_eq!(merged.rtt.len(), 30_000);
        assert_eq!(merged.messages, 30_000);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                merged.rtt.value_at_quantile(q),
                all.rtt.value_at_quantile(q)
            );
        }
        assert_eq!(merged.errors["reset"] + merged.errors["timeout"], 30_000);
        assert_eq!(merged.window_us, (90, 200));
    }

    #[test]
    fn warmup_is_excluded() {
        let t0 = Instant::now();
        let warm_end = t0 + Duration::from_secs(2);
        let end = t0 + Duration::from_secs(5);
        let mut s = Stats {
            meter: Meter::between(warm_end, end),
            ..Stats::default()
        };
        s.round_trip(t0, us(1_000_000)); // during warm-up: excluded
        s.round_trip(t0 + Duration::from_secs(1), us(999_000)); // excluded
        s.round_trip(warm_end, us(10)); // first counted instant
        s.round_trip(t0 + Duration::from_secs(4), us(20));
        s.round_trip(end, us(30)); // window closed
        s.received(t0, 100);
        s.received(warm_end, 7);
        assert_eq!(s.messages, 2);
        assert_eq!(s.bytes_in, 7);
        let p = Percentiles::of(&s.rtt);
        assert!(close(p.max, 20.0), "{p:?}");
        assert!(!Meter::CLOSED.on(t0));
        assert!(Meter::from(t0).on(end));
    }

    #[test]
    fn rates_use_the_window() {
        let mut s = Stats {
            messages: 500,
            window_us: (1_000_000, 3_000_000),
            connects_measured: 100,
            connect_span_us: (0, 500_000),
            ..Stats::default()
        };
        assert!((s.per_s(s.messages) - 250.0).abs() < 1e-9);
        assert!((s.connect_rate() - 200.0).abs() < 1e-9);
        s.window_us = (0, 0);
        assert_eq!(s.per_s(10), 0.0);
    }

    #[test]
    fn clock_round_trips() {
        let c = Clock::new();
        let now = Instant::now();
        let later = now + Duration::from_millis(1500);
        assert_eq!(c.unix_us(later) - c.unix_us(now), 1_500_000);
    }
}
