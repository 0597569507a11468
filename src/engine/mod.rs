//! The scheduler shared by `run` and `serve`: jobs in, finished results out.
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
//!   go later is given back and the job finishes with
//!   [`Failure::DeadlineExceeded`](crate::retry::Failure::DeadlineExceeded) and the time the
//!   quota says it could have gone ([`Finished::retry_after`]); a retry due after the deadline
//!   finishes the same way.
//! * **Result routes** ([`respond`]): a job may carry its own responder; its end goes there
//!   instead of to the sink, and a streaming job's 2xx answer is handed over live.
//!
//! The engine must not know files, the job store, Redis or any provider's header names: jobs come
//! in over channels, ends leave through the sink or a responder, a shared quota is only the
//! [`crate::upstream::SharedQuota`] seam, and answers are read through [`crate::provider`].

mod attempt;
mod booking;
pub mod concurrency;
mod dispatch;
pub mod event;
pub mod finished;
pub mod job;
pub mod knee;
mod lanes;
pub mod queue;
mod react;
pub mod respond;
pub mod stats;
pub mod trace;

use crate::quota::Dimension;
use crate::retry::BackoffPolicy;
use crate::upstream::{KeyPool, Upstream};
use concurrency::Concurrency;
pub use event::{AttemptRecord, Decision, Event};
pub use finished::{Finished, ProviderAnswer, Verdict};
pub use job::{Job, Priority};
use lanes::Lanes;
use queue::DelayedQueue;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use respond::Delivery;
use stats::Stats;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// How often the concurrency bound's target rate is recomputed from the quotas.
const TARGET_REFRESH: Duration = Duration::from_millis(100);

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
    /// Whether a key whose first answers are all the same refusal (one 4xx status and one
    /// message) leaves rotation, ending the run with the provider's words instead of failing
    /// every request alike: right for a batch, whose requests share one shape (`run`); wrong
    /// for a gateway, whose clients' mistakes are their own (`serve` keeps only the rule of a
    /// wrong base URL: all 404 without a model named missing).
    pub stop_on_uniform_refusals: bool,
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
    /// Set when the first answer shows a server with no limits to learn: requests sent while
    /// probing are called back (see `attempt` and `react`).
    probes: Notify,
    /// The first answer of a server with no limits, by which probe requests still out are
    /// called back (see `react`).
    call_back: Mutex<Option<react::CallBack>>,
    /// Per key: its first answers (see `react`).
    first_answers: Mutex<std::collections::HashMap<usize, react::FirstAnswers>>,
    /// [`EngineConfig::stop_on_uniform_refusals`].
    stop_on_uniform_refusals: bool,
    /// Every key has had its first answers judged.
    first_answers_done: AtomicBool,
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
    /// What the target rate is computed from.
    target: Mutex<TargetBasis>,
    /// Set by [`Engine::stop_admitting`].
    stopping: AtomicBool,
}

/// What one attempt waited for before it was sent.
#[derive(Debug, Clone, Copy)]
struct Waits {
    quota: Duration,
    paused: bool,
    backoff: Duration,
    /// From the attempt being due to its booking: the in-flight bound and the jobs ahead.
    queued: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the target rate handed to the concurrency bound is computed from.
#[derive(Debug, Default)]
struct TargetBasis {
    /// Smoothed token cost per request.
    mean_tokens: f64,
    /// When the target rate was last computed.
    computed_at: Option<Instant>,
    /// The model it was last computed for, so the dispatcher can recompute it while it waits
    /// for a slot and no answer comes to do so.
    model: Option<String>,
}

impl Engine {
    /// An engine sending through `upstream` with the keys of `pool`.
    pub fn new(config: EngineConfig, pool: Arc<KeyPool>, upstream: Upstream) -> Arc<Self> {
        let rng = match config.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        Arc::new(Engine {
            probes: Notify::new(),
            call_back: Mutex::new(None),
            first_answers: Mutex::default(),
            stop_on_uniform_refusals: config.stop_on_uniform_refusals,
            first_answers_done: AtomicBool::new(false),
            pool,
            upstream,
            concurrency: Concurrency::new(config.concurrency, config.max_concurrency),
            stats: Arc::new(Stats::default()),
            backoff: config.backoff,
            rng: Mutex::new(rng),
            delayed: Default::default(),
            wake: Notify::new(),
            outstanding: AtomicU64::new(0),
            target: Mutex::new(TargetBasis::default()),
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

    /// A job whose caller has gone leaves without a result.
    fn forget(&self, job: Job) {
        drop(job);
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.wake.notify_one();
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
            Verdict::Failed { code, .. } => self.stats.record_failure(code.code()),
        }
        let trace = job.trace.take();
        let finished = Finished {
            waited: job.waited(Instant::now()),
            retry_after,
            last_retry: job.last_retry,
            custom_id: job.custom_id,
            attempts: job.attempts,
            verdict,
        };
        if let Some(trace) = trace {
            let request = trace::Request {
                endpoint: job.endpoint,
                model: &job.model,
                priority: job.priority,
            };
            trace::record_request(*trace, request, &self.upstream, &finished);
        }
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

    fn retry_later(&self, mut job: Job, due: Instant) {
        job.ready_at = due;
        lock(&self.delayed[job.priority.index()]).push(due, job);
        self.wake.notify_one();
    }

    /// Requests per second the quotas of `model` allow over all keys in rotation, if known,
    /// handed to the concurrency bound. Recomputed at most every [`TARGET_REFRESH`].
    fn update_target_rate(&self, job: &Job, now: Instant) {
        let mean = {
            let mut basis = lock(&self.target);
            let tokens = job.estimate.total() as f64;
            basis.mean_tokens = if basis.mean_tokens == 0.0 {
                tokens
            } else {
                basis.mean_tokens * 0.95 + tokens * 0.05
            };
            if basis
                .computed_at
                .is_some_and(|at| now.saturating_duration_since(at) < TARGET_REFRESH)
            {
                return;
            }
            basis.computed_at = Some(now);
            if basis.model.as_deref() != Some(job.model.as_str()) {
                basis.model = Some(job.model.clone());
            }
            basis.mean_tokens
        };
        self.set_target(&job.model, mean, now);
    }

    /// Recompute the target rate for the model it was last computed for, with the quotas'
    /// headroom now: while every slot is taken and no answer comes, the buckets refill, and a
    /// bound that still reads the headroom of the last answer would hold back what they
    /// would admit (a heavy-tailed latency: the first answers are the quick ones, and the
    /// bound's latency is too short until the slow ones come).
    fn refresh_target_rate(&self, now: Instant) {
        let (mean, model) = {
            let basis = lock(&self.target);
            (basis.mean_tokens, basis.model.clone())
        };
        if let Some(model) = model {
            self.set_target(&model, mean, now);
        }
    }

    /// Hand the concurrency bound the quotas' rate and headroom for `model`, whose requests
    /// come to `mean` tokens each on average.
    fn set_target(&self, model: &str, mean: f64, now: Instant) {
        let mut total = 0.0;
        let mut headroom = 0.0;
        let mut known = false;
        let mut metered = false;
        for quota in self.pool.active_quotas(model, now) {
            metered |= quota.is_metered();
            let limits = quota.limits();
            let available = quota.available(now);
            let per_request = [1.0, mean, 0.0, 0.0];
            let mut rate = f64::INFINITY;
            let mut room = f64::INFINITY;
            for d in Dimension::ALL {
                let cost = per_request[d.index()];
                if let (Some((per_minute, _)), true) = (limits[d.index()], cost > 0.0) {
                    rate = rate.min(per_minute as f64 / 60.0 / cost);
                    room = room.min(available[d.index()].unwrap_or(0) as f64 / cost);
                }
            }
            if rate.is_finite() {
                total += rate;
                headroom += room;
                known = true;
            }
        }
        self.concurrency
            .set_target(known.then_some(total), headroom, metered);
    }
}
