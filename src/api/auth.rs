//! API keys: `Authorization: Bearer <key>` on every endpoint but `/healthz`.
//! Keys are compared as SHA-256 digests in constant time, against every
//! configured key, so neither timing nor length tells a caller anything.
//!
//! A key that matches becomes the request's `Caller`: its name, its scopes
//! (which handlers check with `Caller::require`) and its daily quota (which
//! the store checks as it writes). Its rate limit is applied here, to every
//! request, before any handler runs.

use super::{AppState, problem::Problem};
use crate::config::{KeyGrant, Scope};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The configured keys, each with the digest of its secret.
pub struct Keys(Vec<([u8; 32], Arc<Caller>)>);

/// The key that made a request, as handlers see it.
#[derive(Debug)]
pub struct Caller {
    pub name: String,
    scopes: BTreeSet<Scope>,
    /// Messages per UTC day, if the key has a quota.
    pub daily_quota: Option<u64>,
    limiter: Option<Arc<Limiter>>,
}

/// A key's request rate: the settings it was built from, so a reload that
/// leaves them alone keeps the bucket (and what the key has used of it).
struct Limiter {
    rate: f64,
    burst: u32,
    bucket: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Limiter({}/s, burst {})", self.rate, self.burst)
    }
}

impl Limiter {
    fn new(rate: f64, burst: u32) -> Limiter {
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .expect("period is at least 1 ns")
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Limiter { rate, burst, bucket: RateLimiter::direct(quota) }
    }
}

impl Caller {
    /// Ok when the key has one of `any_of`, or `admin`; else a 403 naming
    /// the scope the request needs.
    pub fn require(&self, any_of: &[Scope]) -> Result<(), Problem> {
        if self.scopes.contains(&Scope::Admin) || any_of.iter().any(|s| self.scopes.contains(s)) {
            return Ok(());
        }
        metrics::counter!(crate::metrics::KEY_REFUSED, "api_key" => self.name.clone(), "reason" => "forbidden")
            .increment(1);
        let needed: Vec<&str> = any_of.iter().map(|s| s.as_str()).collect();
        let has: Vec<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
        Err(Problem::forbidden(
            needed.first().copied().unwrap_or(Scope::Admin.as_str()),
            format!(
                "this needs an API key with the {} scope (or \"admin\"); key {:?} has {}",
                needed.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" or "),
                self.name,
                has.join(", ")
            ),
        ))
    }

    /// The key whose messages this caller may see: None for `admin` (all).
    pub fn owner(&self) -> Option<&str> {
        (!self.scopes.contains(&Scope::Admin)).then_some(self.name.as_str())
    }
}

impl Keys {
    /// Build from the config. Limiters of keys in `previous` whose rate and
    /// burst did not change are kept, so a reload does not refill a bucket.
    pub fn new(grants: &[KeyGrant], previous: Option<&Keys>) -> Keys {
        let kept = |name: &str, rate: f64, burst: u32| {
            previous?
                .0
                .iter()
                .filter_map(|(_, c)| c.limiter.as_ref().filter(|_| c.name == name))
                .find(|l| l.rate == rate && l.burst == burst)
                .cloned()
        };
        Keys(
            grants
                .iter()
                .map(|g| {
                    let limiter = g.rate_per_sec.map(|rate| {
                        let burst = g.burst.unwrap_or(1);
                        kept(&g.name, rate, burst).unwrap_or_else(|| Arc::new(Limiter::new(rate, burst)))
                    });
                    let caller =
                        Caller { name: g.name.clone(), scopes: g.scopes.clone(), daily_quota: g.daily_quota, limiter };
                    (Sha256::digest(g.secret.expose().as_bytes()).into(), Arc::new(caller))
                })
                .collect(),
        )
    }

    /// Whether a key of this name is configured.
    pub fn named(&self, name: &str) -> bool {
        self.0.iter().any(|(_, c)| c.name == name)
    }

    pub fn find(&self, presented: &str) -> Option<Arc<Caller>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (d, caller) in &self.0 {
            if bool::from(d.ct_eq(&digest)) {
                found = Some(caller.clone());
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
    let caller = state.keys.read().ok().and_then(|k| k.find(presented));
    let Some(caller) = caller else {
        return Problem::unauthorized("unknown API key").into_response();
    };
    if let Some(l) = &caller.limiter
        && let Err(not_until) = l.bucket.check()
    {
        let wait = not_until.wait_time_from(l.bucket.clock().now());
        metrics::counter!(crate::metrics::KEY_REFUSED, "api_key" => caller.name.clone(), "reason" => "rate_limited")
            .increment(1);
        return Problem::too_many(
            "rate-limited",
            format!(
                "API key {:?} is over its rate limit of {} requests per second (burst {})",
                caller.name, l.rate, l.burst
            ),
            wait,
        )
        .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(name: &str, secret: &str, scopes: &[Scope]) -> KeyGrant {
        KeyGrant {
            name: name.into(),
            secret: crate::config::Secret::new(secret),
            scopes: scopes.iter().copied().collect(),
            rate_per_sec: None,
            burst: None,
            daily_quota: None,
        }
    }

    #[test]
    fn finds_only_exact_keys() {
        let k = Keys::new(
            &[grant("a", "secret-one-123456", &[Scope::Send]), grant("b", "secret-two-123456", &[Scope::Admin])],
            None,
        );
        assert_eq!(k.find("secret-two-123456").map(|c| c.name.clone()).as_deref(), Some("b"));
        assert!(k.find("secret-two-12345").is_none());
        assert!(k.find("").is_none());
    }

    #[test]
    fn admin_has_every_scope_and_sees_every_key() {
        let k = Keys::new(
            &[grant("a", "secret-one-123456", &[Scope::Send]), grant("b", "secret-two-123456", &[Scope::Admin])],
            None,
        );
        let a = k.find("secret-one-123456").unwrap();
        let b = k.find("secret-two-123456").unwrap();
        assert!(a.require(&[Scope::Send]).is_ok());
        let p = a.require(&[Scope::Metrics]).unwrap_err();
        assert_eq!(p.status, 403);
        assert!(p.detail.contains("\"metrics\""), "{}", p.detail);
        assert_eq!(a.owner(), Some("a"));
        assert!(b.require(&[Scope::Metrics]).is_ok());
        assert_eq!(b.owner(), None);
    }
}
