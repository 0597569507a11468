//! The shared work queue in Redis: one batch job's requests, consumer group, results and
//! delivery counts, shared by every process working on the job. It must not know the engine
//! nor how a process runs the requests it takes ([`super::worker`] does).
//!
//! # Design
//!
//! * **Load once, idempotently.** Every process reads the input and offers each request to a
//!   small Lua script that adds it to the job's stream only if its `custom_id` is not yet in the
//!   job's id set (`SADD` then `XADD`, atomically; sent in pipelines). A process that crashes
//!   while loading leaves nothing half-done: the next one loads the rest. Once a process has
//!   read the whole input it records the job's size (`total`).
//! * **Consume through one consumer group** (`XREADGROUP`): each entry goes to one process.
//! * **Results keyed by `custom_id`** (`HSETNX`): a request run twice (a reclaimed entry whose
//!   first worker was only slow) keeps its first result, so the export has each id once.
//!   The entry is acknowledged (`XACK`) in the same `MULTI` as its result is stored.
//! * **Reclaim**: entries a process held for longer than `--claim-idle` without acknowledging
//!   them (the process died) are taken over with `XAUTOCLAIM`. Each delivery is counted per
//!   `custom_id`, for `--max-deliveries`.
//! * **Export** walks the stream in order and writes each id's result once.
//!
//! Keys share the hash tag `{paceline:job:NAME}` (valid on Redis Cluster) and carry the layout's
//! version (`…:v1:…`).

use super::connection::{Connection, Link, RedisError, RedisTarget};
use crate::batch::{InputReader, InputSpec};
use redis::AsyncCommands;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The consumer group every process reads through.
const GROUP: &str = "workers";

/// Requests offered to Redis per pipeline while loading.
const LOAD_BATCH: usize = 256;

/// Adds a request to the stream unless its custom_id is already there. Its two keys (the id set
/// and the stream) share the job's hash tag, so on a Redis Cluster they are in one slot and the
/// script runs on that slot's primary; every other command and `MULTI` of a job stays in that
/// slot too (the cluster client routes a pipeline by its first key).
const LOAD_SCRIPT: &str = r"
-- KEYS[1] {paceline:job:NAME}:v1:ids, KEYS[2] {paceline:job:NAME}:v1:stream: one hash slot.
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'e', ARGV[2], 'b', ARGV[3])
  return 1
end
return 0
";

/// How long one queue command may take (a read blocks up to 200 ms; an export page holds
/// 1,000 results).
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// A work-queue error.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis cannot be reached or used at all (URL, TLS, password).
    #[error(transparent)]
    Connect(#[from] RedisError),
    /// Redis failed.
    #[error("redis at {url}: {message}")]
    Redis {
        /// The URL, password removed.
        url: String,
        /// What failed.
        message: String,
        /// Whether the same call may succeed later: Redis unreachable, restarting (`LOADING`),
        /// or a cluster in failover (`CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`, `READONLY`) —
        /// not a refusal such as `NOPERM` or a wrong type.
        transient: bool,
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
    /// Redis holds nothing of a job of this name (a typo, or a job not started yet).
    #[error(
        "redis at {url} has no job named {job:?} (a job exists once `paceline run --job NAME` has \
         started loading it)"
    )]
    UnknownJob {
        /// The URL, password removed.
        url: String,
        /// The name asked for.
        job: String,
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

/// Whether a Redis failure may pass: the connection (lost, timed out), a server loading its
/// AOF, a cluster in failover (a redirect to a primary that is gone, `TRYAGAIN`, `CLUSTERDOWN`,
/// `MASTERDOWN`, `READONLY` from a primary demoted to replica) — also when the cluster's
/// answer came inside an aborted `MULTI`. Not a refusal (`NOPERM`, a wrong type, a script error).
fn transient(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, RetryMethod, ServerErrorKind as K};
    let passes = |kind: Option<K>| {
        matches!(
            kind,
            Some(
                K::Moved
                    | K::Ask
                    | K::TryAgain
                    | K::MasterDown
                    | K::ClusterDown
                    | K::BusyLoading
                    | K::ReadOnly
            )
        )
    };
    if e.kind() == ErrorKind::Server(K::ExecAbort) {
        return e.clone().into_server_errors().is_some_and(|errors| {
            !errors.is_empty() && errors.iter().all(|(_, error)| passes(error.kind()))
        });
    }
    !matches!(e.retry_method(), RetryMethod::NoRetry) || e.kind() == ErrorKind::Server(K::ReadOnly)
}

impl QueueError {
    /// Whether the same call may succeed later (Redis away for a while).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            QueueError::Redis {
                transient: true,
                ..
            }
        )
    }
}

/// A job's queue in Redis.
#[derive(Clone)]
pub struct JobQueue {
    conn: Link,
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
    /// Connect to the queue of job `name` on `target` (one node or a cluster).
    pub async fn connect(target: &RedisTarget, name: &str) -> Result<Self, QueueError> {
        let conn = Connection::open(target, QUEUE_TIMEOUT).await?;
        let name: String = name
            .chars()
            .map(|c| if matches!(c, '{' | '}') { '_' } else { c })
            .collect();
        Ok(JobQueue {
            conn: conn.link(),
            url: conn.url().to_string(),
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
            transient: transient(&e),
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

    /// Fail with [`QueueError::UnknownJob`] when Redis holds nothing of job `job` (neither its
    /// stream, created when a process starts loading it, nor its ids nor its size).
    pub async fn ensure_known(&self, job: &str) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let found: u64 = redis::cmd("EXISTS")
            .arg(self.key("stream"))
            .arg(self.key("ids"))
            .arg(self.key("total"))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.fail(e))?;
        if found == 0 {
            return Err(QueueError::UnknownJob {
                url: self.url.clone(),
                job: job.to_string(),
            });
        }
        Ok(())
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
    pub(super) async fn complete(&self) -> Result<bool, QueueError> {
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
    pub(super) async fn take(
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
    pub(super) async fn delivered(&self, custom_id: &str) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        conn.hincr(self.key("deliveries"), custom_id, 1)
            .await
            .map_err(|e| self.fail(e))
    }

    /// Acknowledge an entry without storing a result (its request has one already).
    pub(super) async fn ack(&self, entry: &str) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        conn.xack::<_, _, _, ()>(self.key("stream"), GROUP, &[entry])
            .await
            .map_err(|e| self.fail(e))
    }

    /// Whether `custom_id` has a result already.
    pub(super) async fn has_result(&self, custom_id: &str) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        conn.hexists(self.key("results"), custom_id)
            .await
            .map_err(|e| self.fail(e))
    }

    /// Store a result (the first one wins) and acknowledge its entry, in one `MULTI`: both or
    /// neither, so a result lost with a Redis crash leaves its entry pending, to be taken again.
    pub(super) async fn store(
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
    /// temporary file renamed into place, created with the mode a plain file gets: 0666 less
    /// the umask, as a run's own output). Returns how many lines were written.
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
        let mut builder = tempfile::Builder::new();
        // A temporary file is private (0600) by default; the export is an output like any other.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let mut file = builder.tempfile_in(dir).map_err(write_err)?;
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

#[cfg(test)]
mod tests {
    use super::transient;
    use redis::ErrorKind;

    #[test]
    fn a_lost_connection_passes_and_a_refusal_does_not() {
        let io = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(transient(&io));
        let refused =
            redis::RedisError::from((ErrorKind::Client, "NOPERM this user has no permissions"));
        assert!(!transient(&refused));
    }
}
