//! The shards of a job sent through the providers' Batch APIs (`run --via batch`): each one's
//! model and endpoint, size, our state (`planned` → `creating` → `submitted` → `ended`), the
//! provider's file and batch ids and its last status, and which requests it holds.
//!
//! A request belongs to at most one *active* shard; a request a shard returned without a result
//! (a retryable failure, an expired or cancelled request, a refused batch) is released and goes
//! into a later shard, so its row count here is the number of batches it was in. A shard is
//! `creating` from just before the provider is asked to create its batch until its id is
//! recorded: a run that finds one so must look the provider's batches up before creating it.
//!
//! It owns these two tables and must not know the provider, HTTP or how shards are cut.

use super::state::RequestState;
use super::{Store, StoreError, now_ms};
use rusqlite::{OptionalExtension, params};

/// Our side of a shard's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardState {
    /// Cut and recorded; not yet given to the provider (or given back after a refusal).
    Planned,
    /// Its batch is being created: it may exist at the provider without its id recorded here.
    Creating,
    /// The provider holds it as the batch `provider_id`.
    Submitted,
    /// Its batch has ended and its results are collected.
    Ended,
}

impl ShardState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardState::Planned => "planned",
            ShardState::Creating => "creating",
            ShardState::Submitted => "submitted",
            ShardState::Ended => "ended",
        }
    }

    fn parse(s: &str) -> ShardState {
        match s {
            "creating" => ShardState::Creating,
            "submitted" => ShardState::Submitted,
            "ended" => ShardState::Ended,
            _ => ShardState::Planned,
        }
    }
}

/// One shard as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    /// Its number in the job (the `shard` of the batch's metadata).
    pub id: i64,
    /// The one model of its requests.
    pub model: String,
    /// The one endpoint of its requests (a URL path).
    pub endpoint: String,
    /// Requests it was cut with.
    pub requests: u64,
    /// Their enqueued tokens (prompt + output cap).
    pub tokens: u64,
    /// Our state.
    pub state: ShardState,
    /// The uploaded input file (OpenAI), once uploaded.
    pub file_id: Option<String>,
    /// The provider's batch id, once known.
    pub provider_id: Option<String>,
    /// The provider's last status (`in_progress`, `ended`, ...).
    pub status: Option<String>,
    /// When it went `creating` (ms since the epoch).
    pub creating_at: Option<i64>,
    /// Requests the provider reported completed, at the last poll.
    pub completed: u64,
    /// Requests the provider reported failed, at the last poll.
    pub failed: u64,
}

/// A request of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its row id.
    pub id: i64,
    /// Its `custom_id`.
    pub custom_id: String,
    /// Its input line.
    pub line: u64,
    /// Whether it still has no result.
    pub pending: bool,
    /// How many shards it has been in (this one included).
    pub tries: u32,
}

/// A pending request in no active shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unassigned {
    /// Its row id.
    pub id: i64,
    /// Its input line.
    pub line: u64,
    /// Its `custom_id`.
    pub custom_id: String,
    /// Shards it was in before.
    pub tries: u32,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Shard> {
    Ok(Shard {
        id: r.get(0)?,
        model: r.get(1)?,
        endpoint: r.get(2)?,
        requests: r.get::<_, i64>(3)? as u64,
        tokens: r.get::<_, i64>(4)? as u64,
        state: ShardState::parse(&r.get::<_, String>(5)?),
        file_id: r.get(6)?,
        provider_id: r.get(7)?,
        status: r.get(8)?,
        creating_at: r.get(9)?,
        completed: r.get::<_, i64>(10)? as u64,
        failed: r.get::<_, i64>(11)? as u64,
    })
}

const COLUMNS: &str = "id, model, endpoint, requests, tokens, state, file_id, provider_id, \
                       status, creating_at, completed, failed";

/// Every shard of the job, in order.
pub fn all(store: &Store) -> Result<Vec<Shard>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM shards ORDER BY id");
    let mut stmt = store
        .conn()
        .prepare(&sql)
        .map_err(|e| store.err("read", e))?;
    let rows = stmt.query_map([], row).map_err(|e| store.err("read", e))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| store.err("read", e))
}

/// Shard `id`.
pub fn get(store: &Store, id: i64) -> Result<Option<Shard>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM shards WHERE id = ?1");
    store
        .conn()
        .query_row(&sql, params![id], row)
        .optional()
        .map_err(|e| store.err("read", e))
}

/// Record a new shard of `requests` (row ids) in one transaction; its number.
pub fn plan(
    store: &mut Store,
    model: &str,
    endpoint: &str,
    tokens: u64,
    requests: &[i64],
) -> Result<i64, StoreError> {
    let path = store.path().to_path_buf();
    let err = |source| StoreError::Sql {
        path: path.clone(),
        action: "write",
        source,
    };
    let tx = store
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    tx.execute(
        "INSERT INTO shards (model, endpoint, requests, tokens, state, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'planned', ?5)",
        params![
            model,
            endpoint,
            requests.len() as i64,
            tokens as i64,
            now_ms()
        ],
    )
    .map_err(err)?;
    let shard = tx.last_insert_rowid();
    {
        let mut insert = tx
            .prepare("INSERT INTO shard_requests (shard, request_id) VALUES (?1, ?2)")
            .map_err(err)?;
        for id in requests {
            insert.execute(params![shard, id]).map_err(err)?;
        }
    }
    tx.commit().map_err(err)?;
    Ok(shard)
}

fn update(store: &Store, sql: &str, args: impl rusqlite::Params) -> Result<(), StoreError> {
    store
        .conn()
        .execute(sql, args)
        .map(|_| ())
        .map_err(|e| store.err("write", e))
}

/// The shard's input file is uploaded as `file_id`.
pub fn set_file(store: &Store, shard: i64, file_id: &str) -> Result<(), StoreError> {
    update(
        store,
        "UPDATE shards SET file_id = ?2, updated_at = ?3 WHERE id = ?1",
        params![shard, file_id, now_ms()],
    )
}

/// The provider is about to be asked to create the shard's batch.
pub fn set_creating(store: &Store, shard: i64) -> Result<(), StoreError> {
    let now = now_ms();
    update(
        store,
        "UPDATE shards SET state = 'creating', creating_at = ?2, updated_at = ?2 WHERE id = ?1",
        params![shard, now],
    )
}

/// The provider holds the shard as batch `provider_id`, last seen with `status`.
pub fn set_submitted(
    store: &Store,
    shard: i64,
    provider_id: &str,
    status: &str,
) -> Result<(), StoreError> {
    update(
        store,
        "UPDATE shards SET state = 'submitted', provider_id = ?2, status = ?3, updated_at = ?4
         WHERE id = ?1",
        params![shard, provider_id, status, now_ms()],
    )
}

/// What the last poll said.
pub fn set_status(
    store: &Store,
    shard: i64,
    status: &str,
    completed: u64,
    failed: u64,
) -> Result<(), StoreError> {
    update(
        store,
        "UPDATE shards SET status = ?2, completed = ?3, failed = ?4, updated_at = ?5
         WHERE id = ?1",
        params![shard, status, completed as i64, failed as i64, now_ms()],
    )
}

/// The provider refused the shard's batch (it never ran): it is planned again, to be created
/// anew when there is room.
pub fn refused(store: &Store, shard: i64, status: &str) -> Result<(), StoreError> {
    update(
        store,
        "UPDATE shards SET state = 'planned', provider_id = NULL, status = ?2, creating_at = NULL,
                           updated_at = ?3
         WHERE id = ?1",
        params![shard, status, now_ms()],
    )
}

/// `--via auto` hands the rest of the job to live requests: the shards never given to the
/// provider (`planned`) are forgotten with their requests' rows, so a request's row count
/// stays the number of batches that held it.
pub fn discard_planned(store: &mut Store) -> Result<u64, StoreError> {
    let path = store.path().to_path_buf();
    let err = |source| StoreError::Sql {
        path: path.clone(),
        action: "write",
        source,
    };
    let tx = store
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    tx.execute(
        "DELETE FROM shard_requests
         WHERE shard IN (SELECT id FROM shards WHERE state = 'planned')",
        [],
    )
    .map_err(err)?;
    let gone = tx
        .execute("DELETE FROM shards WHERE state = 'planned'", [])
        .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(gone as u64)
}

/// The shard's batch has ended and its results are handed on: what it left without a result
/// is released, and the shard is `ended`.
pub fn end(store: &mut Store, shard: i64, release: &[i64]) -> Result<(), StoreError> {
    let path = store.path().to_path_buf();
    let err = |source| StoreError::Sql {
        path: path.clone(),
        action: "write",
        source,
    };
    let tx = store
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    {
        let mut stmt = tx
            .prepare("UPDATE shard_requests SET active = 0 WHERE shard = ?1 AND request_id = ?2")
            .map_err(err)?;
        for id in release {
            stmt.execute(params![shard, id]).map_err(err)?;
        }
    }
    tx.execute(
        "UPDATE shards SET state = 'ended', updated_at = ?2 WHERE id = ?1",
        params![shard, now_ms()],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

/// The requests of a shard (active in it), in input order.
pub fn members(store: &Store, shard: i64) -> Result<Vec<Member>, StoreError> {
    let mut stmt = store
        .conn()
        .prepare(
            "SELECT r.id, r.custom_id, r.line, r.state,
                    (SELECT count(*) FROM shard_requests t WHERE t.request_id = r.id)
             FROM shard_requests s JOIN requests r ON r.id = s.request_id
             WHERE s.shard = ?1 AND s.active = 1 ORDER BY r.id",
        )
        .map_err(|e| store.err("read", e))?;
    let rows = stmt
        .query_map(params![shard], |r| {
            let state: i64 = r.get(3)?;
            Ok(Member {
                id: r.get(0)?,
                custom_id: r.get(1)?,
                line: r.get::<_, i64>(2)? as u64,
                pending: state != RequestState::Done.code() && state != RequestState::Failed.code(),
                tries: r.get::<_, i64>(4)? as u32,
            })
        })
        .map_err(|e| store.err("read", e))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| store.err("read", e))
}

/// Pending requests in no active shard, in input order.
pub fn unassigned(store: &Store) -> Result<Vec<Unassigned>, StoreError> {
    let mut stmt = store
        .conn()
        .prepare(
            "SELECT r.id, r.line, r.custom_id,
                    (SELECT count(*) FROM shard_requests t WHERE t.request_id = r.id)
             FROM requests r
             WHERE r.state IN (?1, ?2)
               AND NOT EXISTS (SELECT 1 FROM shard_requests s
                               WHERE s.request_id = r.id AND s.active = 1)
             ORDER BY r.id",
        )
        .map_err(|e| store.err("read", e))?;
    let rows = stmt
        .query_map(
            params![RequestState::Pending.code(), RequestState::InFlight.code()],
            |r| {
                Ok(Unassigned {
                    id: r.get(0)?,
                    line: r.get::<_, i64>(1)? as u64,
                    custom_id: r.get(2)?,
                    tries: r.get::<_, i64>(3)? as u32,
                })
            },
        )
        .map_err(|e| store.err("read", e))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| store.err("read", e))
}

/// Every provider batch id the job has recorded.
pub fn provider_ids(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut stmt = store
        .conn()
        .prepare("SELECT provider_id FROM shards WHERE provider_id IS NOT NULL")
        .map_err(|e| store.err("read", e))?;
    let rows = stmt
        .query_map([], |r| r.get(0))
        .map_err(|e| store.err("read", e))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| store.err("read", e))
}

/// The job's requests with a result and the tokens the provider reported, keyed by input line,
/// with whether a batch finished them (a request still active in a shard when it got its result)
/// or a live request.
pub fn finished_ways(store: &Store) -> Result<Vec<(u64, u64, u64, bool)>, StoreError> {
    let mut stmt = store
        .conn()
        .prepare(
            "SELECT r.line, r.prompt_tokens, r.completion_tokens,
                    EXISTS (SELECT 1 FROM shard_requests s WHERE s.request_id = r.id AND s.active = 1)
             FROM requests r WHERE r.state IN (?1, ?2)",
        )
        .map_err(|e| store.err("read", e))?;
    let rows = stmt
        .query_map(
            params![RequestState::Done.code(), RequestState::Failed.code()],
            |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, bool>(3)?,
                ))
            },
        )
        .map_err(|e| store.err("read", e))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| store.err("read", e))
}
