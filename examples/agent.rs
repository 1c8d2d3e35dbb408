//! A support agent that answers every visitor message with `agent: <text>`.
//!
//! ```text
//! cargo run --release --example agent -- --sub alice --groups support
//! ```
//!
//! It connects to a running daemon (`--addr`, default `127.0.0.1:7700`) with
//! `--token`, or with a token it mints from the daemon's development secret
//! (`--secret-file`, default `./data/dev-secret`), waits for conversations to be
//! assigned to it, prints what arrives, and echoes each visitor message. It exits
//! after `--conversations` conversations have closed (default 1; 0: never) or after
//! `--timeout` seconds.
//!
//! When the connection is lost — the daemon restarts (it says `Bye`, code 501), the
//! network drops, the server goes silent — it reconnects with back-off (the SDK's
//! [`ReconnectPolicy`]: 200 ms doubling to 5 s, jittered) until `--timeout`, and
//! resumes where it was (PROTOCOL.md section 10): the SDK's `Hello.resume` cursors
//! make the server replay what it missed in its conversations, which it answers like
//! live traffic; where the server cannot replay (`recovered = false`) it reads the
//! transcript with `History`; and replies the server had not confirmed (`Accepted`)
//! are sent again with the same `client_msg_id`, which the server stores once. A
//! first connection that fails, or a refusal that retrying cannot fix (a rejected
//! token), ends it with an error.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use switchboard::client::{Client, ClientError, Incoming, ReconnectPolicy};
use switchboard::protocol::messages::{self, Msg, role};
use switchboard::protocol::{ErrorCode, Kind};

use common::{BoxError, ConnectArgs, code_name, detail, show};

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
    /// Times it lost the connection and got it back.
    pub reconnects: usize,
    /// Conversations it served that the server resumed with a replay after a
    /// reconnect (`Welcome.resumed[].recovered`), once per reconnect.
    pub resumed: Vec<u64>,
    /// Conversations it served that the server could not replay after a reconnect,
    /// caught up from the transcript instead.
    pub caught_up: Vec<u64>,
    /// Whether `--timeout` ended it.
    pub timed_out: bool,
}

/// Why serving was interrupted.
enum Interrupt {
    /// The connection is gone, but reconnecting can help.
    Lost(String),
    /// Reconnecting cannot help (or the output failed).
    Fatal(BoxError),
}

impl From<ClientError> for Interrupt {
    fn from(e: ClientError) -> Self {
        if e.is_retryable() {
            Interrupt::Lost(e.to_string())
        } else {
            Interrupt::Fatal(e.into())
        }
    }
}

impl From<std::io::Error> for Interrupt {
    fn from(e: std::io::Error) -> Self {
        Interrupt::Fatal(e.into())
    }
}

/// Serves conversations until enough have closed or the timeout passes (which is not
/// an error: the report says what happened). Connection losses are survived.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<Report, BoxError> {
    let token = args.connect.token("agent", "agent-1", &args.groups)?;
    let mut config = args.connect.client_config(token);
    // One attempt per `Client::reconnect`: `Agent::reconnect` paces the retries itself,
    // so its back-off grows to the ceiling and stops at `--timeout`.
    config.reconnect.max_attempts = 1;
    let mut client = Client::connect(config)?;
    let mut agent = Agent {
        me: client.welcome().user.clone(),
        report: Report::default(),
        serving: BTreeMap::new(),
        outbox: Outbox::default(),
    };
    writeln!(
        out,
        "connected to {} as {} (agent of {})",
        args.connect.addr,
        agent.me,
        client.welcome().groups.join(", ")
    )?;
    let deadline = Instant::now() + args.connect.timeout();
    // Why the connection was lost, until it is back.
    let mut lost: Option<String> = None;
    while args.conversations == 0 || agent.report.closed.len() < args.conversations {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            writeln!(out, "timed out")?;
            agent.report.timed_out = true;
            break;
        }
        let step = match lost.take() {
            None => agent.step(&mut client, left.min(Duration::from_secs(1)), out),
            Some(why) => {
                writeln!(out, "connection lost: {why}; reconnecting")?;
                if !agent.reconnect(&mut client, args, deadline, out)? {
                    writeln!(out, "timed out while reconnecting")?;
                    agent.report.timed_out = true;
                    return Ok(agent.report);
                }
                agent.resume(&mut client, out)
            }
        };
        match step {
            Ok(()) => {}
            Err(Interrupt::Lost(why)) => lost = Some(why),
            Err(Interrupt::Fatal(e)) => return Err(e),
        }
    }
    // Saying goodbye is a courtesy: the work is done even if it fails.
    if let Err(e) = client.close() {
        writeln!(out, "closing: {e}")?;
    }
    Ok(agent.report)
}

/// A conversation the agent serves.
struct Serving {
    /// The visitor's user id.
    visitor: String,
    /// The last visitor message answered (its sequence number).
    answered: u64,
}

/// The agent's state across connections.
struct Agent {
    /// Its user id.
    me: String,
    report: Report,
    /// The conversations it serves now, by id.
    serving: BTreeMap<u64, Serving>,
    outbox: Outbox,
}

impl Agent {
    /// Handles what arrives within `wait`.
    fn step(
        &mut self,
        client: &mut Client,
        wait: Duration,
        out: &mut dyn Write,
    ) -> Result<(), Interrupt> {
        self.outbox.resend(client, false)?;
        let Some(incoming) = client.recv(wait)? else {
            return Ok(());
        };
        show(out, &self.me, &incoming.msg)?;
        if let Some(refused) = self.outbox.settle(&incoming) {
            writeln!(out, "reply not stored: {refused}")?;
        }
        match incoming.msg {
            // A restart says 501 `shutting_down` (retryable): come back.
            Msg::Bye(b) => {
                let retry = ErrorCode::from_u16(b.code).is_some_and(ErrorCode::retryable);
                let why = format!(
                    "the server said goodbye ({}){}",
                    code_name(b.code),
                    detail(&b.message)
                );
                return Err(interrupt(retry, why));
            }
            Msg::Error(e)
                if ErrorCode::from_u16(e.code).is_some_and(ErrorCode::closes_connection) =>
            {
                let why = format!(
                    "the server closed the session ({}){}",
                    code_name(e.code),
                    detail(&e.message)
                );
                return Err(interrupt(e.retryable, why));
            }
            Msg::Assigned(a) if a.agent == self.me => {
                self.report.assigned.push(a.conversation);
                self.serving.entry(a.conversation).or_insert(Serving {
                    visitor: a.visitor,
                    answered: 0,
                });
                // What the visitor wrote before we were assigned (at least the message
                // that opened the conversation) is only in the transcript.
                self.catch_up(client, a.conversation, out)?;
            }
            // Someone else serves it now (a transfer, or our grace ran out).
            Msg::Assigned(a) => {
                self.serving.remove(&a.conversation);
            }
            Msg::Deliver(d) if d.sender_role == role::VISITOR => {
                // Answer each message once, also when it comes again (a replay after
                // a reconnect, or one the transcript already showed).
                if let Some(s) = self.serving.get_mut(&d.conversation)
                    && d.seq > s.answered
                {
                    s.answered = d.seq;
                    self.report.heard.push(d.body.clone());
                    self.outbox.send(client, d.conversation, &d.body)?;
                }
            }
            Msg::Close(c) if self.serving.remove(&c.conversation).is_some() => {
                self.report.closed.push(c.conversation);
            }
            _ => {}
        }
        Ok(())
    }

    /// Answers the visitor messages of `conversation` that nobody has answered yet:
    /// those after the last agent or bot message in the transcript and after the
    /// last one this agent answered.
    fn catch_up(
        &mut self,
        client: &mut Client,
        conversation: u64,
        out: &mut dyn Write,
    ) -> Result<(), Interrupt> {
        for (seq, body) in unanswered(client, conversation)? {
            let Some(s) = self.serving.get_mut(&conversation) else {
                return Ok(());
            };
            if seq <= s.answered {
                continue;
            }
            s.answered = seq;
            writeln!(out, "[conversation {conversation}] {}: {body}", s.visitor)?;
            self.report.heard.push(body.clone());
            self.outbox.send(client, conversation, &body)?;
        }
        Ok(())
    }

    /// Gets a connection back, one attempt at a time with growing pauses (the SDK's
    /// default [`ReconnectPolicy`]), until `deadline` (`Ok(false)` when it passed).
    /// A refusal that retrying cannot fix (a token the server rejects) is an error.
    fn reconnect(
        &mut self,
        client: &mut Client,
        args: &Args,
        deadline: Instant,
        out: &mut dyn Write,
    ) -> Result<bool, BoxError> {
        let policy = ReconnectPolicy::default();
        for retry in 0u32.. {
            // A token it minted itself is minted afresh, so a long outage does not
            // leave it with an expired one (a given `--token` is what it is).
            if args.connect.token.is_none() {
                client.set_token(args.connect.token("agent", "agent-1", &args.groups)?);
            }
            // After a `Bye` the SDK waits a first back-off step before its attempt,
            // so a restarting daemon is not hit at once.
            let e = match client.reconnect() {
                Ok(_) => return Ok(true),
                Err(ClientError::ReconnectFailed { last, .. }) => *last,
                Err(e) => e,
            };
            if !e.is_retryable() {
                return Err(format!("reconnect refused: {e}").into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let pause = policy.jittered_backoff(retry).min(left);
            writeln!(out, "daemon unreachable ({e}); retrying in {pause:.1?}")?;
            std::thread::sleep(pause);
        }
        Ok(false)
    }

    /// Picks up where the last connection left off: sends the unconfirmed replies
    /// again, and reads the transcript of every conversation the server could not
    /// replay. (Those it replays arrive as `Deliver`s flagged `REPLAY`, answered like
    /// live ones.)
    fn resume(&mut self, client: &mut Client, out: &mut dyn Write) -> Result<(), Interrupt> {
        self.report.reconnects += 1;
        writeln!(out, "reconnected as {}", client.welcome().user)?;
        self.outbox.resend(client, true)?;
        let resumed = client.welcome().resumed.clone();
        for r in resumed {
            if !self.serving.contains_key(&r.conversation) {
                continue;
            }
            if r.recovered {
                self.report.resumed.push(r.conversation);
            } else {
                writeln!(
                    out,
                    "[conversation {}] not replayed; reading the transcript",
                    r.conversation
                )?;
                self.report.caught_up.push(r.conversation);
                self.catch_up(client, r.conversation, out)?;
            }
        }
        Ok(())
    }
}

fn interrupt(retryable: bool, why: String) -> Interrupt {
    if retryable {
        Interrupt::Lost(why)
    } else {
        Interrupt::Fatal(why.into())
    }
}

/// Replies sent and not yet confirmed by `Accepted`. After a reconnect, or a
/// retryable refusal (503 while the daemon's disk fails), they are sent again
/// unchanged: the server stores a `Send` once per `client_msg_id` (PROTOCOL.md section
/// 10.3), so a reply that did arrive is not repeated.
#[derive(Default)]
struct Outbox {
    /// The last `client_msg_id` used.
    last_id: u64,
    /// Unconfirmed replies by `client_msg_id`.
    unconfirmed: BTreeMap<u64, messages::Send>,
    /// Request ids on the current connection still awaiting an answer → `client_msg_id`.
    requests: BTreeMap<u32, u64>,
    /// When to send again the replies refused with a retryable error.
    retry_at: Option<Instant>,
}

impl Outbox {
    /// Pause before sending again a reply the server refused with a retryable error.
    const RETRY_PAUSE: Duration = Duration::from_secs(1);

    /// Answers `heard` in `conversation` with `agent: <heard>`. The reply stays
    /// unconfirmed until its `Accepted` comes, also when sending fails because the
    /// connection is gone.
    fn send(
        &mut self,
        client: &mut Client,
        conversation: u64,
        heard: &str,
    ) -> Result<(), ClientError> {
        // Unique across runs of the agent: microseconds since the epoch, counting up.
        self.last_id = (self.last_id + 1).max(unix_micros());
        let send = messages::Send {
            content_type: messages::content::TEXT,
            conversation,
            client_msg_id: self.last_id,
            group: String::new(),
            body: reply_to(heard),
        };
        self.unconfirmed.insert(self.last_id, send);
        self.post(client, self.last_id)
    }

    /// Posts the unconfirmed reply `id`; one the server would refuse as malformed is
    /// dropped.
    fn post(&mut self, client: &mut Client, id: u64) -> Result<(), ClientError> {
        let Some(send) = self.unconfirmed.get(&id) else {
            return Ok(());
        };
        match client.post(send.clone()) {
            Ok(request) => {
                self.requests.insert(request, id);
                Ok(())
            }
            Err(e) => {
                if !e.is_retryable() {
                    self.unconfirmed.remove(&id);
                }
                Err(e)
            }
        }
    }

    /// Sends again every unconfirmed reply not awaiting an answer: all of them after
    /// a reconnect (the old connection's requests are void), those refused with a
    /// retryable error once their pause is over.
    fn resend(&mut self, client: &mut Client, reconnected: bool) -> Result<(), ClientError> {
        if reconnected {
            self.requests.clear();
        } else if self.retry_at.is_none_or(|t| Instant::now() < t) {
            return Ok(());
        }
        self.retry_at = None;
        let waiting: Vec<u64> = self.requests.values().copied().collect();
        let due: Vec<u64> = (self.unconfirmed.keys().copied())
            .filter(|id| !waiting.contains(id))
            .collect();
        for id in due {
            self.post(client, id)?;
        }
        Ok(())
    }

    /// Notes the server's answer to a reply: stored (`Accepted`), refused for good
    /// (`Error`, e.g. 409 when the conversation closed meanwhile: dropped, and said),
    /// or refused for now (a retryable `Error`: sent again after a pause).
    fn settle(&mut self, incoming: &Incoming) -> Option<String> {
        let id = *self.requests.get(&incoming.request_id)?;
        let refused = match &incoming.msg {
            Msg::Accepted(_) => None,
            Msg::Error(e) => Some(e),
            _ => return None,
        };
        self.requests.remove(&incoming.request_id);
        match refused {
            None => {
                self.unconfirmed.remove(&id);
                None
            }
            Some(e) if e.retryable => {
                self.retry_at = Some(Instant::now() + Self::RETRY_PAUSE);
                Some(format!(
                    "error {} {}; sending it again shortly",
                    e.code, e.message
                ))
            }
            Some(e) => {
                self.unconfirmed.remove(&id);
                Some(format!("error {} {}; dropped", e.code, e.message))
            }
        }
    }
}

/// `agent: <heard>`, cut (at a character boundary) to the protocol's largest body.
fn reply_to(heard: &str) -> String {
    let mut reply = format!("agent: {heard}");
    let mut end = reply.len().min(messages::MAX_BODY);
    while !reply.is_char_boundary(end) {
        end -= 1;
    }
    reply.truncate(end);
    reply
}

/// The visitor messages of `conversation` after the last message of an agent (or
/// bot), with their sequence numbers: what nobody has answered yet.
fn unanswered(client: &mut Client, conversation: u64) -> Result<Vec<(u64, String)>, ClientError> {
    let page = client.request(
        messages::History {
            limit: 100,
            conversation,
            before_seq: 0,
        },
        Duration::from_secs(10),
    )?;
    let Msg::HistoryPage(page) = page else {
        return Err(ClientError::UnexpectedReply {
            request_id: 0,
            got: page.kind(),
        });
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

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut stdout = std::io::stdout();
    match run(&args, &mut stdout) {
        Ok(report) => {
            let _ = writeln!(
                stdout,
                "served {} conversation(s), answered {} message(s), reconnected {} time(s)",
                report.closed.len(),
                report.heard.len(),
                report.reconnects
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("agent: {e}");
            ExitCode::FAILURE
        }
    }
}
