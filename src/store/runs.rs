//! Runs: each `paceline run` on a job is one row — when it started, its last commit, how it
//! ended (a run that never ended crashed or was killed), and what it finished.
//!
//! It must not know what a run sends: the runner opens and closes its row.

use super::{Store, StoreError, now_ms};
use rusqlite::{OptionalExtension, params};

/// How a run began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// The first run of a job.
    New,
    /// A later run of an unfinished (or finished) job.
    Resume,
    /// `--retry-failed`.
    RetryFailed,
}

impl RunMode {
    /// Stable name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::New => "new",
            RunMode::Resume => "resume",
            RunMode::RetryFailed => "retry_failed",
        }
    }
}

/// Record the start of a run; returns its number.
pub fn start(store: &Store, mode: RunMode) -> Result<i64, StoreError> {
    store
        .conn()
        .execute(
            "INSERT INTO runs (pid, mode, started_at) VALUES (?1, ?2, ?3)",
            params![std::process::id(), mode.as_str(), now_ms()],
        )
        .map_err(|e| store.err("write", e))?;
    Ok(store.conn().last_insert_rowid())
}

/// Record how run `run` ended (`completed`, `interrupted`, `no_keys`, `error`).
pub fn end(store: &Store, run: i64, outcome: &str) -> Result<(), StoreError> {
    store
        .conn()
        .execute(
            "UPDATE runs SET ended_at = ?2, outcome = ?3 WHERE id = ?1",
            params![run, now_ms(), outcome],
        )
        .map_err(|e| store.err("write", e))?;
    Ok(())
}

/// One run, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunRow {
    /// Its number (1 for the first).
    pub id: i64,
    /// Process id.
    pub pid: i64,
    /// `new`, `resume` or `retry_failed`.
    pub mode: String,
    /// Start (ms since the epoch).
    pub started_at: i64,
    /// Its last commit.
    pub last_commit_at: Option<i64>,
    /// End, if it ended cleanly.
    pub ended_at: Option<i64>,
    /// How it ended; `None` while it runs, or when it crashed or was killed.
    pub outcome: Option<String>,
    /// Requests it finished.
    pub finished: u64,
    /// Attempts it made.
    pub attempts: u64,
}

/// The run count and the latest run.
pub fn latest(store: &Store) -> Result<(u64, Option<RunRow>), StoreError> {
    let count: i64 = store
        .conn()
        .query_row("SELECT count(*) FROM runs", [], |row| row.get(0))
        .map_err(|e| store.err("read", e))?;
    let last = store
        .conn()
        .query_row(
            "SELECT id, pid, mode, started_at, last_commit_at, ended_at, outcome, finished,
                    attempts
             FROM runs ORDER BY id DESC LIMIT 1",
            [],
            |row| {
                Ok(RunRow {
                    id: row.get(0)?,
                    pid: row.get(1)?,
                    mode: row.get(2)?,
                    started_at: row.get(3)?,
                    last_commit_at: row.get(4)?,
                    ended_at: row.get(5)?,
                    outcome: row.get(6)?,
                    finished: row.get::<_, i64>(7)? as u64,
                    attempts: row.get::<_, i64>(8)? as u64,
                })
            },
        )
        .optional()
        .map_err(|e| store.err("read", e))?;
    Ok((count as u64, last))
}
