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
//!
//! What the gateway adds (`serve`), none of which changes a batch run:
//!
//! * **Priorities** ([`Priority`]): two input lanes and two delayed queues. The dispatcher
//!   takes a due interactive retry, else new interactive input, else a due batch retry, else
//!   new batch input; and while it sleeps toward a batch job's reservation, an interactive
//!   job that arrives takes its place (the batch reservation is given back and the batch job
//!   goes first among the batch jobs next time). So an interactive job waits behind at most the
//!   interactive jobs ahead of it, never behind queued batch work.
//! * **Deadlines** ([`Job::deadline`]): no attempt is sent after it. A reservation that would
//!   go later is given back and the job finishes with [`DEADLINE_EXCEEDED`] and the time the
//!   quota says it could have gone ([`Finished::retry_after`]); a retry due after the deadline
//!   finishes the same way.
//! * **Result routes** ([`respond`]): a job may carry its own responder; its end goes there
//!   instead of to the sink, and a streaming job's 2xx answer is handed over live.

pub mod concurrency;
pub mod event;
pub mod job;
pub mod queue;
pub mod respond;
pub mod stats;
pub mod usage;

use crate::quota::{Dimension, LimitSnapshot, headers::parse_limit_headers};
use crate::retry::{self, AttemptResult, BackoffPolicy, Outcome, RetryCause};
use crate::upstream::{KeyPool, Opened, Pick, PickError, Reply, TransportError, Upstream};
use bytes::Bytes;
use concurrency::{Concurrency, Permit, Signal};
pub use event::{AttemptRecord, Decision, Event};
pub use job::{DEADLINE_EXCEEDED, Finished, Job, Priority, ProviderAnswer, Verdict};
use queue::DelayedQueue;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use respond::{Delivery, LiveStream};
use serde_json::Value;
use stats::Stats;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use usage::{Usage, usage_of_body};

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
    /// Retries waiting, one queue per [`Priority`].
    delayed: [Mutex<DelayedQueue>; 2],
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
    /// No key in rotation serves its model and endpoint.
    NoRoute(String),
    /// It could not go before its deadline; capacity is expected after this long.
    PastDeadline(Duration),
    /// Its caller has gone.
    Abandoned,
    /// An interactive job arrived while this batch job waited for its reservation.
    Preempted(Box<Job>),
}

/// The input lanes; `None` once closed.
struct Lanes {
    interactive: Option<mpsc::Receiver<Job>>,
    batch: Option<mpsc::Receiver<Job>>,
}

impl Lanes {
    fn open(&self) -> bool {
        self.interactive.is_some() || self.batch.is_some()
    }
}

/// Receive from a lane that may be closed (a closed lane never yields).
async fn recv_lane(lane: &mut Option<mpsc::Receiver<Job>>) -> Option<Job> {
    match lane {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
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
            delayed: Default::default(),
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
        input: mpsc::Receiver<Job>,
        sink: mpsc::Sender<Event>,
    ) -> EngineExit {
        let lanes = Lanes {
            interactive: None,
            batch: Some(input),
        };
        self.run_lanes(lanes, sink).await
    }

    /// [`Engine::run`] with two input lanes: jobs from `interactive` never wait behind jobs
    /// from `batch` (see the module documentation). Runs until both are closed and every job
    /// has finished.
    pub async fn run_prioritized(
        self: Arc<Self>,
        interactive: mpsc::Receiver<Job>,
        batch: mpsc::Receiver<Job>,
        sink: mpsc::Sender<Event>,
    ) -> EngineExit {
        let lanes = Lanes {
            interactive: Some(interactive),
            batch: Some(batch),
        };
        self.run_lanes(lanes, sink).await
    }

    async fn run_lanes(self: Arc<Self>, mut lanes: Lanes, sink: mpsc::Sender<Event>) -> EngineExit {
        loop {
            let permit = self.concurrency.acquire().await;
            let job = match self.next_job(&mut lanes).await {
                _ if self.stopping() => None,
                next => next,
            };
            let Some(mut job) = job else {
                drop(permit);
                if self.stopping() {
                    self.wait_in_flight().await;
                    let pending = self.delayed.iter().map(|d| lock(d).len() as u64).sum();
                    return EngineExit::Stopped { pending };
                }
                return EngineExit::Completed;
            };
            loop {
                match self.book(&job, &mut lanes).await {
                    Ok((pick, waits)) => {
                        let engine = Arc::clone(&self);
                        let sink = sink.clone();
                        tokio::spawn(async move {
                            engine.attempt(job, pick, waits, permit, sink).await;
                        });
                    }
                    Err(Unbookable::Preempted(urgent)) => {
                        self.retry_later(job, Instant::now());
                        job = *urgent;
                        continue;
                    }
                    Err(Unbookable::Abandoned) => {
                        drop(permit);
                        self.forget(job);
                    }
                    Err(Unbookable::PastDeadline(retry_after)) => {
                        drop(permit);
                        let verdict = Verdict::Failed {
                            answer: None,
                            code: DEADLINE_EXCEEDED.into(),
                            message: format!(
                                "no upstream capacity before the request's deadline; capacity expected in {:.1}s",
                                retry_after.as_secs_f64()
                            ),
                        };
                        self.finish(job, verdict, Some(retry_after), &sink).await;
                    }
                    Err(Unbookable::NeverFits(err)) => {
                        drop(permit);
                        let verdict = Verdict::Failed {
                            answer: None,
                            code: "request_too_large".into(),
                            message: err.to_string(),
                        };
                        self.finish(job, verdict, None, &sink).await;
                    }
                    Err(Unbookable::NoRoute(message)) => {
                        drop(permit);
                        let verdict = Verdict::Failed {
                            answer: None,
                            code: NO_ROUTE.into(),
                            message,
                        };
                        self.finish(job, verdict, None, &sink).await;
                    }
                    Err(Unbookable::NoKeys(reason)) => {
                        drop(permit);
                        return self.stop_without_keys(job, reason, lanes).await;
                    }
                }
                break;
            }
        }
    }

    /// Send an interactive job at once from the caller's task, when nothing can be ahead of
    /// it: no interactive retry is due, an in-flight slot is free and a key's (unshared) quota
    /// admits it now. The attempt then runs exactly as the dispatcher would run it, minus the hand-offs
    /// through the input lane and the dispatcher (the gateway's latency on an idle path).
    /// Otherwise the job comes back untouched (`Some`), to be queued. The caller makes sure no
    /// interactive job waits in its own queue.
    pub fn send_now(self: &Arc<Self>, job: Job, sink: &mpsc::Sender<Event>) -> Option<Job> {
        let now = Instant::now();
        if job.priority != Priority::Interactive
            || self.stopping()
            || job.deadline.is_some_and(|d| d < now)
            || lock(&self.delayed[Priority::Interactive.index()])
                .next_due()
                .is_some_and(|due| due <= now)
        {
            return Some(job);
        }
        let Some(permit) = self.concurrency.try_acquire() else {
            return Some(job);
        };
        let Ok(pick) = self.pool.pick_for(job.want(), job.cost(), now) else {
            return Some(job);
        };
        // A shared quota's admission asks Redis first: that is the dispatcher's way.
        if pick.reservation.go_at > now || pick.quota.is_shared() {
            pick.quota.cancel(&pick.reservation, now);
            return Some(job);
        }
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        let waits = Waits {
            quota: Duration::ZERO,
            paused: false,
            backoff: job.backoff,
        };
        let engine = Arc::clone(self);
        let sink = sink.clone();
        tokio::spawn(async move {
            engine.attempt(job, pick, waits, permit, sink).await;
        });
        None
    }

    /// A job whose caller has gone leaves without a result.
    fn forget(&self, job: Job) {
        drop(job);
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Reserve a job's cost and wait until it may go. A quota paused by a 429 while we waited
    /// gives the reservation back and books again after the pause. A batch job's wait gives way
    /// to an interactive job arriving on `lanes`.
    async fn book(&self, job: &Job, lanes: &mut Lanes) -> Result<(Pick, Waits), Unbookable> {
        let booked_at = Instant::now();
        let mut paused = false;
        loop {
            if job.abandoned() {
                return Err(Unbookable::Abandoned);
            }
            let now = Instant::now();
            let mut pick = match self.pool.pick_for(job.want(), job.cost(), now) {
                Err(PickError::Busy) => {
                    if job.deadline.is_some_and(|d| d <= now) {
                        return Err(Unbookable::PastDeadline(Duration::from_secs(1)));
                    }
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
                Err(err @ PickError::NoRoute { .. }) => {
                    return Err(Unbookable::NoRoute(err.to_string()));
                }
                Ok(pick) => pick,
            };
            let go_at = pick.reservation.go_at;
            if job.deadline.is_some_and(|d| go_at > d) {
                pick.quota.cancel(&pick.reservation, now);
                return Err(Unbookable::PastDeadline(
                    go_at.saturating_duration_since(now),
                ));
            }
            paused |= pick.quota.paused_until(now).is_some();
            if go_at > now {
                let urgent = if job.priority == Priority::Batch {
                    tokio::select! {
                        _ = tokio::time::sleep_until(go_at) => None,
                        urgent = recv_lane(&mut lanes.interactive) => match urgent {
                            Some(urgent) => Some(urgent),
                            None => {
                                lanes.interactive = None;
                                tokio::time::sleep_until(go_at).await;
                                None
                            }
                        },
                    }
                } else {
                    tokio::time::sleep_until(go_at).await;
                    None
                };
                if let Some(urgent) = urgent {
                    self.outstanding.fetch_add(1, Ordering::SeqCst);
                    pick.quota.cancel(&pick.reservation, Instant::now());
                    return Err(Unbookable::Preempted(Box::new(urgent)));
                }
            }
            let now = Instant::now();
            if pick.quota.paused_until(now).is_some() {
                pick.quota.cancel(&pick.reservation, now);
                paused = true;
                continue;
            }
            if job.abandoned() {
                pick.quota.cancel(&pick.reservation, now);
                return Err(Unbookable::Abandoned);
            }
            // A shared quota has the last word: Redis says when, across every process.
            let wait = pick.quota.admit_shared(&mut pick.reservation, now).await;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                let now = Instant::now();
                if pick.quota.paused_until(now).is_some() {
                    pick.quota.cancel(&pick.reservation, now);
                    paused = true;
                    continue;
                }
            }
            let now = Instant::now();
            let waits = Waits {
                quota: now.saturating_duration_since(booked_at),
                paused,
                backoff: job.backoff,
            };
            return Ok((pick, waits));
        }
    }

    /// The next job: a due interactive retry, else interactive input, else a due batch retry,
    /// else batch input, else wait for any of them.
    async fn next_job(&self, lanes: &mut Lanes) -> Option<Job> {
        loop {
            let now = Instant::now();
            if let Some(job) = lock(&self.delayed[Priority::Interactive.index()]).pop_due(now) {
                return Some(job);
            }
            if self.stopping() {
                return None;
            }
            if let Some(rx) = &mut lanes.interactive {
                match rx.try_recv() {
                    Ok(job) => return Some(self.admitted(job)),
                    Err(mpsc::error::TryRecvError::Disconnected) => lanes.interactive = None,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
            }
            if let Some(job) = lock(&self.delayed[Priority::Batch.index()]).pop_due(now) {
                return Some(job);
            }
            let next_due = self.delayed.iter().filter_map(|d| lock(d).next_due()).min();
            let woken = self.wake.notified();
            if !lanes.open() && self.outstanding.load(Ordering::SeqCst) == 0 {
                return None;
            }
            tokio::select! {
                biased;
                received = recv_lane(&mut lanes.interactive) => match received {
                    Some(job) => return Some(self.admitted(job)),
                    None => lanes.interactive = None,
                },
                received = recv_lane(&mut lanes.batch) => match received {
                    Some(job) => return Some(self.admitted(job)),
                    None => lanes.batch = None,
                },
                _ = woken => {}
                _ = sleep_until_opt(next_due) => {}
            }
        }
    }

    /// Count a job taken from an input lane as outstanding.
    fn admitted(&self, job: Job) -> Job {
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        job
    }

    /// No key is left: wait for what is in flight, then count what never got a result.
    async fn stop_without_keys(&self, job: Job, reason: String, lanes: Lanes) -> EngineExit {
        tracing::error!(reason = %reason, "no usable API key left; stopping");
        self.retry_later(job, Instant::now());
        self.wait_in_flight().await;
        let mut unsent = 0;
        for delayed in &self.delayed {
            unsent += lock(delayed).drain().len() as u64;
        }
        for mut input in [lanes.interactive, lanes.batch].into_iter().flatten() {
            input.close();
            while input.recv().await.is_some() {
                unsent += 1;
            }
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

    /// A job ends: to its responder if it has one, else to the sink.
    async fn finish(
        &self,
        mut job: Job,
        verdict: Verdict,
        retry_after: Option<Duration>,
        sink: &mpsc::Sender<Event>,
    ) {
        match &verdict {
            Verdict::Succeeded(_) => Stats::incr(&self.stats.succeeded),
            Verdict::Failed { code, .. } => self.stats.record_failure(code),
        }
        let finished = Finished {
            waited: job.waited(Instant::now()),
            retry_after,
            last_retry: job.last_retry,
            custom_id: job.custom_id,
            attempts: job.attempts,
            verdict,
        };
        match job.responder.take() {
            Some(responder) => responder.send(Delivery::Finished(finished)),
            None => {
                if sink.send(Event::Finished(finished)).await.is_err() {
                    tracing::error!("the result writer stopped; a result was dropped");
                }
            }
        }
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn retry_later(&self, job: Job, due: Instant) {
        lock(&self.delayed[job.priority.index()]).push(due, job);
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
        let sent_at = SystemTime::now();
        job.sent_at = Some(started);
        let path = job.endpoint.path();
        let (upstream, model, body) = match &pick.route {
            Some(route) => (
                &route.upstream,
                route.model.as_str(),
                with_model(&job.body, &job.model, &route.model),
            ),
            None => (&self.upstream, job.model.as_str(), job.body.clone()),
        };
        let result = if job.stream && job.responder.is_some() {
            match upstream.open(&pick.key, path, model, body).await {
                Ok(opened) if opened.is_success() => {
                    drop(in_flight);
                    let latency = started.elapsed();
                    let sent = Sent {
                        at: sent_at,
                        latency,
                    };
                    self.hand_over(job, pick, waits, permit, opened, sent, sink)
                        .await;
                    return;
                }
                Ok(opened) => opened.into_reply().await,
                Err(err) => Err(err),
            }
        } else {
            upstream.post(&pick.key, path, model, body).await
        };
        let latency = started.elapsed();
        drop(in_flight);
        let now = Instant::now();
        let snapshot = match &result {
            Ok(reply) => {
                self.concurrency.end_probe();
                let snapshot = parse_limit_headers(
                    crate::upstream::client::text_headers(&reply.headers),
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
            // OpenAI and Azure send `x-request-id`, Anthropic `request-id`.
            request_id: reply
                .header("x-request-id")
                .or_else(|| reply.header("request-id"))
                .map(str::to_string),
            body: reply.body.clone(),
            usage,
        });
        let last_answer = answer.clone();
        let mut record = AttemptRecord {
            custom_id: job.custom_id.clone(),
            attempt: job.attempts,
            key: pick.key.label().to_string(),
            sent_at,
            tokens: job.estimate.total(),
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
                    let cost = job.charge().cost(&usage);
                    let charged = cost.get(Dimension::Tokens);
                    pick.quota.settle(&pick.reservation, cost, now);
                    record.tokens = charged;
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
                    record.tokens = 0;
                }
                let body_hint = answer
                    .as_ref()
                    .and_then(|a| retry::server_hint_from_body(&a.body));
                let hint = snapshot.retry_after.or(body_hint);
                if pause_quota {
                    let refused = match cause {
                        RetryCause::RateLimitRequests => Some(Dimension::Requests),
                        RetryCause::RateLimitTokens => Some(Dimension::Tokens),
                        RetryCause::RateLimitInputTokens => Some(Dimension::InputTokens),
                        RetryCause::RateLimitOutputTokens => Some(Dimension::OutputTokens),
                        _ => None,
                    };
                    let reset = match refused {
                        Some(Dimension::Tokens) => snapshot.tokens.reset,
                        Some(Dimension::InputTokens) => snapshot.input_tokens.reset,
                        Some(Dimension::OutputTokens) => snapshot.output_tokens.reset,
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
                job.last_retry = Some(cause);
                job.avoid = (!pause_quota).then_some(pick.key_index);
                record.cause = Some(label.to_string());
                job.last_cause = Some(match (&result, status) {
                    (_, Some(code)) => format!("{label} (HTTP {code})"),
                    // What the connection said: a wrong --base-url shows as "connection refused".
                    (Err(err), None) => format!("{label} ({err})"),
                    (Ok(_), None) => label.to_string(),
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
        // The in-flight slot is held until the results are handed over below: when the sink is
        // slow (a busy store), finished requests must not pile up while new ones start.
        let _slot = permit;
        if let (Next::Retry(due), Some(deadline)) = (&next, job.deadline)
            && *due > deadline
        {
            record.decision = Decision::GaveUp;
            let retry_after = due.saturating_duration_since(now);
            let message = format!(
                "the request's deadline passed before it could be retried (after {} attempts; last failure: {})",
                job.attempts,
                job.last_cause.as_deref().unwrap_or("none")
            );
            let verdict = Verdict::Failed {
                answer: last_answer,
                code: DEADLINE_EXCEEDED.into(),
                message,
            };
            log_attempt(&job, &record);
            let _ = sink.send(Event::Attempt(record)).await;
            self.finish(job, verdict, Some(retry_after), &sink).await;
            return;
        }
        log_attempt(&job, &record);
        let _ = sink.send(Event::Attempt(record)).await;
        match next {
            Next::Finish(verdict) => self.finish(job, verdict, None, &sink).await,
            Next::Retry(due) => self.retry_later(job, due),
        }
    }

    /// A streaming attempt got a 2xx: calibrate from its headers and hand the live answer to
    /// the job's responder. The slot is freed now; the relay settles the quota at the end.
    #[allow(clippy::too_many_arguments)]
    async fn hand_over(
        &self,
        mut job: Job,
        pick: Pick,
        waits: Waits,
        permit: Permit,
        opened: Opened,
        sent: Sent,
        sink: mpsc::Sender<Event>,
    ) {
        let latency = sent.latency;
        let now = Instant::now();
        let snapshot = parse_limit_headers(
            crate::upstream::client::text_headers(&opened.headers),
            SystemTime::now(),
        );
        pick.quota.observe(Some(&pick.reservation), &snapshot, now);
        self.concurrency.record(Signal::Answered, latency, now);
        self.update_target_rate(&job, now);
        drop(permit);
        let record = AttemptRecord {
            custom_id: job.custom_id.clone(),
            attempt: job.attempts,
            key: pick.key.label().to_string(),
            sent_at: sent.at,
            tokens: job.estimate.total(),
            status: Some(opened.status),
            latency,
            waited_quota: waits.quota,
            paused: waits.paused,
            waited_backoff: waits.backoff,
            cause: None,
            decision: Decision::Succeeded,
            retry_in: Duration::ZERO,
        };
        log_attempt(&job, &record);
        let _ = sink.send(Event::Attempt(record)).await;
        Stats::incr(&self.stats.succeeded);
        let live = LiveStream::new(
            opened,
            job.attempts,
            job.waited(now),
            Arc::clone(&pick.quota),
            pick.reservation,
            job.charge(),
            Arc::clone(&self.stats),
        );
        if let Some(responder) = job.responder.take() {
            responder.send(Delivery::Stream(live));
        }
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Log an attempt, except a gateway request's first attempt that succeeded: the request's own
/// access log line already says all of it (one event per request on the common path).
fn log_attempt(job: &Job, record: &AttemptRecord) {
    let told_by_access_log =
        job.responder.is_some() && record.attempt == 1 && record.decision == Decision::Succeeded;
    if !told_by_access_log {
        record.log();
    }
}

/// When a streaming attempt was sent and how long its headers took.
struct Sent {
    at: SystemTime,
    latency: Duration,
}

/// The code of a job whose model no key in rotation serves.
pub const NO_ROUTE: &str = "model_not_routed";

/// `body` with its `model` renamed to the deployment's `model` (the bytes as they are when the
/// name is the same or the body is not a JSON object).
fn with_model(body: &Bytes, public: &str, model: &str) -> Bytes {
    if public == model {
        return body.clone();
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut map)) => {
            map.insert("model".into(), Value::String(model.to_string()));
            Bytes::from(Value::Object(map).to_string())
        }
        _ => body.clone(),
    }
}

/// What happens to a job after an attempt.
enum Next {
    Finish(Verdict),
    Retry(Instant),
}

/// Classify an attempt; a success also yields its usage. A 2xx whose body is not complete
/// JSON was cut short and is retried.
fn classify(result: &Result<Reply, TransportError>) -> (Outcome, Option<Usage>) {
    match result {
        Ok(reply) => {
            if (200..300).contains(&reply.status) {
                match usage_of_body(&reply.body) {
                    Ok(usage) => return (Outcome::Success, usage),
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
