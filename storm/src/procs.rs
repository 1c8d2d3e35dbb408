//! Spreading connections over child processes (`--procs`), each under its own
//! open-file limit.
//!
//! The parent re-executes the `storm` binary with its own arguments plus the hidden
//! `--child-index I --child-count N`; child `I` opens a contiguous block of the
//! connections (so each child still spreads over every source address) and runs the
//! engine threads itself. They talk in lines:
//!
//! - child → parent, stdout, one JSON object per line ([`ChildLine`]): `progress`
//!   (live counters, 4 times a second), `opened` (all its connections are set up),
//!   `final` (its [`StatsWire`], histograms included), `error`;
//! - parent → child, stdin: `go`, `stop`, `release`. End of input (the parent is
//!   gone) means stop and release.
//!
//! Children's stderr is the parent's. A child ends by itself at its own overall
//! timeout plus a grace period, and the parent kills (by PID, through its `Child`
//! handle) any child still running when it is done with it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cli::Plan;
use crate::engine::Snapshot;
use crate::run::{Fleet, FleetEvent, GRACE, LocalFleet, RunError, interrupt_flag};
use crate::stats::{Stats, StatsWire};

/// How often a child reports its live counters.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// One line a child prints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChildLine {
    /// Live counters.
    Progress {
        /// The child's counters.
        live: Snapshot,
    },
    /// All its connections are established or failed.
    Opened,
    /// Its measurements.
    Final {
        /// The stats.
        stats: StatsWire,
    },
    /// It cannot go on.
    Error {
        /// Why.
        message: String,
    },
}

/// A command the parent writes to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentCommand {
    /// Start the steady stage.
    Go,
    /// End early.
    Stop,
    /// Close everything and exit.
    Release,
}

impl ParentCommand {
    fn line(self) -> &'static [u8] {
        match self {
            Self::Go => b"go\n",
            Self::Stop => b"stop\n",
            Self::Release => b"release\n",
        }
    }

    fn parse(line: &str) -> Option<Self> {
        match line.trim() {
            "go" => Some(Self::Go),
            "stop" => Some(Self::Stop),
            "release" => Some(Self::Release),
            _ => None,
        }
    }
}

/// Child processes, seen from the parent.
pub struct ChildFleet {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    rx: Receiver<(usize, Option<ChildLine>)>,
    live: Vec<Snapshot>,
    finished: Vec<bool>,
}

impl ChildFleet {
    /// Starts `plan.procs` children with this process's arguments.
    pub fn start(plan: &Plan) -> Result<Self, RunError> {
        let exe = std::env::current_exe().map_err(RunError::Start)?;
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        let (tx, rx) = mpsc::channel();
        let mut fleet = Self {
            children: Vec::new(),
            stdins: Vec::new(),
            rx,
            live: vec![Snapshot::default(); plan.procs],
            finished: vec![false; plan.procs],
        };
        for i in 0..plan.procs {
            let mut child = Command::new(&exe)
                .args(&args)
                .arg("--child-index")
                .arg(i.to_string())
                .arg("--child-count")
                .arg(plan.procs.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(RunError::Start)?;
            let stdout = child.stdout.take();
            fleet.stdins.push(child.stdin.take());
            fleet.children.push(child);
            let tx = tx.clone();
            std::thread::spawn(move || {
                if let Some(out) = stdout {
                    for line in BufReader::new(out).lines() {
                        let Ok(line) = line else { break };
                        let parsed = serde_json::from_str::<ChildLine>(&line).unwrap_or_else(|e| {
                            ChildLine::Error {
                                message: format!("unreadable line ({e}): {line}"),
                            }
                        });
                        if tx.send((i, Some(parsed))).is_err() {
                            return;
                        }
                    }
                }
                let _ = tx.send((i, None));
            });
        }
        Ok(fleet)
    }

    fn tell(&mut self, cmd: ParentCommand) {
        for stdin in self.stdins.iter_mut() {
            if let Some(s) = stdin
                && s.write_all(cmd.line()).and_then(|()| s.flush()).is_err()
            {
                *stdin = None;
            }
        }
    }
}

impl Fleet for ChildFleet {
    fn members(&self) -> usize {
        self.children.len()
    }

    fn next_event(&mut self, timeout: Duration) -> Option<FleetEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((i, Some(ChildLine::Progress { live }))) => {
                    if let Some(slot) = self.live.get_mut(i) {
                        *slot = live;
                    }
                }
                Ok((_, Some(ChildLine::Opened))) => return Some(FleetEvent::Opened),
                Ok((i, Some(ChildLine::Final { stats }))) => {
                    if let Some(f) = self.finished.get_mut(i) {
                        *f = true;
                    }
                    return Some(match Stats::from_wire(&stats) {
                        Ok(s) => FleetEvent::Final(Box::new(s)),
                        Err(e) => FleetEvent::Failed(format!("process {i}: {e}")),
                    });
                }
                Ok((i, Some(ChildLine::Error { message }))) => {
                    return Some(FleetEvent::Failed(format!("process {i}: {message}")));
                }
                Ok((i, None)) => {
                    if !self.finished.get(i).copied().unwrap_or(true) {
                        return Some(FleetEvent::Failed(format!(
                            "process {i} exited before reporting"
                        )));
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    return Some(FleetEvent::Failed("all processes ended".into()));
                }
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for l in &self.live {
            s.add(l);
        }
        s
    }

    fn go(&mut self) {
        self.tell(ParentCommand::Go);
    }

    fn stop(&mut self) {
        self.tell(ParentCommand::Stop);
    }

    fn release(&mut self) {
        self.tell(ParentCommand::Release);
    }

    fn finish(&mut self) {
        self.release();
        // Closing stdin tells a child that did not get `release` to end.
        self.stdins.clear();
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &mut self.children {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

impl Drop for ChildFleet {
    fn drop(&mut self) {
        for c in &mut self.children {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn emit(line: &ChildLine) -> bool {
    let Ok(text) = serde_json::to_string(line) else {
        return false;
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

/// The child process: runs its share in threads and reports to the parent.
pub fn child_main(plan: Plan) -> ExitCode {
    let plan = Arc::new(plan);
    let mut fleet = match LocalFleet::start(&plan) {
        Ok(f) => f,
        Err(e) => {
            emit(&ChildLine::Error {
                message: e.to_string(),
            });
            return ExitCode::FAILURE;
        }
    };
    // SIGINT reaches the whole process group; the parent tells us to stop.
    let _ = interrupt_flag();
    let (tx, commands) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if let Some(cmd) = ParentCommand::parse(&line)
                && tx.send(cmd).is_err()
            {
                return;
            }
        }
        // The parent is gone.
        let _ = tx.send(ParentCommand::Stop);
        let _ = tx.send(ParentCommand::Release);
    });
    let deadline = Instant::now() + plan.timeout + GRACE;
    let members = fleet.members();
    let (mut opened, mut finals) = (0, 0);
    let mut stats = Stats::default();
    let mut next_progress = Instant::now();
    let mut released = false;
    loop {
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                ParentCommand::Go => fleet.go(),
                ParentCommand::Stop => fleet.stop(),
                ParentCommand::Release => released = true,
            }
        }
        if released && finals == members {
            break;
        }
        if released {
            // Released before the end: end now.
            fleet.stop();
        }
        match fleet.next_event(Duration::from_millis(50)) {
            Some(FleetEvent::Opened) => {
                opened += 1;
                if opened == members {
                    emit(&ChildLine::Opened);
                }
            }
            Some(FleetEvent::Final(s)) => {
                stats.merge(&s);
                finals += 1;
                if finals == members {
                    emit(&ChildLine::Final {
                        stats: stats.to_wire(),
                    });
                }
            }
            Some(FleetEvent::Failed(message)) => {
                emit(&ChildLine::Error { message });
                fleet.stop();
                fleet.finish();
                return ExitCode::FAILURE;
            }
            None => {}
        }
        let now = Instant::now();
        if now >= next_progress {
            next_progress = now + PROGRESS_EVERY;
            if !emit(&ChildLine::Progress {
                live: fleet.snapshot(),
            }) {
                // stdout closed: the parent is gone.
                released = true;
            }
        }
        if now >= deadline {
            break;
        }
    }
    fleet.finish();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for line in [
            ChildLine::Opened,
            ChildLine::Progress {
                live: Snapshot {
                    open: 3,
                    ..Snapshot::default()
                },
            },
            ChildLine::Final {
                stats: Stats::default().to_wire(),
            },
            ChildLine::Error {
                message: "x".into(),
            },
        ] {
            let text = serde_json::to_string(&line).unwrap();
            assert!(!text.contains('\n'));
            assert_eq!(serde_json::from_str::<ChildLine>(&text).unwrap(), line);
        }
        assert_eq!(
            serde_json::to_string(&ChildLine::Opened).unwrap(),
            r#"{"type":"opened"}"#
        );
        for c in [
            ParentCommand::Go,
            ParentCommand::Stop,
            ParentCommand::Release,
        ] {
            assert_eq!(
                ParentCommand::parse(std::str::from_utf8(c.line()).unwrap()),
                Some(c)
            );
        }
    }
}
