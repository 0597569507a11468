//! What one attempt's result is, and what it means: [`AttemptResult`] in, [`Outcome`] out
//! (with the [`RetryCause`] of a retryable one, or the [`Failure`] of a final one).
//!
//! Owns the vocabulary the classification speaks and the engine acts on. It must not know any
//! HTTP crate (the caller hands over the status, the body and the `x-should-retry` header), nor
//! what the engine does with an outcome.

use super::cause::RetryCause;
use super::failure::Failure;

/// What happened to one attempt, as far as classification needs to know (no HTTP crate types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult<'a> {
    /// The upstream answered with a status and a complete body.
    Response {
        /// The HTTP status code.
        status: u16,
        /// The response body, as received (may be empty, JSON, or anything else).
        body: &'a [u8],
        /// The `x-should-retry` header, as [`crate::provider::headers::should_retry`] reads it.
        headers_say_retry: Option<bool>,
    },
    /// The attempt's deadline passed before the response was complete.
    Timeout,
    /// No connection could be made (DNS, refused, TLS handshake).
    Connect,
    /// The connection was reset or closed mid-request.
    ConnectionReset,
    /// The upstream closed, or the body or stream did not parse completely.
    TruncatedBody,
}

/// The classification of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx: done.
    Success,
    /// Worth another attempt after a delay.
    Retry {
        /// Why the attempt failed.
        cause: RetryCause,
        /// True for a rate-limit 429: the whole quota pauses, not only this request.
        pause_quota: bool,
    },
    /// No retry can help: the request fails with `failure` (whose
    /// [`removes_key`](Failure::removes_key) says whether the key must leave rotation).
    Final {
        /// How it fails.
        failure: Failure,
        /// The provider's message (or a summary of a body without one), with API keys redacted.
        message: String,
    },
}
