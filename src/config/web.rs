//! `[web]`: the web edge of the client listener (HTTP, WebSocket, JSON), and its
//! `[[web.sites]]`: the sites whose pages get visitor tokens from the gateway.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::MIN_SECRET_BYTES;

/// The web edge of the client listener: what browsers may do and how much.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Origins whose pages may open a WebSocket: `"same-host"` (the page's host and
    /// port equal the request's `Host`), exact origins (`"https://example.com"`), or
    /// subdomain wildcards (`"https://*.example.com"`). A request without `Origin`
    /// (a non-browser client) is allowed; a browser always sends one, so a page of
    /// another site cannot ride on its visitor's cookies or network position. The
    /// origins of every `[[web.sites]]` entry are allowed too.
    pub allowed_origins: Vec<String>,
    /// Largest HTTP request head (request line and headers), in bytes; larger is
    /// answered 431.
    pub max_head_bytes: usize,
    /// Most header lines in a request head; more is answered 431.
    pub max_headers: usize,
    /// Largest WebSocket message (all its fragments), in bytes; larger closes the
    /// connection with 1009. A JSON message must also fit `limits.max_frame_bytes`
    /// once converted to the binary frame it stands for.
    pub max_message_bytes: u32,
    /// Lifetime of a visitor token the gateway issues (`POST
    /// /web/v1/sites/{site}/visitor-token`); a page asks again before it ends.
    #[serde(with = "humantime_serde")]
    pub visitor_token_ttl: Duration,
    /// Visitor tokens one IP address (an IPv6 /64) may get per minute from one
    /// reactor; the burst is the same number. Past it: 429 with `Retry-After`.
    pub visitor_tokens_per_minute: u32,
    /// Addresses each reactor remembers for that rate; when full, the one heard from
    /// longest ago is forgotten.
    pub max_rate_entries: usize,
    /// Sites whose pages get visitor tokens from the gateway (none by default: the
    /// endpoint answers 404 for every site).
    pub sites: Vec<WebSite>,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            allowed_origins: vec!["same-host".into()],
            max_head_bytes: 8192,
            max_headers: 32,
            max_message_bytes: 2 * 1024 * 1024,
            visitor_token_ttl: Duration::from_secs(3600),
            visitor_tokens_per_minute: 10,
            max_rate_entries: 4096,
            sites: Vec::new(),
        }
    }
}

/// One site (`[[web.sites]]`): a website whose pages get visitor tokens from the
/// gateway, anonymous visitors (`anonymous = true`, keyed by `secret`) and/or users
/// its back end vouches for (`identity_secret`). Secrets are never serialized and
/// `Debug` never shows them.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebSite {
    /// The site's id in the endpoint's path and in its visitors' user ids: 1 to 64
    /// characters of `A-Z a-z 0-9 _ -`.
    pub id: String,
    /// Origins whose pages may ask for the site's tokens (same syntax as
    /// `web.allowed_origins`); they may open WebSockets to the client port too.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Routing group its visitors' conversations open in (default:
    /// `routing.default_group`).
    #[serde(default)]
    pub group: Option<String>,
    /// Tenant of its visitors (default: the empty tenant).
    #[serde(default)]
    pub tenant: String,
    /// Anonymous visitors get tokens (default false: only identified users).
    #[serde(default)]
    pub anonymous: bool,
    /// Key of the visitor keys (required when `anonymous`; at least 32 bytes).
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
    /// A file holding `secret` (content trimmed), instead of `secret`.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Key the site's back end signs user ids with (HMAC-SHA256, hex): enables
    /// identified users; at least 32 bytes.
    #[serde(default, skip_serializing)]
    pub identity_secret: Option<String>,
    /// A file holding `identity_secret` (content trimmed), instead of it.
    #[serde(default)]
    pub identity_secret_file: Option<PathBuf>,
    /// How the visitor widget looks and behaves on the site (`[web.sites.widget]`;
    /// public, served by `GET /web/v1/sites/{site}/widget`).
    #[serde(default)]
    pub widget: super::WidgetSettings,
}

impl std::fmt::Debug for WebSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("WebSite")
            .field("id", &self.id)
            .field("allowed_origins", &self.allowed_origins)
            .field("group", &self.group)
            .field("tenant", &self.tenant)
            .field("anonymous", &self.anonymous)
            .field("secret", &shown(&self.secret))
            .field("secret_file", &self.secret_file)
            .field("identity_secret", &shown(&self.identity_secret))
            .field("identity_secret_file", &self.identity_secret_file)
            .field("widget", &self.widget)
            .finish()
    }
}

/// Why a site's secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SiteSecretError {
    /// Both the inline secret and its file are set.
    #[error("set at most one of `{0}` and `{0}_file`")]
    Both(&'static str),
    /// The file could not be read.
    #[error("`{name}_file` {path}: {source}")]
    File {
        /// `secret` or `identity_secret`.
        name: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Shorter than [`MIN_SECRET_BYTES`].
    #[error("`{name}` is {len} bytes; at least {MIN_SECRET_BYTES} required")]
    Short {
        /// `secret` or `identity_secret`.
        name: &'static str,
        /// Its length.
        len: usize,
    },
}

impl WebSite {
    /// The visitor-key secret's bytes (`None`: not set). Reads `secret_file`.
    pub fn secret_bytes(&self) -> Result<Option<Vec<u8>>, SiteSecretError> {
        load(
            "secret",
            self.secret.as_deref(),
            self.secret_file.as_deref(),
        )
    }

    /// The identity secret's bytes (`None`: not set). Reads `identity_secret_file`.
    pub fn identity_secret_bytes(&self) -> Result<Option<Vec<u8>>, SiteSecretError> {
        load(
            "identity_secret",
            self.identity_secret.as_deref(),
            self.identity_secret_file.as_deref(),
        )
    }

    /// The site's routing group: its own, or `default_group`.
    pub fn group_or<'a>(&'a self, default_group: &'a str) -> &'a str {
        self.group.as_deref().unwrap_or(default_group)
    }
}

fn load(
    name: &'static str,
    inline: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<Vec<u8>>, SiteSecretError> {
    let bytes = match (inline, file) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => return Err(SiteSecretError::Both(name)),
        (Some(s), None) => s.as_bytes().to_vec(),
        (None, Some(path)) => std::fs::read(path)
            .map_err(|source| SiteSecretError::File {
                name,
                path: path.to_owned(),
                source,
            })?
            .trim_ascii()
            .to_vec(),
    };
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(SiteSecretError::Short {
            name,
            len: bytes.len(),
        });
    }
    Ok(Some(bytes))
}

/// Whether `id` is a valid site id (1 to 64 of `A-Z a-z 0-9 _ -`).
pub fn valid_site_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl WebConfig {
    /// Checks what the types cannot: `(key, reason)` of the first problem. Reads the
    /// sites' secret files (present, long enough).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Err(e) = crate::ws::OriginPolicy::parse(&self.allowed_origins) {
            return Err(("web.allowed_origins", e.to_string()));
        }
        if !(1024..=65_536).contains(&self.max_head_bytes) {
            return Err(("web.max_head_bytes", "from 1024 to 65536".into()));
        }
        if !(4..=256).contains(&self.max_headers) {
            return Err(("web.max_headers", "from 4 to 256".into()));
        }
        if !(1024..=crate::frame::MAX_PAYLOAD_LIMIT).contains(&self.max_message_bytes) {
            return Err((
                "web.max_message_bytes",
                format!("from 1024 to {}", crate::frame::MAX_PAYLOAD_LIMIT),
            ));
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(7 * 86_400))
            .contains(&self.visitor_token_ttl)
        {
            return Err(("web.visitor_token_ttl", "from 1m to 7days".into()));
        }
        if !(1..=10_000).contains(&self.visitor_tokens_per_minute) {
            return Err(("web.visitor_tokens_per_minute", "from 1 to 10000".into()));
        }
        if !(1..=1_000_000).contains(&self.max_rate_entries) {
            return Err(("web.max_rate_entries", "from 1 to 1000000".into()));
        }
        if self.sites.len() > MAX_SITES {
            return Err(("web.sites", format!("at most {MAX_SITES} sites")));
        }
        for (i, site) in self.sites.iter().enumerate() {
            site.validate(self.sites.get(..i).unwrap_or_default())?;
        }
        Ok(())
    }
}

/// Most `[[web.sites]]` entries (each is a label value of a metric).
pub const MAX_SITES: usize = 256;

impl WebSite {
    fn validate(&self, before: &[WebSite]) -> Result<(), (&'static str, String)> {
        let id = &self.id;
        if !valid_site_id(id) {
            return Err((
                "web.sites.id",
                format!("{id:?}: 1 to 64 characters of A-Z a-z 0-9 _ -"),
            ));
        }
        if before.iter().any(|s| s.id == *id) {
            return Err(("web.sites.id", format!("{id:?} appears more than once")));
        }
        if let Err(e) = crate::ws::OriginPolicy::parse(&self.allowed_origins) {
            return Err(("web.sites.allowed_origins", format!("site {id:?}: {e}")));
        }
        if let Some(g) = &self.group
            && (g.is_empty() || g.len() > 1024)
        {
            return Err(("web.sites.group", format!("site {id:?}: 1 to 1024 bytes")));
        }
        if self.tenant.len() > 1024 {
            return Err((
                "web.sites.tenant",
                format!("site {id:?}: at most 1024 bytes"),
            ));
        }
        let secret = self
            .secret_bytes()
            .map_err(|e| ("web.sites.secret", format!("site {id:?}: {e}")))?;
        let identity = self
            .identity_secret_bytes()
            .map_err(|e| ("web.sites.identity_secret", format!("site {id:?}: {e}")))?;
        self.widget.validate(id)?;
        if self.anonymous && secret.is_none() {
            return Err((
                "web.sites.secret",
                format!("site {id:?}: anonymous visitors need `secret` or `secret_file`"),
            ));
        }
        if !self.anonymous && identity.is_none() {
            return Err((
                "web.sites.identity_secret",
                format!(
                    "site {id:?}: neither anonymous visitors nor identified users: set \
                     `anonymous = true` or `identity_secret`"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "0123456789abcdef0123456789abcdef";

    fn site(id: &str) -> WebSite {
        WebSite {
            id: id.into(),
            allowed_origins: vec!["https://shop.example".into()],
            group: None,
            tenant: String::new(),
            anonymous: true,
            secret: Some(S.into()),
            secret_file: None,
            identity_secret: None,
            identity_secret_file: None,
            widget: Default::default(),
        }
    }

    fn check(sites: Vec<WebSite>) -> Result<(), (&'static str, String)> {
        WebConfig {
            sites,
            ..WebConfig::default()
        }
        .validate()
    }

    #[test]
    fn sites_are_validated() {
        assert!(check(vec![site("shop"), site("blog_2-x")]).is_ok());
        assert_eq!(check(vec![site("a b")]).unwrap_err().0, "web.sites.id");
        assert_eq!(check(vec![site("")]).unwrap_err().0, "web.sites.id");
        assert_eq!(
            check(vec![site(&"x".repeat(65))]).unwrap_err().0,
            "web.sites.id"
        );
        let dup = check(vec![site("shop"), site("shop")]).unwrap_err();
        assert!(dup.1.contains("more than once"), "{dup:?}");
        let mut s = site("shop");
        s.secret = None;
        assert_eq!(check(vec![s.clone()]).unwrap_err().0, "web.sites.secret");
        s.secret = Some("short".into());
        assert!(
            check(vec![s.clone()])
                .unwrap_err()
                .1
                .contains("at least 32")
        );
        s.secret = Some(S.into());
        s.secret_file = Some("/nonexistent/secret".into());
        assert!(
            check(vec![s.clone()])
                .unwrap_err()
                .1
                .contains("at most one")
        );
        s.secret = None;
        assert!(
            check(vec![s.clone()])
                .unwrap_err()
                .1
                .contains("/nonexistent")
        );
        let mut s = site("shop");
        s.anonymous = false;
        assert_eq!(
            check(vec![s.clone()]).unwrap_err().0,
            "web.sites.identity_secret"
        );
        s.identity_secret = Some(S.into());
        assert!(check(vec![s.clone()]).is_ok());
        s.widget.position = "middle".into();
        assert_eq!(
            check(vec![s.clone()]).unwrap_err().0,
            "web.sites.widget.position"
        );
        s.widget.position = "left".into();
        s.allowed_origins = vec!["not an origin".into()];
        assert_eq!(check(vec![s]).unwrap_err().0, "web.sites.allowed_origins");
    }

    #[test]
    fn secret_files_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("site.secret");
        std::fs::write(&path, format!("  {S}\n")).unwrap();
        let mut s = site("shop");
        s.secret = None;
        s.secret_file = Some(path);
        assert_eq!(s.secret_bytes().unwrap().unwrap(), S.as_bytes());
        assert!(check(vec![s]).is_ok());
    }

    #[test]
    fn unknown_site_fields_are_errors_and_secrets_never_show() {
        let text = format!("id = \"shop\"\nanonymous = true\nsecret = \"{S}\"\ncolour = 1\n");
        assert!(toml::from_str::<WebSite>(&text).is_err());
        let s = site("shop");
        assert!(!format!("{s:?}").contains(S));
        assert!(!serde_json::to_string(&s).unwrap().contains(S));
    }

    #[test]
    fn visitor_bounds_are_checked() {
        let bad = |f: fn(&mut WebConfig)| {
            let mut c = WebConfig::default();
            f(&mut c);
            c.validate().unwrap_err().0
        };
        assert_eq!(
            bad(|c| c.visitor_token_ttl = Duration::from_secs(1)),
            "web.visitor_token_ttl"
        );
        assert_eq!(
            bad(|c| c.visitor_tokens_per_minute = 0),
            "web.visitor_tokens_per_minute"
        );
        assert_eq!(bad(|c| c.max_rate_entries = 0), "web.max_rate_entries");
    }
}
