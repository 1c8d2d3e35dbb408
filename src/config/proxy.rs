//! The PROXY protocol keys of a listener (`proxy_protocol`, `trusted_proxies`,
//! `proxy_max_header_bytes`) and their cross-key rules.
//!
//! Either both `proxy_protocol = true` and a non-empty `trusted_proxies`, or
//! neither: a list without the switch (or the switch without a list) is refused
//! rather than guessed at. Trusting everyone is written out (`"0.0.0.0/0"`, `"::/0"`).

use super::{ListenerConfig, Listeners};
use crate::proxy::MIN_V2_BYTES;

/// Default of `proxy_max_header_bytes`: room for the addresses and the TLVs cloud
/// load balancers add (AWS, GCP and Azure send tens of bytes).
pub(crate) const DEFAULT_MAX_HEADER_BYTES: usize = 1024;
/// Largest value of `proxy_max_header_bytes`: the most a v2 header can say.
pub(crate) const MAX_MAX_HEADER_BYTES: usize = 16 + 65_535;

pub(super) fn default_max_header_bytes() -> usize {
    DEFAULT_MAX_HEADER_BYTES
}

pub(super) fn is_default_max_header_bytes(n: &usize) -> bool {
    *n == DEFAULT_MAX_HEADER_BYTES
}

/// Checks the PROXY keys of every listener: `Err((key, reason))`.
pub(super) fn validate(l: &Listeners) -> Result<(), (&'static str, String)> {
    check(&l.client, "listeners.client")?;
    if let Some(echo) = &l.echo {
        check(echo, "listeners.echo")?;
    }
    Ok(())
}

fn check(c: &ListenerConfig, table: &'static str) -> Result<(), (&'static str, String)> {
    let key = |client: &'static str, echo: &'static str| {
        if table == "listeners.client" {
            client
        } else {
            echo
        }
    };
    match (c.proxy_protocol, c.trusted_proxies.is_empty()) {
        (true, true) => {
            return Err((
                key(
                    "listeners.client.trusted_proxies",
                    "listeners.echo.trusted_proxies",
                ),
                "proxy_protocol = true needs the proxies' addresses (CIDRs); every other \
                 source is refused. To trust any source, list \"0.0.0.0/0\" and \"::/0\""
                    .into(),
            ));
        }
        (false, false) => {
            return Err((
                key(
                    "listeners.client.proxy_protocol",
                    "listeners.echo.proxy_protocol",
                ),
                "trusted_proxies is set but proxy_protocol is off: set proxy_protocol = true \
                 (connections then start with a PROXY header) or remove trusted_proxies"
                    .into(),
            ));
        }
        _ => {}
    }
    if !(MIN_V2_BYTES..=MAX_MAX_HEADER_BYTES).contains(&c.proxy_max_header_bytes) {
        return Err((
            key(
                "listeners.client.proxy_max_header_bytes",
                "listeners.echo.proxy_max_header_bytes",
            ),
            format!("must be {MIN_V2_BYTES}-{MAX_MAX_HEADER_BYTES}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn check(toml: &str) -> Result<Config, String> {
        let c = Config::from_toml(toml).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn both_keys_or_neither() {
        let c = check(
            "[listeners.client]\naddr = \"127.0.0.1:7700\"\nproxy_protocol = true\n\
             trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\", \"2001:db8::/32\"]\n",
        )
        .unwrap();
        let l = &c.listeners.client;
        assert!(l.proxy_protocol);
        assert_eq!(l.trusted_proxies.len(), 3);
        assert_eq!(l.trusted_proxies[1].to_string(), "127.0.0.1/32");
        assert_eq!(l.proxy_max_header_bytes, super::DEFAULT_MAX_HEADER_BYTES);
        let e = check("[listeners.client]\naddr = \"127.0.0.1:7700\"\nproxy_protocol = true\n")
            .unwrap_err();
        assert!(e.contains("listeners.client.trusted_proxies"), "{e}");
        let e = check(
            "[listeners.echo]\naddr = \"127.0.0.1:7702\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("listeners.echo.proxy_protocol"), "{e}");
        let e = check(
            "[listeners.client]\naddr = \"127.0.0.1:7700\"\nproxy_protocol = true\n\
             trusted_proxies = [\"10.0.0.0/8\"]\nproxy_max_header_bytes = 100\n",
        )
        .unwrap_err();
        assert!(e.contains("proxy_max_header_bytes"), "{e}");
    }

    #[test]
    fn a_bad_cidr_is_refused_naming_it() {
        for bad in ["10.0.0.0/33", "10.0.0.1/8", "proxy.example"] {
            let e = check(&format!(
                "[listeners.client]\naddr = \"127.0.0.1:7700\"\nproxy_protocol = true\n\
                 trusted_proxies = [\"{bad}\"]\n"
            ))
            .unwrap_err();
            assert!(e.contains(bad) && e.contains("trusted_proxies"), "{e}");
        }
    }
}
