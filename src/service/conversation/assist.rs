//! A shard's assistants (`[assist]`): the FAQ auto-reply, canned replies, and the
//! abuse filter that screens new visitor messages.

use super::{Shard, ShardStats};
use crate::assist::Verdict;
use crate::protocol::messages::{self, Entry, Msg, role};
use crate::protocol::{ErrorCode, Kind};
use crate::service::{Effect, Sender, refuse};

/// A shard's assistants (`[assist]`); each is off when `None`.
#[derive(Debug, Default)]
pub(super) struct Assist {
    faq: Option<std::sync::Arc<crate::assist::FaqIndex>>,
    pub(super) canned: Option<std::sync::Arc<crate::assist::CannedLibrary>>,
    /// Per-visitor state (rate buckets, blocks) of the visitors on this shard.
    filter: Option<crate::assist::SpamFilter>,
    /// Scratch for the filter's subject (`tenant/user`): no allocation per message.
    subject: String,
}

impl Assist {
    /// The abuse filter's verdict on a new visitor message: the flags to store it with,
    /// or the code it is refused with (counted either way).
    pub(super) fn screen(
        &mut self,
        from: &Sender,
        body: &str,
        now_ms: u64,
        stats: &mut ShardStats,
    ) -> Result<u8, ErrorCode> {
        let Some(filter) = self.filter.as_mut() else {
            return Ok(0);
        };
        let subject = &mut self.subject;
        subject.clear();
        subject.push_str(&from.who.tenant);
        subject.push('/');
        subject.push_str(&from.who.user);
        let verdict = filter.check(subject, body, now_ms);
        match verdict {
            Verdict::Allow => {}
            Verdict::Flag { .. } => stats.flagged += 1,
            Verdict::Drop { .. } => stats.dropped += 1,
            Verdict::RateLimited => stats.rate_limited += 1,
            Verdict::Block { .. } => stats.blocked += 1,
        }
        match verdict {
            Verdict::Allow => Ok(0),
            Verdict::Flag { .. } => Ok(messages::flags::FLAGGED),
            Verdict::Drop { .. } => Err(ErrorCode::Forbidden),
            Verdict::RateLimited => Err(ErrorCode::RateLimited),
            Verdict::Block { .. } => Err(ErrorCode::Blocked),
        }
    }
}

/// Answers a message the abuse filter refused (a block, 205, closes the connection
/// and names no conversation).
pub(super) fn refuse_screened(
    out: &mut Vec<Effect>,
    to: &Sender,
    code: ErrorCode,
    conversation: u64,
) {
    let conversation = if code == ErrorCode::Blocked {
        0
    } else {
        conversation
    };
    refuse(out, to, code, conversation);
}

impl Shard {
    /// Installs the assistants (at start and after a reload); the abuse filter keeps
    /// its per-visitor state across reloads.
    pub fn set_assist(
        &mut self,
        libs: &crate::assist::Libraries,
        cfg: &crate::assist::AssistConfig,
    ) {
        self.assist.faq = libs.faq.clone();
        self.assist.canned = libs.canned.clone();
        match (&mut self.assist.filter, cfg.spam_enabled) {
            (Some(f), true) => f.set_rules(libs.spam.clone()),
            (None, true) => {
                self.assist.filter = Some(crate::assist::SpamFilter::new(cfg, libs.spam.clone()));
            }
            (_, false) => self.assist.filter = None,
        }
    }

    /// The FAQ answer to a visitor's message in a conversation waiting for an agent,
    /// as an automatic message (`AUTO_REPLY`, sender role `system`) that both sides
    /// see; nothing when no entry scores above `assist.faq_threshold`.
    pub(super) fn auto_reply(
        &mut self,
        conversation: u64,
        text: &str,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let Some(faq) = self.assist.faq.clone() else {
            return;
        };
        let Some(c) = self.convs.get_mut(&conversation) else {
            return;
        };
        let Some(m) = faq.best_match(&c.group, text) else {
            return;
        };
        tracing::debug!(conversation, faq = m.id, score = m.score, "faq auto-reply");
        self.stats.auto_replies += 1;
        let flags = messages::flags::AUTO_REPLY;
        let seq = c.append(Entry {
            seq: 0,
            time_ms: now_ms,
            kind: Kind::Send.as_u8(),
            sender_role: role::SYSTEM,
            content_type: messages::content::TEXT,
            flags,
            sender: String::new(),
            body: m.answer.to_owned(),
        });
        let frame = Msg::from(messages::Deliver {
            sender_role: role::SYSTEM,
            content_type: messages::content::TEXT,
            flags,
            conversation,
            seq,
            time_ms: now_ms,
            client_msg_id: 0,
            sender: String::new(),
            body: m.answer.to_owned(),
        })
        .to_frame(0);
        c.to_participants(out, None, frame);
        self.log_entry(conversation, 0);
    }
}
