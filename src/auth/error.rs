//! Why a token was rejected, or why keys could not be set up.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::protocol::ErrorCode;

/// Why a token was rejected, or why keys could not be set up.
///
/// The first group of variants are verdicts on a token, each with its protocol
/// [`ErrorCode`] ([`AuthError::code`]); the rest are deployment problems found while
/// loading keys or minting.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token is not a well-formed JWT (bad base64, bad JSON, wrong shape, too long).
    #[error("token is malformed")]
    Malformed,
    /// The token's signature does not verify with the key it names.
    #[error("token signature does not verify")]
    BadSignature,
    /// The token's header names an algorithm other than HS256.
    #[error("token algorithm is not HS256")]
    WrongAlgorithm,
    /// The token's `exp` is past (beyond the allowed leeway).
    #[error("token has expired")]
    Expired,
    /// The token's `nbf` is in the future (beyond the allowed leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// The token (or a mint request) names a key id that is not configured.
    #[error("no key with id {kid:?} is configured")]
    UnknownKey {
        /// The key id asked for (cut to 64 bytes).
        kid: String,
    },
    /// A claim is missing or has a value the server does not accept.
    #[error("bad claims: {0}")]
    BadClaims(String),
    /// A configured key is unusable (no secret, two secrets, too short, duplicate id).
    #[error("auth key {kid:?}: {reason}")]
    Key {
        /// The key's id.
        kid: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key's `secret_file` could not be read.
    #[error("auth key {kid:?}: cannot read secret file {path}: {source}")]
    SecretFile {
        /// The key's id.
        kid: String,
        /// The configured file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The development secret could not be read or created.
    #[error("cannot use development secret {path}: {source}")]
    DevSecret {
        /// `<state_dir>/dev-secret`.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// No `[[auth.keys]]` are configured (so the development secret is in use) but a
    /// listener is bound to an address other than loopback.
    #[error(
        "no [auth] keys configured, so the development secret is in use, but \
         `{listener}` listens on non-loopback {addr}; configure [[auth.keys]] or bind loopback"
    )]
    DevSecretNotLoopback {
        /// Config key of the listener, e.g. `listeners.client`.
        listener: &'static str,
        /// Its configured address.
        addr: SocketAddr,
    },
    /// Signing failed (the claims could not be serialised).
    #[error("cannot sign token: {0}")]
    Mint(String),
}

impl AuthError {
    /// The protocol error code to send for this rejection: 200 for malformed, badly
    /// signed or non-HS256 tokens, 201 for expired or not-yet-valid ones, 202 for an
    /// unknown `kid`, 203 for bad claims, and 502 (`Internal`) for deployment problems.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed | Self::BadSignature | Self::WrongAlgorithm => ErrorCode::TokenInvalid,
            Self::Expired | Self::NotYetValid => ErrorCode::TokenExpired,
            Self::UnknownKey { .. } => ErrorCode::UnknownKey,
            Self::BadClaims(_) => ErrorCode::BadClaims,
            Self::Key { .. }
            | Self::SecretFile { .. }
            | Self::DevSecret { .. }
            | Self::DevSecretNotLoopback { .. }
            | Self::Mint(_) => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_verdicts_map_to_2xx_codes() {
        assert_eq!(AuthError::Malformed.code().as_u16(), 200);
        assert_eq!(AuthError::BadSignature.code().as_u16(), 200);
        assert_eq!(AuthError::WrongAlgorithm.code().as_u16(), 200);
        assert_eq!(AuthError::Expired.code().as_u16(), 201);
        assert_eq!(AuthError::NotYetValid.code().as_u16(), 201);
        let unknown = AuthError::UnknownKey { kid: "k".into() };
        assert_eq!(unknown.code().as_u16(), 202);
        assert_eq!(AuthError::BadClaims("x".into()).code().as_u16(), 203);
        assert_eq!(AuthError::Mint("x".into()).code(), ErrorCode::Internal);
    }
}
