//! The scheduler shared by `run` (and later `serve`): jobs in, finished results out.
//!
//! One dispatcher task takes a job (a due retry first, else the next input), waits for an
//! in-flight slot ([`concurrency`]), reserves the job's cost on the key that can send it
//! soonest ([`crate::upstream::KeyPool`]), sleeps until the reservation's time and hands the
//! job to an attempt task. Because reservations are made one at a time, the dispatcher never
//! books more than one request ahead, and a 429 that pauses a quota stops every request that
//! has not left yet: one pause per 429, not one 429 per waiting request.
//!
//! An attempt task sends the request, feeds the answer back (headers calibrate the quota,
//! `usage` settles it, latency and overload steer the concurrency bound) and classifies it
//! ([`crate::retry`]): a retryable failure goes into the delayed queue ([`queue`]) with its
//! not-before time and gives its slot back; a final one, or a success, leaves as [`Finished`].

pub mod concurrency;
pub mod event;
pub mod job;
pub mod queue;
pub mod stats;

use crate::quota::{Cost, Dimension, LimitSnapshot, headers::parse_limit_headers};
use crate::retry::{self, AttemptResult, BackoffPolicy, Outcome, RetryCause};
use crate::upstream::{KeyPool, Pick, PickError, Reply, TransportError, Upstream};
use concurrency::{Concurrency, Permit, Signal};
pub use event::{AttemptRecord, Decision, Event};
pub use job::{Finished, Job, ProviderAnswer, Verdict};
use queue::DelayedQueue;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::Value;
use stats::Stats;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// How often the concurrency bound's target rate is recomputed from the quotas.
const TARGET_REFRESH: Duration = Duration::from_millis(100);

/// Pause applied after a 429 that carries no hint at all.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// How the engine behaves.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// A fixed in-flight bound; `None` adapts it.
    pub concurrency: Option<usize>,
    /// Ceiling for the adaptive bound.
    pub max_concurrency: usize,
    /// Retry policy.
    pub backoff: BackoffPolicy,
    /// Seed for the backoff jitter (reproducible runs); `None` seeds from the OS.
    pub seed: Option<u64>,
}

/// Why the engine stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineExit {
    /// Every job finished.
    Completed,
    /// [`Engine::stop_admitting`] was called; in-flight requests finished.
    Stopped {
        /// Retries that were waiting and were not sent again.
        pending: u64,
    },
    /// No usable key is left; `unsent` jobs were never finished.
    NoKeys {
        /// Which keys were removed and why.
        reason: String,
        /// Jobs left without a result.
        unsent: u64,
    },
}

/// The scheduler.
pub struct Engine {
    pool: Arc<KeyPool>,
    upstream: Upstream,
    concurrency: Arc<Concurrency>,
    stats: Arc<Stats>,
    backoff: BackoffPolicy,
    rng: Mutex<SmallRng>,
    delayed: Mutex<DelayedQueue>,
    wake: Notify,
    outstanding: AtomicU64,
    /// Smoothed token cost per request, and when the target rate was last computed.
    mean_tokens: Mutex<(f64, Option<Instant>)>,
    /// Set by [`Engine::stop_admitting`].
    stopping: AtomicBool,
}

/// Why a job cannot be booked on any key.
enum Unbookable {
    /// It exceeds a limit outright.
    NeverFits(crate::quota::QuotaError),
    /// No key is left.
    NoKeys(String),
}

/// What one attempt waited for before it was sent.
#[derive(Debug, Clone, Copy)]
struct Waits {
    quota: Duration,
    paused: bool,
    backoff: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Engine {
    /// An engine sending through `upstream` with the keys of `pool`.
    pub fn new(config: EngineConfig, pool: Arc<KeyPool>, upstream: Upstream) -> Arc<Self> {
        let rng = match config.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        Arc::new(Engine {
            pool,
            upstream,
            concurrency: Concurrency::new(config.concurrency, config.max_concurrency),
            stats: Arc::new(Stats::default()),
            backoff: config.backoff,
            rng: Mutex::new(rng),
            delayed: Mutex::new(DelayedQueue::default()),
            wake: Notify::new(),
            outstanding: AtomicU64::new(0),
            mean_tokens: Mutex::new((0.0, None)),
            stopping: AtomicBool::new(false),
        })
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// The in-flight bound.
    pub fn concurrency(&self) -> &Arc<Concurrency> {
        &self.concurrency
    }

    /// The keys.
    pub fn pool(&self) -> &Arc<KeyPool> {
        &self.pool
    }

    /// Stop taking jobs: requests in flight finish, retries waiting are not sent again, and
    /// [`Engine::run`] returns [`EngineExit::Stopped`].
    pub fn stop_admitting(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Run until `input` is closed and every job it gave has finished into `sink` (or until
    /// [`Engine::stop_admitting`]). Every attempt and every finished request is reported there.
    pub async fn run(
        self: Arc<Self>,
        mut input: mpsc::Receiver<Job>,
        sink: mpsc::Sender<Event>,
    ) -> EngineExit {
        let mut input_open = true;
        loop {
            let permit = self.concurrency.acquire().await;
            let job = match self.next_job(&mut input, &mut input_open).await {
                _ if self.stopping() => None,
                next => next,
            };
            let Some(job) = job else {
                drop(permit);
                if self.stopping() {
                    self.wait_in_flight().await;
                    let pending = lock(&self.delayed).len() as u64;
                    return EngineExit::Stopped { pending };
                }
                return EngineExit::Completed;
            };
            match self.book(&job).await {
                Ok((pick, waits)) => {
                    let engine = Arc::clone(&self);
                    let sink = sink.clone();
                    tokio::spawn(async move {
                        engine.attempt(job, pick, waits, permit, sink).await;
                    });
                }
                Err(Unbookable::NeverFits(err)) => {
                    let verdict = Verdict::Failed {
                        answer: None,
                        code: "request_too_large".into(),
                        message: err.to_string(),
                    };
                    self.finish(job, verdict, &sink).await;
                }
                Err(Unbookable::NoKeys(reason)) => {
                    drop(permit);
                    return self.stop_without_keys(job, reason, input).await;
                }
            }
        }
    }

    /// Reserve a job's cost and wait until it may go. A quota paused by a 429 while we waited
    /// gives the reservation back and books again after the pause.
    async fn book(&self, job: &Job) -> Result<(Pick, Waits), Unbookable> {
        let booked_at = Instant::now();
        let mut paused = false;
        loop {
            let now = Instant::now();
            let pick = match self.pool.pick(&job.model, job.cost(), now) {
                Err(PickError::Busy) => {
                    // Every key's probe is out: wait for an answer (any attempt ending wakes us).
                    let woken = self.wake.notified();
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                    continue;
                }
                Err(PickError::NoKeys(reason)) => return Err(Unbookable::NoKeys(reason)),
                Err(PickError::NeverFits(err)) => return Err(Unbookable::NeverFits(err)),
                Ok(pick) => pick,
            };
            paused |= pick.quota.paused_until(now).is_some();
            if pick.reservation.go_at > now {
                tokio::time::sleep_until(pick.reservation.go_at).await;
            }
            let now = Instant::now();
            if pick.quota.paused_until(now).is_some() {
                pick.quota.cancel(&pick.reservation, now);
                paused = true;
                continue;
            }
            let waits = Waits {
                quota: now.saturating_duration_since(booked_at),
                paused,
                backoff: job.backoff,
            };
            return Ok((pick, waits));
        }
    }

    /// The next job: a retry that is due, else the next input, else wait for either.
    async fn next_job(
        &self,
        input: &mut mpsc::Receiver<Job>,
        input_open: &mut bool,
    ) -> Option<Job> {
        loop {
            let (due, next_due) = {
                let mut delayed = lock(&self.delayed);
                (delayed.pop_due(Instant::now()), delayed.next_due())
            };
            if due.is_some() {
                return due;
            }
            let woken = self.wake.notified();
            if self.stopping() {
                return None;
            }
            if *input_open {
                tokio::select! {
                    received = input.recv() => match received {
                        Some(job) => {
                            self.outstanding.fetch_add(1, Ordering::SeqCst);
                            return Some(job);
                        }
                        None => *input_open = false,
                    },
                    _ = woken => {}
                    _ = sleep_until_opt(next_due) => {}
                }
            } else {
                if self.outstanding.load(Ordering::SeqCst) == 0 {
                    return None;
                }
                tokio::select! {
                    _ = woken => {}
                    _ = sleep_until_opt(next_due) => {}
                }
            }
        }
    }

    /// No key is left: wait for what is in flight, then count what never got a result.
    async fn stop_without_keys(
        &self,
        job: Job,
        reason: String,
        mut input: mpsc::Receiver<Job>,
    ) -> EngineExit {
        tracing::error!(reason = %reason, "no usable API key left; stopping");
        lock(&self.delayed).push(Instant::now(), job);
        self.wait_in_flight().await;
        let mut unsent = lock(&self.delayed).drain().len() as u64;
        input.close();
        while input.recv().await.is_some() {
            unsent += 1;
        }
        EngineExit::NoKeys { reason, unsent }
    }

    /// Wait until no attempt is in flight.
    async fn wait_in_flight(&self) {
        while self.concurrency.in_flight() > 0 {
            let woken = self.wake.notified();
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }

    async fn finish(&self, job: Job, verdict: Verdict, sink: &mpsc::Sender<Event>) {
        match &verdict {
            Verdict::Succeeded(_) => Stats::incr(&self.stats.succeeded),
            Verdict::Failed { code, .. } => self.stats.record_failure(code),
        }
        let finished = Finished {
            custom_id: job.custom_id,
            attempts: job.attempts,
            verdict,
        };
        if sink.send(Event::Finished(finished)).await.is_err() {
            tracing::error!("the result writer stopped; a result was dropped");
        }
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn retry_later(&self, job: Job, due: Instant) {
        lock(&self.delayed).push(due, job);
        self.wake.notify_one();
    }

    /// Requests per second the quotas of `model` allow over all keys in rotation, if known,
    /// handed to the concurrency bound. Recomputed at most every [`TARGET_REFRESH`].
    fn update_target_rate(&self, job: &Job, now: Instant) {
        let mean = {
            let mut mean = lock(&self.mean_tokens);
            let tokens = job.estimate.total() as f64;
            mean.0 = if mean.0 == 0.0 {
                tokens
            } else {
                mean.0 * 0.95 + tokens * 0.05
            };
            if mean
                .1
                .is_some_and(|at| now.saturating_duration_since(at) < TARGET_REFRESH)
            {
                return;
            }
            mean.1 = Some(now);
            mean.0
        };
        let mut total = 0.0;
        let mut known = false;
        for quota in self.pool.active_quotas(&job.model, now) {
            let limits = quota.limits();
            let per_request = [1.0, mean, 0.0, 0.0];
            let rate = Dimension::ALL
                .iter()
                .filter_map(|d| {
                    let (per_minute, _) = limits[d.index()]?;
                    let cost = per_request[d.index()];
                    (cost > 0.0).then(|| per_minute as f64 / 60.0 / cost)
                })
                .fold(f64::INFINITY, f64::min);
            if rate.is_finite() {
                total += rate;
                known = true;
            }
        }
        self.concurrency.set_target_rate(known.then_some(total));
    }

    /// Send one attempt and act on its outcome.
    async fn attempt(
        self: Arc<Self>,
        mut job: Job,
        pick: Pick,
        waits: Waits,
        permit: Permit,
        sink: mpsc::Sender<Event>,
    ) {
        job.attempts += 1;
        Stats::incr(&self.stats.attempts);
        let in_flight = self.pool.start(pick.key_index);
        let started = Instant::now();
        let result = self
            .upstream
            .post(&pick.key, job.endpoint.path(), job.body.clone())
            .await;
        let latency = started.elapsed();
        drop(in_flight);
        let now = Instant::now();
        let snapshot = match &result {
            Ok(reply) => {
                self.concurrency.end_probe();
                let snapshot = parse_limit_headers(
                    reply.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                    SystemTime::now(),
                );
                pick.quota.observe(Some(&pick.reservation), &snapshot, now);
                snapshot
            }
            Err(_) => {
                pick.quota.no_answer();
                LimitSnapshot::default()
            }
        };
        let (outcome, usage) = classify(&result);
        let status = result.as_ref().map(|r| r.status).ok();
        let answer = result.as_ref().ok().map(|reply| ProviderAnswer {
            status: reply.status,
            request_id: reply.header("x-request-id").map(str::to_string),
            body: reply.body.clone(),
        });
        let mut record = AttemptRecord {
            custom_id: job.custom_id.clone(),
            attempt: job.attempts,
            key: pick.key.label().to_string(),
            status,
            latency,
            waited_quota: waits.quota,
            paused: waits.paused,
            waited_backoff: waits.backoff,
            cause: None,
            decision: Decision::Succeeded,
            retry_in: Duration::ZERO,
        };
        let next = match outcome {
            Outcome::Success => {
                self.concurrency.record(Signal::Answered, latency, now);
                if let Some(usage) = usage {
                    let charged = charged_tokens(&job, &usage);
                    pick.quota
                        .settle(&pick.reservation, Cost::request(charged), now);
                    self.stats
                        .prompt_tokens
                        .fetch_add(usage.prompt, Ordering::Relaxed);
                    self.stats
                        .completion_tokens
                        .fetch_add(usage.completion, Ordering::Relaxed);
                    self.stats
                        .tokens_charged
                        .fetch_add(charged, Ordering::Relaxed);
                }
                self.update_target_rate(&job, now);
                match answer {
                    Some(answer) => Next::Finish(Verdict::Succeeded(answer)),
                    None => Next::Retry(now),
                }
            }
            Outcome::Retry { cause, pause_quota } => {
                let rate_limited = status == Some(429);
                if rate_limited {
                    Stats::incr(&self.stats.rate_limited);
                    // A refused request was not charged.
                    pick.quota.cancel(&pick.reservation, now);
                }
                let body_hint = answer
                    .as_ref()
                    .and_then(|a| retry::server_hint_from_body(&a.body));
                let hint = snapshot.retry_after.or(body_hint);
                if pause_quota {
                    let refused = match cause {
                        RetryCause::RateLimitRequests => Some(Dimension::Requests),
                        RetryCause::RateLimitTokens => Some(Dimension::Tokens),
                        _ => None,
                    };
                    let reset = match refused {
                        Some(Dimension::Tokens) => snapshot.tokens.reset,
                        _ => snapshot.requests.reset,
                    };
                    let pause = hint.or(reset).unwrap_or(DEFAULT_PAUSE);
                    pick.quota.pause(now + pause, refused, &job.cost());
                }
                let signal = if rate_limited {
                    Signal::RateLimited
                } else {
                    Signal::Overloaded
                };
                self.concurrency.record(signal, latency, now);
                self.update_target_rate(&job, now);
                let label = cause.label();
                record.cause = Some(label.to_string());
                job.last_cause = Some(match status {
                    Some(code) => format!("{label} (HTTP {code})"),
                    None => label.to_string(),
                });
                if self.backoff.exhausted(job.attempts) {
                    record.decision = Decision::GaveUp;
                    let message = format!(
                        "gave up after {} attempts; last failure: {}",
                        job.attempts,
                        job.last_cause.as_deref().unwrap_or(label)
                    );
                    Next::Finish(Verdict::Failed {
                        answer,
                        code: "max_attempts_exceeded".into(),
                        message,
                    })
                } else {
                    let delay = self
                        .backoff
                        .delay(job.attempts, hint, &mut *lock(&self.rng));
                    job.backoff = delay;
                    record.decision = Decision::Retry;
                    record.retry_in = delay;
                    self.stats.record_retry(label);
                    Next::Retry(now + delay)
                }
            }
            Outcome::Final {
                code,
                message,
                key_unusable,
            } => {
                self.concurrency.record(Signal::Answered, latency, now);
                record.cause = Some(code.clone());
                let removed = key_unusable
                    && self
                        .pool
                        .remove(pick.key_index, &format!("{code}: {message}"));
                if removed {
                    tracing::warn!(key = %record.key, code = %code, message = %message, "API key removed from rotation");
                }
                if key_unusable && self.pool.active() > 0 {
                    record.decision = Decision::RetryOtherKey;
                    Next::Retry(now)
                } else {
                    record.decision = Decision::Failed;
                    Next::Finish(Verdict::Failed {
                        answer,
                        code,
                        message,
                    })
                }
            }
        };
        drop(permit);
        record.log();
        let _ = sink.send(Event::Attempt(record)).await;
        match next {
            Next::Finish(verdict) => self.finish(job, verdict, &sink).await,
            Next::Retry(due) => self.retry_later(job, due),
        }
    }
}

/// What happens to a job after an attempt.
enum Next {
    Finish(Verdict),
    Retry(Instant),
}

/// Token usage reported by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    prompt: u64,
    completion: u64,
}

fn parse_usage(body: &Value) -> Option<Usage> {
    let usage = body.get("usage")?;
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| usage.get(*n).and_then(Value::as_u64))
    };
    Some(Usage {
        prompt: field(&["prompt_tokens", "input_tokens"])?,
        completion: field(&["completion_tokens", "output_tokens"]).unwrap_or(0),
    })
}

/// What the provider charged the request's tokens/min: its own prompt count plus the output it
/// admitted (`max_tokens × n`: OpenAI keeps the admission charge for the output).
fn charged_tokens(job: &Job, usage: &Usage) -> u64 {
    usage.prompt + job.estimate.max_output_tokens
}

/// Classify an attempt; a success also yields its usage. A 2xx whose body is not complete
/// JSON was cut short and is retried.
fn classify(result: &Result<Reply, TransportError>) -> (Outcome, Option<Usage>) {
    match result {
        Ok(reply) => {
            if (200..300).contains(&reply.status) {
                match serde_json::from_slice::<Value>(&reply.body) {
                    Ok(body) => return (Outcome::Success, parse_usage(&body)),
                    Err(_) => return (retry::classify(&AttemptResult::TruncatedBody), None),
                }
            }
            let should_retry = reply.header("x-should-retry").and_then(|v| match v {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            });
            let attempt = AttemptResult::Response {
                status: reply.status,
                body: &reply.body,
                headers_say_retry: should_retry,
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
