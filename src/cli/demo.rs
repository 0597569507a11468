//! `paceline demo`: the 200-topic example against the built-in simulated provider — no API key,
//! no network. It shows pacing to limits learned from headers, retries of injected faults, the
//! progress bar and the summary.
//!
//! It must not know how the engine paces or the mock answers: it builds a `MockConfig` and a run
//! plan and hands them over.

use crate::batch::{InputSpec, OutputFormat};
use crate::cli::run as run_cli;
use crate::engine::EngineConfig;
use crate::progress::Display;
use crate::quota::QuotaConfig;
use crate::retry::BackoffPolicy;
use crate::runner::{self, RunPlan};
use crate::upstream::{ApiKey, Upstream};
use anyhow::Context;
use clap::Args;
use paceline_mock::{self as mock, FaultRates, LatencyConfig, MockConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The demo's input: 200 article topics.
const TOPICS: &str = include_str!("../../examples/topics.txt");

/// Arguments of `paceline demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the results go.
    #[arg(long, short, default_value = "paceline-demo.results.jsonl")]
    pub output: PathBuf,
    /// Simulated requests per minute.
    #[arg(long, default_value_t = 1200)]
    pub rpm: u64,
    /// Simulated tokens per minute.
    #[arg(long, default_value_t = 300_000)]
    pub tpm: u64,
    /// Simulated mean latency in milliseconds.
    #[arg(long, default_value_t = 800.0)]
    pub latency_ms: f64,
    /// Probability of a simulated HTTP 500 (to show retries).
    #[arg(long, default_value_t = 0.02)]
    pub fail_500: f64,
    /// No progress display.
    #[arg(long, short)]
    pub quiet: bool,
    /// Write one JSON event per attempt to this file.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
}

/// Run the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let _log = crate::telemetry::init(args.log_file.as_deref())?;
    let provider = mock::start(MockConfig {
        rpm: args.rpm,
        tpm: args.tpm,
        burst: Some(20),
        latency: LatencyConfig {
            mean_ms: args.latency_ms,
            sd_ms: args.latency_ms / 4.0,
            ms_per_token: 1.0,
        },
        completion_tokens: 180,
        faults: FaultRates {
            fail_500: args.fail_500,
            ..FaultRates::default()
        },
        ..MockConfig::default()
    })
    .await
    .context("cannot start the simulated provider")?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let topics = dir.path().join("topics.txt");
    std::fs::write(&topics, TOPICS).context("cannot write the demo topics")?;
    eprintln!(
        "paceline demo: 200 topics → articles, against a simulated provider at {} \
         ({} requests/min, {} tokens/min, ~{} ms latency; paceline is told none of this)",
        provider.base_url(),
        args.rpm,
        args.tpm,
        args.latency_ms
    );
    let plan = RunPlan {
        input: InputSpec {
            template: Some("Write an SEO article about {line}".into()),
            model: Some("gpt-4o-mini".into()),
            max_tokens: Some(300),
            ..InputSpec::new(&topics)
        },
        errors_file: dir.path().join("errors.jsonl"),
        output: args.output.clone(),
        output_format: OutputFormat::OpenAi,
        state: None,
        skip_invalid: false,
        restart: true,
        retry_failed: false,
        stop_timeout: Duration::from_secs(30),
        upstream: Upstream::new(&provider.base_url(), Duration::from_secs(60))?,
        keys: vec![(
            ApiKey::new("demo-key".into(), "demo"),
            QuotaConfig::default(),
        )],
        engine: EngineConfig {
            concurrency: None,
            max_concurrency: 1024,
            backoff: BackoffPolicy::default(),
            seed: None,
            stop_on_uniform_refusals: true,
        },
        default_max_tokens: crate::tokens::DEFAULT_MAX_TOKENS,
        display: Display::detect(args.quiet),
        shared: None,
        batch: None,
        auto: None,
        prices: None,
        tracer: None,
    };
    let result = runner::run(plan).await;
    provider.shutdown().await;
    run_cli::finish(result)
}
