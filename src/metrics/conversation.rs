//! What a support lead asks of the metrics, per group: conversations opened and
//! abandoned, how long visitors waited in the queue, how long until the first
//! reply of an agent or bot, and the ratings.
//!
//! Group names come from tokens and clients, so the label set is bounded:
//! the first `admin.metric_groups` groups seen get their own label value, every
//! later one is counted under [`OTHER`] (logged once, and counted in
//! `metric_groups_folded_total`). Events are rare (a few per conversation), so one
//! mutex for the group table is cheap; the figures themselves are atomics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::cell::Counter;

/// Label value of the groups past the bound.
pub const OTHER: &str = "_other";

/// Upper bounds of the wait histograms' buckets, in seconds (a `+Inf` bucket
/// follows): from "answered at once" to "waited hours".
pub const WAIT_BUCKETS_S: [u64; 11] = [5, 15, 30, 60, 120, 300, 600, 1_200, 1_800, 3_600, 14_400];

/// A histogram of durations with [`WAIT_BUCKETS_S`] buckets.
#[derive(Debug, Default)]
pub struct WaitHistogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    pub buckets: [Counter; WAIT_BUCKETS_S.len() + 1],
    /// Sum of all observations in milliseconds.
    pub sum_ms: Counter,
}

impl WaitHistogram {
    /// Records a wait of `ms` milliseconds.
    pub fn observe_ms(&self, ms: u64) {
        let i = WAIT_BUCKETS_S.partition_point(|b| b.saturating_mul(1_000) < ms);
        if let Some(b) = self.buckets.get(i) {
            b.inc();
        }
        self.sum_ms.add(ms);
    }
}

/// One group's figures.
#[derive(Debug, Default)]
pub struct GroupFigures {
    /// Conversations opened (their opening message stored).
    pub opened: Counter,
    /// Conversations closed because their visitor left them queued past
    /// `routing.visitor_grace`.
    pub abandoned: Counter,
    /// Open conversations closed after `routing.inactivity_close` without an event.
    pub inactive: Counter,
    /// Time from entering the queue to an agent or bot taking the conversation (0
    /// when one took it as it opened); a requeued conversation counts again.
    pub queue_wait: WaitHistogram,
    /// Time from the opening message to the first message of an agent or bot.
    pub first_reply: WaitHistogram,
    /// Ratings by score: index 0 is a 1.
    pub ratings: [Counter; 5],
}

/// Groups with figures of their own before the rest fold into [`OTHER`]: the default
/// of `admin.metric_groups`.
pub const DEFAULT_GROUPS: usize = 64;

/// The per-group figures of the whole daemon.
#[derive(Debug)]
pub struct ConversationMetrics {
    max_groups: AtomicUsize,
    groups: Mutex<BTreeMap<String, Arc<GroupFigures>>>,
    other: Arc<GroupFigures>,
    /// Events counted under [`OTHER`] because the table was full.
    pub folded: Counter,
    warned: AtomicBool,
}

impl Default for ConversationMetrics {
    fn default() -> Self {
        Self {
            max_groups: AtomicUsize::new(DEFAULT_GROUPS),
            groups: Mutex::default(),
            other: Arc::default(),
            folded: Counter::default(),
            warned: AtomicBool::new(false),
        }
    }
}

impl ConversationMetrics {
    /// Sets how many groups get a label value of their own (`admin.metric_groups`);
    /// groups already labelled keep theirs.
    pub fn set_max_groups(&self, n: usize) {
        self.max_groups.store(n, Ordering::Relaxed);
    }

    /// How many groups get a label value of their own.
    pub fn max_groups(&self) -> usize {
        self.max_groups.load(Ordering::Relaxed)
    }

    /// The figures of `group` (or of [`OTHER`] once the table is full).
    pub fn group(&self, group: &str) -> Arc<GroupFigures> {
        let Ok(mut groups) = self.groups.lock() else {
            return self.other.clone();
        };
        if let Some(g) = groups.get(group) {
            return g.clone();
        }
        if groups.len() < self.max_groups.load(Ordering::Relaxed) {
            let g = Arc::<GroupFigures>::default();
            groups.insert(group.to_owned(), g.clone());
            return g;
        }
        self.folded.inc();
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                group,
                limit = groups.len(),
                "more groups than admin.metric_groups: later ones are counted as group=\"_other\""
            );
        }
        self.other.clone()
    }

    /// Every labelled group's figures, by name, then [`OTHER`]'s.
    pub fn snapshot(&self) -> Vec<(String, Arc<GroupFigures>)> {
        let mut all: Vec<(String, Arc<GroupFigures>)> = self
            .groups
            .lock()
            .map(|g| g.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        all.push((OTHER.to_owned(), self.other.clone()));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_land_in_their_bucket() {
        let h = WaitHistogram::default();
        h.observe_ms(0);
        h.observe_ms(5_000);
        h.observe_ms(5_001);
        h.observe_ms(20 * 3_600_000);
        let counts: Vec<u64> = h.buckets.iter().map(Counter::get).collect();
        assert_eq!(counts[0], 2, "0 and exactly 5 s");
        assert_eq!(counts[1], 1, "just over 5 s");
        assert_eq!(counts[WAIT_BUCKETS_S.len()], 1, "+Inf");
        assert_eq!(h.sum_ms.get(), 5_000 + 5_001 + 20 * 3_600_000);
    }

    #[test]
    fn groups_past_the_bound_fold_into_other() {
        let m = ConversationMetrics::default();
        m.set_max_groups(2);
        m.group("a").opened.inc();
        m.group("b").opened.inc();
        m.group("c").opened.inc();
        m.group("d").opened.inc();
        m.group("a").opened.inc();
        let snap: Vec<(String, u64)> = m
            .snapshot()
            .into_iter()
            .map(|(g, f)| (g, f.opened.get()))
            .collect();
        assert_eq!(snap, [("a".into(), 2), ("b".into(), 1), (OTHER.into(), 2)]);
        assert_eq!(m.folded.get(), 2);
    }
}
