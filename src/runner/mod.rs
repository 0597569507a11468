//! A whole batch run, durable: every request and result goes through the job store, so the run
//! resumes after any crash and its output holds exactly one line per `custom_id`.
//!
//! `setup` (lock, validate or check the input, reconcile the output) → `feed` (the input's
//! pending lines, on a blocking thread) → [`crate::engine::Engine`] → events → the store's writer
//! thread ([`crate::store::writer`]: batched commits, then the output). Ctrl-C / SIGTERM stop
//! admitting, let in-flight requests finish (for at most the stop timeout) and leave the job
//! resumable; a second signal exits at once, still resumable.
//!
//! `--via batch` hands the job to [`crate::offline::drive`] instead of the engine, with the same
//! writer; `--via auto --deadline` does the same with a hand-over rule
//! ([`crate::plan::deadline`]), and when the batch path hands over, the run goes on live with
//! what is left — the same store, writer, output and run. During the batch path, Ctrl-C asks
//! on a terminal whether the provider's batches are cancelled (`prompt`).
//!
//! The runner must not know HTTP, providers or Redis: it drives the engine with the keys and the
//! upstream it is given; a shared job in Redis is [`crate::distributed::worker`]'s.

mod feed;
mod prompt;
mod setup;
pub(crate) mod signals;

use crate::batch::{InputError, InputSpec, OutputError, OutputFormat};
use crate::engine::{Engine, EngineConfig, EngineExit, Event, Job};
use crate::offline::handover::Handover;
use crate::offline::{self, BatchSettings, OfflineError, OfflinePlan, OnInterrupt};
use crate::plan::deadline::{DeadlineRule, ModelLimits};
use crate::plan::prices::PriceTable;
use crate::plan::spent::{Used, spent};
use crate::progress::{self, Display, Progress};
use crate::quota::QuotaConfig;
use crate::store::figures;
use crate::store::keys::{self, KeyLimit, KeyRemoval};
use crate::store::runs::{self, RunMode};
use crate::store::shards;
use crate::store::state::{self, StateCounts};
use crate::store::writer::{self, Dispatched, WriterError, WriterInputs};
use crate::store::{Store, StoreError};
use crate::telemetry::otlp::Tracer;
use crate::upstream::{ApiKey, KeyPool, Upstream};
pub use signals::Interrupt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::Instant;

/// Requests handed to the engine and not yet taken by it.
const JOB_QUEUE: usize = 256;
/// How often a run says on its lock file what it is sending (for `paceline status`).
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Everything a run needs, validated.
pub struct RunPlan {
    /// What to read.
    pub input: InputSpec,
    /// Where results go.
    pub output: PathBuf,
    /// The results format.
    pub output_format: OutputFormat,
    /// The state database; `None` for `OUTPUT.paceline.db`.
    pub state: Option<PathBuf>,
    /// Proceed with the valid lines when some are invalid.
    pub skip_invalid: bool,
    /// Where invalid lines are written with `skip_invalid`.
    pub errors_file: PathBuf,
    /// Start over: forget the job's state and replace the output.
    pub restart: bool,
    /// Send the job's final failures again.
    pub retry_failed: bool,
    /// How long in-flight requests may take to finish after the first Ctrl-C / SIGTERM.
    pub stop_timeout: Duration,
    /// The provider.
    pub upstream: Upstream,
    /// Keys with their configured limits.
    pub keys: Vec<(ApiKey, QuotaConfig)>,
    /// Engine behaviour.
    pub engine: EngineConfig,
    /// Output cap assumed for requests that set none.
    pub default_max_tokens: u64,
    /// How progress is shown.
    pub display: Display,
    /// How the quotas are shared with other processes, if distributed.
    pub shared: Option<Arc<dyn crate::upstream::QuotaSharing>>,
    /// `--via batch`: send the job through the provider's Batch API instead of live requests.
    pub batch: Option<BatchSettings>,
    /// `--via auto --deadline`: the batch path hands what is left to live requests in time.
    pub auto: Option<AutoPlan>,
    /// The prices the summary's cost of a `--via batch` or `--via auto` run is read from.
    pub prices: Option<PriceTable>,
    /// Where the spans of a live run go, when traces are exported (one span per request, one
    /// per attempt).
    pub tracer: Option<Tracer>,
}

/// How a run ended.
#[derive(Debug)]
pub struct RunReport {
    /// Requests of the job that succeeded (all runs).
    pub succeeded: u64,
    /// Requests of the job that failed for good (all runs).
    pub failed: u64,
    /// Requests of the job left without a result (resumable).
    pub unsent: u64,
    /// Invalid input lines skipped.
    pub skipped: u64,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// The signal that stopped it, if one did.
    pub interrupted: Option<Interrupt>,
    /// The closing summary, for people.
    pub summary: String,
}

/// A run that could not start or could not finish writing.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The input has invalid lines (and `--skip-invalid` was not given).
    #[error("{0}")]
    InvalidInput(String),
    /// The input cannot be read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The output cannot be written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The state cannot be used (locked, input changed, unreadable, disk full, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The output already exists and no state says which job wrote it.
    #[error(
        "{0} already exists and no paceline state belongs to it: pass --restart to start over \
         (its content will be replaced), or choose another -o"
    )]
    OutputExists(PathBuf),
    /// The input was edited while the run read it.
    #[error(
        "input {} changed while the job ran ({detail}); the job is resumable once the original \
         input is back, or pass --restart",
        path.display()
    )]
    InputChangedDuringRun {
        /// The input file.
        path: PathBuf,
        /// Where it stopped matching.
        detail: String,
    },
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
    /// The batch path (`--via batch`) could not go on.
    #[error("--via batch: {0}")]
    Offline(#[from] OfflineError),
}

impl RunError {
    /// Whether the user's input, flags or a concurrent run are at fault (exit code 2).
    pub fn is_usage(&self) -> bool {
        match self {
            RunError::InvalidInput(_)
            | RunError::Input(_)
            | RunError::OutputExists(_)
            | RunError::InputChangedDuringRun { .. } => true,
            RunError::Store(e) => e.is_usage(),
            _ => false,
        }
    }
}

impl From<WriterError> for RunError {
    fn from(e: WriterError) -> Self {
        match e {
            WriterError::Store(e) => RunError::Store(e),
            WriterError::Output(e) => RunError::Output(e),
        }
    }
}

fn internal(e: tokio::task::JoinError) -> RunError {
    RunError::Internal(e.to_string())
}

/// Run a batch to the end, or resume it.
pub async fn run(plan: RunPlan) -> Result<RunReport, RunError> {
    let state_path = plan
        .state
        .clone()
        .unwrap_or_else(|| crate::store::default_path(&plan.output));
    let setup_plan = setup::SetupPlan {
        input: plan.input.clone(),
        output: plan.output.clone(),
        state: state_path.clone(),
        restart: plan.restart,
        retry_failed: plan.retry_failed,
        skip_invalid: plan.skip_invalid,
        errors_file: plan.errors_file.clone(),
        output_format: plan.output_format,
        provider: plan.upstream.provider(),
    };
    let prepared = tokio::task::spawn_blocking(move || setup::prepare(&setup_plan))
        .await
        .map_err(internal)??;
    let mut notes = String::new();
    note_start(&prepared, &plan, &mut notes);
    eprint!("{notes}");
    let setup::Prepared {
        lock,
        store,
        output,
        run: run_id,
        counts: start_counts,
        skipped,
        ..
    } = prepared;

    if start_counts.unfinished() == 0 {
        let (counts, _) = tokio::task::spawn_blocking(move || {
            close(&store, run_id, "completed", &Default::default())
        })
        .await
        .map_err(internal)??;
        drop(lock);
        let retry_hint = if counts.failed > 0 {
            format!(
                "\n  to send the {} failed requests again, run the same command with --retry-failed",
                counts.failed
            )
        } else {
            String::new()
        };
        let summary = format!(
            "paceline: nothing to send: all {} requests of this job have a result ({} succeeded, \
             {} failed){retry_hint}\n  output          {}\n  state           {}\n",
            counts.total(),
            counts.done,
            counts.failed,
            plan.output.display(),
            state_path.display()
        );
        return Ok(report(counts, skipped, None, None, summary));
    }

    let mut start = RunStart {
        lock,
        store,
        output,
        run_id,
        start_counts,
        skipped,
        state_path,
    };
    let mut batch_lines = None;
    if let Some(settings) = plan.batch.clone() {
        match run_via_batch(&plan, settings, start).await? {
            BatchPhase::Ended(report) => return Ok(report),
            BatchPhase::HandedOver { start: rest, lines } => {
                start = *rest;
                batch_lines = Some(lines);
            }
        }
    }
    run_live(plan, start, batch_lines).await
}

/// The live path: the engine sends what the job has left. `batch_lines` are the summary's
/// lines of the batch path when `--via auto` handed over to it.
async fn run_live(
    plan: RunPlan,
    start: RunStart,
    batch_lines: Option<String>,
) -> Result<RunReport, RunError> {
    let RunStart {
        mut lock,
        store,
        output,
        run_id,
        start_counts,
        skipped,
        state_path,
    } = start;
    let configs: Vec<(String, QuotaConfig)> = plan
        .keys
        .iter()
        .map(|(key, config)| (key.label().to_string(), *config))
        .collect();
    let pool = KeyPool::new(plan.keys);
    let pool = Arc::new(match plan.shared {
        Some(shared) => pool.with_shared(shared),
        None => pool,
    });
    let window_total = window_size(&plan.engine);
    let window = Arc::new(Semaphore::new(window_total));
    let engine = Engine::new(plan.engine, Arc::clone(&pool), plan.upstream);
    let stats = engine.stats();
    // After a hand-over, what the batch path left.
    let pending = match batch_lines {
        Some(_) => state::counts(&store)?.pending,
        None => start_counts.pending,
    };
    stats.total.store(pending, Ordering::Relaxed);

    let (job_tx, job_rx) = mpsc::channel::<Job>(JOB_QUEUE);
    let (event_tx, event_rx) = mpsc::channel::<Event>(4096);
    let (dispatched_tx, dispatched_rx) = mpsc::channel::<Dispatched>(4096);
    let (stop_tx, stop_rx) = watch::channel(false);
    let failed = Arc::new(Notify::new());
    let inputs = WriterInputs {
        events: event_rx,
        dispatched: dispatched_rx,
        stop: stop_rx,
        failed: Arc::clone(&failed),
        window: Arc::clone(&window),
        format: plan.output_format,
    };
    let handle = tokio::runtime::Handle::current();
    let writer_task =
        tokio::task::spawn_blocking(move || writer::run(store, output, run_id, inputs, handle));
    let (spec, feed_state, default_max_tokens) = (
        plan.input.clone(),
        state_path.clone(),
        plan.default_max_tokens,
    );
    let (feed_window, feed_handle) = (Arc::clone(&window), tokio::runtime::Handle::current());
    let feed_tracer = plan.tracer.clone();
    let feeder = tokio::task::spawn_blocking(move || {
        feed::feed(
            &spec,
            &feed_state,
            default_max_tokens,
            feed_tracer.as_ref(),
            job_tx,
            dispatched_tx,
            feed_window,
            feed_handle,
        )
    });

    let mut signals = signals::Signals::listen()
        .map_err(|e| RunError::Internal(format!("cannot listen for signals: {e}")))?;
    let started = Instant::now();
    let progress = Progress::start(
        plan.display,
        Arc::clone(&stats),
        Arc::clone(&pool),
        Arc::clone(engine.concurrency()),
    );
    let mut engine_run = Box::pin(Arc::clone(&engine).run(job_rx, event_tx));
    let mut interrupted: Option<Interrupt> = None;
    let mut deadline: Option<Instant> = None;
    let mut store_failed = false;
    let mut publish = tokio::time::interval(PUBLISH_EVERY);
    let exit = loop {
        tokio::select! {
            exit = &mut engine_run => break Some(exit),
            _ = publish.tick() => {
                let held = window_total.saturating_sub(window.available_permits());
                let sending = pool.sending();
                lock.publish(&format!(
                    "{sending} being sent, {} more queued in the process or waiting to retry \
                     (as of {})",
                    held.saturating_sub(sending),
                    crate::time::local_time_now()
                ));
            }
            signal = signals.recv() => {
                if interrupted.is_some() {
                    exit_now(signal);
                }
                interrupted = Some(signal);
                engine.stop_admitting();
                deadline = Some(Instant::now() + plan.stop_timeout);
                eprintln!(
                    "\npaceline: {}: no new requests; waiting up to {:.0}s for {} in flight \
                     (again to exit at once)",
                    signal.name(),
                    plan.stop_timeout.as_secs_f64(),
                    engine.concurrency().in_flight()
                );
            }
            _ = failed.notified(), if !store_failed => {
                store_failed = true;
                engine.stop_admitting();
            }
            _ = sleep_until(deadline) => break None,
        }
    };
    let rates = progress.stop().await;
    // Ending the engine's future closes the event channel once its attempts are done; a feeder
    // waiting for a place in the window gives up.
    drop(engine_run);
    window.close();
    if exit.is_none() {
        // In-flight requests did not finish in time: their results are not waited for.
        let _ = stop_tx.send(true);
    }
    let wall = started.elapsed();
    let traces = match plan.tracer.clone() {
        Some(tracer) => {
            let url = tracer.endpoint().traces_url.clone();
            let tally = tokio::task::spawn_blocking(move || tracer.shutdown())
                .await
                .map_err(internal)?;
            Some((url, tally))
        }
        None => None,
    };
    let outcome = writer_task.await.map_err(internal)?;
    let feed_result = feeder.await.map_err(internal)?;
    drop(stop_tx);

    let (unsent_reason, outcome_name) = match (&exit, interrupted) {
        (_, Some(signal)) => (
            Some(format!("interrupted by {}", signal.name())),
            "interrupted",
        ),
        // Which keys were removed and why is in the summary's "keys removed" line.
        (Some(EngineExit::NoKeys { .. }), None) => {
            (Some("no usable API key left".to_string()), "no_keys")
        }
        _ if outcome.error.is_some() || feed_result.is_err() => (None, "error"),
        _ => (None, "completed"),
    };
    let writer_store = outcome.store;
    let known = keys::snapshot(&pool, &configs, run_id);
    let priced = batch_lines.as_ref().and(plan.prices.clone());
    let input = plan.input.clone();
    let (closed, via) = tokio::task::spawn_blocking(move || {
        let closed = close(&writer_store, run_id, outcome_name, &known);
        (closed, priced.map(|p| via_lines(&writer_store, &input, &p)))
    })
    .await
    .map_err(internal)?;
    drop(lock);
    if let Some(e) = outcome.error {
        return Err(e.into());
    }
    feed_result?;
    let (counts, figures) = closed?;

    let mut summary = progress::summary(
        &stats,
        &pool,
        figures.as_ref(),
        wall,
        &plan.output.display().to_string(),
    );
    if let Some(line) = progress::rate_line(&rates) {
        summary.push_str(&line);
    }
    if let Some(lines) = batch_lines {
        summary.push_str(&lines);
    }
    if let Some(via) = via {
        summary.push_str(&via?);
    }
    if let Some((url, tally)) = traces {
        summary.push_str(&format!(
            "  traces          {} spans exported to {url}, {} dropped\n",
            tally.exported, tally.dropped
        ));
    }
    let earlier = start_counts.done + start_counts.failed;
    if earlier > 0 {
        summary.push_str(&format!(
            "  job             {} succeeded, {} failed of {} ({earlier} finished in earlier runs)\n",
            counts.done,
            counts.failed,
            counts.total()
        ));
    }
    summary.push_str(&summary_end(
        skipped,
        &plan.errors_file,
        unsent_reason.as_deref(),
        &counts,
        &state_path,
    ));
    Ok(report(counts, skipped, unsent_reason, interrupted, summary))
}

/// The summary's last lines, the same whichever way the requests went: the invalid lines
/// skipped, what was left unsent and why, and the state.
fn summary_end(
    skipped: u64,
    errors_file: &std::path::Path,
    unsent_reason: Option<&str>,
    counts: &StateCounts,
    state_path: &std::path::Path,
) -> String {
    let mut out = String::new();
    if skipped > 0 {
        out.push_str(&format!(
            "  skipped         {skipped} invalid lines (see {})\n",
            errors_file.display()
        ));
    }
    if let Some(reason) = unsent_reason {
        out.push_str(&format!(
            "  stopped         {} requests left ({reason}); run the same command to resume\n",
            counts.unfinished()
        ));
    }
    out.push_str(&format!("  state           {}\n", state_path.display()));
    out
}

/// How many requests may be between the feeder and the store at once: twice the engine's
/// in-flight bound (room for retries waiting their turn) plus the job queue. It bounds the
/// memory held by requests whose results are not yet with the writer: the engine frees a
/// request's in-flight place before handing its result on, so without this bound a writer
/// that falls behind lets finished requests pile up in the engine without limit.
fn window_size(engine: &EngineConfig) -> usize {
    2 * engine.concurrency.unwrap_or(engine.max_concurrency).max(1) + JOB_QUEUE
}

fn report(
    counts: StateCounts,
    skipped: u64,
    stopped: Option<String>,
    interrupted: Option<Interrupt>,
    summary: String,
) -> RunReport {
    RunReport {
        succeeded: counts.done,
        failed: counts.failed,
        unsent: counts.unfinished(),
        skipped,
        stopped,
        interrupted,
        summary,
    }
}

/// Notes printed before a run starts: what resuming found and repaired.
fn note_start(prepared: &setup::Prepared, plan: &RunPlan, out: &mut String) {
    let c = &prepared.counts;
    match prepared.mode {
        RunMode::New => {}
        RunMode::Resume => out.push_str(&format!(
            "paceline: resuming: {} of {} requests already have a result; {} to send{}\n",
            c.done + c.failed,
            c.total(),
            c.pending,
            if prepared.resent > 0 {
                format!(
                    " ({} were in flight when the last run stopped: sent again)",
                    prepared.resent
                )
            } else {
                String::new()
            }
        )),
        RunMode::RetryFailed => out.push_str(&format!(
            "paceline: retrying {} failed requests ({} to send in all)\n",
            prepared.retried, c.pending
        )),
    }
    let r = &prepared.reconciled;
    if prepared.mode != RunMode::New && !plan.restart && r.repaired() {
        out.push_str(&format!(
            "paceline: output {} brought up to date with the state: {} lines kept, {} appended{}{}\n",
            plan.output.display(),
            r.kept,
            r.appended,
            if r.dropped > 0 {
                format!(", {} without a stored result removed", r.dropped)
            } else {
                String::new()
            },
            if r.torn { ", a torn last line cut" } else { "" }
        ));
    }
}

/// Record the end of a run (with what it knew of its keys) and count the job's requests
/// (requests without a result go back to pending); a finished job's WAL is folded back into
/// the database.
fn close(
    store: &Store,
    run: i64,
    outcome: &str,
    known: &(Vec<KeyLimit>, Vec<KeyRemoval>),
) -> Result<(StateCounts, Option<figures::RunFigures>), RunError> {
    // Every attempt has ended (or was abandoned): what has no result is pending again.
    state::reset_in_flight(store)?;
    keys::record(store, &known.0, &known.1)?;
    runs::end(store, run, outcome)?;
    let counts = state::counts(store)?;
    if counts.unfinished() == 0 {
        // Best effort: only makes the files smaller.
        let _ = store
            .conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
    Ok((counts, figures::of_run(store, run)?))
}

/// A second signal: exit at once (the job stays resumable).
fn exit_now(signal: Interrupt) -> ! {
    eprintln!(
        "\npaceline: second {}: exiting now; run the same command to resume",
        signal.name()
    );
    crate::telemetry::flush_before_exit();
    std::process::exit(i32::from(signal.exit_code()))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What setup handed over, for the live or the batch path.
struct RunStart {
    lock: crate::store::StateLock,
    store: Store,
    output: crate::store::OutputAppender,
    run_id: i64,
    start_counts: StateCounts,
    skipped: u64,
    state_path: PathBuf,
}

/// Tell the batch path to stop, and what becomes of the provider's batches.
fn stop_with(stop: &watch::Sender<Option<OnInterrupt>>, signal: Interrupt, choice: OnInterrupt) {
    let _ = stop.send(Some(choice));
    eprintln!(
        "\npaceline: {}: stopping; the provider's batches are {} (again to exit at once)",
        signal.name(),
        match choice {
            OnInterrupt::Cancel => "being cancelled: what they finished is collected on resume",
            OnInterrupt::Leave => "left running: the same command collects them",
        }
    );
}

/// How the batch path ended.
enum BatchPhase {
    /// The run is over (every request has a result, or it was interrupted).
    Ended(RunReport),
    /// `--via auto` handed what is left to the live path: the run goes on with `start`;
    /// `lines` are the batch path's part of the summary.
    HandedOver {
        /// Setup's hand-over, back from the writer (boxed: it is large beside a report).
        start: Box<RunStart>,
        /// The batch path's lines of the summary.
        lines: String,
    },
}

/// `--via auto`: the deadline, counted from the job's start.
#[derive(Debug, Clone)]
pub struct AutoPlan {
    /// How long after the job began it must have ended.
    pub deadline: Duration,
    /// Time kept for cancelling the batches and collecting them.
    pub margin: Duration,
    /// The live limits of each model.
    pub limits: ModelLimits,
}

/// The hand-over rule of this run: the deadline counted from the job's creation in the state,
/// so a resumed job keeps the deadline it was given.
fn deadline_rule(store: &Store, auto: &AutoPlan) -> Result<DeadlineRule, RunError> {
    let created_at =
        crate::store::job::load(store)?.map_or_else(crate::store::now_ms, |job| job.created_at);
    let due_ms =
        created_at.saturating_add(i64::try_from(auto.deadline.as_millis()).unwrap_or(i64::MAX));
    let left = u64::try_from(due_ms.saturating_sub(crate::store::now_ms())).unwrap_or(0);
    Ok(DeadlineRule {
        deadline: Instant::now() + Duration::from_millis(left),
        limits: auto.limits.clone(),
        margin: auto.margin,
    })
}

/// The summary's lines of how many requests went each way and what they cost against all
/// live.
fn via_lines(store: &Store, input: &InputSpec, prices: &PriceTable) -> Result<String, RunError> {
    let used: HashMap<u64, Used> = shards::finished_ways(store)?
        .into_iter()
        .map(|(line, prompt, completion, by_batch)| {
            (
                line,
                Used {
                    prompt,
                    completion,
                    by_batch,
                },
            )
        })
        .collect();
    Ok(spent(input, &used, prices)?.lines())
}

/// `--via batch` (and `--via auto` before any hand-over): the provider's Batch API drives the
/// job ([`offline::drive`]); its results go through the same writer as live results.
async fn run_via_batch(
    plan: &RunPlan,
    settings: BatchSettings,
    start: RunStart,
) -> Result<BatchPhase, RunError> {
    let RunStart {
        lock,
        store,
        output,
        run_id,
        start_counts,
        skipped,
        state_path,
    } = start;
    let handover: Option<Arc<dyn Handover>> = match &plan.auto {
        Some(auto) => Some(Arc::new(deadline_rule(&store, auto)?)),
        None => None,
    };
    let (event_tx, event_rx) = mpsc::channel::<Event>(4096);
    let (dispatched_tx, dispatched_rx) = mpsc::channel::<Dispatched>(1);
    drop(dispatched_tx);
    let (writer_stop_tx, writer_stop_rx) = watch::channel(false);
    let inputs = WriterInputs {
        events: event_rx,
        dispatched: dispatched_rx,
        stop: writer_stop_rx,
        failed: Arc::new(Notify::new()),
        window: Arc::new(Semaphore::new(0)),
        format: plan.output_format,
    };
    let handle = tokio::runtime::Handle::current();
    let writer_task =
        tokio::task::spawn_blocking(move || writer::run(store, output, run_id, inputs, handle));
    let offline_plan = OfflinePlan {
        input: plan.input.clone(),
        state: state_path.clone(),
        verbose: plan.display != Display::Quiet,
        via: settings,
    };
    let on_interrupt = offline_plan.via.on_interrupt;
    let (stop_tx, stop_rx) = watch::channel(None);
    let mut signals = signals::Signals::listen()
        .map_err(|e| RunError::Internal(format!("cannot listen for signals: {e}")))?;
    let started = Instant::now();
    let mut driving = Box::pin(offline::drive(offline_plan, event_tx, stop_rx, handover));
    let mut interrupted: Option<Interrupt> = None;
    let mut asking: Option<tokio::task::JoinHandle<OnInterrupt>> = None;
    let driven = loop {
        tokio::select! {
            done = &mut driving => break done,
            signal = signals.recv() => {
                if interrupted.is_some() {
                    exit_now(signal);
                }
                interrupted = Some(signal);
                match on_interrupt {
                    Some(choice) => stop_with(&stop_tx, signal, choice),
                    None if prompt::can_ask() => {
                        asking = Some(tokio::task::spawn_blocking(prompt::ask));
                    }
                    None => stop_with(&stop_tx, signal, OnInterrupt::Leave),
                }
            }
            answer = async {
                match asking.as_mut() {
                    Some(question) => question.await,
                    None => std::future::pending().await,
                }
            }, if asking.is_some() => {
                asking = None;
                let choice = answer.unwrap_or(OnInterrupt::Leave);
                if let Some(signal) = interrupted {
                    stop_with(&stop_tx, signal, choice);
                }
            }
        }
    };
    drop(driving);
    let outcome = writer_task.await.map_err(internal)?;
    drop(writer_stop_tx);
    let writer_store = outcome.store;
    let failure = match (driven, outcome.error) {
        (Ok(report_of), None) => Ok(report_of),
        (_, Some(e)) => Err(RunError::from(e)),
        (Err(e), None) => Err(RunError::from(e)),
    };
    let report_of = match failure {
        Ok(report_of) => report_of,
        Err(failure) => {
            // Record the run's end before reporting why it could not go on.
            let name = if interrupted.is_some() {
                "interrupted"
            } else {
                "error"
            };
            let closed = tokio::task::spawn_blocking(move || {
                close(&writer_store, run_id, name, &Default::default())
            })
            .await
            .map_err(internal)?;
            drop(lock);
            closed?;
            return Err(failure);
        }
    };
    let wall = started.elapsed();
    let batches = format!(
        "  batches         {} created, {} found from an earlier run, {} collected, {} refused for the queue limit{}\n",
        report_of.created,
        report_of.adopted,
        report_of.collected,
        report_of.refusals,
        if report_of.cancelled > 0 {
            format!(", {} cancelled", report_of.cancelled)
        } else {
            String::new()
        },
    );
    if interrupted.is_none() && plan.auto.is_some() {
        let left = state::counts(&writer_store)?.unfinished();
        if left > 0 {
            let lines = format!(
                "  batch path      {:.1}s, then {left} requests handed to live requests for the deadline\n{batches}",
                wall.as_secs_f64()
            );
            let start = RunStart {
                lock,
                store: writer_store,
                output: outcome.output,
                run_id,
                start_counts,
                skipped,
                state_path,
            };
            return Ok(BatchPhase::HandedOver {
                start: Box::new(start),
                lines,
            });
        }
    }
    let outcome_name = if interrupted.is_some() {
        "interrupted"
    } else {
        "completed"
    };
    let priced = plan.prices.clone();
    let input = plan.input.clone();
    let (closed, via) = tokio::task::spawn_blocking(move || {
        let closed = close(&writer_store, run_id, outcome_name, &Default::default());
        (closed, priced.map(|p| via_lines(&writer_store, &input, &p)))
    })
    .await
    .map_err(internal)?;
    drop(lock);
    let (counts, _) = closed?;
    let mut summary = format!(
        "paceline: --via {}: {} succeeded, {} failed of {} in {:.1}s\n{batches}  output          {}\n",
        if plan.auto.is_some() { "auto" } else { "batch" },
        counts.done,
        counts.failed,
        counts.total(),
        wall.as_secs_f64(),
        plan.output.display()
    );
    if let Some(via) = via {
        summary.push_str(&via?);
    }
    let earlier = start_counts.done + start_counts.failed;
    if earlier > 0 {
        summary.push_str(&format!("  earlier runs    {earlier} requests finished\n"));
    }
    let unsent_reason = interrupted.map(|signal| format!("interrupted by {}", signal.name()));
    summary.push_str(&summary_end(
        skipped,
        &plan.errors_file,
        unsent_reason.as_deref(),
        &counts,
        &state_path,
    ));
    Ok(BatchPhase::Ended(report(
        counts,
        skipped,
        unsent_reason,
        interrupted,
        summary,
    )))
}
