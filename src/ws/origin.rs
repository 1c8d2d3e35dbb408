//! The `Origin` check of WebSocket upgrades (`[web] allowed_origins`).
//!
//! A browser sends the page's origin with every WebSocket handshake and lets any page
//! connect anywhere; the server is the only one who can refuse a foreign page
//! (cross-site WebSocket hijacking). The default allows only pages served from the
//! host the client connected to.

/// One entry of `[web] allowed_origins` that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowed_origins entry {entry:?}: {why}")]
pub struct OriginError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// The keyword entry that allows an Origin whose host\[:port\] is the request's `Host`.
pub const SAME_HOST: &str = "same-host";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    SameHost,
    /// `scheme://host[:port]`; `host` lower-case, `port` explicit or the scheme's.
    Exact {
        scheme: String,
        host: String,
        port: Option<u16>,
    },
    /// `scheme://*.suffix[:port]`: `suffix` is `.example.com` (lower-case).
    Subdomains {
        scheme: String,
        suffix: String,
        port: Option<u16>,
    },
}

/// Which page origins may open a WebSocket (`[web] allowed_origins`).
///
/// Entries are `"same-host"` (the default: an Origin whose host\[:port\] equals the
/// request's `Host`), exact origins `"https://example.com[:port]"`, or subdomain
/// wildcards `"https://*.example.com"` (any depth of subdomain, not `example.com`
/// itself). Hosts compare case-insensitively and a missing port is the scheme's default
/// (80 for http, 443 for https). A request without an `Origin` header is allowed: only
/// browsers send one, and a non-browser client (the SDK, storm) can send anything
/// anyway. `Origin: null` (sandboxed frames, `file:` pages) and anything unparsable are
/// refused. An empty list allows only clients without an Origin, i.e. no browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    entries: Vec<Entry>,
}

impl Default for OriginPolicy {
    fn default() -> Self {
        Self::same_host()
    }
}

/// A parsed origin: scheme, lower-case host (IPv6 in brackets), port if explicit.
struct Parsed<'a> {
    scheme: &'a str,
    host: String,
    port: Option<u16>,
}

impl Parsed<'_> {
    /// The port, or the scheme's default (`None` for a scheme without one).
    fn effective_port(&self) -> Option<u16> {
        self.port.or_else(|| default_port(self.scheme))
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Parses `scheme://host[:port]` with nothing after it.
fn parse_origin(s: &str) -> Result<Parsed<'_>, &'static str> {
    let (scheme, rest) = s.split_once("://").ok_or("not scheme://host")?;
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if !scheme_ok {
        return Err("the scheme must be lower-case letters, digits, '+', '-' or '.'");
    }
    if rest.contains(['/', '?', '#']) {
        return Err("an origin has no path, query or fragment (not even a trailing '/')");
    }
    if rest.contains('@') {
        return Err("an origin has no user info");
    }
    let (host, port) = split_host_port(rest)?;
    Ok(Parsed { scheme, host, port })
}

/// Splits `host[:port]` (IPv6 in brackets); the host is lower-cased.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), &'static str> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']').ok_or("unclosed '[' in host")?;
        let (h, rest) = s.split_at(end.saturating_add(1));
        match rest {
            "" => (h, None),
            _ => (h, Some(rest.strip_prefix(':').ok_or("junk after ']'")?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    let host_ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~*[]:%".contains(&b));
    if !host_ok {
        return Err("invalid character in host");
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| "port out of range")?)
        }
        Some(_) => return Err("invalid port"),
    };
    Ok((host.to_ascii_lowercase(), port))
}

impl OriginPolicy {
    /// Parses `[web] allowed_origins`.
    pub fn parse(entries: &[String]) -> Result<Self, OriginError> {
        let entries = entries
            .iter()
            .map(|e| {
                Self::parse_entry(e.trim()).map_err(|why| OriginError {
                    entry: e.clone(),
                    why,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    fn parse_entry(e: &str) -> Result<Entry, &'static str> {
        if e == SAME_HOST {
            return Ok(Entry::SameHost);
        }
        if e == "*" {
            return Err(
                "'*' would let every web page on the internet connect as its visitors; list the origins",
            );
        }
        let p = parse_origin(e)?;
        let port = p.effective_port();
        if let Some(suffix) = p.host.strip_prefix('*') {
            if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains('*') {
                return Err("a wildcard must be the whole first label: scheme://*.example.com");
            }
            return Ok(Entry::Subdomains {
                scheme: p.scheme.to_owned(),
                suffix: suffix.to_owned(),
                port,
            });
        }
        if p.host.contains('*') {
            return Err("a wildcard must be the whole first label: scheme://*.example.com");
        }
        Ok(Entry::Exact {
            scheme: p.scheme.to_owned(),
            host: p.host,
            port,
        })
    }

    /// The default: only pages served from the host the client connected to.
    pub fn same_host() -> Self {
        Self {
            entries: vec![Entry::SameHost],
        }
    }

    /// Whether a handshake with this `Origin` header (and this `Host` header) may go on.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let Ok(o) = parse_origin(origin) else {
            return false; // includes "null"
        };
        if o.host.contains('*') {
            return false;
        }
        self.entries.iter().any(|e| match e {
            Entry::SameHost => host.is_some_and(|h| same_host(&o, h)),
            Entry::Exact { scheme, host, port } => {
                o.scheme == scheme && o.host == *host && o.effective_port() == *port
            }
            Entry::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                o.scheme == scheme
                    && o.host.len() > suffix.len()
                    && o.host.ends_with(suffix.as_str())
                    && o.effective_port() == *port
            }
        })
    }
}

/// The Origin's host\[:port\] equals the `Host` header; a port missing from `Host` is
/// the Origin scheme's default (a page and its socket share the scheme).
fn same_host(o: &Parsed<'_>, host_header: &str) -> bool {
    let Ok((host, port)) = split_host_port(host_header.trim()) else {
        return false;
    };
    host == o.host && port.or_else(|| default_port(o.scheme)) == o.effective_port()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OriginPolicy {
        OriginPolicy::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn same_host_table() {
        let p = OriginPolicy::same_host();
        assert_eq!(p, OriginPolicy::default());
        let cases: &[(Option<&str>, Option<&str>, bool)] = &[
            (None, Some("chat.example.com"), true),
            (None, None, true),
            (
                Some("https://chat.example.com"),
                Some("chat.example.com"),
                true,
            ),
            (
                Some("https://chat.example.com"),
                Some("Chat.Example.COM"),
                true,
            ),
            (
                Some("https://chat.example.com"),
                Some("chat.example.com:443"),
                true,
            ),
            (
                Some("http://chat.example.com"),
                Some("chat.example.com:80"),
                true,
            ),
            (
                Some("http://chat.example.com:8080"),
                Some("chat.example.com:8080"),
                true,
            ),
            (Some("http://127.0.0.1:7810"), Some("127.0.0.1:7810"), true),
            (Some("http://[::1]:7810"), Some("[::1]:7810"), true),
            (
                Some("http://chat.example.com"),
                Some("chat.example.com:8080"),
                false,
            ),
            (
                Some("http://chat.example.com:8080"),
                Some("chat.example.com"),
                false,
            ),
            (Some("https://evil.com"), Some("chat.example.com"), false),
            (
                Some("https://chat.example.com.evil.com"),
                Some("chat.example.com"),
                false,
            ),
            (Some("https://chat.example.com"), None, false),
            (Some("null"), Some("chat.example.com"), false),
            (Some(""), Some(""), false),
            (
                Some("https://chat.example.com/"),
                Some("chat.example.com"),
                false,
            ),
            (
                Some("https://u@chat.example.com"),
                Some("chat.example.com"),
                false,
            ),
            (Some("chat.example.com"), Some("chat.example.com"), false),
            (Some("https://*.example.com"), Some("*.example.com"), false),
            (
                Some("https://chat.example.com:99999"),
                Some("chat.example.com:99999"),
                false,
            ),
        ];
        for (origin, host, want) in cases {
            assert_eq!(p.allows(*origin, *host), *want, "{origin:?} {host:?}");
        }
    }

    #[test]
    fn exact_and_wildcard_table() {
        let p = policy(&[
            "https://example.com",
            "http://localhost:3000",
            "https://*.example.org",
        ]);
        let cases: &[(&str, bool)] = &[
            ("https://example.com", true),
            ("https://EXAMPLE.com", true),
            ("https://example.com:443", true),
            ("http://example.com", false),
            ("https://example.com:8443", false),
            ("https://www.example.com", false),
            ("http://localhost:3000", true),
            ("http://localhost", false),
            ("https://a.example.org", true),
            ("https://a.b.example.org", true),
            ("https://example.org", false),
            ("https://.example.org", false),
            ("https://aexample.org", false),
            ("http://a.example.org", false),
            ("https://a.example.org:444", false),
            ("null", false),
        ];
        for (origin, want) in cases {
            // The Host header does not matter without a same-host entry.
            assert_eq!(
                p.allows(Some(origin), Some("example.com")),
                *want,
                "{origin}"
            );
        }
        // Same-host can be combined with others.
        let p = policy(&["same-host", "https://example.com"]);
        assert!(p.allows(Some("http://gw:1"), Some("gw:1")));
        assert!(p.allows(Some("https://example.com"), Some("gw:1")));
        assert!(!p.allows(Some("https://other.com"), Some("gw:1")));
        // Empty: only clients without Origin.
        let p = policy(&[]);
        assert!(p.allows(None, Some("gw")));
        assert!(!p.allows(Some("http://gw"), Some("gw")));
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        for bad in [
            "*",
            "example.com",
            "https://example.com/",
            "https://example.com/path",
            "https://",
            "https://example.com:http",
            "https://example.com:70000",
            "https://ex*mple.com",
            "https://*example.com",
            "https://*.",
            "https://*.*.example.com",
            "HTTPS://example.com",
            "same_host",
            "",
        ] {
            let e = OriginPolicy::parse(&[bad.to_string()]).expect_err(bad);
            assert_eq!(e.entry, bad);
            assert!(!e.to_string().is_empty());
        }
    }
}
