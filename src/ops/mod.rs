//! Operations: systemd notification and watchdog, and the threads that serve
//! operators (the admin listener is [`admin`]).

pub(crate) mod admin;
pub mod notify;
pub(crate) mod watchdog;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::metrics::Metrics;
use crate::reactor::ReactorHandle;
use admin::{Admin, TestHooks};
use watchdog::Watchdog;

/// Environment variable that enables the admin listener's `/debug/` test hooks
/// (`1`). Never set it in production.
pub const TEST_HOOKS_ENV: &str = "SWITCHBOARD_TEST_HOOKS";

/// The operator-facing side of a running server: admin listener, watchdog, health.
pub(crate) struct Ops {
    metrics: Arc<Metrics>,
    admin: Option<Admin>,
    watchdog: Option<Watchdog>,
}

impl Ops {
    /// Starts the admin listener on `admin` (already bound) and, if systemd asked
    /// for one, the watchdog.
    pub fn start(
        metrics: Arc<Metrics>,
        admin: Option<(std::net::TcpListener, crate::config::AdminConfig)>,
        reactors: Arc<[ReactorHandle]>,
    ) -> std::io::Result<Self> {
        let hooks = (std::env::var(TEST_HOOKS_ENV).as_deref() == Ok("1")).then(|| TestHooks {
            reactors: reactors.clone(),
        });
        let admin = admin
            .map(|(listener, cfg)| Admin::spawn(listener, cfg, metrics.clone(), hooks))
            .transpose()?;
        let watchdog = Watchdog::spawn(metrics.clone())?;
        Ok(Self {
            metrics,
            admin,
            watchdog,
        })
    }

    /// The admin listener's bound address, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Admin::addr)
    }

    /// Everything is up: `/readyz` turns 200 and systemd hears `READY=1`.
    pub fn ready(&self, status: &str) {
        self.metrics.health.accepting.store(true, Ordering::Release);
        notify::ready(status);
    }

    /// Shutdown began: `/readyz` turns 503, systemd hears `STOPPING=1`, and the
    /// watchdog stops (systemd stops watching a stopping service).
    pub fn begin_shutdown(&mut self) {
        self.metrics
            .health
            .accepting
            .store(false, Ordering::Release);
        notify::stopping("draining connections");
        if let Some(w) = self.watchdog.take() {
            w.stop();
        }
    }

    /// Shutdown finished: the admin listener stops too.
    pub fn finish(mut self) {
        if let Some(a) = self.admin.take() {
            a.stop();
        }
    }
}
