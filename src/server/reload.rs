//! Reloading the configuration (SIGHUP) without dropping a connection: JWT keys,
//! connection limits, heartbeat timeouts, routing settings and the replay budget take
//! effect at once; keys that shape threads, sockets or files need a restart and are
//! reported as such. A new configuration that does not validate changes nothing.

use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use super::error::StartError;
use crate::config::Config;
use crate::handoff::{Command, LiveLimits};
use crate::reactor::ReactorHandle;
use crate::reactor::admission::ConnLimits;
use crate::service::conversation::ShardSettings;
use crate::service::router::RouterSettings;
use crate::service::{RouterMsg, ShardControl, tell_shards};
use crate::worker::{SessionSettings, SharedSettings};

/// What a reload reaches.
pub(crate) struct Live {
    /// The configuration in force.
    pub config: Mutex<Config>,
    pub sessions: SharedSettings,
    pub shards: Arc<[Sender<ShardControl>]>,
    pub router: Option<Sender<RouterMsg>>,
    pub reactors: Arc<[ReactorHandle]>,
    pub conn_limits: Arc<ConnLimits>,
    /// The assistant libraries in force.
    pub libraries: Mutex<crate::assist::Libraries>,
}

/// Why a reload was refused (the old configuration stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration breaks a bound or cannot set up authentication.
    #[error("{0}")]
    Invalid(#[from] StartError),
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Every key whose value differs from the configuration in force, with its old
    /// and new value (never a secret) and whether it waits for a restart; empty when
    /// the file says what is in force. Secret files and assistant libraries are read
    /// again on every reload whatever this says.
    pub changes: Vec<super::changes::ConfigChange>,
}

/// Session settings from a configuration and the verifier built from it.
pub(crate) fn session_settings(
    config: &Config,
    verifier: crate::auth::Verifier,
) -> SessionSettings {
    SessionSettings {
        verifier,
        heartbeat_ms: crate::clock::millis_u32(config.heartbeat.interval),
        idle_timeout_ms: crate::clock::millis_u32(config.heartbeat.idle_timeout),
        max_frame: config.limits.max_frame_bytes,
        shards: config.worker_threads(),
        max_replay: u64::from(config.journal.max_replay),
        max_record: (config.journal.enabled).then_some(config.journal.max_record_bytes as usize),
        api_keys: config.api.key_table(),
        visitor_address: config.routing.visitor_address,
    }
}

/// The configuration in force after reloading `new` over `current`: `new`, but the
/// keys that apply only at start keep their `current` values (see
/// [`super::changes::needs_restart`]).
fn in_force(current: &Config, new: &Config) -> Config {
    let mut next = new.clone();
    next.state_dir = current.state_dir.clone();
    next.listeners = crate::config::Listeners {
        client: crate::config::ListenerConfig {
            tls: new.listeners.client.tls.clone(),
            allow_plaintext: new.listeners.client.allow_plaintext,
            ..current.listeners.client.clone()
        },
        ..current.listeners.clone()
    };
    next.reactor = current.reactor.clone();
    next.workers = current.workers.clone();
    next.shutdown = current.shutdown.clone();
    next.log.format = current.log.format;
    next.admin = current.admin.clone();
    next.web = current.web.clone();
    next.console = current.console.clone();
    next.api.max_body_bytes = current.api.max_body_bytes;
    next.api.max_in_flight = current.api.max_in_flight;
    next.api.max_export_bytes = current.api.max_export_bytes;
    next.api.max_attachment_bytes = current.api.max_attachment_bytes;
    next.api.attachment_types = current.api.attachment_types.clone();
    next.api.max_uploads_in_flight = current.api.max_uploads_in_flight;
    next.journal = crate::config::JournalConfig {
        max_replay: new.journal.max_replay,
        ..current.journal.clone()
    };
    next.limits.accept_rate = current.limits.accept_rate;
    next.limits.accept_burst = current.limits.accept_burst;
    next
}

impl Live {
    /// Applies what can change in a running daemon from `new` (`Server::reload`).
    pub(super) fn apply(
        &self,
        new: &Config,
        metrics: &crate::metrics::Metrics,
    ) -> Result<ReloadReport, ReloadError> {
        // What `check-config` and a start would refuse, a reload refuses too.
        let checked = super::preflight::check(new).inspect_err(|e| {
            if matches!(e, StartError::Tls(_)) {
                metrics.certificates.reload_failures.inc();
            }
        })?;
        let tls = checked.tls;
        let verifier = match checked.verifier {
            Some(v) => v,
            // The development secret of a new `state_dir` (not in force before a
            // restart, but this is what a start creates).
            None => crate::auth::Verifier::from_config(new).map_err(StartError::from)?,
        };
        let sessions = session_settings(new, verifier);
        let live = self;
        let libraries = checked.libraries;
        libraries.carry_uses_from(&live.libraries.lock().unwrap_or_else(|e| e.into_inner()));
        let mut current = live.config.lock().unwrap_or_else(|e| e.into_inner());
        let report = ReloadReport {
            changes: super::changes::changes(&current, new),
        };
        // A changed worker count would change the shard of every conversation.
        let sessions = SessionSettings {
            shards: current.worker_threads(),
            ..sessions
        };
        *live.sessions.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(sessions);
        let limits = LiveLimits::from_config(new);
        metrics.pending_limit.set(limits.max_pending_total);
        // Visitor tokens (sites are fixed at start) are signed with the new keys, so
        // they verify under what the sessions now check.
        let signer = if current.web.sites.is_empty() && current.console.users.is_empty() {
            None
        } else {
            crate::reactor::visitor_signer(new)
        };
        for r in live.reactors.iter() {
            let mut sent = r.send(Command::Limits(limits));
            sent |= r.send(Command::Tls(tls.as_ref().map(|t| t.config.clone())));
            if let Some(v) = &signer {
                sent |= r.send(Command::VisitorSigner(v.clone()));
            }
            if sent {
                r.wake();
            }
        }
        let settings = ShardSettings {
            journal: current.journal.enabled,
            ..ShardSettings::from_config(new)
        };
        tell_shards(&live.shards, ShardControl::Settings(settings));
        if let Some(router) = &live.router {
            let _ = router.send(RouterMsg::Settings(RouterSettings::from_config(new)));
        }
        let assist = ShardControl::Assist {
            libraries: libraries.clone(),
            config: new.assist.clone(),
        };
        tell_shards(&live.shards, assist);
        *live.libraries.lock().unwrap_or_else(|e| e.into_inner()) = libraries;
        live.conn_limits.set(&new.limits);
        metrics
            .certificates
            .set(tls.as_ref().map_or(&[][..], |t| &t.certs[..]));
        *current = in_force(&current, new);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::server::changes::changes;

    /// What the reload keeps from the configuration in force is exactly what the
    /// reload log says waits for a restart.
    #[test]
    fn what_stays_in_force_is_what_is_reported_as_restart_only() {
        let current = Config::default();
        let mut new = current.clone();
        new.state_dir = "/elsewhere".into();
        new.listeners.client.backlog = 7;
        new.listeners.echo = Some(new.listeners.client.clone());
        new.listeners.echo.as_mut().unwrap().addr.set_port(7709);
        new.reactor.threads = 3;
        new.workers.queue_depth = 9;
        new.shutdown.drain_timeout = Duration::from_secs(9);
        new.log.format = crate::config::LogFormat::Json;
        new.log.level = "debug".into();
        new.admin.max_connections = 9;
        new.journal.fsync_interval = Duration::from_millis(9);
        new.journal.max_replay = 9;
        new.limits.accept_rate = 9;
        new.limits.accept_burst = 9;
        new.limits.max_frame_bytes = 9000;
        new.heartbeat.interval = Duration::from_secs(9);
        new.routing.typing_interval = Duration::from_secs(9);
        new.assist.rate_burst = 9;
        new.auth.leeway = Duration::from_secs(9);
        new.web.visitor_tokens_per_minute = 9;
        let next = in_force(&current, &new);
        let applied = changes(&current, &next);
        let waiting = changes(&next, &new);
        assert!(applied.iter().all(|c| !c.restart), "{applied:#?}");
        assert!(waiting.iter().all(|c| c.restart), "{waiting:#?}");
        assert_eq!(applied.len(), 7, "{applied:#?}");
        assert_eq!(waiting.len(), 13, "{waiting:#?}");
        // And together they are everything that differs.
        assert_eq!(changes(&current, &new).len(), applied.len() + waiting.len());
    }
}
