//! The `switchboard` daemon and its command-line tools.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};
use switchboard::auth::{Claims, ROLE_NAMES, Verifier};
use switchboard::config::LogFormat;
use switchboard::{Config, Server};

/// mimalloc: the per-message allocations cost far less than with glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Switchboard: customer-service connection gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML); built-in defaults when omitted.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the daemon (the default).
    Run,
    /// Check a configuration file as `run` would before binding, creating nothing:
    /// values, listeners, `state_dir`, secret files, assistant libraries, the reactor
    /// backend. Exit 0 when `run` would start (warnings, e.g. an admin listener off
    /// loopback, go to stderr), 2 naming the problem. The file is the argument:
    /// `check-config FILE` (`--config` is refused here).
    CheckConfig {
        /// The file to check.
        file: Option<PathBuf>,
    },
    /// Inspect or repair the journal in `state_dir` (see `proto-spec/JOURNAL.md` §4).
    #[command(subcommand)]
    Journal(JournalCmd),
    /// Print a signed access token (JWT, HS256) on stdout, for trying things out and
    /// for tests. Signs with the configured key (`--kid`, else the first), or with the
    /// development secret in `state_dir` (created if missing) when none is configured.
    Token(TokenArgs),
    /// Make a new HTTP API key: the credential (shown once: give it to the back end)
    /// goes to stdout, the `[[api.keys]]` entry to paste into the config (the SHA-256
    /// of the secret, never the secret) to stderr.
    ApiKey(ApiKeyArgs),
    /// Hash a console password: prints its argon2id PHC string on stdout, for the
    /// `password_hash` of a `[[console.users]]` entry. Asks on the terminal (twice,
    /// without echo), or reads one line from stdin with `--stdin`.
    Passwd(PasswdArgs),
}

#[derive(Debug, clap::Args)]
struct PasswdArgs {
    /// Read the password from the first line of stdin (for scripts).
    #[arg(long)]
    stdin: bool,
    /// Also print, on stderr, a `[[console.users]]` entry for this login name.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ApiKeyArgs {
    /// The key's id (1 to 64 characters of A-Z a-z 0-9 -).
    #[arg(long)]
    id: String,
    /// Scopes, comma-separated: conversations:read, conversations:write,
    /// messages:write, agents:read, notices:write, admin.
    #[arg(long, value_delimiter = ',', required = true)]
    scopes: Vec<String>,
    /// The tenant the key reaches.
    #[arg(long, default_value = "")]
    tenant: String,
}

/// `switchboard journal ...`.
#[derive(Debug, Subcommand)]
enum JournalCmd {
    /// Read the journal without changing it: segments, records, every damaged range
    /// (segment, offset, length), the conversations affected and what salvage would
    /// do. Exit 0 when clean, 1 on damage, 2 when it cannot be read.
    Check,
    /// Repair a damaged journal with the daemon stopped: keep every valid record,
    /// record each hole as a gap entry, reserve what may have been used, save the
    /// damaged bytes aside and cover them (as `journal.on_damage = "salvage"` does at
    /// start). Exit 0 when done (or nothing to do), 2 on failure.
    Salvage,
}

/// `switchboard token`: the claims of the token to mint.
#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// Role of the token's holder.
    #[arg(long, value_parser = PossibleValuesParser::new(ROLE_NAMES.map(|(name, _)| name)))]
    role: String,
    /// User id (`sub` claim).
    #[arg(long)]
    sub: String,
    /// Display name (defaults to the user id).
    #[arg(long)]
    name: Option<String>,
    /// Groups, comma-separated (e.g. `sales,support`).
    #[arg(long, value_delimiter = ',', value_name = "GROUP[,GROUP...]")]
    groups: Vec<String>,
    /// Tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// An agent's capacity: conversations served at once.
    #[arg(long, value_name = "N")]
    max_concurrent: Option<u32>,
    /// Lifetime of the token, e.g. `90s`, `1h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: Duration,
    /// Id of the configured key to sign with (default: the first key).
    #[arg(long)]
    kid: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Cmd::Run) {
        Cmd::CheckConfig { file } => match (file, cli.config) {
            (Some(file), None) => check_config(&file),
            (file, config) => check_config_usage(file.as_deref(), config.as_deref()),
        },
        Cmd::Token(args) => token(cli.config.as_deref(), args),
        Cmd::ApiKey(args) => api_key(args),
        Cmd::Passwd(args) => passwd(args),
        Cmd::Journal(cmd) => journal(cli.config.as_deref(), cmd),
        Cmd::Run => run(cli.config.as_deref()),
    }
}

/// `check-config FILE`: the checks `run` makes before binding (`Server::check`).
fn check_config(file: &Path) -> ExitCode {
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    for w in config.warnings() {
        eprintln!("{}: warning: {w}", file.display());
    }
    match Server::check(&config) {
        Ok(()) => {
            for w in Server::library_warnings(&config) {
                eprintln!("{}: warning: {w}", file.display());
            }
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}

/// `check-config` takes its file one way only, as its argument: with `--config` as
/// well it would be unclear which file was checked.
fn check_config_usage(file: Option<&Path>, config: Option<&Path>) -> ExitCode {
    let why = match (file, config) {
        (Some(file), Some(config)) => format!(
            "check-config got two files, --config {} and {}; it checks one, given as its \
             argument: `switchboard check-config {}`",
            config.display(),
            file.display(),
            file.display()
        ),
        (None, Some(config)) => format!(
            "check-config takes the file as its argument, not with --config: \
             `switchboard check-config {}`",
            config.display()
        ),
        _ => "check-config needs the file to check: `switchboard check-config FILE`".to_owned(),
    };
    eprintln!("switchboard: {why}");
    ExitCode::from(2)
}

/// `switchboard journal check|salvage`.
fn journal(config_path: Option<&Path>, cmd: JournalCmd) -> ExitCode {
    let config = match config_path.map(Config::load).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    match cmd {
        JournalCmd::Check => match switchboard::journal_tools::check(&config) {
            Ok(c) => {
                print!("{}", c.report);
                ExitCode::from(u8::from(c.damaged))
            }
            Err(e) => {
                eprintln!("switchboard: {e}");
                ExitCode::from(2)
            }
        },
        JournalCmd::Salvage => {
            init_logging(&config);
            match switchboard::journal_tools::salvage(&config) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchboard: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.as_secs() == 0 => Err("must be at least 1s".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// `api-key`: a new credential on stdout, its config entry on stderr.
fn api_key(args: ApiKeyArgs) -> ExitCode {
    if !switchboard::config::valid_key_id(&args.id) {
        eprintln!("switchboard: --id: 1 to 64 characters of A-Z a-z 0-9 -");
        return ExitCode::from(2);
    }
    let mut scopes = Vec::new();
    for s in &args.scopes {
        match serde_json::from_value::<switchboard::api::Scope>(s.as_str().into()) {
            Ok(scope) => scopes.push(scope),
            Err(_) => {
                eprintln!("switchboard: --scopes: unknown scope {s:?}");
                return ExitCode::from(2);
            }
        }
    }
    let mut random = [0u8; 32];
    if let Err(e) = getrandom::getrandom(&mut random) {
        eprintln!("switchboard: no random bytes: {e}");
        return ExitCode::from(2);
    }
    let (credential, hash) = switchboard::api::keys::new_key(&args.id, &random);
    let names: Vec<String> = scopes.iter().map(|s| format!("{:?}", s.name())).collect();
    eprintln!(
        "[[api.keys]]\nid = {}\ntenant = {}\nsecret_sha256 = \"{hash}\"\nscopes = [{}]",
        serde_json::Value::from(args.id.as_str()),
        serde_json::Value::from(args.tenant.as_str()),
        names.join(", ")
    );
    println!("{credential}");
    ExitCode::SUCCESS
}

/// `passwd`: the password's argon2id hash on stdout; problems on stderr, exit 2.
fn passwd(args: PasswdArgs) -> ExitCode {
    use switchboard::console::password;
    let pw = if args.stdin {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(_) => line.trim_end_matches(['\n', '\r']).to_owned(),
            Err(e) => {
                eprintln!("switchboard: reading stdin: {e}");
                return ExitCode::from(2);
            }
        }
    } else if std::io::stdin().is_terminal() {
        let first = match prompt_hidden("Password: ") {
            Ok(p) => p,
            Err(e) => {
                eprintln!("switchboard: {e}");
                return ExitCode::from(2);
            }
        };
        match prompt_hidden("Again: ") {
            Ok(again) if again == first => first,
            Ok(_) => {
                eprintln!("switchboard: the passwords differ");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("switchboard: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        eprintln!(
            "switchboard: stdin is not a terminal: pass --stdin to read the password from it"
        );
        return ExitCode::from(2);
    };
    let mut salt = [0u8; password::SALT_BYTES];
    if let Err(e) = getrandom::getrandom(&mut salt) {
        eprintln!("switchboard: no random bytes: {e}");
        return ExitCode::from(2);
    }
    let hashed = password::hash(pw.as_bytes(), &salt, password::default_params());
    let mut pw = pw;
    zeroize::Zeroize::zeroize(&mut pw);
    match hashed {
        Ok(phc) => {
            if let Some(name) = args.user {
                eprintln!(
                    "[[console.users]]\nname = {}\npassword_hash = \"{phc}\"\nrole = \"agent\"\n\
                     groups = [\"support\"]",
                    serde_json::Value::from(name)
                );
            }
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::from(2)
        }
    }
}

/// Reads a line from the terminal on stdin with echo off (restored after).
fn prompt_hidden(prompt: &str) -> std::io::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    use std::io::Write as _;
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    tcsetattr(&stdin, OptionalActions::Flush, &quiet)?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    tcsetattr(&stdin, OptionalActions::Flush, &saved)?;
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Mints a token; only the token goes to stdout, problems go to stderr with exit 2.
fn token(config_path: Option<&Path>, args: TokenArgs) -> ExitCode {
    let config = match config_path.map(Config::load).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    let verifier = match Verifier::from_config(&config) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = verifier.dev_secret() {
        eprintln!(
            "switchboard: no [auth] keys configured; signed with the development secret {}",
            path.display()
        );
    }
    let mut claims = Claims::new(args.sub, args.role, SystemTime::now(), args.ttl);
    claims.name = args.name;
    claims.groups = args.groups.into_iter().filter(|g| !g.is_empty()).collect();
    claims.tenant = args.tenant;
    claims.max_concurrent = args.max_concurrent;
    match verifier.mint(&claims, args.kid.as_deref()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(config_path: Option<&Path>) -> ExitCode {
    let config = match config_path.map(Config::load).transpose() {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    let level = init_logging(&config);
    for w in config.warnings() {
        tracing::warn!(key = w.key, "configuration: {}", w.message);
    }
    // Signals are routed to a channel before any thread starts, so none is missed.
    let signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    // What `check-config` checks, refused the same way (exit 2); then binding and the
    // journal: exit 1 (a port taken, an I/O error), 2 for damage `journal.on_damage =
    // "refuse"` refuses.
    let prepared = match Server::prepare(&config) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start: configuration refused");
            return ExitCode::from(2);
        }
    };
    let server = match Server::start_prepared(prepared) {
        Ok(s) => s,
        // Like a refused configuration, nothing a restart can fix.
        Err(e @ switchboard::StartError::JournalDamaged { .. }) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::from(2);
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut signals = signals;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if tx.send(sig).is_err() && sig != signal_hook::consts::SIGHUP {
                // A second signal during the drain means "now".
                std::process::exit(130);
            }
        }
    });
    while let Ok(sig) = rx.recv() {
        if sig == signal_hook::consts::SIGHUP {
            reload(&server, config_path, level.as_ref());
            continue;
        }
        tracing::info!(signal = sig, "signal received");
        break;
    }
    drop(rx);
    let report = server.shutdown();
    if report.clean {
        ExitCode::SUCCESS
    } else {
        tracing::warn!("drain timeout reached; some output may not have been delivered");
        ExitCode::SUCCESS
    }
}

/// Changes the log level of a running daemon (absent when `RUST_LOG` rules).
type LevelHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

fn init_logging(config: &Config) -> Option<LevelHandle> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let from_env = tracing_subscriber::EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let filter = from_env
        .or_else(|| tracing_subscriber::EnvFilter::try_new(&config.log.level).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match config.log.format {
        LogFormat::Json => registry.with(fmt.json()).init(),
        LogFormat::Text => registry.with(fmt).init(),
    }
    (!fixed).then_some(handle)
}

/// SIGHUP: reads the configuration file again and applies what can change live; a
/// file that does not load or validate is logged and changes nothing.
fn reload(server: &Server, path: Option<&Path>, level: Option<&LevelHandle>) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: running on built-in defaults (no --config): nothing to reload");
        return;
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reload rejected; the previous configuration stays in force");
            return;
        }
    };
    match server.reload(&config) {
        Ok(report) => {
            if let Some(h) = level
                && let Ok(f) = tracing_subscriber::EnvFilter::try_new(&config.log.level)
            {
                let _ = h.reload(f);
            }
            // What changed, key by key (never a secret: keys are shown by id).
            for c in &report.changes {
                if c.restart {
                    tracing::warn!(key = %c.key, old = ?c.old, new = ?c.new,
                        "configuration changed; takes effect only after a restart");
                } else {
                    tracing::info!(key = %c.key, old = ?c.old, new = ?c.new, "configuration changed");
                }
            }
            let waiting = report.changes.iter().filter(|c| c.restart).count();
            tracing::info!(
                file = %path.display(),
                changed = report.changes.len() - waiting,
                waiting_for_restart = waiting,
                "configuration reloaded (secret files and assistant libraries read again)"
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "reload rejected; the previous configuration stays in force");
        }
    }
}
