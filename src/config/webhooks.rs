//! `[webhooks]`: how events are pushed to LAN services — where they may go
//! (an optional allow-list of hosts), how long one attempt may take, how
//! many attempts run at once per subscription, how long a failing event is
//! retried — and the subscriptions the config file declares. A webhook
//! URL and a signing secret are checked here, once, for the config and the
//! API alike.

use super::Secret;
use crate::message::EventKind;
use base64::Engine;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The `[webhooks]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Webhooks {
    /// Hosts (names or addresses, optionally `host:port`) webhooks may be
    /// sent to; empty: any. Receivers on the LAN are the normal case.
    pub allow_hosts: Vec<String>,
    /// The most one delivery attempt may take, connection included.
    pub timeout_secs: u64,
    /// Deliveries in flight at once per subscription.
    pub concurrency: usize,
    /// How long an event that keeps failing is retried before it is dead.
    pub retry_for_secs: u64,
    /// Subscriptions declared in the file (the API adds its own).
    pub subscriptions: Vec<Subscription>,
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks {
            allow_hosts: Vec::new(),
            timeout_secs: 10,
            concurrency: 4,
            retry_for_secs: 24 * 3600,
            subscriptions: Vec::new(),
        }
    }
}

/// One `[[webhooks.subscriptions]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// Unique; names the subscription in the API and the log.
    pub name: String,
    /// The API key (by name) whose events it receives, or `smpp:<system_id>`
    /// for an SMPP server account's.
    pub key: String,
    pub url: String,
    /// Event types (`message.delivered`, ...); read as strings so an
    /// unknown one is named with its place in the file.
    pub events: Vec<String>,
    /// `whsec_` and the base64 of the key; or `secret_file`.
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

/// Why a webhook URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{0:?} is not a URL: {1}")]
    Unparsable(String, String),
    #[error("{0:?}: only http and https URLs can receive webhooks")]
    Scheme(String),
    /// Names the URL without its user name and password.
    #[error("{0:?}: a URL with a user name or password would put a secret in the API's answers; use the signature")]
    Credentials(String),
    #[error("{url:?}: host {host:?} is not in webhooks.allow_hosts")]
    NotAllowed { url: String, host: String },
}

/// Check a webhook URL: http or https, a host, no credentials, and a host
/// the allow-list permits (when there is one).
pub fn check_url(url: &str, allow_hosts: &[String]) -> Result<url::Url, UrlError> {
    let parsed = url::Url::parse(url).map_err(|e| UrlError::Unparsable(url.to_string(), e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(url.to_string()));
    }
    let Some(host) = parsed.host_str() else {
        return Err(UrlError::Unparsable(url.to_string(), "no host".into()));
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        let mut shown = parsed.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return Err(UrlError::Credentials(shown.to_string()));
    }
    if !allow_hosts.is_empty() {
        let host = host.to_ascii_lowercase();
        let with_port = parsed.port_or_known_default().map(|p| format!("{host}:{p}"));
        let allowed = allow_hosts.iter().any(|a| {
            let a = a.to_ascii_lowercase();
            a.trim_matches(['[', ']']) == host.trim_matches(['[', ']']) || Some(&a) == with_port.as_ref()
        });
        if !allowed {
            return Err(UrlError::NotAllowed { url: url.to_string(), host });
        }
    }
    Ok(parsed)
}

/// Why a signing secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a signing secret is `whsec_` followed by the base64 of 24 to 64 random bytes")]
    Format,
}

/// The key bytes of a Standard Webhooks secret (`whsec_<base64>`).
pub fn secret_bytes(secret: &str) -> Result<Vec<u8>, SecretError> {
    let b64 = secret.strip_prefix("whsec_").ok_or(SecretError::Format)?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| SecretError::Format)?;
    if !(24..=64).contains(&bytes.len()) {
        return Err(SecretError::Format);
    }
    Ok(bytes)
}

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl Webhooks {
    /// Check the table; `keys` are the API keys' names. Reads each
    /// `secret_file` (relative to `base`) into `secret`.
    pub(super) fn check(&mut self, keys: &[&str], base: &Path, bad: &mut dyn FnMut(&str, String)) {
        if !(1..=600).contains(&self.timeout_secs) {
            bad("webhooks.timeout_secs", format!("{} is outside 1..=600 seconds", self.timeout_secs));
        }
        if !(1..=256).contains(&self.concurrency) {
            bad("webhooks.concurrency", format!("{} is outside 1..=256", self.concurrency));
        }
        if !(60..=30 * 24 * 3600).contains(&self.retry_for_secs) {
            bad("webhooks.retry_for_secs", format!("{} is outside 60..=2592000 seconds", self.retry_for_secs));
        }
        for (i, h) in self.allow_hosts.iter().enumerate() {
            if h.trim().is_empty() || h.contains('/') {
                bad(&format!("webhooks.allow_hosts[{i}]"), format!("{h:?} is not a host name or address"));
            }
        }
        let mut names = std::collections::HashSet::new();
        let allow = self.allow_hosts.clone();
        for (i, s) in self.subscriptions.iter_mut().enumerate() {
            let key = format!("webhooks.subscriptions[{i}]");
            if s.name.trim().is_empty() {
                bad(&format!("{key}.name"), "must not be empty".into());
            } else if !names.insert(s.name.clone()) {
                bad(&format!("{key}.name"), format!("duplicate subscription name {:?}", s.name));
            }
            if !keys.contains(&s.key.as_str()) {
                bad(
                    &format!("{key}.key"),
                    format!("no API key is named {:?} (nor SMPP account, as \"smpp:<system_id>\")", s.key),
                );
            }
            if let Err(e) = check_url(&s.url, &allow) {
                bad(&format!("{key}.url"), e.to_string());
            }
            if s.events.is_empty() {
                bad(&format!("{key}.events"), "name at least one event type".into());
            }
            for (j, e) in s.events.iter().enumerate() {
                if EventKind::parse(e).is_none() {
                    let known: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                    bad(
                        &format!("{key}.events[{j}]"),
                        format!("unknown event type {e:?}; known: {}", known.join(", ")),
                    );
                }
            }
            match (&s.secret, &s.secret_file) {
                (Some(_), Some(_)) => bad(&format!("{key}.secret"), "give secret or secret_file, not both".into()),
                (None, None) => bad(
                    &format!("{key}.secret"),
                    "a subscription in the file needs its signing secret (secret or secret_file), so the receiver \
                     can be given the same one"
                        .into(),
                ),
                (None, Some(f)) => match super::read_secret_file(&base.join(f)) {
                    Ok(text) => s.secret = Some(Secret::new(text)),
                    Err(e) => bad(&format!("{key}.secret_file"), format!("{}: {e}", f.display())),
                },
                (Some(_), None) => {}
            }
            if let Some(secret) = &s.secret
                && let Err(e) = secret_bytes(secret.expose())
            {
                bad(&format!("{key}.secret"), e.to_string());
            }
        }
    }

    /// The subscription's event kinds (checked by `check`).
    pub fn kinds(s: &Subscription) -> Vec<EventKind> {
        s.events.iter().filter_map(|e| EventKind::parse(e)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("http://10.0.0.5:8080/hook", &[]).is_ok());
        assert!(matches!(check_url("ftp://x/", &[]), Err(UrlError::Scheme(_))));
        assert!(matches!(check_url("not a url", &[]), Err(UrlError::Unparsable(..))));
        let err = check_url("http://crm:hunter2@x/hook", &[]).unwrap_err();
        assert_eq!(err, UrlError::Credentials("http://x/hook".into()));
        assert!(!err.to_string().contains("hunter2"), "the error repeats the password: {err}");
        let allow = vec!["crm.lan".to_string(), "10.0.0.5:8080".to_string()];
        assert!(check_url("https://CRM.lan/h", &allow).is_ok());
        assert!(check_url("http://10.0.0.5:8080/h", &allow).is_ok());
        assert!(matches!(check_url("http://10.0.0.5:9090/h", &allow), Err(UrlError::NotAllowed { .. })));
        assert!(matches!(check_url("http://evil.example/h", &allow), Err(UrlError::NotAllowed { .. })));
    }

    #[test]
    fn secrets() {
        let s = new_secret();
        assert_eq!(secret_bytes(&s).unwrap().len(), 32);
        assert_eq!(
            secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Ok(vec![
                0x31, 0xf2, 0x90, 0xf6, 0xbf, 0x06, 0x29, 0x8a, 0xab, 0x4f, 0x08, 0xd4, 0x3c, 0x3f, 0x08, 0x2c, 0xf6,
                0x48, 0xa3, 0x62, 0xda, 0x2d, 0xa4, 0xb0
            ])
        );
        assert_eq!(secret_bytes("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Err(SecretError::Format));
        assert_eq!(secret_bytes("whsec_c2hvcnQ="), Err(SecretError::Format));
    }
}
