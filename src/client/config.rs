//! Settings of a [`Client`](super::Client): where to connect, who to be, and every
//! time and size bound it keeps.

use std::time::Duration;

use crate::protocol::messages::Cursor;

/// How a client connects, identifies itself and recovers.
///
/// [`ClientConfig::new`] fills in the defaults documented on each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Server address as `host:port`, resolved with the system resolver on every
    /// connect (every address it yields is tried in turn).
    pub addr: String,
    /// The JWT sent in `Hello.token`. Replace it with [`Client::set_token`] before
    /// reconnecting when it expires.
    ///
    /// [`Client::set_token`]: super::Client::set_token
    pub token: String,
    /// Free-form `name/version` sent in `Hello.client` (default `switchboard-sdk/` and
    /// the crate version).
    pub client_name: String,
    /// Bound on establishing the TCP connection, per resolved address (default 5 s).
    pub connect_timeout: Duration,
    /// Bound from sending `Hello` to receiving `Welcome` (default 10 s).
    pub handshake_timeout: Duration,
    /// Bound on one blocked write (default 10 s). A write that times out leaves a
    /// partial frame behind, so the connection is given up.
    pub write_timeout: Duration,
    /// Bound on [`Client::close`] waiting for the server's end-of-stream (default 2 s).
    ///
    /// [`Client::close`]: super::Client::close
    pub close_timeout: Duration,
    /// Heartbeat interval used when `Welcome.heartbeat_ms` is 0 (an older server);
    /// default 30 s, the server's documented default. Never below
    /// [`MIN_HEARTBEAT`].
    pub heartbeat: Duration,
    /// Largest frame payload accepted from the server (default 4 MiB); a larger one is
    /// a [`FrameError::TooLarge`](crate::frame::FrameError::TooLarge) and ends the
    /// connection. This also bounds the buffer a partial frame can occupy.
    pub max_frame_bytes: u32,
    /// Most frames [`Client::request`] queues for [`Client::recv`] while it waits for
    /// its reply (default 4096); past it the request fails with
    /// [`ClientError::InboxFull`](super::ClientError::InboxFull).
    ///
    /// [`Client::request`]: super::Client::request
    /// [`Client::recv`]: super::Client::recv
    pub max_inbox: usize,
    /// Resume cursors to start from (e.g. persisted by a previous run); empty for a
    /// fresh start.
    pub resume: Vec<Cursor>,
    /// Retry policy of [`Client::reconnect`](super::Client::reconnect).
    pub reconnect: ReconnectPolicy,
    /// Connect with TLS (ALPN `switchboard/1`) instead of plain TCP (default `None`).
    pub tls: Option<ClientTls>,
}

/// TLS settings of a client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM file of the certificate authorities to trust; `None`: the Mozilla roots
    /// (`webpki-roots`).
    pub ca_file: Option<std::path::PathBuf>,
    /// The name to send as SNI and check the certificate against; `None`: the host
    /// part of [`ClientConfig::addr`].
    pub server_name: Option<String>,
}

/// The smallest heartbeat interval a client uses, whatever the server says, so a
/// misconfigured server cannot make it spin.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(50);

impl ClientConfig {
    /// A configuration for `addr` and `token` with every other field at its default.
    pub fn new(addr: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            token: token.into(),
            client_name: concat!("switchboard-sdk/", env!("CARGO_PKG_VERSION")).to_owned(),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(2),
            heartbeat: Duration::from_secs(30),
            max_frame_bytes: 4 * 1024 * 1024,
            max_inbox: 4096,
            resume: Vec::new(),
            reconnect: ReconnectPolicy::default(),
            tls: None,
        }
    }
}

/// Bounded retries with exponential, randomised back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Connection attempts per [`Client::reconnect`](super::Client::reconnect) call
    /// (default 5; 0 counts as 1).
    pub max_attempts: u32,
    /// Back-off before the first retry (default 200 ms); doubled for each further one.
    pub initial_backoff: Duration,
    /// Ceiling of the back-off (default 5 s).
    pub max_backoff: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl ReconnectPolicy {
    /// The pause before retry number `retry` (0-based): `initial_backoff * 2^retry`,
    /// capped at `max_backoff`, then scaled by `jitter` (clamped to `0.0..=1.0`, NaN
    /// counting as 0) into
    /// the upper half of that range, so clients cut off together do not return
    /// together.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(31));
        let base = self
            .initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        base.mul_f64(0.5 + 0.5 * jitter)
    }

    /// [`backoff`](Self::backoff) with a jitter that differs between calls and
    /// processes: the pause an application that reconnects by itself should take.
    pub fn jittered_backoff(&self, retry: u32) -> Duration {
        self.backoff(retry, super::jitter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling_and_jitters_in_the_upper_half() {
        let p = ReconnectPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(800));
        assert_eq!(p.backoff(4, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(u32::MAX, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(0, 7.0), Duration::from_millis(100));
        assert_eq!(p.backoff(0, f64::NAN), Duration::from_millis(50));
    }
}
