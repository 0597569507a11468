//! Before anything is sent: take the state's lock, open (or create) the job, check that the input
//! is the one the job began with, and bring the output up to date with the store.
//!
//! It must not know the engine or anything sent: it works on the lock, the input, the store and the
//! output file only.

use super::RunError;
use crate::batch::{
    InputReader, InputSpec, LineError, OutputFormat, ValidationReport, write_errors_file,
};
use crate::provider::Provider;
use crate::store::output::{self, ReconcileError};
use crate::store::runs::{self, RunMode};
use crate::store::state::{self, Insert, RequestInserter, StateCounts};
use crate::store::{
    InputIdentity, JobSettings, OutputAppender, Reconciled, StateLock, Store, StoreError, job,
};
use std::path::PathBuf;

/// What setup needs.
#[derive(Debug, Clone)]
pub(super) struct SetupPlan {
    pub input: InputSpec,
    pub output: PathBuf,
    pub state: PathBuf,
    pub restart: bool,
    pub retry_failed: bool,
    pub skip_invalid: bool,
    pub errors_file: PathBuf,
    pub output_format: OutputFormat,
    /// Who the requests go to: a line for an endpoint it does not serve is invalid.
    pub provider: Provider,
}

/// A job ready to run.
#[derive(Debug)]
pub(super) struct Prepared {
    pub lock: StateLock,
    pub store: Store,
    pub output: OutputAppender,
    pub reconciled: Reconciled,
    pub run: i64,
    pub mode: RunMode,
    /// Requests by state once in-flight rows went back to pending.
    pub counts: StateCounts,
    /// Invalid lines skipped when the job began.
    pub skipped: u64,
    /// Requests in flight when the previous run ended (sent again).
    pub resent: usize,
    /// Failures put back to pending by `--retry-failed`.
    pub retried: usize,
}

impl From<ReconcileError> for RunError {
    fn from(e: ReconcileError) -> Self {
        match e {
            ReconcileError::Output(e) => RunError::Output(e),
            ReconcileError::Store(e) => RunError::Store(e),
        }
    }
}

fn non_empty(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// Forget a state that never held a job (its first run failed before the job began).
fn discard(store: Store, lock: StateLock) {
    let path = store.path().to_path_buf();
    drop(store);
    let _ = Store::remove_files(&path);
    // Dropping the lock removes its file.
    drop(lock);
}

/// Lock, open, check and reconcile (a blocking function: it reads the whole input).
pub(super) fn prepare(plan: &SetupPlan) -> Result<Prepared, RunError> {
    let lock = StateLock::acquire(&plan.state)?;
    if plan.restart {
        Store::remove_files(&plan.state)?;
    }
    let fresh = !plan.state.exists();
    if fresh && !plan.restart && !plan.retry_failed && non_empty(&plan.output) {
        return Err(RunError::OutputExists(plan.output.clone()));
    }
    let mut store = Store::open(&plan.state)?;
    let settings = JobSettings::of(&plan.input).with_output_format(plan.output_format);
    let identity = match InputIdentity::of_file(&plan.input.path) {
        Ok(identity) => identity,
        Err(e) => {
            if fresh {
                discard(store, lock);
            }
            return Err(e.into());
        }
    };
    let (mode, skipped) = match job::load(&store)? {
        Some(job) => {
            job.check_same(&plan.state, &plan.input.path, &identity, &settings)?;
            let mode = if plan.retry_failed {
                RunMode::RetryFailed
            } else {
                RunMode::Resume
            };
            (mode, job.skipped)
        }
        None if plan.retry_failed => {
            let path = plan.state.clone();
            if fresh {
                discard(store, lock);
            }
            return Err(StoreError::NoJob { path }.into());
        }
        None => {
            if !plan.restart && non_empty(&plan.output) {
                discard(store, lock);
                return Err(RunError::OutputExists(plan.output.clone()));
            }
            match begin_job(&mut store, plan, identity, settings) {
                Ok(skipped) => (RunMode::New, skipped),
                Err(e) => {
                    discard(store, lock);
                    return Err(e);
                }
            }
        }
    };
    let resent = state::reset_in_flight(&store)?;
    let retried = if plan.retry_failed {
        state::retry_failed(&mut store)?
    } else {
        0
    };
    job::set_output(&store, &plan.output)?;
    let run = runs::start(&store, mode)?;
    let (output, reconciled) = output::reconcile(&store, &plan.output)?;
    let counts = state::counts(&store)?;
    Ok(Prepared {
        lock,
        store,
        output,
        reconciled,
        run,
        mode,
        counts,
        skipped,
        resent,
        retried,
    })
}

/// Validate the input and record the job and its requests in one transaction: everything is
/// checked before anything is sent, duplicates are found by the store's unique index (so no set
/// of ids is held in memory), and an invalid input leaves no job behind.
fn begin_job(
    store: &mut Store,
    plan: &SetupPlan,
    identity: InputIdentity,
    settings: JobSettings,
) -> Result<u64, RunError> {
    let mut record = job::new_record(&plan.input.path, identity, settings, &plan.output);
    let path = store.path().to_path_buf();
    let sql = |source| StoreError::Sql {
        path: path.clone(),
        action: "write",
        source,
    };
    let tx = store.conn_mut().transaction().map_err(sql)?;
    let mut report = ValidationReport::default();
    {
        let mut inserter = RequestInserter::new(&tx).map_err(sql)?;
        let mut reader = InputReader::open(&plan.input)?;
        for item in &mut reader {
            match item {
                Ok(request) if !plan.provider.speaks(request.endpoint) => {
                    report.errors.push(LineError::new(
                        request.line,
                        format!(
                            "{} is not served by provider {}{}",
                            request.endpoint.path(),
                            plan.provider.name(),
                            plan.provider.endpoints_hint()
                        ),
                    ));
                }
                Ok(request) => match inserter
                    .add(&request.custom_id, request.line)
                    .map_err(sql)?
                {
                    Insert::Added => report.valid += 1,
                    Insert::Duplicate(first) => report.errors.push(LineError::new(
                        request.line,
                        format!(
                            "duplicate custom_id `{}` (first seen on line {first})",
                            request.custom_id
                        ),
                    )),
                },
                Err(error) => report.errors.push(error),
            }
        }
        reader.finish()?;
    }
    report.invalid = report.errors.len() as u64;
    if report.invalid > 0 {
        if !plan.skip_invalid {
            let mut text = report.render(&plan.input.path, 20);
            text.push_str(
                "\nnothing was sent; fix these lines, or pass --skip-invalid to send the valid ones",
            );
            return Err(RunError::InvalidInput(text));
        }
        write_errors_file(&plan.input, &report, &plan.errors_file)?;
    }
    record.total = report.valid;
    record.skipped = report.invalid;
    job::create(&tx, &record).map_err(sql)?;
    tx.commit().map_err(sql)?;
    Ok(report.invalid)
}
