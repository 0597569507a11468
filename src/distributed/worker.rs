//! The distributed worker: one process's share of a batch job run by many paceline processes
//! through the Redis work queue ([`super::queue`]). It takes entries, runs them through its own
//! engine (pacing on the shared quota) and stores their results. It must not know how the
//! queue is kept in Redis.
//!
//! # Design
//!
//! `paceline run INPUT --redis URL --job NAME` on N machines: every process loads the input
//! (once for all, idempotently), then takes entries through the job's consumer group; a window
//! bounds how many entries a process holds at once. Past `--max-deliveries` a request becomes a
//! final failure (`max_deliveries_exceeded`) instead of being sent again.
//!
//! **The end**: a process stops when `total` is known and there are as many results; with `-o`
//! it then exports, so the last process to finish leaves the complete file. Ctrl-C or SIGTERM
//! stops one process: it takes no more entries and stores what finishes within the stop
//! timeout; what it still held is reclaimed by the others.
//!
//! **Redis away** (a restart, a cluster's failover): every queue call goes through
//! `Patience`: a failure that may pass (connection lost, `LOADING`, `CLUSTERDOWN`, ...) is
//! tried again after a backoff with full jitter (100 ms doubling to 2 s, so N processes do not
//! come back in step), for as long as it takes, logged once when Redis goes and once when it is
//! back; the requests held meanwhile finish and are stored once Redis answers. Only Ctrl-C or
//! SIGTERM ends the wait. With AOF on (or a replica), what Redis held comes back; what a crash
//! lost of its last second is a suffix of what was written (AOF and replication keep order):
//! results stored with their acknowledgement in one `MULTI`, so a lost result leaves its entry
//! pending, reclaimed after `--claim-idle` and run again; the export still has it once.

use super::connection::{MAX_BACKOFF, MIN_BACKOFF};
use super::queue::{JobQueue, QueueError};
use crate::batch::{InputSpec, OutputRecord};
use crate::engine::{Engine, Event, Finished, Job, Verdict};
use crate::retry::BackoffPolicy;
use crate::runner::signals::{Interrupt, Signals};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};

/// The shared job's Redis calls, tried again while Redis is away (see the module
/// documentation); a stop signal ends the wait.
struct Patience {
    stop: watch::Receiver<Option<Interrupt>>,
    backoff: BackoffPolicy,
    away: bool,
}

impl Patience {
    fn new(stop: watch::Receiver<Option<Interrupt>>) -> Self {
        Patience {
            stop,
            backoff: BackoffPolicy {
                base: MIN_BACKOFF,
                cap: MAX_BACKOFF,
                max_attempts: u32::MAX,
            },
            away: false,
        }
    }

    /// `op` until it succeeds, fails for good, or a stop signal comes while Redis is away.
    async fn call<T, F, Fut>(&mut self, mut op: F) -> Result<T, QueueError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, QueueError>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(value) => {
                    if self.away {
                        self.away = false;
                        tracing::warn!("Redis reachable again: the shared job goes on");
                    }
                    return Ok(value);
                }
                Err(e) if e.is_transient() && self.stop.borrow().is_none() => {
                    if !self.away {
                        self.away = true;
                        tracing::warn!(error = %e, "Redis unreachable: the shared job waits for it, trying again with backoff");
                    }
                    attempt += 1;
                    let delay = self
                        .backoff
                        .delay(attempt, None, &mut rand::rng())
                        .max(MIN_BACKOFF / 2);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = self.stop.changed() => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// How one process works on a shared job.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    /// The input (every process offers it; it is loaded once).
    pub input: InputSpec,
    /// The job's name.
    pub job: String,
    /// Entries held by a process that does not acknowledge them for this long are reclaimed.
    pub claim_idle: Duration,
    /// Deliveries of one request before it fails with `max_deliveries_exceeded`.
    pub max_deliveries: u64,
    /// Entries this process holds at once.
    pub window: usize,
    /// Output cap assumed for requests that set none.
    pub default_max_tokens: u64,
    /// Export here once the job is complete.
    pub output: Option<PathBuf>,
    /// After Ctrl-C or SIGTERM, how long requests in flight may take to finish.
    pub stop_timeout: Duration,
}

/// What one process did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Requests this process added to the queue.
    pub loaded: u64,
    /// Results this process stored.
    pub finished: u64,
    /// Of those, final failures.
    pub failed: u64,
    /// Lines exported, if it exported.
    pub exported: Option<u64>,
    /// The signal that stopped this process before the job was complete, if one did.
    pub interrupted: Option<Interrupt>,
}

/// The output line of a finished request.
fn output_line(finished: Finished) -> (String, String, bool) {
    let failed = matches!(finished.verdict, Verdict::Failed { .. });
    let line = OutputRecord::line_from_verdict(&finished.custom_id, &finished.verdict)
        .unwrap_or_else(|e| internal_error_line(&finished.custom_id, &e));
    (finished.custom_id, line, failed)
}

/// A record as its output line (a record always serializes; the fallback keeps the id).
fn record_line(record: &OutputRecord) -> String {
    serde_json::to_string(record).unwrap_or_else(|e| internal_error_line(&record.custom_id, &e))
}

/// The line standing in for a record that could not be written.
fn internal_error_line(custom_id: &str, err: &serde_json::Error) -> String {
    serde_json::json!({
        "custom_id": custom_id,
        "response": null,
        "error": {"code": "internal", "message": err.to_string()},
    })
    .to_string()
}

/// Store a finished request's result, if this process holds its entry, and count it.
async fn store_finished(
    queue: &JobQueue,
    patience: &mut Patience,
    held: &mut HashMap<String, String>,
    report: &mut WorkerReport,
    finished: Finished,
) -> Result<(), QueueError> {
    let (custom_id, line, failed) = output_line(finished);
    if let Some(entry) = held.remove(&custom_id) {
        patience
            .call(|| queue.store(&entry, &custom_id, &line, failed))
            .await?;
        report.finished += 1;
        report.failed += u64::from(failed);
    }
    Ok(())
}

/// Work on the job until every request has a result: load the input, take entries, run them
/// through `engine`, store results; export at the end if asked.
pub async fn work(
    queue: JobQueue,
    engine: Arc<Engine>,
    plan: WorkerPlan,
) -> Result<WorkerReport, QueueError> {
    let mut report = WorkerReport {
        loaded: queue.load(&plan.input).await?,
        ..WorkerReport::default()
    };
    // The progress display: what this process finished, against that plus what the whole job
    // still lacks (read from Redis every second), so it ends full when the job is complete.
    let stats = engine.stats();
    let watcher = {
        let (queue, stats, job) = (queue.clone(), Arc::clone(&stats), plan.job.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(status) = queue.status(&job).await {
                    let left = status
                        .total
                        .unwrap_or(status.loaded)
                        .saturating_sub(status.finished);
                    stats
                        .total
                        .store(stats.finished() + left, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let consumer = format!(
        "{}-{}-{:08x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
        std::process::id(),
        rand::random::<u32>()
    );
    // Ctrl-C / SIGTERM: take no more entries, let those held finish (up to the stop timeout)
    // and store their results; entries still unfinished are reclaimed by the other processes.
    let (stop_tx, stop_rx) = watch::channel(None);
    let mut patience = Patience::new(stop_rx.clone());
    let listener = match Signals::listen() {
        Ok(mut signals) => Some(tokio::spawn(async move {
            let _ = stop_tx.send(Some(signals.recv().await));
        })),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C / SIGTERM");
            None
        }
    };
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(plan.window.max(1));
    let (sink_tx, mut sink_rx) = mpsc::channel::<Event>(1024);
    let running = tokio::spawn(Arc::clone(&engine).run(jobs_rx, sink_tx));
    let window = Arc::new(Semaphore::new(plan.window.max(1)));
    let mut held: HashMap<String, String> = HashMap::new();
    let mut error = None;
    'outer: loop {
        let signal = *stop_rx.borrow();
        if let Some(signal) = signal {
            report.interrupted = Some(signal);
            engine.stop_admitting();
            let deadline = tokio::time::Instant::now() + plan.stop_timeout;
            while !held.is_empty() {
                match tokio::time::timeout_at(deadline, sink_rx.recv()).await {
                    Ok(Some(Event::Finished(finished))) => {
                        // Stopping: Redis is not waited for; an entry whose result cannot be
                        // stored stays pending and is taken over by the others.
                        if let Err(e) =
                            store_finished(&queue, &mut patience, &mut held, &mut report, finished)
                                .await
                        {
                            tracing::warn!(error = %e, "stopping without storing every result");
                            break;
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            break;
        }
        // Store what finished.
        while let Ok(event) = sink_rx.try_recv() {
            if let Event::Finished(finished) = event {
                if let Err(e) =
                    store_finished(&queue, &mut patience, &mut held, &mut report, finished).await
                {
                    error = Some(e);
                    break 'outer;
                }
                window.add_permits(1);
            }
        }
        let room = window.available_permits();
        if room == 0 {
            match sink_rx.recv().await {
                Some(Event::Finished(finished)) => {
                    if let Err(e) =
                        store_finished(&queue, &mut patience, &mut held, &mut report, finished)
                            .await
                    {
                        error = Some(e);
                        break 'outer;
                    }
                    window.add_permits(1);
                }
                Some(_) => {}
                None => break,
            }
            continue;
        }
        let block = if held.is_empty() {
            Duration::from_millis(200)
        } else {
            Duration::from_millis(20)
        };
        // While Redis is away the requests held meanwhile finish; their results are stored at
        // the next pass, once it answers.
        let entries = match patience
            .call(|| queue.take(&consumer, room, plan.claim_idle, block))
            .await
        {
            Ok(entries) => entries,
            Err(e) => {
                error = Some(e);
                break 'outer;
            }
        };
        if entries.is_empty() {
            if held.is_empty() {
                match patience.call(|| queue.complete()).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        error = Some(e);
                        break 'outer;
                    }
                }
            }
            continue;
        }
        for entry in entries {
            let (Some(custom_id), Some(path), Some(body)) = (
                entry.get::<String>("id"),
                entry.get::<String>("e"),
                entry.get::<String>("b"),
            ) else {
                continue;
            };
            if held.contains_key(&custom_id) {
                continue;
            }
            let outcome = async {
                if patience.call(|| queue.has_result(&custom_id)).await? {
                    return Ok::<_, QueueError>(None);
                }
                Ok(Some(patience.call(|| queue.delivered(&custom_id)).await?))
            }
            .await;
            let deliveries = match outcome {
                Ok(Some(n)) => n,
                Ok(None) => {
                    if let Err(e) = patience.call(|| queue.ack(&entry.id)).await {
                        error = Some(e);
                        break 'outer;
                    }
                    continue;
                }
                Err(e) => {
                    error = Some(e);
                    break 'outer;
                }
            };
            if deliveries > plan.max_deliveries {
                let record = OutputRecord::failure(
                    custom_id.clone(),
                    None,
                    "max_deliveries_exceeded",
                    format!(
                        "delivered {} times without a result (workers died or stalled on it)",
                        deliveries - 1
                    ),
                );
                let line = record_line(&record);
                if let Err(e) = patience
                    .call(|| queue.store(&entry.id, &custom_id, &line, true))
                    .await
                {
                    error = Some(e);
                    break 'outer;
                }
                report.finished += 1;
                report.failed += 1;
                continue;
            }
            let (Some(endpoint), Ok(body)) = (
                crate::api::Endpoint::from_path(&path),
                serde_json::from_str::<serde_json::Value>(&body),
            ) else {
                continue;
            };
            let job = Job::new(custom_id.clone(), endpoint, &body, plan.default_max_tokens);
            if let Ok(place) = window.try_acquire() {
                place.forget();
            }
            held.insert(custom_id, entry.id);
            if jobs_tx.send(job).await.is_err() {
                break 'outer;
            }
        }
    }
    watcher.abort();
    if let Some(listener) = listener {
        listener.abort();
    }
    drop(jobs_tx);
    engine.stop_admitting();
    // A stop signal that ended a wait for Redis is a stop, not a failure.
    if report.interrupted.is_none() && error.as_ref().is_some_and(QueueError::is_transient) {
        report.interrupted = *stop_rx.borrow();
    }
    if report.interrupted.is_some() {
        let _ = tokio::time::timeout(Duration::from_secs(1), running).await;
        return Ok(report);
    }
    let _ = running.await;
    if let Some(e) = error {
        return Err(e);
    }
    if let Some(path) = &plan.output {
        report.exported = Some(patience.call(|| queue.export(path)).await?);
    }
    Ok(report)
}
