//! Email over TLS with real certificates and SMTP AUTH: a throwaway CA and a server
//! certificate for `localhost`/127.0.0.1 made at test time (`util::tls`), the
//! real SMTP server of `tests/mail/smtpd.py` (aiosmtpd) with STARTTLS or implicit TLS
//! and AUTH required, and the daemon binary with `email.tls`, `email.ca_file` and
//! `email.credentials_file`.
//!
//! - STARTTLS, the CA in `ca_file`, the right user: the mail arrives, upgraded and
//!   authenticated as that user.
//! - Implicit TLS (`tls = "tls"`): the mail arrives.
//! - No `ca_file` (the server's certificate is not trusted), or a wrong password: no
//!   mail, the failures counted, and the mail is retried, never dropped: restarted
//!   with the CA or the right password, it goes.
//!
//! Needs what `tests/it/mail.rs` needs.

use crate::mail::{DESK, MAIL_WAIT, Smtpd, config, metrics_with, python};
use crate::util;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::Daemon;
use crate::util::peer::Peer;

/// The SMTP user the server takes, and its password.
const USER: &str = "mailer";
const PASSWORD: &str = "s3cret";

/// A throwaway CA and a server certificate it signed.
struct Certs {
    /// The CA's certificate (PEM): what `ca_file` names.
    ca: PathBuf,
    /// The server's certificate (PEM), for `localhost` and 127.0.0.1.
    cert: PathBuf,
    /// The server's private key (PEM).
    key: PathBuf,
}

/// Writes a throwaway CA and a server certificate it signed, for `localhost` and
/// 127.0.0.1, to `dir`.
fn certs(dir: &Path) -> Certs {
    let ca = util::tls::Ca::new("Switchboard test CA");
    let server = ca
        .leaf(&["localhost", "127.0.0.1"], false)
        .write(dir, "server");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    Certs {
        ca: ca_path,
        cert: server.cert,
        key: server.key,
    }
}

/// What a test needs: Python with aiosmtpd, and the certificates (in `dir`).
fn setup(dir: &Path) -> Option<(String, Certs)> {
    let py = python()?;
    Some((py, certs(dir)))
}

/// The plain `[email]` of `tests/it/mail.rs` with `tls`, and `ca_file` and
/// `credentials_file` when given.
fn tls_config(
    dir: &Path,
    port: u16,
    tls: &str,
    ca_file: Option<&Path>,
    credentials: Option<&Path>,
) -> String {
    let mut text =
        config(&dir.join("state"), port).replace("tls = \"none\"\n", &format!("tls = \"{tls}\"\n"));
    for (key, path) in [("ca_file", ca_file), ("credentials_file", credentials)] {
        if let Some(path) = path {
            text.push_str(&format!("{key} = \"{}\"\n", path.display()));
        }
    }
    text
}

/// A credentials file in `dir` with `USER` and `password`.
fn credentials(dir: &Path, password: &str) -> PathBuf {
    let path = dir.join(format!("smtp-{password}.credentials"));
    std::fs::write(&path, format!("{USER}\n{password}\n")).unwrap();
    path
}

/// Starts the daemon on `text` (written to `dir/switchboard.toml`).
fn start(dir: &Path, text: &str) -> Daemon {
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    Daemon::start(&path, &[])
}

/// A visitor writes `text` while nobody is online: an offline notification to DESK.
fn visitor_writes(daemon: &Daemon, text: &str) {
    let mut vera = Peer::connect(
        daemon.client_addr(),
        &util::token("vera", "visitor"),
        "vera",
    );
    vera.send_accepted(0, 1, text);
}

/// The value of the counter `name` (no labels) in `/metrics`; 0 when absent.
fn counter(daemon: &Daemon, name: &str) -> u64 {
    let metrics = util::http::get(daemon.admin_addr().unwrap(), "/metrics").body;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the daemon failed at least `n` attempts; the log, for the caller.
fn wait_failures(daemon: &Daemon, n: u64) {
    let failed = util::wait_until(MAIL_WAIT, || {
        counter(daemon, "switchboard_email_failures_total") >= n
    });
    assert!(
        failed,
        "{n} failures expected; log: {:#?}",
        daemon.log_lines()
    );
}

/// After failures: nothing was received, nothing dropped, the mail still pending.
fn still_pending(daemon: &Daemon, smtpd: &Smtpd) {
    assert!(smtpd.received().is_empty(), "{:#?}", smtpd.received());
    let metrics = metrics_with(daemon, "switchboard_email_pending 1\n");
    for dropped in ["rejected", "max_pending", "no_address"] {
        let line = format!("switchboard_email_dropped_total{{reason=\"{dropped}\"}} 0\n");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}

/// Stops the daemon gracefully.
fn stop(mut daemon: Daemon) {
    daemon.signal(libc::SIGTERM);
    daemon.wait(Duration::from_secs(10));
}

#[test]
fn starttls_with_the_ca_file_and_auth_delivers_as_that_user() {
    let dir = tempfile::tempdir().unwrap();
    let Some((py, certs)) = setup(dir.path()) else {
        return;
    };
    let smtpd = Smtpd::start_with(
        &py,
        &dir.path().join("mail.jsonl"),
        &[
            OsStr::new("--starttls"),
            certs.cert.as_os_str(),
            certs.key.as_os_str(),
            OsStr::new("--auth"),
            OsStr::new(&format!("{USER}:{PASSWORD}")),
        ],
    );
    let text = tls_config(
        dir.path(),
        smtpd.port,
        "starttls",
        Some(&certs.ca),
        Some(&credentials(dir.path(), PASSWORD)),
    );
    // check-config takes it (the CA file reads, has a certificate).
    let config_path = dir.path().join("check.toml");
    std::fs::write(&config_path, &text).unwrap();
    let (status, _, err) = util::run_bin(
        &["check-config", config_path.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(0), "{err}");

    let daemon = start(dir.path(), &text);
    visitor_writes(&daemon, "Over STARTTLS, please.");
    let mails = smtpd.wait_for(DESK, &["Over STARTTLS, please."]);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let m = &mails[0];
    assert_eq!(m["tls"], true, "{m:#}");
    assert_eq!(m["starttls"], true, "{m:#}");
    assert_eq!(m["user"], USER, "{m:#}");
    metrics_with(
        &daemon,
        "switchboard_email_sent_total{kind=\"offline\"} 1\n",
    );
    assert_eq!(counter(&daemon, "switchboard_email_failures_total"), 0);
}

#[test]
fn implicit_tls_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let Some((py, certs)) = setup(dir.path()) else {
        return;
    };
    let smtpd = Smtpd::start_with(
        &py,
        &dir.path().join("mail.jsonl"),
        &[
            OsStr::new("--implicit-tls"),
            certs.cert.as_os_str(),
            certs.key.as_os_str(),
        ],
    );
    let text = tls_config(dir.path(), smtpd.port, "tls", Some(&certs.ca), None);
    let daemon = start(dir.path(), &text);
    visitor_writes(&daemon, "Over SMTPS.");
    let mails = smtpd.wait_for(DESK, &["Over SMTPS."]);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0]["tls"], true, "{:#}", mails[0]);
    assert_eq!(mails[0]["starttls"], false, "{:#}", mails[0]);
    assert_eq!(mails[0]["user"], serde_json::Value::Null, "{:#}", mails[0]);
}

#[test]
fn an_untrusted_certificate_is_retried_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let Some((py, certs)) = setup(dir.path()) else {
        return;
    };
    let smtpd = Smtpd::start_with(
        &py,
        &dir.path().join("mail.jsonl"),
        &[
            OsStr::new("--starttls"),
            certs.cert.as_os_str(),
            certs.key.as_os_str(),
        ],
    );
    // Only the Mozilla roots: the test CA is unknown, so is the server.
    let daemon = start(
        dir.path(),
        &tls_config(dir.path(), smtpd.port, "starttls", None, None),
    );
    visitor_writes(&daemon, "Is this server trusted?");
    // More attempts than a refusal for good gets (three): still not dropped.
    wait_failures(&daemon, 4);
    still_pending(&daemon, &smtpd);
    let logged = daemon.log_lines();
    assert!(
        logged
            .iter()
            .any(|l| l.contains("mail not sent; retrying") && l.contains("certificate")),
        "{logged:#?}"
    );
    // Restarted trusting the CA: the mail that waited goes.
    stop(daemon);
    let daemon = start(
        dir.path(),
        &tls_config(dir.path(), smtpd.port, "starttls", Some(&certs.ca), None),
    );
    let mails = smtpd.wait_for(DESK, &["Is this server trusted?"]);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    metrics_with(
        &daemon,
        "switchboard_email_sent_total{kind=\"offline\"} 1\n",
    );
}

#[test]
fn a_wrong_password_is_retried_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let Some((py, certs)) = setup(dir.path()) else {
        return;
    };
    let out = dir.path().join("mail.jsonl");
    let smtpd = Smtpd::start_with(
        &py,
        &out,
        &[
            OsStr::new("--starttls"),
            certs.cert.as_os_str(),
            certs.key.as_os_str(),
            OsStr::new("--auth"),
            OsStr::new(&format!("{USER}:{PASSWORD}")),
        ],
    );
    let wrong = credentials(dir.path(), "wrong");
    let daemon = start(
        dir.path(),
        &tls_config(
            dir.path(),
            smtpd.port,
            "starttls",
            Some(&certs.ca),
            Some(&wrong),
        ),
    );
    visitor_writes(&daemon, "Wrong password.");
    // 535 (53x): retried past the three attempts a refusal for good gets.
    wait_failures(&daemon, 4);
    still_pending(&daemon, &smtpd);
    // The server saw the attempts, over TLS, as USER, and refused them.
    let attempts: Vec<serde_json::Value> =
        std::fs::read_to_string(format!("{}.auth", out.display()))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert!(!attempts.is_empty());
    for a in &attempts {
        assert_eq!(a["user"], USER, "{a:#}");
        assert_eq!(a["ok"], false, "{a:#}");
        assert_eq!(a["tls"], true, "{a:#}");
    }
    // Restarted with the right password: the mail that waited goes.
    stop(daemon);
    let daemon = start(
        dir.path(),
        &tls_config(
            dir.path(),
            smtpd.port,
            "starttls",
            Some(&certs.ca),
            Some(&credentials(dir.path(), PASSWORD)),
        ),
    );
    let mails = smtpd.wait_for(DESK, &["Wrong password."]);
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0]["user"], USER, "{:#}", mails[0]);
    metrics_with(
        &daemon,
        "switchboard_email_sent_total{kind=\"offline\"} 1\n",
    );
}

#[test]
fn check_config_names_a_ca_file_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("only-a-key.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    for (ca, says) in [
        (key.as_path(), "no certificate"),
        (Path::new("/nonexistent/ca.pem"), "/nonexistent/ca.pem"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            tls_config(dir.path(), 25, "starttls", Some(ca), None),
        )
        .unwrap();
        let (status, _, err) = util::run_bin(
            &["check-config", path.to_str().unwrap()],
            Duration::from_secs(30),
        );
        assert_eq!(status.code(), Some(2), "{err}");
        assert!(err.contains("email.ca_file") && err.contains(says), "{err}");
    }
}
