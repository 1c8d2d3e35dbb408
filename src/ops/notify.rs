//! Talking to systemd (`Type=notify`) through the `sd-notify` crate: `READY=1`,
//! `STATUS=…`, `STOPPING=1` and `WATCHDOG=1` datagrams to `$NOTIFY_SOCKET`. Without
//! that variable (not started by systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        // The service manager may be gone (e.g. at shutdown); nothing else to do.
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Tells systemd the daemon is ready (`READY=1`) with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Updates the status line `systemctl status` shows.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Tells systemd a shutdown has begun (`STOPPING=1`).
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// Keeps the watchdog happy (`WATCHDOG=1`); only `ops::watchdog` calls it.
pub(crate) fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// The watchdog timeout systemd asked for (`WATCHDOG_USEC`, for this process), if any.
pub fn watchdog_timeout() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}
