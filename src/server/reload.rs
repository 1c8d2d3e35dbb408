//! Reloading the configuration (SIGHUP) without dropping a connection: JWT keys,
//! connection limits, heartbeat timeouts, routing settings and the replay budget take
//! effect at once; keys that shape threads, sockets or files need a restart and are
//! reported as such. A new configuration that does not validate changes nothing.

use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use super::{Server, StartError};
use crate::clock::millis;
use crate::config::Config;
use crate::handoff::{Command, LiveLimits};
use crate::ops::limits::ConnLimits;
use crate::reactor::ReactorHandle;
use crate::service::conversation::ShardSettings;
use crate::service::router::RouterSettings;
use crate::service::{RouterMsg, ShardMsg};
use crate::worker::{SessionSettings, SharedSettings};

/// What a reload reaches.
pub(crate) struct Live {
    /// The configuration in force.
    pub config: Mutex<Config>,
    pub sessions: SharedSettings,
    pub shards: Arc<[Sender<ShardMsg>]>,
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
    /// Sections whose new values are in force.
    pub applied: Vec<&'static str>,
    /// Keys that changed but take effect only after a restart (ignored now).
    pub need_restart: Vec<&'static str>,
}

/// Session settings from a configuration and the verifier built from it.
pub(crate) fn session_settings(
    config: &Config,
    verifier: crate::auth::Verifier,
) -> SessionSettings {
    SessionSettings {
        verifier,
        heartbeat_ms: super::millis_u32(config.heartbeat.interval),
        idle_timeout_ms: super::millis_u32(config.heartbeat.idle_timeout),
        max_frame: config.limits.max_frame_bytes,
        shards: config.worker_threads(),
        max_replay: u64::from(config.journal.max_replay),
        max_record: (config.journal.enabled).then_some(config.journal.max_record_bytes as usize),
    }
}

/// Router settings from a configuration.
pub(crate) fn router_settings(config: &Config) -> RouterSettings {
    let r = &config.routing;
    RouterSettings {
        default_group: r.default_group.clone(),
        default_capacity: r.default_capacity,
        bot_capacity: r.bot_capacity,
        agent_grace_ms: millis(r.agent_grace),
    }
}

/// Conversation shard settings from a configuration.
pub(crate) fn shard_settings(config: &Config) -> ShardSettings {
    let r = &config.routing;
    ShardSettings {
        typing_interval_ms: millis(r.typing_interval),
        history_page_max: usize::from(r.history_page_max),
        max_frame: config.limits.max_frame_bytes as usize,
        max_pending: config.limits.max_pending_bytes,
        max_held: config.limits.max_held_requests,
        journal: config.journal.enabled,
    }
}

/// The connection limits reactors take from a configuration.
fn live_limits(config: &Config) -> LiveLimits {
    LiveLimits {
        max_frame_bytes: config.limits.max_frame_bytes,
        max_pending_bytes: config.limits.max_pending_bytes,
        max_pending_total: config.max_pending_total_bytes(),
        stall_ms: millis(config.limits.stall_timeout),
        handshake_ms: millis(config.heartbeat.handshake_timeout),
        idle_ms: millis(config.heartbeat.idle_timeout),
        linger_ms: millis(config.limits.close_linger),
    }
}

/// The keys that differ between `old` and `new` but only apply at start.
fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut check = |differs: bool, key: &'static str| {
        if differs {
            v.push(key);
        }
    };
    check(old.state_dir != new.state_dir, "state_dir");
    check(old.listeners != new.listeners, "listeners");
    check(old.reactor != new.reactor, "reactor");
    check(old.workers != new.workers, "workers");
    check(old.shutdown != new.shutdown, "shutdown");
    check(old.log.format != new.log.format, "log.format");
    check(old.admin != new.admin, "admin");
    let journal = |c: &Config| {
        let mut j = c.journal.clone();
        j.max_replay = 0;
        j
    };
    check(journal(old) != journal(new), "journal");
    check(
        old.limits.accept_rate != new.limits.accept_rate
            || old.limits.accept_burst != new.limits.accept_burst,
        "limits.accept_rate, limits.accept_burst",
    );
    v
}

impl Server {
    /// Applies what can change in a running daemon from `new` (SIGHUP): JWT keys,
    /// heartbeat and frame limits, routing settings, the replay budget. Existing
    /// connections stay; new limits apply to what they do from now on. Fails, changing
    /// nothing, if `new` does not validate.
    pub fn reload(&self, new: &Config) -> Result<ReloadReport, ReloadError> {
        // What `check-config` and a start would refuse, a reload refuses too.
        let checked = super::preflight::check(new)?;
        let verifier = match checked.verifier {
            Some(v) => v,
            // The development secret of a new `state_dir` (not in force before a
            // restart, but this is what a start creates).
            None => crate::auth::Verifier::from_config(new).map_err(StartError::from)?,
        };
        let sessions = session_settings(new, verifier);
        let live = &self.live;
        let libraries = checked.libraries;
        libraries.carry_uses_from(&live.libraries.lock().unwrap_or_else(|e| e.into_inner()));
        let mut current = live.config.lock().unwrap_or_else(|e| e.into_inner());
        let mut report = ReloadReport {
            need_restart: restart_only(&current, new),
            ..ReloadReport::default()
        };
        // A changed worker count would change the shard of every conversation.
        let sessions = SessionSettings {
            shards: current.worker_threads(),
            ..sessions
        };
        *live.sessions.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(sessions);
        report.applied.push("auth");
        let limits = live_limits(new);
        self.metrics.pending_limit.set(limits.max_pending_total);
        for r in live.reactors.iter() {
            if r.send(Command::Limits(limits)) {
                r.wake();
            }
        }
        report.applied.extend(["limits", "heartbeat"]);
        let settings = ShardSettings {
            journal: current.journal.enabled,
            ..shard_settings(new)
        };
        for (shard, q) in live.shards.iter().enumerate() {
            let _ = q.send(ShardMsg::Settings {
                shard,
                settings: settings.clone(),
            });
        }
        if let Some(router) = &live.router {
            let _ = router.send(RouterMsg::Settings(router_settings(new)));
        }
        report.applied.push("routing");
        for (shard, q) in live.shards.iter().enumerate() {
            let _ = q.send(ShardMsg::Assist {
                shard,
                libraries: libraries.clone(),
                config: new.assist.clone(),
            });
        }
        *live.libraries.lock().unwrap_or_else(|e| e.into_inner()) = libraries;
        report.applied.push("assist");
        live.conn_limits.set(&new.limits);
        // Keep the restart-only values in force, take the rest.
        let mut next = new.clone();
        next.state_dir = current.state_dir.clone();
        next.listeners = current.listeners.clone();
        next.reactor = current.reactor.clone();
        next.workers = current.workers.clone();
        next.shutdown = current.shutdown.clone();
        next.log.format = current.log.format;
        next.admin = current.admin.clone();
        next.journal = crate::config::JournalConfig {
            max_replay: new.journal.max_replay,
            ..current.journal.clone()
        };
        next.limits.accept_rate = current.limits.accept_rate;
        next.limits.accept_burst = current.limits.accept_burst;
        *current = next;
        Ok(report)
    }
}
