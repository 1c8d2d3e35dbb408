//! What the `visitor` and `agent` examples share: where to connect, which token to
//! present (given, or minted from a secret file with `switchboard::auth`), and how to
//! print what arrives.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use switchboard::Config;
use switchboard::auth::{Claims, Verifier, dev_secret};
use switchboard::client::{Client, ClientConfig};
use switchboard::config::AuthKey;
use switchboard::protocol::ErrorCode;
use switchboard::protocol::messages::{Msg, flags};

/// Errors of the examples, printable and shareable across threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connection and identity options common to both examples.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Address of the daemon's client listener.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub addr: String,
    /// Token to present (a JWT from `switchboard token …`); when absent, one is
    /// minted from `--secret-file`.
    #[arg(long)]
    pub token: Option<String>,
    /// Secret to mint a token with when `--token` is absent: the daemon's development
    /// secret (`<state_dir>/dev-secret`, created when a daemon without
    /// `[[auth.keys]]` starts), or, with `--kid`, the file of that configured key.
    #[arg(long, default_value = "./data/dev-secret")]
    pub secret_file: PathBuf,
    /// Key id of `--secret-file` among the daemon's `[[auth.keys]]`.
    #[arg(long)]
    pub kid: Option<String>,
    /// User id to mint the token for (the `sub` claim).
    #[arg(long)]
    pub sub: Option<String>,
    /// Display name to mint the token with.
    #[arg(long)]
    pub name: Option<String>,
    /// Tenant to mint the token for.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Give up after this many seconds, whatever happens.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

impl ConnectArgs {
    /// The overall time bound.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// `--token`, or a token minted for `sub` (unless `--sub` says otherwise) in
    /// `role` with `groups`, signed with `--secret-file`.
    pub fn token(&self, role: &str, sub: &str, groups: &[String]) -> Result<String, BoxError> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let mut config = Config::default();
        let kid = match &self.kid {
            Some(kid) => {
                config.auth.keys = vec![AuthKey {
                    kid: kid.clone(),
                    secret: None,
                    secret_file: Some(self.secret_file.clone()),
                }];
                Some(kid.as_str())
            }
            None => {
                config.state_dir = dev_secret_dir(&self.secret_file)?;
                None
            }
        };
        let verifier = Verifier::from_config(&config)?;
        let mut claims = Claims::new(
            self.sub.as_deref().unwrap_or(sub),
            role,
            SystemTime::now(),
            // Long enough for a session: tokens are checked only at the handshake.
            Duration::from_secs(3600),
        );
        claims.name.clone_from(&self.name);
        claims.groups = groups.to_vec();
        claims.tenant.clone_from(&self.tenant);
        Ok(verifier.mint(&claims, kid)?)
    }

    /// The SDK settings for `--addr` and `token`: the SDK's defaults, named as the
    /// examples.
    pub fn client_config(&self, token: String) -> ClientConfig {
        ClientConfig {
            client_name: concat!("switchboard-example/", env!("CARGO_PKG_VERSION")).to_owned(),
            ..ClientConfig::new(self.addr.clone(), token)
        }
    }

    /// Connects and completes the handshake.
    pub fn connect(&self, token: String) -> Result<Client, BoxError> {
        Ok(Client::connect(self.client_config(token))?)
    }
}

/// The state directory whose development secret `file` is. Without `--kid` the file
/// must be a daemon's `dev-secret`, and must exist: minting never creates it (a
/// secret the daemon does not know would only make tokens it rejects).
fn dev_secret_dir(file: &Path) -> Result<PathBuf, BoxError> {
    if file.file_name().and_then(|n| n.to_str()) != Some(dev_secret::FILE_NAME) {
        return Err(format!(
            "{} is not a development secret (`{}`); pass --kid for a configured key's secret file, or --token",
            file.display(),
            dev_secret::FILE_NAME
        )
        .into());
    }
    if !file.is_file() {
        return Err(format!(
            "no development secret at {}: start the daemon first (without [[auth.keys]] it \
             creates one in its state_dir), or pass --token",
            file.display()
        )
        .into());
    }
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
    Ok(dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf))
}

/// Prints one server message the way both examples show it.
pub fn show(out: &mut dyn Write, me: &str, msg: &Msg) -> std::io::Result<()> {
    match msg {
        Msg::Queued(q) if q.position == 0 => writeln!(
            out,
            "[conversation {}] left the {} queue",
            q.conversation, q.group
        ),
        Msg::Queued(q) => writeln!(
            out,
            "[conversation {}] waiting in {} at position {}",
            q.conversation, q.group, q.position
        ),
        Msg::Assigned(a) => writeln!(
            out,
            "[conversation {}] {} ({}) is served by {} ({}) in {}",
            a.conversation, a.visitor, a.visitor_name, a.agent, a.agent_name, a.group
        ),
        Msg::Transfer(t) => writeln!(
            out,
            "[conversation {}] transferred to {me}; note: {}",
            t.conversation, t.note
        ),
        Msg::Deliver(d) => writeln!(
            out,
            "[conversation {}] {}: {}{}",
            d.conversation,
            d.sender,
            d.body,
            // Sent while this user was away, replayed on resume (PROTOCOL.md 10.1).
            if d.flags & flags::REPLAY != 0 {
                " (replayed)"
            } else {
                ""
            }
        ),
        Msg::Close(c) => writeln!(
            out,
            "[conversation {}] closed: {}",
            c.conversation, c.reason
        ),
        Msg::Notice(n) => writeln!(out, "[notice from {}] {}", n.from, n.text),
        Msg::Error(e) => writeln!(
            out,
            "[error {}] {} (conversation {})",
            code_name(e.code),
            e.message,
            e.conversation
        ),
        Msg::Bye(b) => writeln!(out, "[bye {}]{}", code_name(b.code), detail(&b.message)),
        Msg::Accepted(_) | Msg::Pong(_) => Ok(()),
        other => writeln!(out, "[{:?}]", other.kind()),
    }
}

/// `" <message>"`, or nothing for an empty message.
pub fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" {message}")
    }
}

/// `501 shutting_down`: a status code and its name.
pub fn code_name(code: u16) -> String {
    let name = ErrorCode::from_u16(code).map_or("unknown", ErrorCode::name);
    format!("{code} {name}")
}
