//! `--via auto --deadline`: the seam through which the batch path asks when the rest of the job
//! must go live. The driver describes what is left ([`Remainder`], per model); a [`Handover`]
//! (the plan's deadline arithmetic, `crate::plan::deadline`) answers with the instant by which
//! it must be handed to live requests.
//!
//! It holds the question only: it must not know prices, limits or how a live run goes.

use std::time::Duration;
use tokio::time::Instant;

/// What the batch path has not finished, for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remainder {
    /// The model.
    pub model: String,
    /// Requests without a result.
    pub requests: u64,
    /// Their tokens as the live path's admission counts them (prompt + output cap).
    pub tokens: u64,
}

/// When the batch path hands what is left to live requests.
pub trait Handover: Send + Sync {
    /// The instant by which `remainder` must go live for the job to end by its deadline (in
    /// the past: at once).
    fn due(&self, remainder: &[Remainder]) -> Instant;

    /// How long cancelled batches may take to end (their finished requests are collected)
    /// before the rest goes live anyway.
    fn cancel_wait(&self) -> Duration;
}
