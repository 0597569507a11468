//! The provider side: API keys, the key pool with a quota per key and model, the endpoint
//! (`client`), the transport seam that carries its requests, and the answers that come back.

pub mod answer;
pub mod client;
pub mod key;
pub mod pool;
pub mod transport;

pub use answer::{ByteStream, Opened, Reply, TransportError};
pub use client::{DEFAULT_BASE_URL, Upstream, UpstreamError};
pub use key::{ApiKey, KeyError};
pub use pool::{KeyPool, Pick, PickError, Route, Want};
pub use transport::{HttpTransport, Method, Request, Transport};
