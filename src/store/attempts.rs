//! Every attempt of every request, as the engine reported it: the request's retry history.
//!
//! It records the engine's [`AttemptRecord`]s as given and must not know how attempts are made or
//! classified.

use super::{Store, StoreError};
use crate::engine::AttemptRecord;
use rusqlite::{Transaction, params};
use serde::Serialize;

/// SQL that records one attempt (prepared once per transaction, cached by the connection).
const INSERT: &str = "INSERT OR REPLACE INTO attempts
    (request_id, run, attempt, ended_at, key, status, latency_ms, waited_quota_ms, paused,
     waited_backoff_ms, cause, decision, retry_in_ms, tokens, batch)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

/// Record `attempt` of request row `request_id` in run `run`; it ended when it was sent plus
/// its latency (ms since the epoch).
pub fn insert(
    tx: &Transaction<'_>,
    request_id: i64,
    run: i64,
    attempt: &AttemptRecord,
) -> rusqlite::Result<()> {
    let ms = |d: std::time::Duration| d.as_millis() as i64;
    let sent_at = attempt
        .sent_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(ms)
        .unwrap_or(0);
    let ended_at = sent_at + ms(attempt.latency);
    tx.prepare_cached(INSERT)?.execute(params![
        request_id,
        run,
        attempt.attempt,
        ended_at,
        attempt.key,
        attempt.status,
        ms(attempt.latency),
        ms(attempt.waited_quota),
        attempt.paused,
        ms(attempt.waited_backoff),
        attempt.cause,
        attempt.decision.as_str(),
        ms(attempt.retry_in),
        attempt.tokens as i64,
        attempt.via_batch,
    ])?;
    Ok(())
}

/// The SQL condition that keeps a run's live attempts (`a` the attempts table): states older
/// than the `batch` column (schema 5) hold live attempts only.
pub fn live_only(store: &Store) -> Result<&'static str, StoreError> {
    let has: i64 = store
        .conn()
        .query_row(
            "SELECT count(*) FROM pragma_table_info('attempts') WHERE name = 'batch'",
            [],
            |row| row.get(0),
        )
        .map_err(|e| store.err("read", e))?;
    Ok(if has > 0 { "a.batch = 0" } else { "1" })
}

/// One stored attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredAttempt {
    /// The run of `paceline run` it belongs to (1 for the first).
    pub run: i64,
    /// Attempt number within the request's current try.
    pub attempt: u32,
    /// When it was sent (ms since the epoch; `ended_at - latency_ms`).
    pub started_at: i64,
    /// When its outcome was recorded (ms since the epoch).
    pub ended_at: i64,
    /// Key fingerprint.
    pub key: String,
    /// HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Time from sending to the whole answer.
    pub latency_ms: u64,
    /// Time waited for the quota before sending.
    pub waited_quota_ms: u64,
    /// Whether a 429 pause was part of that wait.
    pub paused: bool,
    /// Backoff imposed by the previous attempt.
    pub waited_backoff_ms: u64,
    /// Retry cause or final error code.
    pub cause: Option<String>,
    /// What was decided (`succeeded`, `retry`, `retry_other_key`, `failed`, `give_up`).
    pub decision: String,
    /// Delay before the next attempt, for `retry`.
    pub retry_in_ms: u64,
}

/// Every attempt of request row `request_id`, oldest first.
pub fn for_request(store: &Store, request_id: i64) -> Result<Vec<StoredAttempt>, StoreError> {
    let mut stmt = store
        .conn()
        .prepare_cached(
            "SELECT run, attempt, ended_at, key, status, latency_ms, waited_quota_ms, paused,
                    waited_backoff_ms, cause, decision, retry_in_ms
             FROM attempts WHERE request_id = ?1 ORDER BY run, attempt",
        )
        .map_err(|e| store.err("read", e))?;
    let rows = stmt
        .query_map(params![request_id], |row| {
            let latency_ms = row.get::<_, i64>(5)?;
            let ended_at = row.get::<_, i64>(2)?;
            Ok(StoredAttempt {
                run: row.get(0)?,
                attempt: row.get::<_, i64>(1)? as u32,
                started_at: ended_at - latency_ms,
                ended_at,
                key: row.get(3)?,
                status: row.get::<_, Option<i64>>(4)?.map(|s| s as u16),
                latency_ms: latency_ms as u64,
                waited_quota_ms: row.get::<_, i64>(6)? as u64,
                paused: row.get(7)?,
                waited_backoff_ms: row.get::<_, i64>(8)? as u64,
                cause: row.get(9)?,
                decision: row.get(10)?,
                retry_in_ms: row.get::<_, i64>(11)? as u64,
            })
        })
        .map_err(|e| store.err("read", e))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| store.err("read", e))
}
