//! Internals exposed only so `benches/` and `fuzz/` can measure them. Not a stable API.

pub use crate::journal::bench::{BenchJournal, BenchStats, BenchSubmitter};
pub use crate::journal::{FsyncPolicy, JournalConfig};

pub use crate::assist::faq::{BackgroundConflict, library_in_background};
pub use crate::assist::{
    Action, AssistConfig, AssistConfigError, CannedLibrary, FaqIndex, FaqMatch, FaqVerdict, Format,
    Hit, Libraries, LoadError, SpamCounters, SpamFilter, SpamRules, Verdict,
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

/// What decoding a message gave, comparable across calls (a bytecheck error's
/// text holds addresses, so only its kind is kept). Shared by the message
/// property tests and the `message_decode` fuzz target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeOutcome {
    /// A message.
    Ok(crate::protocol::Msg),
    /// [`DecodeError::UnknownKind`](crate::protocol::DecodeError::UnknownKind).
    UnknownKind(u8),
    /// [`DecodeError::Invalid`](crate::protocol::DecodeError::Invalid), its kind.
    Invalid(crate::protocol::Kind),
    /// [`DecodeError::Bound`](crate::protocol::DecodeError::Bound): kind, field, reason.
    Bound(crate::protocol::Kind, &'static str, &'static str),
}

impl From<Result<crate::protocol::Msg, crate::protocol::DecodeError>> for DecodeOutcome {
    fn from(r: Result<crate::protocol::Msg, crate::protocol::DecodeError>) -> Self {
        use crate::protocol::DecodeError;
        match r {
            Ok(m) => Self::Ok(m),
            Err(DecodeError::UnknownKind(k)) => Self::UnknownKind(k),
            Err(DecodeError::Invalid { kind, .. }) => Self::Invalid(kind),
            Err(DecodeError::Bound {
                kind,
                field,
                reason,
            }) => Self::Bound(kind, field, reason),
        }
    }
}

/// Decodes `payload` as `kind` from a copy placed `offset % 16` bytes past a
/// 16-aligned address: 0 takes `Msg::decode`'s in-place path, 1 to 15 its
/// copying path (the two must agree).
pub fn decode_at(kind: u8, payload: &[u8], offset: usize) -> DecodeOutcome {
    let offset = offset % crate::frame::ALIGN;
    let mut buf = rkyv::util::AlignedVec::<16>::with_capacity(offset + payload.len());
    buf.extend_from_slice(&[0xa5; 16][..offset]);
    buf.extend_from_slice(payload);
    crate::protocol::Msg::decode(kind, &buf[offset..]).into()
}

/// Raises the soft open-file limit to the hard one; returns the new soft limit.
/// For load generators and benches that hold many sockets.
pub fn raise_nofile() -> std::io::Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let raised = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        setrlimit(Resource::Nofile, raised)?;
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

/// Sends signal `signal` (e.g. `libc::SIGTERM`) to process `pid`, one the caller
/// started.
pub fn kill(pid: u32, signal: i32) -> std::io::Result<()> {
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    let sig = rustix::process::Signal::from_named_raw(signal);
    let (Some(target), Some(sig)) = (target, sig) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("kill({pid}, {signal}): not a pid or a signal"),
        ));
    };
    Ok(rustix::process::kill_process(target, sig)?)
}

/// What decoding a whole buffer frame by frame gives: `frame::decode` called from the
/// start of the buffer until it stops (the fuzz target and the property tests compare
/// it with incremental deframing).
#[derive(Debug, PartialEq, Eq)]
pub struct DecodedStream {
    /// Each frame's header and payload, in order.
    pub frames: Vec<(crate::frame::FrameHeader, Vec<u8>)>,
    /// The error that stopped decoding, if that is why it stopped.
    pub error: Option<crate::frame::FrameError>,
    /// Where decoding stopped: the start of the bad or incomplete frame.
    pub stopped_at: usize,
}

/// Decodes `buf` frame by frame with payloads of at most `max` bytes, checking every
/// frame `decode` returns: `consumed` within the buffer and equal to the header's wire
/// length (a multiple of 16), payload length equal to the header's and within `max`,
/// and re-encoding giving back exactly the frame's bytes. `Err` names the first
/// check that failed.
pub fn decode_stream(buf: &[u8], max: u32) -> Result<DecodedStream, String> {
    use crate::frame::{HEADER_LEN, decode, encode};
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = buf.get(at..).unwrap_or_default();
        let d = match decode(rest, max) {
            Ok(Some(d)) => d,
            Ok(None) => {
                break Ok(DecodedStream {
                    frames,
                    error: None,
                    stopped_at: at,
                });
            }
            Err(e) => {
                break Ok(DecodedStream {
                    frames,
                    error: Some(e),
                    stopped_at: at,
                });
            }
        };
        let checks = [
            (d.consumed <= rest.len(), "consumed past the buffer"),
            (d.consumed >= HEADER_LEN, "consumed less than a header"),
            (
                d.consumed == d.header.wire_len(),
                "consumed is not the wire length",
            ),
            (d.consumed % 16 == 0, "consumed is not a multiple of 16"),
            (
                d.payload.len() == d.header.len as usize,
                "payload length is not the header's",
            ),
            (d.header.len <= max, "payload over the limit"),
            (
                rest.get(..d.consumed) == Some(encode(d.header, d.payload).as_ref()),
                "frame bytes are not the canonical encoding",
            ),
        ];
        if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(format!("frame at offset {at}: {what}"));
        }
        frames.push((d.header, d.payload.to_vec()));
        at += d.consumed;
    }
}

pub use crate::xorshift::XorShift;

pub use crate::service::session_memory::SessionMemory;

/// Heap bytes `n` established visitor sessions hold in a session worker and the
/// router, read with `live` (the caller's counting allocator: live bytes) between
/// the steps; see `benches/session_memory.rs`.
pub fn session_memory(n: usize, live: &dyn Fn() -> i64) -> SessionMemory {
    crate::service::session_memory::measure(n, live)
}

pub use crate::clock::UnixMs;
/// The admin listener's request head parser and its responses, as the listener
/// uses them (`fuzz/fuzz_targets/admin_http.rs`).
pub use crate::ops::admin::http::{
    Parsed as AdminParsed, Status as AdminStatus, parse as admin_parse, text as admin_text,
};
