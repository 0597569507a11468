//! The HTTP client toward the provider: one pooled `reqwest` client, one attempt per call,
//! every transport failure mapped to a kind the retry policy understands.

use super::key::ApiKey;
use bytes::Bytes;
use std::time::Duration;

/// The provider's public API, used when no `--base-url` is given.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A complete HTTP answer from the provider.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Response headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An attempt that got no complete answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No complete answer within the per-attempt timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection closed before a response arrived.
    #[error("connection closed before a response: {0}")]
    Reset(String),
    /// The response body stopped before its end.
    #[error("response body cut short: {0}")]
    Truncated(String),
}

/// A misconfigured upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// `--base-url` is not an http(s) URL.
    #[error("--base-url {0:?} is not an http:// or https:// URL")]
    BadBaseUrl(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The provider endpoint and the HTTP client.
#[derive(Debug, Clone)]
pub struct Upstream {
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
}

/// The full error chain of a reqwest error (the URL in it is the base URL, never a secret).
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

impl Upstream {
    /// A client for `base_url` (e.g. `https://api.openai.com/v1`) with a per-attempt timeout.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, UpstreamError> {
        let base_url = base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(UpstreamError::BadBaseUrl(base_url));
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .build()
            .map_err(|e| UpstreamError::Client(describe(&e)))?;
        Ok(Upstream {
            http,
            base_url,
            timeout,
        })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Where an API path such as `/v1/chat/completions` goes: the base URL carries the `/v1`.
    pub fn url_for(&self, path: &str) -> String {
        let tail = path.strip_prefix("/v1").unwrap_or(path);
        format!("{}{}", self.base_url, tail)
    }

    /// Send one attempt: POST `body` (JSON) to `path` with `key`, and read the whole answer.
    pub async fn post(
        &self,
        key: &ApiKey,
        path: &str,
        body: Bytes,
    ) -> Result<Reply, TransportError> {
        let response = self
            .http
            .post(self.url_for(path))
            .bearer_auth(key.secret())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(self.timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(&e, false))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e, true))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    fn transport_error(&self, err: &reqwest::Error, reading_body: bool) -> TransportError {
        if err.is_timeout() {
            TransportError::Timeout(self.timeout)
        } else if err.is_connect() {
            TransportError::Connect(describe(err))
        } else if reading_body {
            TransportError::Truncated(describe(err))
        } else {
            TransportError::Reset(describe(err))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_api_paths_onto_the_base_url() {
        let up = Upstream::new("http://127.0.0.1:9/v1/", Duration::from_secs(1)).unwrap();
        assert_eq!(
            up.url_for("/v1/chat/completions"),
            "http://127.0.0.1:9/v1/chat/completions"
        );
        assert!(Upstream::new("ftp://x", Duration::from_secs(1)).is_err());
    }
}
