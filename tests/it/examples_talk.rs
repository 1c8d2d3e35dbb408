//! The `visitor` and `agent` examples talk to each other through an in-process server.
//!
//! The examples' code is compiled into this test as modules (`#[path]`), and each
//! example's `run` is called with arguments parsed by its own command line: the same
//! code `cargo run --example …` runs, without depending on example binaries being
//! built (cargo builds them for `cargo test`, but not for `cargo test --test it`)
//! or on where the target directory is.
// Both examples include `examples/common/mod.rs`, so it is compiled twice here.
#![allow(clippy::duplicate_mod)]

use crate::util;

#[path = "../../examples/agent.rs"]
#[allow(dead_code)]
mod agent;
#[path = "../../examples/visitor.rs"]
#[allow(dead_code)]
mod visitor;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::util::peer::Peer;
use clap::Parser;
use switchboard::Server;
use switchboard::protocol::Kind;
use switchboard::protocol::messages::{self, Msg};

/// Output shared between an example's thread and the test.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The command line `line` (fixed words) followed by `values` (addresses, paths,
/// tokens, messages: words that may hold spaces, in order).
fn command<'a>(line: &'a str, values: &[&'a str]) -> Vec<&'a str> {
    let mut args = util::words(line);
    args.extend(values);
    args
}

fn spawn_agent(line: &str, values: &[&str], out: Shared) -> JoinHandle<agent::Report> {
    let args = agent::Args::try_parse_from(command(line, values)).unwrap();
    std::thread::spawn(move || {
        let mut out = out;
        agent::run(&args, &mut out).unwrap_or_else(|e| panic!("agent failed: {e}"))
    })
}

fn spawn_visitor(line: &str, values: &[&str], out: Shared) -> JoinHandle<visitor::Report> {
    let args = visitor::Args::try_parse_from(command(line, values)).unwrap();
    std::thread::spawn(move || {
        let mut out = out;
        visitor::run(&args, &mut out).unwrap_or_else(|e| panic!("visitor failed: {e}"))
    })
}

const LINES: [&str; 3] = ["hello", "where is my order?", "thanks, bye"];

#[test]
fn examples_talk_with_tokens_minted_from_the_dev_secret() {
    // No [[auth.keys]]: the server makes and trusts <state_dir>/dev-secret, which the
    // examples mint their tokens from.
    let state = tempfile::tempdir().unwrap();
    let server = util::peer::service_server(|c| {
        c.auth.keys.clear();
        c.state_dir = state.path().to_path_buf();
    });
    let addr = server.addr().to_string();
    let secret = state.path().join("dev-secret");
    let secret = secret.to_str().unwrap();

    let v_out = Shared::default();
    let values = [&["--addr", &addr, "--secret-file", secret][..], &LINES].concat();
    let visitor = spawn_visitor("visitor --sub vera --timeout 15", &values, v_out.clone());
    // No agent yet: the visitor waits in the queue.
    assert!(
        util::wait_until(Duration::from_secs(5), || v_out
            .text()
            .contains("waiting in support at position 1")),
        "visitor output: {}",
        v_out.text()
    );
    let a_out = Shared::default();
    let agent = spawn_agent(
        "agent --sub alice --name Alice --groups support --timeout 15",
        &["--addr", &addr, "--secret-file", secret],
        a_out.clone(),
    );
    let v = visitor.join().unwrap();
    let a = agent.join().unwrap();
    let (v_text, a_text) = (v_out.text(), a_out.text());

    let replies: Vec<String> = LINES.iter().map(|l| format!("agent: {l}")).collect();
    assert_eq!(v.replies, replies, "visitor output:\n{v_text}");
    assert_eq!(v.positions, vec![1]);
    assert_eq!(v.agent, "alice");
    assert!(v.closed && v.answered && !v.timed_out, "{v:?}\n{v_text}");
    assert!(!v.rated, "no --rating, no rating: {v:?}");
    assert_ne!(v.conversation, 0);
    assert_eq!(a.heard, LINES.to_vec(), "agent output:\n{a_text}");
    assert_eq!(a.assigned, vec![v.conversation]);
    assert_eq!(a.closed, vec![v.conversation], "the agent saw the close");
    for line in LINES {
        assert!(
            v_text.contains(&format!("alice: agent: {line}")),
            "{v_text}"
        );
        assert!(a_text.contains(&format!("vera: {line}")), "{a_text}");
    }
    assert!(v_text.contains("is served by alice (Alice)"), "{v_text}");
    assert!(!v_text.contains("rated"), "{v_text}");
    assert!(a_text.contains("closed: the visitor is done"), "{a_text}");
    assert_eq!(a.reconnects, 0, "{a_text}");
}

#[test]
fn examples_talk_with_a_given_token_and_a_configured_key() {
    let server = util::peer::service_server(|_| {});
    let addr = server.addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("test.key");
    std::fs::write(&key_file, util::TEST_SECRET).unwrap();
    let key_file = key_file.to_str().unwrap();

    let a_out = Shared::default();
    let agent = spawn_agent(
        "agent --kid test --sub amy --groups sales --timeout 15",
        &["--addr", &addr, "--secret-file", key_file],
        a_out.clone(),
    );
    let token = util::token("vic", "visitor");
    let v_out = Shared::default();
    let visitor = spawn_visitor(
        "visitor --group sales --rating 4 --timeout 15",
        &["--addr", &addr, "--token", &token, "is this sales?"],
        v_out.clone(),
    );
    let v = visitor.join().unwrap();
    let a = agent.join().unwrap();
    assert_eq!(
        v.replies,
        vec!["agent: is this sales?".to_owned()],
        "{}",
        v_out.text()
    );
    assert_eq!(v.agent, "amy");
    assert!(v.closed && v.rated, "{v:?}");
    assert!(v_out.text().contains("rated 4"), "{}", v_out.text());
    assert_eq!(
        a.heard,
        vec!["is this sales?".to_owned()],
        "{}",
        a_out.text()
    );
}

#[test]
fn a_visitor_nobody_answered_does_not_rate() {
    // No agent: the visitor times out in the queue. Asked to rate 5, it closes the
    // conversation but rates nothing, and says so.
    let server = util::peer::service_server(|_| {});
    let addr = server.addr().to_string();
    let token = util::token("nora", "visitor");
    let v_out = Shared::default();
    let visitor = spawn_visitor(
        "visitor --rating 5 --timeout 1",
        &["--addr", &addr, "--token", &token, "anyone there?"],
        v_out.clone(),
    );
    let v = visitor.join().unwrap();
    let text = v_out.text();
    assert!(v.timed_out && v.closed, "{v:?}\n{text}");
    assert!(!v.answered && !v.rated && v.replies.is_empty(), "{v:?}");
    assert!(text.contains("not rated: no agent answered"), "{text}");
    // The transcript agrees: opened, closed, no rating.
    let mut nora = Peer::connect(server.addr(), &token, "nora");
    let kinds: Vec<u8> = nora
        .history(v.conversation)
        .entries
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&Kind::Close.as_u8()), "{kinds:?}");
    assert!(!kinds.contains(&Kind::Rate.as_u8()), "{kinds:?}");
}

/// Waits for the `Deliver` of `body` in `conversation` to `peer`. The bound is
/// generous: the agent may be in a back-off pause of a few seconds when it is due.
fn wait_reply(peer: &mut Peer, conversation: u64, body: &str) {
    peer.wait_for(
        &format!("Deliver {body:?}"),
        Duration::from_secs(30),
        |i| match &i.msg {
            Msg::Deliver(d) if d.conversation == conversation && d.body == body => Some(()),
            _ => None,
        },
    );
}

#[test]
fn the_agent_reconnects_and_resumes_across_a_daemon_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = util::test_config(dir.path());
    cfg.heartbeat.interval = Duration::from_secs(10);
    cfg.heartbeat.idle_timeout = Duration::from_secs(60);
    let key_file = dir.path().join("test.key");
    std::fs::write(&key_file, util::TEST_SECRET).unwrap();
    let key_file = key_file.to_str().unwrap().to_owned();

    let server = Server::start(&cfg).unwrap();
    let addr = server.client_addr();
    let addr_arg = addr.to_string();
    let a_out = Shared::default();
    let agent = spawn_agent(
        "agent --kid test --sub alice --groups support --conversations 1 --timeout 60",
        &["--addr", &addr_arg, "--secret-file", &key_file],
        a_out.clone(),
    );
    let vera_token = util::token("vera", "visitor");
    let mut vera = Peer::connect(addr, &vera_token, "vera");
    let conv = vera.send_accepted(0, 1, "hello").conversation;
    wait_reply(&mut vera, conv, "agent: hello");

    // Restart: the daemon says Bye (501) to both and stops; the agent keeps trying.
    let report = server.shutdown();
    assert!(report.clean, "{report:?}");
    drop(vera);
    // Let the agent's back-off grow (the fourth pause is 0.8 s or more), so that the
    // first message after the restart most likely reaches the daemon while the agent
    // is still away and comes to it as a replay. Either way it must be answered once.
    assert!(
        util::wait_until(Duration::from_secs(30), || a_out
            .text()
            .matches("retrying in")
            .count()
            >= 4),
        "agent output:\n{}",
        a_out.text()
    );
    // The same port, the same state directory.
    cfg.listeners.client.addr = addr;
    let server = Server::start(&cfg).unwrap_or_else(|e| panic!("restart on {addr}: {e}"));
    let mut vera = Peer::connect(addr, &vera_token, "vera");
    vera.send_accepted(conv, 2, "while you were away");
    wait_reply(&mut vera, conv, "agent: while you were away");
    assert!(
        util::wait_until(Duration::from_secs(30), || a_out
            .text()
            .contains("reconnected as alice")),
        "agent output:\n{}",
        a_out.text()
    );
    vera.send_accepted(conv, 3, "still there?");
    wait_reply(&mut vera, conv, "agent: still there?");
    vera.post(messages::Close {
        conversation: conv,
        seq: 0,
        reason: "thanks".into(),
    });
    vera.wait_event("Close", |m| match m {
        Msg::Close(c) if c.conversation == conv => Some(()),
        _ => None,
    });

    let a = agent.join().unwrap();
    let a_text = a_out.text();
    assert_eq!(
        a.heard,
        ["hello", "while you were away", "still there?"],
        "each visitor message answered once:\n{a_text}"
    );
    assert_eq!(a.assigned, [conv], "{a_text}");
    assert_eq!(a.closed, [conv], "{a_text}");
    assert_eq!(a.reconnects, 1, "{a_text}");
    assert_eq!(
        a.resumed,
        [conv],
        "the daemon resumed the conversation:\n{a_text}"
    );
    assert!(a.caught_up.is_empty() && !a.timed_out, "{a:?}");
    assert!(a_text.contains("[bye 501 shutting_down]"), "{a_text}");
    // The transcript has each reply exactly once.
    let replies: Vec<String> = vera
        .history(conv)
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Send.as_u8() && e.body.starts_with("agent: "))
        .map(|e| e.body.clone())
        .collect();
    assert_eq!(
        replies,
        [
            "agent: hello",
            "agent: while you were away",
            "agent: still there?"
        ]
    );
    drop(vera);
    assert!(server.shutdown().clean);
}

#[test]
fn examples_refuse_to_mint_without_a_usable_secret() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("dev-secret");
    let args = visitor::Args::try_parse_from([
        "visitor",
        "--secret-file",
        missing.to_str().unwrap(),
        "hi",
    ])
    .unwrap();
    let e = visitor::run(&args, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("start the daemon first"), "{e}");
    assert!(!missing.exists(), "minting must not create a secret");

    let other = dir.path().join("some.key");
    std::fs::write(&other, util::TEST_SECRET).unwrap();
    let args =
        agent::Args::try_parse_from(["agent", "--secret-file", other.to_str().unwrap()]).unwrap();
    let e = agent::run(&args, &mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("--kid"), "{e}");

    // Bad ratings are refused by the command line.
    assert!(visitor::Args::try_parse_from(["visitor", "--rating", "6", "hi"]).is_err());
}
