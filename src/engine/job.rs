//! A request as the engine handles it: what it is, what it costs, where it waits and where its
//! end goes. What comes out when it ends is [`super::finished`]'s. It must not know how a job
//! is booked, sent or classified.

use super::respond::Responder;
use super::trace::JobTrace;
use crate::api::Endpoint;
use crate::provider::usage::Charge;
use crate::quota::{Cost, Dimension};
use crate::retry::RetryCause;
use crate::tokens::{self, Estimate};
use crate::upstream::Want;
use bytes::Bytes;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// Which queue a job waits in: interactive jobs never wait behind queued batch jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    /// A person is waiting for the answer (the gateway's default).
    Interactive,
    /// Bulk work that takes what interactive traffic leaves (`paceline run`).
    #[default]
    Batch,
}

impl Priority {
    /// Both priorities, most urgent first.
    pub const ALL: [Priority; 2] = [Priority::Interactive, Priority::Batch];

    /// `interactive` or `batch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Batch => "batch",
        }
    }

    /// 0 for interactive, 1 for batch.
    pub fn index(self) -> usize {
        match self {
            Priority::Interactive => 0,
            Priority::Batch => 1,
        }
    }
}

/// One request to get through, with its retry state.
#[derive(Debug)]
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
    /// Which queue it waits in.
    pub priority: Priority,
    /// No attempt waits past this time: a job that cannot go before it (nor at once, see
    /// [`misses_deadline`]) finishes with [`crate::retry::Failure::DeadlineExceeded`] and the
    /// time capacity is expected.
    pub deadline: Option<Instant>,
    /// Relay mode: a 2xx answer is handed over live to the responder, never retried after.
    pub stream: bool,
    /// Backoff the last retry decision imposed.
    pub(crate) backoff: Duration,
    /// The last retryable failure, for the final message when attempts run out.
    pub(crate) last_cause: Option<String>,
    /// The kind of that failure.
    pub(crate) last_retry: Option<RetryCause>,
    /// When the job was made.
    pub(crate) created: Instant,
    /// When its latest attempt was sent.
    pub(crate) sent_at: Option<Instant>,
    /// Where its result goes, when not to the engine's sink.
    pub(crate) responder: Option<Responder>,
    /// The key whose attempt failed last (5xx, overload, timeout): the retry prefers another.
    pub(crate) avoid: Option<usize>,
    /// When its next attempt became due (made, or its retry's time came): what it waited from
    /// then until booked is its wait for the in-flight bound and the jobs ahead.
    pub(crate) ready_at: Instant,
    /// Its spans, when traces are exported.
    pub trace: Option<Box<JobTrace>>,
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
        let bytes = Bytes::from(body.to_string());
        Self::with_bytes(custom_id, endpoint, body, bytes, default_max_tokens)
    }

    /// Like [`Job::new`], for a body the caller already has serialized as `bytes` (sent
    /// upstream as they are; `body` is their parsed form, used for the estimate).
    pub fn with_bytes(
        custom_id: String,
        endpoint: Endpoint,
        body: &Value,
        bytes: Bytes,
        default_max_tokens: u64,
    ) -> Self {
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let estimate = tokens::estimate(endpoint, body, default_max_tokens);
        Self::with_estimate(custom_id, endpoint, model, bytes, estimate)
    }

    /// A job for the serialized body `bytes` naming `model`, whose cost the caller has
    /// estimated already (the gateway: without waiting for a tokenizer, see
    /// [`tokens::Counting`]).
    pub fn with_estimate(
        custom_id: String,
        endpoint: Endpoint,
        model: String,
        bytes: Bytes,
        estimate: Estimate,
    ) -> Self {
        Job {
            custom_id,
            endpoint,
            model,
            body: bytes,
            estimate,
            attempts: 0,
            priority: Priority::default(),
            deadline: None,
            stream: false,
            backoff: Duration::ZERO,
            last_cause: None,
            last_retry: None,
            created: Instant::now(),
            sent_at: None,
            responder: None,
            avoid: None,
            ready_at: Instant::now(),
            trace: None,
        }
    }

    /// Trace the job as `trace` says.
    pub fn with_trace(mut self, trace: JobTrace) -> Self {
        self.trace = Some(Box::new(trace));
        self
    }

    /// Deliver this job's end (a [`super::Finished`] or a live stream) to `responder` instead of the
    /// engine's sink.
    pub fn with_responder(mut self, responder: Responder) -> Self {
        self.responder = Some(responder);
        self
    }

    /// Whether the job's result has nobody left to receive it (a client that hung up).
    pub(crate) fn abandoned(&self) -> bool {
        self.responder.as_ref().is_some_and(Responder::is_closed)
    }

    /// Whether a reservation at `go_at` would make the job wait past its deadline
    /// ([`misses_deadline`]).
    pub(crate) fn misses_deadline(&self, go_at: Instant, now: Instant) -> bool {
        self.deadline
            .is_some_and(|deadline| misses_deadline(go_at, deadline, now))
    }

    /// Time from the job's creation to its latest attempt (or to `now` if none was sent).
    pub(crate) fn waited(&self, now: Instant) -> Duration {
        self.sent_at
            .unwrap_or(now)
            .saturating_duration_since(self.created)
    }

    /// What the key pool is asked for on this job's behalf: its model, its endpoint, and the
    /// key to pass over after a failure.
    pub fn want(&self) -> Want<'_> {
        Want {
            model: &self.model,
            endpoint: self.endpoint,
            avoid: self.avoid,
        }
    }

    /// What the quota is asked for: one request, the whole estimate on tokens/min, and its
    /// input and output parts on the input and output token dimensions.
    pub fn cost(&self) -> Cost {
        Cost::request(self.estimate.total())
            .with(Dimension::InputTokens, self.estimate.prompt_tokens)
            .with(Dimension::OutputTokens, self.estimate.max_output_tokens)
    }

    /// How the cost is settled when the usage is known.
    pub fn charge(&self) -> Charge {
        Charge::new(self.endpoint, self.estimate.max_output_tokens)
    }
}

/// Whether going at `go_at` waits past `deadline`, seen at `now`. A request that may go at once
/// never does, even when its deadline is already behind it: a zero max wait means "now if
/// there is capacity", not "never". The gateway's client quotas keep the same rule.
pub fn misses_deadline(go_at: Instant, deadline: Instant, now: Instant) -> bool {
    go_at > deadline.max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn going_at_once_never_misses_a_deadline() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        // A zero wait, taken a little before now: going now is in time, later is not.
        assert!(!misses_deadline(now, now - ms(1), now));
        assert!(misses_deadline(now + ms(1), now - ms(1), now));
        assert!(!misses_deadline(now + ms(5), now + ms(5), now));
        assert!(misses_deadline(now + ms(6), now + ms(5), now));
    }
}
