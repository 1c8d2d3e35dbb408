//! Authentication: HS256 JSON Web Tokens minted by the customer's own back end.
//!
//! Sans-IO apart from loading keys: [`Verifier::from_config`] reads the configured
//! secrets (or the development secret, see [`dev_secret`]) once; after that
//! [`Verifier::verify`] is a pure function of the token and the clock value it is given.
//!
//! - `claims.rs`: the token payload ([`Claims`]) and what a verified token proves
//!   ([`Identity`]);
//! - `verify.rs`: the key set, verification and minting ([`Verifier`]);
//! - `dev_secret.rs`: the development secret and the loopback-only rule that goes with
//!   it ([`require_loopback_for_dev_secret`]);
//! - `error.rs`: why a token was rejected ([`AuthError`], with its protocol code);
//! - `visitor.rs`: tokens the gateway issues to a site's visitors ([`visitor::issue`]),
//!   and the per-address rate of them ([`visitor::RateTable`]).
//!
//! Tokens and secrets are never logged, and no error message contains one.

mod claims;
pub mod dev_secret;
mod error;
mod verify;
pub mod visitor;

pub use claims::{Claims, Identity, MAX_SUB_BYTES, ROLE_NAMES, role_code, role_name};
pub use dev_secret::require_loopback_for_dev_secret;
pub use error::AuthError;
pub use verify::{MAX_TOKEN_BYTES, VerifiedToken, Verifier};
