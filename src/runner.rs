//! A whole batch run: validate the input, feed it to the engine, write each result once.
//!
//! input file → [`crate::batch::validate()`] (everything checked before anything is sent) →
//! [`crate::batch::InputReader`] on a blocking thread → [`crate::engine::Engine`] →
//! results → [`crate::batch::OutputWriter`] on a blocking thread.

use crate::batch::{
    InputError, InputReader, InputSpec, OutputError, OutputRecord, OutputWriter, ProviderResponse,
    ValidationReport, validate, write_errors_file,
};
use crate::engine::stats::Stats;
use crate::engine::{Engine, EngineConfig, EngineExit, Event, Finished, Job, Verdict};
use crate::progress::{self, Display, Progress};
use crate::quota::QuotaConfig;
use crate::upstream::{ApiKey, KeyPool, Upstream};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Everything a run needs, validated.
pub struct RunPlan {
    /// What to read.
    pub input: InputSpec,
    /// Where results go.
    pub output: PathBuf,
    /// Proceed with the valid lines when some are invalid.
    pub skip_invalid: bool,
    /// Where invalid lines are written with `skip_invalid`.
    pub errors_file: PathBuf,
    /// Start over even if the output exists.
    pub restart: bool,
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
}

/// How a run ended.
#[derive(Debug)]
pub struct RunReport {
    /// Requests that succeeded.
    pub succeeded: u64,
    /// Requests that failed for good.
    pub failed: u64,
    /// Requests left without a result (no usable key left).
    pub unsent: u64,
    /// Invalid input lines skipped.
    pub skipped: u64,
    /// Why the engine stopped early, if it did.
    pub stopped: Option<String>,
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
    /// The output already exists.
    #[error(
        "{0} already exists: pass --restart to start over (its content will be replaced), or choose another -o"
    )]
    OutputExists(PathBuf),
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RunError {
    /// Whether the user's input or flags are at fault (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RunError::InvalidInput(_) | RunError::Input(_) | RunError::OutputExists(_)
        )
    }
}

fn record_for(finished: Finished) -> OutputRecord {
    let answer_record = |a: &crate::engine::ProviderAnswer| {
        ProviderResponse::new(
            a.status,
            a.request_id.clone().unwrap_or_default(),
            ProviderResponse::body_from_bytes(&a.body),
        )
    };
    match finished.verdict {
        Verdict::Succeeded(answer) => {
            let response = answer_record(&answer);
            OutputRecord::success(
                finished.custom_id,
                response.status_code,
                response.request_id,
                response.body,
            )
        }
        Verdict::Failed {
            answer,
            code,
            message,
        } => OutputRecord::failure(
            finished.custom_id,
            answer.as_ref().map(answer_record),
            code,
            message,
        ),
    }
}

/// Validate the whole input first; with `skip_invalid`, write the errors file and go on.
async fn check_input(plan: &RunPlan) -> Result<ValidationReport, RunError> {
    let spec = plan.input.clone();
    let report = tokio::task::spawn_blocking(move || validate(&spec))
        .await
        .map_err(|e| RunError::Internal(e.to_string()))??;
    if report.invalid > 0 {
        if !plan.skip_invalid {
            let mut text = report.render(&plan.input.path, 20);
            text.push_str("\nnothing was sent; fix these lines, or pass --skip-invalid to send the valid ones");
            return Err(RunError::InvalidInput(text));
        }
        let (spec, errors_file) = (plan.input.clone(), plan.errors_file.clone());
        let report = report.clone();
        tokio::task::spawn_blocking(move || write_errors_file(&spec, &report, &errors_file))
            .await
            .map_err(|e| RunError::Internal(e.to_string()))??;
    }
    Ok(report)
}

/// Read valid, first-seen requests into the engine's channel (on a blocking thread).
fn feed(
    spec: InputSpec,
    default_max_tokens: u64,
    jobs: mpsc::Sender<Job>,
) -> Result<(), InputError> {
    let mut reader = InputReader::open(&spec)?;
    let mut seen = HashSet::new();
    for item in reader.by_ref() {
        let Ok(request) = item else { continue };
        if !seen.insert(request.custom_id.clone()) {
            continue;
        }
        let job = Job::new(
            request.custom_id,
            request.endpoint,
            &request.body,
            default_max_tokens,
        );
        if jobs.blocking_send(job).is_err() {
            break;
        }
    }
    reader.finish()
}

/// Run a batch to the end.
pub async fn run(plan: RunPlan) -> Result<RunReport, RunError> {
    let report = check_input(&plan).await?;
    if !plan.restart && std::fs::metadata(&plan.output).is_ok_and(|m| m.len() > 0) {
        return Err(RunError::OutputExists(plan.output.clone()));
    }
    if plan.output.exists() {
        std::fs::remove_file(&plan.output).map_err(|source| OutputError::Open {
            path: plan.output.clone(),
            source,
        })?;
    }
    let mut writer = OutputWriter::open(&plan.output)?;

    let pool = Arc::new(KeyPool::new(plan.keys));
    let engine = Engine::new(plan.engine, Arc::clone(&pool), plan.upstream);
    let stats = engine.stats();
    stats.total.store(report.valid, Ordering::Relaxed);

    let (job_tx, job_rx) = mpsc::channel::<Job>(1024);
    let (done_tx, mut done_rx) = mpsc::channel::<Event>(1024);
    let spec = plan.input.clone();
    let default_max_tokens = plan.default_max_tokens;
    let feeder = tokio::task::spawn_blocking(move || feed(spec, default_max_tokens, job_tx));
    let writer_task = tokio::task::spawn_blocking(move || -> Result<(), OutputError> {
        while let Some(event) = done_rx.blocking_recv() {
            if let Event::Finished(finished) = event {
                writer.write(&record_for(finished))?;
            }
        }
        writer.flush()?;
        writer.sync()
    });

    let started = Instant::now();
    let progress = Progress::start(
        plan.display,
        Arc::clone(&stats),
        Arc::clone(&pool),
        Arc::clone(engine.concurrency()),
    );
    let exit = Arc::clone(&engine).run(job_rx, done_tx).await;
    progress.stop().await;
    drop(engine);
    let wall = started.elapsed();

    feeder
        .await
        .map_err(|e| RunError::Internal(e.to_string()))??;
    writer_task
        .await
        .map_err(|e| RunError::Internal(e.to_string()))??;

    let (unsent, stopped) = match exit {
        EngineExit::Completed => (0, None),
        EngineExit::NoKeys { reason, unsent } => {
            (unsent, Some(format!("no usable API key left ({reason})")))
        }
        EngineExit::Stopped { pending } => (pending, Some("interrupted".to_string())),
    };
    let mut summary = progress::summary(&stats, &pool, wall, &plan.output.display().to_string());
    if report.invalid > 0 {
        summary.push_str(&format!(
            "  skipped         {} invalid lines (see {})\n",
            report.invalid,
            plan.errors_file.display()
        ));
    }
    if let Some(reason) = &stopped {
        summary.push_str(&format!(
            "  stopped         {unsent} requests not sent: {reason}\n"
        ));
    }
    Ok(RunReport {
        succeeded: Stats::get(&stats.succeeded),
        failed: Stats::get(&stats.failed),
        unsent,
        skipped: report.invalid,
        stopped,
        summary,
    })
}
