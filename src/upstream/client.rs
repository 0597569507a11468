//! The provider endpoint: one attempt per call, prepared for the provider (URL, authentication)
//! and carried by a [`Transport`] (the real one: one pooled `reqwest` client), every transport
//! failure mapped to a kind the retry policy understands.
//!
//! [`Upstream::post`] buffers the whole answer (batch runs, non-streaming gateway requests);
//! [`Upstream::open`] stops at the status and headers and leaves the body to be read as it
//! arrives ([`Opened`]), which is how the gateway relays a stream chunk by chunk.
//!
//! It asks the [`Provider`] for the URL and the authentication; it must not know the quota, the key
//! pool, the engine or what an answer means.

use super::answer::{Opened, Reply, TransportError};
use super::key::ApiKey;
use super::transport::{HttpTransport, Method, Request, Transport, describe};
use crate::provider::{Provider, azure, openai};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The provider's public API, used when no `--base-url` is given: OpenAI's.
pub const DEFAULT_BASE_URL: &str = openai::BASE_URL;

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

    /// The shortest time a connection to the provider has taken to open, once one has.
    pub fn connect_time(&self) -> Option<Duration> {
        self.transport.connect_time()
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

    /// Send one attempt: POST `body` (JSON, for `model`) to `path` with `key` and the `extra`
    /// headers (a trace context), and read the whole answer.
    pub async fn post(
        &self,
        key: &ApiKey,
        path: &str,
        model: &str,
        body: Bytes,
        extra: Vec<(&'static str, String)>,
    ) -> Result<Reply, TransportError> {
        let mut request = self.request(Method::Post, key, path, model, body);
        request.headers.extend(extra);
        self.transport.send(request).await
    }

    /// Send one attempt (as [`Upstream::post`] does) and return as soon as the status and
    /// headers arrive (within the per-attempt timeout); the body is read later from the
    /// [`Opened`] answer.
    pub async fn open(
        &self,
        key: &ApiKey,
        path: &str,
        model: &str,
        body: Bytes,
        extra: Vec<(&'static str, String)>,
    ) -> Result<Opened, TransportError> {
        let mut request = self.request(Method::Post, key, path, model, body);
        request.headers.extend(extra);
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
