//! One delivery attempt: a signed POST with reqwest (keep-alive pool,
//! http:// on the LAN, https:// with rustls on ring and the system's roots,
//! never following a redirect), and what its answer means: done, the
//! receiver is gone for good (410), or try again later — when the receiver
//! said (`Retry-After` on 429 and 503, capped at an hour) or after an
//! exponential backoff with full jitter.

use super::sign::signature_header;
use crate::message::Millis;
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest wait a receiver's `Retry-After` or the backoff sets.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// The first retry's backoff ceiling; doubles with each failed attempt.
/// Short, so a receiver that was down a moment hears soon.
const FIRST_DELAY: Duration = Duration::from_secs(1);
/// No retry sooner than this, whatever the jitter drew.
const MIN_DELAY: Duration = Duration::from_millis(250);

/// What an attempt's answer means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx: delivered.
    Done,
    /// 410 Gone: the receiver asks for no more.
    Gone,
    /// Anything else: try again, at the receiver's `Retry-After` if it gave
    /// one (429 and 503), else after the backoff.
    Retry { after: Option<Duration> },
}

/// One attempt's result, as recorded.
#[derive(Debug, Clone)]
pub struct Answer {
    pub verdict: Verdict,
    /// The HTTP status; none when no answer came.
    pub status: Option<u16>,
    pub latency: Duration,
    /// Why it failed: the status line, or the transport error.
    pub error: Option<String>,
}

/// The HTTP client every attempt shares (its connections stay open).
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct ClientError(String);

impl Sender {
    /// A client whose attempts take at most `timeout`, connection included.
    pub fn new(timeout: Duration) -> Result<Sender, ClientError> {
        use tokio_rustls::rustls;
        crate::client::install_tls_provider();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("smsgw/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError(e.to_string()))?;
        Ok(Sender { client })
    }

    /// POST `body` to `url` as event `id`, signed with every key in `keys`.
    pub async fn attempt(&self, url: &str, id: &str, body: Vec<u8>, keys: &[Vec<u8>]) -> Answer {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signature_header(keys, id, timestamp, &body);
        let started = Instant::now();
        let sent = self
            .client
            .post(url)
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Answer {
                    verdict: Verdict::Retry { after: None },
                    status: None,
                    latency: started.elapsed(),
                    error: Some(transport_error(&e)),
                };
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now().timestamp_millis()));
        // Read the (small) answer so the connection goes back to the pool;
        // its content does not matter.
        let _ = resp.bytes().await;
        let latency = started.elapsed();
        let verdict = classify(status.as_u16(), retry_after);
        let error = (verdict != Verdict::Done).then(|| {
            let reason = status.canonical_reason().unwrap_or("");
            format!("HTTP {} {reason}", status.as_u16()).trim_end().to_string()
        });
        Answer { verdict, status: Some(status.as_u16()), latency, error }
    }
}

/// The verdict for an HTTP status (and its `Retry-After`, if any).
pub fn classify(status: u16, retry_after: Option<Duration>) -> Verdict {
    match status {
        200..=299 => Verdict::Done,
        410 => Verdict::Gone,
        429 | 503 => Verdict::Retry { after: retry_after },
        _ => Verdict::Retry { after: None },
    }
}

/// `Retry-After`: seconds, or an HTTP date; capped at [`MAX_DELAY`].
pub fn parse_retry_after(value: &str, now: Millis) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?.timestamp_millis();
        Duration::from_millis(at.saturating_sub(now).max(0) as u64)
    };
    Some(wait.min(MAX_DELAY))
}

/// How long to wait after the `attempts`-th failed attempt: a random time
/// up to 1 s doubled per earlier failure, at most an hour ("full jitter":
/// receivers coming back are not hit by every sender at once).
pub fn backoff(attempts: u32) -> Duration {
    let ceiling = FIRST_DELAY.saturating_mul(1 << attempts.saturating_sub(1).min(20)).min(MAX_DELAY);
    let drawn = rand::rng().random_range(0..=ceiling.as_millis() as u64);
    Duration::from_millis(drawn).max(MIN_DELAY)
}

/// A transport failure in a few words (refused, timed out, reset...).
fn transport_error(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() { what.to_string() } else { format!("{what}: {cause}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify(200, None), Verdict::Done);
        assert_eq!(classify(204, None), Verdict::Done);
        assert_eq!(classify(410, None), Verdict::Gone);
        assert_eq!(classify(301, None), Verdict::Retry { after: None });
        assert_eq!(classify(500, Some(Duration::from_secs(5))), Verdict::Retry { after: None });
        let five = Some(Duration::from_secs(5));
        assert_eq!(classify(429, five), Verdict::Retry { after: five });
        assert_eq!(classify(503, five), Verdict::Retry { after: five });
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_capped_at_an_hour() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap().timestamp_millis();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("86400", now), Some(MAX_DELAY));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_to_an_hour_and_never_below_the_floor() {
        for attempts in 0..40 {
            let d = backoff(attempts);
            assert!(d >= MIN_DELAY && d <= MAX_DELAY, "{attempts}: {d:?}");
        }
        assert!(backoff(1) <= Duration::from_secs(1));
        assert!(backoff(3) <= Duration::from_secs(4));
    }
}
