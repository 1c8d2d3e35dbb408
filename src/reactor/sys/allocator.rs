//! The allocator's settings the daemon decides in code: mimalloc's purge delay.
//!
//! mimalloc returns freed pages to the OS only once they have been free for
//! `purge_delay` milliseconds, and only when the thread allocates again; a reactor or
//! worker that goes idle after a burst of handshakes keeps that memory resident. Its
//! own default (mimalloc v3: 1,000 ms) left ~60–100 B per idle session of freed
//! handshake memory in RSS; 10 ms returns it and costs no measurable CPU (README,
//! "Memory per authenticated session"). This sets the *default*: a
//! `MIMALLOC_PURGE_DELAY` in the environment still wins.

use libmimalloc_sys::{mi_option_set_default, mi_option_t};

/// The purge delay the daemon runs with, milliseconds.
pub(crate) const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (`mimalloc.h`: the 16th
/// option, after `mi_option_deprecated_eager_commit_delay` = 14); `libmimalloc-sys`
/// names the options around it but not this one.
const MI_OPTION_PURGE_DELAY: mi_option_t = 15;

/// Makes [`PURGE_DELAY_MS`] mimalloc's purge delay unless the environment set one.
/// Called at start, before the daemon's threads exist (mimalloc's options are plain
/// words, not atomics).
pub(crate) fn default_purge_delay() {
    // SAFETY: a C call with an in-range option index, no pointers: it stores one word
    // of mimalloc's static option table unless the environment set it. The daemon
    // calls it before starting its threads; where a process starts several servers
    // (tests), a thread reading the option meanwhile sees the old or the new delay,
    // both valid, and every call stores the same value.
    unsafe { mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::mi_option_get;

    /// The purge delay in force.
    fn purge_delay() -> std::ffi::c_long {
        // SAFETY: reads one entry of mimalloc's option table (index in range).
        unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
    }

    #[test]
    fn the_default_is_ours_unless_the_environment_says_otherwise() {
        default_purge_delay();
        match std::env::var("MIMALLOC_PURGE_DELAY") {
            Ok(v) => assert_eq!(Some(purge_delay()), v.parse().ok()),
            Err(_) => assert_eq!(purge_delay(), PURGE_DELAY_MS),
        }
    }
}
