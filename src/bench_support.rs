//! Internals exposed only so `benches/` and `fuzz/` can measure them. Not a stable API.

pub use crate::journal::bench::{BenchJournal, BenchStats, BenchSubmitter};
pub use crate::journal::{FsyncPolicy, JournalConfig};

pub use crate::assist::{
    Action, AssistConfig, AssistConfigError, CannedLibrary, FaqIndex, FaqMatch, Format, Hit,
    Libraries, LoadError, SpamCounters, SpamFilter, SpamRules, Verdict,
};

/// Plans the fan-out of one notice to `members` (reactor, slot, generation) spread
/// over `reactors` reactors, as a worker does: encodes the `Notice` frame once and
/// splits the members into one `SendMany` per reactor sharing that frame. Returns
/// (commands, members planned, frame bytes).
pub fn fanout(members: &[(u16, u32, u32)], reactors: usize, text: &str) -> (usize, usize, usize) {
    use crate::handoff::{Command, ConnId};
    use crate::protocol::messages::{Msg, Notice};
    let frame = Msg::from(Notice {
        group: String::new(),
        text: text.to_owned(),
        from: "admin".into(),
        time_ms: 0,
    })
    .to_frame(0);
    let conns: Vec<ConnId> = members
        .iter()
        .map(|&(reactor, slot, generation)| ConnId {
            reactor,
            slot,
            generation,
        })
        .collect();
    let mut scratch = vec![Vec::new(); reactors];
    let (mut commands, mut planned) = (0, 0);
    crate::worker::split_broadcast(conns, &frame, &mut scratch, |_, cmd| {
        commands += 1;
        if let Command::SendMany { conns, .. } = cmd {
            planned += conns.len();
        }
    });
    (commands, planned, frame.len())
}

/// What the journal's recovery parser makes of `bytes` (a record frame at their
/// start), for the `journal_record` fuzz target: `None` for no valid record,
/// else the frame length, whether re-encoding the record gives the same bytes,
/// and whether its body is a readable conversation event.
pub fn journal_record(bytes: &[u8]) -> Option<(usize, bool, bool)> {
    let (r, len) = crate::journal::decode_frame(bytes)?;
    let owned = r.to_record();
    let mut again = Vec::new();
    crate::journal::encode_frame(&mut again, &owned);
    // Header and body must come back byte for byte (padding is not checksummed).
    let used = crate::journal::RECORD_HEADER_BYTES + owned.body.len();
    let same = again.len() == len && again.get(..used) == bytes.get(..used);
    let event = crate::service::record::decode(owned.kind, &owned.body).is_ok();
    Some((len, same, event))
}

/// Recovery of a damaged multi-segment journal, for the `journal_recovery` fuzz
/// target. A fixed journal (a dozen conversations over several small segments,
/// every record kind) is written to a fresh directory, then `damage` is applied
/// as 4-byte operations `[segment, offset high, offset low, action]` (action & 3:
/// 0 flip bits, 1 zero 512 bytes, 2 set a byte, 3 cut the file there); then, as
/// the daemon would: a read-only check, a start that salvages, and a restart that
/// must find the journal clean and the same conversations. `Err` says what broke.
pub fn journal_recovery(damage: &[u8]) -> Result<(), String> {
    crate::service::recovery::fuzz::fuzz_recovery(damage)
}

/// The reactor's min-heap of (deadline, slot, generation) heartbeat entries.
#[derive(Debug, Default)]
pub struct TimerHeap(crate::reactor::timer::TimerHeap);

impl TimerHeap {
    /// Arms a deadline.
    #[inline]
    pub fn push(&mut self, deadline: u64, slot: u32, generation: u32) {
        self.0
            .push(crate::clock::Mono::from_ms(deadline), slot, generation);
    }

    /// The earliest armed deadline.
    #[inline]
    pub fn next_deadline(&self) -> Option<u64> {
        self.0.next_deadline().map(crate::clock::Mono::as_ms)
    }

    /// Removes and returns the earliest entry, as (deadline, slot, generation), if
    /// it is due at `now`.
    #[inline]
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, u32, u32)> {
        self.0
            .pop_due(crate::clock::Mono::from_ms(now))
            .map(|e| (e.deadline.as_ms(), e.slot, e.generation))
    }
}
