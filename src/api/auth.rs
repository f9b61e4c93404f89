//! API keys: `Authorization: Bearer <key>` on every endpoint but `/healthz`.
//! Keys are compared as SHA-256 digests in constant time, against every
//! configured key, so neither timing nor length tells a caller anything.

use super::{AppState, problem::Problem};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The configured keys as (name, digest of the secret).
pub struct Keys(Vec<(String, [u8; 32])>);

/// The name of the key that made this request.
#[derive(Debug, Clone)]
pub struct KeyName(pub String);

impl Keys {
    pub fn new(keys: &[(String, crate::config::Secret)]) -> Keys {
        Keys(keys.iter().map(|(n, s)| (n.clone(), Sha256::digest(s.expose().as_bytes()).into())).collect())
    }

    pub fn find(&self, presented: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, d) in &self.0 {
            if bool::from(d.ct_eq(&digest)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

pub async fn require_key(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Problem::unauthorized("send the API key as 'Authorization: Bearer <key>'").into_response();
    };
    let presented = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    let Some(presented) = presented else {
        return Problem::unauthorized("the Authorization header must be 'Bearer <key>'").into_response();
    };
    let name = state.keys.read().ok().and_then(|k| k.find(presented).map(str::to_string));
    match name {
        Some(name) => {
            req.extensions_mut().insert(KeyName(name));
            next.run(req).await
        }
        None => Problem::unauthorized("unknown API key").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn finds_only_exact_keys() {
        let k = Keys::new(&[
            ("a".into(), Secret::new("secret-one-123456")),
            ("b".into(), Secret::new("secret-two-123456")),
        ]);
        assert_eq!(k.find("secret-two-123456"), Some("b"));
        assert_eq!(k.find("secret-two-12345"), None);
        assert_eq!(k.find(""), None);
    }
}
