//! `[[webhooks]]`: the customer's endpoints that get conversation events from the
//! journal (the outbox, `src/outbox/`), and `[outbox]`: bounds shared by all of them.
//! Read at start only: a reload (SIGHUP) does not change them.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Most `[[webhooks]]` entries (each is a thread and a label value of metrics).
pub const MAX_WEBHOOKS: usize = 64;

/// Every event type the outbox sends (`proto-spec/WEBHOOKS.md`).
pub const EVENT_TYPES: [&str; 9] = [
    "conversation.opened",
    "conversation.queued",
    "conversation.assigned",
    "conversation.transferred",
    "conversation.closed",
    "conversation.abandoned",
    "conversation.rated",
    "message.created",
    "message.offline",
];

/// Bounds of the outbox, for every endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Most bytes of one POST body: a batch ends before the event that would pass it
    /// (an event larger than this alone is sent alone).
    pub max_batch_bytes: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_batch_bytes: 1 << 20,
        }
    }
}

/// One endpoint (`[[webhooks]]`). The secret is never serialized and `Debug` never
/// shows it.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The endpoint's name in logs, metrics and its cursor file: 1 to 64 characters of
    /// `A-Z a-z 0-9 _ -`.
    pub id: String,
    /// Where events are POSTed: an `http://` or `https://` URL.
    pub url: String,
    /// The signing secret, Standard Webhooks style: `whsec_` and the base64 of 24 to
    /// 64 random bytes.
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
    /// A file holding `secret` (content trimmed), instead of it.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Event types to send; `*` matches any run of characters (`conversation.*`).
    /// Empty (the default): every type.
    #[serde(default)]
    pub events: Vec<String>,
    /// Only conversations of this tenant (default: every tenant).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Also send agents' private notes (as `message.created` with `"private": true`).
    #[serde(default)]
    pub include_notes: bool,
    /// Most events in one POST.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Longest wait for one POST (connect, send, answer).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest wait between two attempts of a failing POST.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

fn default_max_batch() -> usize {
    100
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .field("events", &self.events)
            .field("tenant", &self.tenant)
            .field("include_notes", &self.include_notes)
            .field("max_batch", &self.max_batch)
            .field("timeout", &self.timeout)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// Why an endpoint's secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum WebhookSecretError {
    /// Neither or both of `secret` and `secret_file` are set.
    #[error("set exactly one of `secret` and `secret_file`")]
    NotOne,
    /// The file could not be read.
    #[error("`secret_file` {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not `whsec_` and base64.
    #[error("not a Standard Webhooks secret (`whsec_` and base64)")]
    Format,
    /// Decoded length out of range.
    #[error("{0} bytes once decoded; 24 to 64 required")]
    Length(usize),
}

/// The key bytes of a `whsec_<base64>` secret (standard alphabet, padding optional).
pub fn decode_secret(text: &str) -> Result<Vec<u8>, WebhookSecretError> {
    let b64 = text
        .trim()
        .strip_prefix("whsec_")
        .ok_or(WebhookSecretError::Format)?;
    let key = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| WebhookSecretError::Format)?;
    if !(24..=64).contains(&key.len()) {
        return Err(WebhookSecretError::Length(key.len()));
    }
    Ok(key)
}

/// Whether `pattern` (with `*` for any run of characters) matches `name`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(mut tail) = name.strip_prefix(head) else {
                return false;
            };
            if rest.is_empty() {
                return true;
            }
            // Try every place the rest could start (patterns are a few bytes long).
            loop {
                if glob_match(rest, tail) {
                    return true;
                }
                let mut chars = tail.chars();
                if chars.next().is_none() {
                    return false;
                }
                tail = chars.as_str();
            }
        }
    }
}

impl WebhookConfig {
    /// The signing key (decoded secret). Reads `secret_file`.
    pub fn key(&self) -> Result<Vec<u8>, WebhookSecretError> {
        let text = match (&self.secret, &self.secret_file) {
            (Some(s), None) => s.clone(),
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|source| WebhookSecretError::File {
                    path: path.clone(),
                    source,
                })?
            }
            _ => return Err(WebhookSecretError::NotOne),
        };
        decode_secret(&text)
    }

    /// Whether events of type `event` go to this endpoint.
    pub fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|p| glob_match(p, event))
    }

    fn validate(&self, before: &[WebhookConfig]) -> Result<(), (&'static str, String)> {
        let id = &self.id;
        if !super::valid_site_id(id) {
            return Err((
                "webhooks.id",
                format!("{id:?}: 1 to 64 characters of A-Z a-z 0-9 _ -"),
            ));
        }
        if before.iter().any(|w| w.id == *id) {
            return Err(("webhooks.id", format!("{id:?} appears more than once")));
        }
        check_url(&self.url).map_err(|e| ("webhooks.url", format!("webhook {id:?}: {e}")))?;
        self.key()
            .map_err(|e| ("webhooks.secret", format!("webhook {id:?}: {e}")))?;
        for p in &self.events {
            if !EVENT_TYPES.iter().any(|t| glob_match(p, t)) {
                return Err((
                    "webhooks.events",
                    format!(
                        "webhook {id:?}: {p:?} matches no event type (known: {})",
                        EVENT_TYPES.join(", ")
                    ),
                ));
            }
        }
        if self.tenant.as_ref().is_some_and(|t| t.len() > 1024) {
            return Err((
                "webhooks.tenant",
                format!("webhook {id:?}: at most 1024 bytes"),
            ));
        }
        if !(1..=1000).contains(&self.max_batch) {
            return Err(("webhooks.max_batch", format!("webhook {id:?}: 1 to 1000")));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&self.timeout) {
            return Err((
                "webhooks.timeout",
                format!("webhook {id:?}: from 100ms to 5m"),
            ));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(86_400)).contains(&self.max_backoff) {
            return Err((
                "webhooks.max_backoff",
                format!("webhook {id:?}: from 100ms to 1day"),
            ));
        }
        Ok(())
    }
}

/// An endpoint URL: `http://` or `https://`, a host, at most 2048 bytes, and one the
/// HTTP client can parse.
fn check_url(url: &str) -> Result<(), String> {
    if url.len() > 2048 {
        return Err("at most 2048 bytes".into());
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{url:?} has no host"));
    }
    if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!("{url:?} holds spaces or control characters"));
    }
    ureq::http::Uri::try_from(url).map_err(|e| format!("{url:?}: {e}"))?;
    Ok(())
}

/// Checks every endpoint and the outbox bounds: `(key, reason)` of the first problem.
/// Reads secret files.
pub(super) fn validate(
    hooks: &[WebhookConfig],
    outbox: &OutboxConfig,
    journal_enabled: bool,
) -> Result<(), (&'static str, String)> {
    if !(4096..=64 << 20).contains(&outbox.max_batch_bytes) {
        return Err(("outbox.max_batch_bytes", "from 4096 to 67108864".into()));
    }
    if hooks.is_empty() {
        return Ok(());
    }
    if !journal_enabled {
        return Err((
            "webhooks",
            "webhooks are read from the journal: set journal.enabled = true or remove them".into(),
        ));
    }
    if hooks.len() > MAX_WEBHOOKS {
        return Err(("webhooks", format!("at most {MAX_WEBHOOKS} endpoints")));
    }
    for (i, h) in hooks.iter().enumerate() {
        h.validate(hooks.get(..i).unwrap_or_default())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn hook(id: &str) -> WebhookConfig {
        WebhookConfig {
            id: id.into(),
            url: "http://127.0.0.1:9/hooks".into(),
            secret: Some(SECRET.into()),
            secret_file: None,
            events: Vec::new(),
            tenant: None,
            include_notes: false,
            max_batch: default_max_batch(),
            timeout: default_timeout(),
            max_backoff: default_max_backoff(),
        }
    }

    fn check(hooks: &[WebhookConfig]) -> Result<(), (&'static str, String)> {
        validate(hooks, &OutboxConfig::default(), true)
    }

    #[test]
    fn globs_match_event_types() {
        assert!(glob_match("conversation.*", "conversation.closed"));
        assert!(glob_match("*", "message.created"));
        assert!(glob_match("*.created", "message.created"));
        assert!(glob_match("message.created", "message.created"));
        assert!(!glob_match("conversation.*", "message.created"));
        assert!(!glob_match("message.create", "message.created"));
        assert!(glob_match("c*n.*ed", "conversation.opened"));
        assert!(!glob_match("c*x", "conversation.opened"));
    }

    #[test]
    fn secrets_are_whsec_base64_of_24_to_64_bytes() {
        assert_eq!(decode_secret(SECRET).unwrap().len(), 24);
        assert_eq!(decode_secret(&format!("{SECRET}\n")).unwrap().len(), 24);
        assert!(matches!(
            decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(WebhookSecretError::Format)
        ));
        assert!(matches!(
            decode_secret("whsec_!!!"),
            Err(WebhookSecretError::Format)
        ));
        assert!(matches!(
            decode_secret("whsec_c2hvcnQ="),
            Err(WebhookSecretError::Length(5))
        ));
    }

    #[test]
    fn a_good_endpoint_passes_and_each_bad_key_is_named() {
        check(&[hook("crm")]).unwrap();
        type Tweak = Box<dyn Fn(&mut WebhookConfig)>;
        let cases: Vec<(&str, Tweak)> = vec![
            ("webhooks.id", Box::new(|h| h.id = "a b".into())),
            ("webhooks.url", Box::new(|h| h.url = "ftp://x/".into())),
            ("webhooks.url", Box::new(|h| h.url = "http:///x".into())),
            ("webhooks.url", Box::new(|h| h.url = "http://a b/".into())),
            ("webhooks.secret", Box::new(|h| h.secret = None)),
            ("webhooks.secret", Box::new(|h| h.secret = Some("x".into()))),
            (
                "webhooks.secret",
                Box::new(|h| h.secret_file = Some("/nonexistent/whsec".into())),
            ),
            (
                "webhooks.events",
                Box::new(|h| h.events = vec!["conversation.closd".into()]),
            ),
            ("webhooks.max_batch", Box::new(|h| h.max_batch = 0)),
            (
                "webhooks.timeout",
                Box::new(|h| h.timeout = Duration::from_millis(1)),
            ),
            (
                "webhooks.max_backoff",
                Box::new(|h| h.max_backoff = Duration::from_millis(1)),
            ),
        ];
        for (key, tweak) in cases {
            let mut h = hook("crm");
            tweak(&mut h);
            let (got, reason) = check(&[h]).unwrap_err();
            assert_eq!(got, key, "{reason}");
        }
        let (key, reason) = check(&[hook("a"), hook("a")]).unwrap_err();
        assert_eq!(key, "webhooks.id", "{reason}");
    }

    #[test]
    fn webhooks_need_the_journal() {
        let (key, reason) = validate(&[hook("a")], &OutboxConfig::default(), false).unwrap_err();
        assert_eq!(key, "webhooks");
        assert!(reason.contains("journal.enabled"), "{reason}");
        validate(&[], &OutboxConfig::default(), false).unwrap();
    }

    #[test]
    fn secret_files_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("whsec");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let mut h = hook("f");
        h.secret = None;
        h.secret_file = Some(path);
        assert_eq!(h.key().unwrap().len(), 24);
        assert!(!format!("{:?}", hook("x")).contains("MfKQ"));
    }
}
