//! The job store's writer alone: how many results a second it commits (issue 4 asks for at least
//! 20,000, so that the store is never what limits a run).
//!
//! ```text
//! cargo bench --bench store -- [N]        (default N = 200,000)
//! ```
//!
//! A job of N requests is recorded in a temporary state database the way `paceline run` records
//! one, then the writer ([`paceline::store::writer::run`], on a blocking thread as in a run) is fed
//! through its channels exactly what the feeder and the engine send for a request that succeeds
//! at its first attempt: a "dispatched" note, an attempt record and the finished request, whose
//! body is a chat completion as the mock answers it. The clock runs from the first note sent to
//! the writer's return (every result committed and appended to the output), so it includes
//! building the output lines, the transactions and the output file.

use paceline::batch::{InputSpec, OutputFormat};
use paceline::engine::{AttemptRecord, Decision, Event, Finished, ProviderAnswer, Verdict};
use paceline::store::runs::{self, RunMode};
use paceline::store::state::{Insert, RequestInserter};
use paceline::store::writer::{self, Dispatched, WriterInputs};
use paceline::store::{InputIdentity, JobSettings, Store, job, output};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

/// Requests fed when no count is given.
const DEFAULT_N: u64 = 200_000;
/// What issue 4 requires.
const TARGET_PER_SEC: f64 = 20_000.0;
/// The runner's channel capacities (`src/runner/mod.rs`).
const CHANNEL: usize = 4096;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; the first number is N.
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse::<u64>().ok())
        .unwrap_or(DEFAULT_N);
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("out.jsonl.paceline.db");
    let out = dir.path().join("out.jsonl");

    let setup = Instant::now();
    let (store, run) = new_job(&state, &dir.path().join("in.jsonl"), &out, n)?;
    let (appender, _) = output::reconcile(&store, &out)?;
    println!(
        "store bench: {n} requests recorded in {:.2}s",
        setup.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (elapsed, outcome) = runtime.block_on(async move {
        let (event_tx, event_rx) = mpsc::channel::<Event>(CHANNEL);
        let (dispatched_tx, dispatched_rx) = mpsc::channel::<Dispatched>(CHANNEL);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let inputs = WriterInputs {
            events: event_rx,
            dispatched: dispatched_rx,
            stop: stop_rx,
            failed: Arc::new(Notify::new()),
            window: Arc::new(Semaphore::new(0)),
            format: OutputFormat::OpenAi,
        };
        let handle = tokio::runtime::Handle::current();
        let started = Instant::now();
        let writer =
            tokio::task::spawn_blocking(move || writer::run(store, appender, run, inputs, handle));
        // Row ids follow input order from 1, as the feeder reads them.
        for i in 1..=n {
            let custom_id = format!("r{i}");
            let note = Dispatched {
                id: i as i64,
                custom_id: custom_id.clone(),
            };
            if dispatched_tx.send(note).await.is_err() {
                break;
            }
            let attempt = Event::Attempt(attempt_record(&custom_id));
            let finished = Event::Finished(finished(custom_id, i));
            if event_tx.send(attempt).await.is_err() || event_tx.send(finished).await.is_err() {
                break;
            }
        }
        drop((event_tx, dispatched_tx));
        let outcome = writer.await;
        (started.elapsed(), outcome)
    });
    let outcome = outcome?;
    if let Some(e) = outcome.error {
        return Err(e.into());
    }
    let lines = std::fs::read_to_string(&out)?.lines().count() as u64;
    if lines != n {
        return Err(format!("the output holds {lines} lines, expected {n}").into());
    }
    let per_sec = n as f64 / elapsed.as_secs_f64();
    println!(
        "store bench: {n} results committed in {:.2}s: {:.0} results/s ({} the {:.0}/s target)",
        elapsed.as_secs_f64(),
        per_sec,
        if per_sec >= TARGET_PER_SEC {
            "meets"
        } else {
            "BELOW"
        },
        TARGET_PER_SEC
    );
    for suffix in ["", "-wal"] {
        let mut name = state.as_os_str().to_os_string();
        name.push(suffix);
        if let Ok(meta) = std::fs::metadata(&name) {
            println!(
                "store bench: {} {:.1} MB",
                Path::new(&name)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                meta.len() as f64 / 1e6
            );
        }
    }
    Ok(())
}

/// A state holding a new job of `n` requests `r1..rN`, and the number of its first run.
fn new_job(
    state: &Path,
    input: &Path,
    out: &Path,
    n: u64,
) -> Result<(Store, i64), Box<dyn std::error::Error>> {
    std::fs::write(input, b"")?;
    let mut store = Store::open(state)?;
    let spec = InputSpec::new(input);
    let mut record = job::new_record(
        input,
        InputIdentity::of_file(input)?,
        JobSettings::of(&spec),
        out,
    );
    record.total = n;
    let tx = store.conn_mut().transaction()?;
    {
        let mut inserter = RequestInserter::new(&tx)?;
        for i in 1..=n {
            if inserter.add(&format!("r{i}"), i)? != Insert::Added {
                return Err(format!("r{i} inserted twice").into());
            }
        }
    }
    job::create(&tx, &record)?;
    tx.commit()?;
    let run = runs::start(&store, RunMode::New)?;
    Ok((store, run))
}

/// The attempt record of a first attempt that succeeded.
fn attempt_record(custom_id: &str) -> AttemptRecord {
    AttemptRecord {
        custom_id: custom_id.to_string(),
        attempt: 1,
        key: "OPENAI_API_KEY#1a2b3c4d".to_string(),
        sent_at: std::time::SystemTime::now(),
        tokens: 13,
        status: Some(200),
        latency: Duration::from_millis(3),
        waited_quota: Duration::ZERO,
        paused: false,
        waited_backoff: Duration::ZERO,
        cause: None,
        decision: Decision::Succeeded,
        retry_in: Duration::ZERO,
        via_batch: false,
    }
}

/// A request that succeeded at its first attempt, answered as the mock answers.
fn finished(custom_id: String, i: u64) -> Finished {
    let body = format!(
        concat!(
            r#"{{"id":"chatcmpl-{i}","object":"chat.completion","created":1717200000,"#,
            r#""model":"gpt-4o-mini","choices":[{{"index":0,"message":{{"role":"assistant","#,
            r#""content":"lorem ipsum dolor sit"}},"finish_reason":"length"}}],"#,
            r#""usage":{{"prompt_tokens":8,"completion_tokens":5,"total_tokens":13}}}}"#
        ),
        i = i
    );
    Finished {
        custom_id,
        attempts: 1,
        verdict: Verdict::Succeeded(ProviderAnswer {
            status: 200,
            request_id: Some(format!("req_{i:08x}")),
            body: body.into(),
            usage: None,
        }),
        waited: Duration::ZERO,
        retry_after: None,
        last_retry: None,
    }
}
