//! `[console]`: the agent console's own logins (`POST /console/v1/login`), for teams
//! without their own single sign-on, and its `[[console.users]]` with argon2id
//! password hashes (`switchboard passwd` makes one).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The console's logins: their users, token lifetime and bounds.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Lifetime of a console token (`POST /console/v1/login`, `/refresh`); the
    /// console refreshes it before it ends. 1m to 24h.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Login attempts one IP address (an IPv6 /64) may make per minute on one
    /// reactor; the burst is the same number. Past it: 429 with `Retry-After`.
    pub logins_per_minute: u32,
    /// Addresses each reactor remembers for that rate; when full, the one whose
    /// bucket refills first is forgotten.
    pub max_rate_entries: usize,
    /// Logins waiting for their password check (argon2id, tens of milliseconds
    /// each, on the login thread); more at once: 503 with `Retry-After`.
    pub login_queue: usize,
    /// Threads that check passwords (1 to 4).
    pub login_threads: usize,
    /// The users who may log in with a password (none by default: every login is
    /// refused, and only tokens from the operator's own sign-on open the console).
    pub users: Vec<ConsoleUser>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(15 * 60),
            logins_per_minute: 10,
            max_rate_entries: 4096,
            login_queue: 32,
            login_threads: 1,
            users: Vec::new(),
        }
    }
}

/// Most `[[console.users]]` entries.
pub const MAX_CONSOLE_USERS: usize = 10_000;

/// One console user (`[[console.users]]`): the claims of the tokens a login with
/// its password earns. `Debug` and `Serialize` never show the hash.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUser {
    /// The login name, also the user id (`sub`) of its tokens: 1 to 256 bytes, no
    /// control characters.
    pub name: String,
    /// The password's argon2id hash as a PHC string (`$argon2id$v=19$m=…`), as
    /// `switchboard passwd` prints it.
    #[serde(skip_serializing)]
    pub password_hash: String,
    /// `agent` or `admin` (an admin also gets the supervisor view).
    #[serde(default = "agent")]
    pub role: String,
    /// Routing groups the user serves.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The name visitors and colleagues see (default: `name`).
    #[serde(default)]
    pub display_name: Option<String>,
    /// Conversations served at once (default: `routing.default_capacity`).
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// The user's tenant (default: the empty tenant).
    #[serde(default)]
    pub tenant: String,
}

fn agent() -> String {
    "agent".into()
}

impl std::fmt::Debug for ConsoleUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleUser")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("role", &self.role)
            .field("groups", &self.groups)
            .field("display_name", &self.display_name)
            .field("max_concurrent", &self.max_concurrent)
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// Why a `password_hash` is not one the console takes.
pub fn check_password_hash(phc: &str) -> Result<(), String> {
    let parsed = argon2::PasswordHash::new(phc)
        .map_err(|e| format!("not a PHC string ({e}); make one with `switchboard passwd`"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "algorithm {:?}: only argon2id is accepted",
            parsed.algorithm.as_str()
        ));
    }
    argon2::Params::try_from(&parsed).map_err(|e| format!("bad argon2 parameters: {e}"))?;
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err("no salt or no hash in it".into());
    }
    Ok(())
}

impl ConsoleConfig {
    /// Checks what the types cannot: `(key, reason)` of the first problem.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(Duration::from_secs(60)..=Duration::from_secs(86_400)).contains(&self.token_ttl) {
            return Err(("console.token_ttl", "from 1m to 24h".into()));
        }
        if !(1..=10_000).contains(&self.logins_per_minute) {
            return Err(("console.logins_per_minute", "from 1 to 10000".into()));
        }
        if !(1..=1_000_000).contains(&self.max_rate_entries) {
            return Err(("console.max_rate_entries", "from 1 to 1000000".into()));
        }
        if !(1..=10_000).contains(&self.login_queue) {
            return Err(("console.login_queue", "from 1 to 10000".into()));
        }
        if !(1..=4).contains(&self.login_threads) {
            return Err(("console.login_threads", "from 1 to 4".into()));
        }
        if self.users.len() > MAX_CONSOLE_USERS {
            return Err((
                "console.users",
                format!("at most {MAX_CONSOLE_USERS} users"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for u in &self.users {
            u.validate()?;
            if !seen.insert(u.name.as_str()) {
                return Err((
                    "console.users.name",
                    format!("{:?} appears more than once", u.name),
                ));
            }
        }
        Ok(())
    }
}

impl ConsoleUser {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let name = &self.name;
        if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
            return Err((
                "console.users.name",
                format!("{name:?}: 1 to 256 bytes, no control characters"),
            ));
        }
        if let Err(why) = check_password_hash(&self.password_hash) {
            return Err((
                "console.users.password_hash",
                format!("user {name:?}: {why}"),
            ));
        }
        if self.role != "agent" && self.role != "admin" {
            return Err((
                "console.users.role",
                format!("user {name:?}: \"agent\" or \"admin\""),
            ));
        }
        if self.groups.len() > 64 || self.groups.iter().any(|g| g.is_empty() || g.len() > 1024) {
            return Err((
                "console.users.groups",
                format!("user {name:?}: at most 64 groups of 1 to 1024 bytes"),
            ));
        }
        if let Some(d) = &self.display_name
            && (d.is_empty() || d.len() > 256)
        {
            return Err((
                "console.users.display_name",
                format!("user {name:?}: 1 to 256 bytes"),
            ));
        }
        if self.max_concurrent == Some(0) {
            return Err((
                "console.users.max_concurrent",
                format!("user {name:?}: must be positive"),
            ));
        }
        if self.tenant.len() > 1024 {
            return Err((
                "console.users.tenant",
                format!("user {name:?}: at most 1024 bytes"),
            ));
        }
        Ok(())
    }

    /// Whether the hash's memory cost is below the OWASP minimum for argon2id
    /// (19 MiB): such a hash is cheap to guess (a warning, not an error: tests use
    /// cheap hashes).
    pub fn weak_hash(&self) -> bool {
        argon2::PasswordHash::new(&self.password_hash)
            .ok()
            .and_then(|h| argon2::Params::try_from(&h).ok())
            .is_some_and(|p| p.m_cost() < 19 * 1024 || p.t_cost() < 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash of "correct horse" with small parameters.
    fn hash() -> String {
        use crate::console::password;
        password::hash(b"correct horse", &[5; 16], password::cheap_params()).unwrap()
    }

    fn user(name: &str) -> ConsoleUser {
        ConsoleUser {
            name: name.into(),
            password_hash: hash(),
            role: "agent".into(),
            groups: vec!["support".into()],
            display_name: None,
            max_concurrent: None,
            tenant: String::new(),
        }
    }

    fn check(users: Vec<ConsoleUser>) -> Result<(), (&'static str, String)> {
        ConsoleConfig {
            users,
            ..ConsoleConfig::default()
        }
        .validate()
    }

    #[test]
    fn users_are_validated() {
        assert!(check(vec![user("alice"), user("bob")]).is_ok());
        let dup = check(vec![user("alice"), user("alice")]).unwrap_err();
        assert_eq!(dup.0, "console.users.name");
        assert_eq!(check(vec![user("")]).unwrap_err().0, "console.users.name");
        assert_eq!(
            check(vec![user("a\nb")]).unwrap_err().0,
            "console.users.name"
        );
        let mut u = user("alice");
        u.role = "visitor".into();
        assert_eq!(check(vec![u]).unwrap_err().0, "console.users.role");
        let mut u = user("alice");
        u.max_concurrent = Some(0);
        assert_eq!(
            check(vec![u]).unwrap_err().0,
            "console.users.max_concurrent"
        );
        let mut u = user("alice");
        u.groups = vec![String::new()];
        assert_eq!(check(vec![u]).unwrap_err().0, "console.users.groups");
    }

    #[test]
    fn only_argon2id_phc_strings_are_hashes() {
        assert!(check_password_hash(&hash()).is_ok());
        let argon2i = hash().replacen("argon2id", "argon2i", 1);
        assert!(
            check_password_hash(&argon2i)
                .unwrap_err()
                .contains("only argon2id")
        );
        assert!(check_password_hash("hunter2").unwrap_err().contains("PHC"));
        assert!(check_password_hash("$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHRzYWx0$abc").is_err());
        let mut u = user("alice");
        u.password_hash = "plain".into();
        let e = check(vec![u]).unwrap_err();
        assert_eq!(e.0, "console.users.password_hash");
        assert!(!e.1.contains("plain"), "{e:?}");
        assert!(user("a").weak_hash());
    }

    #[test]
    fn bounds_are_checked_and_hashes_never_show() {
        let bad = |f: fn(&mut ConsoleConfig)| {
            let mut c = ConsoleConfig::default();
            f(&mut c);
            c.validate().unwrap_err().0
        };
        assert_eq!(
            bad(|c| c.token_ttl = Duration::from_secs(5)),
            "console.token_ttl"
        );
        assert_eq!(bad(|c| c.login_queue = 0), "console.login_queue");
        assert_eq!(bad(|c| c.login_threads = 9), "console.login_threads");
        assert_eq!(
            bad(|c| c.logins_per_minute = 0),
            "console.logins_per_minute"
        );
        assert_eq!(bad(|c| c.max_rate_entries = 0), "console.max_rate_entries");
        let u = user("alice");
        assert!(!format!("{u:?}").contains("argon2id"));
        assert!(!serde_json::to_string(&u).unwrap().contains("argon2id"));
        let parsed: ConsoleUser = toml::from_str(&format!(
            "name = \"bob\"\npassword_hash = \"{}\"\ngroups = [\"sales\"]\n",
            hash()
        ))
        .unwrap();
        assert_eq!(parsed.role, "agent");
        assert!(
            toml::from_str::<ConsoleUser>("name = \"x\"\npassword_hash = \"y\"\nrank = 1\n")
                .is_err()
        );
    }
}
