//! Email counters (written by the mail thread, `src/mail/`).

use super::{Counter, Gauge};

/// Kinds of mail, in slot order (the `kind` label).
pub const MAIL_KINDS: [&str; 2] = ["offline", "digest"];

/// Why mail was dropped unsent, in slot order (the `reason` label).
pub const DROP_REASONS: [&str; 3] = ["max_pending", "rejected", "no_address"];

/// Slot of [`DROP_REASONS`]: `email.max_pending` conversations waited already.
pub const DROP_MAX_PENDING: usize = 0;
/// Slot of [`DROP_REASONS`]: refused for good (5xx, repeated) or unaddressable.
pub const DROP_REJECTED: usize = 1;
/// Slot of [`DROP_REASONS`]: an offline message of a group with no address.
pub const DROP_NO_ADDRESS: usize = 2;

/// The mail thread's counters.
#[derive(Debug, Default)]
pub struct EmailMetrics {
    /// Mails the SMTP server accepted, by kind ([`MAIL_KINDS`]); one sent again after
    /// a crash counts again.
    pub sent: [Counter; MAIL_KINDS.len()],
    /// Attempts that failed (each retried, or dropped after repeated 5xx answers).
    pub failures: Counter,
    /// Mails dropped unsent, by reason ([`DROP_REASONS`]).
    pub dropped: [Counter; DROP_REASONS.len()],
    /// Conversations with mail not sent yet.
    pub pending: Gauge,
    /// Journal records whose body did not validate (each logged).
    pub unreadable: Counter,
}
