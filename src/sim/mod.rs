//! A simulated provider for whole runs in virtual time.
//!
//! [`SimProvider`] is a [`crate::upstream::Transport`]: the engine sends its prepared requests
//! to it exactly as it sends them over HTTP, and it answers the way a provider does — status,
//! rate-limit headers in one of four dialects ([`HeaderStyle`]), error bodies, `usage` — after
//! a latency drawn from a seeded model. Every wait is a `tokio::time` sleep, so under a paused
//! clock (`tokio::time::pause`) a run of minutes plays in milliseconds and the same seed gives
//! the same schedule to the nanosecond.
//!
//! The model is independent of the client's quota: its buckets are real-valued levels that
//! refill continuously ([`bucket`]), like `paceline mock`'s and unlike the quota's GCRA
//! timestamps, so a test that holds paceline's schedule against it compares two arithmetics.
//! Beside the buckets it models what the matrix of `tests/simulation.rs` varies: a server with
//! N slots and a queue behind them, 503s that are or are not charged to the bucket,
//! connection resets, a second client sharing the key, and a limit lowered mid-run.
//!
//! [`oracle::ideal`] states each scenario's physical bound: the makespan of a client that
//! knows everything in advance (the limits, every latency) and sends each attempt at the
//! earliest moment the bucket admits it.
//!
//! It meets the client only at the transport seam and must not know the quota, the engine or the
//! provider module; it counts tokens with the `paceline-mock` crate's tokenizer, not
//! [`crate::tokens`].

pub mod bucket;
pub mod oracle;
pub mod provider;
pub mod scenario;

pub use provider::{SimProvider, SimStats};
pub use scenario::{Faults, HeaderStyle, LatencyModel, Scenario, SecondClient};
