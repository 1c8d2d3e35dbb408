//! Offline notifications and reply digests, end to end with real parts: the daemon
//! binary mails a real SMTP server (PyPI `aiosmtpd`, `tests/mail/smtpd.py`, on a free
//! loopback port; it writes each message it accepts as a JSON line).
//!
//! No agent is online: a visitor writes, and the group's address gets the offline
//! notification with the text (the server answers the first message 451, so the
//! retry runs too); two more messages go together, one interval later. The visitor gives an email address (a PROFILE event)
//! and leaves; an agent comes, gets the conversation and writes 3 messages: exactly
//! one digest with all 3 reaches the visitor's address. After a restart with a long
//! interval the agent writes 3 more, the daemon is killed (SIGKILL) before their digest
//! is due and started again on the same state: that digest goes from the new daemon
//! (at least once), and the first one is not sent again.
//!
//! A mail the server refuses with 550 is dropped after three attempts (logged and
//! counted), and mail goes on.
//!
//! Needs Python with `aiosmtpd`: `$SWITCHBOARD_MAIL_PYTHON`, or else `python3`. Without
//! it the test prints "skipped: ..." and passes, unless `SWITCHBOARD_REQUIRE_MAIL=1`
//! (CI sets it, `.ci/run` installs the package in a venv).

use crate::util;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::util::peer::Peer;
use crate::util::{Daemon, daemon_toml};
use switchboard::protocol::messages::{self, Msg};

/// Where offline notifications of the default group go.
pub(super) const DESK: &str = "desk@example.com";
/// The visitor's address, from its profile.
const VERA: &str = "vera@example.com";
/// Longest wait for a mail (generous: a loaded machine; never asserted as a bound).
pub(super) const MAIL_WAIT: Duration = Duration::from_secs(30);

/// The Python to run, if it has `aiosmtpd`; panics when it is required.
pub(super) fn python() -> Option<String> {
    util::python_with(
        "aiosmtpd",
        "SWITCHBOARD_MAIL_PYTHON",
        "SWITCHBOARD_REQUIRE_MAIL",
    )
}

/// The SMTP server, killed on drop.
pub(super) struct Smtpd {
    child: Child,
    /// Its loopback port.
    pub(super) port: u16,
    out: PathBuf,
}

impl Smtpd {
    /// Answers the first `fail_first` messages with `fail_code` (SMTP reply code).
    fn start(py: &str, out: &Path, fail_first: u32, fail_code: u16) -> Self {
        Self::start_with(
            py,
            out,
            &[
                "--fail-first".as_ref(),
                fail_first.to_string().as_ref(),
                "--fail-code".as_ref(),
                fail_code.to_string().as_ref(),
            ],
        )
    }

    /// With further options of `smtpd.py` (TLS, AUTH).
    pub(super) fn start_with(py: &str, out: &Path, args: &[&std::ffi::OsStr]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mail/smtpd.py");
        let (child, port) = util::spawn_listening(
            Command::new(py)
                .arg(script)
                .arg("--out")
                .arg(out)
                .args(args),
            "smtpd",
        );
        Self {
            child,
            port,
            out: out.to_owned(),
        }
    }

    /// Every message received so far (whole lines only).
    pub(super) fn received(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The messages to `to`.
    fn to(&self, to: &str) -> Vec<serde_json::Value> {
        self.received()
            .into_iter()
            .filter(|m| {
                m["to"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|t| t == to))
            })
            .collect()
    }

    /// Waits until a message to `to` whose body holds every one of `texts` arrived;
    /// all such messages.
    pub(super) fn wait_for(&self, to: &str, texts: &[&str]) -> Vec<serde_json::Value> {
        let has = |m: &serde_json::Value| {
            let body = m["body"].as_str().unwrap_or_default();
            texts.iter().all(|t| body.contains(t))
        };
        let arrived = util::wait_until(MAIL_WAIT, || self.to(to).iter().any(has));
        assert!(
            arrived,
            "no mail to {to} with {texts:?}; received: {:#?}",
            self.received()
        );
        self.to(to).into_iter().filter(has).collect()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[email]` to the server at 127.0.0.1:`port`, plain (`tls = "none"`).
pub(super) fn config(state_dir: &Path, port: u16) -> String {
    format!(
        "{}[email]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"Support <support@example.com>\"\nnotify_to = \"{DESK}\"\n\
         digest_interval = \"3s\"\ntimeout = \"5s\"\nmax_backoff = \"1s\"\n\
         chat_url = \"https://support.example.com/c/{{conversation}}\"\n",
        daemon_toml(state_dir)
    )
}

/// The visitor's profile: its email address (content type 6, PROFILE).
fn profile(conversation: u64, email: &str) -> messages::Send {
    messages::Send {
        conversation,
        client_msg_id: 100,
        content_type: messages::content::PROFILE,
        group: String::new(),
        body: format!(r#"{{"name":"Vera","email":"{email}"}}"#),
    }
}

/// The body of a received mail.
fn body(m: &serde_json::Value) -> &str {
    m["body"].as_str().unwrap_or_default()
}

#[test]
fn offline_messages_notify_the_group_address_at_once_then_gathered() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The first message is answered 451: the notification goes on the retry.
    let smtpd = Smtpd::start(&py, &dir.path().join("mail.jsonl"), 1, 451);
    let config_path = dir.path().join("switchboard.toml");
    std::fs::write(&config_path, config(&dir.path().join("state"), smtpd.port)).unwrap();
    let daemon = Daemon::start(&config_path, &[]);
    let addr = daemon.client_addr();

    let mut vera = Peer::connect(addr, &util::token("vera", "visitor"), "vera");
    let conv = vera.send_accepted(0, 1, "Is anyone there?").conversation;
    let first = smtpd.wait_for(DESK, &["Is anyone there?"]);
    assert_eq!(first.len(), 1);
    // Two more (sent together) while still nobody is online: they go in one more
    // mail, `digest_interval` after the first.
    let two = vera.send_with_id(conv, 2, "I need an invoice.");
    let three = vera.send_with_id(conv, 3, "For order 42.");
    for rid in [two, three] {
        vera.reply_to(rid, |m| matches!(m, Msg::Accepted(_)).then_some(()));
    }
    let gathered = smtpd.wait_for(DESK, &["I need an invoice.", "For order 42."]);
    assert_eq!(gathered.len(), 1, "{gathered:#?}");
    assert!(!body(&gathered[0]).contains("Is anyone there?"));
    assert_eq!(smtpd.to(DESK).len(), 2, "{:#?}", smtpd.received());
    // The server writes a message down before it answers 250: the count follows.
    let metrics = metrics_with(
        &daemon,
        "switchboard_email_sent_total{kind=\"offline\"} 2\n",
    );
    assert!(
        metrics.contains("switchboard_email_failures_total 1\n"),
        "the 451: {metrics}"
    );
}

/// Waits until the daemon's `/metrics` has `line`; the whole text.
pub(super) fn metrics_with(daemon: &Daemon, line: &str) -> String {
    let admin = daemon.admin_addr().unwrap();
    let mut metrics = String::new();
    let found = util::wait_until(MAIL_WAIT, || {
        metrics = util::http::get(admin, "/metrics").body;
        metrics.contains(line)
    });
    assert!(found, "{line} in {metrics}");
    metrics
}

#[test]
fn a_mail_refused_for_good_is_dropped_after_three_attempts() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&py, &dir.path().join("mail.jsonl"), 3, 550);
    let config_path = dir.path().join("switchboard.toml");
    std::fs::write(&config_path, config(&dir.path().join("state"), smtpd.port)).unwrap();
    let daemon = Daemon::start(&config_path, &[]);
    let addr = daemon.client_addr();
    let mut vera = Peer::connect(addr, &util::token("vera", "visitor"), "vera");
    vera.send_accepted(0, 1, "Refused three times.");
    metrics_with(
        &daemon,
        "switchboard_email_dropped_total{reason=\"rejected\"} 1\n",
    );
    let m = metrics_with(&daemon, "switchboard_email_pending 0\n");
    assert!(m.contains("switchboard_email_failures_total 3\n"), "{m}");
    let logged = daemon.log_lines();
    assert!(
        logged
            .iter()
            .any(|l| l.contains("refused the mail for good")),
        "{logged:#?}"
    );
    // The server takes mail again: another visitor's notification goes; the dropped
    // one never does.
    let mut lee = Peer::connect(addr, &util::token("lee", "visitor"), "lee");
    lee.send_accepted(0, 1, "Second try.");
    smtpd.wait_for(DESK, &["Second try."]);
    assert_eq!(smtpd.received().len(), 1, "{:#?}", smtpd.received());
}

#[test]
fn offline_notification_then_one_digest_and_one_more_across_a_kill() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let smtpd = Smtpd::start(&py, &dir.path().join("mail.jsonl"), 1, 451);
    let config_path = dir.path().join("switchboard.toml");
    std::fs::write(&config_path, config(&dir.path().join("state"), smtpd.port)).unwrap();
    let mut daemon = Daemon::start(&config_path, &[]);
    let addr = daemon.client_addr();

    // Nobody of the group is online: the message waits, the desk is told.
    let mut vera = Peer::connect(addr, &util::token("vera", "visitor"), "vera");
    let conv = vera
        .send_accepted(0, 1, "Do you ship to Norway?")
        .conversation;
    let notes = smtpd.wait_for(DESK, &["Do you ship to Norway?"]);
    let note = &notes[0];
    assert!(
        note["subject"]
            .as_str()
            .unwrap()
            .contains(&format!("conversation {conv}")),
        "{note:#}"
    );
    assert_eq!(note["from"], "support@example.com");
    assert_eq!(note["headers"]["auto-submitted"], "auto-generated");
    assert!(
        note["body"]
            .as_str()
            .unwrap()
            .contains(&format!("https://support.example.com/c/{conv}")),
        "{note:#}"
    );

    // The visitor leaves an address and goes.
    let rid = vera.post(profile(conv, VERA));
    vera.reply_to(rid, |m| matches!(m, Msg::Accepted(_)).then_some(()));
    vera.close();

    // An agent comes, is given the conversation, and answers three times.
    let mut alice = Peer::connect(addr, &util::agent_token("alice", &["support"]), "alice");
    alice.assigned(conv);
    for (i, text) in ["Yes, we do.", "It takes 3 days.", "Anything else?"]
        .iter()
        .enumerate()
    {
        alice.send_accepted(conv, i as u64 + 1, text);
    }
    let digests = smtpd.wait_for(VERA, &["Yes, we do.", "It takes 3 days.", "Anything else?"]);
    assert_eq!(digests.len(), 1, "one digest for the three: {digests:#?}");
    assert!(
        digests[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with("3 new replies"),
        "{:#}",
        digests[0]
    );

    // Restarted (gracefully) with a long interval, so that no digest can go before
    // the kill below however slow the machine is: three more replies, then SIGKILL.
    daemon.signal(libc::SIGTERM);
    drop(alice);
    daemon.wait(Duration::from_secs(10));
    let interval =
        |text: &str| config(&dir.path().join("state"), smtpd.port).replace("\"3s\"", text);
    std::fs::write(&config_path, interval("\"1h\"")).unwrap();
    let mut daemon = Daemon::start(&config_path, &[]);
    let mut alice = Peer::connect(
        daemon.client_addr(),
        &util::agent_token("alice", &["support"]),
        "alice",
    );
    for (i, text) in ["Tracking: 42.", "Ships Monday.", "Bye!"]
        .iter()
        .enumerate()
    {
        alice.send_accepted(conv, i as u64 + 10, text);
    }
    daemon.signal(libc::SIGKILL);
    drop(alice);
    daemon.wait(Duration::from_secs(10));
    // Started again (the interval 1s now: the digest is due at once): it goes from
    // there, found by replaying the journal against the marks.
    std::fs::write(&config_path, interval("\"1s\"")).unwrap();
    let daemon = Daemon::start(&config_path, &[]);
    let after = smtpd.wait_for(VERA, &["Tracking: 42.", "Ships Monday.", "Bye!"]);
    assert!(!after.is_empty());
    metrics_with(&daemon, "switchboard_email_sent_total{kind=\"digest\"} 1\n");
    // The first digest was marked before the kill: not sent again, and nothing else
    // went to the visitor.
    let to_vera = smtpd.to(VERA);
    let first = to_vera
        .iter()
        .filter(|m| m["body"].as_str().unwrap().contains("Yes, we do."))
        .count();
    assert_eq!(first, 1, "{to_vera:#?}");
    assert_eq!(smtpd.to(DESK).len(), 1, "one offline notification");
}

#[test]
fn email_on_starts_its_thread_marks_file_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config_path = dir.path().join("switchboard.toml");
    // Nothing listens on port 9: nothing is due, so nothing is tried.
    std::fs::write(&config_path, config(&state, 9)).unwrap();
    let daemon = Daemon::start(&config_path, &[]);
    let marks = state.join("mail/marks.log");
    assert!(
        util::wait_until(MAIL_WAIT, || marks.exists()),
        "the first start writes {}",
        marks.display()
    );
    let metrics = util::http::get(daemon.admin_addr().unwrap(), "/metrics").body;
    for line in [
        "switchboard_email_pending 0\n",
        "switchboard_email_sent_total{kind=\"offline\"} 0\n",
        "switchboard_email_sent_total{kind=\"digest\"} 0\n",
        "switchboard_email_failures_total 0\n",
        "switchboard_email_dropped_total{reason=\"max_pending\"} 0\n",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    drop(daemon);

    // check-config names a bad key of [email].
    let bad = dir.path().join("bad.toml");
    let text = config(&state, 25).replace("from = \"Support <support@example.com>\"\n", "");
    std::fs::write(&bad, text).unwrap();
    let (status, _, err) = util::run_bin(
        &["check-config", bad.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("email.from"), "{err}");
}
