//! The shared work queue: one batch job run by many paceline processes through Redis.
//!
//! # Design
//!
//! `paceline run INPUT --redis URL --job NAME` on N machines:
//!
//! * **Load once, idempotently.** Every process reads the input and offers each request to a
//!   small Lua script that adds it to the job's stream only if its `custom_id` is not yet in the
//!   job's id set (`SADD` then `XADD`, atomically; sent in pipelines). A process that crashes
//!   while loading leaves nothing half-done: the next one loads the rest. Once a process has
//!   read the whole input it records the job's size (`total`).
//! * **Consume through one consumer group** (`XREADGROUP`): each entry goes to one process,
//!   which runs it through its own engine (pacing on the shared quota). A window bounds how
//!   many entries a process holds at once.
//! * **Results keyed by `custom_id`** (`HSETNX`): a request run twice (a reclaimed entry whose
//!   first worker was only slow) keeps its first result, so the export has each id once.
//!   The entry is acknowledged (`XACK`) after its result is stored.
//! * **Reclaim**: entries a process held for longer than `--claim-idle` without acknowledging
//!   them (the process died) are taken over with `XAUTOCLAIM`. Each delivery is counted per
//!   `custom_id`; past `--max-deliveries` the request becomes a final failure
//!   (`max_deliveries_exceeded`) instead of being sent again.
//! * **The end**: a process stops when `total` is known and there are as many results; with
//!   `-o` it then exports, so the last process to finish leaves the complete file. Ctrl-C or
//!   SIGTERM stops one process: it takes no more entries and stores what finishes within the
//!   stop timeout; what it still held is reclaimed by the others.
//!
//! Keys share the hash tag `{paceline:job:NAME}` (valid on Redis Cluster) and carry the layout's
//! version (`…:v1:…`).

use crate::batch::{InputReader, InputSpec, OutputRecord};
use crate::engine::{Engine, Event, Finished, Job, Verdict};
use crate::quota::redis::redact;
use crate::runner::signals::{Interrupt, Signals};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// The consumer group every process reads through.
const GROUP: &str = "workers";

/// Wait before Redis is tried again by a shared job.
const REDIS_RETRY: Duration = Duration::from_millis(500);

/// Tries to store one result before the process gives up (about two minutes).
const STORE_TRIES: u32 = 240;

/// Requests offered to Redis per pipeline while loading.
const LOAD_BATCH: usize = 256;

/// Adds a request to the stream unless its custom_id is already there.
const LOAD_SCRIPT: &str = r"
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'e', ARGV[2], 'b', ARGV[3])
  return 1
end
return 0
";

/// A work-queue error.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis failed.
    #[error("redis at {url}: {message}")]
    Redis {
        /// The URL, password removed.
        url: String,
        /// What failed.
        message: String,
    },
    /// The input cannot be read.
    #[error(transparent)]
    Input(#[from] crate::batch::InputError),
    /// A line of the input is invalid.
    #[error("{path}: line {line}: {message}")]
    Line {
        /// The input.
        path: PathBuf,
        /// The line.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The export file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A job's queue in Redis.
#[derive(Clone)]
pub struct JobQueue {
    conn: ConnectionManager,
    url: String,
    prefix: String,
    load: Arc<redis::Script>,
}

/// A job's progress as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueStatus {
    /// The job's name.
    pub job: String,
    /// Requests loaded so far.
    pub loaded: u64,
    /// The job's size, once a process has read the whole input.
    pub total: Option<u64>,
    /// Requests with a result.
    pub finished: u64,
    /// Of those, final failures.
    pub failed: u64,
    /// Entries delivered to a process and not yet acknowledged.
    pub in_progress: u64,
}

impl JobQueue {
    /// Connect to the queue of job `name`.
    pub async fn connect(url: &str, name: &str) -> Result<Self, QueueError> {
        let shown = redact(url);
        let fail = |e: redis::RedisError| QueueError::Redis {
            url: shown.clone(),
            message: e.to_string(),
        };
        let client = redis::Client::open(url).map_err(fail)?;
        let conn = ConnectionManager::new(client).await.map_err(fail)?;
        let name: String = name
            .chars()
            .map(|c| if matches!(c, '{' | '}') { '_' } else { c })
            .collect();
        Ok(JobQueue {
            conn,
            url: shown.clone(),
            prefix: format!("{{paceline:job:{name}}}:v1"),
            load: Arc::new(redis::Script::new(LOAD_SCRIPT)),
        })
    }

    fn key(&self, part: &str) -> String {
        format!("{}:{part}", self.prefix)
    }

    fn fail(&self, e: redis::RedisError) -> QueueError {
        QueueError::Redis {
            url: self.url.clone(),
            message: e.to_string(),
        }
    }

    /// Offer every request of the input (those already loaded are skipped), create the
    /// consumer group, and record the job's size. Returns how many this call added.
    pub async fn load(&self, spec: &InputSpec) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.key("stream"))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(self.fail(e));
        }
        self.load
            .prepare_invoke()
            .load_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        let mut reader = InputReader::open(spec)?;
        let mut added = 0;
        let mut batch = Vec::with_capacity(LOAD_BATCH);
        loop {
            let item = reader.next();
            let ended = item.is_none();
            match item {
                Some(Ok(request)) => batch.push(request),
                Some(Err(error)) => {
                    return Err(QueueError::Line {
                        path: spec.path.clone(),
                        line: error.line,
                        message: error.to_string(),
                    });
                }
                None => {}
            }
            if batch.len() == LOAD_BATCH || (ended && !batch.is_empty()) {
                let mut pipe = redis::pipe();
                for request in batch.drain(..) {
                    let mut invocation = self.load.key(self.key("ids"));
                    invocation
                        .key(self.key("stream"))
                        .arg(&request.custom_id)
                        .arg(request.endpoint.path())
                        .arg(request.body.to_string());
                    pipe.invoke_script(&invocation);
                }
                let results: Vec<u64> = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.fail(e))?;
                added += results.iter().sum::<u64>();
            }
            if ended {
                break;
            }
        }
        reader.finish()?;
        let total: u64 = conn
            .scard(self.key("ids"))
            .await
            .map_err(|e| self.fail(e))?;
        let _: () = conn
            .set(self.key("total"), total)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(added)
    }

    /// The job's progress.
    pub async fn status(&self, job: &str) -> Result<QueueStatus, QueueError> {
        let mut conn = self.conn.clone();
        let (loaded, total, finished, failed): (u64, Option<u64>, u64, u64) = redis::pipe()
            .scard(self.key("ids"))
            .get(self.key("total"))
            .hlen(self.key("results"))
            .scard(self.key("failed"))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        let pending: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
            .arg(self.key("stream"))
            .arg(GROUP)
            .query_async(&mut conn)
            .await;
        let in_progress = match pending {
            Ok(redis::Value::Array(items)) => items
                .first()
                .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
                .unwrap_or(0),
            _ => 0,
        };
        Ok(QueueStatus {
            job: job.to_string(),
            loaded,
            total,
            finished,
            failed,
            in_progress,
        })
    }

    /// Whether every request of the job has a result.
    async fn complete(&self) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let (total, finished): (Option<u64>, u64) = redis::pipe()
            .get(self.key("total"))
            .hlen(self.key("results"))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(total.is_some_and(|t| finished >= t))
    }

    /// Entries for `consumer`: first those idle past `claim_idle` in a dead process, then new
    /// ones (waiting up to `block` for them).
    async fn take(
        &self,
        consumer: &str,
        count: usize,
        claim_idle: Duration,
        block: Duration,
    ) -> Result<Vec<StreamId>, QueueError> {
        let mut conn = self.conn.clone();
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.key("stream"))
            .arg(GROUP)
            .arg(consumer)
            .arg(u64::try_from(claim_idle.as_millis()).unwrap_or(u64::MAX))
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        if !claimed.claimed.is_empty() {
            return Ok(claimed.claimed);
        }
        let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(1000))
            .arg("STREAMS")
            .arg(self.key("stream"))
            .arg(">")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(read
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    /// Count one more delivery of `custom_id`; returns the count.
    async fn delivered(&self, custom_id: &str) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        conn.hincr(self.key("deliveries"), custom_id, 1)
            .await
            .map_err(|e| self.fail(e))
    }

    /// Whether `custom_id` has a result already.
    async fn has_result(&self, custom_id: &str) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        conn.hexists(self.key("results"), custom_id)
            .await
            .map_err(|e| self.fail(e))
    }

    /// [`JobQueue::store_once`], tried again while Redis is unreachable: a result is never
    /// dropped for a passing outage.
    async fn store(
        &self,
        entry: &str,
        custom_id: &str,
        line: &str,
        failed: bool,
    ) -> Result<(), QueueError> {
        let mut tries = 0;
        loop {
            match self.store_once(entry, custom_id, line, failed).await {
                Ok(()) => return Ok(()),
                Err(e) if tries < STORE_TRIES => {
                    tries += 1;
                    tracing::warn!(error = %e, custom_id, "Redis unreachable: storing the result again shortly");
                    tokio::time::sleep(REDIS_RETRY).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Store a result (the first one wins) and acknowledge its entry.
    async fn store_once(
        &self,
        entry: &str,
        custom_id: &str,
        line: &str,
        failed: bool,
    ) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_nx(self.key("results"), custom_id, line)
            .ignore();
        if failed {
            pipe.sadd(self.key("failed"), custom_id).ignore();
        }
        pipe.xack(self.key("stream"), GROUP, &[entry]).ignore();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.fail(e))
    }

    /// Write every result, in input order, each `custom_id` once, to `path` (through a
    /// temporary file renamed into place). Returns how many lines were written.
    pub async fn export(&self, path: &Path) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let write_err = |source| QueueError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(write_err)?;
        let mut written = 0;
        let mut start = "-".to_string();
        loop {
            let page: redis::streams::StreamRangeReply = conn
                .xrange_count(self.key("stream"), &start, "+", 1000)
                .await
                .map_err(|e| self.fail(e))?;
            let ids: Vec<String> = page
                .ids
                .iter()
                .filter(|e| e.id != start.trim_start_matches('('))
                .filter_map(|e| e.get::<String>("id"))
                .collect();
            let Some(last) = page.ids.last() else {
                break;
            };
            let next = format!("({}", last.id);
            if !ids.is_empty() {
                let lines: Vec<Option<String>> = redis::cmd("HMGET")
                    .arg(self.key("results"))
                    .arg(&ids)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.fail(e))?;
                for line in lines.into_iter().flatten() {
                    writeln!(file, "{line}").map_err(write_err)?;
                    written += 1;
                }
            }
            if page.ids.len() < 1000 {
                break;
            }
            start = next;
        }
        file.flush().map_err(write_err)?;
        file.persist(path).map_err(|e| write_err(e.error))?;
        Ok(written)
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
    held: &mut HashMap<String, String>,
    report: &mut WorkerReport,
    finished: Finished,
) -> Result<(), QueueError> {
    let (custom_id, line, failed) = output_line(finished);
    if let Some(entry) = held.remove(&custom_id) {
        queue.store(&entry, &custom_id, &line, failed).await?;
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
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
                        store_finished(&queue, &mut held, &mut report, finished).await?;
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
                if let Err(e) = store_finished(&queue, &mut held, &mut report, finished).await {
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
                    if let Err(e) = store_finished(&queue, &mut held, &mut report, finished).await {
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
        let entries = match queue.take(&consumer, room, plan.claim_idle, block).await {
            Ok(entries) => entries,
            Err(e) => {
                // The queue lives in Redis: wait for it to come back (the connection manager
                // reconnects); the requests held meanwhile finish and are stored afterwards.
                tracing::warn!(error = %e, "Redis unreachable: the shared job waits for it");
                tokio::time::sleep(REDIS_RETRY).await;
                continue;
            }
        };
        if entries.is_empty() {
            if held.is_empty() {
                match queue.complete().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "Redis unreachable: the shared job waits for it");
                        tokio::time::sleep(REDIS_RETRY).await;
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
                if queue.has_result(&custom_id).await? {
                    return Ok::<_, QueueError>(None);
                }
                Ok(Some(queue.delivered(&custom_id).await?))
            }
            .await;
            let deliveries = match outcome {
                Ok(Some(n)) => n,
                Ok(None) => {
                    let mut conn = queue.conn.clone();
                    let acked: redis::RedisResult<()> =
                        conn.xack(queue.key("stream"), GROUP, &[&entry.id]).await;
                    if let Err(e) = acked {
                        error = Some(queue.fail(e));
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
                if let Err(e) = queue.store(&entry.id, &custom_id, &line, true).await {
                    error = Some(e);
                    break 'outer;
                }
                report.finished += 1;
                report.failed += 1;
                continue;
            }
            let (Some(endpoint), Ok(body)) = (
                crate::batch::Endpoint::from_path(&path),
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
    if report.interrupted.is_some() {
        let _ = tokio::time::timeout(Duration::from_secs(1), running).await;
        return Ok(report);
    }
    let _ = running.await;
    if let Some(e) = error {
        return Err(e);
    }
    if let Some(path) = &plan.output {
        report.exported = Some(queue.export(path).await?);
    }
    Ok(report)
}
