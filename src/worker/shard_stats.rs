//! Publishing what a conversation shard counted: the shard fills plain numbers
//! ([`ShardStats`]) and its worker moves them into the metrics after each message, so
//! a scrape never lags the frames those messages sent.

use crate::metrics::{RouterMetrics, WorkerMetrics};
use crate::service::conversation::{GroupEvent, ShardStats};

/// Adds `stats` to the metrics and resets them.
pub(super) fn publish(stats: &mut ShardStats, worker: &WorkerMetrics, router: &RouterMetrics) {
    if stats.is_empty() {
        return;
    }
    let ShardStats {
        closed,
        flagged,
        dropped,
        rate_limited,
        blocked,
        auto_replies,
        faq_confidence,
        faq_confidence_milli,
        faq_wrong,
        profiles_refused,
        history_deferred,
        history_waiting,
        groups,
    } = stats;
    router.conversations_closed.add(std::mem::take(closed));
    let f = &worker.filtered;
    f.flagged.add(std::mem::take(flagged));
    f.dropped.add(std::mem::take(dropped));
    f.rate_limited.add(std::mem::take(rate_limited));
    f.blocked.add(std::mem::take(blocked));
    worker.auto_replies.add(std::mem::take(auto_replies));
    worker.faq_wrong.add(std::mem::take(faq_wrong));
    worker.faq_confidence.add(
        &std::mem::take(faq_confidence),
        std::mem::take(faq_confidence_milli),
    );
    worker
        .profiles_refused
        .add(std::mem::take(profiles_refused));
    worker
        .history_deferred
        .add(std::mem::take(history_deferred));
    if let Some(n) = history_waiting.take() {
        worker.history_waiting.set(n);
    }
    for event in groups.drain(..) {
        match event {
            GroupEvent::Inactive(g) => router.by_group.group(&g).inactive.inc(),
            GroupEvent::FirstReply(g, ms) => router.by_group.group(&g).first_reply.observe_ms(ms),
            GroupEvent::Rated(g, score) => {
                let figures = router.by_group.group(&g);
                if let Some(n) = figures.ratings.get(usize::from(score).wrapping_sub(1)) {
                    n.inc();
                }
            }
        }
    }
}
