//! The development secret: what the daemon signs and checks tokens with when no
//! `[[auth.keys]]` are configured, so that trying Switchboard out needs no setup.
//!
//! It lives in `<state_dir>/dev-secret`: 32 random bytes, hex-encoded (64 ASCII
//! characters, no newline), mode 0600. The HMAC key is those ASCII bytes, so any JWT
//! library can use the file's text directly, e.g. PyJWT:
//! `jwt.encode(claims, open("data/dev-secret").read(), algorithm="HS256")`.
//!
//! Because anyone who can read the state directory can mint tokens with it, a daemon
//! using it must only listen on loopback: see [`require_loopback_for_dev_secret`].

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::error::AuthError;
use crate::config::{Config, MIN_SECRET_BYTES};

/// File name of the development secret inside `state_dir`.
pub const FILE_NAME: &str = "dev-secret";

/// Random bytes in a new development secret (hex-encoded to twice as many characters).
const RANDOM_BYTES: usize = 32;

/// Where the development secret of `state_dir` lives.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Reads `<state_dir>/dev-secret`, creating it (and `state_dir`) first if missing.
///
/// Returns the secret text with surrounding whitespace trimmed; its bytes are the HMAC
/// key. A new file gets 32 bytes from the OS random source, hex-encoded, mode 0600.
/// Creation is atomic: the content is written to a private temporary file that is
/// then hard-linked into place, so concurrent callers (two processes starting at
/// once) all end up with the same, complete secret. An existing file shorter than 32
/// bytes is an `InvalidData` error (delete it to have a new one made).
pub fn load_or_create(state_dir: &Path) -> io::Result<String> {
    let path = path(state_dir);
    match read(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    std::fs::create_dir_all(state_dir)?;
    let secret = generate()?;
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).map_err(io::Error::other)?;
    let tmp = state_dir.join(format!(".{FILE_NAME}.{}.tmp", hex(&suffix)));
    let linked = write_private(&tmp, &secret).and_then(|()| std::fs::hard_link(&tmp, &path));
    // The temporary name is only ever ours; failing to remove it is harmless.
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(secret),
        // Someone else created it between our read and our link: theirs wins.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(e),
    }
}

/// Reads an existing `<state_dir>/dev-secret` without creating anything: `None` when
/// there is none yet (a start would create it). Errors as [`load_or_create`] for a
/// file that cannot be read or is too short.
pub fn read_existing(state_dir: &Path) -> io::Result<Option<String>> {
    match read(&path(state_dir)) {
        Ok(secret) => Ok(Some(secret)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks that every listener binds a loopback address when the development secret is
/// in use, i.e. when `config.auth.keys` is empty.
///
/// `Server::start` calls this before binding anything, so a daemon that anyone on the
/// network could reach never accepts tokens signed with a secret lying in its state
/// directory. The error names the first offending listener (`listeners.client` or
/// `listeners.echo`); a new listener kind must be added to the list here.
/// IPv4-mapped IPv6 loopback (`::ffff:127.0.0.1`) counts as loopback.
pub fn require_loopback_for_dev_secret(config: &Config) -> Result<(), AuthError> {
    if !config.auth.keys.is_empty() {
        return Ok(());
    }
    let mut listeners = std::iter::once(("listeners.client", config.listeners.client.addr))
        .chain((config.listeners.echo.as_ref()).map(|l| ("listeners.echo", l.addr)));
    match listeners.find(|&(_, addr)| !is_loopback(addr)) {
        Some((listener, addr)) => Err(AuthError::DevSecretNotLoopback { listener, addr }),
        None => Ok(()),
    }
}

fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

fn read(path: &Path) -> io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let secret = text.trim();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} holds {} bytes, fewer than {MIN_SECRET_BYTES}; delete it to have a new one made",
                path.display(),
                secret.len()
            ),
        ));
    }
    Ok(secret.to_owned())
}

fn generate() -> io::Result<String> {
    let mut bytes = [0u8; RANDOM_BYTES];
    getrandom::getrandom(&mut bytes).map_err(io::Error::other)?;
    Ok(hex(&bytes))
}

fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::ListenerConfig;

    #[test]
    fn created_0600_as_64_hex_chars_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = load_or_create(&state).unwrap();
        assert_eq!(first.len(), 64, "{first:?}");
        assert!(
            first
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let file = path(&state);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), first, "no newline");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        let second = load_or_create(&state).unwrap();
        assert_eq!(first, second);
        // Only the secret is left behind, no temporary files.
        let names: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME]);
    }

    #[test]
    fn two_state_dirs_get_different_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(&dir.path().join("a")).unwrap();
        let b = load_or_create(&dir.path().join("b")).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn existing_file_is_trimmed_and_short_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "k".repeat(40);
        std::fs::write(path(dir.path()), format!("  {secret}\n")).unwrap();
        assert_eq!(load_or_create(dir.path()).unwrap(), secret);
        std::fs::write(path(dir.path()), "short\n").unwrap();
        let err = load_or_create(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn read_existing_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert!(read_existing(&state).unwrap().is_none());
        assert!(!state.exists(), "no directory made");
        let made = load_or_create(&state).unwrap();
        assert_eq!(read_existing(&state).unwrap(), Some(made));
        std::fs::write(path(&state), "short").unwrap();
        let err = read_existing(&state).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn concurrent_creators_agree() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().to_owned();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let state = state.clone();
                std::thread::spawn(move || load_or_create(&state).unwrap())
            })
            .collect();
        let secrets: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(secrets.windows(2).all(|w| w[0] == w[1]), "{secrets:?}");
    }

    fn listener(addr: &str) -> ListenerConfig {
        ListenerConfig {
            backlog: 16,
            ..ListenerConfig::on(addr.parse().unwrap())
        }
    }

    #[test]
    fn dev_secret_requires_loopback_listeners() {
        let mut c = Config::default();
        assert!(require_loopback_for_dev_secret(&c).is_ok());
        c.listeners.client = listener("[::1]:0");
        assert!(require_loopback_for_dev_secret(&c).is_ok());
        c.listeners.client = listener("[::ffff:127.0.0.1]:0");
        assert!(require_loopback_for_dev_secret(&c).is_ok());

        c.listeners.client = listener("0.0.0.0:7700");
        let err = require_loopback_for_dev_secret(&c).unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::DevSecretNotLoopback {
                    listener: "listeners.client",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("0.0.0.0:7700"), "{err}");

        c.listeners.client = listener("127.0.0.1:0");
        c.listeners.echo = Some(listener("10.1.2.3:7702"));
        let err = require_loopback_for_dev_secret(&c).unwrap_err();
        assert!(err.to_string().contains("listeners.echo"), "{err}");

        // With a configured key, any address is fine.
        c.auth.keys.push(crate::config::AuthKey {
            kid: "k".into(),
            secret: Some("s".repeat(32)),
            secret_file: None,
        });
        assert!(require_loopback_for_dev_secret(&c).is_ok());
    }
}
