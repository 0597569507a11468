//! `paceline mock`: a simulated LLM provider that limits, answers and fails like a real one.
//!
//! It enforces RPM/TPM buckets ([`bucket`]) per key and model, as OpenAI and Anthropic limit
//! each model separately, the way OpenAI charges admission (prompt tokens + `max_tokens × n`),
//! answers with OpenAI's and Anthropic's real shapes, rate-limit headers and error bodies,
//! models latency, injects faults from one seeded random source, and counts everything at
//! `GET /_mock/stats`. It shares no code with paceline's client side, which it exists to test:
//! this crate depends on nothing of `paceline` (its own tokenizer choice and model → encoding
//! table in [`tokens`], its own types), so the compiler keeps it an independent judge. It must
//! not know how the client paces, estimates or classifies.
//!
//! Start it in-process with [`start`], or from the command line with `paceline mock`.
//!
//! # Behaviour choices
//!
//! - **Admission charge**: requests 1; tokens `prompt + max_tokens × n`, where `max_tokens` is
//!   `max_completion_tokens`, else `max_tokens`, else `--default-max-tokens` (4096) — a request
//!   without a cap is charged as if it could use the default. Embeddings: input tokens. Anthropic:
//!   `input + max_tokens`. The charge stays (like OpenAI) unless `--refund-unused` gives back
//!   `reserved − generated` output tokens when the answer completes (like Anthropic).
//! - **Request too large**: a token cost above the TPM limit itself gets what OpenAI really
//!   sends: status 429, `type: "tokens"`, `code: "rate_limit_exceeded"`, message
//!   "Request too large for MODEL ... Limit L, Requested R. ..." and no retry hint. A client must
//!   classify it as final by that message.
//! - **Refusals are free**: a 429, 400 or 401 charges nothing. In `--soft-limits` mode a request
//!   the buckets would refuse is admitted, counted in `admitted_beyond_limit`, and not charged
//!   (the provider it models would not have charged it either).
//! - **Credit** (`--quota-tokens`) is per key and counts the usage (prompt + completion) of
//!   answered requests; once used up, OpenAI endpoints answer 429 `insufficient_quota`, the
//!   Anthropic endpoint its 400 "credit balance is too low".
//! - **Faults** are drawn after admission by default (`--faults-charge true`), so they consume
//!   quota as real failures after admission do. Providers differ here: some check fault
//!   injection or overload before the quota, so a 503 costs nothing and is answered even when the
//!   bucket is empty. `--faults-charge false` models those: the fault is drawn first and a faulted
//!   request is answered without touching any bucket or the credit, with no rate-limit headers
//!   (none claim it was charged; Azure's shape leaves out its `-1` too); stats count it as a
//!   request and a fault. Charging is the default because it is the conservative assumption for
//!   a client (a fault costs rate) and the one every test and published benchmark figure was
//!   measured with. The draw is the first use of a request's RNG either way, so a seed faults
//!   the same requests in both modes. `--fail-529` applies to `/v1/messages` only (OpenAI
//!   endpoints treat its share as "no fault"). A stall ends after an hour or at shutdown, then the
//!   connection is dropped.
//! - **Randomness**: every choice of a request (fault, answer length and words, latency) comes from
//!   one RNG seeded from `--seed` and the request's sequence number, so a sequential run repeats
//!   exactly; `POST /_mock/reset` restarts the sequence.
//! - **Headers**: rate-limit headers are sent on every answer of a known key (errors included);
//!   an unlimited dimension has none. They describe the buckets as they were right after the
//!   request was admitted (a rate limiter sits in front of the model, and a stream's headers
//!   leave before its tokens), not when the answer is finished. 401s (no bucket) and 404s
//!   carry only the request id.
//!   Anthropic's `input-tokens` and `output-tokens` headers report the same single token bucket
//!   as `tokens`.
//! - **Azure OpenAI** ([`azure`]): `/openai/deployments/{d}/chat/completions`, `/completions`
//!   and `/embeddings` with `?api-version=`, the `api-key` header, remaining-only limit headers
//!   (`-1` when a dimension is not limited) and Azure's 429 body and retry headers.
//! - **Anthropic version**: `/v1/messages` without an `anthropic-version` header is refused
//!   with 400, as the API does.
//! - **Slots** (`--slots N`, [`slots`]): like a self-hosted inference server (llama.cpp, vLLM,
//!   TGI, Ollama), at most N requests are processed at once and the rest wait in a FIFO queue,
//!   with no error and no rate-limit headers of their own; the latency model is the service time
//!   once a slot is taken, so throughput flattens at N ÷ service time and latency grows with the
//!   queue. Rate limits and error faults (500/503/529, reset) are answered before the queue; a
//!   truncated or stalled answer holds its slot, as a generation that goes wrong does. A slot is
//!   held until the answer's last byte (a stream's whole generation); a client that disconnects
//!   while queued leaves the queue. `GET /_mock/stats` shows `slots` (in service, queued, their
//!   peaks, served, left the queue, waits).
//! - **Batch APIs** ([`batches`], [`batch_routes`]): OpenAI's Files (`/v1/files`: multipart
//!   upload with `purpose=batch`, retrieve, content, delete) and Batches (`/v1/batches`: create
//!   with `completion_window=24h` and `metadata`, retrieve, list in pages, cancel), Anthropic's
//!   Message Batches (`/v1/messages/batches`: inline requests, retrieve, list, cancel, JSONL
//!   results), and Azure OpenAI's global batch (OpenAI's Files and Batches at
//!   `/openai/files` and `/openai/batches`, behind `api-version` and the `api-key` header, the
//!   endpoint and lines naming the operation: `/chat/completions`). In memory; a batch moves validating → in_progress → finalizing → completed
//!   (failed, expired, cancelling → cancelled) at `--batch-speed` requests per second, on a
//!   clock `POST /_mock/advance {"seconds": N}` moves forward. `--batch-enqueued-tokens` fails an
//!   OpenAI batch that would pass the model's enqueued tokens (`token_limit_exceeded`, when its
//!   validation ends); `--batch-queued-requests` refuses a Message Batch with 429;
//!   `--batch-fail` fails a share of processed requests with a server error. `/_mock/stats`
//!   counts files and batches created (`batches`). Rate limits and faults of the live endpoints
//!   do not apply to batches, as at the providers (a separate pool).
//! - **Bounded memory**: per-second counts keep 600 seconds; at most 10,000 undeclared keys are
//!   tracked, further new keys get 401 until `POST /_mock/reset`.

pub mod anthropic;
pub mod api;
pub mod azure;
pub mod batch_routes;
pub mod batches;
pub mod bucket;
pub mod chat;
pub mod completions;
pub mod config;
pub mod delivery;
pub mod duration;
pub mod embeddings;
pub mod errors;
pub mod faults;
pub mod headers;
pub mod keys;
pub mod latency;
pub mod responses;
pub mod routes;
pub mod seed;
pub mod server;
pub mod slots;
pub mod stats;
pub mod text;
pub mod tokens;

pub use config::{BatchConfig, ConfigError, FaultRates, KeySpec, LatencyConfig, MockConfig};
pub use errors::MockError;
pub use slots::SlotStats;
pub use stats::{BatchStats, FaultCounts, KeyStats, StatsSnapshot};

use server::App;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long [`MockHandle::shutdown`] waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running simulated provider. Dropping it stops the server too (without waiting).
pub struct MockHandle {
    addr: SocketAddr,
    app: Arc<App>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// Validate `config`, bind, and start serving in the background. Returns once the listener
/// accepts connections.
pub async fn start(config: MockConfig) -> Result<MockHandle, MockError> {
    config.validate()?;
    // Building a tokenizer takes ~100 ms: do it before the first request, off the async threads.
    let _ = tokio::task::spawn_blocking(tokens::warm_up).await;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| MockError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| MockError::Bind {
        addr: config.listen,
        source,
    })?;
    let (stop, stopped) = watch::channel(false);
    let app = Arc::new(App::new(config, stopped.clone()));
    let router = routes::router(Arc::clone(&app));
    let mut signal = stopped;
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = signal.wait_for(|stop| *stop).await;
        };
        // A make-service clones the router per connection instead of rebuilding its routes.
        if let Err(err) = axum::serve(listener, router.into_make_service())
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%err, "mock server stopped");
        }
    });
    Ok(MockHandle {
        addr,
        app,
        stop,
        task: Some(task),
    })
}

impl MockHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI-style base URL, `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The counters, as `GET /_mock/stats` returns them.
    pub fn stats(&self) -> StatsSnapshot {
        self.app.stats()
    }

    /// Clear counters and refill buckets, as `POST /_mock/reset` does.
    pub fn reset(&self) {
        self.app.reset();
    }

    /// Stop accepting, end stalled responses, wait (a few seconds at most) for open
    /// connections, then stop.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
