//! A small client of the daemon's HTTP API, used by `smsgw send`, `smsgw
//! status` and `smsgw bench`.

use serde_json::Value;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach smsgw at {url}: {source}")]
    Connect { url: String, source: reqwest::Error },
    #[error("smsgw answered {status}: {detail}")]
    Refused { status: u16, detail: String, body: Value },
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// Make ring the process's rustls crypto provider (once; later calls do
/// nothing). reqwest is built with rustls and no provider of its own (the
/// tree's TLS is ring, no OpenSSL or aws-lc), so a process installs this
/// before it builds any HTTP client, for http:// as well as https://.
pub fn install_tls_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    pub fn new(base: &str, key: &str) -> Client {
        install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .build()
            .expect("a client without TLS or proxies always builds");
        Client { http, base: base.trim_end_matches('/').to_string(), key: key.to_string() }
    }

    async fn finish(&self, url: String, r: Result<reqwest::Response, reqwest::Error>) -> Result<Value, ClientError> {
        let resp = r.map_err(|source| ClientError::Connect { url: url.clone(), source })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            let detail =
                body.get("detail").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| status.to_string());
            Err(ClientError::Refused { status: status.as_u16(), detail, body })
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let r = self.http.post(&url).bearer_auth(&self.key).json(body).send().await;
        self.finish(url, r).await
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let r = self.http.get(&url).bearer_auth(&self.key).send().await;
        self.finish(url, r).await
    }
}
