//! The provider side: API keys, the key pool with a quota per key and model, the HTTP client.

pub mod client;
pub mod key;
pub mod pool;
pub mod transport;

pub use client::{
    ByteStream, DEFAULT_BASE_URL, Opened, Reply, TransportError, Upstream, UpstreamError,
};
pub use key::{ApiKey, KeyError};
pub use pool::{KeyPool, Pick, PickError, Route, Want};
pub use transport::{HttpTransport, Method, Request, Transport};
