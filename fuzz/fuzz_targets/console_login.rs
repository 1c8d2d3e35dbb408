//! Fuzz target for the console's login form (`POST /console/v1/login`,
//! `switchboard::console::login::LoginRequest::parse`).
//!
//! The input is the body. The target asserts that an accepted body has a user name of
//! 1 to 256 bytes without control characters and a password of 1 to
//! `MAX_PASSWORD_BYTES` bytes, and that writing them back as JSON reads the same; and
//! that a refusal never quotes the body (the password must not reach a log or an
//! answer): its message is one of the fixed ones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::console::login::{LoginError, LoginRequest, MAX_USERNAME_BYTES};
use switchboard::console::password::MAX_PASSWORD_BYTES;

fuzz_target!(|data: &[u8]| {
    match LoginRequest::parse(data) {
        Ok(req) => {
            assert!(!req.username.is_empty() && req.username.len() <= MAX_USERNAME_BYTES);
            assert!(!req.username.chars().any(char::is_control));
            assert!(!req.password.is_empty() && req.password.len() <= MAX_PASSWORD_BYTES);
            let text = serde_json::json!({"username": req.username, "password": req.password});
            let again = LoginRequest::parse(text.to_string().as_bytes()).unwrap();
            assert_eq!(
                (&again.username, &again.password),
                (&req.username, &req.password)
            );
        }
        Err(LoginError::BadBody(why)) => {
            assert!(
                why == "not JSON" || why == "expected {\"username\": string, \"password\": string}",
                "{why}"
            );
        }
        Err(LoginError::Length { field, max }) => {
            assert!(matches!(
                (field, max),
                ("username", MAX_USERNAME_BYTES) | ("password", MAX_PASSWORD_BYTES)
            ));
        }
    }
});
