//! A request as the engine handles it, and what comes out when it is finished.

use crate::batch::Endpoint;
use crate::quota::Cost;
use crate::tokens::{self, Estimate};
use bytes::Bytes;
use serde_json::Value;
use std::time::Duration;

/// One request to get through, with its retry state.
#[derive(Debug, Clone)]
pub struct Job {
    /// The caller's id for the request (the batch `custom_id`).
    pub custom_id: String,
    /// Where it goes.
    pub endpoint: Endpoint,
    /// The model named in the body (quotas are per key and model).
    pub model: String,
    /// The JSON body, serialized once.
    pub body: Bytes,
    /// Admission cost estimate.
    pub estimate: Estimate,
    /// Attempts made so far.
    pub attempts: u32,
    /// Backoff the last retry decision imposed.
    pub(crate) backoff: Duration,
    /// The last retryable failure, for the final message when attempts run out.
    pub(crate) last_cause: Option<String>,
}

impl Job {
    /// A job for `body` sent to `endpoint`, estimating its cost with `default_max_tokens` as
    /// the output cap when the body sets none.
    pub fn new(
        custom_id: String,
        endpoint: Endpoint,
        body: &Value,
        default_max_tokens: u64,
    ) -> Self {
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let estimate = tokens::estimate(endpoint, body, default_max_tokens);
        Job {
            custom_id,
            endpoint,
            model,
            body: Bytes::from(body.to_string()),
            estimate,
            attempts: 0,
            backoff: Duration::ZERO,
            last_cause: None,
        }
    }

    /// What the quota is asked for.
    pub fn cost(&self) -> Cost {
        Cost::request(self.estimate.total())
    }
}

/// The provider's answer kept with a result.
#[derive(Debug, Clone)]
pub struct ProviderAnswer {
    /// HTTP status.
    pub status: u16,
    /// The provider's `x-request-id`.
    pub request_id: Option<String>,
    /// The body as received.
    pub body: Bytes,
}

/// How a request ended.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The provider answered with success.
    Succeeded(ProviderAnswer),
    /// The request failed for good.
    Failed {
        /// The provider's last answer, if there was one.
        answer: Option<ProviderAnswer>,
        /// Stable error code (`insufficient_quota`, `max_attempts_exceeded`, ...).
        code: String,
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
}
