//! A shard's assistants (`[assist]`): the FAQ auto-reply, canned replies, and the
//! abuse filter that screens new visitor messages.

use super::stats::ShardStats;
use crate::assist::Verdict;
use crate::protocol::ErrorCode;
use crate::protocol::messages;
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
    /// Installs the libraries and settings (at start and after a reload); the abuse
    /// filter keeps its per-visitor state across reloads.
    pub(super) fn set(
        &mut self,
        libs: &crate::assist::Libraries,
        cfg: &crate::assist::AssistConfig,
    ) {
        self.faq = libs.faq.clone();
        self.canned = libs.canned.clone();
        match (&mut self.filter, cfg.spam_enabled) {
            (Some(f), true) => f.set_rules(libs.spam.clone()),
            (None, true) => {
                self.filter = Some(crate::assist::SpamFilter::new(cfg, libs.spam.clone()))
            }
            (_, false) => self.filter = None,
        }
        if let Some(f) = &mut self.filter {
            f.set_tenant_rules(libs.spam_tenants.clone());
        }
    }

    /// The FAQ index, if the FAQ auto-reply is on.
    pub(super) fn faq(&self) -> Option<std::sync::Arc<crate::assist::FaqIndex>> {
        self.faq.clone()
    }

    /// The abuse filter's verdict on a new visitor message: the flags to store it with,
    /// or the code it is refused with (counted either way). `body` `None`: a write
    /// that is not chat (a `PROFILE`), refused only while the visitor is blocked or
    /// over its rate, its text not classified.
    pub(super) fn screen(
        &mut self,
        from: &Sender,
        body: Option<&str>,
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
        let verdict = match body {
            Some(body) => filter.check(subject, body, now_ms),
            None => filter.gate(subject, now_ms),
        };
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
