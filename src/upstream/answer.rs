//! What comes back from the provider: a whole [`Reply`], or an answer [`Opened`] at its status
//! and headers whose body is read later, and the [`TransportError`] of an attempt that got no
//! complete answer.
//!
//! It must not know what an answer means (the provider module reads it, [`crate::retry`] classifies
//! it), the quota or the key pool.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use std::pin::Pin;
use std::time::Duration;

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
