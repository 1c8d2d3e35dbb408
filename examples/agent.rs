//! A support agent that answers every visitor message with `agent: <text>`.
//!
//! ```text
//! cargo run --example agent -- --sub alice --groups support
//! ```
//!
//! It connects to a running daemon (`--addr`, default `127.0.0.1:7700`) with
//! `--token`, or with a token it mints from the daemon's development secret
//! (`--secret-file`, default `./data/dev-secret`), waits for conversations to be
//! assigned to it, prints what arrives, and echoes each visitor message. It exits
//! after `--conversations` conversations have closed (default 1; 0: never) or after
//! `--timeout` seconds.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use switchboard::client::Client;
use switchboard::protocol::Kind;
use switchboard::protocol::messages::{self, Msg, role};

use common::{BoxError, ConnectArgs, show};

/// Command line of the agent example.
#[derive(Debug, Clone, Parser)]
#[command(about = "A Switchboard agent that echoes every visitor message")]
pub struct Args {
    /// Where to connect and who to be.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Groups to serve (for a minted token), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "support")]
    pub groups: Vec<String>,
    /// Exit after this many conversations have closed (0: serve until the timeout).
    #[arg(long, default_value_t = 1)]
    pub conversations: usize,
}

/// What the agent did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Conversations assigned to it, in order.
    pub assigned: Vec<u64>,
    /// Visitor messages it answered, in order.
    pub heard: Vec<String>,
    /// Conversations that closed while it served them.
    pub closed: Vec<u64>,
}

/// Serves conversations until enough have closed or the timeout passes (which is not
/// an error: the report says what happened).
pub fn run(args: &Args, out: &mut dyn Write) -> Result<Report, BoxError> {
    let token = args.connect.token("agent", "agent-1", &args.groups)?;
    let mut client = args.connect.connect(token)?;
    let me = client.welcome().user.clone();
    writeln!(
        out,
        "connected to {} as {me} (agent of {})",
        args.connect.addr,
        client.welcome().groups.join(", ")
    )?;
    let deadline = Instant::now() + args.connect.timeout();
    let mut report = Report::default();
    // Conversations served now → the last sequence number answered there.
    let mut serving: BTreeMap<u64, u64> = BTreeMap::new();
    while args.conversations == 0 || report.closed.len() < args.conversations {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            writeln!(out, "timed out")?;
            break;
        }
        let Some(incoming) = client.recv(left.min(Duration::from_secs(1)))? else {
            continue;
        };
        show(out, &me, &incoming.msg)?;
        match incoming.msg {
            Msg::Assigned(a) if a.agent == me => {
                report.assigned.push(a.conversation);
                // What the visitor wrote before we were assigned (at least the message
                // that opened the conversation) is only in the transcript.
                let waiting = unanswered(&mut client, a.conversation)?;
                let mut upto = a.seq;
                for (seq, body) in waiting {
                    writeln!(
                        out,
                        "[conversation {}] {}: {body}",
                        a.conversation, a.visitor
                    )?;
                    client.send_text(a.conversation, &format!("agent: {body}"))?;
                    report.heard.push(body);
                    upto = upto.max(seq);
                }
                serving.insert(a.conversation, upto);
            }
            // Someone else serves it now (a transfer, or our grace ran out).
            Msg::Assigned(a) => {
                serving.remove(&a.conversation);
            }
            Msg::Deliver(d) if d.sender_role == role::VISITOR => {
                // Answer each message once, even if the transcript already had it.
                if let Some(upto) = serving.get_mut(&d.conversation).filter(|u| d.seq > **u) {
                    *upto = d.seq;
                    client.send_text(d.conversation, &format!("agent: {}", d.body))?;
                    report.heard.push(d.body);
                }
            }
            Msg::Close(c) if serving.remove(&c.conversation).is_some() => {
                report.closed.push(c.conversation);
            }
            _ => {}
        }
    }
    client.close()?;
    Ok(report)
}

/// The visitor messages of `conversation` after the last message of an agent (or
/// bot), with their sequence numbers: what nobody has answered yet.
fn unanswered(client: &mut Client, conversation: u64) -> Result<Vec<(u64, String)>, BoxError> {
    let page = client.request(
        messages::History {
            limit: 100,
            conversation,
            before_seq: 0,
        },
        Duration::from_secs(10),
    )?;
    let Msg::HistoryPage(page) = page else {
        return Err(format!("expected a HistoryPage, got {:?}", page.kind()).into());
    };
    let mut waiting = Vec::new();
    for e in page.entries {
        if e.kind != Kind::Send.as_u8() {
            continue;
        }
        if e.sender_role == role::VISITOR {
            waiting.push((e.seq, e.body));
        } else {
            waiting.clear();
        }
    }
    Ok(waiting)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut stdout = std::io::stdout();
    match run(&args, &mut stdout) {
        Ok(report) => {
            let _ = writeln!(
                stdout,
                "served {} conversation(s), answered {} message(s)",
                report.closed.len(),
                report.heard.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("agent: {e}");
            ExitCode::FAILURE
        }
    }
}
