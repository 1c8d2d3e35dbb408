//! Email: offline notifications to a group's address and reply digests to visitors
//! who went away, read from the journal like the webhooks (`[email]`, off without
//! `email.host`).
//!
//! One thread (never a reactor or worker) reads committed records in journal order
//! from the journal's start, feeds them to the sans-IO [`core::Mailer`], and sends
//! what falls due over SMTP (`lettre`'s blocking transport). What was mailed is kept
//! per conversation in `<state_dir>/mail/marks.log` (synced before the thread goes
//! on), so a restart replays the journal and finds exactly the mails still due. At
//! least once: a crash after the SMTP server accepted a mail but before its mark was
//! synced sends it again.

mod compose;
mod core;
mod log;
mod profile;
mod thread;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::config::{CaFileError, Config, CredentialsError};
use crate::journal::{JournalHandle, JournalReader};
use crate::metrics::email::EmailMetrics;

pub use log::LogError;

/// Why email could not start.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// `<state_dir>/mail` could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The marks file could not be read or written.
    #[error("{0}")]
    Log(#[from] LogError),
    /// The SMTP credentials could not be read.
    #[error("{0}")]
    Credentials(#[from] CredentialsError),
    /// `email.ca_file` could not be used.
    #[error("{0}")]
    CaFile(#[from] CaFileError),
    /// The SMTP transport could not be set up (TLS parameters of `email.host`).
    #[error("email.host: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    /// `email.from` does not parse (checked by the configuration already).
    #[error("email.from: {0}")]
    From(String),
    /// The thread could not be started.
    #[error("cannot start the mail thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The running mail thread.
pub(crate) struct Mail {
    /// Dropped to tell the thread to stop.
    stop: Option<Sender<()>>,
    thread: Option<(JoinHandle<()>, Receiver<()>)>,
}

impl Mail {
    /// Starts the mail thread of `config` (which has `email.host`).
    pub(crate) fn start(
        config: &Config,
        reader: &JournalReader,
        journal: &JournalHandle,
        metrics: Arc<EmailMetrics>,
    ) -> Result<Self, MailError> {
        let dir = config.state_dir.join("mail");
        std::fs::create_dir_all(&dir).map_err(|source| MailError::Dir {
            path: dir.clone(),
            source,
        })?;
        let (log, marks) = log::MarksLog::open(&log::MarksLog::path(&dir))?;
        let smtp = thread::transport(&config.email)?;
        let from = config
            .email
            .from
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|e: lettre::address::AddressError| MailError::From(e.to_string()))?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let job = thread::Job {
            cfg: config.email.clone(),
            smtp,
            from,
            log,
            marks,
            // Read here, before any client can write: what comes after is news.
            start_end: reader.frontier.get(),
            reader: reader.clone(),
            journal: journal.clone(),
            metrics,
            stop: stopped,
        };
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let handle = std::thread::Builder::new()
            .name("mail".into())
            .spawn(move || {
                let _done = done_tx;
                thread::run(job);
            })?;
        tracing::info!(host = config.email.host.as_deref().unwrap_or_default(),
            port = config.email.port, tls = ?config.email.tls, "email started");
        Ok(Self {
            stop: Some(stop),
            thread: Some((handle, done)),
        })
    }

    /// Tells the thread to stop (it finishes the SMTP exchange in progress, if any).
    pub(crate) fn signal_stop(&mut self) {
        drop(self.stop.take());
    }

    /// Stops the thread and waits for it until `deadline`. A mail still being sent
    /// then is sent again after the next start. Whether the thread ended in time.
    pub(crate) fn stop(mut self, deadline: Instant) -> bool {
        self.signal_stop();
        let Some((handle, done)) = self.thread.take() else {
            return true;
        };
        let _ = done.recv_deadline(deadline);
        if handle.is_finished() {
            handle.join().is_ok()
        } else {
            tracing::warn!(
                "mail thread still in an SMTP exchange at shutdown; left behind (its mail goes again after the next start)"
            );
            false
        }
    }
}
