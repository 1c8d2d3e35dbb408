//! The writer thread: drains the submission queue, encodes every queued record into one
//! buffer, writes it with positioned writes, makes it durable per `journal.fsync`, then
//! answers each submitter (group commit). Also runs retention requests, so segment
//! deletion and compaction never race an append.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{RecvTimeoutError, Sender, TrySendError};

use super::config::{FsyncPolicy, JournalConfig};
use super::damage::{Damage, DamagedRange};
use super::error::{AppendError, DiskError, JournalError};
use super::frontier::Frontier;
use super::location::Location;
use super::reader::Segments;
use super::record::{
    Decoded, RECORD_HEADER_LEN, Record, RecordRef, SEAL_FRAME, decode, encode_into, filler,
    frame_len, is_journal_kind, seal,
};
use super::recovery::{SegmentSummary, ends_sealed, keep_bytes, write_zeros};
use super::segment::{
    FORMAT_VERSION, Faults, SEGMENT_HEADER_LEN, SegmentFile, SegmentHeader, segment_path, sync_dir,
};
use super::stats::JournalStats;
use crate::clock::unix_ms;

/// The answer to one append: where each record landed, or why none of them counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    /// The caller's token, echoed.
    pub token: u64,
    /// One location per record, in submission order; durable per the fsync policy.
    pub result: Result<Vec<Location>, DiskError>,
    /// The submitted records, handed back once written (or refused): the submitter
    /// frees their bodies on its own thread, where they were allocated, and may
    /// reuse the `Vec` for its next batch.
    pub spent: Vec<Record>,
}

/// Records relocated by compaction: (old location, new location).
pub(crate) type Moves = Vec<(Location, Location)>;

/// A record-keeping predicate for compaction.
pub(crate) type KeepFn = Box<dyn FnMut(RecordRef<'_>) -> bool + Send>;

pub(crate) enum Request {
    Append {
        records: Vec<Record>,
        token: u64,
        reply: Sender<Committed>,
        /// Refuse it if more append batches than this have failed.
        fence: Option<u64>,
    },
    Segments(Sender<Vec<SegmentSummary>>),
    Delete(Vec<u32>, Sender<Result<(), JournalError>>),
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "used by tests; retention uses copy_forward + delete_segments"
        )
    )]
    Compact(u32, KeepFn, Sender<Result<Moves, JournalError>>),
    /// Compaction's first half: copy forward, keep the segment (the caller deletes it
    /// once nobody reads the old locations any more).
    Copy(u32, KeepFn, Sender<Result<Moves, JournalError>>),
    Sync(Sender<Result<(), DiskError>>),
    /// Salvage: cover damaged ranges so the segments read cleanly again.
    Fill(Vec<DamagedRange>, Sender<Result<(), JournalError>>),
    Shutdown,
}

/// What retention did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "used by tests; retention uses copy_forward + delete_segments"
    )
)]
pub(crate) struct RetireReport {
    /// Segments deleted outright (no kept conversation in them).
    pub deleted: Vec<u32>,
    /// Segments whose kept records were copied forward, then deleted.
    pub compacted: Vec<u32>,
    /// Where compaction moved records; the owner updates its indexes.
    pub moves: Moves,
}

/// Submits appends and maintenance requests to the writer thread. Cheap to clone.
#[derive(Clone)]
pub(crate) struct JournalHandle {
    tx: crate::queue::Sender<Request>,
    max_record_bytes: u32,
    /// Record space in one segment: the most one submission may hold.
    max_submission_bytes: u64,
    max_inflight_batches: usize,
    stats: Arc<JournalStats>,
}

impl std::fmt::Debug for JournalHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalHandle").finish_non_exhaustive()
    }
}

impl JournalHandle {
    pub(crate) fn new(
        tx: crate::queue::Sender<Request>,
        cfg: &JournalConfig,
        stats: Arc<JournalStats>,
    ) -> Self {
        Self {
            tx,
            max_record_bytes: cfg.max_record_bytes,
            max_submission_bytes: cfg
                .segment_bytes
                .saturating_sub((SEGMENT_HEADER_LEN + SEAL_FRAME) as u64),
            max_inflight_batches: cfg.max_inflight_batches,
            stats,
        }
    }

    /// Queues `records` for appending without blocking. The writer answers on `reply`
    /// with a [`Committed`] carrying `token`, once the records are durable per the
    /// fsync policy (or failed). Records of one submission, and submissions of one
    /// thread, are written in order, and answered in that order.
    ///
    /// The writer blocks on a full `reply` channel: give it room for every submission
    /// the caller keeps in flight (or make it unbounded).
    pub(crate) fn append(
        &self,
        records: Vec<Record>,
        token: u64,
        reply: &Sender<Committed>,
    ) -> Result<(), AppendError> {
        self.submit(records, token, reply, None)
    }

    /// [`JournalHandle::append`] for a submitter with several appends in flight whose
    /// later ones depend on the earlier ones: the writer refuses it
    /// ([`DiskError::Fenced`]) if more than `fence` append batches have failed by the
    /// time it is written. The submitter passes [`JournalHandle::failures`] as read
    /// when it last took back everything unanswered, so once one of its appends fails,
    /// none it made before hearing so is stored after it.
    pub(crate) fn append_fenced(
        &self,
        records: Vec<Record>,
        token: u64,
        reply: &Sender<Committed>,
        fence: u64,
    ) -> Result<(), AppendError> {
        self.submit(records, token, reply, Some(fence))
    }

    /// Append batches that have failed so far (the fence generation).
    pub(crate) fn failures(&self) -> u64 {
        self.stats.failures.load(Ordering::Acquire)
    }

    /// Requests waiting for the writer (tests).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.tx.len()
    }

    /// `journal.max_inflight_batches`: appends one submitter may keep unanswered.
    pub(crate) fn max_inflight_batches(&self) -> usize {
        self.max_inflight_batches
    }

    fn submit(
        &self,
        records: Vec<Record>,
        token: u64,
        reply: &Sender<Committed>,
        fence: Option<u64>,
    ) -> Result<(), AppendError> {
        if let Some(r) = records
            .iter()
            .find(|r| r.body.len() > self.max_record_bytes as usize)
        {
            return Err(AppendError::TooLarge {
                len: r.body.len(),
                max: self.max_record_bytes,
            });
        }
        let bytes: u64 = records.iter().map(|r| frame_len(r.body.len()) as u64).sum();
        if bytes > self.max_submission_bytes {
            return Err(AppendError::BatchTooLarge {
                bytes,
                max: self.max_submission_bytes,
            });
        }
        let req = Request::Append {
            records,
            token,
            reply: reply.clone(),
            fence,
        };
        match self.tx.try_send(req) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                Err(AppendError::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => Err(AppendError::Closed),
        }
    }

    /// The writer's counters.
    pub(crate) fn stats(&self) -> &Arc<JournalStats> {
        &self.stats
    }

    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Request) -> Result<T, JournalError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx.send(make(tx)).map_err(|_| JournalError::Closed)?;
        rx.recv().map_err(|_| JournalError::Closed)
    }

    /// A summary of every live segment, oldest first. Blocks until the writer answers.
    pub(crate) fn segments(&self) -> Result<Vec<SegmentSummary>, JournalError> {
        self.ask(Request::Segments)
    }

    /// Deletes whole sealed segments (never the active one). Readers get
    /// `SegmentGone` for their locations afterwards.
    pub(crate) fn delete_segments(&self, segments: Vec<u32>) -> Result<(), JournalError> {
        self.ask(|tx| Request::Delete(segments, tx))?
    }

    /// Copies the records of sealed segment `segment` for which `keep` is true to the
    /// end of the journal (synced), then deletes the segment. Returns the moves.
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "used by tests; retention uses copy_forward + delete_segments"
        )
    )]
    pub(crate) fn compact(
        &self,
        segment: u32,
        keep: impl FnMut(RecordRef<'_>) -> bool + Send + 'static,
    ) -> Result<Moves, JournalError> {
        self.ask(|tx| Request::Compact(segment, Box::new(keep), tx))?
    }

    /// Copies the records of sealed segment `segment` for which `keep` is true to the
    /// end of the journal (synced) and returns the moves; the segment stays until
    /// [`JournalHandle::delete_segments`], so readers can switch to the new locations
    /// first.
    pub(crate) fn copy_forward(
        &self,
        segment: u32,
        keep: impl FnMut(RecordRef<'_>) -> bool + Send + 'static,
    ) -> Result<Moves, JournalError> {
        self.ask(|tx| Request::Copy(segment, Box::new(keep), tx))?
    }

    /// Retention in one call: every sealed segment whose newest record is older than
    /// `older_than_ms` is deleted if `keep_conversation` is false for all its
    /// conversations, or compacted (kept conversations' records copied forward)
    /// otherwise.
    #[cfg_attr(
        not(test),
        allow(
            dead_code,
            reason = "used by tests; retention uses copy_forward + delete_segments"
        )
    )]
    pub(crate) fn retire(
        &self,
        keep_conversation: impl Fn(u64) -> bool + Clone + Send + 'static,
        older_than_ms: u64,
    ) -> Result<RetireReport, JournalError> {
        let mut report = RetireReport::default();
        let mut delete = Vec::new();
        for s in self.segments()? {
            if s.active || s.last_time_ms >= older_than_ms {
                continue;
            }
            if s.conversations.iter().any(|&c| keep_conversation(c)) {
                let keep = keep_conversation.clone();
                let moves = self.compact(s.segment, move |r| keep(r.conversation))?;
                report.moves.extend(moves);
                report.compacted.push(s.segment);
            } else {
                delete.push(s.segment);
            }
        }
        if !delete.is_empty() {
            self.delete_segments(delete.clone())?;
        }
        report.deleted = delete;
        Ok(report)
    }

    /// Writes and syncs everything queued so far, whatever the policy.
    pub(crate) fn sync(&self) -> Result<(), JournalError> {
        Ok(self.ask(Request::Sync)??)
    }

    /// Salvage: covers each damaged range (found by the scan this journal was started
    /// from) so its segment reads cleanly again, after saving its bytes to
    /// `<segment>.seg.damaged-<offset>`: a filler record over damage that valid records
    /// follow, zeros over damage at the end of a segment (regrowing a file cut short), a
    /// new header over an unreadable one. Each file is synced before the answer.
    ///
    /// Call it only once whatever the damage cost is recorded durably elsewhere (the
    /// conversation layer's gap records): afterwards the journal no longer shows it.
    pub(crate) fn fill(&self, ranges: Vec<DamagedRange>) -> Result<(), JournalError> {
        self.ask(|tx| Request::Fill(ranges, tx))?
    }

    /// Asks the writer to finish what is queued, sync and stop. Appends after this get
    /// `Closed` once the writer is gone.
    pub(crate) fn shutdown(&self) {
        let _ = self.tx.send(Request::Shutdown);
    }
}

/// Who to answer for one append: its token and channel.
type Reply = (u64, Sender<Committed>);

/// A contiguous run of bytes written by one positioned write.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    start: u64,
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub dir: PathBuf,
    pub cfg: JournalConfig,
    pub faults: Faults,
    pub stats: Arc<JournalStats>,
    pub segments: Arc<Segments>,
    pub summaries: BTreeMap<u32, SegmentSummary>,
    pub active: SegmentFile,
    /// Where the next record goes in the active segment.
    pub write_pos: u64,
    /// Bytes in `[write_pos, dirty_end)` may hold leftovers of a failed write; the next
    /// write covers them with zeros so no stale frame can ever be read back.
    pub dirty_end: u64,
    pub next_segment: u32,
    pub buf: Vec<u8>,
    /// Bytes written since the last sync.
    pub unsynced: bool,
    /// The active segment is sealed (its successor could not be created yet): the
    /// next append makes a new segment first.
    pub sealed: bool,
    pub last_sync: Instant,
    /// Where the committed records end, published for the outbox.
    pub frontier: Arc<Frontier>,
    /// Held for the writer's lifetime: the directory lock.
    pub _lock: File,
}

impl Writer {
    /// The thread body.
    pub(crate) fn run(mut self, rx: crate::queue::Receiver<Request>) {
        let max_drain = self.cfg.queue_depth;
        loop {
            let first = if self.unsynced && self.cfg.fsync == FsyncPolicy::Interval {
                let wait = self
                    .cfg
                    .fsync_interval
                    .saturating_sub(self.last_sync.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(r) => r,
                    Err(RecvTimeoutError::Timeout) => {
                        let _ = self.sync_active();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            };
            let mut next = Some(first);
            while let Some(req) = next.take() {
                match req {
                    Request::Append {
                        records,
                        token,
                        reply,
                        fence,
                    } => {
                        let mut batch = Vec::new();
                        let mut replies = Vec::new();
                        self.admit(records, (token, reply), fence, (&mut batch, &mut replies));
                        while batch.len() < max_drain {
                            match rx.try_recv() {
                                Ok(Request::Append {
                                    records,
                                    token,
                                    reply,
                                    fence,
                                }) => {
                                    let to = (&mut batch, &mut replies);
                                    self.admit(records, (token, reply), fence, to);
                                }
                                Ok(other) => {
                                    next = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        if batch.is_empty() {
                            continue; // every one was fenced
                        }
                        let results = self.write_batch(&batch, false);
                        if self.cfg.fsync == FsyncPolicy::Never {
                            // Committed once written: no sync will say so.
                            self.publish();
                        }
                        let answers = replies.into_iter().zip(results).zip(batch);
                        for (((token, reply), result), spent) in answers {
                            let _ = reply.send(Committed {
                                token,
                                result,
                                spent,
                            });
                        }
                    }
                    Request::Segments(reply) => {
                        let _ = reply.send(self.summaries.values().cloned().collect());
                    }
                    Request::Delete(ids, reply) => {
                        let _ = reply.send(self.delete(&ids));
                    }
                    Request::Compact(segment, keep, reply) => {
                        let _ = reply.send(self.compact(segment, keep));
                    }
                    Request::Copy(segment, keep, reply) => {
                        let _ = reply.send(self.copy_forward(segment, keep));
                    }
                    Request::Sync(reply) => {
                        let _ = reply.send(self.sync_active());
                    }
                    Request::Fill(ranges, reply) => {
                        let _ = reply.send(self.fill(&ranges));
                    }
                    Request::Shutdown => {
                        self.scrub();
                        let _ = self.sync_active();
                        return;
                    }
                }
            }
            if self.unsynced
                && self.cfg.fsync == FsyncPolicy::Interval
                && self.last_sync.elapsed() >= self.cfg.fsync_interval
            {
                let _ = self.sync_active();
            }
        }
        self.scrub();
        let _ = self.sync_active();
    }

    /// Adds one append to the group being formed, or refuses it at once if a failure
    /// happened after its fence. A submitter's fenced appends are all older than its
    /// unfenced ones (fences only grow), so answering them first keeps its order.
    fn admit(
        &self,
        records: Vec<Record>,
        (token, reply): (u64, Sender<Committed>),
        fence: Option<u64>,
        (batch, replies): (&mut Vec<Vec<Record>>, &mut Vec<Reply>),
    ) {
        if fence.is_some_and(|f| f < self.stats.failures.load(Ordering::Acquire)) {
            self.stats.fenced.fetch_add(1, Ordering::Relaxed);
            let result = Err(DiskError::Fenced);
            let spent = records;
            let _ = reply.send(Committed {
                token,
                result,
                spent,
            });
            return;
        }
        batch.push(records);
        replies.push((token, reply));
    }

    /// Best effort: zeros what failed writes may have left past the write position, so
    /// a restart before the next successful write does not find those records (their
    /// submitters were told they failed). If this fails too, the next write covers
    /// the range anyway.
    fn scrub(&mut self) {
        if self.dirty_end <= self.write_pos {
            return;
        }
        let zeros = vec![0u8; (self.dirty_end - self.write_pos) as usize];
        match self.active.write_at(&zeros, self.write_pos) {
            Ok(()) => self.dirty_end = self.write_pos,
            Err(e) => tracing::debug!(error = %e, "journal scrub after a failed write failed"),
        }
    }

    /// Writes a group of submissions; one result per submission. With `force_sync`
    /// the group is synced whatever the policy (compaction).
    fn write_batch(
        &mut self,
        batch: &[Vec<Record>],
        force_sync: bool,
    ) -> Vec<Result<Vec<Location>, DiskError>> {
        let sync_each = force_sync || self.cfg.fsync == FsyncPolicy::Always;
        let mut chunks: Vec<Chunk> = Vec::new();
        // chunks[..durable] may be acknowledged.
        let mut durable = 0usize;
        // Per submission: all records encoded, and the chunk holding the last one.
        let mut done: Vec<Option<Option<usize>>> = Vec::with_capacity(batch.len());
        let mut locs: Vec<Vec<Location>> = Vec::with_capacity(batch.len());
        let mut error = None;
        let mut n_records = 0u64;
        self.buf.clear();
        // Where each submission (and the one being encoded) begins in the active
        // segment: the rewind point if it fails.
        let mut starts: Vec<u64> = Vec::with_capacity(batch.len());
        let mut current_start = self.write_pos;
        'outer: for records in batch {
            let mut l = Vec::with_capacity(records.len());
            let mut last_chunk = None;
            // A submission never straddles a rotation when it fits in one segment
            // (`append` checks), so it is durable or failed as a whole.
            let total: u64 = records.iter().map(|r| frame_len(r.body.len()) as u64).sum();
            let mut rotate_first = !records.is_empty()
                && (self.sealed
                    || self.write_pos + self.buf.len() as u64 + total > self.active.capacity());
            current_start = self.write_pos + self.buf.len() as u64;
            for rec in records {
                let len = frame_len(rec.body.len()) as u64;
                if rotate_first
                    || self.write_pos + self.buf.len() as u64 + len > self.active.capacity()
                {
                    rotate_first = false;
                    let sealed = self.flush(&mut chunks).and_then(|()| self.seal());
                    if sealed.is_ok() || !sync_each {
                        durable = chunks.len();
                    }
                    if let Err(e) = sealed.and_then(|()| self.start_next()) {
                        error = Some(e);
                        break 'outer;
                    }
                    if l.is_empty() {
                        current_start = self.write_pos;
                    }
                }
                let offset = self.write_pos + self.buf.len() as u64;
                l.push(Location {
                    segment: self.active.segment,
                    offset: offset as u32,
                });
                encode_into(&mut self.buf, rec);
                if let Some(s) = self.summaries.get_mut(&self.active.segment) {
                    s.add(rec.conversation, rec.time_ms);
                }
                n_records += 1;
                last_chunk = Some(chunks.len());
                if self.buf.len() >= self.cfg.max_batch_bytes {
                    if let Err(e) = self.flush(&mut chunks) {
                        error = Some(e);
                        break 'outer;
                    }
                    if !sync_each {
                        durable = chunks.len();
                    }
                }
            }
            done.push(Some(last_chunk));
            locs.push(l);
            starts.push(current_start);
        }
        if error.is_none() {
            let step = self.flush(&mut chunks).and_then(|()| {
                if sync_each && chunks.len() > durable {
                    self.sync_active()
                } else {
                    Ok(())
                }
            });
            match step {
                Ok(()) => durable = chunks.len(),
                Err(e) => {
                    if !sync_each {
                        durable = chunks.len();
                    }
                    error = Some(e);
                }
            }
        }
        let ok = |i: usize| match done.get(i) {
            Some(Some(last)) => last.is_none_or(|c| c < durable),
            _ => false,
        };
        if let Some(e) = error {
            // Everything from the first failed submission on is rewound, to be
            // overwritten (with zeros if nothing else) and never read back: those
            // submitters are told they failed. Earlier ones stay.
            let first_failed = (0..batch.len()).find(|&i| !ok(i));
            let mut rewind = chunks.get(durable).map(|c| c.start);
            if let Some(i) = first_failed {
                let start = starts.get(i).copied().unwrap_or(current_start);
                rewind = Some(rewind.map_or(start, |r| r.min(start)));
            }
            if let Some(to) = rewind.filter(|&to| to < self.write_pos) {
                self.dirty_end = self.dirty_end.max(self.write_pos);
                self.write_pos = to;
            }
            self.scrub();
            // Counted before anyone hears of it: fenced appends made before are refused.
            self.stats.failures.fetch_add(1, Ordering::AcqRel);
            self.stats.failing.store(1, Ordering::Relaxed);
            tracing::warn!(error = %e, segment = self.active.segment, "journal append batch failed");
        } else {
            self.stats.failing.store(0, Ordering::Relaxed);
            self.stats.records.fetch_add(n_records, Ordering::Relaxed);
        }
        self.stats
            .appends
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.stats.batch(n_records);
        let failed = error.unwrap_or(DiskError::Io(0));
        let mut locs = locs.into_iter();
        (0..batch.len())
            .map(|i| match locs.next() {
                Some(l) if ok(i) => Ok(l),
                _ => Err(failed),
            })
            .collect()
    }

    /// Writes the buffer at the write position, covering leftovers of an earlier failed
    /// write with zeros.
    fn flush(&mut self, chunks: &mut Vec<Chunk>) -> Result<(), DiskError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let start = self.write_pos;
        let len = self.buf.len() as u64;
        let cover = self.dirty_end.saturating_sub(start).max(len);
        self.buf.resize(cover as usize, 0);
        let result = self.active.write_at(&self.buf, start);
        self.buf.clear();
        match result {
            Ok(()) => {
                chunks.push(Chunk { start });
                self.write_pos = start + len;
                self.dirty_end = self.write_pos;
                self.unsynced = true;
                self.stats.bytes.fetch_add(len, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.dirty_end = self.dirty_end.max(start + cover);
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                Err(DiskError::from_io(&e))
            }
        }
    }

    /// Publishes the end of what is written as committed: called after a sync covered
    /// it (or, under `journal.fsync = "never"`, after the write). Everything before
    /// the write position is valid (a failed write rewinds it first).
    pub(crate) fn publish(&self) {
        self.frontier.publish(Location {
            segment: self.active.segment,
            offset: self.write_pos as u32,
        });
    }

    /// `fdatasync` of the active segment, timed.
    fn sync_active(&mut self) -> Result<(), DiskError> {
        let started = Instant::now();
        let result = self.active.sync();
        self.stats.fsync(started.elapsed());
        self.last_sync = Instant::now();
        match result {
            Ok(()) => {
                self.unsynced = false;
                self.publish();
                Ok(())
            }
            Err(e) => {
                self.stats.sync_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, segment = self.active.segment, "journal fdatasync failed");
                Err(DiskError::from_io(&e))
            }
        }
    }

    /// Seals the active segment: leftovers of failed writes zeroed, a seal record
    /// written after the last record (format version 2), synced. A sealed segment is
    /// complete on disk before any record goes to the next one, so recovery treats
    /// damage in any segment but the last as corruption, not a crash — and one that
    /// does not end with its seal record as one whose end went missing.
    fn seal(&mut self) -> Result<(), DiskError> {
        if self.sealed {
            return Ok(()); // sealed before, and the next segment could not be made
        }
        let records = self
            .summaries
            .get(&self.active.segment)
            .map_or(0, |s| s.records);
        let mut tail = Vec::new();
        let room = self.active.segment_bytes.saturating_sub(self.write_pos);
        if self.active.version >= 2 && room >= SEAL_FRAME as u64 {
            tail = seal(records, unix_ms().get());
        }
        let cover = self.dirty_end.saturating_sub(self.write_pos) as usize;
        if cover > tail.len() {
            tail.resize(cover, 0);
        }
        if !tail.is_empty() {
            self.active.write_at(&tail, self.write_pos).map_err(|e| {
                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                DiskError::from_io(&e)
            })?;
            self.dirty_end = self.write_pos;
        }
        self.sync_active()?;
        self.sealed = true;
        Ok(())
    }

    /// Creates the next segment and makes it the active one.
    fn start_next(&mut self) -> Result<(), DiskError> {
        let n = self.next_segment;
        let created = unix_ms().get();
        let seg = SegmentFile::create(
            &self.dir,
            n,
            self.cfg.segment_bytes,
            created,
            self.faults.clone(),
        )
        .map_err(|e| {
            self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, segment = n, "journal segment creation failed");
            DiskError::from_io(&e)
        })?;
        self.next_segment = n.saturating_add(1);
        if let Some(s) = self.summaries.get_mut(&self.active.segment) {
            s.active = false;
        }
        let mut summary = SegmentSummary::new(n, created);
        summary.active = true;
        self.summaries.insert(n, summary);
        self.segments.add(n, None);
        self.active = seg;
        self.sealed = false;
        self.write_pos = SEGMENT_HEADER_LEN as u64;
        self.dirty_end = self.write_pos;
        self.unsynced = false;
        self.stats.segments_created.fetch_add(1, Ordering::Relaxed);
        self.stats
            .active_segment
            .store(u64::from(n), Ordering::Relaxed);
        Ok(())
    }

    fn delete(&mut self, ids: &[u32]) -> Result<(), JournalError> {
        if let Some(&id) = ids.iter().find(|&&id| id == self.active.segment) {
            return Err(JournalError::ActiveSegment(id));
        }
        for &id in ids {
            if self.summaries.remove(&id).is_none() {
                continue;
            }
            self.segments.remove(id);
            match fs::remove_file(segment_path(&self.dir, id)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(JournalError::Segment {
                        segment: id,
                        source,
                    });
                }
            }
            self.stats.segments_deleted.fetch_add(1, Ordering::Relaxed);
        }
        sync_dir(&self.dir).map_err(|source| JournalError::Dir {
            path: self.dir.clone(),
            source,
        })
    }

    fn compact(&mut self, segment: u32, keep: KeepFn) -> Result<Moves, JournalError> {
        let moves = self.copy_forward(segment, keep)?;
        self.delete(&[segment])?;
        Ok(moves)
    }

    fn fill(&mut self, ranges: &[DamagedRange]) -> Result<(), JournalError> {
        for d in ranges {
            let n = d.segment;
            let seg_err = |source| JournalError::Segment { segment: n, source };
            if n == self.active.segment && d.offset + d.len > self.write_pos {
                // Appends already went past it (never the case for a range the scan of
                // this journal found: they all lie before the write position).
                continue;
            }
            let file = SegmentFile::open(&self.dir, n, 0, self.faults.clone()).map_err(seg_err)?;
            let file_len = file.len().map_err(seg_err)?;
            let kept = d.len.min(file_len.saturating_sub(d.offset));
            keep_bytes(
                &self.dir,
                n,
                &format!(".damaged-{}", d.offset),
                &file,
                d.offset,
                kept,
            );
            match d.what {
                Damage::Header => {
                    let created_ms = self
                        .summaries
                        .get(&n)
                        .map(|s| s.first_time_ms)
                        .filter(|&t| t != u64::MAX)
                        .unwrap_or_else(|| unix_ms().get());
                    let size = file_len.max(SEGMENT_HEADER_LEN as u64);
                    let sealed = self
                        .segments
                        .map(n)
                        .is_ok_and(|m| ends_sealed(&m, self.cfg.max_record_bytes as usize));
                    let header = SegmentHeader {
                        segment: n,
                        created_ms,
                        segment_bytes: size,
                        version: if sealed || n == self.active.segment {
                            FORMAT_VERSION
                        } else {
                            1
                        },
                    };
                    file.write_at(&header.encode(), 0).map_err(seg_err)?;
                }
                Damage::Records => {
                    let len = usize::try_from(d.len).unwrap_or(0);
                    if len >= RECORD_HEADER_LEN {
                        file.write_at(&filler(len, unix_ms().get()), d.offset)
                            .map_err(seg_err)?;
                    }
                }
                Damage::Trailing => {
                    let mut header = [0u8; SEGMENT_HEADER_LEN];
                    let (size, version) = match file.read_at(&mut header, 0) {
                        Ok(SEGMENT_HEADER_LEN) => SegmentHeader::decode(&header)
                            .map_or((file_len, 1), |h| (h.segment_bytes, h.version)),
                        _ => (file_len, 1),
                    };
                    if size > file_len {
                        let grown = SegmentFile::open(&self.dir, n, size, self.faults.clone())
                            .map_err(seg_err)?;
                        grown.restore_len().map_err(seg_err)?;
                    }
                    write_zeros(&file, d.offset, kept).map_err(seg_err)?;
                    if version >= 2 && d.offset + SEAL_FRAME as u64 <= size {
                        // The segment ends here now: say so, or the next scan finds
                        // its seal missing again.
                        let records = self.summaries.get(&n).map_or(0, |s| s.records);
                        file.write_at(&seal(records, unix_ms().get()), d.offset)
                            .map_err(seg_err)?;
                    }
                }
            }
            file.sync().map_err(seg_err)?;
            tracing::warn!(
                segment = n,
                offset = d.offset,
                len = d.len,
                what = d.what.name(),
                "journal damage covered by salvage (bytes kept in .seg.damaged-<offset>)"
            );
        }
        Ok(())
    }

    fn copy_forward(&mut self, segment: u32, mut keep: KeepFn) -> Result<Moves, JournalError> {
        if segment == self.active.segment {
            return Err(JournalError::ActiveSegment(segment));
        }
        if !self.summaries.contains_key(&segment) {
            return Err(JournalError::SegmentGone(segment));
        }
        let map = self.segments.map(segment)?;
        let mut old = Vec::new();
        let mut kept = Vec::new();
        let mut off = SEGMENT_HEADER_LEN;
        while let Some(Decoded::Record(r, len)) = map.get(off..).map(decode) {
            if !is_journal_kind(r.kind) && keep(r) {
                old.push(Location {
                    segment,
                    offset: off as u32,
                });
                kept.push(r.to_record());
            }
            off += len;
        }
        let mut moves = Vec::new();
        if !kept.is_empty() {
            let n = kept.len() as u64;
            let mut results = self.write_batch(&[kept], true);
            let new = results.pop().unwrap_or(Err(DiskError::Io(0)))?;
            moves = old.into_iter().zip(new).collect();
            self.stats.records_compacted.fetch_add(n, Ordering::Relaxed);
        }
        Ok(moves)
    }
}
