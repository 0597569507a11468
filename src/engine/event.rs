//! What the engine reports as it goes: one record per attempt, and each finished request.
//!
//! It must not know who reads the events (the store's writer, the gateway's metrics and status
//! page).

use super::finished::Finished;
use std::fmt;
use std::time::{Duration, SystemTime};

/// What was decided after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The request succeeded.
    Succeeded,
    /// It will be retried after `retry_in`.
    Retry,
    /// The key was taken out of rotation; the request goes again on another key.
    RetryOtherKey,
    /// It failed for good.
    Failed,
    /// Attempts ran out.
    GaveUp,
}

impl Decision {
    /// Stable snake_case name, as logged and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Succeeded => "succeeded",
            Decision::Retry => "retry",
            Decision::RetryOtherKey => "retry_other_key",
            Decision::Failed => "failed",
            Decision::GaveUp => "give_up",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt of one request: the unit of a request's retry history.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The request.
    pub custom_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Fingerprint of the key used (`ENV#1a2b3c4d`).
    pub key: String,
    /// When it was sent (wall clock).
    pub sent_at: SystemTime,
    /// Tokens the quota was charged for it: the settled usage of a success, nothing for a 429
    /// (the provider refused it), the admission estimate otherwise.
    pub tokens: u64,
    /// HTTP status, if an answer arrived.
    pub status: Option<u16>,
    /// Time from sending to the whole answer (or the failure).
    pub latency: Duration,
    /// Time spent waiting for the quota before sending.
    pub waited_quota: Duration,
    /// Whether a 429 pause was part of that wait.
    pub paused: bool,
    /// Backoff imposed by the previous attempt's retry decision.
    pub waited_backoff: Duration,
    /// Retry cause label or final error code, when not a success.
    pub cause: Option<String>,
    /// What was decided.
    pub decision: Decision,
    /// Delay before the next attempt, for [`Decision::Retry`].
    pub retry_in: Duration,
    /// Whether it went in a provider's batch (`run --via batch`) rather than live: the live
    /// limits' figures leave it out.
    pub via_batch: bool,
}

impl AttemptRecord {
    /// Emit the record as a structured log event (target `paceline::attempt`).
    pub fn log(&self) {
        tracing::info!(
            target: "paceline::attempt",
            custom_id = %self.custom_id,
            attempt = self.attempt,
            key = %self.key,
            status = self.status.map(i64::from).unwrap_or(-1),
            latency_ms = self.latency.as_millis() as u64,
            waited_quota_ms = self.waited_quota.as_millis() as u64,
            paused = self.paused,
            waited_backoff_ms = self.waited_backoff.as_millis() as u64,
            cause = self.cause.as_deref().unwrap_or(""),
            decision = %self.decision,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "attempt"
        );
    }
}

/// What the engine sends to its sink.
#[derive(Debug, Clone)]
pub enum Event {
    /// An attempt ended.
    Attempt(AttemptRecord),
    /// A request finished (exactly once per request).
    Finished(Finished),
}
