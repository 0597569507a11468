//! The writer: the only thread that writes the store during a run.
//!
//! It takes the engine's events (every attempt, every finished request) and the feeder's
//! "handed to the engine" notes over channels, and commits them in batched transactions: a
//! transaction closes after [`BATCH_EVENTS`] items or [`BATCH_WINDOW`] after its first item,
//! whichever comes first. Right after each commit, the batch's results are appended to the output
//! in commit order (see [`super::output`]). It runs on a blocking thread, never on the async
//! runtime's workers; it waits on the channels with the runtime's handle only when they are
//! empty.
//!
//! It must not know how the events came about (pacing, sending, classifying): it commits what the
//! engine and the feeder report, in the lines the batch output format makes of them.

use super::attempts;
use super::output::OutputAppender;
use super::results::BlockWriter;
use super::state::RequestState;
use super::{Store, StoreError, now_ms};
use crate::batch::{MessageBatchResult, OutputError, OutputFormat, OutputRecord, ProviderResponse};
use crate::engine::{Event, Finished, Verdict};
use crate::retry::Failure;
use rusqlite::{OptionalExtension, Transaction, params};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::Instant;

/// Most items in one transaction.
pub const BATCH_EVENTS: usize = 1000;
/// Longest time an item waits for its transaction to commit.
pub const BATCH_WINDOW: Duration = Duration::from_millis(200);

/// A request the feeder handed to the engine.
#[derive(Debug, Clone)]
pub struct Dispatched {
    /// Its row id.
    pub id: i64,
    /// Its `custom_id` (the engine's events name requests by it).
    pub custom_id: String,
}

/// What the writer listens to.
#[derive(Debug)]
pub struct WriterInputs {
    /// The engine's events.
    pub events: mpsc::Receiver<Event>,
    /// The feeder's notes.
    pub dispatched: mpsc::Receiver<Dispatched>,
    /// Set to `true` to commit what has arrived and stop without waiting for the channels to
    /// close (the run is abandoning in-flight requests).
    pub stop: watch::Receiver<bool>,
    /// Notified once when a commit or an output write fails; the writer then discards what
    /// arrives until its inputs close or it is stopped.
    pub failed: Arc<Notify>,
    /// The feeder's window: one permit is added for every finished request taken off
    /// `events`. The feeder takes one before handing a request to the engine, so the requests
    /// between the feeder and the store (queued, in flight, waiting for a retry, or finished
    /// and waiting for the writer) never exceed the window's size, however far the writer
    /// falls behind.
    pub window: Arc<Semaphore>,
    /// The results format of the output lines.
    pub format: OutputFormat,
}

/// Why the writer could not keep up its work.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// A commit failed (the transaction was rolled back; the store is as before it).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Appending committed results to the output failed (they stay in the store and are
    /// appended on the next start).
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// What the writer hands back when it ends.
#[derive(Debug)]
pub struct WriterOutcome {
    /// The store, for the run's closing bookkeeping.
    pub store: Store,
    /// The output.
    pub output: OutputAppender,
    /// The first failure, if any (nothing was committed after it).
    pub error: Option<WriterError>,
}

enum Item {
    Dispatched(Dispatched),
    Event(Event),
}

/// Run the writer for run number `run` until both inputs close or it is stopped.
pub fn run(
    mut store: Store,
    mut output: OutputAppender,
    run: i64,
    mut inputs: WriterInputs,
    runtime: tokio::runtime::Handle,
) -> WriterOutcome {
    let mut batch: Vec<Item> = Vec::with_capacity(BATCH_EVENTS);
    let mut ids: HashMap<String, i64> = HashMap::new();
    let mut error: Option<WriterError> = None;
    let mut blocks = BlockWriter::default();
    let (mut events_open, mut dispatched_open, mut stop_open) = (true, true, true);
    let mut window: Option<Instant> = None;
    loop {
        let mut received = false;
        while dispatched_open && batch.len() < BATCH_EVENTS {
            match inputs.dispatched.try_recv() {
                Ok(d) => {
                    batch.push(Item::Dispatched(d));
                    received = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => dispatched_open = false,
            }
        }
        while events_open && batch.len() < BATCH_EVENTS {
            match inputs.events.try_recv() {
                Ok(e) => {
                    take(&mut batch, e, &inputs.window);
                    received = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => events_open = false,
            }
        }
        if !batch.is_empty() && window.is_none() {
            window = Some(Instant::now());
        }
        let stopping = *inputs.stop.borrow();
        let closing = stopping || (!events_open && !dispatched_open);
        let due = closing
            || batch.len() >= BATCH_EVENTS
            || window.is_some_and(|t| t.elapsed() >= BATCH_WINDOW);
        if due && !batch.is_empty() {
            if error.is_none()
                && let Err(e) = commit(
                    &mut store,
                    &mut output,
                    run,
                    &mut batch,
                    &mut ids,
                    &mut blocks,
                    inputs.format,
                )
            {
                tracing::error!(error = %e, "the job store stopped recording results");
                error = Some(e);
                inputs.failed.notify_one();
            }
            batch.clear();
            window = None;
        }
        if closing {
            break;
        }
        if received {
            continue;
        }
        // Nothing waiting: sleep until something arrives or the open batch is due.
        let deadline = window.map(|t| t + BATCH_WINDOW);
        let woke = runtime.block_on(async {
            tokio::select! {
                changed = inputs.stop.changed(), if stop_open => Wake::Stop(changed.is_ok()),
                d = inputs.dispatched.recv(), if dispatched_open => Wake::Dispatched(d),
                e = inputs.events.recv(), if events_open => Wake::Event(e),
                _ = sleep_until(deadline) => Wake::Timer,
            }
        });
        match woke {
            Wake::Stop(open) => stop_open = open,
            Wake::Dispatched(Some(d)) => batch.push(Item::Dispatched(d)),
            Wake::Dispatched(None) => dispatched_open = false,
            Wake::Event(Some(e)) => take(&mut batch, e, &inputs.window),
            Wake::Event(None) => events_open = false,
            Wake::Timer => {}
        }
    }
    if error.is_none()
        && let Err(e) = output.sync()
    {
        error = Some(e.into());
    }
    WriterOutcome {
        store,
        output,
        error,
    }
}

/// Add an engine event to the open batch; a finished request frees a place in the window.
fn take(batch: &mut Vec<Item>, event: Event, window: &Semaphore) {
    if matches!(event, Event::Finished(_)) {
        window.add_permits(1);
    }
    batch.push(Item::Event(event));
}

enum Wake {
    Stop(bool),
    Dispatched(Option<Dispatched>),
    Event(Option<Event>),
    Timer,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Commit one batch, then append its results to the output.
fn commit(
    store: &mut Store,
    output: &mut OutputAppender,
    run: i64,
    batch: &mut Vec<Item>,
    ids: &mut HashMap<String, i64>,
    blocks: &mut BlockWriter,
    format: OutputFormat,
) -> Result<(), WriterError> {
    let path = store.path().to_path_buf();
    let sql = |source| StoreError::Sql {
        path: path.clone(),
        action: "write",
        source,
    };
    let now = now_ms();
    // IMMEDIATE: the write lock up front. Another connection may write the state too (the
    // Batch API driver's, `crate::offline`); a deferred transaction that read first could not
    // upgrade its snapshot after that one's commit and would fail at once with "database is
    // locked" instead of waiting its turn (busy_timeout applies only to taking the lock).
    let tx = store
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    blocks.begin();
    let mut lines = Vec::new();
    let mut attempts_made = 0i64;
    for item in batch.drain(..) {
        match item {
            Item::Dispatched(d) => {
                let changed = tx
                    .prepare_cached("UPDATE requests SET state = ?2 WHERE id = ?1 AND state = ?3")
                    .and_then(|mut s| {
                        s.execute(params![
                            d.id,
                            RequestState::InFlight.code(),
                            RequestState::Pending.code()
                        ])
                    })
                    .map_err(sql)?;
                if changed == 1 {
                    ids.insert(d.custom_id, d.id);
                }
            }
            Item::Event(Event::Attempt(record)) => {
                let Some(id) = row_id(&tx, ids, &record.custom_id, false).map_err(sql)? else {
                    continue;
                };
                attempts::insert(&tx, id, run, &record).map_err(sql)?;
                tx.prepare_cached("UPDATE requests SET attempts = ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![id, record.attempt]))
                    .map_err(sql)?;
                attempts_made += 1;
            }
            Item::Event(Event::Finished(finished)) => {
                let Some(id) = row_id(&tx, ids, &finished.custom_id, true).map_err(sql)? else {
                    continue;
                };
                let result = ResultLine::of(finished, format).map_err(sql)?;
                let seq = blocks.add(&tx, &result.line).map_err(sql)?;
                tx.prepare_cached(
                    "UPDATE requests SET state = ?2, attempts = ?3, error_code = ?4,
                         prompt_tokens = ?5, completion_tokens = ?6, result_seq = ?7
                     WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        result.state.code(),
                        result.attempts,
                        result.error_code,
                        result.prompt_tokens as i64,
                        result.completion_tokens as i64,
                        seq
                    ])
                })
                .map_err(sql)?;
                lines.push(result.line);
            }
        }
    }
    blocks.finish(&tx).map_err(sql)?;
    tx.prepare_cached(
        "UPDATE runs SET finished = finished + ?2, attempts = attempts + ?3, last_commit_at = ?4
         WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![run, lines.len() as i64, attempts_made, now]))
    .map_err(sql)?;
    tx.commit().map_err(sql)?;
    for line in &lines {
        output.append(line)?;
    }
    output.flush()?;
    Ok(())
}

/// The row id of `custom_id`: from the cache of requests in flight, else from the index.
/// `finished` removes it from the cache.
fn row_id(
    tx: &Transaction<'_>,
    ids: &mut HashMap<String, i64>,
    custom_id: &str,
    finished: bool,
) -> rusqlite::Result<Option<i64>> {
    let cached = if finished {
        ids.remove(custom_id)
    } else {
        ids.get(custom_id).copied()
    };
    if cached.is_some() {
        return Ok(cached);
    }
    let found: Option<i64> = tx
        .prepare_cached("SELECT id FROM requests WHERE custom_id = ?1")?
        .query_row(params![custom_id], |row| row.get(0))
        .optional()?;
    match found {
        Some(id) if !finished => {
            ids.insert(custom_id.to_string(), id);
        }
        Some(_) => {}
        None => tracing::error!(custom_id, "a result for a request the job does not hold"),
    }
    Ok(found)
}

/// A finished request as stored: its output line and what `status` counts.
struct ResultLine {
    line: String,
    state: RequestState,
    attempts: u32,
    error_code: Option<String>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl ResultLine {
    fn of(finished: Finished, format: OutputFormat) -> rusqlite::Result<ResultLine> {
        let usage = match &finished.verdict {
            Verdict::Succeeded(answer) => answer.usage,
            Verdict::Failed { answer, .. } => answer.as_ref().and_then(|a| a.usage),
        };
        let (prompt_tokens, completion_tokens) = usage.map_or((0, 0), |u| (u.prompt, u.completion));
        let (line, state, error_code) = match format {
            OutputFormat::OpenAi => openai_line(finished.custom_id, finished.verdict),
            OutputFormat::Anthropic => anthropic_line(finished.custom_id, finished.verdict),
        };
        let line = line.map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(ResultLine {
            line,
            state,
            attempts: finished.attempts,
            error_code,
            prompt_tokens,
            completion_tokens,
        })
    }
}

/// A result line's text, the request's state and its error code.
type LineParts = (serde_json::Result<String>, RequestState, Option<String>);

/// An OpenAI Batch API output line.
fn openai_line(custom_id: String, verdict: Verdict) -> LineParts {
    let (state, error_code) = match &verdict {
        Verdict::Succeeded(_) => (RequestState::Done, None),
        Verdict::Failed { code, .. } => (RequestState::Failed, Some(code.to_string())),
    };
    (
        OutputRecord::line_from_verdict(&custom_id, &verdict),
        state,
        error_code,
    )
}

/// An Anthropic Message Batches result line.
fn anthropic_line(custom_id: String, verdict: Verdict) -> LineParts {
    let (record, state, error_code) = match verdict {
        Verdict::Succeeded(answer) => (
            MessageBatchResult::succeeded(
                custom_id,
                ProviderResponse::body_from_bytes(&answer.body),
            ),
            RequestState::Done,
            None,
        ),
        Verdict::Failed {
            code: code @ Failure::DeadlineExceeded,
            ..
        } => (
            MessageBatchResult::expired(custom_id),
            RequestState::Failed,
            Some(code.to_string()),
        ),
        Verdict::Failed {
            answer,
            code,
            message,
        } => {
            let body = answer.map(|a| ProviderResponse::body_from_bytes(&a.body));
            (
                MessageBatchResult::errored(custom_id, body, code.code(), &message),
                RequestState::Failed,
                Some(code.to_string()),
            )
        }
    };
    (serde_json::to_string(&record), state, error_code)
}
