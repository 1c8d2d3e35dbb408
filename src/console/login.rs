//! The sans-IO half of the console's login endpoints: the request body
//! ([`LoginRequest::parse`]), the users table ([`Users`]), the claims a login or a
//! refresh earns ([`Account::claims`]) and the response body ([`response_json`]).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::password::{self, MAX_PASSWORD_BYTES, SALT_BYTES};
use crate::auth::Claims;
use crate::clock::UnixMs;
use crate::config::ConsoleConfig;

/// Largest login body accepted, in bytes (413 past it).
pub const MAX_LOGIN_BODY_BYTES: usize = 4096;

/// Longest user name accepted in a login, in bytes.
pub const MAX_USERNAME_BYTES: usize = 256;

/// What the endpoints came to (the `outcome` label of
/// `switchboard_console_logins_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A login with the right password (200).
    Ok,
    /// A known user with the wrong password (401).
    BadPassword,
    /// No such user (401, the same answer and cost as a wrong password).
    UnknownUser,
    /// A refresh with a valid console token (200).
    Refreshed,
    /// A refresh without a valid console token (401).
    RefreshRefused,
    /// Too many logins from one address (429).
    RateLimited,
    /// Too many logins waiting for their password check (503).
    Busy,
    /// A foreign `Origin` (403).
    NotAllowed,
    /// Not a request the endpoints take: method, length, type, body (4xx).
    BadRequest,
    /// No key to sign with, or the token could not be signed (5xx).
    Failed,
}

impl Outcome {
    /// Every outcome, in metric slot order.
    pub const ALL: [Outcome; 10] = [
        Self::Ok,
        Self::BadPassword,
        Self::UnknownUser,
        Self::Refreshed,
        Self::RefreshRefused,
        Self::RateLimited,
        Self::Busy,
        Self::NotAllowed,
        Self::BadRequest,
        Self::Failed,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::BadPassword => "bad_password",
            Self::UnknownUser => "unknown_user",
            Self::Refreshed => "refreshed",
            Self::RefreshRefused => "refresh_refused",
            Self::RateLimited => "rate_limited",
            Self::Busy => "busy",
            Self::NotAllowed => "not_allowed",
            Self::BadRequest => "bad_request",
            Self::Failed => "failed",
        }
    }

    /// The slot in [`Outcome::ALL`].
    pub fn slot(self) -> usize {
        Self::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// Why a login body was refused (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    /// Not JSON, or not `{"username","password"}` (wrong types, unknown fields).
    #[error("bad request body: {0}")]
    BadBody(String),
    /// A field empty or over its bound (or a user name with a control character).
    #[error("`{field}` is 1 to {max} bytes (a user name without control characters)")]
    Length {
        /// The field.
        field: &'static str,
        /// Its bound.
        max: usize,
    },
}

/// A login body: `{"username": "...", "password": "..."}`. `Debug` never shows the
/// password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The user's `name` in `[[console.users]]`.
    pub username: String,
    /// The password.
    pub password: String,
}

impl Drop for LoginRequest {
    /// The password does not outlive its check in this process's memory (copies in
    /// socket buffers are another matter).
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.password);
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl LoginRequest {
    /// The request in `body` (JSON), bounds checked.
    pub fn parse(body: &[u8]) -> Result<Self, LoginError> {
        // serde's message may quote the input: never echo a password back.
        let req: Self = serde_json::from_slice(body).map_err(|e| {
            LoginError::BadBody(match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    "not JSON".into()
                }
                _ => "expected {\"username\": string, \"password\": string}".into(),
            })
        })?;
        // No control characters: the name is logged.
        if req.username.is_empty()
            || req.username.len() > MAX_USERNAME_BYTES
            || req.username.chars().any(char::is_control)
        {
            return Err(LoginError::Length {
                field: "username",
                max: MAX_USERNAME_BYTES,
            });
        }
        if req.password.is_empty() || req.password.len() > MAX_PASSWORD_BYTES {
            return Err(LoginError::Length {
                field: "password",
                max: MAX_PASSWORD_BYTES,
            });
        }
        Ok(req)
    }
}

/// One console user, as its tokens describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// The login name and user id (`sub`).
    pub id: String,
    /// The display name.
    pub name: String,
    /// `agent` or `admin`.
    pub role: String,
    /// Routing groups.
    pub groups: Vec<String>,
    /// Tenant (`""`: the empty one).
    pub tenant: String,
    /// Capacity, when the user has its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
}

impl Account {
    /// The claims of a token for the account issued at `now`, valid for `ttl`.
    pub fn claims(&self, now: UnixMs, ttl: Duration) -> Claims {
        let iat = now.0 / 1000;
        Claims {
            sub: self.id.clone(),
            role: self.role.clone(),
            name: Some(self.name.clone()),
            groups: self.groups.clone(),
            tenant: (!self.tenant.is_empty()).then(|| self.tenant.clone()),
            max_concurrent: self.max_concurrent,
            exp: iat.saturating_add(ttl.as_secs()),
            nbf: None,
            iat: Some(iat),
        }
    }
}

/// The console's users (`[[console.users]]`), fixed at start, shared by the
/// reactors (refresh) and the login threads (passwords).
pub struct Users {
    by_name: HashMap<String, (Account, String)>,
    /// Checked for unknown names (the parameters of the first user's hash).
    dummy: String,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("users", &self.by_name.len())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// The users of `c` (validated); `salt` salts the dummy hash.
    pub fn from_config(c: &ConsoleConfig, salt: &[u8; SALT_BYTES]) -> Self {
        let by_name = c
            .users
            .iter()
            .map(|u| {
                let account = Account {
                    id: u.name.clone(),
                    name: u.display_name.clone().unwrap_or_else(|| u.name.clone()),
                    role: u.role.clone(),
                    groups: u.groups.clone(),
                    tenant: u.tenant.clone(),
                    max_concurrent: u.max_concurrent,
                };
                (u.name.clone(), (account, u.password_hash.clone()))
            })
            .collect();
        // With no users there is no name to hide (and no hash to make at every start).
        let dummy = match c.users.first() {
            Some(u) => password::dummy(Some(&u.password_hash), salt),
            None => String::new(),
        };
        Self { by_name, dummy }
    }

    /// Whether there are no users (every login is refused).
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The account named `name` (for a refresh: still configured, and as now).
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.by_name.get(name).map(|(a, _)| a)
    }

    /// Checks a login: the account when the password is right, else
    /// [`Outcome::BadPassword`] or [`Outcome::UnknownUser`]. Slow by design (one
    /// argon2id check, also for an unknown name): login threads only.
    pub fn check(&self, req: &LoginRequest) -> Result<Account, Outcome> {
        match self.by_name.get(&req.username) {
            Some((account, phc)) => {
                if password::verify(phc, req.password.as_bytes()) {
                    Ok(account.clone())
                } else {
                    Err(Outcome::BadPassword)
                }
            }
            None => {
                let _ = password::verify(&self.dummy, req.password.as_bytes());
                Err(Outcome::UnknownUser)
            }
        }
    }
}

/// The body of a 200 from login or refresh: `{"token", "expires_ms", "user"}`
/// (`expires_ms`: Unix milliseconds as a decimal string, as the visitor-token
/// endpoint's).
pub fn response_json(token: &str, expires_ms: u64, account: &Account) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        token: &'a str,
        expires_ms: String,
        user: &'a Account,
    }
    let mut out = serde_json::to_vec(&Body {
        token,
        expires_ms: expires_ms.to_string(),
        user: account,
    })
    .unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConsoleUser;
    use crate::console::password::{cheap_params, hash};

    fn users() -> Users {
        let phc = hash(b"correct horse", &[3; SALT_BYTES], cheap_params()).unwrap();
        let config = ConsoleConfig {
            users: vec![ConsoleUser {
                name: "alice".into(),
                password_hash: phc,
                role: "admin".into(),
                groups: vec!["sales".into(), "support".into()],
                display_name: Some("Alice A.".into()),
                max_concurrent: Some(5),
                tenant: "acme".into(),
            }],
            ..ConsoleConfig::default()
        };
        Users::from_config(&config, &[9; SALT_BYTES])
    }

    fn login(username: &str, password: &str) -> LoginRequest {
        LoginRequest {
            username: username.into(),
            password: password.into(),
        }
    }

    #[test]
    fn right_wrong_and_unknown() {
        let u = users();
        let a = u.check(&login("alice", "correct horse")).unwrap();
        assert_eq!((a.id.as_str(), a.name.as_str()), ("alice", "Alice A."));
        assert_eq!(u.check(&login("alice", "wrong")), Err(Outcome::BadPassword));
        assert_eq!(u.check(&login("mallory", "x")), Err(Outcome::UnknownUser));
        // The dummy has the users' parameters (same cost).
        assert!(u.dummy.starts_with("$argon2id$v=19$m=256,t=1,p=1$"));
    }

    #[test]
    fn claims_carry_role_groups_name_tenant_capacity() {
        let u = users();
        let a = u.account("alice").unwrap();
        let c = a.claims(UnixMs(1_000_500), Duration::from_secs(900));
        assert_eq!((c.iat, c.exp), (Some(1000), 1900));
        let id = c.identity().unwrap();
        assert_eq!(id.role, crate::protocol::messages::role::ADMIN);
        assert_eq!(id.groups, ["sales", "support"]);
        assert_eq!(id.name, "Alice A.");
        assert_eq!(id.tenant, "acme");
        assert_eq!(id.max_concurrent, Some(5));
        let body = String::from_utf8(response_json("t.o.k", 1_900_000, a)).unwrap();
        assert!(body.contains("\"expires_ms\":\"1900000\""), "{body}");
        assert!(body.contains("\"role\":\"admin\""), "{body}");
        assert!(!body.contains("argon2"), "{body}");
    }

    #[test]
    fn bodies_are_checked_and_passwords_never_echoed() {
        let r = LoginRequest::parse(br#"{"username":"alice","password":"pw"}"#).unwrap();
        assert_eq!(r.username, "alice");
        assert!(!format!("{r:?}").contains("pw\""));
        for bad in [
            &br#"{"username":"alice"}"#[..],
            br#"{"username":"alice","password":"hunter2","x":1}"#,
            br#"{"username":1,"password":"hunter2"}"#,
            b"hunter2",
            b"",
        ] {
            let e = LoginRequest::parse(bad).unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        assert_eq!(
            LoginRequest::parse(br#"{"username":"","password":"pw"}"#).unwrap_err(),
            LoginError::Length {
                field: "username",
                max: MAX_USERNAME_BYTES
            }
        );
        assert!(matches!(
            LoginRequest::parse(br#"{"username":"a\nINFO forged","password":"pw"}"#),
            Err(LoginError::Length {
                field: "username",
                ..
            })
        ));
        let long = format!(r#"{{"username":"a","password":"{}"}}"#, "x".repeat(1025));
        assert!(matches!(
            LoginRequest::parse(long.as_bytes()),
            Err(LoginError::Length {
                field: "password",
                ..
            })
        ));
    }
}
