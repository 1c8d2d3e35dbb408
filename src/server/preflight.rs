//! Everything the daemon checks before it binds a socket, on one path for both
//! callers: `switchboard run` ([`prepare`], via `Server::start`) and `switchboard
//! check-config` ([`check`]), and a reload (SIGHUP) too. What `check` passes, `run`
//! starts with, short of a failing bind (a port taken by another process) and of the
//! journal's own state (`switchboard journal check`).
//!
//! The two modes differ only in side effects: `prepare` creates `state_dir` and the
//! development secret when missing; `check` creates nothing and asks instead whether
//! they could be created.

use std::io;
use std::path::Path;

use rustix::fs::{Access, AtFlags, CWD};

use super::error::StartError;
use crate::assist::Libraries;
use crate::auth::Verifier;
use crate::config::Config;
use crate::reactor::{self, Backend};

/// What the checks produced, for the start (or reload) that follows them.
#[derive(Debug)]
pub(crate) struct Checked<V> {
    /// The token verifier (for [`check`]: `None` when the development secret would be
    /// created by a start).
    pub verifier: V,
    /// The assistant libraries, loaded and indexed.
    pub libraries: Libraries,
    /// The reactor backend, `auto` resolved.
    pub backend: Backend,
    /// The client listener's certificates, loaded and checked (`None`: no TLS).
    pub tls: Option<crate::tls::TlsServer>,
}

/// Side effects allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Create nothing (`check-config`, reload).
    Check,
    /// Create `state_dir` and the development secret (`run`).
    Start,
}

/// The checks of a start, creating nothing.
pub(crate) fn check(config: &Config) -> Result<Checked<Option<Verifier>>, StartError> {
    preflight(config, Mode::Check, Verifier::from_config_without_creating)
}

/// The checks of a start, creating `state_dir` and the development secret if
/// missing; logs the backend `auto` chose.
pub(crate) fn prepare(config: &Config) -> Result<Checked<Verifier>, StartError> {
    preflight(config, Mode::Start, Verifier::from_config)
}

fn preflight<V>(
    config: &Config,
    mode: Mode,
    verifier: impl FnOnce(&Config) -> Result<V, crate::auth::AuthError>,
) -> Result<Checked<V>, StartError> {
    // Ranges, cross-key rules, no two own listeners on one address.
    config.validate()?;
    crate::auth::require_loopback_for_dev_secret(config)?;
    state_dir(config, mode)?;
    // Secret files (present, long enough) or the development secret.
    let verifier = verifier(config)?;
    let libraries = Libraries::load(&config.assist)?;
    let tls = match &config.listeners.client.tls {
        Some(t) => Some(crate::tls::TlsServer::load(t)?),
        None => None,
    };
    plaintext(config)?;
    let backend =
        reactor::resolve_backend(config.reactor.backend, mode == Mode::Start).map_err(|e| {
            StartError::Backend(format!(
                "reactor.backend = \"{}\" cannot be used: {e}",
                config.reactor.backend.name()
            ))
        })?;
    Ok(Checked {
        verifier,
        libraries,
        backend,
        tls,
    })
}

/// The client listener on a non-loopback address must terminate TLS, unless
/// `allow_plaintext` says a proxy in front does.
fn plaintext(config: &Config) -> Result<(), StartError> {
    let client = &config.listeners.client;
    if client.tls.is_none() && !client.allow_plaintext && !client.addr.ip().is_loopback() {
        return Err(StartError::Plaintext {
            key: "listeners.client.addr",
            addr: client.addr,
        });
    }
    Ok(())
}

/// `state_dir` (and the journal directory in it, when there is one) must take new
/// files from this process; a start creates `state_dir` first, a check asks whether
/// it could.
fn state_dir(config: &Config, mode: Mode) -> Result<(), StartError> {
    let dir = &config.state_dir;
    // Written to: the journal, or the development secret (only made when missing,
    // but a check cannot know it will still be there).
    let writes = config.journal.enabled || config.auth.keys.is_empty();
    // Asked first in both modes, so a start refuses with a check's words.
    usable_dir(dir, writes)?;
    if mode == Mode::Start {
        std::fs::create_dir_all(dir).map_err(|source| StartError::StateDir {
            path: dir.clone(),
            source,
        })?;
    }
    let journal = dir.join("journal");
    if config.journal.enabled && std::fs::symlink_metadata(&journal).is_ok() {
        usable_dir(&journal, true)?;
    }
    Ok(())
}

/// `dir` is a directory (one this process may create files in, with `write`), or
/// does not exist and its nearest existing ancestor is a directory it may create
/// files in (so a start can create it). Asked of the kernel (`faccessat` with the
/// effective ids), which also knows ACLs and read-only mounts.
fn usable_dir(dir: &Path, write: bool) -> Result<(), StartError> {
    let unusable = |problem: String| StartError::StateDirUnusable {
        path: dir.to_owned(),
        problem,
    };
    let mut existing = None;
    for candidate in dir.ancestors() {
        // A relative path's last ancestor is "": the working directory.
        let candidate = if candidate.as_os_str().is_empty() {
            Path::new(".")
        } else {
            candidate
        };
        match std::fs::metadata(candidate) {
            Ok(meta) => {
                existing = Some((candidate, meta));
                break;
            }
            // Missing, or below a file: what is above says why.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                continue;
            }
            Err(e) => {
                return Err(unusable(format!(
                    "cannot look at {}: {e}",
                    candidate.display()
                )));
            }
        }
    }
    let Some((found, meta)) = existing else {
        return Err(unusable("no part of the path exists".into()));
    };
    let exists = found == dir;
    if !meta.is_dir() {
        return Err(unusable(if exists {
            "not a directory".into()
        } else {
            format!("{} is not a directory", found.display())
        }));
    }
    if exists && !write {
        return Ok(());
    }
    match rustix::fs::accessat(
        CWD,
        found,
        Access::WRITE_OK | Access::EXEC_OK,
        AtFlags::EACCESS,
    ) {
        Ok(()) => Ok(()),
        Err(e) => {
            let e = io::Error::from(e);
            Err(unusable(if exists {
                format!("not writable by this process: {e}")
            } else {
                format!(
                    "does not exist and cannot be created in {}: {e}",
                    found.display()
                )
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(dir: &Path) -> String {
        usable_dir(dir, true).unwrap_err().to_string()
    }

    #[test]
    fn a_writable_or_creatable_directory_passes() {
        let tmp = tempfile::tempdir().unwrap();
        usable_dir(tmp.path(), true).unwrap();
        let deep = tmp.path().join("a/b/c");
        usable_dir(&deep, true).unwrap();
        assert!(!tmp.path().join("a").exists(), "a check creates nothing");
        usable_dir(Path::new("relative-state-dir-that-is-not-there"), true).unwrap();
    }

    #[test]
    fn an_existing_directory_needs_to_be_writable_only_if_written() {
        // procfs refuses new files to everyone, root included.
        let procfs = Path::new("/proc/sys/kernel");
        let err = problem(procfs);
        assert!(err.contains("not writable by this process"), "{err}");
        usable_dir(procfs, false).unwrap();
        // Missing, it must be creatable either way.
        assert!(usable_dir(&procfs.join("x"), false).is_err());
        // Journal off and keys configured: nothing is written there.
        let mut config = Config {
            state_dir: procfs.to_owned(),
            ..Config::default()
        };
        assert!(
            state_dir(&config, Mode::Check).is_err(),
            "the journal writes"
        );
        config.journal.enabled = false;
        assert!(
            state_dir(&config, Mode::Check).is_err(),
            "the dev secret may"
        );
        config.auth.keys.push(crate::config::AuthKey {
            kid: "k".into(),
            secret: Some("k".repeat(32)),
            secret_file: None,
        });
        state_dir(&config, Mode::Check).unwrap();
    }

    #[test]
    fn a_file_in_the_way_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = problem(&file);
        assert!(
            err.contains("not a directory") && err.contains("state_dir"),
            "{err}"
        );
        let below = file.join("state");
        let err = problem(&below);
        assert!(
            err.contains(&format!("{} is not a directory", file.display())),
            "{err}"
        );
    }

    #[test]
    fn check_creates_nothing_and_prepare_creates_state_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config {
            state_dir: tmp.path().join("state"),
            ..Config::default()
        };
        let checked = check(&config).unwrap();
        assert!(checked.verifier.is_none(), "no dev secret yet");
        assert!(!config.state_dir.exists());
        let prepared = prepare(&config).unwrap();
        assert!(prepared.verifier.dev_secret().is_some());
        assert!(config.state_dir.join("dev-secret").exists());
        // Now the check reads the secret the start made.
        assert!(check(&config).unwrap().verifier.is_some());
    }

    #[test]
    fn a_journal_directory_in_the_way_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config {
            state_dir: tmp.path().to_owned(),
            ..Config::default()
        };
        std::fs::write(tmp.path().join("journal"), "not a directory").unwrap();
        let err = check(&config).err().unwrap().to_string();
        assert!(
            err.contains("journal") && err.contains("not a directory"),
            "{err}"
        );
    }
}
