//! The feeder: streams the input a second time and hands the engine the requests whose rows are
//! pending, in input order — a merge of the input with the store's pending rows, page by page,
//! so neither the input nor the list of requests is ever held in memory.
//!
//! It must not know what the engine does with a job nor the output: it reads the input and the
//! store's pending rows, and hands on jobs and "dispatched" notes.

use super::RunError;
use crate::batch::{InputReader, InputSpec};
use crate::engine::Job;
use crate::engine::trace::JobTrace;
use crate::store::Store;
use crate::store::state::{self, PendingRequest};
use crate::store::writer::Dispatched;
use crate::telemetry::otlp::Tracer;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::{Semaphore, mpsc};

/// Pending rows read per query (each query is a short read transaction, so the writer's
/// checkpoints are never held back for long).
const PAGE: usize = 512;

/// Where the next pending request is in the input.
enum Found {
    Request(Box<crate::batch::BatchRequest>),
    /// The input no longer matches the job at this line.
    Changed(String),
    /// The input ended (or could not be read) before this line.
    Ended,
}

fn find(reader: &mut InputReader, want: &PendingRequest) -> Found {
    for item in reader.by_ref() {
        match item {
            Ok(request) if request.line < want.line => {}
            Err(error) if error.line < want.line => {}
            Ok(request) if request.line == want.line && request.custom_id == want.custom_id => {
                return Found::Request(Box::new(request));
            }
            Ok(request) => {
                return Found::Changed(format!(
                    "line {} holds custom_id `{}`, the job expects `{}` on line {}",
                    request.line, request.custom_id, want.custom_id, want.line
                ));
            }
            Err(error) => return Found::Changed(error.to_string()),
        }
    }
    Found::Ended
}

/// Send every pending request of the job in `state` to `jobs`, telling the writer first.
/// Each request first takes a place in `window` (given back by the writer when it receives the
/// request's result). Returns when all are sent, the engine stops taking them, or the window is
/// closed.
#[allow(
    clippy::too_many_arguments,
    reason = "what the feeder reads and where it hands jobs on, each from its one caller"
)]
pub(super) fn feed(
    spec: &InputSpec,
    state: &Path,
    default_max_tokens: u64,
    tracer: Option<&Tracer>,
    jobs: mpsc::Sender<Job>,
    dispatched: mpsc::Sender<Dispatched>,
    window: Arc<Semaphore>,
    runtime: tokio::runtime::Handle,
) -> Result<(), RunError> {
    let store = Store::open_existing(state)?;
    let mut reader = InputReader::open(spec)?;
    let mut after = 0;
    loop {
        let page = state::pending_page(&store, after, PAGE)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.id;
        for want in page {
            let request = match find(&mut reader, &want) {
                Found::Request(request) => request,
                Found::Changed(detail) => {
                    return Err(RunError::InputChangedDuringRun {
                        path: spec.path.clone(),
                        detail,
                    });
                }
                Found::Ended => {
                    reader.finish()?;
                    return Err(RunError::InputChangedDuringRun {
                        path: spec.path.clone(),
                        detail: format!(
                            "it ended before line {} (custom_id `{}`)",
                            want.line, want.custom_id
                        ),
                    });
                }
            };
            match runtime.block_on(window.acquire()) {
                // The writer adds the place back when the result arrives.
                Ok(place) => place.forget(),
                // The run is over (the engine has stopped).
                Err(_) => return Ok(()),
            }
            let mut job = Job::new(
                request.custom_id,
                request.endpoint,
                &request.body,
                default_max_tokens,
            );
            job.attempts = want.attempts;
            if let Some(tracer) = tracer {
                job = job.with_trace(JobTrace::Request {
                    span: tracer.span(None),
                    start: SystemTime::now(),
                });
            }
            let note = Dispatched {
                id: want.id,
                custom_id: want.custom_id,
            };
            if dispatched.blocking_send(note).is_err() || jobs.blocking_send(job).is_err() {
                return Ok(());
            }
        }
    }
}
