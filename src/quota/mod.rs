//! The quota: when may a request go, so that no provider limit is ever exceeded?
//!
//! # Design
//!
//! A provider limits each key in several dimensions at once (requests/min, tokens/min; Anthropic
//! also input and output tokens/min). paceline schedules by **reservation, not rejection**: a
//! request asks [`Quota::reserve`] for its estimated [`Cost`] and is told the time it may go;
//! every dimension is committed at that one time under one lock, so a reservation is atomic
//! across dimensions. A request is never sent just to be refused.
//!
//! Each dimension is a GCRA cell ([`gcra`]): one timestamp, cost-weighted, exact in integer
//! nanoseconds, and the same arithmetic runs as a Lua script in Redis for a shared quota
//! (`crate::distributed`, which this module knows nothing of).
//! No crate fits: `governor` is GCRA but cannot refund or charge after the fact (settle), holds
//! `u32` quotas, and cannot be calibrated from a provider's headers.
//!
//! The loop around it:
//!
//! 1. **reserve** an estimate: prompt tokens counted with a real tokenizer plus
//!    `max_tokens × n`, the way providers admit a request ([`crate::tokens`]).
//! 2. **settle** with what the provider actually charged once the response's `usage` is known:
//!    the difference is refunded or charged ([`Quota::settle`]).
//! 3. **observe** what the answer said about the limits ([`LimitSnapshot`], read from the
//!    response by the provider side; the quota knows no header and no provider): learn
//!    limits nobody configured, infer the provider's burst (`remaining + reset × rate`), and
//!    when the provider reports less `remaining` than our own model says for the same moment,
//!    someone else uses the key: push our state back by the difference ([`Quota::observe`]).
//! 4. **pause** the whole quota on a 429 until the provider's hint ([`Quota::pause`]): one
//!    pause stops every waiting request, which is what ends the waves of retries.
//!
//! Limits come from configuration when given; otherwise they are learned from the first
//! response's headers. Until the first answer arrives, requests **probe** on a schedule whose
//! rate doubles every 50 ms (at most 256 out): a provider whose bucket the probe outgrows
//! answers with a quick 429 carrying its limits, so calibration takes a fraction of one
//! request's latency. If answers carry no limit headers at all, the quota admits immediately
//! and the engine's adaptive concurrency bound (AIMD) limits the load instead.
//!
//! The quota imports nothing of paceline: it must not know HTTP, files, Redis, the engine or any
//! provider, and it neither spawns nor awaits (time comes in as an
//! [`Instant`](tokio::time::Instant) its caller reads).

pub mod budget;
pub mod dimension;
pub mod gcra;
pub mod learn;
pub mod limiter;
pub mod snapshot;

pub use dimension::{Cost, Dimension};
pub use limiter::{LimitSpec, Quota, QuotaConfig, QuotaError, Reservation};
pub use snapshot::{DimensionReading, LimitSnapshot};

#[cfg(test)]
mod tests;
