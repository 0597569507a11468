//! The HTTP client toward the provider: one pooled `reqwest` client, one attempt per call,
//! every transport failure mapped to a kind the retry policy understands.
//!
//! [`Upstream::post`] buffers the whole answer (batch runs, non-streaming gateway requests);
//! [`Upstream::open`] stops at the status and headers and leaves the body to be read as it
//! arrives ([`Opened`]), which is how the gateway relays a stream chunk by chunk.

use super::key::ApiKey;
use crate::provider::{Provider, azure};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use std::pin::Pin;
use std::time::Duration;

/// The provider's public API, used when no `--base-url` is given.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A complete HTTP answer from the provider.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The first header named `name` (lower-case) whose value is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_text(&self.headers, name)
    }
}

/// The first header named `name` (lower-case) in `headers`, if its value is text.
pub fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// Every header of `headers` whose value is text, as `(name, value)`.
pub fn text_headers(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
}

/// The body of an [`Opened`] answer, chunk by chunk as the provider sends it.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, TransportError>> + Send>>;

/// An answer whose status and headers arrived and whose body has not been read yet. Dropping
/// it closes the connection, which cancels the request at the provider.
#[derive(Debug)]
pub struct Opened {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    response: reqwest::Response,
    timeout: Duration,
}

impl Opened {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Read the whole body (within the per-attempt timeout) into a [`Reply`].
    pub async fn into_reply(self) -> Result<Reply, TransportError> {
        let timeout = self.timeout;
        let body = match tokio::time::timeout(timeout, self.response.bytes()).await {
            Ok(Ok(body)) => body,
            Ok(Err(err)) => return Err(transport_error(err, true, timeout)),
            Err(_) => return Err(TransportError::Timeout(timeout)),
        };
        Ok(Reply {
            status: self.status,
            headers: self.headers,
            body,
        })
    }

    /// The body as a stream of chunks; a gap longer than the per-attempt timeout between two
    /// chunks ends it with [`TransportError::Timeout`].
    pub fn into_stream(self) -> ByteStream {
        let timeout = self.timeout;
        let chunks = self.response.bytes_stream();
        let stream = futures::stream::unfold(Some(chunks), move |state| async move {
            let mut chunks = state?;
            match tokio::time::timeout(timeout, chunks.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(chunks))),
                Ok(Some(Err(err))) => Some((Err(transport_error(err, true, timeout)), None)),
                Ok(None) => None,
                Err(_) => Some((Err(TransportError::Timeout(timeout)), None)),
            }
        });
        Box::pin(stream)
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
    provider: Provider,
    api_version: String,
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
    /// A client for `base_url` (e.g. `https://api.openai.com/v1`) with a per-attempt timeout;
    /// the provider is inferred from the URL ([`Provider::infer`]) until
    /// [`Upstream::with_provider`] sets it.
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
            provider: Provider::infer(&base_url),
            base_url,
            timeout,
            api_version: azure::DEFAULT_API_VERSION.to_string(),
        })
    }

    /// The same upstream spoken to as `provider`, with `api_version` (Azure's `api-version`;
    /// `None` keeps the default).
    pub fn with_provider(mut self, provider: Provider, api_version: Option<&str>) -> Self {
        self.provider = provider;
        if let Some(version) = api_version {
            self.api_version = version.to_string();
        }
        self
    }

    /// The same connection pool and timeout toward another endpoint (one deployment of a
    /// gateway's model list).
    pub fn sibling(
        &self,
        base_url: &str,
        provider: Provider,
        api_version: Option<&str>,
    ) -> Result<Self, UpstreamError> {
        let base_url = base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(UpstreamError::BadBaseUrl(base_url));
        }
        Ok(Upstream {
            http: self.http.clone(),
            base_url,
            timeout: self.timeout,
            provider,
            api_version: self.api_version.clone(),
        }
        .with_provider(provider, api_version))
    }

    /// The provider this upstream speaks to.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Where an API path such as `/v1/chat/completions` for `model` goes (OpenAI: the base URL
    /// carries the `/v1`; Azure: the model's deployment URL with the `api-version`).
    pub fn url_for(&self, path: &str, model: &str) -> String {
        self.provider
            .url(&self.base_url, path, model, &self.api_version)
    }

    /// `request` authenticated with `key` the provider's way.
    fn authenticated(
        &self,
        request: reqwest::RequestBuilder,
        key: &ApiKey,
    ) -> reqwest::RequestBuilder {
        self.provider
            .auth_headers(key.secret())
            .into_iter()
            .fold(request, |request, (name, value)| {
                request.header(name, value)
            })
    }

    /// The per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A JSON POST of `body` for `model` to `path`, authenticated with `key`.
    fn json_post(
        &self,
        key: &ApiKey,
        path: &str,
        model: &str,
        body: Bytes,
    ) -> reqwest::RequestBuilder {
        let request = self.http.post(self.url_for(path, model));
        self.authenticated(request, key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
    }

    /// Send `request` with the per-attempt timeout and read the whole answer.
    async fn whole(&self, request: reqwest::RequestBuilder) -> Result<Reply, TransportError> {
        let mut response = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport_error(e, false, self.timeout))?;
        let status = response.status().as_u16();
        // Moved out, not copied: reading the body does not need them.
        let headers = std::mem::take(response.headers_mut());
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(e, true, self.timeout))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Send one attempt: POST `body` (JSON, for `model`) to `path` with `key`, and read the
    /// whole answer.
    pub async fn post(
        &self,
        key: &ApiKey,
        path: &str,
        model: &str,
        body: Bytes,
    ) -> Result<Reply, TransportError> {
        self.whole(self.json_post(key, path, model, body)).await
    }

    /// Send one attempt and return as soon as the status and headers arrive (within the
    /// per-attempt timeout); the body is read later from the [`Opened`] answer.
    pub async fn open(
        &self,
        key: &ApiKey,
        path: &str,
        model: &str,
        body: Bytes,
    ) -> Result<Opened, TransportError> {
        let send = self.json_post(key, path, model, body).send();
        let mut response = match tokio::time::timeout(self.timeout, send).await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => return Err(transport_error(err, false, self.timeout)),
            Err(_) => return Err(TransportError::Timeout(self.timeout)),
        };
        Ok(Opened {
            status: response.status().as_u16(),
            headers: std::mem::take(response.headers_mut()),
            response,
            timeout: self.timeout,
        })
    }

    /// GET `path` with `key` (unpaced calls such as `/v1/models`) and read the whole answer.
    pub async fn get(&self, key: &ApiKey, path: &str) -> Result<Reply, TransportError> {
        let request = self.http.get(self.url_for(path, ""));
        self.whole(self.authenticated(request, key)).await
    }
}

/// The error of an attempt, without the URL (a gateway's clients see this text, and the
/// provider's address is not theirs to know).
fn transport_error(err: reqwest::Error, reading_body: bool, timeout: Duration) -> TransportError {
    let err = &err.without_url();
    if err.is_timeout() {
        TransportError::Timeout(timeout)
    } else if err.is_connect() {
        TransportError::Connect(describe(err))
    } else if reading_body {
        TransportError::Truncated(describe(err))
    } else {
        TransportError::Reset(describe(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_api_paths_onto_the_base_url() {
        let up = Upstream::new("http://127.0.0.1:9/v1/", Duration::from_secs(1)).unwrap();
        assert_eq!(
            up.url_for("/v1/chat/completions", "m"),
            "http://127.0.0.1:9/v1/chat/completions"
        );
        assert!(Upstream::new("ftp://x", Duration::from_secs(1)).is_err());
    }
}
