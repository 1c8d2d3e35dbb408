//! argon2id password hashes as PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$…`):
//! what `switchboard passwd` prints and what a login is checked against. Checking
//! costs tens of milliseconds by design: it runs on the login threads only.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Bytes of salt drawn for a new hash.
pub const SALT_BYTES: usize = 16;

/// Longest password accepted, in bytes (longer ones are refused before hashing).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Empty, or longer than [`MAX_PASSWORD_BYTES`].
    #[error("a password is 1 to {MAX_PASSWORD_BYTES} bytes")]
    Length,
    /// The parameters or the salt were refused by the hasher.
    #[error("cannot hash: {0}")]
    Hash(String),
}

/// The parameters of new hashes: argon2's defaults, the OWASP minimum for argon2id
/// (m = 19 MiB, t = 2, p = 1).
pub fn default_params() -> Params {
    Params::DEFAULT
}

/// The argon2id PHC string of `password` with `salt` and `params`.
pub fn hash(
    password: &[u8],
    salt: &[u8; SALT_BYTES],
    params: Params,
) -> Result<String, PasswordError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::Length);
    }
    let salt = SaltString::encode_b64(salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` is the one `phc` is the hash of (with the parameters the
/// hash names; the comparison is constant-time). A string that is not an argon2id
/// PHC string matches nothing.
pub fn verify(phc: &str, password: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm.as_str() != "argon2id" || password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    Argon2::default().verify_password(password, &parsed).is_ok()
}

/// A hash no password is known for, with the parameters of `like` (or the
/// defaults): what a login for an unknown user is checked against, so that it
/// costs what a known user's does and its timing tells nothing.
pub fn dummy(like: Option<&str>, salt: &[u8; SALT_BYTES]) -> String {
    let params = like
        .and_then(|phc| PasswordHash::new(phc).ok())
        .and_then(|h| Params::try_from(&h).ok())
        .unwrap_or_else(default_params);
    hash(b"\0no user has this password\0", salt, params).unwrap_or_default()
}

/// Small parameters for tests (a check costs well under a millisecond).
#[cfg(test)]
pub(crate) fn cheap_params() -> Params {
    Params::new(256, 1, 1, None).unwrap_or(Params::DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash(b"correct horse", &[7; SALT_BYTES], cheap_params()).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{phc}");
        assert!(crate::config::check_password_hash(&phc).is_ok());
        assert!(verify(&phc, b"correct horse"));
        assert!(!verify(&phc, b"correct horsE"));
        assert!(!verify(&phc, b""));
        assert!(!verify("not a hash", b"correct horse"));
        // Another salt, another hash.
        let other = hash(b"correct horse", &[8; SALT_BYTES], cheap_params()).unwrap();
        assert_ne!(phc, other);
        assert!(verify(&other, b"correct horse"));
    }

    #[test]
    fn argon2i_and_lengths_are_refused() {
        let phc = hash(b"pw", &[1; SALT_BYTES], cheap_params()).unwrap();
        assert!(!verify(&phc.replacen("argon2id", "argon2i", 1), b"pw"));
        assert!(matches!(
            hash(b"", &[1; SALT_BYTES], cheap_params()),
            Err(PasswordError::Length)
        ));
        let long = vec![b'x'; MAX_PASSWORD_BYTES + 1];
        assert!(matches!(
            hash(&long, &[1; SALT_BYTES], cheap_params()),
            Err(PasswordError::Length)
        ));
    }

    #[test]
    fn the_dummy_takes_the_parameters_of_a_real_hash() {
        let phc = hash(b"pw", &[1; SALT_BYTES], cheap_params()).unwrap();
        let d = dummy(Some(&phc), &[2; SALT_BYTES]);
        assert!(d.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{d}");
        assert!(!verify(&d, b"pw"));
        assert!(dummy(None, &[2; SALT_BYTES]).starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }
}
