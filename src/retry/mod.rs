//! What one attempt's result means, how long a retry waits, and how a request ends for good.
//!
//! Every attempt ends in one of three [`Outcome`]s: success, retry (with a [`RetryCause`] and
//! whether the whole quota must pause), or final (with a [`Failure`] and the provider's
//! message with anything key-like redacted). A request ends for good with a [`Failure`], whose
//! [`code`](Failure::code) is what the output, the store and the report record. The module
//! knows nothing of any HTTP crate, the engine or the output: the caller hands over the
//! status, the body bytes and the `x-should-retry` header as an [`AttemptResult`].
//!
//! One job per file: `outcome` (an attempt's result and its meaning), `cause` (why a retry),
//! `failure` (how a request ends), `classify` (the status rules), `hint` (a wait written in a
//! message), `backoff` (full jitter) and `redact` (API keys out of messages). What each
//! provider's error bodies say is [`crate::provider::error_body`]'s knowledge.
//!
//! # The rules, and where they come from
//!
//! The answers and their meanings are pinned, each with the SDK or error guide it comes from,
//! by the table `classification_cases.json` that a test reads.
//!
//! - **Retryable statuses** are those the official OpenAI and Anthropic SDKs retry
//!   (`_should_retry` in both Python clients): 408, 409, 429 and every 5xx. Transport failures
//!   (timeout, connect error, connection reset) and a truncated body or stream are retried too:
//!   nothing was delivered.
//! - **429 is not one thing** (OpenAI error-code guide; bodies as OpenAI sends them):
//!   - `code: rate_limit_exceeded` with `type: requests` or `tokens` is a rate limit: retry, and
//!     pause the whole quota (ARCHITECTURE.md, "The pacing core": that is what ends the 429
//!     waves). Anthropic's `rate_limit_error` and a 429 without a readable body are the same.
//!     The dimension comes from the body ([`ErrorBody::refused_dimension`]).
//!   - "Request too large for gpt-4o … Limit 30000, Requested 30601" arrives as a 429
//!     `rate_limit_exceeded` of type `tokens`, but the request can never fit the limit:
//!     [`Failure::RequestTooLarge`].
//!   - `type` or `code` `insufficient_quota`, and the codes OpenAI sends under that type
//!     (`credit_balance_exhausted`, `project_spend_limit_exceeded`, …): no wait helps,
//!     [`Failure::KeyRefused`], and the key leaves rotation. Anthropic's equivalents (402
//!     `billing_error`; 400 "Your credit balance is too low") are treated the same way and
//!     reported as `insufficient_quota`.
//! - **Overload is not quota** (Anthropic error guide: 529 `overloaded_error`; OpenAI 503 "The
//!   engine is currently overloaded"): retried as [`RetryCause::Overloaded`] without pausing the
//!   quota, so the engine can shrink concurrency instead.
//! - **Final statuses** (both providers' error guides): 400, 404, 422 and other 4xx keep the
//!   provider's `error.code`, else its `error.type`, else a code derived from the status
//!   ([`Failure::Provider`]); 413 is [`Failure::RequestTooLarge`]; 401 is
//!   [`Failure::Authentication`] and takes the key out of rotation; 403 is
//!   [`Failure::PermissionDenied`] but keeps the key, because a 403 is usually about one model,
//!   endpoint or region (OpenAI "You are not allowed to sample from this model", Anthropic
//!   `permission_error` "does not have permission to use the specified resource") and the same
//!   key still serves everything else.
//! - **`x-should-retry`** overrides the status, as in the official SDKs: `false` makes a
//!   retryable outcome final, `true` makes a final one retryable ([`RetryCause::ServerRequested`]).
//!   Two exceptions: a 2xx is never retried, and a failure no retry can fix
//!   ([`Failure::is_retryable`]: insufficient quota, a request too large for the limit) stays
//!   final.
//! - **Error bodies** are read by [`ErrorBody`]; anything (plain text, an HTML page from a
//!   proxy, truncated JSON) is tolerated and summarised, never a panic.
//! - **Backoff** is "full jitter" ([`BackoffPolicy`]), then at least the server's hint
//!   (`retry-after-ms` / `retry-after`, see [`crate::provider::headers`], or the "Please try again
//!   in 11.276s" in OpenAI's 429 message, see [`server_hint_from_body`]).
//!
//! [`ErrorBody`]: crate::provider::error_body::ErrorBody
//! [`ErrorBody::refused_dimension`]: crate::provider::error_body::ErrorBody::refused_dimension

mod backoff;
mod cause;
mod classify;
mod failure;
mod hint;
mod outcome;
mod redact;

pub use backoff::BackoffPolicy;
pub use cause::RetryCause;
pub use classify::classify;
pub use failure::Failure;
pub use hint::server_hint_from_body;
pub use outcome::{AttemptResult, Outcome};
pub use redact::redact_keys;
