//! The mail thread: reads committed records from the journal's start, feeds the
//! [`Mailer`], sends the mails that fall due with `lettre`'s blocking SMTP transport
//! and saves each mark before going on. Never on a reactor or worker thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use lettre::Transport as _;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::SmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};

use super::core::{Failed, Fed, Mail, MailKind, Mailer, Mark};
use super::log::MarksLog;
use crate::clock::unix_ms;
use crate::config::{EmailConfig, SmtpTls};
use crate::journal::{JournalHandle, JournalReader, Location, Step, segment_start};
use crate::metrics::email::{DROP_MAX_PENDING, DROP_NO_ADDRESS, DROP_REJECTED, EmailMetrics};

/// Longest wait for the frontier to move before the thread looks at its stop signal
/// and the clock.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// Records read in one turn before the thread looks at what is due.
const RECORDS_PER_TURN: usize = 10_000;

/// What the thread needs.
pub(crate) struct Job {
    /// `[email]`.
    pub cfg: EmailConfig,
    /// The SMTP client (one connection per mail).
    pub smtp: SmtpTransport,
    /// `email.from`, parsed.
    pub from: Mailbox,
    /// The open marks file.
    pub log: MarksLog,
    /// The marks read at start (`None`: email was never on here).
    pub marks: Option<HashMap<u64, Mark>>,
    /// The journal's end when the daemon started: on a first start, what is before it
    /// is history and not mailed.
    pub start_end: Location,
    /// Reads committed records.
    pub reader: JournalReader,
    /// Lists live segments (pruning after retention).
    pub journal: JournalHandle,
    /// The email counters.
    pub metrics: Arc<EmailMetrics>,
    /// Disconnected when the daemon stops.
    pub stop: Receiver<()>,
}

/// The SMTP transport `cfg` describes: the server's certificate is checked against
/// the Mozilla roots and those of `ca_file`, for the name `host`.
pub(crate) fn transport(cfg: &EmailConfig) -> Result<SmtpTransport, super::MailError> {
    let host = cfg.host.as_deref().unwrap_or_default();
    let tls = || -> Result<TlsParameters, super::MailError> {
        let mut params = TlsParameters::builder(host.to_owned());
        for der in cfg.ca_certificates()? {
            params = params.add_root_certificate(Certificate::from_der(der)?);
        }
        Ok(params.build()?)
    };
    let builder = SmtpTransport::builder_dangerous(host);
    let builder = match cfg.tls {
        // Like `starttls_relay`/`relay`: no credentials nor mail before TLS.
        SmtpTls::Starttls => builder.tls(Tls::Required(tls()?)),
        SmtpTls::Tls => builder.tls(Tls::Wrapper(tls()?)),
        SmtpTls::None => builder,
    };
    let mut builder = builder.port(cfg.port).timeout(Some(cfg.timeout));
    if let Some(c) = cfg.credentials()? {
        builder = builder.credentials(Credentials::new(c.user, c.password));
    }
    Ok(builder.build())
}

/// Whether an SMTP failure refuses this mail for good: a 5xx answer, but not one of
/// authentication (53x: wrong or missing credentials are the server's or the
/// configuration's problem, retried like a transient failure, never a reason to drop
/// mail).
fn refused_for_good(e: &lettre::transport::smtp::Error) -> bool {
    e.is_permanent()
        && !e.status().is_some_and(|c| {
            c.category == lettre::transport::smtp::response::Category::Unspecified3
        })
}

/// The daemon is stopping.
#[derive(Debug)]
struct Stopped;

struct Runner {
    job: Job,
    mailer: Mailer,
    rng: crate::xorshift::XorShift,
    /// The next record to read.
    pos: Location,
    /// The oldest live segment when the conversations were last pruned.
    pruned_at: u32,
}

/// The thread body.
pub(crate) fn run(mut job: Job) {
    let fresh = job.marks.is_none();
    let marks = job.marks.take().unwrap_or_default();
    let seed = unix_ms().get() ^ (u64::from(std::process::id()) << 32);
    let first = job.reader.first_segment_from(0);
    let mut r = Runner {
        mailer: Mailer::new(&job.cfg, marks),
        rng: crate::xorshift::XorShift::new(seed | 1),
        pos: first.map_or_else(|| job.reader.frontier.get(), segment_start),
        pruned_at: first.unwrap_or(0),
        job,
    };
    match r.main(fresh) {
        Ok(()) | Err(Stopped) => tracing::debug!("mail thread stopped"),
    }
}

impl Runner {
    fn stopping(&self) -> bool {
        matches!(self.job.stop.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Sleeps `d` unless the daemon stops first.
    fn sleep(&self, d: Duration) -> Result<(), Stopped> {
        match self.job.stop.recv_timeout(d) {
            Err(RecvTimeoutError::Timeout) => Ok(()),
            _ => Err(Stopped),
        }
    }

    fn main(&mut self, fresh: bool) -> Result<(), Stopped> {
        if fresh {
            // Email was never on here: the history is not mailed, only what comes
            // from now on.
            let end = self.job.start_end;
            loop {
                let before = self.pos;
                if self.read(end)? || self.pos == before {
                    break;
                }
            }
            let settled = self.mailer.settle_all();
            let marks = self.mailer.marks().clone();
            self.save_with(|log| log.rewrite(&marks))?;
            tracing::info!(conversations = settled.len(), at = ?end,
                "email starts at the end of the journal (its history is not mailed)");
        }
        loop {
            if self.stopping() {
                return Err(Stopped);
            }
            let frontier = self.job.reader.frontier.get();
            let caught_up = self.read(frontier)?;
            self.prune();
            self.job.metrics.pending.set(self.mailer.pending() as u64);
            self.send_due()?;
            if self.job.log.wants_rewrite(self.mailer.marks().len()) {
                let marks = self.mailer.marks().clone();
                self.save_with(|log| log.rewrite(&marks))?;
            }
            if caught_up {
                let now = unix_ms().get();
                let wait = self.mailer.next_deadline().map_or(IDLE_WAIT, |at| {
                    Duration::from_millis(at.saturating_sub(now)).min(IDLE_WAIT)
                });
                if !wait.is_zero() {
                    self.job.reader.frontier.wait_past(self.pos, wait);
                }
            }
        }
    }

    /// Reads up to [`RECORDS_PER_TURN`] committed records before `frontier`; whether
    /// it got there.
    fn read(&mut self, frontier: Location) -> Result<bool, Stopped> {
        let mut n = 0;
        while self.pos < frontier {
            if n == RECORDS_PER_TURN {
                return Ok(false);
            }
            n += 1;
            let pos = self.pos;
            let mailer = &mut self.mailer;
            match self.job.reader.step_with(pos, |r| mailer.feed(r)) {
                Ok(Step::Record(fed, next)) => {
                    self.fed(fed, pos);
                    self.pos = next;
                }
                Ok(Step::Skip(next)) => self.pos = next,
                Ok(Step::End) => {
                    if pos.segment >= frontier.segment {
                        break;
                    }
                    match self.job.reader.first_segment_from(pos.segment + 1) {
                        Some(s) => self.pos = segment_start(s),
                        None => break,
                    }
                }
                Err(e) => {
                    // Its segment went (retention) or does not read: go on with the
                    // next one; the mail of what was skipped is not sent.
                    match self.job.reader.first_segment_from(pos.segment + 1) {
                        Some(s) => {
                            tracing::error!(segment = pos.segment, offset = pos.offset, error = %e,
                                "mail thread cannot read the journal here; going on with the next segment");
                            self.pos = segment_start(s);
                        }
                        None => {
                            self.sleep(IDLE_WAIT)?;
                            break;
                        }
                    }
                }
            }
        }
        let dirty = self.mailer.take_dirty();
        // Before the first start's file exists, the marks go in with its first write.
        if !dirty.is_empty() && self.job.log.is_open() {
            self.save_with(|log| log.append(&dirty))?;
        }
        Ok(self.pos >= frontier)
    }

    /// Logs and counts what feeding one record met.
    fn fed(&self, fed: Fed, pos: Location) {
        let m = &self.job.metrics;
        if fed.unreadable {
            m.unreadable.inc();
            tracing::error!(
                segment = pos.segment,
                offset = pos.offset,
                "journal record does not validate: no mail for it"
            );
        }
        if let Some(conv) = fed.unaddressed.filter(|_| self.job.log.is_open()) {
            m.dropped[DROP_NO_ADDRESS].inc();
            let (tenant, group) = self.mailer.describe(conv);
            tracing::warn!(
                conversation = conv,
                tenant,
                group,
                "offline message but no notification address for its group \
                 (email.groups, email.notify_to): not mailed"
            );
        }
        if fed.dropped > 0 {
            m.dropped[DROP_MAX_PENDING].add(fed.dropped as u64);
        }
    }

    /// Sends every mail due now.
    fn send_due(&mut self) -> Result<(), Stopped> {
        while let Some(mail) = self.mailer.due(unix_ms().get()) {
            if self.stopping() {
                return Err(Stopped);
            }
            self.attempt(&mail)?;
        }
        self.job.metrics.pending.set(self.mailer.pending() as u64);
        Ok(())
    }

    /// One attempt of `mail`; its mark is saved once it went (or was given up).
    fn attempt(&mut self, mail: &Mail) -> Result<(), Stopped> {
        let m = self.job.metrics.clone();
        let message = match self.message(mail) {
            Ok(msg) => msg,
            Err(e) => {
                m.dropped[DROP_REJECTED].inc();
                tracing::error!(conversation = mail.conversation, kind = mail.kind.label(),
                    to = %mail.to, error = %e, "mail cannot be made (bad address?): dropped");
                if let Some(mark) = self.mailer.reject(mail) {
                    self.save_with(|log| log.append(&[(mail.conversation, mark)]))?;
                }
                return Ok(());
            }
        };
        match self.job.smtp.send(&message) {
            Ok(_) => {
                let slot = usize::from(mail.kind == MailKind::Digest);
                m.sent[slot].inc();
                tracing::info!(
                    conversation = mail.conversation,
                    kind = mail.kind.label(),
                    through = mail.through,
                    "mail sent"
                );
                if let Some(mark) = self.mailer.sent(mail, unix_ms().get()) {
                    self.save_with(|log| log.append(&[(mail.conversation, mark)]))?;
                }
            }
            Err(e) => {
                m.failures.inc();
                let permanent = refused_for_good(&e);
                let jitter = self.rng.next_u64();
                match self.mailer.failed(mail, unix_ms().get(), permanent, jitter) {
                    Failed::RetryAt(at) => {
                        tracing::warn!(conversation = mail.conversation, kind = mail.kind.label(),
                            error = %e, permanent, retry_in_ms = at.saturating_sub(unix_ms().get()),
                            "mail not sent; retrying with backoff");
                    }
                    Failed::Dropped(mark) => {
                        m.dropped[DROP_REJECTED].inc();
                        tracing::error!(conversation = mail.conversation, kind = mail.kind.label(),
                            to = %mail.to, error = %e,
                            "the SMTP server refused the mail for good (5xx, repeatedly): dropped");
                        self.save_with(|log| log.append(&[(mail.conversation, mark)]))?;
                    }
                }
            }
        }
        self.job.metrics.pending.set(self.mailer.pending() as u64);
        Ok(())
    }

    /// The message of `mail`.
    fn message(&self, mail: &Mail) -> Result<Message, String> {
        let to: Mailbox = mail.to.parse().map_err(|e| format!("{e}"))?;
        Message::builder()
            .from(self.job.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            // RFC 3834: no vacation auto-replies to these.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Switchboard-Conversation"),
                mail.conversation.to_string(),
            ))
            .body(mail.text.clone())
            .map_err(|e| e.to_string())
    }

    /// Runs a write of the marks file; while it fails (disk full, I/O error) waits and
    /// tries again, logging and counting each failure: mail stops meanwhile, no mark
    /// is lost.
    fn save_with(
        &mut self,
        mut write: impl FnMut(&mut MarksLog) -> Result<(), super::LogError>,
    ) -> Result<(), Stopped> {
        let mut wait = Duration::from_millis(100);
        loop {
            match write(&mut self.job.log) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.job.metrics.failures.inc();
                    tracing::error!(error = %e, retry_in_ms = wait.as_millis() as u64,
                        "mail marks cannot be saved; mail waits");
                    self.sleep(wait)?;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Forgets conversations with no record left once retention deleted segments.
    fn prune(&mut self) {
        let Some(first) = self.job.reader.first_segment_from(0) else {
            return;
        };
        if first == self.pruned_at {
            return;
        }
        self.pruned_at = first;
        if let Ok(segments) = self.job.journal.segments() {
            let live: std::collections::HashSet<u64> = segments
                .iter()
                .flat_map(|s| s.conversations.iter().copied())
                .collect();
            self.mailer.retain(|c| live.contains(&c));
        }
    }
}
