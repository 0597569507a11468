//! What comes out of the engine when a request ends: [`Finished`], its [`Verdict`] and the
//! provider's answer kept with it.
//!
//! Owns the shape of a request's end as the output side (the store's writer, the gateway's
//! answer) reads it. It must not know how the end was reached (the reaction, the dispatcher)
//! nor where it goes (the sink, a responder).

use crate::provider::usage::Usage;
use crate::retry::{Failure, RetryCause};
use bytes::Bytes;
use std::time::Duration;

/// The provider's answer kept with a result.
#[derive(Debug, Clone)]
pub struct ProviderAnswer {
    /// HTTP status.
    pub status: u16,
    /// The provider's `x-request-id`.
    pub request_id: Option<String>,
    /// The body as received.
    pub body: Bytes,
    /// The usage a successful answer reported.
    pub usage: Option<Usage>,
}

/// How a request ended.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The provider answered with success.
    Succeeded(ProviderAnswer),
    /// The request failed for good.
    Failed {
        /// The provider's last answer, if there was one (a final answer, or the last one
        /// before attempts or time ran out).
        answer: Option<ProviderAnswer>,
        /// How it failed; [`Failure::code`] is what the output and the store record.
        code: Failure,
        /// What went wrong, for people.
        message: String,
    },
}

/// A finished request, as the engine hands it to the output side.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The request's id.
    pub custom_id: String,
    /// Attempts it took.
    pub attempts: u32,
    /// How it ended.
    pub verdict: Verdict,
    /// Time from the job's creation until its last attempt was sent (queue, quota and backoff).
    pub waited: Duration,
    /// For [`Failure::DeadlineExceeded`]: how long until the request could have gone.
    pub retry_after: Option<Duration>,
    /// The last retryable failure, if any attempt failed.
    pub last_retry: Option<RetryCause>,
}
