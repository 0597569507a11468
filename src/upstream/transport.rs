//! The seam between the engine and the network: a [`Transport`] carries one prepared HTTP
//! request to the provider and brings its answer back.
//!
//! [`Upstream`](super::Upstream) decides *what* is sent (the URL, the provider's authentication
//! headers, the body); a transport decides *how*. The real one is [`HttpTransport`] (one pooled
//! `reqwest` client); [`crate::sim`] has a second one, an in-process provider model, so whole
//! runs can be played in virtual time. A transport also tells the wall-clock time of an answer
//! ([`Transport::wall_clock`]): rate-limit resets given as instants (Anthropic's RFC 3339) are
//! read against it, so a simulated provider's instants are read against its own clock.
//!
//! It must not know providers, keys or quotas: a [`Request`] arrives prepared, and an answer goes
//! back unread.

use super::answer::{ByteStream, Opened, Reply, TransportError};
use super::shortest::Shortest;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

/// The HTTP method of a [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET` (unpaced calls such as `/v1/models`).
    Get,
    /// `POST` with a JSON body (every paced call).
    Post,
}

/// One HTTP request, prepared: everything the provider will see.
#[derive(Clone)]
pub struct Request {
    /// `GET` or `POST`.
    pub method: Method,
    /// The full URL.
    pub url: String,
    /// Headers beyond the content type (authentication).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body (empty for a `GET`).
    pub body: Bytes,
    /// The per-attempt timeout.
    pub timeout: Duration,
}

impl fmt::Debug for Request {
    // The headers hold the API key: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Request {
    /// The first header named `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Carries requests to a provider.
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Send `request` and read the whole answer within its timeout.
    fn send(&self, request: Request) -> BoxFuture<'static, Result<Reply, TransportError>>;

    /// Send `request` and return at the status and headers (within the timeout); the body is
    /// read later from the [`Opened`] answer.
    fn open(&self, request: Request) -> BoxFuture<'static, Result<Opened, TransportError>>;

    /// The wall-clock time now, as the answers' instants are to be read against.
    fn wall_clock(&self) -> SystemTime {
        SystemTime::now()
    }

    /// The shortest time a connection to the provider has taken to open (name lookup, TCP,
    /// TLS): a bound above one network round trip, which the quota's probe schedule takes as
    /// its step ([`crate::quota::Quota::connected_in`]). `None` until one has opened, and for
    /// a transport that opens none.
    fn connect_time(&self) -> Option<Duration> {
        None
    }
}

/// Idle connections kept per upstream host. A burst of requests opens a connection for each
/// one in flight over HTTP/1.1 (a plain-HTTP server; a TLS provider negotiates HTTP/2 and
/// multiplexes them); once the in-flight bound settles lower, the connections beyond this many
/// are closed when they fall idle instead of holding their buffers (~40 KB each). The
/// 1,000,000-request run's peak RSS: 91.3–106.0 MB, median 93.9, against 99.7–108.2, median
/// 102.5, when 4,096 were kept (README, "Job store").
const IDLE_PER_HOST: usize = 256;

/// The real transport: HTTP/1.1 or HTTP/2 over one pooled `reqwest` client.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    http: reqwest::Client,
    connects: ConnectTimes,
}

impl HttpTransport {
    /// A pooled client; connections are given up after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Result<Self, reqwest::Error> {
        let connects = ConnectTimes::default();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .tcp_nodelay(true)
            .connect_timeout(connect_timeout)
            .connector_layer(connects.clone())
            .build()?;
        Ok(HttpTransport { http, connects })
    }

    fn build(&self, request: Request) -> reqwest::RequestBuilder {
        let builder = match request.method {
            Method::Get => self.http.get(request.url),
            Method::Post => self
                .http
                .post(request.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(request.body),
        };
        request
            .headers
            .into_iter()
            .fold(builder, |builder, (name, value)| {
                builder.header(name, value)
            })
    }
}

impl Transport for HttpTransport {
    fn send(&self, request: Request) -> BoxFuture<'static, Result<Reply, TransportError>> {
        let timeout = request.timeout;
        let pending = self.build(request).timeout(timeout).send();
        Box::pin(async move {
            let mut response = pending
                .await
                .map_err(|e| transport_error(e, false, timeout))?;
            let status = response.status().as_u16();
            // Moved out, not copied: reading the body does not need them.
            let headers = std::mem::take(response.headers_mut());
            let body = response
                .bytes()
                .await
                .map_err(|e| transport_error(e, true, timeout))?;
            Ok(Reply {
                status,
                headers,
                body,
            })
        })
    }

    fn open(&self, request: Request) -> BoxFuture<'static, Result<Opened, TransportError>> {
        let timeout = request.timeout;
        let pending = self.build(request).send();
        Box::pin(async move {
            let mut response = match tokio::time::timeout(timeout, pending).await {
                Ok(Ok(response)) => response,
                Ok(Err(err)) => return Err(transport_error(err, false, timeout)),
                Err(_) => return Err(TransportError::Timeout(timeout)),
            };
            let status = response.status().as_u16();
            let headers = std::mem::take(response.headers_mut());
            let body: ByteStream = Box::pin(
                response
                    .bytes_stream()
                    .map_err(move |err| transport_error(err, true, timeout))
                    .boxed(),
            );
            Ok(Opened::new(status, headers, body, timeout))
        })
    }

    fn connect_time(&self) -> Option<Duration> {
        self.connects.shortest.get()
    }
}

/// The shortest time a connection took to open, kept by a layer around `reqwest`'s connector
/// (which resolves the name, connects and negotiates TLS). Only connections that opened count.
#[derive(Debug, Clone, Default)]
struct ConnectTimes {
    shortest: Arc<Shortest>,
}

impl<S> tower_layer::Layer<S> for ConnectTimes {
    type Service = TimedConnector<S>;

    fn layer(&self, inner: S) -> TimedConnector<S> {
        TimedConnector {
            inner,
            times: self.clone(),
        }
    }
}

/// A connector that records how long each connection took to open.
#[derive(Debug, Clone)]
struct TimedConnector<S> {
    inner: S,
    times: ConnectTimes,
}

impl<S, Target> tower_service::Service<Target> for TimedConnector<S>
where
    S: tower_service::Service<Target>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, target: Target) -> Self::Future {
        let started = std::time::Instant::now();
        let connecting = self.inner.call(target);
        let shortest = Arc::clone(&self.times.shortest);
        Box::pin(async move {
            let connected = connecting.await;
            if connected.is_ok() {
                shortest.note(started.elapsed());
            }
            connected
        })
    }
}

/// The full error chain of a reqwest error (the URL in it is the base URL, never a secret).
pub(super) fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_time_a_connection_took_to_open_is_kept() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
            stream.write_all(answer).await.unwrap();
        });
        let transport = HttpTransport::new(Duration::from_secs(5)).unwrap();
        assert_eq!(transport.connect_time(), None);
        let reply = transport
            .send(Request {
                method: Method::Get,
                url: format!("http://{addr}/v1/models"),
                headers: Vec::new(),
                body: Bytes::new(),
                timeout: Duration::from_secs(5),
            })
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        let took = transport.connect_time().unwrap();
        assert!(
            took > Duration::ZERO && took < Duration::from_secs(1),
            "{took:?}"
        );
    }
}
