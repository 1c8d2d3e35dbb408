//! `/metrics`: a `prometheus-client` collector that reads the daemon's atomics at
//! scrape time. The hot path only ever bumps relaxed atomics in per-thread blocks
//! (`crate::metrics`); everything Prometheus-shaped happens here, on the admin thread.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::handoff::CloseReason;
use crate::metrics::conversation::{GroupFigures, WAIT_BUCKETS_S, WaitHistogram};
use crate::metrics::{
    CONFIDENCE_BUCKETS, CONVERSATION_STATES, CUT_CAUSES, Counter, KIND_SLOTS, KindCounts,
    LATENCY_BUCKETS_US, LatencyHistogram, Metrics, PROXY_HEADER_ERRORS, REJECT_LABELS,
    ReactorMetrics, WorkerMetrics, close_reasons,
};
use crate::protocol::{ErrorCode, Kind};

/// The content type of [`render`]'s output with `openmetrics`.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`render`]'s output without `openmetrics`.
pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric: in the OpenMetrics text format (what Prometheus asks for
/// in its `Accept` header), or else in the classic Prometheus text format 0.0.4
/// (what `curl` and `promtool check metrics` get).
pub(crate) fn render(metrics: &Arc<Metrics>, openmetrics: bool) -> Result<String, fmt::Error> {
    let mut registry = Registry::with_prefix("switchboard");
    registry.register_collector(Box::new(Exporter(metrics.clone())));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(if openmetrics {
        out
    } else {
        to_prometheus_text(&out)
    })
}

/// OpenMetrics text to Prometheus text 0.0.4, for the subset `prometheus-client`
/// writes: a counter family `x` (samples `x_total`) is named `x_total` in its
/// `# HELP`/`# TYPE` lines, `# UNIT` and `# EOF` go. Gauges and histograms are the
/// same in both.
fn to_prometheus_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            // Written once the TYPE line says whether the family is a counter.
            help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some(h) = help.take() {
                let text = h
                    .strip_prefix("# HELP ")
                    .and_then(|r| r.strip_prefix(name))
                    .unwrap_or_default();
                let _ = writeln!(out, "# HELP {name}{suffix}{text}");
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[derive(Debug)]
struct Exporter(Arc<Metrics>);

mod email;
mod tls;
mod web;
mod webhooks;

/// Codes whose close means the handshake failed (auth, protocol version, no `Hello`).
fn is_handshake_failure(code: ErrorCode) -> bool {
    (200..300).contains(&code.as_u16()) || code == ErrorCode::HandshakeTimeout
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), fmt::Error> {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), fmt::Error> {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

impl Exporter {
    fn per_reactor(
        &self,
        enc: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        kind: MetricType,
        f: impl Fn(&ReactorMetrics) -> u64,
    ) -> Result<(), fmt::Error> {
        let mut me = enc.encode_descriptor(name, help, None, kind)?;
        for (i, r) in self.0.reactors.iter().enumerate() {
            let labels = [("reactor", i.to_string())];
            let mut m = me.encode_family(&labels)?;
            match kind {
                MetricType::Counter => m.encode_counter::<NoLabelSet, _, u64>(&f(r), None)?,
                _ => m.encode_gauge(&f(r))?,
            }
        }
        Ok(())
    }

    fn per_worker(
        &self,
        enc: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        kind: MetricType,
        f: impl Fn(&WorkerMetrics) -> u64,
    ) -> Result<(), fmt::Error> {
        let mut me = enc.encode_descriptor(name, help, None, kind)?;
        for (i, w) in self.0.workers.iter().enumerate() {
            let labels = [("worker", i.to_string())];
            let mut m = me.encode_family(&labels)?;
            match kind {
                MetricType::Counter => m.encode_counter::<NoLabelSet, _, u64>(&f(w), None)?,
                _ => m.encode_gauge(&f(w))?,
            }
        }
        Ok(())
    }

    fn reactors(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        use MetricType::{Counter, Gauge};
        self.per_reactor(
            enc,
            "connections_open",
            "Connections open now.",
            Gauge,
            |r| r.open.get(),
        )?;
        self.per_reactor(
            enc,
            "connections_accepted",
            "Connections accepted (including those a limit closed at once).",
            Counter,
            |r| r.accepted.get(),
        )?;
        {
            let mut me = enc.encode_descriptor(
                "connections_closed",
                "Connections closed, by reason (an error code's name, or peer_closed, \
                 io_error, server, shutdown, client_bye, tls_error).",
                None,
                Counter,
            )?;
            for (i, r) in self.0.reactors.iter().enumerate() {
                for reason in close_reasons() {
                    let labels = [("reactor", i.to_string()), ("reason", reason.name().into())];
                    me.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&r.closed_for(reason), None)?;
                }
            }
        }
        {
            let mut me = enc.encode_descriptor(
                "connections_rejected",
                "Connections closed right after accept by a connection limit, by limit \
                 (untrusted_proxy: a proxy_protocol listener's connection from outside \
                 its trusted_proxies).",
                None,
                Counter,
            )?;
            for (i, r) in self.0.reactors.iter().enumerate() {
                for (label, c) in REJECT_LABELS.iter().zip(r.rejected.iter()) {
                    let labels = [("reactor", i.to_string()), ("reason", (*label).to_owned())];
                    me.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&c.get(), None)?;
                }
            }
        }
        {
            let mut me = enc.encode_descriptor(
                "proxy_header_errors",
                "Connections on a proxy_protocol listener closed before a valid PROXY \
                 header, by reason (timeout, or what was wrong with the header).",
                None,
                Counter,
            )?;
            for (i, r) in self.0.reactors.iter().enumerate() {
                for (label, c) in PROXY_HEADER_ERRORS.iter().zip(r.proxy_header_errors.iter()) {
                    let labels = [("reactor", i.to_string()), ("reason", (*label).to_owned())];
                    me.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&c.get(), None)?;
                }
            }
        }
        self.per_reactor(
            enc,
            "proxy_headers",
            "Valid PROXY headers read (the connection then counts as the client they name).",
            Counter,
            |r| r.proxy_headers.get(),
        )?;
        self.per_reactor(
            enc,
            "accept_errors",
            "accept(2) failures (e.g. out of file descriptors).",
            Counter,
            |r| r.accept_errors.get(),
        )?;
        self.per_reactor(
            enc,
            "slow_consumer_closes",
            "Connections closed because their queued output passed limits.max_pending_bytes.",
            Counter,
            |r| r.closed_for(CloseReason::Error(ErrorCode::SlowConsumer)),
        )?;
        self.per_reactor(
            enc,
            "frames_received",
            "Complete frames received.",
            Counter,
            |r| r.frames_in.get(),
        )?;
        self.per_reactor(enc, "received_bytes", "Bytes received.", Counter, |r| {
            r.bytes_in.get()
        })?;
        self.per_reactor(
            enc,
            "sent_bytes",
            "Bytes written to sockets.",
            Counter,
            |r| r.bytes_out.get(),
        )?;
        self.per_reactor(
            enc,
            "worker_queue_full",
            "Events a full worker queue refused (the connection is closed with 500).",
            Counter,
            |r| r.worker_queue_full.get(),
        )?;
        self.per_reactor(
            enc,
            "read_pauses",
            "Times reading from a connection paused for backpressure.",
            Counter,
            |r| r.read_pauses.get(),
        )?;
        self.per_reactor(
            enc,
            "uring_echo_copies",
            "io_uring echo receives copied instead of sent from the receive buffer itself \
             (half of reactor.uring_buffers held by echo output not yet sent).",
            Counter,
            |r| r.uring_echo_copies.get(),
        )?;
        self.per_reactor(
            enc,
            "uring_unfixed",
            "io_uring connections served without a registered file table entry (slot past \
             reactor.uring_fixed_files, table off or refused, submissions backed up): their \
             requests name the descriptor.",
            Counter,
            |r| r.uring_unfixed.get(),
        )?;
        {
            let mut me = enc.encode_descriptor(
                "slow_consumer_cuts",
                "Slow consumers cut (302), by cause: max_pending_bytes (its queue), \
                 stall_timeout (its queue made no progress), max_pending_total (all \
                 queues together; largest first), deferred_replies (History requests \
                 waiting for it passed their bound).",
                None,
                Counter,
            )?;
            for (i, r) in self.0.reactors.iter().enumerate() {
                for (cause, c) in CUT_CAUSES.iter().zip(r.cuts.iter()) {
                    let labels = [("reactor", i.to_string()), ("cause", (*cause).to_owned())];
                    me.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&c.get(), None)?;
                }
            }
        }
        self.web(enc)?;
        let files = &self.0.files;
        counter(
            enc,
            "attachments_stored",
            "Attachment files written (new content for their conversation).",
            files.stored.get(),
        )?;
        counter(
            enc,
            "attachments_deduplicated",
            "Attachment uploads whose content their conversation had already (nothing written).",
            files.deduplicated.get(),
        )?;
        counter(
            enc,
            "attachment_bytes",
            "Bytes of the attachment files written.",
            files.bytes.get(),
        )?;
        self.per_reactor(
            enc,
            "kernel_tcp_memory_pressure",
            "1 while the kernel's TCP memory was under pressure (net.ipv4.tcp_mem) when the reactor last asked; stalled connections are then cut only after 6 x limits.stall_timeout.",
            Gauge,
            |r| r.kernel_tcp_pressure.get(),
        )?;
        self.per_reactor(
            enc,
            "output_pending_bytes",
            "Output queued on the reactor's connections that the kernel has not taken.",
            Gauge,
            |r| r.pending_bytes.get(),
        )?;
        gauge(
            enc,
            "output_pending_total_bytes",
            "Output queued for all connections together, as the reactors last published it (within 64 KiB each).",
            self.0.pending_total.get(),
        )?;
        gauge(
            enc,
            "output_pending_limit_bytes",
            "limits.max_pending_total in force: past it the connections owing the most are cut.",
            self.0.pending_limit.get(),
        )?;
        self.per_reactor(enc, "reactor_loops", "Reactor loop turns.", Counter, |r| {
            r.loops.get()
        })?;
        {
            let mut me = enc.encode_descriptor(
                "reactor_loop_lag_seconds",
                "Reactor loop turns by duration (time handling events between two polls): \
                 how late the reactor could be for any socket.",
                None,
                MetricType::Histogram,
            )?;
            for (i, r) in self.0.reactors.iter().enumerate() {
                let labels = [("reactor", i.to_string())];
                let (sum, count, buckets) = histogram_values(&[&r.loop_lag]);
                me.encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        {
            let mut me = enc.encode_descriptor(
                "reactor_busy_seconds",
                "Time reactors spent handling events rather than waiting.",
                None,
                Counter,
            )?;
            for (i, r) in self.0.reactors.iter().enumerate() {
                let labels = [("reactor", i.to_string())];
                me.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&(r.busy_us.get() as f64 / 1e6), None)?;
            }
        }
        Ok(())
    }

    fn kinds(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let kinds: Vec<(usize, String)> = (0..KIND_SLOTS)
            .filter_map(|slot| {
                let name = match u8::try_from(slot).ok().and_then(Kind::from_u8) {
                    Some(k) => format!("{k:?}"),
                    None if slot == 0 => "unknown".to_owned(),
                    None => return None,
                };
                Some((slot, name))
            })
            .collect();
        for (name, help, pick) in [
            (
                "frames",
                "Protocol frames by direction (in: received; out: queued for sending by \
                 workers, once per recipient) and kind.",
                (|k: &KindCounts, s: usize| k.frames.get(s).map_or(0, Counter::get))
                    as fn(&KindCounts, usize) -> u64,
            ),
            (
                "frame_bytes",
                "Bytes of those frames on the wire (header, payload, padding).",
                |k: &KindCounts, s: usize| k.bytes.get(s).map_or(0, Counter::get),
            ),
        ] {
            let mut me = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (direction, side) in [("in", true), ("out", false)] {
                for (slot, kind) in &kinds {
                    let n: u64 = self
                        .0
                        .reactors
                        .iter()
                        .map(|r| pick(if side { &r.kinds_in } else { &r.kinds_out }, *slot))
                        .sum();
                    let labels = [("direction", direction.to_owned()), ("kind", kind.clone())];
                    me.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
        }
        Ok(())
    }

    fn handshakes(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut me = enc.encode_descriptor(
            "handshake_failures",
            "Connections closed before or at the handshake, by error code (2xx, 300).",
            None,
            MetricType::Counter,
        )?;
        for code in ErrorCode::ALL
            .into_iter()
            .filter(|c| is_handshake_failure(*c))
        {
            let reason = CloseReason::Error(code);
            let n = self.0.closed_for(reason);
            let labels = [
                ("code", code.as_u16().to_string()),
                ("name", code.name().to_owned()),
            ];
            me.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        Ok(())
    }

    fn workers(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        use MetricType::{Counter, Gauge};
        self.per_worker(enc, "worker_events", "Events handled.", Counter, |w| {
            w.events.get()
        })?;
        self.per_worker(
            enc,
            "worker_errors_sent",
            "Frames answered with an error code.",
            Counter,
            |w| w.errors_sent.get(),
        )?;
        self.per_worker(
            enc,
            "sessions_expired",
            "Sessions closed with 201 token_expired: their token's exp passed without a Refresh.",
            Counter,
            |w| w.sessions_expired.get(),
        )?;
        self.per_worker(
            enc,
            "sessions_refreshed",
            "Refresh requests accepted: a session's token replaced by a fresh one.",
            Counter,
            |w| w.sessions_refreshed.get(),
        )?;
        self.per_worker(
            enc,
            "worker_queue_depth",
            "Events waiting in the worker's queue (sampled after each batch).",
            Gauge,
            |w| w.queue_depth.get(),
        )?;
        self.per_worker(
            enc,
            "shard_queue_depth",
            "Messages waiting in the worker's conversation-shard queue (sampled after each batch).",
            Gauge,
            |w| w.shard_queue_depth.get(),
        )?;
        self.per_worker(
            enc,
            "shard_queue_peak",
            "The deepest the worker's conversation-shard queue was seen since start (sampled).",
            Gauge,
            |w| w.shard_queue_peak.get(),
        )?;
        self.per_worker(
            enc,
            "router_queue_refused",
            "Client requests closed with 500 because the router's queue was full (workers.service_queue_depth).",
            Counter,
            |w| w.router_queue_refused.get(),
        )?;
        self.per_worker(
            enc,
            "shard_queue_refused",
            "Client requests closed with 500 because their conversation shard's queue was full (workers.service_queue_depth).",
            Counter,
            |w| w.shard_queue_refused.get(),
        )?;
        self.per_worker(enc, "worker_loops", "Worker loop turns.", Counter, |w| {
            w.loops.get()
        })?;
        self.per_worker(
            enc,
            "journal_storage_errors",
            "Journal batches that failed (disk full, I/O error): changes taken back, clients told 503.",
            Counter,
            |w| w.storage_errors.get(),
        )?;
        self.per_worker(
            enc,
            "history_deferred",
            "History requests held back because their connection owed limits.max_pending_bytes of output.",
            Counter,
            |w| w.history_deferred.get(),
        )?;
        self.per_worker(
            enc,
            "history_waiting",
            "History requests held back now.",
            Gauge,
            |w| w.history_waiting.get(),
        )?;
        self.per_worker(
            enc,
            "assist_auto_replies",
            "FAQ answers sent automatically.",
            Counter,
            |w| w.auto_replies.get(),
        )?;
        self.per_worker(
            enc,
            "assist_faq_wrong",
            "Automatic FAQ replies agents marked wrong (WrongReply; each logged with its question).",
            Counter,
            |w| w.faq_wrong.get(),
        )?;
        self.per_worker(
            enc,
            "profiles_refused",
            "Visitor profile updates refused: the merged profile would pass 32 fields.",
            Counter,
            |w| w.profiles_refused.get(),
        )?;
        type Pick = fn(&WorkerMetrics) -> u64;
        let actions: [(&str, &str, Pick); 4] = [
            (
                "assist_flagged",
                "Visitor messages delivered flagged by the abuse filter.",
                |w| w.filtered.flagged.get(),
            ),
            (
                "assist_dropped",
                "Visitor messages dropped by the abuse filter (403).",
                |w| w.filtered.dropped.get(),
            ),
            (
                "assist_blocked",
                "Visitor messages refused because the sender is blocked (205).",
                |w| w.filtered.blocked.get(),
            ),
            (
                "assist_rate_limited",
                "Visitor messages refused over the visitor's rate (429).",
                |w| w.filtered.rate_limited.get(),
            ),
        ];
        for (name, help, pick) in actions {
            self.per_worker(enc, name, help, Counter, pick)?;
        }
        {
            let mut buckets: Vec<(f64, u64)> = CONFIDENCE_BUCKETS
                .iter()
                .map(|b| (f64::from(*b), 0))
                .chain(std::iter::once((f64::INFINITY, 0)))
                .collect();
            let mut sum_milli = 0u64;
            for w in &self.0.workers {
                let h = &w.faq_confidence;
                for (b, c) in buckets.iter_mut().zip(h.buckets.iter()) {
                    b.1 += c.get();
                }
                sum_milli = sum_milli.saturating_add(h.sum_milli.get());
            }
            let count = buckets.iter().map(|b| b.1).sum();
            enc.encode_descriptor(
                "assist_faq_confidence",
                "Score (0-1) of the best FAQ entry for each visitor message the FAQ looked at, answered or not.",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(sum_milli as f64 / 1e3, count, &buckets, None)?;
        }
        let hists: Vec<&LatencyHistogram> =
            self.0.workers.iter().map(|w| &w.message_latency).collect();
        histogram(
            enc,
            "message_latency_seconds",
            "Time from a change applied by its conversation shard to its replies going out (journal durable).",
            &hists,
        )
    }

    fn router(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let r = &self.0.router;
        counter(enc, "router_loops", "Router loop turns.", r.loops.get())?;
        gauge(
            enc,
            "router_queue_depth",
            "Messages waiting in the router's queue (sampled each turn).",
            r.queue_depth.get(),
        )?;
        gauge(
            enc,
            "router_queue_peak",
            "The deepest the router's queue was seen since start (sampled).",
            r.queue_peak.get(),
        )?;
        gauge(
            enc,
            "agents_online",
            "Agents and bots whose presence is online.",
            r.agents_online.get(),
        )?;
        {
            let mut me = enc.encode_descriptor(
                "conversations",
                "Open conversations by state (queued, assigned).",
                None,
                MetricType::Gauge,
            )?;
            for (state, g) in CONVERSATION_STATES.iter().zip(r.conversations.iter()) {
                let labels = [("state", (*state).to_owned())];
                me.encode_family(&labels)?.encode_gauge(&g.get())?;
            }
        }
        counter(
            enc,
            "conversations_closed",
            "Conversations closed since the daemon started.",
            r.conversations_closed.get(),
        )?;
        self.by_group(enc)?;
        let lengths = r
            .queue_lengths
            .lock()
            .map(|q| q.clone())
            .unwrap_or_default();
        let mut me = enc.encode_descriptor(
            "routing_queue_length",
            "Visitors waiting in each (tenant, group) queue.",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, group, n) in lengths {
            let labels = [("tenant", tenant), ("group", group)];
            me.encode_family(&labels)?.encode_gauge(&n)?;
        }
        Ok(())
    }

    /// The per-group conversation figures (`admin.metric_groups` bounds the labels).
    fn by_group(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let m = &self.0.router.by_group;
        let groups = m.snapshot();
        let counters: [Family<u64>; 3] = [
            (
                "conversations_opened",
                "Conversations opened (their first message stored), by group.",
                |g| g.opened.get(),
            ),
            (
                "conversations_abandoned",
                "Queued conversations closed because their visitor left for longer than routing.visitor_grace, by group.",
                |g| g.abandoned.get(),
            ),
            (
                "conversations_inactive",
                "Open conversations closed after routing.inactivity_close without an event, by group.",
                |g| g.inactive.get(),
            ),
        ];
        for (name, help, pick) in counters {
            let mut me = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (group, g) in &groups {
                me.encode_family(&[("group", group.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&pick(g), None)?;
            }
        }
        let waits: [WaitFamily; 2] = [
            (
                "conversation_queue_wait_seconds",
                "Time a conversation waited in its group's queue before an agent or bot took it.",
                |g| &g.queue_wait,
            ),
            (
                "conversation_first_reply_seconds",
                "Time from a conversation's first message to the first message of an agent or bot.",
                |g| &g.first_reply,
            ),
        ];
        for (name, help, pick) in waits {
            let mut me = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (group, g) in &groups {
                let h = pick(g);
                let buckets: Vec<(f64, u64)> = WAIT_BUCKETS_S
                    .iter()
                    .map(|s| *s as f64)
                    .chain(std::iter::once(f64::INFINITY))
                    .zip(h.buckets.iter().map(Counter::get))
                    .collect();
                let count = buckets.iter().map(|b| b.1).sum();
                me.encode_family(&[("group", group.as_str())])?
                    .encode_histogram::<NoLabelSet>(
                        h.sum_ms.get() as f64 / 1e3,
                        count,
                        &buckets,
                        None,
                    )?;
            }
        }
        {
            let mut me = enc.encode_descriptor(
                "conversation_rating",
                "Visitors' ratings of closed conversations (1 to 5), by group.",
                None,
                MetricType::Histogram,
            )?;
            for (group, g) in &groups {
                let buckets: Vec<(f64, u64)> = (1..=5)
                    .map(f64::from)
                    .zip(g.ratings.iter().map(Counter::get))
                    .chain(std::iter::once((f64::INFINITY, 0)))
                    .collect();
                let count = buckets.iter().map(|b| b.1).sum();
                let sum: u64 = (1..=5u64)
                    .zip(g.ratings.iter())
                    .map(|(s, n)| s * n.get())
                    .sum();
                me.encode_family(&[("group", group.as_str())])?
                    .encode_histogram::<NoLabelSet>(sum as f64, count, &buckets, None)?;
            }
        }
        counter(
            enc,
            "metric_groups_folded",
            "Conversation events counted as group=\"_other\" because more groups than admin.metric_groups were seen.",
            m.folded.get(),
        )
    }

    fn journal(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let j = &self.0.journal;
        counter(
            enc,
            "journal_appends",
            "Records appended to the journal.",
            j.appends.get(),
        )?;
        counter(
            enc,
            "journal_append_bytes",
            "Bytes appended to the journal.",
            j.append_bytes.get(),
        )?;
        histogram(
            enc,
            "journal_append_latency_seconds",
            "Time to append one batch to the journal.",
            &[&j.append_latency],
        )?;
        counter(
            enc,
            "journal_inflight_full",
            "Times a worker held its next journal batch back because journal.max_inflight_batches were unanswered.",
            j.inflight_full.get(),
        )?;
        histogram(
            enc,
            "journal_fsync_latency_seconds",
            "Time of one journal fsync.",
            &[&j.fsync_latency],
        )?;
        gauge(
            enc,
            "journal_damaged_ranges",
            "Damaged journal ranges found at start (the daemon starts with any only under journal.on_damage = salvage).",
            j.damaged_ranges.get(),
        )?;
        gauge(
            enc,
            "journal_damaged_bytes",
            "Bytes in the damaged journal ranges found at start.",
            j.damaged_bytes.get(),
        )?;
        let mut me = enc.encode_descriptor(
            "journal_gap_seqs",
            "Sequence numbers salvage recorded as gap entries: lost (between surviving records) or reserved (after the last one, in case they were used).",
            None,
            MetricType::Counter,
        )?;
        for (kind, n) in [
            ("lost", j.gap_lost.get()),
            ("reserved", j.gap_reserved.get()),
        ] {
            me.encode_family(&[("kind", kind)])?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        gauge(
            enc,
            "journal_orphaned_conversations",
            "Conversations salvage kept without their opening record (hidden from every user).",
            j.orphaned.get(),
        )
    }
}

/// A per-group metric family: name, help, and how to read it from a group's figures.
type Family<T> = (&'static str, &'static str, fn(&GroupFigures) -> T);

/// A per-group histogram family: name, help, and which histogram of a group's figures.
type WaitFamily = (
    &'static str,
    &'static str,
    for<'a> fn(&'a GroupFigures) -> &'a WaitHistogram,
);

/// One histogram summed over several per-thread [`LatencyHistogram`]s.
fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    parts: &[&LatencyHistogram],
) -> Result<(), fmt::Error> {
    let (sum, count, buckets) = histogram_values(parts);
    enc.encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

/// Sum (seconds), count and per-bucket counts (upper bound in seconds, not
/// cumulative: the encoder accumulates) of [`LatencyHistogram`]s added together.
fn histogram_values(parts: &[&LatencyHistogram]) -> (f64, u64, Vec<(f64, u64)>) {
    let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_US
        .iter()
        .map(|us| (*us as f64 / 1e6, 0))
        .chain(std::iter::once((f64::INFINITY, 0)))
        .collect();
    let mut sum_us = 0u64;
    for h in parts {
        for (b, c) in buckets.iter_mut().zip(h.buckets.iter()) {
            b.1 += c.get();
        }
        sum_us = sum_us.saturating_add(h.sum_us.get());
    }
    let count = buckets.iter().map(|b| b.1).sum();
    (sum_us as f64 / 1e6, count, buckets)
}

impl Collector for Exporter {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        {
            let mut version = String::new();
            write!(version, "{}", env!("CARGO_PKG_VERSION"))?;
            let labels = [("version", version)];
            enc.encode_descriptor(
                "build_info",
                "Build information; the value is always 1.",
                None,
                MetricType::Gauge,
            )?
            .encode_family(&labels)?
            .encode_gauge(&1u64)?;
        }
        if !self.0.reactor_backend.is_empty() {
            enc.encode_descriptor(
                "reactor_backend_info",
                "The reactors' I/O backend (reactor.backend, auto resolved): epoll or uring; the value is always 1.",
                None,
                MetricType::Gauge,
            )?
            .encode_family(&[("backend", self.0.reactor_backend)])?
            .encode_gauge(&1u64)?;
        }
        gauge(
            &mut enc,
            "ready",
            "1 while accepting and healthy (what /readyz reports), else 0.",
            u64::from(self.0.health.ready()),
        )?;
        self.reactors(&mut enc)?;
        self.kinds(&mut enc)?;
        self.handshakes(&mut enc)?;
        self.tls(&mut enc)?;
        self.workers(&mut enc)?;
        self.router(&mut enc)?;
        self.journal(&mut enc)?;
        self.webhooks(&mut enc)?;
        self.email(&mut enc)?;
        self.admin(&mut enc)
    }
}

impl Exporter {
    fn admin(&self, enc: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let a = &self.0.admin;
        counter(
            enc,
            "admin_connections_accepted",
            "Admin HTTP connections accepted.",
            a.accepted.get(),
        )?;
        gauge(
            enc,
            "admin_connections_open",
            "Admin HTTP connections open now.",
            a.open.get(),
        )?;
        let mut me = enc.encode_descriptor(
            "admin_connections_dropped",
            "Admin HTTP connections closed by the server before an answer was done: \
             evicted (oldest idle or slow, to make room) or timeout (admin.read_timeout).",
            None,
            MetricType::Counter,
        )?;
        for (reason, v) in [("evicted", &a.evicted), ("timeout", &a.timed_out)] {
            me.encode_family(&[("reason", reason)])?
                .encode_counter::<NoLabelSet, _, u64>(&v.get(), None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_every_family_once_and_ends_with_eof() {
        let m = Arc::new(Metrics::new(2, 1));
        m.reactors[1].accepted.add(3);
        m.reactors[0].count_close(CloseReason::Error(ErrorCode::TokenExpired));
        m.workers[0]
            .message_latency
            .observe(Duration::from_millis(3));
        m.router
            .set_queue_lengths(vec![("acme".into(), "sales".into(), 4)]);
        m.router.queue_peak.max(12);
        m.workers[0].shard_queue_peak.max(3);
        let sales = m.router.by_group.group("sales");
        sales.opened.add(2);
        sales.queue_wait.observe_ms(40_000);
        sales.ratings[4].inc();
        sales.ratings[1].inc();
        m.reactors[0].tls.count_handshake(Some("1.3"));
        m.reactors[1].tls.count_failure(0);
        *m.certificates.expiry.lock().unwrap() = vec![("/etc/tls/a.crt".into(), 1_900_000_000)];
        let text = render(&m, true).unwrap();
        assert!(
            text.contains("switchboard_tls_handshakes_total{reactor=\"0\",version=\"1.3\"} 1\n"),
            "{text}"
        );
        assert!(text.contains(
            "switchboard_tls_handshake_failures_total{reactor=\"1\",reason=\"no_application_protocol\"} 1\n"
        ));
        assert!(text.contains(
            "switchboard_tls_certificate_expiry_timestamp_seconds{name=\"/etc/tls/a.crt\"} 1900000000\n"
        ));
        assert!(text.contains("switchboard_tls_certificate_reload_failures_total 0\n"));
        assert!(
            text.contains("switchboard_conversations_opened_total{group=\"sales\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("switchboard_conversations_opened_total{group=\"_other\"} 0\n"));
        assert!(text.contains("switchboard_router_queue_peak 12\n"));
        assert!(
            text.contains("switchboard_shard_queue_peak{worker=\"0\"} 3\n"),
            "{text}"
        );
        assert!(text.contains(
            "switchboard_conversation_queue_wait_seconds_bucket{le=\"30.0\",group=\"sales\"} 0\n"
        ), "{text}");
        assert!(text.contains(
            "switchboard_conversation_queue_wait_seconds_bucket{le=\"60.0\",group=\"sales\"} 1\n"
        ));
        assert!(
            text.contains(
                "switchboard_conversation_queue_wait_seconds_sum{group=\"sales\"} 40.0\n"
            )
        );
        assert!(text.contains("switchboard_conversation_rating_count{group=\"sales\"} 2\n"));
        assert!(text.contains("switchboard_conversation_rating_sum{group=\"sales\"} 7.0\n"));
        assert!(
            text.contains("switchboard_conversation_rating_bucket{le=\"2.0\",group=\"sales\"} 1\n")
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        let classic = render(&m, false).unwrap();
        assert!(!classic.contains("# EOF"));
        assert!(
            classic.contains("# HELP switchboard_connections_accepted_total Connections accepted")
        );
        assert!(classic.contains("# TYPE switchboard_connections_accepted_total counter\n"));
        assert!(classic.contains("# TYPE switchboard_agents_online gauge\n"));
        assert!(text.contains("switchboard_connections_accepted_total{reactor=\"1\"} 3\n"));
        assert!(text.contains(
            "switchboard_handshake_failures_total{code=\"201\",name=\"token_expired\"} 1\n"
        ));
        assert!(
            text.contains("switchboard_routing_queue_length{tenant=\"acme\",group=\"sales\"} 4\n")
        );
        assert!(text.contains("switchboard_message_latency_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("switchboard_build_info{version=\""));
        assert!(
            !text.contains("reactor_backend_info"),
            "not exported before a backend is chosen"
        );
        m.admin.evicted.add(2);
        let text = render(&m, true).unwrap();
        assert!(
            text.contains("switchboard_admin_connections_dropped_total{reason=\"evicted\"} 2\n"),
            "{text}"
        );
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps);
    }

    #[test]
    fn the_chosen_backend_is_an_info_gauge() {
        let mut m = Metrics::new(1, 1);
        m.reactor_backend = "uring";
        let classic = render(&Arc::new(m), false).unwrap();
        assert!(
            classic.contains("# TYPE switchboard_reactor_backend_info gauge\n")
                && classic.contains("switchboard_reactor_backend_info{backend=\"uring\"} 1\n"),
            "{classic}"
        );
    }
}
