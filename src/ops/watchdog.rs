//! The systemd watchdog: `WATCHDOG=1` is sent only while every reactor, worker and the
//! router is making progress.
//!
//! Each of those threads bumps its own `loops` counter (in its cache-padded metrics
//! block) once per loop turn, and while the watchdog is on it never waits longer than
//! [`progress_tick`] (at most a quarter of the watchdog timeout), so even an idle
//! thread bumps it a few times per check. The watchdog thread checks every half
//! timeout and pings only if every counter moved since the previous check: one stuck
//! thread (a blocking call, a livelock in a handler) stops the pings and systemd
//! restarts the daemon.

use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

use super::notify;
use crate::metrics::Metrics;

/// Longest a loop waits between turns while the watchdog is on.
const MAX_TICK: Duration = Duration::from_millis(250);
/// Shortest tick, so a tiny `WatchdogSec` cannot turn loops into busy spins.
const MIN_TICK: Duration = Duration::from_millis(5);

/// How long a reactor, worker or router loop may wait for events before turning once
/// anyway (`None`: no watchdog, wait as long as there is nothing to do). Read once
/// from `WATCHDOG_USEC`.
pub(crate) fn progress_tick() -> Option<Duration> {
    static TICK: OnceLock<Option<Duration>> = OnceLock::new();
    *TICK.get_or_init(|| notify::watchdog_timeout().map(|w| (w / 4).clamp(MIN_TICK, MAX_TICK)))
}

/// The running watchdog thread; stops when dropped or [`stop`](Self::stop)ped.
pub(crate) struct Watchdog {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts pinging if systemd asked for a watchdog; `None` otherwise.
    pub fn spawn(metrics: Arc<Metrics>) -> std::io::Result<Option<Self>> {
        let Some(timeout) = notify::watchdog_timeout() else {
            return Ok(None);
        };
        let period = timeout / 2;
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let mut last = progress(&metrics);
                let mut stalled = false;
                loop {
                    match rx.recv_timeout(period) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    let now = progress(&metrics);
                    let stuck: Vec<&str> = now
                        .iter()
                        .zip(&last)
                        .filter(|((_, a), (_, b))| a == b)
                        .map(|((name, _), _)| name.as_str())
                        .collect();
                    if stuck.is_empty() {
                        notify::watchdog();
                        if std::mem::take(&mut stalled) {
                            tracing::info!("all loops make progress again; watchdog pings resume");
                        }
                    } else if !std::mem::replace(&mut stalled, true) {
                        tracing::error!(
                            threads = ?stuck,
                            "loops made no progress; withholding watchdog pings"
                        );
                    }
                    last = now;
                }
            })?;
        Ok(Some(Self {
            stop: Some(tx),
            thread: Some(thread),
        }))
    }

    /// Stops pinging (shutdown began: systemd stops the watchdog too).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Every watched loop's turn count, by thread name.
fn progress(m: &Metrics) -> Vec<(String, u64)> {
    let reactors = m
        .reactors
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("reactor-{i}"), r.loops.get()));
    let workers = m
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("worker-{i}"), w.loops.get()));
    reactors
        .chain(workers)
        .chain(std::iter::once(("router".to_owned(), m.router.loops.get())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_names_every_loop() {
        let m = Metrics::new(2, 3);
        m.workers[1].loops.add(7);
        let p = progress(&m);
        assert_eq!(p.len(), 6);
        assert_eq!(p[3], ("worker-1".to_owned(), 7));
        assert_eq!(p[5].0, "router");
    }
}
