//! Standard Webhooks signatures: `webhook-signature: v1,<base64(HMAC-SHA256(key,
//! "<webhook-id>.<webhook-timestamp>.<body>"))>` (<https://www.standardwebhooks.com/>).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `webhook-signature` value of one delivery attempt.
pub(crate) fn signature(key: &[u8], id: &str, timestamp_s: u64, body: &[u8]) -> String {
    let mut out = String::with_capacity(48);
    out.push_str("v1,");
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return out;
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode_string(mac.finalize().into_bytes(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (and of its libraries' tests;
    /// PyPI `standardwebhooks` gives the same).
    #[test]
    fn the_specification_example_verifies() {
        let key = crate::config::decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_part_is_signed() {
        let key = [7u8; 32];
        let base = signature(&key, "msg_1", 10, b"[]");
        assert_ne!(base, signature(&key, "msg_2", 10, b"[]"));
        assert_ne!(base, signature(&key, "msg_1", 11, b"[]"));
        assert_ne!(base, signature(&key, "msg_1", 10, b"[ ]"));
        assert_ne!(base, signature(&[8u8; 32], "msg_1", 10, b"[]"));
    }
}
