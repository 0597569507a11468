//! Requests and their states: pending (not yet handed to the engine in this run), in flight
//! (handed to the engine, no result committed), done (succeeded, result committed) and failed
//! (failed for good, result committed).
//!
//! Rows are inserted in input order, so the row id orders requests as the input does; the feeder
//! pages through pending rows by row id while it streams the input.
//!
//! It must not know the engine or the input's format: a request is a row with an id, a line and a
//! state.

use super::{Store, StoreError};
use rusqlite::{OptionalExtension, Transaction, params};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// Waiting to be handed to the engine.
    Pending,
    /// Handed to the engine; no result committed yet.
    InFlight,
    /// Succeeded; its result is committed.
    Done,
    /// Failed for good; its result is committed.
    Failed,
}

impl RequestState {
    /// Every state, in display order.
    pub const ALL: [RequestState; 4] = [
        RequestState::Pending,
        RequestState::InFlight,
        RequestState::Done,
        RequestState::Failed,
    ];

    /// The stored code.
    pub fn code(self) -> i64 {
        match self {
            RequestState::Pending => 0,
            RequestState::InFlight => 1,
            RequestState::Done => 2,
            RequestState::Failed => 3,
        }
    }

    /// The state of a stored code.
    pub fn from_code(code: i64) -> Option<RequestState> {
        RequestState::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::InFlight => "in_flight",
            RequestState::Done => "done",
            RequestState::Failed => "failed",
        }
    }
}

/// A pending request as the feeder needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    /// Row id.
    pub id: i64,
    /// 1-based input line.
    pub line: u64,
    /// The request's id.
    pub custom_id: String,
    /// Attempts already made (requests in flight at a crash).
    pub attempts: u32,
}

/// Outcome of inserting a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// A new request.
    Added,
    /// The `custom_id` is already there, first on this line.
    Duplicate(u64),
}

/// Inserts the requests of a new job, in input order.
pub struct RequestInserter<'t> {
    insert: rusqlite::Statement<'t>,
    first_line: rusqlite::Statement<'t>,
}

impl<'t> RequestInserter<'t> {
    /// Prepare the statements in `tx`.
    pub fn new(tx: &'t Transaction<'_>) -> rusqlite::Result<Self> {
        Ok(RequestInserter {
            insert: tx.prepare(
                "INSERT INTO requests (custom_id, line) VALUES (?1, ?2)
                 ON CONFLICT (custom_id) DO NOTHING",
            )?,
            first_line: tx.prepare("SELECT line FROM requests WHERE custom_id = ?1")?,
        })
    }

    /// Add one request (the UNIQUE index on `custom_id` finds duplicates).
    pub fn add(&mut self, custom_id: &str, line: u64) -> rusqlite::Result<Insert> {
        if self.insert.execute(params![custom_id, line as i64])? == 1 {
            return Ok(Insert::Added);
        }
        let first: i64 = self
            .first_line
            .query_row(params![custom_id], |row| row.get(0))?;
        Ok(Insert::Duplicate(first as u64))
    }
}

/// Requests in flight when the last run ended (a crash) go back to pending.
pub fn reset_in_flight(store: &Store) -> Result<usize, StoreError> {
    store
        .conn()
        .execute(
            "UPDATE requests SET state = ?1 WHERE state = ?2",
            params![RequestState::Pending.code(), RequestState::InFlight.code()],
        )
        .map_err(|e| store.err("write", e))
}

/// `--retry-failed`: final failures go back to pending with a fresh attempt budget; their
/// results leave the store (reconciliation then removes their lines from the output).
pub fn retry_failed(store: &mut Store) -> Result<usize, StoreError> {
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
    let failed = RequestState::Failed.code();
    super::results::remove_of_state(&tx, failed).map_err(err)?;
    let n = tx
        .execute(
            "UPDATE requests SET state = ?1, attempts = 0, error_code = NULL, result_seq = NULL
             WHERE state = ?2",
            params![RequestState::Pending.code(), failed],
        )
        .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(n)
}

/// Up to `limit` pending requests after row `after`, in input order.
pub fn pending_page(
    store: &Store,
    after: i64,
    limit: usize,
) -> Result<Vec<PendingRequest>, StoreError> {
    let mut stmt = store
        .conn()
        .prepare_cached(
            "SELECT id, line, custom_id, attempts FROM requests
             WHERE id > ?1 AND state = ?2 ORDER BY id LIMIT ?3",
        )
        .map_err(|e| store.err("read", e))?;
    let rows = stmt
        .query_map(
            params![after, RequestState::Pending.code(), limit as i64],
            |row| {
                Ok(PendingRequest {
                    id: row.get(0)?,
                    line: row.get::<_, i64>(1)? as u64,
                    custom_id: row.get(2)?,
                    attempts: row.get::<_, i64>(3)? as u32,
                })
            },
        )
        .map_err(|e| store.err("read", e))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| store.err("read", e))
}

/// How many requests are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Pending.
    pub pending: u64,
    /// In flight.
    pub in_flight: u64,
    /// Done (succeeded).
    pub done: u64,
    /// Failed for good.
    pub failed: u64,
}

impl StateCounts {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.pending + self.in_flight + self.done + self.failed
    }

    /// Requests without a result.
    pub fn unfinished(&self) -> u64 {
        self.pending + self.in_flight
    }
}

/// Count requests by state.
pub fn counts(store: &Store) -> Result<StateCounts, StoreError> {
    let mut stmt = store
        .conn()
        .prepare_cached("SELECT state, count(*) FROM requests GROUP BY state")
        .map_err(|e| store.err("read", e))?;
    let mut counts = StateCounts::default();
    let rows = stmt
        .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
        .map_err(|e| store.err("read", e))?;
    for row in rows {
        let (code, n) = row.map_err(|e| store.err("read", e))?;
        let n = n as u64;
        match RequestState::from_code(code) {
            Some(RequestState::Pending) => counts.pending += n,
            Some(RequestState::InFlight) => counts.in_flight += n,
            Some(RequestState::Done) => counts.done += n,
            Some(RequestState::Failed) => counts.failed += n,
            None => {}
        }
    }
    Ok(counts)
}

/// A request's row, for `inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    /// Row id.
    pub id: i64,
    /// The request's id.
    pub custom_id: String,
    /// 1-based input line.
    pub line: u64,
    /// Its state.
    pub state: RequestState,
    /// Attempts in the current try (reset by `--retry-failed`).
    pub attempts: u32,
    /// The final error code, for a failure.
    pub error_code: Option<String>,
    /// Prompt tokens the provider reported.
    pub prompt_tokens: u64,
    /// Completion tokens the provider reported.
    pub completion_tokens: u64,
    /// The result's position in commit order.
    pub result_seq: Option<i64>,
}

/// The row of `custom_id`, if the job has that request.
pub fn find(store: &Store, custom_id: &str) -> Result<Option<RequestRow>, StoreError> {
    store
        .conn()
        .query_row(
            "SELECT id, custom_id, line, state, attempts, error_code, prompt_tokens,
                    completion_tokens, result_seq
             FROM requests WHERE custom_id = ?1",
            params![custom_id],
            |row| {
                Ok(RequestRow {
                    id: row.get(0)?,
                    custom_id: row.get(1)?,
                    line: row.get::<_, i64>(2)? as u64,
                    state: RequestState::from_code(row.get(3)?).unwrap_or(RequestState::Pending),
                    attempts: row.get::<_, i64>(4)? as u32,
                    error_code: row.get(5)?,
                    prompt_tokens: row.get::<_, i64>(6)? as u64,
                    completion_tokens: row.get::<_, i64>(7)? as u64,
                    result_seq: row.get(8)?,
                })
            },
        )
        .optional()
        .map_err(|e| store.err("read", e))
}
