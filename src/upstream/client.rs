//! The provider endpoint: one attempt per call, prepared for the provider (URL, authentication)
//! and carried by a [`Transport`] (the real one: one pooled `reqwest` client), every transport
//! failure mapped to a kind the retry policy understands.
//!
//! [`Upstream::post`] buffers the whole answer (batch runs, non-streaming gateway requests);
//! [`Upstream::open`] stops at the status and headers and leaves the body to be read as it
//! arrives ([`Opened`]), which is how the gateway relays a stream chunk by chunk.

use super::key::ApiKey;
use super::transport::{HttpTransport, Method, Request, Transport, describe};
use crate::provider::{Provider, azure};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
pub struct Opened {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    body: ByteStream,
    timeout: Duration,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// An answer at its status and headers, whose `body` is read within `timeout`.
    pub fn new(status: u16, headers: HeaderMap, body: ByteStream, timeout: Duration) -> Self {
        Opened {
            status,
            headers,
            body,
            timeout,
        }
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Read the whole body (within the per-attempt timeout) into a [`Reply`].
    pub async fn into_reply(self) -> Result<Reply, TransportError> {
        let mut chunks = self.body;
        let read = async {
            let mut body = bytes::BytesMut::new();
            while let Some(chunk) = chunks.next().await {
                body.extend_from_slice(&chunk?);
            }
            Ok(body.freeze())
        };
        let body = match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(body)) => body,
            Ok(Err(err)) => return Err(err),
            Err(_) => return Err(TransportError::Timeout(self.timeout)),
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
        let stream = futures::stream::unfold(Some(self.body), move |state| async move {
            let mut chunks = state?;
            match tokio::time::timeout(timeout, chunks.next()).await {
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(chunks))),
                Ok(Some(Err(err))) => Some((Err(err), None)),
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

/// The provider endpoint: where requests go, how they are authenticated, and the
/// [`Transport`] that carries them.
#[derive(Debug, Clone)]
pub struct Upstream {
    transport: Arc<dyn Transport>,
    base_url: String,
    timeout: Duration,
    provider: Provider,
    api_version: String,
}

/// `base_url` without its trailing slash, if it is an http(s) URL.
fn checked_base_url(base_url: &str) -> Result<String, UpstreamError> {
    let base_url = base_url.trim_end_matches('/').to_string();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(UpstreamError::BadBaseUrl(base_url));
    }
    Ok(base_url)
}

impl Upstream {
    /// A client for `base_url` (e.g. `https://api.openai.com/v1`) with a per-attempt timeout;
    /// the provider is inferred from the URL ([`Provider::infer`]) until
    /// [`Upstream::with_provider`] sets it.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, UpstreamError> {
        let base_url = checked_base_url(base_url)?;
        let http = HttpTransport::new(Duration::from_secs(10).min(timeout))
            .map_err(|e| UpstreamError::Client(describe(&e)))?;
        Ok(Self::with_transport(Arc::new(http), &base_url, timeout))
    }

    /// An upstream for `base_url` whose requests go through `transport` (a simulated provider,
    /// in tests and simulations). The URL is not checked: a transport may use any scheme.
    pub fn with_transport(
        transport: Arc<dyn Transport>,
        base_url: &str,
        timeout: Duration,
    ) -> Self {
        let base_url = base_url.trim_end_matches('/').to_string();
        Upstream {
            transport,
            provider: Provider::infer(&base_url),
            base_url,
            timeout,
            api_version: azure::DEFAULT_API_VERSION.to_string(),
        }
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

    /// The same transport and timeout toward another endpoint (one deployment of a gateway's
    /// model list).
    pub fn sibling(
        &self,
        base_url: &str,
        provider: Provider,
        api_version: Option<&str>,
    ) -> Result<Self, UpstreamError> {
        let base_url = checked_base_url(base_url)?;
        Ok(Upstream {
            transport: Arc::clone(&self.transport),
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

    /// The per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The wall-clock time now, as the transport's answers are to be read against.
    pub fn wall_clock(&self) -> SystemTime {
        self.transport.wall_clock()
    }

    /// The request for `path` (for `model`), authenticated with `key` the provider's way.
    fn request(
        &self,
        method: Method,
        key: &ApiKey,
        path: &str,
        model: &str,
        body: Bytes,
    ) -> Request {
        Request {
            method,
            url: self.url_for(path, model),
            headers: self.provider.auth_headers(key.secret()),
            body,
            timeout: self.timeout,
        }
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
        let request = self.request(Method::Post, key, path, model, body);
        self.transport.send(request).await
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
        let request = self.request(Method::Post, key, path, model, body);
        self.transport.open(request).await
    }

    /// GET `path` with `key` (unpaced calls such as `/v1/models`) and read the whole answer.
    pub async fn get(&self, key: &ApiKey, path: &str) -> Result<Reply, TransportError> {
        let request = self.request(Method::Get, key, path, "", Bytes::new());
        self.transport.send(request).await
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
