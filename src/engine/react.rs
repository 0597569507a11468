//! The reaction to one attempt's outcome: calibrate and settle the quota, steer the
//! concurrency bound, classify ([`crate::retry`]) and decide what happens to the job next.
//!
//! Nothing here sends or waits: [`Engine::react`] turns an answer (or a transport failure) into
//! an [`AttemptRecord`] and a [`Next`], which the attempt task carries out.
//!
//! It must not know any provider's header names or usage fields: the answer is read through
//! [`crate::provider::headers`] and [`crate::provider::usage`] and classified by [`crate::retry`].

use super::concurrency::{Signal, WORK_OVERHEAD};
use super::stats::Stats;
use super::{AttemptRecord, Decision, Engine, Job, ProviderAnswer, Verdict, Waits, lock};
use crate::provider::error_body::ErrorBody;
use crate::provider::headers::{self, parse_limit_headers};
use crate::provider::usage::{Usage, usage_of_body};
use crate::quota::{Dimension, LimitSnapshot};
use crate::retry::{self, AttemptResult, Failure, Outcome, RetryCause};
use crate::upstream::{Pick, Reply, TransportError};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// How many first answers from an upstream, all the same refusal, mean that every request
/// would be refused alike (all 404: its URL is wrong).
const FIRST_ANSWERS: u32 = 3;

/// A key's first answers: how many came, and the refusal they all were so far (if they were).
#[derive(Debug, Default)]
pub(super) struct FirstAnswers {
    seen: u32,
    /// The status and the provider's words of every answer so far, while they were the same
    /// refusal; `None` once one differed (or before the first).
    same: Option<(u16, String)>,
    differed: bool,
}

/// A refusal the same for every request that repeats it: a 4xx that is not about limits, the
/// key or time (429, 401, 403, 408 and 409 have their own handling).
fn uniform_refusal(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 401 | 403 | 408 | 409 | 429)
}

/// Pause applied after a 429 that carries no hint at all.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// What happens to a job after an attempt.
#[derive(Debug)]
pub(super) enum Next {
    /// It ends; `retry_after` is when capacity is expected (a deadline that passed).
    Finish {
        verdict: Verdict,
        retry_after: Option<Duration>,
    },
    /// It goes into the delayed queue, due at this time.
    Retry(Instant),
}

/// When an attempt was sent and how long its answer (or its headers) took.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sent {
    pub at: SystemTime,
    pub latency: Duration,
    /// Requests in flight when it was sent, itself included.
    pub in_flight: usize,
}

/// The first answer of a server with no limits to learn (a self-hosted one queues what it
/// cannot work on): the probe requests still out are called back by it (see
/// [`Engine::call_back_at`]) and go again under the latency gradient.
#[derive(Debug, Clone, Copy)]
pub(super) struct CallBack {
    /// When it came.
    answered: Instant,
    /// How long it took.
    latency: Duration,
    /// Its work: output tokens + 8.
    work: f64,
}

impl Engine {
    /// Act on the answer `result` to `job`'s attempt on `pick`, received at `wall` (the
    /// transport's wall clock): feed it back and decide what comes next.
    pub(super) fn react(
        &self,
        job: &mut Job,
        pick: &Pick,
        waits: Waits,
        result: Result<Reply, TransportError>,
        sent: Sent,
        wall: SystemTime,
    ) -> (AttemptRecord, Next) {
        let now = Instant::now();
        let mut calls_back = false;
        let snapshot = match &result {
            Ok(reply) => {
                let snapshot = parse_limit_headers(
                    crate::upstream::answer::text_headers(&reply.headers),
                    wall,
                );
                // The first answer carries no limit at all and none is configured: a server
                // with no limits to learn (a self-hosted one queues what it cannot work on).
                // The requests the probe sent meanwhile are called back; the latency gradient
                // lets them go again at the server's pace.
                let unlimited = (200..300).contains(&reply.status)
                    && snapshot.states_no_limit()
                    && !pick.quota.is_known();
                calls_back = self.concurrency.end_probe(unlimited) && unlimited;
                // A refused request was not charged: its answer describes the bucket, not
                // this reservation.
                let charged = (reply.status != 429).then_some(&pick.reservation);
                pick.quota.observe(charged, &snapshot, now);
                snapshot
            }
            Err(_) => {
                pick.quota.no_answer();
                LimitSnapshot::default()
            }
        };
        let (outcome, usage) = outcome_of(&result);
        if calls_back {
            // What the probes still out are judged by (see `call_back_at`), set before they
            // wake.
            *lock(&self.call_back) = Some(CallBack {
                answered: now,
                latency: sent.latency,
                work: usage.as_ref().map_or(0, |u| u.completion) as f64 + WORK_OVERHEAD,
            });
            self.probes.notify_waiters();
        }
        let status = result.as_ref().map(|r| r.status).ok();
        if let Ok(reply) = &result {
            self.check_first_answers(job, pick, reply.status, &reply.body);
        }
        // Every 429 counts as received, whatever its body says (`insufficient_quota` too).
        if status == Some(429) {
            Stats::incr(&self.stats.rate_limited);
        }
        let answer = result.as_ref().ok().map(|reply| ProviderAnswer {
            status: reply.status,
            request_id: headers::request_id(|name| reply.header(name)).map(str::to_string),
            body: reply.body.clone(),
            usage,
        });
        let mut record = attempt_record(job, pick, waits, sent, status);
        let next = match outcome {
            Outcome::Success => {
                self.concurrency.record(Signal::Answered, sent.latency, now);
                if let Some(usage) = usage {
                    record.tokens = self.settle(job, pick, &usage, now);
                    self.concurrency.record_work(
                        sent.latency,
                        usage.completion,
                        sent.in_flight,
                        now,
                    );
                }
                self.update_target_rate(job, now);
                match answer.clone() {
                    Some(answer) => Next::Finish {
                        verdict: Verdict::Succeeded(answer),
                        retry_after: None,
                    },
                    None => Next::Retry(now),
                }
            }
            Outcome::Retry { cause, pause_quota } => {
                let context = RetryContext {
                    cause,
                    pause_quota,
                    status,
                    snapshot: &snapshot,
                    answer: answer.clone(),
                    transport: result.as_ref().err(),
                };
                self.on_retryable(job, pick, context, &mut record, sent.latency, now)
            }
            Outcome::Final { failure, message } => {
                self.concurrency.record(Signal::Answered, sent.latency, now);
                record.cause = Some(failure.code().to_string());
                let key_unusable = failure.removes_key();
                let removed = key_unusable
                    && self
                        .pool
                        .remove(pick.key_index, &format!("{failure}: {message}"));
                if removed {
                    tracing::warn!(key = %record.key, code = %failure, message = %message, "API key removed from rotation");
                }
                if key_unusable && self.pool.active() > 0 {
                    record.decision = Decision::RetryOtherKey;
                    Next::Retry(now)
                } else {
                    record.decision = Decision::Failed;
                    Next::Finish {
                        verdict: Verdict::Failed {
                            answer: answer.clone(),
                            code: failure,
                            message,
                        },
                        retry_after: None,
                    }
                }
            }
        };
        let next = match (next, job.deadline) {
            (Next::Retry(due), Some(deadline)) if due > deadline => {
                record.decision = Decision::GaveUp;
                let message = format!(
                    "the request's deadline passed before it could be retried (after {} attempts; last failure: {})",
                    job.attempts,
                    job.last_cause.as_deref().unwrap_or("none")
                );
                Next::Finish {
                    verdict: Verdict::Failed {
                        answer,
                        code: Failure::DeadlineExceeded,
                        message,
                    },
                    retry_after: Some(due.saturating_duration_since(now)),
                }
            }
            (next, _) => next,
        };
        (record, next)
    }

    /// When a probe request of `max_output` tokens sent at `sent` is called back, once a
    /// first answer has shown a server with no limits (`None` before). A request sent within
    /// the last half of that answer's latency is called back at once: a server working on it
    /// at once could not have finished it yet, so calling it back never has one done twice
    /// (an answer in transit). An older one only once it is overdue: three times that answer's
    /// latency after it went, scaled up by how much more work it may be (its `max_tokens`
    /// against that answer's output tokens, each + 8). A server working on it at once answers
    /// well within that; one that queued it behind the other probes does not. On a server
    /// with one slot, one probe is called back just after its turn came (twice the factor
    /// wasted two turns in S10 and took its p90 latency from 0.50 to 0.75 s; three wastes one
    /// or two and keeps 0.50 s).
    pub(super) fn call_back_at(&self, sent: Instant, max_output: u64) -> Option<Instant> {
        let call_back = (*lock(&self.call_back))?;
        if sent > call_back.answered - call_back.latency / 2 {
            return Some(call_back.answered);
        }
        let scale = ((max_output as f64 + WORK_OVERHEAD) / call_back.work).max(1.0);
        Some(sent + call_back.latency.mul_f64(3.0 * scale))
    }

    /// When the first answers from a key's upstream are all the same refusal, every request
    /// would be refused alike: take the key out of rotation with the provider's words instead of
    /// failing every request the same way. All 404 (without a model named missing) means a
    /// wrong URL (a base URL without the `/v1` OpenAI expects, or with one too many), whatever
    /// [`EngineConfig::stop_on_uniform_refusals`](super::EngineConfig) says; any other
    /// uniform refusal only when it is set.
    fn check_first_answers(&self, job: &Job, pick: &Pick, status: u16, body: &[u8]) {
        // Once every key has had its first answers, the hot path skips the lock.
        if self.first_answers_done.load(Ordering::Relaxed) {
            return;
        }
        let verdict = {
            let mut seen = lock(&self.first_answers);
            let entry = seen.entry(pick.key_index).or_default();
            if entry.seen >= FIRST_ANSWERS {
                return;
            }
            entry.seen += 1;
            let words = || {
                let said = ErrorBody::parse(body);
                let words = said
                    .message()
                    .or(said.provider_code())
                    .or(said.text())
                    .unwrap_or("")
                    .to_string();
                (said.provider_code() == Some("model_not_found"), words)
            };
            if uniform_refusal(status) && !entry.differed {
                let (model_missing, words) = words();
                let wrong_url = status == 404 && !model_missing;
                let counted = wrong_url || self.stop_on_uniform_refusals;
                match &entry.same {
                    _ if !counted => entry.differed = true,
                    None => entry.same = Some((status, words)),
                    Some(same) if *same == (status, words.clone()) => {}
                    Some(_) => entry.differed = true,
                }
            } else {
                entry.differed = true;
            }
            let verdict = (entry.seen == FIRST_ANSWERS && !entry.differed)
                .then(|| entry.same.clone())
                .flatten();
            let judged = seen.values().filter(|e| e.seen >= FIRST_ANSWERS).count();
            if judged >= self.pool.len() {
                self.first_answers_done.store(true, Ordering::Relaxed);
            }
            verdict
        };
        let Some((status, words)) = verdict else {
            return;
        };
        let (upstream, model) = match &pick.route {
            Some(route) => (&route.upstream, route.model.as_str()),
            None => (&self.upstream, job.model.as_str()),
        };
        let url = upstream.url_for(job.endpoint.path(), model);
        let provider = upstream.provider();
        let said: String = words.chars().take(300).collect();
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(" ({said})")
        };
        let reason = if status == 404 {
            format!(
                "the first {FIRST_ANSWERS} answers from {url} were all 404 Not Found{said}: check \
                 the base URL (for provider {}: {})",
                provider.name(),
                provider.base_url_example()
            )
        } else {
            format!(
                "the first {FIRST_ANSWERS} answers from {url} were all HTTP {status}{said}: every \
                 request would be refused alike, so nothing more is sent; fix the requests or the \
                 settings (is provider {} the right one?)",
                provider.name()
            )
        };
        if self.pool.remove(pick.key_index, &reason) {
            tracing::error!(key = %pick.key.label(), url = %url, status, "every answer so far was the same refusal; key taken out of rotation");
        }
    }

    /// Settle a success's reservation with its usage; returns the tokens charged.
    fn settle(&self, job: &Job, pick: &Pick, usage: &Usage, now: Instant) -> u64 {
        let cost = job.charge().cost(usage);
        let charged = cost.get(Dimension::Tokens);
        pick.settle(cost, now);
        self.stats
            .prompt_tokens
            .fetch_add(usage.prompt, Ordering::Relaxed);
        self.stats
            .completion_tokens
            .fetch_add(usage.completion, Ordering::Relaxed);
        self.stats
            .tokens_charged
            .fetch_add(charged, Ordering::Relaxed);
        charged
    }

    /// A retryable failure: a 429 pauses the quota it belongs to; the job waits out the
    /// server's hint or a backoff in the delayed queue, unless its attempts are spent.
    fn on_retryable(
        &self,
        job: &mut Job,
        pick: &Pick,
        context: RetryContext<'_>,
        record: &mut AttemptRecord,
        latency: Duration,
        now: Instant,
    ) -> Next {
        let RetryContext {
            cause,
            pause_quota,
            status,
            snapshot,
            answer,
            transport,
        } = context;
        let rate_limited = status == Some(429);
        if rate_limited {
            // A refused request was not charged.
            pick.cancel(now);
            record.tokens = 0;
        } else {
            // A 5xx or a broken connection: some providers charge it, some do not; the next
            // answers' `remaining` will say.
            pick.quota.maybe_uncounted(&pick.reservation);
        }
        let body_hint = answer
            .as_ref()
            .and_then(|a| retry::server_hint_from_body(&a.body));
        let mut hint = snapshot.retry_after.or(body_hint);
        let mut paced_retry = None;
        if pause_quota {
            let refused = match cause {
                RetryCause::RateLimitRequests => Some(Dimension::Requests),
                RetryCause::RateLimitTokens => Some(Dimension::Tokens),
                RetryCause::RateLimitInputTokens => Some(Dimension::InputTokens),
                RetryCause::RateLimitOutputTokens => Some(Dimension::OutputTokens),
                _ => None,
            };
            let reset = snapshot
                .reading(refused.unwrap_or(Dimension::Requests))
                .reset;
            let mut pause = hint.or(reset).unwrap_or(DEFAULT_PAUSE);
            // A hint in whole seconds (Anthropic's `retry-after`) rounds a wait of 100 ms up
            // to a second, a tenth of a small bucket's rate lost per 429. When the answer says
            // what is left of the refused dimension (or, when the body does not say which
            // refused, of every dimension too low for the retry) and its rate is known, wait
            // only until the retry's cost has refilled (never longer than the hint).
            let coarse = hint.is_none()
                || snapshot
                    .retry_after_resolution
                    .is_some_and(|r| r >= Duration::from_secs(1));
            let cost = job.cost();
            let short = Dimension::ALL.into_iter().filter_map(|d| {
                let left = snapshot.reading(d).remaining?;
                let wanted = refused.is_none_or(|r| r == d) && left < cost.get(d).max(1);
                wanted.then(|| pick.quota.refill_time(d, cost.get(d).max(1) - left))
            });
            let refill = short
                .collect::<Option<Vec<_>>>()
                .and_then(|t| t.into_iter().max());
            if let (true, Some(refill)) = (coarse, refill) {
                pause = pause.min(refill);
            }
            // The refused request itself waits out the same pause, not the rounded hint.
            hint = hint.map(|h| h.min(pause));
            if let (Some(dimension), Some(after), Some(resolution)) = (
                refused,
                snapshot.retry_after,
                snapshot.retry_after_resolution,
            ) {
                pick.quota
                    .refused(&pick.reservation, dimension, after, resolution, &cost, now);
            }
            pick.pause(now + pause, refused, &job.cost());
            // A quota that knows its limits paces the retry with everything else once the
            // pause is over: no jitter is needed to keep retries from coming back as a wave.
            if pick.quota.is_known() {
                paced_retry = Some(pause);
            }
        }
        let signal = if rate_limited {
            Signal::RateLimited
        } else {
            Signal::Overloaded
        };
        self.concurrency.record(signal, latency, now);
        self.update_target_rate(job, now);
        let label = cause.label();
        job.last_retry = Some(cause);
        job.avoid = (!pause_quota).then_some(pick.key_index);
        record.cause = Some(label.to_string());
        job.last_cause = Some(match (transport, status) {
            (_, Some(code)) => format!("{label} (HTTP {code})"),
            // What the connection said: a wrong --base-url shows as "connection refused".
            (Some(err), None) => format!("{label} ({err})"),
            (None, None) => label.to_string(),
        });
        if self.backoff.exhausted(job.attempts) {
            record.decision = Decision::GaveUp;
            let message = format!(
                "gave up after {} attempts; last failure: {}",
                job.attempts,
                job.last_cause.as_deref().unwrap_or(label)
            );
            Next::Finish {
                verdict: Verdict::Failed {
                    answer,
                    code: Failure::MaxAttemptsExceeded,
                    message,
                },
                retry_after: None,
            }
        } else {
            let delay = match paced_retry {
                Some(pause) => pause,
                None => self
                    .backoff
                    .delay(job.attempts, hint, &mut *lock(&self.rng)),
            };
            job.backoff = delay;
            record.decision = Decision::Retry;
            record.retry_in = delay;
            self.stats.record_retry(label);
            Next::Retry(now + delay)
        }
    }
}

/// The record of `job`'s attempt on `pick`, as if it succeeded (the reaction amends it).
pub(super) fn attempt_record(
    job: &Job,
    pick: &Pick,
    waits: Waits,
    sent: Sent,
    status: Option<u16>,
) -> AttemptRecord {
    AttemptRecord {
        custom_id: job.custom_id.clone(),
        attempt: job.attempts,
        key: pick.key.label().to_string(),
        sent_at: sent.at,
        tokens: job.estimate.total(),
        status,
        latency: sent.latency,
        waited_quota: waits.quota,
        paused: waits.paused,
        waited_backoff: waits.backoff,
        cause: None,
        decision: Decision::Succeeded,
        retry_in: Duration::ZERO,
        via_batch: false,
    }
}

/// What a retryable failure's reaction reads.
struct RetryContext<'a> {
    cause: RetryCause,
    pause_quota: bool,
    status: Option<u16>,
    snapshot: &'a LimitSnapshot,
    answer: Option<ProviderAnswer>,
    transport: Option<&'a TransportError>,
}

/// The outcome of an attempt ([`retry::classify`]); a success also yields its usage. A 2xx
/// whose body is not complete JSON was cut short and is retried.
pub(super) fn outcome_of(result: &Result<Reply, TransportError>) -> (Outcome, Option<Usage>) {
    match result {
        Ok(reply) => {
            if (200..300).contains(&reply.status) {
                match usage_of_body(&reply.body) {
                    Ok(usage) => return (Outcome::Success, usage),
                    Err(_) => return (retry::classify(&AttemptResult::TruncatedBody), None),
                }
            }
            let attempt = AttemptResult::Response {
                status: reply.status,
                body: &reply.body,
                headers_say_retry: headers::should_retry(|name| reply.header(name)),
            };
            (retry::classify(&attempt), None)
        }
        Err(err) => {
            let attempt = match err {
                TransportError::Timeout(_) => AttemptResult::Timeout,
                TransportError::Connect(_) => AttemptResult::Connect,
                TransportError::Reset(_) => AttemptResult::ConnectionReset,
                TransportError::Truncated(_) => AttemptResult::TruncatedBody,
            };
            (retry::classify(&attempt), None)
        }
    }
}
