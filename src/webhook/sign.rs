//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the
//! HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` under each
//! secret still in force, base64, each as `v1,<sig>`, space-separated. A
//! receiver with any one of the secrets (the old one during a rotation)
//! accepts the delivery; the libraries of every language check it.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `webhook-signature` header for `body` sent as `id` at `timestamp`
/// (unix seconds), one `v1,` signature per key (the key bytes, as
/// `config::webhooks::secret_bytes` decodes a `whsec_` secret).
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter().map(|k| sign_one(k, id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

fn sign_one(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::webhooks::secret_bytes;

    /// The example the specification and its reference libraries publish:
    /// reproducing it is what says a receiver's library accepts ours.
    #[test]
    fn the_published_example() {
        let key = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let header = signature_header(&[key], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn one_signature_per_secret_in_force() {
        let a = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let b = vec![7u8; 32];
        let header = signature_header(&[b.clone(), a.clone()], "evt_1", 1, b"{}");
        let parts: Vec<_> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature_header(&[b], "evt_1", 1, b"{}"));
        assert_eq!(parts[1], signature_header(&[a], "evt_1", 1, b"{}"));
    }
}
