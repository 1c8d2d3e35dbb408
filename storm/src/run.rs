//! Running a plan: the coordinator loop, the same whether the connections live in
//! this process's threads ([`LocalFleet`]) or in child processes
//! ([`crate::procs::ChildFleet`]).
//!
//! The coordinator waits until every member (thread or child) has opened its
//! connections, then says `go` to all at once (so the steady stage starts together
//! everywhere), collects each member's final stats, lets the connections settle and
//! takes the server's end RSS sample while they are all still open, and only then
//! releases them. It prints the live progress line about once a second, samples the
//! server's RSS every 100 ms, and enforces the overall timeout (and Ctrl-C): both
//! end the run early but still report what was measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cli::Plan;
use crate::cpu;
use crate::engine::{Control, Snapshot, ThreadEvent};
use crate::report::{bytes, group};
use crate::rss::{self, RssReport};
use crate::scenario;
use crate::stats::{Clock, Stats};
use crate::token::{Minter, TokenError};

/// How long connections settle before the server's end RSS sample.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Past the overall timeout, how long members get to report before the run fails.
pub const GRACE: Duration = Duration::from_secs(30);
/// Coordinator tick.
const TICK: Duration = Duration::from_millis(100);

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Tokens cannot be minted.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A thread or process could not be started.
    #[error("cannot start: {0}")]
    Start(std::io::Error),
    /// A member failed.
    #[error("{0}")]
    Member(String),
    /// Members did not report in time.
    #[error("members did not report within the timeout and grace period")]
    Timeout,
    /// The server to sample cannot be read.
    #[error("--server-pid {pid}: cannot read /proc/{pid}/status: {source}")]
    ServerPid {
        /// The pid.
        pid: u32,
        /// Why.
        source: std::io::Error,
    },
}

/// What a member (thread or child process) reports.
#[derive(Debug)]
pub enum FleetEvent {
    /// A member has opened all its connections.
    Opened,
    /// A member's measurements.
    Final(Box<Stats>),
    /// A member failed.
    Failed(String),
}

/// Threads or processes holding connections, seen from the coordinator.
pub trait Fleet {
    /// How many members report `Opened` and `Final`.
    fn members(&self) -> usize;
    /// The next report, waiting at most `timeout`.
    fn next_event(&mut self, timeout: Duration) -> Option<FleetEvent>;
    /// Live counters over all members.
    fn snapshot(&self) -> Snapshot;
    /// Start the steady stage now.
    fn go(&mut self);
    /// End early (timeout or signal).
    fn stop(&mut self);
    /// Close all connections and exit.
    fn release(&mut self);
    /// Wait for every member to end.
    fn finish(&mut self);
}

/// Engine threads in this process.
pub struct LocalFleet {
    ctl: Arc<Control>,
    rx: Receiver<ThreadEvent>,
    handles: Vec<JoinHandle<()>>,
}

impl LocalFleet {
    /// Loads the token key (protocol mode) and starts the engine threads.
    pub fn start(plan: &Arc<Plan>) -> Result<Self, RunError> {
        let minter = if plan.protocol {
            let ttl = plan.timeout + Duration::from_secs(3600);
            Some(Arc::new(Minter::from_file(
                &plan.secret_file,
                plan.kid.clone(),
                ttl,
            )?))
        } else {
            None
        };
        let ctl = Arc::new(Control::new(plan.threads));
        let (tx, rx) = mpsc::channel();
        let handles = scenario::spawn(plan, minter, &ctl, &tx, Instant::now(), Clock::new())
            .map_err(RunError::Start)?;
        Ok(Self { ctl, rx, handles })
    }
}

impl Fleet for LocalFleet {
    fn members(&self) -> usize {
        self.ctl.live.len()
    }

    fn next_event(&mut self, timeout: Duration) -> Option<FleetEvent> {
        match self.rx.recv_timeout(timeout) {
            Ok(ThreadEvent::Opened) => Some(FleetEvent::Opened),
            Ok(ThreadEvent::Final(s)) => Some(FleetEvent::Final(s)),
            Ok(ThreadEvent::Failed(t, e)) => Some(FleetEvent::Failed(format!("thread {t}: {e}"))),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(FleetEvent::Failed(
                "engine threads ended unexpectedly".into(),
            )),
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.ctl.snapshot()
    }

    fn go(&mut self) {
        let _ = self.ctl.go.set(Instant::now());
    }

    fn stop(&mut self) {
        self.ctl.stop.store(true, Relaxed);
        let _ = self.ctl.go.set(Instant::now());
    }

    fn release(&mut self) {
        self.ctl.release.store(true, Relaxed);
    }

    fn finish(&mut self) {
        self.release();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Set by SIGINT/SIGTERM.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    flag
}

/// What a completed run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Merged stats of all members.
    pub stats: Stats,
    /// The server's memory, with `--server-pid`.
    pub rss: Option<RssReport>,
    /// The server's CPU samples, with `--server-pid`.
    pub cpu: Option<cpu::Tracker>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Drives a fleet through the run (see the module docs).
pub fn drive(
    plan: &Plan,
    fleet: &mut dyn Fleet,
    mut rss: Option<rss::Tracker>,
    mut cpu: Option<cpu::Tracker>,
) -> Result<Outcome, RunError> {
    let t0 = Instant::now();
    let deadline = t0 + plan.timeout;
    let interrupted = interrupt_flag();
    let members = fleet.members();
    let mut progress = Progress::new(plan, t0);
    let (mut opened, mut finals) = (0, 0);
    let mut stats = Stats::default();
    let mut stopped = false;
    while finals < members {
        match fleet.next_event(TICK) {
            Some(FleetEvent::Opened) => {
                opened += 1;
                if opened == members {
                    fleet.go();
                    if let Some(c) = cpu.as_mut() {
                        c.go(Instant::now());
                    }
                }
            }
            Some(FleetEvent::Final(s)) => {
                stats.merge(&s);
                finals += 1;
            }
            Some(FleetEvent::Failed(e)) => {
                fleet.stop();
                fleet.finish();
                return Err(RunError::Member(e));
            }
            None => {}
        }
        if let Some(r) = rss.as_mut() {
            r.sample();
        }
        let now = Instant::now();
        if let Some(c) = cpu.as_mut() {
            c.tick(now);
        }
        progress.tick(now, fleet.snapshot());
        if !stopped && (now >= deadline || interrupted.load(Relaxed)) {
            eprintln!(
                "storm: {}; ending the run early",
                if now >= deadline {
                    "overall timeout reached"
                } else {
                    "interrupted"
                }
            );
            fleet.stop();
            stopped = true;
        }
        if now >= deadline + GRACE {
            fleet.finish();
            return Err(RunError::Timeout);
        }
    }
    let rss = rss.map(|mut r| {
        let settle_end = Instant::now() + SETTLE;
        while Instant::now() < settle_end {
            r.sample();
            std::thread::sleep(TICK);
        }
        r.end();
        r.report(stats.open_at_end)
    });
    if let Some(c) = cpu.as_mut() {
        c.end();
    }
    let elapsed = t0.elapsed();
    fleet.release();
    fleet.finish();
    Ok(Outcome {
        stats,
        rss,
        cpu,
        elapsed,
    })
}

/// The live progress line on stderr, about once a second.
struct Progress {
    enabled: bool,
    t0: Instant,
    next: Instant,
    last: Snapshot,
    last_at: Instant,
    total: u64,
}

impl Progress {
    fn new(plan: &Plan, t0: Instant) -> Self {
        Self {
            enabled: !plan.quiet && plan.child.is_none(),
            t0,
            next: t0 + Duration::from_secs(1),
            last: Snapshot::default(),
            last_at: t0,
            total: plan.total_connections,
        }
    }

    fn tick(&mut self, now: Instant, s: Snapshot) {
        if !self.enabled || now < self.next {
            return;
        }
        self.next += Duration::from_secs(1);
        if self.next < now {
            self.next = now + Duration::from_secs(1);
        }
        let dt = now.duration_since(self.last_at).as_secs_f64().max(1e-3);
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        eprintln!(
            "storm {:6.1}s  open {}/{}  connecting {}  {} conn/s  {} msg/s  {}/s in  errors {}",
            now.duration_since(self.t0).as_secs_f64(),
            group(s.open),
            group(self.total),
            group(s.connecting),
            group(rate(s.connected, self.last.connected).round() as u64),
            group(rate(s.messages, self.last.messages).round() as u64),
            bytes(rate(s.bytes_in, self.last.bytes_in)),
            group(s.errors),
        );
        self.last = s;
        self.last_at = now;
    }
}
