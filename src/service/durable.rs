//! Journal group commit for one worker's conversation shard: what the shard changes is
//! written to the journal, and what it wants sent waits until the journal says the
//! change is durable (per `journal.fsync`).
//!
//! Up to `journal.max_inflight_batches` batches are in flight at a time; each is
//! submitted at the end of the loop turn that filled it, so a change waits for the
//! writer's next fsync, not for an earlier batch's answer first (the journal's writer
//! merges whatever is queued, from all workers, into one fsync). At the bound, the
//! next batch keeps filling until the oldest is answered. Batches become durable in
//! order: the writer answers one submitter's appends in submission order, and after a
//! failure it refuses every append made before the submitter heard of it (the fence,
//! [`JournalHandle::append_fenced`]), so no later batch is ever stored after an earlier
//! one was taken back. Effects that depend on nothing pending go out at once.
//!
//! When a batch fails (disk full, I/O error, journal queue full), the shard takes back
//! every change that is not durable; clients whose requests were taken back get a
//! retryable `Error` 503 (their `Send`s can be resent with the same `client_msg_id`),
//! and lifecycle messages from the router are applied again into the next batch,
//! which is tried after a back-off.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::clock::{Mono, Now};
use crate::handoff::ConnId;
use crate::journal::{AppendError, Committed, DiskError, JournalHandle, Location, Record};
use std::sync::atomic::Ordering;

use crate::metrics::{Health, JournalMetrics, WorkerMetrics};
use crate::protocol::ErrorCode;

use crate::service::conversation::Shard;
use crate::service::parked::{ParkedEffect, Spares};
use crate::service::record::RecordKind;
use crate::service::{Effect, ShardMsg, error_command, request_conversation};

/// Wait after a failed batch before writing again.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Effects a released batch puts into the worker's list before it is handed on
/// ([`Sink`]): a batch answered after a slow fsync held 32,768 effects of 248 bytes
/// (8 MB) in that list at once, and the list keeps its capacity. As the worker's own
/// `BATCH`.
pub(crate) const RELEASE_CHUNK: usize = 256;

/// Hands the effects in a list on, in order, leaving it empty (the worker's
/// dispatch); a sink that leaves them there only costs memory.
pub(crate) type Sink<'a> = &'a mut dyn FnMut(&mut Vec<Effect>);

/// Largest capacity (items) of a batch's list kept for the next batch: a list grown
/// past it by a burst is freed, not kept (4,096 parked effects are 256 KiB).
const SPARE_MAX_ITEMS: usize = 4096;

/// Where a parked change came from, which says what to do when it is taken back.
enum Origin {
    /// A client's request: answer it with a retryable error.
    Client {
        conn: ConnId,
        rid: u32,
        conversation: u64,
    },
    /// A lifecycle message from the router: apply it again.
    Router(Box<ShardMsg>),
}

/// A change waiting for its batch (its effects are in [`Batch::effects`]).
struct Parked {
    origin: Origin,
    /// When the change was made (its latency to durable is a metric).
    since: Mono,
}

#[derive(Default)]
struct Batch {
    epoch: u64,
    records: Vec<Record>,
    /// When it was handed to the journal.
    submitted: Option<Mono>,
    /// (conversation, seq) of each transcript entry among the submitted records, in
    /// order (`None` for other records), to note where they landed.
    entries: Vec<Option<(u64, u64)>>,
    parked: Vec<Parked>,
    /// The effects of the parked changes, in order, in one `Vec` for the batch: a
    /// `Vec` per change (one allocation per message, with room for four effects)
    /// held several MB more while batches waited for the disk. In their compact form
    /// (64 bytes, not 248).
    effects: Vec<ParkedEffect>,
    /// The journal refused it at submission (`Some(true)`: a storage failure, such as
    /// a full queue; `Some(false)`: a record over the limits). It is taken back, with
    /// everything after it, once the batches before it are answered: they are at the
    /// writer already and may still be stored.
    refused: Option<bool>,
    /// The journal's answer, once it came (kept until every earlier batch's did).
    answer: Option<Result<Vec<Location>, DiskError>>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.parked.is_empty()
    }
}

/// The lists of answered batches, emptied, for the next batches: one batch's worth
/// of memory is reused rather than freed and touched anew (its pages given back to
/// the kernel in between), several times a second under load.
struct BatchSpares {
    records: Spares<Record>,
    entries: Spares<Option<(u64, u64)>>,
    parked: Spares<Parked>,
    effects: Spares<ParkedEffect>,
}

impl BatchSpares {
    /// Room for what `max_inflight` batches in flight and the one being built give
    /// back.
    fn new(max_inflight: usize) -> Self {
        let lists = max_inflight + 1;
        BatchSpares {
            records: Spares::new(lists, SPARE_MAX_ITEMS),
            entries: Spares::new(lists, SPARE_MAX_ITEMS),
            parked: Spares::new(lists, SPARE_MAX_ITEMS),
            effects: Spares::new(lists, SPARE_MAX_ITEMS),
        }
    }

    /// An empty batch `epoch`, with kept lists.
    fn batch(&mut self, epoch: u64) -> Batch {
        Batch {
            epoch,
            records: self.records.take(),
            entries: self.entries.take(),
            parked: self.parked.take(),
            effects: self.effects.take(),
            ..Batch::default()
        }
    }

    /// Keeps the lists of a released batch.
    fn give(&mut self, batch: Batch) {
        self.records.give(batch.records);
        self.entries.give(batch.entries);
        self.parked.give(batch.parked);
        self.effects.give(batch.effects);
    }
}

/// A worker's link to the journal.
pub(crate) struct Durable {
    handle: JournalHandle,
    reply_tx: Sender<Committed>,
    /// Answers from the journal's writer; the worker loop selects on it.
    pub replies: Receiver<Committed>,
    /// Submitted batches, oldest first, answered in this order.
    inflight: VecDeque<Batch>,
    /// The journal's failure count when this shard last took everything back: its
    /// appends are refused once another failure happens (see the module doc).
    fence: u64,
    building: Batch,
    /// Lists of answered batches, for the next ones.
    spares: BatchSpares,
    /// Where the shard's effects go before they are sent or parked (reused).
    scratch: Vec<Effect>,
    retry_at: Option<Mono>,
    stats: Arc<crossbeam_utils::CachePadded<WorkerMetrics>>,
    journal: Arc<crossbeam_utils::CachePadded<JournalMetrics>>,
    health: Arc<Health>,
}

impl Durable {
    /// A link submitting through `handle`.
    pub fn new(
        handle: JournalHandle,
        shard: &mut Shard,
        stats: Arc<crossbeam_utils::CachePadded<WorkerMetrics>>,
        (journal, health): (
            Arc<crossbeam_utils::CachePadded<JournalMetrics>>,
            Arc<Health>,
        ),
    ) -> Self {
        // At most the batches in flight are answered at once, plus, right after a
        // take-back, the (fenced) ones it dropped: the writer never waits for room.
        let (reply_tx, replies) = crossbeam_channel::bounded(2 * handle.max_inflight_batches() + 1);
        let fence = handle.failures();
        let mut spares = BatchSpares::new(handle.max_inflight_batches());
        let building = spares.batch(1);
        shard.set_epoch(building.epoch);
        Durable {
            handle,
            reply_tx,
            replies,
            inflight: VecDeque::new(),
            fence,
            building,
            spares,
            scratch: Vec::new(),
            retry_at: None,
            stats,
            journal,
            health,
        }
    }

    /// Applies one message to the shard at `now`; effects that depend on a pending
    /// change are parked, the rest go to `out`.
    pub fn handle(&mut self, shard: &mut Shard, msg: ShardMsg, now: Now, out: &mut Vec<Effect>) {
        let origin = match &msg {
            ShardMsg::Request { from, msg: m } => Origin::Client {
                conn: from.conn,
                rid: from.rid,
                conversation: request_conversation(m),
            },
            // Attachments are a client's requests too: answered with an error if
            // what they read is taken back, not retried.
            ShardMsg::Upload { from, upload } => Origin::Client {
                conn: from.conn,
                rid: from.rid,
                conversation: upload.conversation,
            },
            ShardMsg::Download {
                from, conversation, ..
            }
            | ShardMsg::Info { from, conversation } => Origin::Client {
                conn: from.conn,
                rid: from.rid,
                conversation: *conversation,
            },
            other => Origin::Router(Box::new(other.clone())),
        };
        let mut effects = std::mem::take(&mut self.scratch);
        shard.handle(msg, now.unix, &mut effects);
        let dependent = shard.last_dependent();
        if dependent {
            let parked = effects.drain(..).map(ParkedEffect::from);
            self.building.effects.extend(parked);
        } else {
            out.append(&mut effects);
        }
        self.scratch = effects;
        if !dependent {
            return;
        }
        shard.move_records(&mut self.building.records);
        self.building.parked.push(Parked {
            origin,
            since: now.mono,
        });
    }

    /// When the worker should call [`Durable::flush`] again even with no input.
    pub fn wake_at(&self) -> Option<Mono> {
        self.retry_at.filter(|_| !self.building.is_empty())
    }

    /// Submits the batch being built, unless `journal.max_inflight_batches` are in
    /// flight already (or a back-off runs at `now`).
    /// Effects released (this batch's, if nothing waits before it) go to `out`, which
    /// is handed to `send` every [`RELEASE_CHUNK`] effects.
    pub fn flush(&mut self, shard: &mut Shard, now: Now, out: &mut Vec<Effect>, send: Sink<'_>) {
        if self.building.is_empty() {
            return;
        }
        if self.retry_at.is_some_and(|t| now.mono < t) {
            return;
        }
        let records_empty = self.building.records.is_empty();
        if self.inflight.back().is_some_and(|b| b.refused.is_some()) {
            return; // nothing more until the refusal is settled
        }
        if records_empty && !self.inflight.is_empty() {
            // Its effects wait only on earlier batches: it goes out when they are
            // answered (`committed` flushes again).
            return;
        }
        if self.inflight.len() >= self.handle.max_inflight_batches() {
            self.journal.inflight_full.inc();
            tracing::debug!(
                max = self.handle.max_inflight_batches(),
                "journal.max_inflight_batches reached; the next batch keeps filling"
            );
            return;
        }
        self.retry_at = None;
        let next = self.spares.batch(self.building.epoch + 1);
        let mut batch = std::mem::replace(&mut self.building, next);
        shard.set_epoch(self.building.epoch);
        if records_empty {
            // Waited only on earlier batches, which are durable now.
            shard.durable(batch.epoch);
            self.release(batch, now, out, send);
            return;
        }
        let records = std::mem::take(&mut batch.records);
        self.journal.appends.add(records.len() as u64);
        self.journal
            .append_bytes
            .add(records.iter().map(|r| r.body.len() as u64).sum());
        batch.submitted = Some(now.mono);
        batch.entries.extend(
            records
                .iter()
                .map(|r| (r.kind == RecordKind::Entry as u8).then_some((r.conversation, r.seq))),
        );
        let epoch = batch.epoch;
        self.inflight.push_back(batch);
        let Err(e) = self
            .handle
            .append_fenced(records, epoch, &self.reply_tx, self.fence)
        else {
            return;
        };
        let storage = !matches!(
            e,
            AppendError::TooLarge { .. } | AppendError::BatchTooLarge { .. }
        );
        if storage {
            tracing::warn!(error = %e, "journal append refused; changes taken back");
        } else {
            // Not a storage failure: the disk is fine and `/readyz` stays ready.
            // Config validation makes every record of a valid message fit, so this
            // is a bug; the changes are taken back like a failed write.
            tracing::error!(error = %e, "journal refused a record over its limits; changes taken back");
        }
        if let Some(b) = self.inflight.back_mut() {
            b.refused = Some(storage);
        }
        self.settle_refused(shard, now, out);
    }

    /// Takes everything back if the oldest batch in flight is one the journal refused
    /// (every batch before it has been answered).
    fn settle_refused(&mut self, shard: &mut Shard, now: Now, out: &mut Vec<Effect>) {
        match self.inflight.front().and_then(|b| b.refused) {
            Some(true) => self.fail(shard, now, out),
            Some(false) => self.take_back(shard, now, out),
            None => {}
        }
    }

    /// The journal answered a batch in flight (the answer was taken at `now`).
    /// Batches are settled oldest first: an answer for a later one (the writer sends
    /// them in order, so only a test sees this) waits with its batch. What it releases
    /// goes to `out`, handed to `send` every [`RELEASE_CHUNK`] effects.
    pub fn committed(
        &mut self,
        c: Committed,
        shard: &mut Shard,
        now: Now,
        out: &mut Vec<Effect>,
        send: Sink<'_>,
    ) {
        // An answer for a batch taken back (refused by the fence) is stale.
        // The records come back to be freed here, where they were made; their list
        // holds the next batch's.
        self.spares.records.give(c.spent);
        let Some(batch) = self.inflight.iter_mut().find(|b| b.epoch == c.token) else {
            return;
        };
        batch.answer = Some(c.result);
        while let Some(result) = self.inflight.front_mut().and_then(|b| b.answer.take()) {
            match result {
                Ok(locations) => {
                    if let Some(mut batch) = self.inflight.pop_front() {
                        for (entry, at) in batch.entries.drain(..).zip(locations) {
                            if let Some((conversation, seq)) = entry {
                                shard.located(conversation, seq, at);
                            }
                        }
                        shard.durable(batch.epoch);
                        if let Some(t) = batch.submitted {
                            self.journal.append_latency.observe(now.mono.since(t));
                        }
                        self.health.journal_ok.store(true, Ordering::Relaxed);
                        self.release(batch, now, out, send);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "journal write failed; changes taken back");
                    self.fail(shard, now, out);
                    return;
                }
            }
        }
        self.settle_refused(shard, now, out);
        self.flush(shard, now, out, send);
    }

    /// Storage failed: counted, `/readyz` turns 503, and everything pending is taken
    /// back.
    fn fail(&mut self, shard: &mut Shard, now: Now, out: &mut Vec<Effect>) {
        self.stats.storage_errors.inc();
        self.health.journal_ok.store(false, Ordering::Relaxed);
        self.take_back(shard, now, out);
    }

    /// Takes back everything pending: errors to clients (nothing of theirs was
    /// stored; a resend can succeed), lifecycle applied again.
    fn take_back(&mut self, shard: &mut Shard, now: Now, out: &mut Vec<Effect>) {
        shard.rollback();
        // Appends made from now on may be stored; any made before and still queued
        // are refused by the writer (it counted the failure that got us here).
        self.fence = self.handle.failures();
        let next = self.spares.batch(self.building.epoch + 1);
        let building = std::mem::replace(&mut self.building, next);
        shard.set_epoch(self.building.epoch);
        let mut again = Vec::new();
        for p in std::mem::take(&mut self.inflight)
            .into_iter()
            .chain([building])
            .flat_map(|b| b.parked)
        {
            match p.origin {
                Origin::Client {
                    conn,
                    rid,
                    conversation,
                } => {
                    let code = ErrorCode::StorageUnavailable;
                    let cmd = error_command(conn, code, conversation, rid);
                    out.push(Effect::Reactor(cmd));
                }
                Origin::Router(msg) => again.push(*msg),
            }
        }
        for msg in again {
            self.handle(shard, msg, now, out);
        }
        self.retry_at = Some(now.mono.plus(RETRY_AFTER));
    }
}

impl Durable {
    /// Sends what waited for `batch`; a client's change is a message whose latency
    /// (change made → durable) is observed. The effects go to `out` in their full
    /// form [`RELEASE_CHUNK`] at a time, `out` handed to `send` between chunks: a
    /// whole batch at once held its effects at 248 bytes each, not 64.
    fn release(&mut self, mut batch: Batch, now: Now, out: &mut Vec<Effect>, send: Sink<'_>) {
        for p in batch.parked.drain(..) {
            if matches!(p.origin, Origin::Client { .. }) {
                self.stats.message_latency.observe(now.mono.since(p.since));
            }
        }
        let mut parked = batch.effects.drain(..);
        loop {
            // At least one, so a sink that keeps what it is given still ends.
            let room = RELEASE_CHUNK.saturating_sub(out.len()).max(1);
            out.extend(parked.by_ref().take(room).map(Effect::from));
            if parked.len() == 0 {
                break;
            }
            send(out);
        }
        drop(parked);
        // `give` empties every list it keeps.
        self.spares.give(batch);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::frame;
    use crate::handoff::Command;
    use crate::journal::{FaultState, Faults, Journal, JournalConfig};
    use crate::protocol::messages::{self, Msg, content, role};
    use crate::service::conversation::ShardSettings;
    use crate::service::{Principal, Sender as From, UserRef};

    fn vera() -> UserRef {
        UserRef {
            tenant: String::new(),
            user: "vera".into(),
        }
    }

    fn conn() -> ConnId {
        ConnId {
            reactor: 0,
            slot: 1,
            generation: 1,
        }
    }

    fn send(id: u64) -> ShardMsg {
        send_body(id, format!("m{id}"))
    }

    fn send_body(id: u64, body: String) -> ShardMsg {
        ShardMsg::Request {
            from: From {
                id: std::sync::Arc::new(Principal {
                    who: vera(),
                    name: "Vera".into(),
                    role: role::VISITOR,
                    groups: Box::default(),
                    addr: None,
                }),
                conn: conn(),
                rid: id as u32,
            },
            msg: messages::Send {
                conversation: 7,
                client_msg_id: id,
                content_type: content::TEXT,
                group: String::new(),
                body,
            }
            .into(),
        }
    }

    /// The replies in `out` to the test connection, decoded, as (request id, msg).
    /// The router's `Open` of conversation 7, opened by Vera's message `id`.
    fn open_with(id: u64) -> ShardMsg {
        let ShardMsg::Request {
            from,
            msg: Msg::Send(send),
        } = send(id)
        else {
            unreachable!("send() makes a Send request")
        };
        ShardMsg::Open(Box::new(crate::service::Opening {
            conversation: 7,
            visitor: vera(),
            visitor_name: "Vera".into(),
            group: "support".into(),
            visitor_conns: vec![conn()],
            opener: from,
            send,
            offline: false,
        }))
    }

    fn replies(out: &mut Vec<Effect>) -> Vec<(u32, Msg)> {
        out.drain(..)
            .filter_map(|e| match e {
                Effect::Reactor(Command::Send { frame, .. }) => {
                    let d = frame::decode(&frame, u32::MAX).ok().flatten()?;
                    let m = Msg::decode(d.header.kind, d.payload).ok()?;
                    Some((d.header.request_id, m))
                }
                _ => None,
            })
            .collect()
    }

    /// A journal in a fresh directory whose writes and syncs fail as its fault state says.
    fn faulty_journal() -> (tempfile::TempDir, Arc<FaultState>, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let (faults, armed) = Faults::armed();
        let journal =
            Journal::open_with_faults(dir.path(), &small_segments(), faults, |_, _| {}).unwrap();
        (dir, armed, journal)
    }

    /// 1 MiB segments: small enough for tests.
    fn small_segments() -> JournalConfig {
        JournalConfig {
            segment_bytes: 1 << 20,
            ..JournalConfig::default()
        }
    }

    /// A journaled shard and its `Durable` over `journal`, with their metrics.
    fn durable_shard(
        journal: &Journal,
    ) -> (
        Shard,
        Durable,
        Arc<crossbeam_utils::CachePadded<WorkerMetrics>>,
        Arc<crate::metrics::Health>,
    ) {
        let mut shard = Shard::new(ShardSettings::for_tests(1000));
        let stats = Arc::new(crossbeam_utils::CachePadded::new(WorkerMetrics::default()));
        let health = Arc::new(crate::metrics::Health::default());
        let d = Durable::new(
            journal.handle.clone(),
            &mut shard,
            stats.clone(),
            (Arc::default(), health.clone()),
        );
        (shard, d, stats, health)
    }

    /// `ms` milliseconds into a test, on both clocks.
    fn at(ms: u64) -> Now {
        Now {
            mono: Mono::from_ms(ms),
            unix: crate::clock::UnixMs(1_700_000_000_000 + ms),
        }
    }

    /// A sink that leaves the effects where they are (the tests read them from `out`).
    fn keep(_: &mut Vec<Effect>) {}

    fn commit(d: &mut Durable, shard: &mut Shard, now: Now, out: &mut Vec<Effect>) {
        d.flush(shard, now, out, &mut keep);
        let c = d.replies.recv_timeout(Duration::from_secs(5)).unwrap();
        d.committed(c, shard, now, out, &mut keep);
    }

    /// A batch answered at once releases its effects `RELEASE_CHUNK` at a time: the
    /// sink is handed at most that many, every one of them, in order.
    #[test]
    fn a_large_batch_is_released_in_chunks_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), &small_segments(), |_, _| {}).unwrap();
        let (mut shard, mut d, _, _) = durable_shard(&journal);
        let mut out = Vec::new();
        d.handle(&mut shard, open_with(0), at(0), &mut out);
        commit(&mut d, &mut shard, at(0), &mut out);
        out.clear();
        let n = 3 * RELEASE_CHUNK as u64;
        for id in 1..=n {
            d.handle(&mut shard, send(id), at(1), &mut out);
        }
        assert!(out.is_empty(), "all parked until durable");
        d.flush(&mut shard, at(1), &mut out, &mut keep);
        let c = d.replies.recv_timeout(Duration::from_secs(5)).unwrap();
        let (mut sent, mut largest, mut calls) = (Vec::new(), 0, 0);
        let mut sink = |e: &mut Vec<Effect>| {
            calls += 1;
            largest = largest.max(e.len());
            sent.append(e);
        };
        d.committed(c, &mut shard, at(2), &mut out, &mut sink);
        sent.append(&mut out);
        assert!(calls >= 2, "handed on in chunks ({calls} calls)");
        assert!(largest <= RELEASE_CHUNK, "{largest} effects at once");
        let acks: Vec<u32> = replies(&mut sent)
            .into_iter()
            .filter_map(|(rid, m)| matches!(m, Msg::Accepted(_)).then_some(rid))
            .collect();
        assert_eq!(
            acks,
            (1..=n as u32).collect::<Vec<_>>(),
            "every ack, in order"
        );
    }

    /// A record over the journal's limit (impossible with a validated config; here
    /// the journal is opened with a tiny limit) is taken back, but it is not a storage
    /// failure: not counted as one, and `/readyz` stays ready.
    #[test]
    fn a_record_over_the_limit_is_not_a_storage_failure() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            max_record_bytes: 1024,
            ..small_segments()
        };
        let journal = Journal::open(dir.path(), &cfg, |_, _| {}).unwrap();
        let (mut shard, mut d, stats, health) = durable_shard(&journal);
        let mut out = Vec::new();
        // Opened by message 0; message 1 is too large.
        d.handle(&mut shard, open_with(0), at(0), &mut out);
        d.handle(&mut shard, send_body(1, "x".repeat(2000)), at(0), &mut out);
        d.flush(&mut shard, at(0), &mut out, &mut keep);
        let got = replies(&mut out);
        assert!(
            matches!(&got[..], [(1, Msg::Error(e))] if e.code == 503),
            "{got:?}"
        );
        assert_eq!(stats.storage_errors.get(), 0, "not a storage error");
        assert!(health.journal_ok.load(Ordering::Relaxed), "still ready");
        // What fits is stored as usual afterwards.
        d.handle(&mut shard, send(2), at(1), &mut out);
        d.flush(&mut shard, at(99), &mut out, &mut keep);
        assert!(
            d.inflight.is_empty(),
            "nothing submitted during the back-off"
        );
        assert_eq!(d.wake_at(), Some(at(0).mono.plus(RETRY_AFTER)));
        commit(&mut d, &mut shard, at(100), &mut out);
        let got = replies(&mut out);
        assert!(
            matches!(&got[..], [(0, Msg::Accepted(a)), (2, Msg::Accepted(b))] if a.seq == 1 && b.seq == 2),
            "the opening is applied again, then 2: {got:?}"
        );
    }

    #[test]
    fn replies_wait_for_the_disk_and_a_failed_write_takes_the_change_back() {
        let (_dir, armed, journal) = faulty_journal();
        let (mut shard, mut d, stats, health) = durable_shard(&journal);
        let mut out = Vec::new();
        d.handle(&mut shard, open_with(1), at(0), &mut out);
        assert!(
            out.is_empty(),
            "nothing goes out before the journal answers"
        );
        commit(&mut d, &mut shard, at(0), &mut out);
        let got = replies(&mut out);
        assert!(
            matches!(&got[..], [(1, Msg::Accepted(a))] if a.seq == 1),
            "{got:?}"
        );

        // The disk is full: the send is taken back and answered 503.
        armed.write_errno.store(libc::ENOSPC, Ordering::Relaxed);
        d.handle(&mut shard, send(2), at(10), &mut out);
        commit(&mut d, &mut shard, at(10), &mut out);
        let got = replies(&mut out);
        assert!(
            matches!(&got[..], [(2, Msg::Error(e))] if e.code == 503 && e.retryable),
            "{got:?}"
        );
        assert_eq!(stats.storage_errors.get(), 1);
        assert!(
            !health.journal_ok.load(Ordering::Relaxed),
            "readyz turns 503"
        );
        assert_eq!(shard.transcript(7).map(|t| t.len()), Some(1), "taken back");

        // Space is back: the resend is stored once, with the next number.
        armed.write_errno.store(0, Ordering::Relaxed);
        d.handle(&mut shard, send(2), at(20), &mut out);
        d.flush(&mut shard, at(109), &mut out, &mut keep);
        assert!(
            d.inflight.is_empty(),
            "nothing submitted during the back-off"
        );
        commit(&mut d, &mut shard, at(110), &mut out);
        let got = replies(&mut out);
        assert!(
            matches!(&got[..], [(2, Msg::Accepted(a))] if a.seq == 2),
            "{got:?}"
        );
        assert_eq!(shard.transcript(7).map(|t| t.len()), Some(2));
    }

    /// The journal's answers to the `n` batches in flight.
    fn answers(d: &Durable, n: usize) -> Vec<Committed> {
        (0..n)
            .map(|_| d.replies.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect()
    }

    #[test]
    fn batches_in_flight_are_settled_in_order_whatever_order_answers_come_in() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), &small_segments(), |_, _| {}).unwrap();
        let (mut shard, mut d, _, _) = durable_shard(&journal);
        let mut out = Vec::new();
        d.handle(&mut shard, open_with(1), at(0), &mut out);
        d.flush(&mut shard, at(0), &mut out, &mut keep);
        // The second batch goes to the journal before the first is answered.
        d.handle(&mut shard, send(2), at(1), &mut out);
        d.flush(&mut shard, at(1), &mut out, &mut keep);
        assert_eq!(d.inflight.len(), 2);
        assert!(out.is_empty());
        let mut got = answers(&d, 2);
        assert_eq!(
            got.iter().map(|c| c.token).collect::<Vec<_>>(),
            [1, 2],
            "the writer answers in submission order"
        );
        // Seen the other way round, the later batch still waits for the earlier one.
        let first = got.remove(0);
        d.committed(got.remove(0), &mut shard, at(2), &mut out, &mut keep);
        assert!(out.is_empty(), "batch 2 waits for batch 1");
        assert_eq!(d.inflight.len(), 2);
        d.committed(first, &mut shard, at(3), &mut out, &mut keep);
        let got = replies(&mut out);
        assert!(
            matches!(&got[..], [(1, Msg::Accepted(a)), (2, Msg::Accepted(b))] if a.seq == 1 && b.seq == 2),
            "{got:?}"
        );
        assert!(d.inflight.is_empty());
    }

    #[test]
    fn a_failed_batch_takes_back_the_batches_behind_it_and_none_is_stored() {
        let (dir, armed, journal) = faulty_journal();
        let (mut shard, mut d, stats, health) = durable_shard(&journal);
        let mut out = Vec::new();
        d.handle(&mut shard, open_with(1), at(0), &mut out);
        commit(&mut d, &mut shard, at(0), &mut out);
        assert_eq!(replies(&mut out).len(), 1);

        // Two batches in flight; the first one's fsync fails.
        armed.sync_errno.store(libc::EIO, Ordering::Relaxed);
        d.handle(&mut shard, send(2), at(10), &mut out);
        d.flush(&mut shard, at(10), &mut out, &mut keep);
        d.handle(&mut shard, send(3), at(11), &mut out);
        d.flush(&mut shard, at(11), &mut out, &mut keep);
        assert_eq!(d.inflight.len(), 2);
        let mut got = answers(&d, 2);
        assert!(got[0].result.is_err() && got[1].result.is_err(), "{got:?}");
        d.committed(got.remove(0), &mut shard, at(12), &mut out, &mut keep);
        let mut sent = replies(&mut out);
        sent.sort_by_key(|(rid, _)| *rid);
        assert!(
            matches!(&sent[..], [(2, Msg::Error(a)), (3, Msg::Error(b))] if a.code == 503 && b.code == 503),
            "both taken back at the first failure: {sent:?}"
        );
        assert_eq!(shard.transcript(7).map(|t| t.len()), Some(1));
        assert_eq!(stats.storage_errors.get(), 1);
        assert!(!health.journal_ok.load(Ordering::Relaxed));
        // The second answer is for a batch already taken back.
        d.committed(got.remove(0), &mut shard, at(13), &mut out, &mut keep);
        assert!(out.is_empty() && d.inflight.is_empty());

        // The disk is back: the resends are stored once, with the next numbers.
        armed.sync_errno.store(0, Ordering::Relaxed);
        d.handle(&mut shard, send(2), at(120), &mut out);
        d.flush(&mut shard, at(120), &mut out, &mut keep);
        d.handle(&mut shard, send(3), at(121), &mut out);
        d.flush(&mut shard, at(121), &mut out, &mut keep);
        for c in answers(&d, 2) {
            d.committed(c, &mut shard, at(122), &mut out, &mut keep);
        }
        let got = replies(&mut out);
        assert!(
            matches!(&got[..], [(2, Msg::Accepted(a)), (3, Msg::Accepted(b))] if a.seq == 2 && b.seq == 3),
            "{got:?}"
        );
        // On disk: the opening's records and the two resends, nothing of the failed batches.
        journal.handle.shutdown();
        journal.writer.join().unwrap();
        let mut seqs = Vec::new();
        let _again = Journal::open(dir.path(), &small_segments(), |r, _| {
            if r.kind == RecordKind::Entry as u8 {
                seqs.push(r.seq);
            }
        })
        .unwrap();
        assert_eq!(seqs, [1, 2, 3]);
    }

    #[test]
    fn at_the_bound_the_next_batch_keeps_filling() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            max_inflight_batches: 2,
            ..small_segments()
        };
        let journal = Journal::open(dir.path(), &cfg, |_, _| {}).unwrap();
        let (mut shard, mut d, _, _) = durable_shard(&journal);
        let mut out = Vec::new();
        d.handle(&mut shard, open_with(1), at(0), &mut out);
        d.flush(&mut shard, at(0), &mut out, &mut keep);
        for id in 2..=4 {
            d.handle(&mut shard, send(id), at(id), &mut out);
            d.flush(&mut shard, at(id), &mut out, &mut keep);
        }
        assert_eq!(d.inflight.len(), 2, "the bound");
        assert_eq!(d.journal.inflight_full.get(), 2, "held back twice");
        assert_eq!(d.building.parked.len(), 2, "3 and 4 wait together");
        let mut rest = answers(&d, 2).into_iter();
        d.committed(rest.next().unwrap(), &mut shard, at(5), &mut out, &mut keep);
        assert_eq!(d.inflight.len(), 2, "the next batch went out at once");
        d.committed(rest.next().unwrap(), &mut shard, at(6), &mut out, &mut keep);
        for c in answers(&d, 1) {
            d.committed(c, &mut shard, at(7), &mut out, &mut keep);
        }
        let got: Vec<u32> = replies(&mut out).into_iter().map(|(rid, _)| rid).collect();
        assert_eq!(got, [1, 2, 3, 4]);
    }
}
