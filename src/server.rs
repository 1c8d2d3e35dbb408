//! Starting and stopping the whole daemon: listeners, reactors, workers, and the
//! three-phase graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::millis;
use crate::config::Config;
use crate::handoff::{Command, Event, WorkerQueue};
use crate::metrics::Metrics;
use crate::ops::Ops;
use crate::reactor::admission::ConnLimits;
use crate::reactor::{self, ListenerKind, ReactorHandle};
use crate::service::conversation::{Shard, ShardSettings};
use crate::service::router::{Router, RouterSettings};
use crate::worker::{self, Links, Sessions};

mod changes;
mod error;
mod preflight;
mod reload;
pub use changes::ConfigChange;
pub use error::StartError;
pub use reload::{ReloadError, ReloadReport};

/// What a graceful shutdown achieved.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownReport {
    /// Time from the request to the last thread exiting.
    pub elapsed: Duration,
    /// Whether every phase finished before `shutdown.drain_timeout`.
    pub clean: bool,
}

/// A configuration that passed every check a start makes before binding (see
/// [`Server::prepare`]), with what those checks loaded: keys, assistant libraries,
/// the reactor backend.
#[derive(Debug)]
pub struct Prepared {
    config: Config,
    checked: preflight::Checked<crate::auth::Verifier>,
}

impl Prepared {
    /// The reactor backend the daemon will run on (`auto` resolved): `epoll` or `uring`.
    pub fn backend(&self) -> &'static str {
        self.checked.backend.name()
    }
}

/// A running daemon.
pub struct Server {
    client_addr: SocketAddr,
    echo_addr: Option<SocketAddr>,
    reactors: Arc<[ReactorHandle]>,
    reactor_threads: Vec<JoinHandle<()>>,
    worker_queues: Vec<WorkerQueue>,
    worker_threads: Vec<JoinHandle<()>>,
    /// The journal's writer; it ends (after a final sync) once the workers are gone.
    journal: Option<crate::journal::Journal>,
    /// Drops old closed conversations from the journal.
    retention: Option<crate::service::retention::Retention>,
    /// Webhook delivery threads (none without `[[webhooks]]`).
    outbox: Option<crate::outbox::Outbox>,
    /// The mail thread (none without `email.host`).
    mail: Option<crate::mail::Mail>,
    metrics: Arc<Metrics>,
    drain_timeout: Duration,
    ops: Ops,
    /// What a reload (SIGHUP) changes, and the configuration in force.
    live: reload::Live,
}

impl Server {
    /// Applies what can change in a running daemon from `new` (SIGHUP): JWT keys,
    /// heartbeat and frame limits, routing settings, the replay budget. Existing
    /// connections stay; new limits apply to what they do from now on. Fails, changing
    /// nothing, if `new` does not validate.
    pub fn reload(&self, new: &Config) -> Result<ReloadReport, ReloadError> {
        self.live.apply(new, &self.metrics)
    }

    /// Checks `config` as a start would before binding, creating nothing: ranges and
    /// cross-key rules, no two own listeners on one address, no development secret
    /// off loopback, `state_dir` writable (or creatable), secret files readable and
    /// long enough, assistant libraries loadable, the reactor backend usable. What
    /// `switchboard check-config` runs; [`Server::prepare`] runs the same checks.
    pub fn check(config: &Config) -> Result<(), StartError> {
        preflight::check(config).map(drop)
    }

    /// Hints `check-config` prints after [`Server::check`] passes (as warnings, exit
    /// 0): what the assistant libraries' content suggests about their settings.
    pub fn library_warnings(config: &Config) -> Vec<String> {
        crate::assist::faq_background_hint(&config.assist)
            .into_iter()
            .map(|h| format!("assist.faq: {h}"))
            .collect()
    }

    /// The checks of [`Server::check`], this time creating `state_dir` and the
    /// development secret when missing. Nothing is bound yet.
    pub fn prepare(config: &Config) -> Result<Prepared, StartError> {
        Ok(Prepared {
            checked: preflight::prepare(config)?,
            config: config.clone(),
        })
    }

    /// [`Server::prepare`] then [`Server::start_prepared`].
    pub fn start(config: &Config) -> Result<Self, StartError> {
        Self::start_prepared(Self::prepare(config)?)
    }

    /// Binds the listeners and starts reactor and worker threads.
    pub fn start_prepared(prepared: Prepared) -> Result<Self, StartError> {
        let Prepared { config, checked } = prepared;
        // Before any reactor or worker thread exists (see the module's doc).
        reactor::sys::allocator::default_purge_delay();
        let config = &config;
        let backend = checked.backend;
        let tls = checked.tls;
        let n_reactors = config.reactor_threads();
        let n_workers = config.worker_threads();
        let mut metrics = Metrics::new(n_reactors, n_workers);
        metrics.reactor_backend = backend.name();
        metrics.webhooks = crate::outbox::endpoint_metrics(config);
        if config.email.enabled() {
            metrics.email = Some(Arc::default());
        }
        let metrics = Arc::new(metrics);
        if let Some(t) = &tls {
            metrics.certificates.set(&t.certs);
        }
        let session_settings = Arc::new(std::sync::RwLock::new(Arc::new(
            reload::session_settings(config, checked.verifier),
        )));

        let bind = |cfg: &crate::config::ListenerConfig| {
            reactor::bind_group(cfg, n_reactors).map_err(|source| StartError::Bind {
                addr: cfg.addr,
                source,
            })
        };
        let client = bind(&config.listeners.client)?;
        let echo = config.listeners.echo.as_ref().map(bind).transpose()?;
        let client_addr = local_addr(&client)?;
        let echo_addr = echo.as_deref().map(local_addr).transpose()?;
        let admin = if config.admin.enabled {
            let l = crate::ops::admin::bind(&config.admin).map_err(|source| StartError::Bind {
                addr: config.admin.addr,
                source,
            })?;
            Some((l, config.admin.clone()))
        } else {
            None
        };
        let conn_limits = Arc::new(ConnLimits::new(&config.limits));
        let ledger = Arc::new(crate::ledger::Ledger::new(
            n_reactors,
            config.limits.max_connections as usize,
            metrics.pending_total.clone(),
        ));
        metrics.pending_limit.set(config.max_pending_total_bytes());

        let mut pending = Vec::with_capacity(n_reactors);
        let mut handles = Vec::with_capacity(n_reactors);
        for id in 0..n_reactors {
            let id = u16::try_from(id).unwrap_or(u16::MAX);
            let (p, h) = reactor::prepare(id, config, backend)?;
            pending.push(p);
            handles.push(h);
        }
        let reactors: Arc<[ReactorHandle]> = handles.into();

        let mut worker_queues = Vec::with_capacity(n_workers);
        let mut worker_rx = Vec::with_capacity(n_workers);
        let mut shard_txs = Vec::with_capacity(n_workers);
        let mut shard_rxs = Vec::with_capacity(n_workers);
        let mut control_txs = Vec::with_capacity(n_workers);
        let mut reply_txs = Vec::with_capacity(n_workers);
        for _ in 0..n_workers {
            let (tx, rx) = crate::queue::bounded(config.workers.queue_depth);
            let queue = WorkerQueue::new(tx, config.workers.queue_bytes);
            worker_rx.push((rx, queue.bytes()));
            worker_queues.push(queue);
            let (tx, rx) = crossbeam_channel::unbounded();
            shard_txs.push(tx);
            // Control and session replies: at most one per shard per admin request,
            // reload, retention pass or resuming connection (each bounded upstream).
            let (control_tx, control_rx) = crossbeam_channel::unbounded();
            control_txs.push(control_tx);
            let (reply_tx, reply_rx) = crossbeam_channel::unbounded();
            reply_txs.push(reply_tx);
            shard_rxs.push((rx, control_rx, reply_rx));
        }
        let (router_tx, router_rx) = crossbeam_channel::unbounded();
        let shard_txs: Arc<[_]> = shard_txs.into();
        // Attachments: one thread does their disk I/O. Its queue holds at most one job
        // per API request in flight (`api.max_in_flight` per reactor).
        let files = crate::files::store::Store::new(config.state_dir.join("files"));
        let (files_tx, files_rx) = crossbeam_channel::unbounded();
        let files_links = crate::worker::files::FilesLinks {
            reactors: reactors.clone(),
            shards: shard_txs.clone(),
            max_bytes: config.api.max_attachment_bytes,
            metrics: metrics.files.clone(),
        };
        // Detached: it ends when the workers (every sender) are gone.
        drop(crate::worker::files::spawn(
            files.clone(),
            files_rx,
            files_links,
        )?);
        // Console logins: argon2id checks on their own threads, over a bounded queue
        // (full: the reactor answers 503).
        let console = {
            let mut salt = [0u8; crate::console::password::SALT_BYTES];
            getrandom::getrandom(&mut salt)
                .map_err(|e| std::io::Error::other(format!("no random bytes: {e}")))?;
            let users = Arc::new(crate::console::Users::from_config(&config.console, &salt));
            let (tx, rx) = crossbeam_channel::bounded(config.console.login_queue);
            // Detached: they end when the reactors (every sender) are gone.
            drop(crate::worker::console_login::spawn(
                config.console.login_threads,
                users.clone(),
                rx,
                reactors.clone(),
            )?);
            reactor::ConsoleLinks {
                users,
                jobs: tx,
                ttl: config.console.token_ttl,
                per_minute: config.console.logins_per_minute,
                max_entries: config.console.max_rate_entries,
            }
        };
        let links = Links {
            reactors: reactors.clone(),
            shards: shard_txs,
            controls: control_txs.into(),
            sessions: reply_txs.into(),
            router: Some(router_tx),
            service_queue_depth: config.workers.service_queue_depth,
            files: Some(files_tx),
        };
        let libraries = checked.libraries;
        let live = reload::Live {
            config: std::sync::Mutex::new(config.clone()),
            sessions: session_settings.clone(),
            shards: links.controls.clone(),
            router: links.router.clone(),
            reactors: reactors.clone(),
            conn_limits: conn_limits.clone(),
            libraries: std::sync::Mutex::new(libraries.clone()),
        };
        let mut router = Router::new(RouterSettings::from_config(config));
        metrics
            .router
            .by_group
            .set_max_groups(config.admin.metric_groups);
        router.count_in(metrics.router.clone());
        let shard_settings = ShardSettings::from_config(config);
        let mut shards: Vec<Shard> = (0..n_workers)
            .map(|_| {
                let mut s = Shard::new(shard_settings.clone());
                s.set_assist(&libraries, &config.assist);
                s.set_ledger(ledger.clone());
                s
            })
            .collect();
        let journal = if config.journal.enabled {
            Some(crate::service::recovery::open_journal(
                config,
                &mut shards,
                &mut router,
                &metrics,
            )?)
        } else {
            None
        };
        let mut worker_threads = Vec::with_capacity(n_workers + 1);
        for (id, ((((events, queued_bytes), rxs), stats), shard)) in worker_rx
            .into_iter()
            .zip(shard_rxs)
            .zip(metrics.workers.iter())
            .zip(shards)
            .enumerate()
        {
            let (shard_rx, control_rx, replies_rx) = rxs;
            let parts = worker::WorkerParts {
                id,
                events: (events, queued_bytes),
                shard_rx,
                control_rx,
                replies_rx,
                sessions: Sessions::new(id, session_settings.clone()),
                shard,
                stats: stats.clone(),
                conversations: metrics.router.clone(),
                journal: journal.as_ref().map(|j| {
                    (
                        j.handle.clone(),
                        metrics.journal.clone(),
                        metrics.health.clone(),
                    )
                }),
                sched_slice_us: config.reactor.sched_slice_us,
            };
            worker_threads.push(worker::spawn(parts, links.clone())?);
        }
        let retention = journal
            .as_ref()
            .map(|j| {
                crate::service::retention::Retention::spawn(
                    j.handle.clone(),
                    links.controls.clone(),
                    config.journal.retention,
                    files,
                )
            })
            .transpose()?;
        // Webhooks read only committed records: they start with the journal's writer.
        let outbox = match &journal {
            Some(j) if !config.webhooks.is_empty() => Some(crate::outbox::Outbox::start(
                config,
                &j.reader,
                &j.handle,
                &metrics.webhooks,
            )?),
            _ => None,
        };
        // Email reads the journal the same way, on its own thread.
        let mail = match (&journal, &metrics.email) {
            (Some(j), Some(m)) => Some(crate::mail::Mail::start(
                config,
                &j.reader,
                &j.handle,
                m.clone(),
            )?),
            _ => None,
        };
        worker_threads.push(worker::spawn_router(
            router_rx,
            links,
            router,
            metrics.router.clone(),
        )?);
        let queues: Arc<[WorkerQueue]> = worker_queues.clone().into();

        let mut client = client.into_iter();
        let mut echo = echo.map(Vec::into_iter);
        let mut reactor_threads = Vec::with_capacity(n_reactors);
        let shared = reactor::Shared {
            workers: queues.clone(),
            limits: conn_limits.clone(),
            ledger: ledger.clone(),
            tick: crate::ops::watchdog::progress_tick(),
            console,
            tls: tls.as_ref().map(|t| t.config.clone()),
        };
        for (p, stats) in pending.into_iter().zip(metrics.reactors.iter()) {
            let mut listeners = Vec::with_capacity(2);
            if let Some(l) = client.next() {
                listeners.push((l, ListenerKind::Client));
            }
            if let Some(l) = echo.as_mut().and_then(Iterator::next) {
                let websocket = config.listeners.echo.as_ref().is_some_and(|e| e.websocket);
                let kind = if websocket {
                    ListenerKind::WsEcho
                } else {
                    ListenerKind::Echo
                };
                listeners.push((l, kind));
            }
            reactor_threads.push(reactor::spawn(
                p,
                config,
                listeners,
                stats.clone(),
                &shared,
            )?);
        }
        let ops = Ops::start(metrics.clone(), admin, reactors.clone())?;
        tracing::info!(
            %client_addr,
            echo_addr = ?echo_addr,
            admin_addr = ?ops.admin_addr(),
            reactors = n_reactors,
            workers = n_workers,
            backend = %backend.name(),
            "switchboard listening"
        );
        // READY=1 and /readyz: everything start-up must finish (journal recovery
        // included) comes before this line.
        ops.ready(&format!("listening on {client_addr}"));
        Ok(Self {
            client_addr,
            echo_addr,
            reactors,
            reactor_threads,
            worker_queues,
            worker_threads,
            metrics,
            drain_timeout: config.shutdown.drain_timeout,
            ops,
            journal,
            retention,
            outbox,
            mail,
            live,
        })
    }

    /// The bound admin HTTP address, when the admin listener is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.ops.admin_addr()
    }

    /// Test hook: reactor `reactor` sleeps for `d` at its next loop turn (to check
    /// that the watchdog notices). Not for production use.
    #[doc(hidden)]
    pub fn stall_reactor_for_test(&self, reactor: usize, d: Duration) {
        if let (Some(stats), Some(handle)) = (
            self.metrics.reactors.get(reactor),
            self.reactors.get(reactor),
        ) {
            stats.stall_ms.set(millis(d).max(1));
            handle.wake();
        }
    }

    /// The bound client-protocol address (the real port when configured with 0).
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The bound echo address, when the echo listener is on.
    pub fn echo_addr(&self) -> Option<SocketAddr> {
        self.echo_addr
    }

    /// Live counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Graceful shutdown, bounded by `shutdown.drain_timeout`:
    /// 1. reactors stop accepting and stop handing input to workers;
    /// 2. a barrier passes through every worker, so every reply to input read before
    ///    step 1 is queued at its reactor;
    /// 3. reactors send `Bye` to protocol clients, flush, close, and exit.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.ops.begin_shutdown();
        if let Some(r) = self.retention.take() {
            r.stop();
        }
        let start = Instant::now();
        let deadline = start + self.drain_timeout;
        tracing::info!("shutting down: no longer accepting");
        // Webhook threads wind down meanwhile; joined (bounded) at the end.
        if let Some(o) = self.outbox.as_mut() {
            o.signal_stop();
        }
        if let Some(m) = self.mail.as_mut() {
            m.signal_stop();
        }

        let (ack_tx, ack_rx) = crossbeam_channel::unbounded();
        for r in self.reactors.iter() {
            r.send(Command::StopInput(ack_tx.clone()));
            r.wake();
        }
        let mut clean = wait_acks(&ack_rx, self.reactors.len(), deadline);

        for q in &self.worker_queues {
            let left = deadline.saturating_duration_since(Instant::now());
            clean &= q.send_timeout(Event::Barrier(ack_tx.clone()), left);
        }
        clean &= wait_acks(&ack_rx, self.worker_queues.len(), deadline);

        for r in self.reactors.iter() {
            r.send(Command::Drain { deadline });
            r.wake();
        }
        for t in self.reactor_threads {
            clean &= t.join().is_ok();
        }
        // Reactors held the other senders: workers now see their queues close. The
        // reload handles hold senders to the shards and the router: gone too.
        drop(self.worker_queues);
        drop(self.live);
        for t in self.worker_threads {
            clean &= t.join().is_ok();
        }
        if let Some(o) = self.outbox.take() {
            clean &= o.stop(deadline);
        }
        if let Some(m) = self.mail.take() {
            clean &= m.stop(deadline);
        }
        if let Some(j) = self.journal {
            let crate::journal::Journal { handle, writer, .. } = j;
            handle.shutdown();
            clean &= writer.join().is_ok();
        }
        clean &= Instant::now() <= deadline;
        let report = ShutdownReport {
            elapsed: start.elapsed(),
            clean,
        };
        let accepted: Vec<u64> = self
            .metrics
            .reactors
            .iter()
            .map(|r| r.accepted.get())
            .collect();
        tracing::info!(
            elapsed_ms = report.elapsed.as_millis() as u64,
            clean,
            accepted_per_reactor = ?accepted,
            "stopped"
        );
        self.ops.finish();
        report
    }
}

fn wait_acks(rx: &crossbeam_channel::Receiver<()>, n: usize, deadline: Instant) -> bool {
    (0..n).all(|_| rx.recv_deadline(deadline).is_ok())
}

fn local_addr(group: &[std::net::TcpListener]) -> Result<SocketAddr, StartError> {
    let first = group
        .first()
        .ok_or_else(|| std::io::Error::other("no listener bound"))?;
    Ok(first.local_addr()?)
}
