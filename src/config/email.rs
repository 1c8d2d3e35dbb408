//! `[email]`: offline notifications and reply digests by SMTP (the mail thread,
//! `src/mail/`). Off unless `host` is set. Read at start only: a reload (SIGHUP) does
//! not change it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No TLS at all: only for a relay on the same host or a trusted network.
    None,
}

/// `[email]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// The SMTP server's host name or address; absent: no email at all.
    pub host: Option<String>,
    /// The SMTP server's port.
    pub port: u16,
    /// How the connection is secured.
    pub tls: SmtpTls,
    /// A file whose first line is the SMTP user name and second line the password
    /// (line ends stripped); absent: no authentication.
    pub credentials_file: Option<PathBuf>,
    /// A PEM file of further root certificates trusted for the SMTP server's
    /// certificate (an internal CA), besides the Mozilla roots; absent: those only.
    pub ca_file: Option<PathBuf>,
    /// The sender address (`From:`), e.g. `"Support <support@example.com>"`; required
    /// when `host` is set.
    pub from: Option<String>,
    /// Where offline notifications of a group without an entry in `groups` go;
    /// absent: nowhere.
    pub notify_to: Option<String>,
    /// Notification address per group: keys `"group"` or `"tenant/group"` (the
    /// latter first).
    pub groups: BTreeMap<String, String>,
    /// Further offline messages of a conversation gather this long after its last
    /// notification; a reply digest goes this long after its first reply.
    #[serde(with = "humantime_serde")]
    pub digest_interval: Duration,
    /// Most messages quoted in one mail; the rest are counted ("and N more").
    pub max_digest_messages: usize,
    /// Most characters of one message quoted in a mail (longer ones are cut).
    pub max_message_chars: usize,
    /// Most conversations with mail not yet sent; past it the oldest is dropped
    /// (logged, counted).
    pub max_pending: usize,
    /// Longest wait for one SMTP exchange step (connect, each command).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest wait between two attempts of a mail that failed.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// A link put in every mail; `{conversation}` is replaced by the conversation id.
    pub chat_url: Option<String>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: 587,
            tls: SmtpTls::Starttls,
            credentials_file: None,
            ca_file: None,
            from: None,
            notify_to: None,
            groups: BTreeMap::new(),
            digest_interval: Duration::from_secs(300),
            max_digest_messages: 50,
            max_message_chars: 2000,
            max_pending: 10_000,
            timeout: Duration::from_secs(30),
            max_backoff: Duration::from_secs(600),
            chat_url: None,
        }
    }
}

/// SMTP user name and password (`Debug` never shows the password).
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpCredentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why `credentials_file` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("`email.credentials_file` {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not two non-empty lines.
    #[error(
        "`email.credentials_file` {0}: expected the user name on the first line and the password on the second"
    )]
    Format(PathBuf),
}

/// Why `ca_file` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file could not be read.
    #[error("`email.ca_file` {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `CERTIFICATE` block is not valid PEM (bad base64, no end line).
    #[error("`email.ca_file` {path}: not a PEM certificate file: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        reason: String,
    },
    /// No `-----BEGIN CERTIFICATE-----` block in it.
    #[error(
        "`email.ca_file` {0}: no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks)"
    )]
    Empty(PathBuf),
    /// A certificate that cannot be a root (its DER does not parse).
    #[error("`email.ca_file` {path}: certificate {index} cannot be used as a root: {reason}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Which certificate (1 = the first in the file).
        index: usize,
        /// What the TLS library said.
        reason: String,
    },
}

impl EmailConfig {
    /// Whether email is on (`host` set).
    pub fn enabled(&self) -> bool {
        self.host.is_some()
    }

    /// The SMTP credentials, read from `credentials_file` (`None` without one).
    pub fn credentials(&self) -> Result<Option<SmtpCredentials>, CredentialsError> {
        let Some(path) = &self.credentials_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.clone(),
            source,
        })?;
        let mut lines = text.lines();
        let user = lines.next().unwrap_or_default();
        let password = lines.next().unwrap_or_default();
        if user.trim().is_empty() || password.is_empty() {
            return Err(CredentialsError::Format(path.clone()));
        }
        Ok(Some(SmtpCredentials {
            user: user.trim().to_owned(),
            password: password.to_owned(),
        }))
    }

    /// The DER certificates of `ca_file`, in file order (empty without one). Checks
    /// that the file has at least one certificate and that each parses; other PEM
    /// blocks (a key, say) are ignored.
    pub fn ca_certificates(&self) -> Result<Vec<Vec<u8>>, CaFileError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject as _;
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let pem = std::fs::read(path).map_err(|source| CaFileError::Read {
            path: path.clone(),
            source,
        })?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .map(|c| c.map(|der| der.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CaFileError::Pem {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(CaFileError::Empty(path.clone()));
        }
        for (i, der) in certs.iter().enumerate() {
            // What lettre does with each root when it connects, done here so that
            // a bad file stops the start (and check-config) rather than every mail.
            lettre::transport::smtp::client::TlsParameters::builder(String::from("localhost"))
                .add_root_certificate(
                    lettre::transport::smtp::client::Certificate::from_der(der.clone())
                        .map_err(|e| unusable(path, i, &e))?,
                )
                .build()
                .map_err(|e| unusable(path, i, &e))?;
        }
        Ok(certs)
    }

    /// The notification address of `group` in `tenant`: `groups["tenant/group"]`,
    /// `groups["group"]`, then `notify_to`.
    pub fn notify_address(&self, tenant: &str, group: &str) -> Option<&str> {
        self.groups
            .get(&format!("{tenant}/{group}"))
            .or_else(|| self.groups.get(group))
            .or(self.notify_to.as_ref())
            .map(String::as_str)
    }

    /// Checks `[email]`: `(key, reason)` of the first problem. Reads the credentials
    /// file.
    pub(super) fn validate(&self, journal_enabled: bool) -> Result<(), (&'static str, String)> {
        let Some(host) = &self.host else {
            return Ok(());
        };
        if !journal_enabled {
            return Err((
                "email",
                "email is read from the journal: set journal.enabled = true or remove email.host"
                    .into(),
            ));
        }
        if host.is_empty()
            || host.len() > 253
            || host
                .bytes()
                .any(|b| b.is_ascii_control() || b == b' ' || b == b'/')
        {
            return Err(("email.host", format!("{host:?} is not a host name")));
        }
        if self.port == 0 {
            return Err(("email.port", "1 to 65535".into()));
        }
        let Some(from) = &self.from else {
            return Err(("email.from", "required when email.host is set".into()));
        };
        check_mailbox(from).map_err(|e| ("email.from", e))?;
        if let Some(to) = &self.notify_to {
            check_mailbox(to).map_err(|e| ("email.notify_to", e))?;
        }
        for (key, to) in &self.groups {
            if key.is_empty() || key.len() > 2048 {
                return Err(("email.groups", format!("{key:?}: 1 to 2048 bytes")));
            }
            check_mailbox(to).map_err(|e| ("email.groups", format!("{key:?}: {e}")))?;
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&self.digest_interval) {
            return Err(("email.digest_interval", "from 1s to 1day".into()));
        }
        if !(1..=1000).contains(&self.max_digest_messages) {
            return Err(("email.max_digest_messages", "1 to 1000".into()));
        }
        if !(100..=100_000).contains(&self.max_message_chars) {
            return Err(("email.max_message_chars", "100 to 100000".into()));
        }
        if !(1..=1_000_000).contains(&self.max_pending) {
            return Err(("email.max_pending", "1 to 1000000".into()));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&self.timeout) {
            return Err(("email.timeout", "from 100ms to 5m".into()));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(86_400)).contains(&self.max_backoff) {
            return Err(("email.max_backoff", "from 100ms to 1day".into()));
        }
        if let Some(url) = &self.chat_url
            && (url.is_empty()
                || url.len() > 2048
                || url.bytes().any(|b| b.is_ascii_control() || b == b' '))
        {
            return Err((
                "email.chat_url",
                "1 to 2048 bytes, no spaces or control characters".into(),
            ));
        }
        self.credentials()
            .map_err(|e| ("email.credentials_file", e.to_string()))?;
        self.ca_certificates()
            .map_err(|e| ("email.ca_file", e.to_string()))?;
        Ok(())
    }
}

/// [`CaFileError::Unusable`] of the certificate at `index` (from 0).
fn unusable(path: &std::path::Path, index: usize, e: &dyn std::fmt::Display) -> CaFileError {
    CaFileError::Unusable {
        path: path.to_owned(),
        index: index + 1,
        reason: e.to_string(),
    }
}

/// An address as `From:`/`To:` take it: `user@domain` or `Name <user@domain>`.
fn check_mailbox(text: &str) -> Result<(), String> {
    text.parse::<lettre::message::Mailbox>()
        .map(drop)
        .map_err(|e| format!("{text:?} is not an email address: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> EmailConfig {
        EmailConfig {
            host: Some("127.0.0.1".into()),
            from: Some("Support <support@example.com>".into()),
            ..EmailConfig::default()
        }
    }

    #[test]
    fn off_by_default_and_a_good_config_passes() {
        EmailConfig::default().validate(false).unwrap();
        assert!(!EmailConfig::default().enabled());
        on().validate(true).unwrap();
    }

    #[test]
    fn each_bad_key_is_named() {
        type Tweak = Box<dyn Fn(&mut EmailConfig)>;
        let cases: Vec<(&str, Tweak)> = vec![
            ("email.host", Box::new(|c| c.host = Some("a b".into()))),
            ("email.port", Box::new(|c| c.port = 0)),
            ("email.from", Box::new(|c| c.from = None)),
            ("email.from", Box::new(|c| c.from = Some("nobody".into()))),
            (
                "email.notify_to",
                Box::new(|c| c.notify_to = Some("x@".into())),
            ),
            (
                "email.groups",
                Box::new(|c| {
                    c.groups.insert("sales".into(), "not an address".into());
                }),
            ),
            (
                "email.digest_interval",
                Box::new(|c| c.digest_interval = Duration::from_millis(10)),
            ),
            (
                "email.max_digest_messages",
                Box::new(|c| c.max_digest_messages = 0),
            ),
            (
                "email.max_message_chars",
                Box::new(|c| c.max_message_chars = 5),
            ),
            ("email.max_pending", Box::new(|c| c.max_pending = 0)),
            (
                "email.timeout",
                Box::new(|c| c.timeout = Duration::from_millis(1)),
            ),
            (
                "email.max_backoff",
                Box::new(|c| c.max_backoff = Duration::ZERO),
            ),
            (
                "email.chat_url",
                Box::new(|c| c.chat_url = Some("a b".into())),
            ),
            (
                "email.credentials_file",
                Box::new(|c| c.credentials_file = Some("/nonexistent/smtp".into())),
            ),
            (
                "email.ca_file",
                Box::new(|c| c.ca_file = Some("/nonexistent/ca.pem".into())),
            ),
        ];
        for (key, tweak) in cases {
            let mut c = on();
            tweak(&mut c);
            let (got, reason) = c.validate(true).unwrap_err();
            assert_eq!(got, key, "{reason}");
        }
        let (key, reason) = on().validate(false).unwrap_err();
        assert_eq!(key, "email");
        assert!(reason.contains("journal.enabled"), "{reason}");
    }

    #[test]
    fn credentials_are_two_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smtp");
        std::fs::write(&path, "mailer\n s3cret \n").unwrap();
        let mut c = on();
        c.credentials_file = Some(path.clone());
        let creds = c.credentials().unwrap().unwrap();
        assert_eq!(creds.user, "mailer");
        assert_eq!(
            creds.password, " s3cret ",
            "the password is taken as written"
        );
        assert!(!format!("{creds:?}").contains("s3cret"));
        std::fs::write(&path, "mailer\n").unwrap();
        assert!(matches!(c.credentials(), Err(CredentialsError::Format(_))));
    }

    /// A self-signed P-256 CA made with the openssl CLI (only parsed here: its
    /// validity period does not matter).
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBoDCCAUegAwIBAgIUARrkoJDOH7ghmf8hGATkwGVjGVUwCgYIKoZIzj0EAwIw\n\
HjEcMBoGA1UEAwwTU3dpdGNoYm9hcmQgdGVzdCBDQTAeFw0yNjEyMDcwMzI3MTJa\n\
Fw0yNjEyMDkwMzI3MTJaMB4xHDAaBgNVBAMME1N3aXRjaGJvYXJkIHRlc3QgQ0Ew\n\
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQTHZIJixMo6fHyU2mhhW5vT1YRZUi9\n\
g2DbjtU2qJsvFYaEWytHPgdhqxfKqvK2fq+V/gEH24ExDWk2U4j6zknFo2MwYTAd\n\
BgNVHQ4EFgQUmsX3YC7tSJhi4F2fpronmzflqAwwHwYDVR0jBBgwFoAUmsX3YC7t\n\
SJhi4F2fpronmzflqAwwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAQYw\n\
CgYIKoZIzj0EAwIDRwAwRAIgEzVxok35NioPPTxZJBrJzUTQk6HNtAdItWRjM65E\n\
A+sCIEgOejUln9aRhWmddQfGX5GeRuITpY+9v6Io/YrsPCal\n\
-----END CERTIFICATE-----\n\
";

    #[test]
    fn ca_file_holds_pem_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let mut c = on();
        assert!(
            c.ca_certificates().unwrap().is_empty(),
            "none without a file"
        );
        c.ca_file = Some(path.clone());
        // Two roots, and a key block that is not one (ignored).
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        std::fs::write(&path, format!("{TEST_CA}{key}{TEST_CA}")).unwrap();
        assert_eq!(c.ca_certificates().unwrap().len(), 2);
        c.validate(true).unwrap();
        type Check = fn(&CaFileError) -> bool;
        let bad: [(&str, Check); 5] = [
            ("", |e| matches!(e, CaFileError::Empty(_))),
            (key, |e| matches!(e, CaFileError::Empty(_))),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n", |e| {
                matches!(e, CaFileError::Pem { .. })
            }),
            (
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                |e| matches!(e, CaFileError::Pem { .. }),
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                |e| matches!(e, CaFileError::Unusable { index: 1, .. }),
            ),
        ];
        for (text, check) in bad {
            std::fs::write(&path, text).unwrap();
            let e = c.ca_certificates().unwrap_err();
            assert!(check(&e), "{text:?}: {e:?}");
            let (key, reason) = c.validate(true).unwrap_err();
            assert_eq!(key, "email.ca_file");
            assert!(reason.contains("ca.pem"), "{reason}");
        }
    }

    #[test]
    fn notification_addresses_tenant_group_then_group_then_default() {
        let mut c = on();
        c.notify_to = Some("all@example.com".into());
        c.groups.insert("sales".into(), "sales@example.com".into());
        c.groups
            .insert("acme/sales".into(), "acme-sales@example.com".into());
        assert_eq!(
            c.notify_address("acme", "sales"),
            Some("acme-sales@example.com")
        );
        assert_eq!(
            c.notify_address("other", "sales"),
            Some("sales@example.com")
        );
        assert_eq!(c.notify_address("acme", "billing"), Some("all@example.com"));
        c.notify_to = None;
        assert_eq!(c.notify_address("acme", "billing"), None);
    }

    #[test]
    fn parses_from_toml() {
        let c: EmailConfig = toml::from_str(
            "host = \"smtp.example.com\"\ntls = \"none\"\nport = 2525\n\
             from = \"s@example.com\"\ndigest_interval = \"1s\"\n\
             [groups]\n\"acme/sales\" = \"x@example.com\"\n",
        )
        .unwrap();
        assert_eq!(c.tls, SmtpTls::None);
        assert_eq!(c.port, 2525);
        assert_eq!(c.digest_interval, Duration::from_secs(1));
        assert_eq!(c.groups.len(), 1);
        c.validate(true).unwrap();
    }
}
