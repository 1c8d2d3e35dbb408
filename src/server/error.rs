//! Why the daemon could not start.

use std::net::SocketAddr;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The state directory could not be created.
    #[error("state_dir {path}: cannot create it: {source}")]
    StateDir {
        /// The configured directory.
        path: std::path::PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The state directory (or the journal directory in it) cannot take new files
    /// from this process, or, missing, could not be created.
    #[error("state_dir {path}: {problem}")]
    StateDirUnusable {
        /// The directory concerned.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The configured reactor backend cannot run on this kernel.
    #[error("{0}")]
    Backend(String),
    /// The configuration breaks a documented bound.
    #[error("config: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// Authentication could not be set up (keys, dev secret, non-loopback dev use).
    #[error("auth: {0}")]
    Auth(#[from] crate::auth::AuthError),
    /// A thread, poller or waker could not be created.
    #[error("cannot start: {0}")]
    Io(#[from] std::io::Error),
    /// The journal could not be opened or recovered.
    #[error("journal: {0}")]
    Journal(String),
    /// Recovery found damage and `journal.on_damage` is `refuse`.
    #[error(
        "journal damaged in {dir}; refusing to start (journal.on_damage = \"refuse\").\n{report}\
         See it again with `switchboard journal check`; repair offline with `switchboard journal \
         salvage`, or start with journal.on_damage = \"salvage\" (tuning/README.md, runbook)"
    )]
    JournalDamaged {
        /// The journal directory.
        dir: std::path::PathBuf,
        /// What is damaged and what salvage would do.
        report: String,
    },
    /// The webhook outbox could not start.
    #[error("webhooks: {0}")]
    Outbox(#[from] crate::outbox::OutboxError),
    /// The mail thread could not start.
    #[error("email: {0}")]
    Mail(#[from] crate::mail::MailError),
    /// A certificate or key of `[listeners.client.tls]` cannot be used.
    #[error("listeners.client.tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A listener on a non-loopback address speaks plaintext only, and
    /// `allow_plaintext` does not say that is deliberate.
    #[error(
        "{key} = {addr} is not loopback and has no TLS: tokens and chat would cross the \
         network in clear. Add [listeners.client.tls] (cert, key), or set \
         listeners.client.allow_plaintext = true when a proxy in front terminates TLS"
    )]
    Plaintext {
        /// The listener's address key.
        key: &'static str,
        /// Its address.
        addr: SocketAddr,
    },
    /// An assistant library (FAQ, canned replies, spam rules) could not be loaded.
    #[error("assist: {0}")]
    Assist(#[from] crate::assist::LoadError),
}

impl From<crate::service::recovery::RecoveryError> for StartError {
    fn from(e: crate::service::recovery::RecoveryError) -> Self {
        use crate::service::recovery::RecoveryError;
        match e {
            RecoveryError::Journal(message) => Self::Journal(message),
            RecoveryError::Damaged { dir, report } => Self::JournalDamaged { dir, report },
        }
    }
}
