//! What to mail and when (sans-IO): fed every journal record in order, with the
//! durable marks of what was mailed already, it keeps each conversation's unsent
//! offline messages and away replies, and hands out mails as they fall due at the
//! `now_ms` it is given.
//!
//! - An offline notification (a visitor message flagged `OFFLINE`) goes to the
//!   group's notification address two seconds later (with the visitor's details sent
//!   right after the message); later offline messages of the conversation
//!   gather and go `digest_interval` after the previous notification.
//! - A reply digest (agent or bot messages flagged `VISITOR_AWAY`) goes to the
//!   visitor's profile email `digest_interval` after its first reply; any visitor
//!   event but a profile update before then cancels it (the visitor is back).
//!   Without an email address it waits until one is known.
//!
//! Marks say, per conversation, up to which sequence number each kind was mailed, so
//! replaying the journal from its start after a restart finds exactly what is still
//! due. Compaction copies are told from news by their order key, like the webhooks do.

use std::collections::HashMap;

use super::compose::{self, About, Line};
use super::profile::Profile;
use crate::config::EmailConfig;
use crate::journal::RecordRef;
use crate::protocol::Kind;
use crate::protocol::messages::{content, flags, role};
use crate::service::record::{self, Body, RecordKind, order_key};

/// A conversation's first offline notification waits this long after its first
/// offline message, so that the profile sent right after it (name, email) is in it.
pub(crate) const FIRST_NOTICE_DELAY_MS: u64 = 2_000;
/// A permanent SMTP refusal (5xx) drops the mail after this many attempts.
pub(crate) const MAX_PERMANENT_ATTEMPTS: u32 = 3;
/// The first retry waits about this long; each failure doubles it up to `max_backoff`.
const FIRST_BACKOFF_MS: u64 = 1000;

/// The two kinds of mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum MailKind {
    /// To the group's address: visitor messages left while nobody was online.
    Offline,
    /// To the visitor: replies written while the visitor was away.
    Digest,
}

impl MailKind {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            MailKind::Offline => "offline",
            MailKind::Digest => "digest",
        }
    }
}

/// What was mailed of one conversation (the durable state, `log.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Mark {
    /// Offline messages up to this seq were notified (or dropped).
    pub offline_through: u64,
    /// When the last offline notification went (Unix ms; 0: never).
    pub offline_sent_ms: u64,
    /// Away replies up to this seq were mailed (or dropped).
    pub digest_through: u64,
}

/// A mail due now, ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mail {
    /// Its conversation.
    pub conversation: u64,
    /// Which kind.
    pub kind: MailKind,
    /// The recipient.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The last sequence number it covers (its mark once sent).
    pub through: u64,
}

/// Messages of one kind not mailed yet.
#[derive(Debug, Default)]
struct Pending {
    lines: Vec<Line>,
    /// Messages past `max_digest_messages`: counted, not quoted.
    more: u64,
    /// Time of the first one (Unix ms).
    first_ms: u64,
    /// Seq of the last one.
    through: u64,
    /// Failed attempts so far.
    attempts: u32,
    /// Not before this (Unix ms) after a failure.
    retry_at: u64,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn push(&mut self, line: Line, max: usize) {
        if self.lines.is_empty() {
            self.first_ms = line.time_ms;
        }
        self.through = line.seq;
        if self.lines.len() < max {
            self.lines.push(line);
        } else {
            self.more += 1;
        }
    }
}

/// What mail remembers of one conversation.
#[derive(Debug, Default)]
struct Conv {
    tenant: String,
    group: String,
    visitor: String,
    visitor_name: String,
    profile: Profile,
    /// The agent or bot serving it now: (user id, display name).
    agent: Option<(String, String)>,
    /// Order key of the newest record applied.
    last: u64,
    offline: Pending,
    replies: Pending,
    /// An offline message found no notification address (logged once).
    unaddressed: bool,
}

impl Conv {
    fn has_pending(&self) -> bool {
        !self.offline.is_empty() || !self.replies.is_empty()
    }

    fn pending_mut(&mut self, kind: MailKind) -> &mut Pending {
        match kind {
            MailKind::Offline => &mut self.offline,
            MailKind::Digest => &mut self.replies,
        }
    }

    /// The oldest unsent message's time.
    fn oldest_ms(&self) -> u64 {
        [&self.offline, &self.replies]
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.first_ms)
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// Counts of what one [`Mailer::feed`] met.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fed {
    /// A compaction copy (skipped).
    pub copy: bool,
    /// A body that did not validate (logged by the caller).
    pub unreadable: bool,
    /// The conversation's first offline message with no notification address
    /// (`(tenant, group)` are in [`Mailer::describe`]).
    pub unaddressed: Option<u64>,
    /// Conversations dropped past `max_pending`, oldest first.
    pub dropped: usize,
}

/// After a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Try again at this time (Unix ms).
    RetryAt(u64),
    /// Given up (a permanent refusal, repeated): the mark to save.
    Dropped(Mark),
}

/// The mail state of every conversation in the journal.
#[derive(Debug)]
pub(crate) struct Mailer {
    cfg: EmailConfig,
    convs: HashMap<u64, Conv>,
    marks: HashMap<u64, Mark>,
    /// Conversations with something pending.
    pending: usize,
    /// Marks the core moved by itself (drops past the bound): to be saved.
    dirty: Vec<(u64, Mark)>,
}

impl Mailer {
    /// A mailer for `cfg` that knows what was mailed already (`marks`).
    pub(crate) fn new(cfg: &EmailConfig, marks: HashMap<u64, Mark>) -> Self {
        Self {
            cfg: cfg.clone(),
            convs: HashMap::new(),
            marks,
            pending: 0,
            dirty: Vec::new(),
        }
    }

    /// Conversations with unsent mail.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// Every conversation's mark.
    pub(crate) fn marks(&self) -> &HashMap<u64, Mark> {
        &self.marks
    }

    /// Marks the core moved by itself since the last call (to be saved).
    pub(crate) fn take_dirty(&mut self) -> Vec<(u64, Mark)> {
        std::mem::take(&mut self.dirty)
    }

    /// `(tenant, group)` of a conversation, for log lines.
    pub(crate) fn describe(&self, conversation: u64) -> (&str, &str) {
        self.convs
            .get(&conversation)
            .map_or(("", ""), |c| (c.tenant.as_str(), c.group.as_str()))
    }

    /// Forgets conversations `live` says have no record left in the journal (their
    /// marks too: their records will not come back).
    pub(crate) fn retain(&mut self, live: impl Fn(u64) -> bool) {
        self.convs.retain(|c, _| live(*c));
        self.marks.retain(|c, _| live(*c));
        self.pending = self.convs.values().filter(|c| c.has_pending()).count();
    }

    /// Marks everything pending as mailed without mailing it (the first start with
    /// email on: the journal's history is not mailed). The marks to save.
    pub(crate) fn settle_all(&mut self) -> Vec<(u64, Mark)> {
        let mut out = Vec::new();
        for (id, conv) in &mut self.convs {
            if !conv.has_pending() {
                continue;
            }
            let mark = self.marks.entry(*id).or_default();
            if !conv.offline.is_empty() {
                mark.offline_through = conv.offline.through;
            }
            if !conv.replies.is_empty() {
                mark.digest_through = conv.replies.through;
            }
            conv.offline = Pending::default();
            conv.replies = Pending::default();
            out.push((*id, *mark));
        }
        self.pending = 0;
        out
    }

    /// Applies one record (in journal order).
    pub(crate) fn feed(&mut self, r: RecordRef<'_>) -> Fed {
        let mut fed = Fed::default();
        let Ok((kind, body)) = record::decode(r.kind, r.body) else {
            fed.unreadable = true;
            return fed;
        };
        let key = order_key(kind, r.seq);
        let known = self.convs.contains_key(&r.conversation);
        let conv = self.convs.entry(r.conversation).or_default();
        if known && key <= conv.last {
            fed.copy = true;
            return fed;
        }
        conv.last = key;
        let before = conv.has_pending();
        match kind {
            RecordKind::Opened => {
                conv.tenant.clone_from(&body.tenant);
                conv.visitor.clone_from(&body.visitor);
                conv.visitor_name.clone_from(&body.visitor_name);
                conv.group.clone_from(&body.group);
            }
            RecordKind::Requeued => {
                conv.group.clone_from(&body.group);
                conv.agent = None;
            }
            RecordKind::Entry => {
                let mark = self.marks.get(&r.conversation).copied().unwrap_or_default();
                if entry(conv, &self.cfg, mark, r.time_ms, &body) {
                    fed.unaddressed = Some(r.conversation);
                }
            }
            RecordKind::Gap | RecordKind::Reserved | RecordKind::Orphaned => {}
        }
        match (before, conv.has_pending()) {
            (false, true) => self.pending += 1,
            (true, false) => self.pending -= 1,
            _ => {}
        }
        while self.pending > self.cfg.max_pending {
            self.drop_oldest();
            fed.dropped += 1;
        }
        fed
    }

    /// Drops the conversation whose unsent mail is oldest (bound reached).
    fn drop_oldest(&mut self) {
        let Some((&id, _)) = self
            .convs
            .iter()
            .filter(|(_, c)| c.has_pending())
            .min_by_key(|(id, c)| (c.oldest_ms(), **id))
        else {
            self.pending = 0;
            return;
        };
        let mut mark = None;
        for kind in [MailKind::Offline, MailKind::Digest] {
            if let Some(m) = self.settle(id, kind, None) {
                mark = Some(m);
            }
        }
        if let Some(m) = mark {
            self.dirty.push((id, m));
        }
        tracing::warn!(
            conversation = id,
            max_pending = self.cfg.max_pending,
            "email.max_pending conversations wait for mail: the oldest one's mail is dropped"
        );
    }

    /// When the conversation's `kind` mail falls due, if it can go at all.
    fn due_at(&self, conv: &Conv, id: u64, kind: MailKind) -> Option<u64> {
        let interval = crate::clock::millis(self.cfg.digest_interval);
        match kind {
            MailKind::Offline => {
                let p = &conv.offline;
                if p.is_empty() || self.cfg.notify_address(&conv.tenant, &conv.group).is_none() {
                    return None;
                }
                let sent = self.marks.get(&id).map_or(0, |m| m.offline_sent_ms);
                let gather = if sent == 0 {
                    // The first waits a moment for the visitor's details: a widget's
                    // "leave a message" sends the message, then the email (a PROFILE).
                    p.first_ms.saturating_add(FIRST_NOTICE_DELAY_MS)
                } else {
                    sent.saturating_add(interval)
                };
                Some(p.first_ms.max(gather).max(p.retry_at))
            }
            MailKind::Digest => {
                let p = &conv.replies;
                if p.is_empty() || conv.profile.email.is_none() {
                    return None;
                }
                Some(p.first_ms.saturating_add(interval).max(p.retry_at))
            }
        }
    }

    /// The earliest time a mail falls due (Unix ms), if any can go.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.convs
            .iter()
            .filter(|(_, c)| c.has_pending())
            .flat_map(|(id, c)| {
                [MailKind::Offline, MailKind::Digest]
                    .into_iter()
                    .filter_map(|k| self.due_at(c, *id, k))
            })
            .min()
    }

    /// The mail most overdue at `now_ms`, if one is due. It stays pending until
    /// [`Mailer::sent`] or [`Mailer::failed`] says how it went.
    pub(crate) fn due(&self, now_ms: u64) -> Option<Mail> {
        let (at, id, kind) = self
            .convs
            .iter()
            .filter(|(_, c)| c.has_pending())
            .flat_map(|(id, c)| {
                [MailKind::Offline, MailKind::Digest]
                    .into_iter()
                    .filter_map(|k| self.due_at(c, *id, k).map(|at| (at, *id, k)))
            })
            .min()?;
        if at > now_ms {
            return None;
        }
        let conv = self.convs.get(&id)?;
        let chat_url = self.cfg.chat_url.as_deref();
        let name = conv
            .profile
            .name
            .as_deref()
            .or(Some(conv.visitor_name.as_str()).filter(|n| !n.is_empty()));
        let (to, (subject, text), through) = match kind {
            MailKind::Offline => {
                let about = About {
                    conversation: id,
                    tenant: &conv.tenant,
                    group: &conv.group,
                    visitor: &conv.visitor,
                    name,
                    email: conv.profile.email.as_deref(),
                };
                let p = &conv.offline;
                (
                    self.cfg.notify_address(&conv.tenant, &conv.group)?,
                    compose::offline(&about, &p.lines, p.more, chat_url),
                    p.through,
                )
            }
            MailKind::Digest => {
                let p = &conv.replies;
                (
                    conv.profile.email.as_deref()?,
                    compose::digest(id, name, &p.lines, p.more, chat_url),
                    p.through,
                )
            }
        };
        Some(Mail {
            conversation: id,
            kind,
            to: to.to_owned(),
            subject,
            text,
            through,
        })
    }

    /// Moves the conversation's `kind` mark to `through` and forgets what it covers;
    /// `sent_ms`: when an offline notification went. The new mark, if it moved.
    fn settle(&mut self, id: u64, kind: MailKind, sent_ms: Option<u64>) -> Option<Mark> {
        let conv = self.convs.get_mut(&id)?;
        let before = conv.has_pending();
        let p = conv.pending_mut(kind);
        let through = p.through;
        *p = Pending::default();
        let mark = self.marks.entry(id).or_default();
        match kind {
            MailKind::Offline => {
                mark.offline_through = mark.offline_through.max(through);
                if let Some(t) = sent_ms {
                    mark.offline_sent_ms = t;
                }
            }
            MailKind::Digest => mark.digest_through = mark.digest_through.max(through),
        }
        if before && !conv.has_pending() {
            self.pending -= 1;
        }
        Some(*mark)
    }

    /// `mail` was accepted by the SMTP server at `now_ms`: the mark to save.
    pub(crate) fn sent(&mut self, mail: &Mail, now_ms: u64) -> Option<Mark> {
        let sent_ms = (mail.kind == MailKind::Offline).then_some(now_ms.max(1));
        self.settle(mail.conversation, mail.kind, sent_ms)
    }

    /// `mail` cannot be sent at all (its address does not parse): the mark to save.
    pub(crate) fn reject(&mut self, mail: &Mail) -> Option<Mark> {
        self.settle(mail.conversation, mail.kind, None)
    }

    /// An attempt of `mail` failed at `now_ms` (`permanent`: a 5xx answer); `jitter`
    /// is a random number. Transient failures are retried with exponential backoff up
    /// to `max_backoff`, permanent ones [`MAX_PERMANENT_ATTEMPTS`] times in all.
    pub(crate) fn failed(
        &mut self,
        mail: &Mail,
        now_ms: u64,
        permanent: bool,
        jitter: u64,
    ) -> Failed {
        let cap = crate::clock::millis(self.cfg.max_backoff).max(1);
        let Some(conv) = self.convs.get_mut(&mail.conversation) else {
            return Failed::RetryAt(now_ms.saturating_add(cap));
        };
        let p = conv.pending_mut(mail.kind);
        p.attempts = p.attempts.saturating_add(1);
        if permanent && p.attempts >= MAX_PERMANENT_ATTEMPTS {
            let mark = self
                .settle(mail.conversation, mail.kind, None)
                .unwrap_or_default();
            return Failed::Dropped(mark);
        }
        let shift = p.attempts.saturating_sub(1).min(30);
        let backoff = FIRST_BACKOFF_MS.saturating_mul(1 << shift).min(cap);
        // Half fixed, half random: retries of many mails spread out.
        let half = backoff / 2;
        let wait = half + jitter % (backoff - half + 1);
        p.retry_at = now_ms.saturating_add(wait);
        Failed::RetryAt(p.retry_at)
    }
}

/// Applies one transcript entry to `conv`; whether it was the first offline message
/// with no notification address.
fn entry(conv: &mut Conv, cfg: &EmailConfig, mark: Mark, time_ms: u64, body: &Body) -> bool {
    let e = &body.entry;
    let kind = Kind::from_u8(e.kind);
    match kind {
        Some(Kind::Queued) => {
            conv.group.clone_from(&e.body);
            conv.agent = None;
        }
        Some(Kind::Assigned) => {
            if !body.group.is_empty() {
                conv.group.clone_from(&body.group);
            }
            conv.agent = Some((e.sender.clone(), e.body.clone()));
        }
        _ => {}
    }
    let send = kind == Some(Kind::Send);
    if send && e.content_type == content::PROFILE {
        // A profile update is no sign the visitor is back (a pre-chat form or the
        // back end may send it): it cancels nothing, and may give the address a
        // waiting digest needs.
        conv.profile.apply(&e.body);
        return false;
    }
    let max_lines = cfg.max_digest_messages;
    let max_chars = cfg.max_message_chars;
    match e.sender_role {
        role::VISITOR => {
            // The visitor is here: replies waiting for them are no longer news.
            conv.replies = Pending::default();
            if !send {
                return false;
            }
            if e.flags & flags::OFFLINE == 0 || e.seq <= mark.offline_through {
                return false;
            }
            if cfg.notify_address(&conv.tenant, &conv.group).is_none() {
                let first = !conv.unaddressed;
                conv.unaddressed = true;
                return first;
            }
            let who = conv
                .profile
                .name
                .clone()
                .or_else(|| Some(conv.visitor_name.clone()).filter(|n| !n.is_empty()))
                .unwrap_or_else(|| "Visitor".into());
            conv.offline.push(
                Line {
                    seq: e.seq,
                    time_ms,
                    who,
                    text: compose::quote(e.content_type, &e.body, max_chars),
                },
                max_lines,
            );
        }
        role::AGENT | role::BOT => {
            let away = e.flags & flags::VISITOR_AWAY != 0 && e.flags & flags::PRIVATE == 0;
            if !send || !away || e.seq <= mark.digest_through {
                return false;
            }
            let who = match &conv.agent {
                Some((id, name)) if *id == e.sender && !name.is_empty() => name.clone(),
                _ if e.sender.is_empty() => "Support".into(),
                _ => e.sender.clone(),
            };
            conv.replies.push(
                Line {
                    seq: e.seq,
                    time_ms,
                    who,
                    text: compose::quote(e.content_type, &e.body, max_chars),
                },
                max_lines,
            );
        }
        _ => {}
    }
    false
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
