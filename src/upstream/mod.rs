//! The provider side: API keys, the key pool with a quota per key and model, the endpoint
//! (`client`), the transport seam that carries its requests, the answers that come back, and
//! the seam to quotas shared with other processes (`shared`).
//!
//! It owns the keys, the pool and the two seams; it must not know Redis (a shared quota is whatever
//! [`QuotaSharing`] gives), the engine, the store, or what an answer means (the providers read it
//! and [`crate::retry`] classifies it).

pub mod answer;
pub mod client;
pub mod key;
pub mod pool;
pub mod shared;
pub mod shortest;
pub mod transport;

pub use answer::{ByteStream, Opened, Reply, TransportError};
pub use client::{DEFAULT_BASE_URL, Upstream, UpstreamError};
pub use key::{ApiKey, KeyError, KeyProblem};
pub use pool::{KeyPool, Pick, PickError, Route, Want};
pub use shared::{QuotaSharing, SharedAdmission, SharedQuota};
pub use transport::{HttpTransport, Method, Request, Transport};
