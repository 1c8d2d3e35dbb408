//! What the journal sees of a shard: a record per state change out, the journal
//! location of each entry back in.

use std::collections::HashMap;

use super::Shard;
use crate::journal::Location;
use crate::protocol::Kind;
use crate::service::record::{self, Body, Record, RecordKind};

impl Shard {
    /// Entry `seq` of `conversation` is durable at `at`.
    pub fn located(&mut self, conversation: u64, seq: u64, at: Location) {
        let evict = self.reader.is_some();
        if let Some(c) = self.convs.get_mut(&conversation) {
            c.events.located(seq, at, evict);
        }
    }

    /// Retention compaction moved records.
    pub fn moved(&mut self, moves: &HashMap<Location, Location>) {
        for c in self.convs.values_mut() {
            c.events.moved(moves);
        }
    }

    /// The journal records of every state change since the last call, in order.
    pub fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.log)
    }

    /// Moves the journal records of every state change since the last call to the end
    /// of `into`, in order, keeping the shard's own buffer (taking it cost an
    /// allocation per journaled message).
    pub fn move_records(&mut self, into: &mut Vec<Record>) {
        into.append(&mut self.log);
    }

    /// Notes the newest transcript entry of `conversation` as a record.
    pub(super) fn log_entry(&mut self, conversation: u64, client_msg_id: u64) {
        if !self.settings.journal {
            return;
        }
        let Some(c) = self.convs.get_mut(&conversation) else {
            return;
        };
        let group = match c.events.last_kind() {
            None => return,
            // A `Queued` entry's body is its group already.
            Some(kind) if kind == Kind::Assigned.as_u8() => c.group.clone(),
            Some(_) => String::new(),
        };
        // The entry is lent to the body for encoding, not copied.
        let mut body = Body {
            group,
            client_msg_id,
            ..Body::default()
        };
        let Some(record) = c.events.with_last(|e| {
            std::mem::swap(&mut body.entry, e);
            let (seq, time_ms) = (body.entry.seq, body.entry.time_ms);
            let record = record::record(conversation, seq, time_ms, RecordKind::Entry, &body);
            std::mem::swap(&mut body.entry, e);
            record
        }) else {
            return;
        };
        self.log.push(record);
    }
}
