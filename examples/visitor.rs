//! A website visitor: opens a conversation, says a few lines, prints the replies,
//! then closes the conversation and, with `--rating`, rates it.
//!
//! ```text
//! cargo run --release --example visitor -- --sub vera "hello" "where is my order?"
//! echo "hello" | cargo run --release --example visitor -- --sub vera --rating 4
//! ```
//!
//! It connects to a running daemon (`--addr`, default `127.0.0.1:7700`) with
//! `--token`, or with a token it mints from the daemon's development secret
//! (`--secret-file`, default `./data/dev-secret`). The lines come from the arguments,
//! or, when there are none, from stdin (one message per line, as typed). Each line is
//! sent once the previous one has been answered (the first waits in the queue until an
//! agent is assigned). Everything that arrives is printed. After the last line is
//! answered, or after `--timeout` seconds, it closes the conversation and exits.
//! With `--rating N` it rates the conversation N (1 to 5) after closing it — but only
//! if an agent (or bot) answered: a chat nobody answered is not rated.

#[path = "common/mod.rs"]
mod common;

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use clap::Parser;
use switchboard::client::Client;
use switchboard::protocol::Kind;
use switchboard::protocol::messages::{self, Msg, role};

use common::{BoxError, ConnectArgs, show};

/// Command line of the visitor example.
#[derive(Debug, Clone, Parser)]
#[command(
    about = "A Switchboard visitor that says a few lines, then closes (and rates, with --rating)"
)]
pub struct Args {
    /// Where to connect and who to be.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Group to queue in (default: the token's first group, else the daemon's
    /// `routing.default_group`).
    #[arg(long, default_value = "")]
    pub group: String,
    /// Rate the conversation with this score (1 to 5) after closing it, if an agent
    /// answered; without it the conversation is not rated.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub rating: Option<u8>,
    /// The messages to send; none: read them from stdin, one per line.
    pub lines: Vec<String>,
}

/// What the visitor saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The conversation it opened (0: none).
    pub conversation: u64,
    /// Queue positions it was told, in order.
    pub positions: Vec<u32>,
    /// The agent serving it last.
    pub agent: String,
    /// Messages from the agent (or bot, or the FAQ auto-reply), in order.
    pub replies: Vec<String>,
    /// Whether an agent or bot (not only an automatic reply) answered.
    pub answered: bool,
    /// Whether the conversation closed.
    pub closed: bool,
    /// Whether the rating was stored.
    pub rated: bool,
    /// Whether `--timeout` cut the talk short.
    pub timed_out: bool,
}

/// Where the lines come from.
enum Lines {
    Given(VecDeque<String>),
    Stdin(Receiver<String>),
}

impl Lines {
    /// The next line: `Ok(Some)`, `Ok(None)` when there are no more, `Err(())` when
    /// one may still come (stdin not at its end).
    fn next(&mut self) -> Result<Option<String>, ()> {
        match self {
            Lines::Given(q) => Ok(q.pop_front()),
            Lines::Stdin(rx) => match rx.try_recv() {
                Ok(line) => Ok(Some(line)),
                Err(TryRecvError::Empty) => Err(()),
                Err(TryRecvError::Disconnected) => Ok(None),
            },
        }
    }
}

/// Opens a conversation, talks, closes, and rates when asked to and an agent
/// answered; a timeout cuts the talk short but still closes what was opened.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<Report, BoxError> {
    let token = args.connect.token("visitor", "visitor-1", &[])?;
    let mut lines = if args.lines.is_empty() {
        Lines::Stdin(stdin_lines())
    } else {
        Lines::Given(args.lines.iter().cloned().collect())
    };
    let mut client = args.connect.connect(token)?;
    let me = client.welcome().user.clone();
    writeln!(out, "connected to {} as {me} (visitor)", args.connect.addr)?;
    let deadline = Instant::now() + args.connect.timeout();
    let mut report = Report::default();
    // Sent lines not answered yet.
    let mut unanswered = 0usize;
    loop {
        if unanswered == 0 {
            match lines.next() {
                Ok(Some(line)) if line.trim().is_empty() => continue,
                Ok(Some(line)) => {
                    writeln!(out, "> {line}")?;
                    if report.conversation == 0 {
                        report.conversation = open(&mut client, &args.group, &line)?;
                    } else {
                        client.send_text(report.conversation, &line)?;
                    }
                    unanswered += 1;
                    continue;
                }
                Ok(None) => break,
                Err(()) => {}
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            writeln!(out, "timed out")?;
            report.timed_out = true;
            break;
        }
        let Some(incoming) = client.recv(left.min(Duration::from_millis(100)))? else {
            continue;
        };
        show(out, &me, &incoming.msg)?;
        match incoming.msg {
            Msg::Queued(q) if q.conversation == report.conversation => {
                report.positions.push(q.position);
            }
            Msg::Assigned(a) if a.conversation == report.conversation => report.agent = a.agent,
            Msg::Deliver(d)
                if d.conversation == report.conversation && d.sender_role != role::VISITOR =>
            {
                report.answered |= matches!(d.sender_role, role::AGENT | role::BOT);
                report.replies.push(d.body);
                unanswered = unanswered.saturating_sub(1);
            }
            Msg::Close(c) if c.conversation == report.conversation => {
                report.closed = true;
                break;
            }
            Msg::Error(e) => return Err(format!("server refused a message: {e:?}").into()),
            _ => {}
        }
    }
    if report.conversation != 0 {
        close(&mut client, &mut report, out, deadline)?;
        match args.rating {
            Some(score) if report.answered => rate(&mut client, score, &mut report, out)?,
            Some(_) => writeln!(
                out,
                "[conversation {}] not rated: no agent answered",
                report.conversation
            )?,
            None => {}
        }
    }
    client.close()?;
    Ok(report)
}

/// Sends the first line with conversation 0, which opens a conversation; returns its id.
fn open(client: &mut Client, group: &str, line: &str) -> Result<u64, BoxError> {
    let reply = client.request(
        messages::Send {
            content_type: messages::content::TEXT,
            conversation: 0,
            client_msg_id: 1,
            group: group.to_owned(),
            body: line.to_owned(),
        },
        Duration::from_secs(10),
    )?;
    match reply {
        Msg::Accepted(a) => Ok(a.conversation),
        other => Err(format!("expected Accepted, got {:?}", other.kind()).into()),
    }
}

/// Closes the conversation (unless the agent did) and waits for the close.
fn close(
    client: &mut Client,
    report: &mut Report,
    out: &mut dyn Write,
    deadline: Instant,
) -> Result<(), BoxError> {
    let conversation = report.conversation;
    if report.closed {
        return Ok(());
    }
    client.post(messages::Close {
        conversation,
        seq: 0,
        reason: "the visitor is done".into(),
    })?;
    // Bounded even after the talk's timeout: the close is one round trip.
    let deadline = deadline.max(Instant::now() + Duration::from_secs(5));
    while !report.closed {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("the conversation did not close in time".into());
        }
        let Some(incoming) = client.recv(left)? else {
            continue;
        };
        show(out, "", &incoming.msg)?;
        match incoming.msg {
            Msg::Close(c) if c.conversation == conversation => report.closed = true,
            Msg::Error(e) => return Err(format!("close refused: {e:?}").into()),
            _ => {}
        }
    }
    Ok(())
}

/// Rates the closed conversation and checks the rating is in the transcript.
fn rate(
    client: &mut Client,
    score: u8,
    report: &mut Report,
    out: &mut dyn Write,
) -> Result<(), BoxError> {
    let conversation = report.conversation;
    let rate = client.post(messages::Rate {
        score,
        conversation,
        comment: String::new(),
    })?;
    // `Rate` has no reply; the transcript (same conversation, so asked after the
    // rating was handled) shows it was stored.
    let page = client.request(
        messages::History {
            limit: 1,
            conversation,
            before_seq: 0,
        },
        Duration::from_secs(10),
    )?;
    while let Some(incoming) = client.recv(Duration::ZERO)? {
        if incoming.request_id == rate {
            return Err(format!("rating refused: {:?}", incoming.msg).into());
        }
    }
    if let Msg::HistoryPage(p) = page {
        report.rated = p
            .entries
            .last()
            .is_some_and(|e| e.kind == Kind::Rate.as_u8() && e.content_type == score);
    }
    if report.rated {
        writeln!(out, "[conversation {conversation}] rated {score}")?;
    }
    Ok(())
}

/// Lines of stdin, read by a thread as they are typed.
fn stdin_lines() -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut stdout = std::io::stdout();
    match run(&args, &mut stdout) {
        Ok(report) if report.timed_out => {
            eprintln!("visitor: timed out before every line was answered");
            ExitCode::FAILURE
        }
        Ok(report) if args.rating.is_some() && report.answered && !report.rated => {
            eprintln!("visitor: the rating was not stored");
            ExitCode::FAILURE
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("visitor: {e}");
            ExitCode::FAILURE
        }
    }
}
