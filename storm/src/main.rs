//! `storm`: Switchboard's load generator.
//!
//! Opens many client connections from a few threads — a mio event loop per thread,
//! each owning a slab of connections; no thread or task per connection — optionally
//! over several child processes and loopback source addresses, drives a scenario on
//! them (`connect`, `idle`, `echo`, `ping`, `chat`, `fanout`), and reports rates, latency percentiles
//! (HdrHistogram) and errors by kind, as text or one JSON object. Every run is bounded
//! and stops by itself; targets off loopback need `--allow-remote`. `--transport
//! ws-json|ws-bin` speaks the protocol over a WebSocket instead of plain TCP (and
//! `ws` sends the echo scenario's messages as WebSocket binary messages).
//!
//! `cargo run --release --bin storm -- --help` (at the workspace root) lists the flags.
//!
//! Layout: `cli.rs` (flags → [`cli::Plan`]), `sources.rs` (source addresses),
//! `limits.rs` (open files, ports, cores), `token.rs` (minting visitor tokens),
//! `engine.rs` (the mio connection engine), `ws.rs` (the WebSocket client side:
//! upgrade, masked frames, frame reader), `scenario/` (what each scenario sends),
//! `stats.rs` (histograms, counters, merging), `run.rs` (the coordinator),
//! `procs.rs` (child processes), `rss.rs` (the server's memory), `report.rs`
//! (JSON, text, `.hgrm`).

mod cli;
mod cpu;
mod engine;
mod limits;
mod procs;
mod report;
mod rss;
mod run;
mod scenario;
mod sources;
mod stats;
mod tls;
mod token;
mod ws;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::cli::{Cli, Machine, Plan};
use crate::report::Report;
use crate::run::{Fleet, LocalFleet, RunError};

/// Exit status for a bad command line or an impossible plan.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let nofile = match limits::raise_nofile() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("storm: cannot read the open-file limit: {e}");
            1024
        }
    };
    let machine = Machine {
        nofile,
        cores: limits::cores(),
        ports: limits::ephemeral_ports(),
    };
    let plan = match cli.resolve(machine) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("storm: {e}");
            return ExitCode::from(USAGE);
        }
    };
    if plan.child.is_some() {
        return procs::child_main(plan);
    }
    match run(plan) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("storm: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the plan in this process or over child processes and reports.
fn run(plan: Plan) -> Result<ExitCode, RunError> {
    if plan.procs_auto {
        eprintln!(
            "storm: {} connections exceed one process's open-file limit; spreading them over \
             {} processes (--procs {})",
            plan.total_connections, plan.procs, plan.procs
        );
    }
    let rss = match plan.server_pid {
        Some(pid) => {
            Some(rss::Tracker::start(pid).map_err(|source| RunError::ServerPid { pid, source })?)
        }
        None => None,
    };
    let cpu = match plan.server_pid {
        Some(pid) => Some(
            cpu::Tracker::start(pid, plan.warmup, plan.duration)
                .map_err(|source| RunError::ServerPid { pid, source })?,
        ),
        None => None,
    };
    let plan = Arc::new(plan);
    let mut fleet: Box<dyn Fleet> = if plan.procs > 1 {
        Box::new(procs::ChildFleet::start(&plan)?)
    } else {
        Box::new(LocalFleet::start(&plan)?)
    };
    let mut outcome = run::drive(&plan, fleet.as_mut(), rss, cpu)?;
    scenario::finalize(&plan, &mut outcome.stats);
    drop(fleet);
    let report = Report::new(
        &plan,
        &outcome.stats,
        outcome.rss,
        outcome.cpu.map(|c| c.report(outcome.stats.messages)),
        outcome.elapsed.as_secs_f64(),
    );
    if let Some(path) = &plan.hgrm {
        let written = std::fs::File::create(path).and_then(|mut f| {
            report::write_hgrm(&mut f, &outcome.stats.rtt)?;
            f.flush()
        });
        if let Err(e) = written {
            eprintln!("storm: cannot write {}: {e}", path.display());
        }
    }
    if plan.json {
        eprint!("{}", report.text());
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    let _ = std::io::stdout().flush();
    Ok(if report.connections == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
