//! One endpoint's thread: reads committed records in journal order, turns them into
//! events, POSTs them in batches with a blocking client (`ureq`) and moves the
//! durable cursor. Never on a reactor or worker thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::cursor::{self, Cursor, CursorFile, Disabled, InFlight};
use super::delivery::{Batch, Delivery, Next, Outcome, webhook_id};
use super::events::{Events, Fed, Filter};
use super::sign::signature;
use crate::clock::unix_ms;
use crate::config::WebhookConfig;
use crate::journal::{JournalError, JournalHandle, JournalReader, Location, Step, segment_start};
use crate::metrics::webhooks::EndpointMetrics;

/// Longest wait for the frontier to move before the thread looks at its stop signal.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// Progress past records that made no event is saved at most this often.
const IDLE_SAVE: Duration = Duration::from_secs(5);
/// Most bytes of an answer read (and thrown away) so the connection can be reused.
const MAX_ANSWER_BYTES: u64 = 64 << 10;

/// How a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    /// Answered 2xx.
    Delivered,
    /// Answered 410 Gone.
    Gone,
}

/// What one endpoint's thread needs.
pub(crate) struct Endpoint {
    pub cfg: WebhookConfig,
    pub key: Vec<u8>,
    pub max_batch_bytes: usize,
    pub cursor_path: PathBuf,
    /// The open cursor file and the cursor it held at start (`None`: a new endpoint).
    pub cursor: (CursorFile, Option<Cursor>),
    pub reader: JournalReader,
    pub journal: JournalHandle,
    pub metrics: Arc<EndpointMetrics>,
    /// Disconnected when the daemon stops.
    pub stop: Receiver<()>,
}

/// The daemon is stopping: the thread unwinds its loops.
#[derive(Debug)]
enum Stopped {
    Stop,
}

/// A batch ready to go: its records, events and body.
struct Ready {
    in_flight: InFlight,
    body: Vec<u8>,
    /// Time of its first record, for the lag gauge.
    first_ms: u64,
}

/// Where the reader is and what it carries over between batches.
struct Reading {
    /// The next record to read.
    pos: Location,
    /// A record read whose events did not fit the last batch: its location, the next
    /// one's, its events and time.
    carry: Option<(Location, Location, Vec<Vec<u8>>, u64)>,
}

struct Runner {
    ep: Endpoint,
    events: Events,
    filter: Filter,
    delivery: Delivery,
    agent: ureq::Agent,
    rng: crate::xorshift::XorShift,
    /// The oldest live segment when the conversations were last pruned.
    pruned_at: u32,
}

/// The thread body.
pub(crate) fn run(ep: Endpoint) {
    let id = ep.cfg.id.clone();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(ep.cfg.timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("switchboard-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let seed = unix_ms().get() ^ (std::process::id() as u64) << 32;
    let mut r = Runner {
        filter: Filter::new(&ep.cfg),
        delivery: Delivery::new(crate::clock::millis(ep.cfg.max_backoff)),
        events: Events::default(),
        agent,
        rng: crate::xorshift::XorShift::new(seed | 1),
        pruned_at: 0,
        ep,
    };
    match r.main() {
        Ok(()) => tracing::debug!(endpoint = %id, "webhook thread done"),
        Err(Stopped::Stop) => tracing::debug!(endpoint = %id, "webhook thread stopped"),
    }
}

impl Runner {
    fn stopping(&self) -> bool {
        matches!(self.ep.stop.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Sleeps `d` unless the daemon stops first.
    fn sleep(&self, d: Duration) -> Result<(), Stopped> {
        match self.ep.stop.recv_timeout(d) {
            Err(RecvTimeoutError::Timeout) => Ok(()),
            _ => Err(Stopped::Stop),
        }
    }

    fn main(&mut self) -> Result<(), Stopped> {
        let path = self.ep.cursor_path.clone();
        let frontier = self.ep.reader.frontier.clone();
        let mut cursor = match self.ep.cursor.1.take() {
            Some(c) => c,
            None => {
                // A new endpoint gets what happens from now on, not the whole history.
                let c = Cursor::at(frontier.get());
                self.save(&c)?;
                tracing::info!(endpoint = %self.ep.cfg.id, at = ?frontier.get(), "webhook endpoint starts at the end of the journal");
                c
            }
        };
        if let Some(d) = &cursor.disabled {
            self.ep.metrics.disabled.set(1);
            tracing::warn!(endpoint = %self.ep.cfg.id, status = d.status, at_ms = d.at_ms,
                cursor = %path.display(),
                "webhook endpoint disabled (it answered 410 Gone); delete its cursor file to start it again");
            while !self.stopping() {
                self.sleep(Duration::from_secs(3600))?;
            }
            return Ok(());
        }
        let end = frontier.get();
        let beyond = |a: cursor::At| a.location() > end;
        if beyond(cursor.next) || cursor.in_flight.is_some_and(|f| beyond(f.end)) {
            // Only after a machine crash under journal.fsync = "never" (or a journal
            // put back from a backup): the records it pointed at are gone.
            tracing::warn!(endpoint = %self.ep.cfg.id, cursor = ?cursor.next, journal_end = ?end,
                "webhook cursor is past the end of the journal; going on from the end");
            cursor = Cursor::at(end);
            self.save(&cursor)?;
        }
        // The conversations' state up to where delivery resumes.
        let resume: Location = cursor.in_flight.map_or(cursor.next, |f| f.start).location();
        self.rebuild(resume)?;
        let mut reading = Reading {
            pos: resume,
            carry: None,
        };
        let mut last_save = Instant::now();
        // The cursor moved past a delivered batch but is not saved yet: the next
        // batch's save (or an idle moment, or the stop) takes it along, one sync
        // instead of two per batch. A crash before re-sends the batch, same id.
        let mut dirty = false;
        loop {
            if self.stopping() {
                if dirty {
                    self.save(&cursor)?;
                }
                return Err(Stopped::Stop);
            }
            let ready = match cursor.in_flight {
                // Left in flight by the last run: the same records, the same id.
                Some(f) => self.replay(f)?,
                None => {
                    let Some(ready) = self.build(&mut reading)? else {
                        self.ep.metrics.lag_ms.set(0);
                        if dirty
                            || (cursor.next.location() != reading.pos
                                && last_save.elapsed() >= IDLE_SAVE)
                        {
                            cursor.next = reading.pos.into();
                            self.save(&cursor)?;
                            last_save = Instant::now();
                            dirty = false;
                        }
                        frontier.wait_past(reading.pos, IDLE_WAIT);
                        continue;
                    };
                    cursor.in_flight = Some(ready.in_flight);
                    self.save(&cursor)?;
                    last_save = Instant::now();
                    ready
                }
            };
            match self.deliver(&ready)? {
                Done::Delivered => {
                    cursor.next = ready.in_flight.end;
                    cursor.in_flight = None;
                    dirty = true;
                    reading.pos = reading.pos.max(ready.in_flight.end.location());
                    self.ep
                        .metrics
                        .delivered
                        .add(u64::from(ready.in_flight.events));
                }
                Done::Gone => {
                    cursor.disabled = Some(Disabled {
                        at_ms: unix_ms().get(),
                        status: 410,
                    });
                    self.save(&cursor)?;
                    self.ep.metrics.disabled.set(1);
                    tracing::error!(endpoint = %self.ep.cfg.id, url = %self.ep.cfg.url,
                        "webhook endpoint answered 410 Gone: disabled, nothing more is sent to it \
                         (delete its cursor file and restart to start it again)");
                    return Ok(());
                }
            }
        }
    }

    /// Saves the cursor; while that fails (disk full, I/O error) waits and tries again,
    /// logging and counting each failure: delivery stops meanwhile, nothing is lost.
    fn save(&mut self, cursor: &Cursor) -> Result<(), Stopped> {
        let mut wait = Duration::from_millis(100);
        loop {
            match self.ep.cursor.0.save(cursor) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.ep.metrics.failures.inc();
                    tracing::error!(endpoint = %self.ep.cfg.id, error = %e, retry_in_ms = wait.as_millis() as u64,
                        "webhook cursor cannot be saved; delivery waits");
                    self.sleep(wait)?;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// POSTs `ready` until it is delivered (2xx) or the endpoint is gone (410),
    /// waiting between attempts.
    fn deliver(&mut self, ready: &Ready) -> Result<Done, Stopped> {
        let id = webhook_id(ready.in_flight.start.location(), ready.in_flight.events);
        let started = Instant::now();
        let started_ms = unix_ms().get();
        loop {
            let now_ms = unix_ms().get();
            self.ep
                .metrics
                .lag_ms
                .set(now_ms.saturating_sub(ready.first_ms));
            let outcome = self.post(&id, &ready.body);
            if let Some(c) = self.ep.metrics.attempts.get(outcome.slot()) {
                c.inc();
            }
            let now = started_ms + crate::clock::millis(started.elapsed());
            let rng = &mut self.rng;
            match self
                .delivery
                .on_outcome(outcome, now, &mut || rng.next_u64())
            {
                Next::RetryAt(at) => {
                    self.ep.metrics.failures.inc();
                    let failures = self.delivery.failures();
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(endpoint = %self.ep.cfg.id, webhook_id = %id, ?outcome, failures,
                            "webhook delivery failed; retrying with backoff");
                    }
                    let now = started_ms + crate::clock::millis(started.elapsed());
                    self.sleep(Duration::from_millis(at.saturating_sub(now)))?;
                }
                Next::Delivered => return Ok(Done::Delivered),
                Next::Disable => return Ok(Done::Gone),
            }
        }
    }

    /// One attempt.
    fn post(&self, id: &str, body: &[u8]) -> Outcome {
        let ts = unix_ms().get() / 1000;
        let sig = signature(&self.ep.key, id, ts, body);
        let sent = self
            .agent
            .post(&self.ep.cfg.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .send(body);
        match sent {
            Ok(mut answer) => {
                let status = answer.status().as_u16();
                let _ = answer
                    .body_mut()
                    .with_config()
                    .limit(MAX_ANSWER_BYTES)
                    .read_to_vec();
                Outcome::Status(status)
            }
            Err(ureq::Error::Timeout(_)) => Outcome::Timeout,
            Err(e) => {
                tracing::debug!(endpoint = %self.ep.cfg.id, error = %e, "webhook POST failed");
                Outcome::Connection
            }
        }
    }

    /// Feeds every record from the oldest live segment up to `until` without sending
    /// anything: the conversations' tenants, groups and agents as they were there.
    fn rebuild(&mut self, until: Location) -> Result<(), Stopped> {
        let Some(first) = self.ep.reader.first_segment_from(0) else {
            return Ok(());
        };
        let mut pos = segment_start(first);
        let mut none = Vec::new();
        while pos < until {
            if self.stopping() {
                return Err(Stopped::Stop);
            }
            match self.step(pos, None, &mut none) {
                Ok(Some((next, _, _))) => pos = next,
                Ok(None) => match self.ep.reader.first_segment_from(pos.segment + 1) {
                    Some(s) => pos = segment_start(s),
                    None => break,
                },
                Err(_) => match self.ep.reader.first_segment_from(pos.segment + 1) {
                    Some(s) => pos = segment_start(s),
                    None => break,
                },
            }
        }
        self.pruned_at = first;
        Ok(())
    }

    /// Reads the record at `pos`: `Some((next, fed, time_ms))`, or `None` at the end of
    /// its segment.
    fn step(
        &mut self,
        pos: Location,
        filter: Option<&Filter>,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Option<(Location, Fed, u64)>, JournalError> {
        let events = &mut self.events;
        match self
            .ep
            .reader
            .step_with(pos, |r| (events.feed(r, filter, out), r.time_ms))?
        {
            Step::Record((fed, time), next) => {
                if fed.unreadable > 0 {
                    self.ep.metrics.unreadable.inc();
                    tracing::error!(endpoint = %self.ep.cfg.id, segment = pos.segment, offset = pos.offset,
                        "journal record does not validate: no webhook event for it");
                }
                Ok(Some((next, fed, time)))
            }
            Step::Skip(next) => Ok(Some((next, Fed::default(), 0))),
            Step::End => Ok(None),
        }
    }

    /// The batch left in flight: records `[start, end)` again, with their events.
    fn replay(&mut self, f: InFlight) -> Result<Ready, Stopped> {
        let filter = self.filter.clone();
        let mut out = Vec::new();
        let mut pos: Location = f.start.location();
        let end: Location = f.end.location();
        let mut first_ms = None;
        while pos < end {
            match self.step(pos, Some(&filter), &mut out) {
                Ok(Some((next, fed, t))) => {
                    if fed.events > 0 && first_ms.is_none() {
                        first_ms = Some(t);
                    }
                    pos = next;
                }
                Ok(None) => match self.ep.reader.first_segment_from(pos.segment + 1) {
                    Some(s) => pos = segment_start(s),
                    None => break,
                },
                Err(e) => {
                    pos = self.skip_gone(pos, pos.segment, &e);
                }
            }
        }
        let mut batch = Batch::new(usize::MAX, usize::MAX);
        for e in &out {
            batch.push(e);
        }
        let events = batch.events();
        if events != f.events {
            tracing::warn!(endpoint = %self.ep.cfg.id, before = f.events, now = events,
                "the batch in flight at the last stop makes another number of events now \
                 (configuration or retention changed): sent under a new webhook-id");
        }
        Ok(Ready {
            in_flight: InFlight { events, ..f },
            body: batch.finish(),
            first_ms: first_ms.unwrap_or_else(|| unix_ms().get()),
        })
    }

    /// After a read error at `pos` (its segment deleted by retention, or unreadable):
    /// logs and counts what is skipped, and returns where reading goes on.
    fn skip_gone(&mut self, pos: Location, missing: u32, e: &JournalError) -> Location {
        let next = self.ep.reader.first_segment_from(pos.segment + 1);
        let to = next.map_or(pos, segment_start);
        let skipped = next.map_or(1, |n| n.saturating_sub(missing));
        self.ep.metrics.segments_skipped.add(u64::from(skipped));
        tracing::error!(endpoint = %self.ep.cfg.id, from_segment = pos.segment, from_offset = pos.offset,
            to_segment = to.segment, error = %e,
            "webhook endpoint fell behind retention: the events of the records in between were \
             never sent");
        if next.is_none() {
            // Nothing to go on with yet: the caller waits for the frontier.
            std::thread::sleep(IDLE_WAIT);
        }
        to
    }

    /// Reads committed records from `reading.pos` into a new batch; `None` if there is
    /// no event to send yet.
    fn build(&mut self, reading: &mut Reading) -> Result<Option<Ready>, Stopped> {
        let frontier = self.ep.reader.frontier.get();
        let filter = self.filter.clone();
        let mut batch = Batch::new(self.ep.cfg.max_batch, self.ep.max_batch_bytes);
        let mut first_ms = None;
        let start = match &reading.carry {
            Some((at, ..)) => *at,
            None => reading.pos,
        };
        if let Some((_, next, events, t)) = reading.carry.take() {
            for e in &events {
                batch.push(e);
            }
            first_ms = Some(t);
            reading.pos = next;
        }
        let mut out = Vec::new();
        self.prune();
        while !batch.is_full() && reading.pos < frontier {
            let pos = reading.pos;
            match self.step(pos, Some(&filter), &mut out) {
                Ok(Some((next, fed, t))) => {
                    if fed.events > 0 {
                        let len: usize = out.iter().map(|e| e.len() + 1).sum();
                        let room =
                            batch.events() as usize + out.len() <= self.ep.cfg.max_batch.max(1);
                        if batch.events() > 0 && !(room && batch.fits(len)) {
                            reading.carry = Some((pos, next, std::mem::take(&mut out), t));
                            break;
                        }
                        for e in out.drain(..) {
                            batch.push(&e);
                        }
                        first_ms.get_or_insert(t);
                    }
                    reading.pos = next;
                }
                Ok(None) => {
                    if pos.segment >= frontier.segment {
                        break;
                    }
                    match self.ep.reader.first_segment_from(pos.segment + 1) {
                        Some(s) if s == pos.segment + 1 => reading.pos = segment_start(s),
                        Some(_) => {
                            let gone = JournalError::SegmentGone(pos.segment + 1);
                            reading.pos = self.skip_gone(pos, pos.segment + 1, &gone);
                        }
                        None => break,
                    }
                }
                Err(e) => reading.pos = self.skip_gone(pos, pos.segment, &e),
            }
        }
        let end = match &reading.carry {
            Some((at, ..)) => *at,
            None => reading.pos,
        };
        if batch.events() == 0 {
            return Ok(None);
        }
        let events = batch.events();
        Ok(Some(Ready {
            in_flight: InFlight {
                start: start.into(),
                end: end.into(),
                events,
            },
            body: batch.finish(),
            first_ms: first_ms.unwrap_or_else(|| unix_ms().get()),
        }))
    }

    /// Forgets conversations with no record left once retention deleted segments.
    fn prune(&mut self) {
        let Some(first) = self.ep.reader.first_segment_from(0) else {
            return;
        };
        if first == self.pruned_at {
            return;
        }
        self.pruned_at = first;
        if let Ok(segments) = self.ep.journal.segments() {
            let live: std::collections::HashSet<u64> = segments
                .iter()
                .flat_map(|s| s.conversations.iter().copied())
                .collect();
            self.events.retain(|c| live.contains(&c));
        }
    }
}
