//! The agent console's own logins, for teams without their own single sign-on:
//! `[[console.users]]` with argon2id password hashes, `POST /console/v1/login` and
//! `/refresh` (the reactor's half is `reactor/web_console.rs`; passwords are checked
//! on the login threads, `worker/console_login.rs`, never on a reactor or worker).
//!
//! - `password.rs`: hashing and checking argon2id PHC strings;
//! - `login.rs`: the sans-IO half of the endpoints: the request body, the users
//!   table, the claims a login earns and the response body.

pub mod login;
pub mod password;

pub use login::{Account, LoginError, LoginRequest, Outcome, Users};
