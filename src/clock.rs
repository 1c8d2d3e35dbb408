//! Time as an input. State machines (reactor core, sessions, shards, the durable
//! layer, the router) never read a clock: their loops read a [`Clock`] once per turn
//! and hand the [`Now`] on. Two domains, two types, so they cannot be mixed up:
//! [`Mono`] (monotonic, for deadlines and latencies) and [`UnixMs`] (wall clock, for
//! timestamps that leave the process and for token expiry).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A duration in whole milliseconds, saturating at `u64::MAX`.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration in whole milliseconds as `u32` (the wire's width), saturating.
pub(crate) fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// A point on a monotonic clock: microseconds since its [`Clock`]'s epoch. Only
/// points of one clock compare (each loop owns its clock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mono(u64);

impl Mono {
    /// The clock's epoch.
    pub const ZERO: Mono = Mono(0);

    /// `ms` milliseconds after the epoch (tests script time with it).
    pub const fn from_ms(ms: u64) -> Self {
        Mono(ms.saturating_mul(1000))
    }

    /// `d` after the epoch, saturating.
    pub fn from_duration(d: Duration) -> Self {
        Mono(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// Whole milliseconds since the epoch.
    pub const fn as_ms(self) -> u64 {
        self.0 / 1000
    }

    /// `ms` milliseconds later, saturating.
    #[must_use]
    pub const fn plus_ms(self, ms: u64) -> Self {
        Mono(self.0.saturating_add(ms.saturating_mul(1000)))
    }

    /// `d` later, saturating.
    #[must_use]
    pub fn plus(self, d: Duration) -> Self {
        Mono(
            self.0
                .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }

    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub const fn since(self, earlier: Mono) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// Whole milliseconds from `earlier` to `self` (zero if `earlier` is later).
    pub const fn ms_since(self, earlier: Mono) -> u64 {
        self.0.saturating_sub(earlier.0) / 1000
    }
}

/// Wall-clock milliseconds since the Unix epoch (message timestamps, token expiry,
/// retention cut-offs). It may step backwards; nothing that bounds a wait uses it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMs(pub u64);

impl UnixMs {
    /// The milliseconds as the wire and the journal carry them.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// Both clocks, read together once per loop turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Now {
    /// Monotonic: deadlines, back-offs, latencies.
    pub mono: Mono,
    /// Wall clock: timestamps.
    pub unix: UnixMs,
}

/// The clocks a loop reads: [`Mono`] counts from the moment it was made.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock whose [`Mono`] epoch is now.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// Both clocks, now.
    pub fn now(&self) -> Now {
        Now {
            mono: self.mono(),
            unix: unix_ms(),
        }
    }

    /// The monotonic clock, now.
    pub fn mono(&self) -> Mono {
        self.at(Instant::now())
    }

    /// `t` on this clock (the epoch if `t` is earlier): converts deadlines other
    /// threads express as [`Instant`]s, without reading the clock.
    pub fn at(&self, t: Instant) -> Mono {
        Mono::from_duration(t.saturating_duration_since(self.epoch))
    }

    /// The [`Instant`] of `t` on this clock (tests script deadlines sent as instants).
    #[cfg(test)]
    pub fn instant(&self, t: Mono) -> Instant {
        self.epoch + t.since(Mono::ZERO)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Wall-clock milliseconds since the Unix epoch, now (0 if the clock reads earlier).
pub fn unix_ms() -> UnixMs {
    UnixMs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_arithmetic_saturates_and_keeps_units() {
        let t = Mono::from_ms(1500);
        assert_eq!(t.as_ms(), 1500);
        assert_eq!(t.plus_ms(250).ms_since(t), 250);
        assert_eq!(t.since(t.plus_ms(1)), Duration::ZERO);
        assert_eq!(
            t.plus(Duration::from_micros(1500)).since(t).as_micros(),
            1500
        );
        assert_eq!(
            Mono::from_ms(u64::MAX).plus_ms(1).ms_since(Mono::ZERO),
            u64::MAX / 1000
        );
    }

    #[test]
    fn clock_converts_instants_without_going_below_its_epoch() {
        let c = Clock::new();
        let later = c.epoch + Duration::from_millis(7);
        assert_eq!(c.at(later), Mono::from_ms(7));
        if let Some(before) = c.epoch.checked_sub(Duration::from_millis(1)) {
            assert_eq!(c.at(before), Mono::ZERO);
        }
    }
}
