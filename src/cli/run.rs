//! `paceline run`: arguments and glue for the batch runner.
//!
//! It must not know how a run goes: the flags over the config file become a [`RunPlan`] (or a
//! distributed worker's plan), and the runner does the rest.

use crate::api::Endpoint;
use crate::batch::{InputFormat, InputSpec, OutputFormat, starts_with_message_batches_line};
use crate::config::{self, RunConfig};
use crate::engine::EngineConfig;
use crate::plan::LiveLimits;
use crate::plan::deadline::ModelLimits;
use crate::plan::prices::PriceTable;
use crate::progress::Display;
use crate::provider::Provider;
use crate::quota::{Dimension, QuotaConfig};
use crate::retry::BackoffPolicy;
use crate::runner::{self, RunError, RunPlan};
use crate::telemetry::otlp;
use crate::time::parse_duration;
use crate::tokens::DEFAULT_MAX_TOKENS;

/// Attempts per request unless `--max-attempts` or the config says otherwise.
const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Per-attempt timeout unless `--timeout` or the config says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
use crate::upstream::{ApiKey, DEFAULT_BASE_URL, Upstream};
use anyhow::Context;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Input formats on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Batch API JSONL without --template; with it, by extension (.csv, .jsonl, else lines).
    Auto,
    /// OpenAI Batch API JSONL (`custom_id`, `method`, `url`, `body`).
    Batch,
    /// Plain text, one item per line (`{line}`).
    Lines,
    /// JSON objects, one per line (`{field}`).
    Jsonl,
    /// CSV with a header row (`{column}`).
    Csv,
}

/// Endpoints for template mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EndpointArg {
    /// /v1/chat/completions
    Chat,
    /// /v1/completions
    Completions,
    /// /v1/embeddings
    Embeddings,
    /// /v1/responses
    Responses,
    /// /v1/messages (Anthropic)
    Messages,
}

/// `--provider`: every provider's configuration name, each with its one-line summary.
fn provider_parser() -> impl TypedValueParser<Value = Provider> {
    let names = Provider::ALL.map(|p| PossibleValue::new(p.name()).help(p.summary()));
    PossibleValuesParser::new(names).try_map(|name| name.parse::<Provider>())
}

/// `--output-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormatArg {
    /// OpenAI Batch API output (`id`, `custom_id`, `response`, `error`).
    Openai,
    /// Anthropic Message Batches results (`custom_id`, `result`).
    Anthropic,
}

/// Input and output options, shared with `demo`.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Prompt template with {field} placeholders ({line} for plain lines); selects template mode.
    #[arg(long)]
    pub template: Option<String>,
    /// Model for template mode.
    #[arg(long)]
    pub model: Option<String>,
    /// System prompt for template mode.
    #[arg(long)]
    pub system: Option<String>,
    /// max_tokens for template mode.
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Field whose value is the custom_id in template mode (default: the line number).
    #[arg(long)]
    pub id_field: Option<String>,
    /// Input format.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,
    /// Endpoint for template mode.
    #[arg(long, value_enum, default_value_t = EndpointArg::Chat)]
    pub endpoint: EndpointArg,
}

/// Pacing and retry options, shared with `demo`.
#[derive(Debug, Clone, Args)]
pub struct PacingArgs {
    /// Requests per minute per key (default: learned from the provider's headers).
    #[arg(long)]
    pub rpm: Option<u64>,
    /// Tokens per minute per key (default: learned from the provider's headers).
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Fixed number of requests in flight (default: adapts to rate × latency).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Ceiling for the adaptive number of requests in flight.
    #[arg(long, default_value_t = 1024)]
    pub max_concurrency: usize,
    /// Attempts per request before it fails with max_attempts_exceeded [default: 8, or
    /// max_attempts in --config].
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Per-attempt timeout (e.g. 600s, 2m, 1500ms) [default: 600s, or timeout in --config].
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Output tokens assumed (for pacing) when a request sets no max_tokens [default: 4096, or
    /// default_max_tokens in --config].
    #[arg(long)]
    pub default_max_tokens: Option<u64>,
    /// Seed for retry jitter, for reproducible runs.
    #[arg(long)]
    pub seed: Option<u64>,
    /// No progress display.
    #[arg(long, short)]
    pub quiet: bool,
    /// Write one JSON event per attempt to this file (filter with PACELINE_LOG).
    #[arg(long)]
    pub log_file: Option<PathBuf>,
}

/// `--via`: how the job's requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViaArg {
    /// Live requests, paced at the key's limits (full price, fastest).
    Live,
    /// The provider's Batch API (half the price, within 24 hours, its own limit pool).
    Batch,
    /// The Batch API first, and live requests for what it has not finished when the
    /// --deadline needs them (the lowest price the deadline allows).
    Auto,
}

/// `--on-interrupt`: what Ctrl-C does to the provider's batches with `--via batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnInterruptArg {
    /// Leave them running; the same command collects them later.
    Leave,
    /// Cancel them (what they finished is still collected on resume).
    Cancel,
}

/// Options of the batch path (`--via batch`).
#[derive(Debug, Clone, Args)]
pub struct ViaArgs {
    /// How to send the requests: live (paced at the key's limits) or batch (the provider's
    /// Batch API: half the price, within 24 hours).
    #[arg(long, value_enum, default_value_t = ViaArg::Live)]
    pub via: ViaArg,
    /// --via batch: the enqueued-token limit of each model (default: learned from the
    /// provider's refusal).
    #[arg(long, value_name = "TOKENS")]
    pub batch_enqueued_tokens: Option<u64>,
    /// --via batch: at most this many requests per batch (below the provider's own limit).
    #[arg(long, value_name = "N")]
    pub batch_max_requests: Option<u64>,
    /// --via batch: the first wait between polls of a batch (it grows by half each poll).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub batch_poll_min: Duration,
    /// --via batch: the longest wait between polls of a batch.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub batch_poll_max: Duration,
    /// --via batch: what Ctrl-C / SIGTERM does to the provider's batches [default: ask on a
    /// terminal, else leave].
    #[arg(long, value_enum)]
    pub on_interrupt: Option<OnInterruptArg>,
    /// --via auto: when the job must have ended, counted from its start (its first run), e.g.
    /// 6h, 90m.
    #[arg(long, value_parser = parse_duration, required_if_eq("via", "auto"))]
    pub deadline: Option<Duration>,
    /// --via auto: time kept before the deadline, beyond the live path's own time, for the
    /// provider to cancel the batches and for their results to be collected.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub handover_margin: Duration,
    /// A price file (the format of data/prices.toml) over the shipped table and the config's
    /// `[[prices]]` (plan's table; the cost line of --via batch and auto).
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
}

/// Arguments of `paceline run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Input file: Batch API JSONL, or lines/JSONL/CSV with --template.
    pub input: PathBuf,
    /// Output file (Batch API output JSONL); default INPUT.results.jsonl.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Send the valid lines even if some are invalid (those go to --errors-file).
    #[arg(long)]
    pub skip_invalid: bool,
    /// Where invalid lines go with --skip-invalid; default OUTPUT.errors.jsonl.
    #[arg(long)]
    pub errors_file: Option<PathBuf>,
    /// The job's state database (default OUTPUT.paceline.db).
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// Start over: forget the job's state and replace the output.
    #[arg(long, conflicts_with = "retry_failed")]
    pub restart: bool,
    /// Send the job's final failures again (their old results leave the output).
    #[arg(long)]
    pub retry_failed: bool,
    /// After Ctrl-C or SIGTERM, how long requests in flight may take to finish.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub stop_timeout: Duration,
    /// Provider base URL (default: OpenAI's API, or base_url from --config).
    #[arg(long)]
    pub base_url: Option<String>,
    /// The provider's API (default: provider from --config, else inferred from the base URL;
    /// Message Batches lines with no URL, or one no provider claims, mean anthropic).
    #[arg(long, value_parser = provider_parser())]
    pub provider: Option<Provider>,
    /// Azure OpenAI's api-version (default: api_version from --config, else 2024-10-21).
    #[arg(long)]
    pub api_version: Option<String>,
    /// Results format: OpenAI Batch API output, or Anthropic Message Batches results.
    #[arg(long, value_enum, default_value_t = OutputFormatArg::Openai)]
    pub output_format: OutputFormatArg,
    /// Environment variables holding API keys, comma-separated (default OPENAI_API_KEY;
    /// ANTHROPIC_API_KEY for Anthropic, AZURE_OPENAI_API_KEY for Azure).
    #[arg(long, value_delimiter = ',')]
    pub api_key_env: Vec<String>,
    /// TOML config with `[[keys]]` (env, rpm, tpm) and `base_url`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Export traces over OTLP/HTTP to this collector (base URL, e.g. http://127.0.0.1:4318;
    /// default: otlp_endpoint in --config, else OTEL_EXPORTER_OTLP_ENDPOINT, else none): one
    /// span per request, one per attempt. Live runs only (not --via batch nor --job).
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Input and output options (clap ignores a flattened field's doc comment).
    #[command(flatten)]
    pub input_args: InputArgs,
    /// Pacing and retry options.
    #[command(flatten)]
    pub pacing: PacingArgs,
    /// Batch-path options.
    #[command(flatten)]
    pub via: ViaArgs,
    /// Distributed-mode options.
    #[command(flatten)]
    pub redis: super::redis::RedisArgs,
    /// Run the input as a job shared by every process given the same --redis and --job NAME
    /// (results stay in Redis; `paceline export` writes them; -o exports at the end).
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// With --job: reclaim a request another process took but did not finish for this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub claim_idle: Duration,
    /// With --job: deliveries of one request before it fails with max_deliveries_exceeded.
    #[arg(long, default_value_t = 5)]
    pub max_deliveries: u64,
}

impl InputArgs {
    /// The input spec for `path`.
    pub fn spec(&self, path: &Path) -> InputSpec {
        InputSpec {
            path: path.to_path_buf(),
            format: match self.format {
                FormatArg::Auto => InputFormat::Auto,
                FormatArg::Batch => InputFormat::BatchJsonl,
                FormatArg::Lines => InputFormat::Lines,
                FormatArg::Jsonl => InputFormat::RecordsJsonl,
                FormatArg::Csv => InputFormat::Csv,
            },
            template: self.template.clone(),
            model: self.model.clone(),
            system: self.system.clone(),
            max_tokens: self.max_tokens,
            id_field: self.id_field.clone(),
            endpoint: match self.endpoint {
                EndpointArg::Chat => Endpoint::ChatCompletions,
                EndpointArg::Completions => Endpoint::Completions,
                EndpointArg::Embeddings => Endpoint::Embeddings,
                EndpointArg::Responses => Endpoint::Responses,
                EndpointArg::Messages => Endpoint::Messages,
            },
        }
    }
}

impl PacingArgs {
    /// Fill what the flags left unset from the config file's settings of the same names.
    pub fn fill_from(&mut self, config: &RunConfig) {
        self.concurrency = self.concurrency.or(config.concurrency);
        self.max_attempts = self.max_attempts.or(config.max_attempts);
        self.timeout = self.timeout.or(config.timeout);
        self.default_max_tokens = self.default_max_tokens.or(config.default_max_tokens);
    }

    /// The per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// Attempts per request (at least 1).
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS).max(1)
    }

    /// Output tokens assumed when a request sets none.
    pub fn default_max_tokens(&self) -> u64 {
        self.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)
    }

    /// Engine settings.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            concurrency: self.concurrency,
            max_concurrency: self.max_concurrency,
            backoff: BackoffPolicy {
                max_attempts: self.max_attempts(),
                ..BackoffPolicy::default()
            },
            seed: self.seed,
            stop_on_uniform_refusals: true,
        }
    }

    /// Limits given on the command line, for keys that have none of their own.
    pub fn limits(&self) -> QuotaConfig {
        config::limits(self.rpm, self.tpm)
    }
}

impl ViaArgs {
    /// Refuse an option that means nothing with the `--via` given, rather than ignore it.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.via != ViaArg::Auto && self.deadline.is_some() {
            let via = self
                .via
                .to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default();
            anyhow::bail!(
                "--deadline is kept by --via auto only (with --via {via} nothing would hold the job to it): add --via auto, or leave --deadline out"
            );
        }
        Ok(())
    }

    /// The batch path's settings for `plan` (`None` with `--via live`).
    pub fn settings(
        &self,
        plan: &RunPlan,
        pacing: &PacingArgs,
    ) -> anyhow::Result<Option<crate::offline::BatchSettings>> {
        if self.via == ViaArg::Live {
            return Ok(None);
        }
        let provider = plan.upstream.provider();
        let Some(spec) = provider.batch() else {
            if self.via == ViaArg::Auto {
                eprintln!(
                    "paceline: --via auto: provider {provider} has no Batch API paceline speaks: \
                     every request goes live"
                );
                return Ok(None);
            }
            anyhow::bail!(
                "--via batch: provider {provider} has no Batch API paceline speaks (openai, \
                 anthropic and azure have one); use --via live"
            );
        };
        let Some((key, _)) = plan.keys.first() else {
            anyhow::bail!("--via batch needs an API key");
        };
        if plan.keys.len() > 1 {
            eprintln!(
                "paceline: --via batch sends every batch with the first key, {}",
                key.label()
            );
        }
        let Some(client) =
            crate::offline::client::BatchClient::new(plan.upstream.clone(), key.clone())?
        else {
            anyhow::bail!("--via batch: provider {provider} has no Batch API paceline speaks");
        };
        Ok(Some(crate::offline::BatchSettings {
            client,
            limits: crate::offline::cut::ShardLimits {
                spec,
                max_requests: self.batch_max_requests,
                enqueued: Default::default(),
                enqueued_default: self.batch_enqueued_tokens,
                default_max_tokens: pacing.default_max_tokens(),
            },
            max_attempts: pacing.max_attempts(),
            poll_min: self.batch_poll_min.max(Duration::from_millis(10)),
            poll_max: self.batch_poll_max.max(self.batch_poll_min),
            on_interrupt: self.on_interrupt.map(|choice| match choice {
                OnInterruptArg::Leave => crate::offline::OnInterrupt::Leave,
                OnInterruptArg::Cancel => crate::offline::OnInterrupt::Cancel,
            }),
        }))
    }

    /// `--via auto`'s deadline, margin and the live limits it times the hand-over with: the
    /// configured ones (all keys together), else those an earlier run of the job stored.
    pub fn auto(
        &self,
        keys: &[(ApiKey, QuotaConfig)],
        state: &Path,
    ) -> anyhow::Result<Option<runner::AutoPlan>> {
        if self.via != ViaArg::Auto {
            return Ok(None);
        }
        let Some(deadline) = self.deadline else {
            anyhow::bail!("--via auto needs --deadline DURATION (e.g. 6h)");
        };
        let sum = |d: Dimension| -> Option<u64> {
            let each: Vec<u64> = keys
                .iter()
                .filter_map(|(_, q)| q.get(d).map(|l| l.per_minute))
                .collect();
            (!each.is_empty()).then(|| each.iter().sum())
        };
        let limits = ModelLimits {
            configured: LiveLimits {
                rpm: sum(Dimension::Requests),
                tpm: sum(Dimension::Tokens),
            },
            learned: learned_limits(state)?,
        };
        if !limits.any() {
            anyhow::bail!(
                "--via auto: the live path's limits are unknown, so the hand-over to live \
                 requests cannot be timed: give --rpm/--tpm (or rpm/tpm in the config's \
                 [[keys]]), or run part of the job once with --via live to learn them"
            );
        }
        Ok(Some(runner::AutoPlan {
            deadline,
            margin: self.handover_margin,
            limits,
        }))
    }

    /// The price table: shipped, then the config's `[[prices]]`, then `--prices FILE`.
    pub fn prices(&self, config: &RunConfig) -> anyhow::Result<PriceTable> {
        let mut table = PriceTable::shipped()?.with_config(&config.prices)?;
        if let Some(file) = &self.prices {
            table = table.with_file(file)?;
        }
        Ok(table)
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Keys from --config, else --api-key-env, else OPENAI_API_KEY (shared by `run` and `plan`).
pub(super) fn keys(
    args: &RunArgs,
    config: &RunConfig,
    provider: Provider,
) -> anyhow::Result<Vec<(ApiKey, QuotaConfig)>> {
    let flag_limits = args.pacing.limits();
    if !config.keys.is_empty() {
        return config
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let limits = if k.limits == QuotaConfig::default() {
                    flag_limits
                } else {
                    k.limits
                };
                let key = ApiKey::from_env(&k.env).map_err(|e| {
                    e.with_fix(format!(
                        "set it to the API key of keys[{i}] (the config's [[keys]] entry with env = {:?})",
                        k.env
                    ))
                })?;
                Ok((key, limits))
            })
            .collect();
    }
    let names = if args.api_key_env.is_empty() {
        vec![provider.default_key_env().to_string()]
    } else {
        args.api_key_env.clone()
    };
    names
        .iter()
        .map(|name| {
            ApiKey::from_env(name.trim())
                .map(|key| (key, flag_limits))
                .map_err(|e| {
                    e.with_fix(
                        "set it to the provider's API key, or name other variables with \
                         --api-key-env K1,K2",
                    )
                    .into()
                })
        })
        .collect()
}

/// Print a run's outcome and choose the exit code: 0 all succeeded, 1 some failed or left,
/// 2 usage (or a locked or changed state), 130 / 143 stopped by SIGINT / SIGTERM (resumable).
pub fn finish(result: Result<runner::RunReport, RunError>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(report) => {
            eprint!("{}", report.summary);
            if let Some(signal) = report.interrupted {
                Ok(ExitCode::from(signal.exit_code()))
            } else if report.failed > 0 || report.unsent > 0 {
                Ok(ExitCode::from(1))
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
        Err(err) if err.is_usage() => {
            eprintln!("error: {err}");
            Ok(ExitCode::from(2))
        }
        Err(err) => Err(err.into()),
    }
}

/// The provider endpoint of a run: `--base-url` / `--provider` over the config, Message Batches
/// lines meaning Anthropic when nothing else says (shared by `run` and `plan`).
pub fn upstream_of(args: &RunArgs, config: &RunConfig) -> anyhow::Result<Upstream> {
    let given_url = args.base_url.clone().or(config.base_url.clone());
    // Message Batches lines speak Anthropic's API: with no provider named and no URL that
    // belongs to another provider, that is the provider.
    let chosen = args.provider.or(config.provider).or_else(|| {
        let open_url = given_url
            .as_deref()
            .is_none_or(|url| Provider::infer(url) == Provider::Compatible);
        (open_url && starts_with_message_batches_line(&args.input_args.spec(&args.input)))
            .then_some(Provider::Anthropic)
    });
    let base_url = match (given_url, chosen) {
        (Some(url), _) => url,
        (None, Some(provider)) => provider
            .default_base_url()
            .with_context(|| {
                format!("provider {provider} has no public URL: give --base-url (or base_url in --config)")
            })?
            .to_string(),
        (None, None) => DEFAULT_BASE_URL.to_string(),
    };
    let upstream = Upstream::new(&base_url, args.pacing.timeout())?;
    let provider = chosen.unwrap_or(upstream.provider());
    let api_version = args
        .api_version
        .as_deref()
        .or(config.api_version.as_deref());
    let upstream = upstream.with_provider(provider, api_version);
    Ok(upstream)
}

/// Run a batch.
pub async fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    let _log = crate::telemetry::init(args.pacing.log_file.as_deref())?;
    let config = match &args.config {
        Some(path) => RunConfig::load(path)?,
        None => RunConfig::default(),
    };
    args.pacing.fill_from(&config);
    args.via.check()?;
    let upstream = upstream_of(&args, &config)?;
    let provider = upstream.provider();
    let keys = keys(&args, &config, provider)?;
    if let Some(job) = &args.job {
        if args.via.via != ViaArg::Live {
            anyhow::bail!(
                "--job {job}: a job shared through Redis is sent live; --via batch and --via auto need a job of their own (no --job)"
            );
        }
        return shared_job(&args, &config, job, upstream, keys).await;
    }
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| with_suffix(&args.input, ".results.jsonl"));
    let plan = RunPlan {
        input: args.input_args.spec(&args.input),
        errors_file: args
            .errors_file
            .clone()
            .unwrap_or_else(|| with_suffix(&output, ".errors.jsonl")),
        output,
        output_format: match args.output_format {
            OutputFormatArg::Openai => OutputFormat::OpenAi,
            OutputFormatArg::Anthropic => OutputFormat::Anthropic,
        },
        state: args.state.clone(),
        skip_invalid: args.skip_invalid,
        restart: args.restart,
        retry_failed: args.retry_failed,
        stop_timeout: args.stop_timeout,
        upstream,
        keys,
        engine: args.pacing.engine(),
        default_max_tokens: args.pacing.default_max_tokens(),
        display: Display::detect(args.pacing.quiet),
        shared: args.redis.connect(config.redis.as_ref()).await?,
        batch: None,
        auto: None,
        prices: None,
        tracer: None,
    };
    let state = plan
        .state
        .clone()
        .unwrap_or_else(|| crate::store::default_path(&plan.output));
    let batch = args.via.settings(&plan, &args.pacing)?;
    let tracer = match (&batch, otlp_endpoint(&args, &config)?) {
        (None, Some(endpoint)) => Some(otlp::Tracer::start(endpoint)?),
        _ => None,
    };
    let plan = RunPlan {
        auto: match &batch {
            Some(_) => args.via.auto(&plan.keys, &state)?,
            None => None,
        },
        prices: match &batch {
            Some(_) => Some(args.via.prices(&config)?),
            None => None,
        },
        batch,
        tracer,
        ..plan
    };
    finish(runner::run(plan).await)
}

/// Where a run's traces go: --otlp-endpoint, else `otlp_endpoint` in --config, else the
/// standard environment variables.
fn otlp_endpoint(args: &RunArgs, config: &RunConfig) -> anyhow::Result<Option<otlp::Endpoint>> {
    if let Some(url) = &args.otlp_endpoint {
        return Ok(Some(otlp::Endpoint::base(url, "--otlp-endpoint")?));
    }
    if let Some(endpoint) = &config.otlp_endpoint {
        return Ok(Some(endpoint.clone()));
    }
    Ok(otlp::Endpoint::from_env()?)
}

/// `run --redis URL --job NAME`: work on a job shared through Redis.
async fn shared_job(
    args: &RunArgs,
    config: &RunConfig,
    job: &str,
    upstream: Upstream,
    keys: Vec<(ApiKey, QuotaConfig)>,
) -> anyhow::Result<ExitCode> {
    let Some((target, _)) = args.redis.target(config.redis.as_ref())? else {
        anyhow::bail!("--job needs --redis URL (or [redis] url in --config)");
    };
    let shared = args.redis.connect(config.redis.as_ref()).await?;
    let pool = crate::upstream::KeyPool::new(keys);
    let pool = std::sync::Arc::new(match shared {
        Some(shared) => pool.with_shared(shared),
        None => pool,
    });
    let engine_config = args.pacing.engine();
    let window = engine_config.concurrency.unwrap_or(32).clamp(1, 256);
    let engine = crate::engine::Engine::new(engine_config, std::sync::Arc::clone(&pool), upstream);
    let progress = crate::progress::Progress::start(
        Display::detect(args.pacing.quiet),
        engine.stats(),
        pool,
        std::sync::Arc::clone(engine.concurrency()),
    );
    let queue = crate::distributed::JobQueue::connect(&target, job)
        .await
        .context("a shared job needs Redis at start (--redis)")?;
    let plan = crate::distributed::WorkerPlan {
        input: args.input_args.spec(&args.input),
        job: job.to_string(),
        claim_idle: args.claim_idle,
        max_deliveries: args.max_deliveries.max(1),
        window,
        default_max_tokens: args.pacing.default_max_tokens(),
        output: args.output.clone(),
        stop_timeout: args.stop_timeout,
    };
    let report = crate::distributed::work(queue, engine, plan).await;
    progress.stop().await;
    let report = report?;
    if let Some(signal) = report.interrupted {
        eprintln!(
            "paceline: stopped by {}; this process finished {} requests of job {job} ({} failed); \
             the others go on, and the same command joins again",
            signal.name(),
            report.finished,
            report.failed
        );
        return Ok(ExitCode::from(signal.exit_code()));
    }
    eprintln!(
        "paceline: job {job} complete; this process loaded {} and finished {} requests ({} failed){}",
        report.loaded,
        report.finished,
        report.failed,
        match (report.exported, &args.output) {
            (Some(n), Some(path)) => format!("; exported {n} results to {}", path.display()),
            _ => String::new(),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Limits per model an earlier run of this job learned and stored (all keys together; the
/// latest run's).
pub(super) fn learned_limits(
    state: &Path,
) -> anyhow::Result<std::collections::HashMap<String, LiveLimits>> {
    let Ok(path) = crate::store::locate(state) else {
        return Ok(std::collections::HashMap::new());
    };
    let store = crate::store::Store::open_existing(&path)?;
    let (limits, _) = crate::store::keys::load(&store)?;
    Ok(crate::plan::learned(&limits))
}
