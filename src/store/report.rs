//! What `paceline status` and `paceline inspect` read from a state: a job's progress, and one
//! request's whole history.
//!
//! It reads and never writes, and must not know how the figures are shown (the command line prints
//! them, [`crate::report`] draws them).

use super::attempts::{self, StoredAttempt};
use super::job;
use super::lock::StateLock;
use super::runs::{self, RunRow};
use super::state::{self, RequestState, StateCounts};
use super::{Store, StoreError, results};
use serde::Serialize;
use std::collections::BTreeMap;

/// Whether a job is running, finished, or can be resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A paceline holds the state's lock now.
    Running {
        /// The holder, as written in the lock file.
        holder: String,
        /// What it said it was doing last (requests being sent, held in the process), if it
        /// said anything yet.
        activity: Option<String>,
    },
    /// Every request has a result.
    Finished,
    /// Requests are left and nobody runs the job: the same command resumes it.
    Resumable {
        /// How the last run ended (`interrupted`, `no_keys`, `error`, or `crashed` when it never
        /// recorded an end).
        last_run: String,
    },
    /// No job was recorded (its first run never got past validation).
    Empty,
}

/// A job's progress.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    /// The state database.
    pub state_path: String,
    /// The input file.
    pub input: String,
    /// The input's SHA-256.
    pub input_sha256: String,
    /// The output file of the latest run.
    pub output: String,
    /// When the job began (ms since the epoch).
    pub created_at: i64,
    /// Running, finished or resumable.
    pub phase: Phase,
    /// Requests by state.
    pub pending: u64,
    /// Requests handed to the engine without a result yet.
    pub in_flight: u64,
    /// Requests that succeeded.
    pub done: u64,
    /// Requests that failed for good.
    pub failed: u64,
    /// All requests.
    pub total: u64,
    /// Invalid lines skipped with `--skip-invalid`.
    pub skipped: u64,
    /// Final failures by error code.
    pub failed_by_code: BTreeMap<String, u64>,
    /// Attempts over all runs.
    pub attempts: u64,
    /// Attempts that were retried (including on another key).
    pub retries: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Prompt tokens the provider reported.
    pub prompt_tokens: u64,
    /// Completion tokens the provider reported.
    pub completion_tokens: u64,
    /// Number of runs.
    pub runs: u64,
    /// The latest run.
    pub last_run: Option<RunRow>,
    /// The latest run's rate and budget use ([`super::figures`]), if it sent anything.
    pub figures: Option<super::figures::RunFigures>,
}

/// Read the progress of the job in `store`.
pub fn job_status(store: &Store) -> Result<JobStatus, StoreError> {
    let job = job::load(store)?;
    let counts = if job.is_some() {
        state::counts(store)?
    } else {
        StateCounts::default()
    };
    let read = |e| store.err("read", e);
    let conn = store.conn();
    let mut failed_by_code = BTreeMap::new();
    {
        let mut stmt = conn
            .prepare(
                "SELECT coalesce(error_code, 'unknown'), count(*) FROM requests
                 WHERE state = ?1 GROUP BY 1",
            )
            .map_err(read)?;
        let rows = stmt
            .query_map([RequestState::Failed.code()], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(read)?;
        for row in rows {
            let (code, n) = row.map_err(read)?;
            failed_by_code.insert(code, n as u64);
        }
    }
    let (attempts, retries, rate_limited): (i64, i64, i64) = conn
        .query_row(
            "SELECT count(*),
                    coalesce(sum(decision IN ('retry', 'retry_other_key')), 0),
                    coalesce(sum(status = 429), 0)
             FROM attempts",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .map_err(read)?;
    let (prompt_tokens, completion_tokens): (i64, i64) = conn
        .query_row(
            "SELECT coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0)
             FROM requests",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(read)?;
    let (runs, last_run) = runs::latest(store)?;
    let phase = match (StateLock::holder(store.path()), &job) {
        (Some(text), _) => {
            let mut lines = text.lines();
            Phase::Running {
                holder: lines.next().unwrap_or_default().to_string(),
                activity: lines.next().map(str::to_string),
            }
        }
        (None, None) => Phase::Empty,
        (None, Some(_)) if counts.unfinished() == 0 => Phase::Finished,
        (None, Some(_)) => Phase::Resumable {
            last_run: last_run
                .as_ref()
                .and_then(|r| r.outcome.clone())
                .unwrap_or_else(|| "crashed".to_string()),
        },
    };
    let figures = super::figures::latest(store)?;
    let (input, input_sha256, output, skipped, created_at) = match &job {
        Some(j) => (
            j.input_path.display().to_string(),
            j.identity.sha256.clone(),
            j.output_path.display().to_string(),
            j.skipped,
            j.created_at,
        ),
        None => Default::default(),
    };
    Ok(JobStatus {
        state_path: store.path().display().to_string(),
        input,
        input_sha256,
        output,
        created_at,
        phase,
        pending: counts.pending,
        in_flight: counts.in_flight,
        done: counts.done,
        failed: counts.failed,
        total: counts.total(),
        skipped,
        failed_by_code,
        attempts: attempts as u64,
        retries: retries as u64,
        rate_limited: rate_limited as u64,
        prompt_tokens: prompt_tokens as u64,
        completion_tokens: completion_tokens as u64,
        runs,
        last_run,
        figures,
    })
}

/// One request's whole history.
#[derive(Debug, Clone, Serialize)]
pub struct RequestHistory {
    /// The request's id.
    pub custom_id: String,
    /// Its input line.
    pub line: u64,
    /// Its state.
    pub state: &'static str,
    /// Its final error code, for a failure.
    pub error_code: Option<String>,
    /// Prompt tokens the provider reported.
    pub prompt_tokens: u64,
    /// Completion tokens the provider reported.
    pub completion_tokens: u64,
    /// Every attempt, oldest first, over all runs.
    pub attempts: Vec<StoredAttempt>,
    /// The output line, parsed (absent until it finished).
    pub result: Option<serde_json::Value>,
}

/// The history of `custom_id`, if the job holds that request.
pub fn request_history(
    store: &Store,
    custom_id: &str,
) -> Result<Option<RequestHistory>, StoreError> {
    let Some(row) = state::find(store, custom_id)? else {
        return Ok(None);
    };
    let attempts = attempts::for_request(store, row.id)?;
    let result = match row.result_seq {
        Some(seq) => results::line(store, seq)?
            .map(|line| serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line))),
        None => None,
    };
    Ok(Some(RequestHistory {
        custom_id: row.custom_id,
        line: row.line,
        state: row.state.as_str(),
        error_code: row.error_code,
        prompt_tokens: row.prompt_tokens,
        completion_tokens: row.completion_tokens,
        attempts,
        result,
    }))
}
