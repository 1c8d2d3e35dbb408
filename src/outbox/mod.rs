//! The outbox: webhooks read from the journal. Each `[[webhooks]]` endpoint has its
//! own thread, which reads committed records in journal order (never one a crash
//! could take back), turns them into events, and POSTs them in signed batches (Standard
//! Webhooks) with a durable cursor per endpoint in `<state_dir>/outbox/`: at least
//! once, in journal order, the same `webhook-id` for the same batch across retries and
//! restarts. The contract is `proto-spec/WEBHOOKS.md`.

mod cursor;
mod delivery;
mod events;
mod sign;
mod thread;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::config::{Config, WebhookSecretError};
use crate::journal::{JournalHandle, JournalReader};
use crate::metrics::webhooks::EndpointMetrics;

/// Why the outbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// `<state_dir>/outbox` could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An endpoint's secret could not be read.
    #[error("webhook {id:?}: {source}")]
    Secret {
        /// The endpoint.
        id: String,
        /// Why.
        source: WebhookSecretError,
    },
    /// An endpoint's cursor file could not be read (the message names the file).
    #[error("{0}")]
    Cursor(String),
    /// A thread could not be started.
    #[error("cannot start a webhook thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The running endpoint threads.
pub(crate) struct Outbox {
    /// Dropped to tell the threads to stop.
    stop: Option<Sender<()>>,
    threads: Vec<(String, JoinHandle<()>, Receiver<()>)>,
}

/// The metric blocks of `config`'s endpoints, in order.
pub(crate) fn endpoint_metrics(config: &Config) -> Vec<Arc<EndpointMetrics>> {
    config
        .webhooks
        .iter()
        .map(|w| Arc::new(EndpointMetrics::new(&w.id)))
        .collect()
}

impl Outbox {
    /// Starts one thread per endpoint of `config` (`metrics` in the same order).
    pub(crate) fn start(
        config: &Config,
        reader: &JournalReader,
        journal: &JournalHandle,
        metrics: &[Arc<EndpointMetrics>],
    ) -> Result<Self, OutboxError> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let mut outbox = Self {
            stop: Some(stop),
            threads: Vec::new(),
        };
        if config.webhooks.is_empty() {
            return Ok(outbox);
        }
        let dir = config.state_dir.join("outbox");
        std::fs::create_dir_all(&dir).map_err(|source| OutboxError::Dir {
            path: dir.clone(),
            source,
        })?;
        for (cfg, m) in config.webhooks.iter().zip(metrics) {
            let key = cfg.key().map_err(|source| OutboxError::Secret {
                id: cfg.id.clone(),
                source,
            })?;
            let cursor_path = cursor::path(&dir, &cfg.id);
            // Read here, so a damaged cursor stops the start with its path.
            let cursor = cursor::CursorFile::open(&cursor_path)
                .map_err(|e| OutboxError::Cursor(e.to_string()))?;
            let ep = thread::Endpoint {
                cfg: cfg.clone(),
                key,
                max_batch_bytes: config.outbox.max_batch_bytes,
                cursor_path,
                cursor,
                reader: reader.clone(),
                journal: journal.clone(),
                metrics: m.clone(),
                stop: stopped.clone(),
            };
            let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
            let handle = std::thread::Builder::new()
                .name(format!("webhook-{}", cfg.id))
                .spawn(move || {
                    let _done = done_tx;
                    thread::run(ep);
                })?;
            outbox.threads.push((cfg.id.clone(), handle, done));
        }
        tracing::info!(endpoints = outbox.threads.len(), "webhook outbox started");
        Ok(outbox)
    }

    /// Tells the threads to stop (they finish the attempt in progress, if any).
    pub(crate) fn signal_stop(&mut self) {
        drop(self.stop.take());
    }

    /// Stops the threads and waits for them until `deadline`. A POST still in flight
    /// then is abandoned: its batch is sent again, with the same `webhook-id`, after
    /// the next start. Whether every thread ended in time.
    pub(crate) fn stop(mut self, deadline: Instant) -> bool {
        self.signal_stop();
        let mut clean = true;
        for (id, handle, done) in self.threads.drain(..) {
            // Disconnected when the thread ends.
            let _ = done.recv_deadline(deadline);
            if handle.is_finished() {
                clean &= handle.join().is_ok();
            } else {
                tracing::warn!(endpoint = %id, "webhook thread still in a POST at shutdown; left behind (its batch goes again after the next start)");
                clean = false;
            }
        }
        clean
    }
}
