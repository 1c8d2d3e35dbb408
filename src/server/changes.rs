//! What differs between two configurations, key by key, for the reload log (SIGHUP):
//! the dotted key, the old and the new value as text, and whether the change waits
//! for a restart. Every key is compared (the configuration is serialized and walked),
//! so a key added later is reported without code here. No secret is ever shown:
//! `auth.keys` is not serialized and is compared by key id and source only.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::config::{AuthKey, Config};

/// One key whose value differs between the configuration in force and a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// Dotted key, e.g. `limits.max_frame_bytes`; `auth.keys` is the list of key ids
    /// and `auth.keys."<kid>"` where one key's secret comes from.
    pub key: String,
    /// The value in force before, as text (`unset` for an absent optional key).
    pub old: String,
    /// The new value, as text.
    pub new: String,
    /// The change takes effect only after a restart; the old value stays in force.
    pub restart: bool,
}

/// Keys, and sections (everything under them), that take effect only at start:
/// they shape threads, sockets or files.
const RESTART_ONLY: [&str; 21] = [
    "state_dir",
    // The reactors and the login threads take `[console]` (users, bounds) at start.
    "console",
    // The reactors take `[web]` (origins, bounds, sites and their secrets) at start.
    "web",
    // The reactors take the API's bounds at start (`api.keys` reload).
    "api.max_body_bytes",
    "api.max_in_flight",
    "api.max_export_bytes",
    "api.max_attachment_bytes",
    "api.attachment_types",
    "api.max_uploads_in_flight",
    "listeners",
    "reactor",
    "workers",
    "shutdown",
    "log.format",
    "admin",
    "journal",
    "limits.accept_rate",
    "limits.accept_burst",
    // One thread and cursor per endpoint, made at start (`src/outbox/`).
    "outbox",
    "webhooks",
    // One thread and its state file, made at start (`src/mail/`).
    "email",
];

/// Keys under a [`RESTART_ONLY`] section that a reload applies all the same.
const LIVE_INSIDE: [&str; 3] = [
    "journal.max_replay",
    // Certificates are read again on every reload (new handshakes use them).
    "listeners.client.tls",
    "listeners.client.allow_plaintext",
];

/// Whether a change of `key` waits for a restart.
pub(crate) fn needs_restart(key: &str) -> bool {
    let under = |p: &&str| {
        key.strip_prefix(*p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    };
    !LIVE_INSIDE.iter().any(under) && RESTART_ONLY.iter().any(under)
}

/// Every key whose value differs between `old` and `new`, sorted by key, with the
/// key list of `auth.keys` last.
pub(crate) fn changes(old: &Config, new: &Config) -> Vec<ConfigChange> {
    let (a, b) = match (flatten(old), flatten(new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return vec![change("*", "?".into(), format!("cannot compare: {e}"))];
        }
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out: Vec<ConfigChange> = keys
        .into_iter()
        .filter_map(|key| {
            let (x, y) = (shown(a.get(key)), shown(b.get(key)));
            (x != y).then(|| change(key, x, y))
        })
        .collect();
    out.extend(key_changes(&old.auth.keys, &new.auth.keys));
    out
}

fn change(key: &str, old: String, new: String) -> ConfigChange {
    ConfigChange {
        key: key.to_owned(),
        old,
        new,
        restart: needs_restart(key),
    }
}

/// The configuration as dotted key → scalar value.
fn flatten(config: &Config) -> Result<BTreeMap<String, Value>, serde_json::Error> {
    fn walk(prefix: &str, v: Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", serde_json::to_value(config)?, &mut out);
    Ok(out)
}

/// A value as an operator wrote it: strings bare (durations come as `30s`), `unset`
/// for an absent optional key, and an `f32` key as its shortest text (`0.2`).
fn shown(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "unset".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() && f64::from(f as f32) == f => (f as f32).to_string(),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

/// `auth.keys` by id and by where each secret comes from; secrets are compared,
/// never shown. (A `secret_file` is read again on every reload; a new content in
/// the same file is not a change here.)
fn key_changes(old: &[AuthKey], new: &[AuthKey]) -> Vec<ConfigChange> {
    fn ids(keys: &[AuthKey]) -> String {
        if keys.is_empty() {
            return "none (development secret)".to_owned();
        }
        let ids: Vec<String> = keys.iter().map(|k| format!("{:?}", k.kid)).collect();
        ids.join(", ")
    }
    fn source(k: &AuthKey) -> String {
        match (&k.secret, &k.secret_file) {
            (_, Some(path)) => format!("secret_file {}", path.display()),
            (Some(_), None) => "inline secret".to_owned(),
            (None, None) => "unset".to_owned(),
        }
    }
    let mut out = Vec::new();
    for k in new {
        let Some(o) = old.iter().find(|o| o.kid == k.kid) else {
            continue;
        };
        let (before, mut after) = (source(o), source(k));
        if before == after && o.secret != k.secret {
            after.push_str(" (a different one)");
        }
        if before != after {
            out.push(change(&format!("auth.keys.{:?}", k.kid), before, after));
        }
    }
    let (before, after) = (ids(old), ids(new));
    if before != after {
        out.push(change("auth.keys", before, after));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::ListenerConfig;

    const SECRET_A: &str = "first-secret-0123456789abcdef0123456789";
    const SECRET_B: &str = "second-secret-0123456789abcdef012345678";

    fn key(kid: &str, secret: &str) -> AuthKey {
        AuthKey {
            kid: kid.into(),
            secret: Some(secret.into()),
            secret_file: None,
        }
    }

    fn shown_changes(old: &Config, new: &Config) -> Vec<(String, String, String, bool)> {
        changes(old, new)
            .into_iter()
            .map(|c| (c.key, c.old, c.new, c.restart))
            .collect()
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        let c = Config::default();
        assert!(changes(&c, &c.clone()).is_empty());
    }

    #[test]
    fn scalar_keys_show_old_and_new_as_written() {
        let old = Config::default();
        let mut new = old.clone();
        new.limits.max_frame_bytes = 4096;
        new.heartbeat.idle_timeout = Duration::from_secs(120);
        new.assist.faq_threshold = 0.35;
        new.routing.default_group = "sales".into();
        new.journal.max_replay = 7;
        new.reactor.threads = 3;
        let got = shown_changes(&old, &new);
        let want = [
            ("assist.faq_threshold", "0.2", "0.35", false),
            ("heartbeat.idle_timeout", "1m 30s", "2m", false),
            ("journal.max_replay", "1000", "7", false),
            ("limits.max_frame_bytes", "1048576", "4096", false),
            ("reactor.threads", "0", "3", true),
            ("routing.default_group", "support", "sales", false),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(k, o, n, r)| ((*k).to_owned(), (*o).to_owned(), (*n).to_owned(), *r))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_optional_section_appears_key_by_key() {
        let old = Config::default();
        let mut new = old.clone();
        new.listeners.echo = Some(ListenerConfig {
            backlog: 16,
            ..ListenerConfig::on("127.0.0.1:7702".parse().unwrap())
        });
        new.assist.faq = Some("/etc/switchboard/faq.toml".into());
        let got = shown_changes(&old, &new);
        assert!(got.contains(&(
            "listeners.echo.addr".into(),
            "unset".into(),
            "127.0.0.1:7702".into(),
            true
        )));
        assert!(got.contains(&(
            "assist.faq".into(),
            "unset".into(),
            "/etc/switchboard/faq.toml".into(),
            false
        )));
        assert_eq!(got.len(), 3, "{got:?}");
    }

    #[test]
    fn keys_are_shown_by_id_and_source_never_by_secret() {
        let mut old = Config::default();
        old.auth.keys = vec![key("a", SECRET_A), key("b", SECRET_A)];
        let mut new = old.clone();
        new.auth.keys = vec![
            key("b", SECRET_B),
            AuthKey {
                kid: "a".into(),
                secret: None,
                secret_file: Some("/etc/switchboard/a.key".into()),
            },
            key("c", SECRET_A),
        ];
        let got = changes(&old, &new);
        let text = format!("{got:?}");
        assert!(
            !text.contains(SECRET_A) && !text.contains(SECRET_B),
            "{text}"
        );
        let got: Vec<_> = got
            .into_iter()
            .map(|c| (c.key, c.old, c.new, c.restart))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "auth.keys.\"b\"".to_owned(),
                    "inline secret".to_owned(),
                    "inline secret (a different one)".to_owned(),
                    false
                ),
                (
                    "auth.keys.\"a\"".to_owned(),
                    "inline secret".to_owned(),
                    "secret_file /etc/switchboard/a.key".to_owned(),
                    false
                ),
                (
                    "auth.keys".to_owned(),
                    "\"a\", \"b\"".to_owned(),
                    "\"b\", \"a\", \"c\"".to_owned(),
                    false
                ),
            ]
        );
        let none = changes(&old, &Config::default());
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].new, "none (development secret)");
        // Serializing a configuration never writes a secret.
        let json = serde_json::to_string(&new).unwrap();
        assert!(
            !json.contains(SECRET_A) && !json.contains("a.key"),
            "{json}"
        );
    }

    #[test]
    fn restart_only_keys_are_marked() {
        for key in [
            "state_dir",
            "listeners.client.addr",
            "reactor.backend",
            "workers.threads",
            "shutdown.drain_timeout",
            "log.format",
            "admin.addr",
            "journal.fsync",
            "limits.accept_rate",
            "limits.accept_burst",
            "webhooks",
            "outbox.max_batch_bytes",
            "email.host",
            "email.digest_interval",
        ] {
            assert!(needs_restart(key), "{key}");
        }
        for key in [
            "journal.max_replay",
            "limits.max_frame_bytes",
            "log.level",
            "heartbeat.interval",
            "routing.agent_grace",
            "assist.faq",
            "auth.leeway",
            "auth.keys",
            "admins",
            "limits.accept_rate_other",
        ] {
            assert!(!needs_restart(key), "{key}");
        }
    }
}
