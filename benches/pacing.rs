//! Pacing benchmarks S1–S4 of issue 3, with an honest baseline in the same run, and S5–S10 of
//! issue 13.
//!
//! ```text
//! cargo bench --bench pacing -- [s1..s10|issue13|all] [--quick] [--no-baseline] [--series]
//! ```
//!
//! With no scenario named, S1–S4 run; `issue13` runs S5–S10, `all` both. S5–S10 have fixed sizes
//! (`--quick` leaves them alone) and no baseline; S8 and S10 compare paceline with itself at a
//! fixed `--concurrency` instead:
//!
//! - S5: 200 Anthropic Message Batches lines (anthropic provider, `/v1/messages`), rpm 600,
//!   burst 5, 100 ms. S6: the same requests as OpenAI chat lines.
//! - S7: 800 chat requests, a bucket holding a whole minute (rpm 600, burst 600), 200 ms.
//! - S8: the design brief's job: 200 articles (max_tokens 400) on a key with 500 rpm and 200k
//!   tokens/min whose buckets hold a minute, latency 0.8 s ± 0.3 s + 10 ms per output token;
//!   every request fits the initial buckets, so the ideal is one mean answer's latency, and a
//!   `--concurrency 200` run shows what sending everything at once achieves.
//! - S9: 800 chat requests, bucket 600 at 600 rpm, no latency, 5 % 503s the mock does not charge
//!   (`--faults-charge false`).
//! - S10: a self-hosted server (`--slots 1`, 0.25 s of service, no limit headers): 60 requests,
//!   paceline against itself at a fixed concurrency of 1, 2, 4 and 8.
//!
//! Everything runs in one process on loopback: the simulated provider ([`paceline_mock`]) is
//! started fresh for every contestant on a tokio runtime of its own (as a provider beside
//! paceline, sharing the cores but not paceline's scheduler), the input JSONL is written to a temporary directory, and
//! paceline runs it through [`paceline::runner::run`] with **no limits configured** (it learns
//! them from the mock's headers). The figures come from the mock's own counters (429s,
//! admissions per second, `admitted_beyond_limit`) and from paceline's per-attempt log events,
//! captured in memory by a small `tracing` layer.
//!
//! "ideal" is the issue's formula: `(N − burst) ÷ binding_rate + mean latency`, where the binding
//! rate is `min(rpm, tpm ÷ mean admission cost) ÷ 60` per second, the admission cost is prompt
//! tokens (counted with [`paceline::tokens::estimate`], the mock's counting) plus
//! `max_tokens × n`, and `burst` is what the mock's bucket lets through at once, in requests of
//! the binding dimension.
//!
//! When paceline gets 429s, the send time of each is printed along with a replay of its send
//! schedule through the mock's own bucket model: refusals in the replay mean the schedule
//! outran the limit; none mean the 429s came from jitter between sending and admission.
//!
//! The baseline is the usual approach, written plainly with reqwest: W worker tasks pull from a
//! shared queue, each sends one request at a time, and on a 429, a 5xx, a connection error or a
//! cut-short body sleeps a fixed time and sends the same request again (8 attempts, then a
//! failure). It never reads a header. Two settings run: the cookbook one (W = 10, 15 s sleep) and
//! a tuned one (W from Little's law for the known rate and latency, 1 s sleep).

use paceline::api::Endpoint;
use paceline::batch::{InputFormat, InputSpec, OutputFormat};
use paceline::engine::EngineConfig;
use paceline::progress::Display;
use paceline::provider::Provider;
use paceline::quota::QuotaConfig;
use paceline::retry::BackoffPolicy;
use paceline::runner::{self, RunPlan};
use paceline::tokens::{self, DEFAULT_MAX_TOKENS};
use paceline::upstream::{ApiKey, Upstream};
use paceline_mock::{
    self as mock, FaultRates, LatencyConfig, MockConfig, MockHandle, SlotStats, StatsSnapshot,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The model every request names (o200k tokenizer).
const MODEL: &str = "gpt-4o-mini";
/// The bearer key every contestant presents to the mock.
const KEY: &str = "sk-bench-0000";
/// Seed of the mock's random choices (latency, answer length, faults).
const MOCK_SEED: u64 = 20_240_601;
/// Attempts per request, for paceline and the baseline alike.
const MAX_ATTEMPTS: u32 = 8;

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/// The scenarios of issue 3 (the default).
const ISSUE3: [&str; 4] = ["s1", "s2", "s3", "s4"];
/// The scenarios of issue 13.
const ISSUE13: [&str; 6] = ["s5", "s6", "s7", "s8", "s9", "s10"];

/// What to run.
#[derive(Debug, Clone)]
struct Options {
    scenarios: Vec<String>,
    quick: bool,
    baseline: bool,
    series: bool,
}

fn parse_args() -> Options {
    let mut scenarios = Vec::new();
    let mut quick = false;
    let mut baseline = true;
    let mut series = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "--quick" => quick = true,
            "--no-baseline" => baseline = false,
            "--series" => series = true,
            "all" => scenarios.extend(ISSUE3.iter().chain(&ISSUE13).map(|s| s.to_string())),
            "issue13" => scenarios.extend(ISSUE13.map(String::from)),
            s if ISSUE3.contains(&s) || ISSUE13.contains(&s) => scenarios.push(s.to_string()),
            other => {
                eprintln!(
                    "unknown argument {other:?}\nusage: cargo bench --bench pacing -- \
                     [s1..s10|issue13|all] [--quick] [--no-baseline] [--series]"
                );
                std::process::exit(2);
            }
        }
    }
    if scenarios.is_empty() {
        scenarios.extend(ISSUE3.map(String::from));
    }
    let mut seen = std::collections::HashSet::new();
    scenarios.retain(|s| seen.insert(s.clone()));
    Options {
        scenarios,
        quick,
        baseline,
        series,
    }
}

// ---------------------------------------------------------------------------------------------
// Capturing paceline's per-attempt events
// ---------------------------------------------------------------------------------------------

/// One attempt as paceline logged it (`target: paceline::attempt`).
#[derive(Debug, Clone, Default)]
struct LoggedAttempt {
    /// When the event was emitted (the answer had been read and classified).
    at: Option<Instant>,
    status: i64,
    latency_ms: u64,
    paused: bool,
    /// Index of the request (`custom_id` is `req-INDEX`).
    index: usize,
}

impl Visit for LoggedAttempt {
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "status" {
            self.status = value;
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "latency_ms" => self.latency_ms = value,
            "status" => self.status = i64::try_from(value).unwrap_or(-1),
            _ => {}
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "paused" {
            self.paused = value;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "custom_id" {
            let id = format!("{value:?}");
            self.index = id
                .trim_matches('"')
                .strip_prefix("req-")
                .and_then(|i| i.parse().ok())
                .unwrap_or(usize::MAX);
        }
    }
}

/// A `tracing` layer that keeps paceline's attempt events in memory while `on` is set.
#[derive(Clone, Default)]
struct Capture {
    on: Arc<AtomicBool>,
    events: Arc<Mutex<Vec<LoggedAttempt>>>,
}

const ATTEMPT_TARGET: &str = "paceline::attempt";

impl Capture {
    fn start(&self) {
        self.events.lock().expect("capture lock").clear();
        self.on.store(true, Ordering::SeqCst);
    }

    fn stop(&self) -> Vec<LoggedAttempt> {
        self.on.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.events.lock().expect("capture lock"))
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.target() == ATTEMPT_TARGET {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        metadata.target() == ATTEMPT_TARGET && self.on.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut attempt = LoggedAttempt {
            at: Some(Instant::now()),
            status: -1,
            ..LoggedAttempt::default()
        };
        event.record(&mut attempt);
        if let Ok(mut events) = self.events.lock() {
            events.push(attempt);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// The API a scenario's requests speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// OpenAI's chat completions (Batch API lines).
    Chat,
    /// Anthropic's Messages (Message Batches lines, the anthropic provider).
    Messages,
}

impl Api {
    fn endpoint(self) -> Endpoint {
        match self {
            Api::Chat => Endpoint::ChatCompletions,
            Api::Messages => Endpoint::Messages,
        }
    }

    fn flavor(self) -> mock::errors::Flavor {
        match self {
            Api::Chat => mock::errors::Flavor::OpenAi,
            Api::Messages => mock::errors::Flavor::Anthropic,
        }
    }

    fn provider(self) -> Provider {
        match self {
            Api::Chat => Provider::OpenAi,
            Api::Messages => Provider::Anthropic,
        }
    }

    fn output_format(self) -> OutputFormat {
        match self {
            Api::Chat => OutputFormat::OpenAi,
            Api::Messages => OutputFormat::Anthropic,
        }
    }
}

/// One benchmark scenario: the mock's configuration and the requests.
struct Scenario {
    name: &'static str,
    title: &'static str,
    mock: MockConfig,
    /// The API of the requests.
    api: Api,
    /// The key paceline presents (the baselines always use [`KEY`]).
    key: &'static str,
    /// Request bodies (chat completions, or Messages `params`).
    bodies: Vec<Value>,
    /// Mean latency the mock is configured with, in seconds.
    latency_s: f64,
    target: Target,
    /// Compare with the baseline.
    baseline: bool,
    /// Reference runs after paceline's own.
    references: Vec<Reference>,
}

/// A reference run of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reference {
    /// paceline with a fixed `--concurrency`.
    Fixed(usize),
    /// A plain reqwest loop with this many workers and no pacing (every request at once when
    /// the workers outnumber them): what the provider's physics allow.
    Raw(usize),
}

impl Reference {
    fn name(self) -> String {
        match self {
            Reference::Fixed(concurrency) => fixed_name(concurrency),
            Reference::Raw(workers) => raw_name(workers),
        }
    }
}

/// The name of a raw reqwest run.
fn raw_name(workers: usize) -> String {
    format!("raw reqwest, W={workers}")
}

/// What a scenario must show.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// makespan ÷ ideal at most `ratio`, and at most `after_cal` 429s after the first
    /// calibration (`None`: no bound) and `total_429` in all (`None`: no bound); with
    /// `all_succeed`, no final failure either.
    Pacing {
        ratio: f64,
        after_cal: Option<u64>,
        total_429: Option<u64>,
        all_succeed: bool,
    },
    /// At least this many requests per second.
    Throughput { per_second: f64 },
    /// makespan at most `ratio` × the makespan of `reference` (one of the scenario's
    /// references), and every request succeeds.
    VsReference { ratio: f64, reference: Reference },
    /// A server with slots: makespan at most `makespan` × the best fixed concurrency's, and median
    /// latency at most `latency` × the median latency at `--concurrency 1`.
    Slots { makespan: f64, latency: f64 },
}

/// How the names of paceline's runs with a fixed concurrency start.
const FIXED_PREFIX: &str = "paceline --concurrency ";

/// The name of paceline's run with a fixed concurrency.
fn fixed_name(concurrency: usize) -> String {
    format!("{FIXED_PREFIX}{concurrency}")
}

/// Deterministic filler text of `words` words.
fn words(rng: &mut SmallRng, words: usize) -> String {
    const VOCAB: [&str; 24] = [
        "pacing",
        "quota",
        "token",
        "request",
        "limit",
        "minute",
        "provider",
        "retry",
        "batch",
        "latency",
        "article",
        "topic",
        "search",
        "engine",
        "optimized",
        "content",
        "readers",
        "summary",
        "keyword",
        "section",
        "guide",
        "practical",
        "example",
        "detail",
    ];
    let mut text = String::with_capacity(words * 8);
    for i in 0..words {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(VOCAB[rng.random_range(0..VOCAB.len())]);
    }
    text
}

fn chat(content: String, max_tokens: u64) -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
    })
}

fn lognormal_800() -> LatencyConfig {
    LatencyConfig {
        mean_ms: 800.0,
        sd_ms: 200.0,
        ms_per_token: 0.0,
    }
}

/// S1: the user's case at 10× speed, request-bound.
fn s1(n: usize) -> Scenario {
    let bodies = (0..n)
        .map(|i| chat(format!("Write an SEO article about topic number {i}."), 200))
        .collect();
    Scenario {
        name: "s1",
        title: "S1 request-bound: rpm 6000, burst 10, 800 ms log-normal",
        mock: MockConfig {
            rpm: 6_000,
            tpm: 10_000_000,
            burst: Some(10),
            latency: lognormal_800(),
            seed: Some(MOCK_SEED),
            ..MockConfig::default()
        },
        api: Api::Chat,
        key: KEY,
        bodies,
        latency_s: 0.8,
        target: Target::Pacing {
            ratio: 1.05,
            after_cal: Some(1),
            total_429: None,
            all_succeed: false,
        },
        baseline: true,
        references: Vec::new(),
    }
}

/// Varied prompts (20–400 words) and `max_tokens` (50–500), for the token-bound scenarios.
fn varied_bodies(n: usize) -> Vec<Value> {
    let mut rng = SmallRng::seed_from_u64(2);
    (0..n)
        .map(|_| {
            let prompt_words = rng.random_range(20..=400);
            let max_tokens = rng.random_range(50..=500);
            chat(words(&mut rng, prompt_words), max_tokens)
        })
        .collect()
}

/// TPM of the token-bound scenarios.
const TOKEN_TPM: u64 = 1_000_000;
/// Token bucket capacity of the token-bound scenarios (at least the largest single cost).
const TOKEN_BURST: u64 = 2_000;

/// S2: token-bound.
fn s2(n: usize) -> Scenario {
    Scenario {
        name: "s2",
        title: "S2 token-bound: tpm 1,000,000, token burst 2,000, varied prompts and max_tokens",
        mock: MockConfig {
            rpm: 100_000,
            tpm: TOKEN_TPM,
            token_burst: Some(TOKEN_BURST),
            latency: lognormal_800(),
            seed: Some(MOCK_SEED),
            ..MockConfig::default()
        },
        api: Api::Chat,
        key: KEY,
        bodies: varied_bodies(n),
        latency_s: 0.8,
        target: Target::Pacing {
            ratio: 1.05,
            after_cal: None,
            total_429: Some(2),
            all_succeed: false,
        },
        baseline: true,
        references: Vec::new(),
    }
}

/// S3: S2 with faults.
fn s3(n: usize) -> Scenario {
    let mut s = s2(n);
    s.name = "s3";
    s.title = "S3 faults: S2 + 2% 500, 1% 503, 1% reset, 1% truncated";
    s.mock.faults = FaultRates {
        fail_500: 0.02,
        fail_503: 0.01,
        reset: 0.01,
        truncate: 0.01,
        ..FaultRates::default()
    };
    s.target = Target::Pacing {
        ratio: 1.10,
        after_cal: None,
        total_429: None,
        all_succeed: true,
    };
    s
}

/// S4: overhead, against a zero-latency mock with limits far above reach.
fn s4(n: usize, headers: bool) -> Scenario {
    let bodies = (0..n).map(|i| chat(format!("hi {i}"), 16)).collect();
    let (rpm, tpm) = if headers {
        (100_000_000, 100_000_000_000)
    } else {
        (0, 0)
    };
    Scenario {
        name: if headers { "s4" } else { "s4-nolimits" },
        title: if headers {
            "S4 overhead: zero latency, rpm 1e8 / tpm 1e11 (rate-limit headers sent)"
        } else {
            "S4 overhead, variant: zero latency, no limits at all (no rate-limit headers)"
        },
        mock: MockConfig {
            rpm,
            tpm,
            seed: Some(MOCK_SEED),
            ..MockConfig::default()
        },
        api: Api::Chat,
        key: KEY,
        bodies,
        latency_s: 0.0,
        target: Target::Throughput {
            per_second: 5_000.0,
        },
        baseline: false,
        references: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios of issue 13
// ---------------------------------------------------------------------------------------------

/// The Anthropic model of S5 (the mock counts it with cl100k_base).
const CLAUDE: &str = "claude-3-5-haiku-latest";

/// The 200 requests of S5 and S6: one article topic each, 200 output tokens at most.
fn topic_bodies(model: &str) -> Vec<Value> {
    (0..200)
        .map(|i| {
            json!({
                "model": model,
                "max_tokens": 200,
                "messages": [{"role": "user", "content": format!("Write an SEO article about topic number {i}.")}],
            })
        })
        .collect()
}

/// The mock of S5 and S6: rpm 600 with a bucket of 5, 100 ms per answer.
fn small_bucket_mock() -> MockConfig {
    MockConfig {
        rpm: 600,
        burst: Some(5),
        latency: LatencyConfig {
            mean_ms: 100.0,
            sd_ms: 0.0,
            ms_per_token: 0.0,
        },
        seed: Some(MOCK_SEED),
        ..MockConfig::default()
    }
}

/// The target of the request-bound scenarios of issue 13.
const ISSUE13_PACING: Target = Target::Pacing {
    ratio: 1.05,
    after_cal: Some(1),
    total_429: None,
    all_succeed: true,
};

/// S5: Anthropic Message Batches lines through the anthropic provider.
fn s5() -> Scenario {
    Scenario {
        name: "s5",
        title: "S5 Anthropic Message Batches: 200 lines, rpm 600, burst 5, 100 ms",
        mock: small_bucket_mock(),
        api: Api::Messages,
        key: "sk-ant-bench-0005",
        bodies: topic_bodies(CLAUDE),
        latency_s: 0.1,
        target: ISSUE13_PACING,
        baseline: false,
        references: Vec::new(),
    }
}

/// S6: the requests of S5 as OpenAI chat lines, on another key.
fn s6() -> Scenario {
    Scenario {
        name: "s6",
        title: "S6 OpenAI chat: S5's 200 requests, rpm 600, burst 5, 100 ms",
        mock: small_bucket_mock(),
        api: Api::Chat,
        key: "sk-bench-0006",
        bodies: topic_bodies(MODEL),
        latency_s: 0.1,
        target: ISSUE13_PACING,
        baseline: false,
        references: Vec::new(),
    }
}

/// S7: a bucket that holds a whole minute.
fn s7() -> Scenario {
    Scenario {
        name: "s7",
        title: "S7 full-minute bucket: 800 chat requests, rpm 600, burst 600, 200 ms",
        mock: MockConfig {
            rpm: 600,
            burst: Some(600),
            latency: LatencyConfig {
                mean_ms: 200.0,
                sd_ms: 0.0,
                ms_per_token: 0.0,
            },
            seed: Some(MOCK_SEED),
            ..MockConfig::default()
        },
        api: Api::Chat,
        key: "sk-bench-0007",
        bodies: (0..800)
            .map(|i| chat(format!("Summarize item {i} in one line."), 64))
            .collect(),
        latency_s: 0.2,
        target: ISSUE13_PACING,
        baseline: false,
        references: Vec::new(),
    }
}

/// Mean answer length of S8 (`--completion-tokens`): lengths are uniform in [1, 600], capped at
/// `max_tokens` 400.
const S8_COMPLETION_MEAN: u32 = 300;
/// `max_tokens` of S8's articles.
const S8_MAX_TOKENS: u64 = 400;

/// S8's mean latency: 0.8 s + 10 ms × the mean of min(U[1, 600], 400).
fn s8_latency_s() -> f64 {
    let top = u64::from(S8_COMPLETION_MEAN) * 2;
    let mean_tokens = (1..=top).map(|k| k.min(S8_MAX_TOKENS)).sum::<u64>() as f64 / top as f64;
    0.8 + 0.010 * mean_tokens
}

/// S8: the design brief's job, which fits the initial buckets whole.
fn s8() -> Scenario {
    let bodies = (0..200)
        .map(|i| {
            chat(
                format!("Write a 300-word SEO-optimized article about topic {i}, with a title and three sections."),
                S8_MAX_TOKENS,
            )
        })
        .collect();
    Scenario {
        name: "s8",
        title: "S8 the brief's job: 200 articles (max_tokens 400), 500 rpm / 200k tpm buckets holding a minute, 0.8 s ± 0.3 s + 10 ms/token",
        mock: MockConfig {
            rpm: 500,
            tpm: 200_000,
            latency: LatencyConfig {
                mean_ms: 800.0,
                sd_ms: 300.0,
                ms_per_token: 10.0,
            },
            completion_tokens: S8_COMPLETION_MEAN,
            seed: Some(MOCK_SEED),
            ..MockConfig::default()
        },
        api: Api::Chat,
        key: "sk-bench-0008",
        bodies,
        latency_s: s8_latency_s(),
        target: Target::VsReference {
            ratio: 1.05,
            reference: Reference::Raw(200),
        },
        baseline: false,
        references: vec![Reference::Fixed(200), Reference::Raw(200)],
    }
}

/// S9: 503s the mock answers before its quota.
fn s9() -> Scenario {
    Scenario {
        name: "s9",
        title: "S9 uncharged faults: 800 chat requests, bucket 600 at rpm 600, no latency, 5% 503 not charged",
        mock: MockConfig {
            rpm: 600,
            burst: Some(600),
            faults: FaultRates {
                fail_503: 0.05,
                ..FaultRates::default()
            },
            faults_charge: false,
            seed: Some(MOCK_SEED),
            ..MockConfig::default()
        },
        api: Api::Chat,
        key: "sk-bench-0009",
        bodies: (0..800).map(|i| chat(format!("hi {i}"), 16)).collect(),
        latency_s: 0.0,
        target: ISSUE13_PACING,
        baseline: false,
        references: Vec::new(),
    }
}

/// S10: a self-hosted server with one slot.
fn s10() -> Scenario {
    Scenario {
        name: "s10",
        title: "S10 slots: 60 chat requests (max_tokens 32), --slots 1, 0.25 s of service, no limit headers",
        mock: MockConfig {
            slots: Some(1),
            latency: LatencyConfig {
                mean_ms: 250.0,
                sd_ms: 0.0,
                ms_per_token: 0.0,
            },
            seed: Some(MOCK_SEED),
            ..MockConfig::default()
        },
        api: Api::Chat,
        key: "sk-bench-0010",
        bodies: (0..60)
            .map(|i| chat(format!("Name one fact about the number {i}."), 32))
            .collect(),
        latency_s: 0.25,
        target: Target::Slots {
            makespan: 1.05,
            latency: 2.0,
        },
        baseline: false,
        references: [1, 2, 4, 8].map(Reference::Fixed).to_vec(),
    }
}

// ---------------------------------------------------------------------------------------------
// The ideal
// ---------------------------------------------------------------------------------------------

/// The scenario's arithmetic: costs, binding dimension and rate, burst, ideal makespan.
#[derive(Debug, Clone)]
struct Ideal {
    n: usize,
    mean_cost: f64,
    max_cost: u64,
    binding: &'static str,
    /// Requests per second the binding dimension allows.
    rate: f64,
    /// Requests the bucket lets through at once (binding dimension).
    burst: f64,
    latency_s: f64,
    /// `(N − burst) ÷ rate + latency`.
    makespan_s: f64,
    /// Whether the mock charges faulted attempts (`--faults-charge`).
    faults_charged: bool,
}

impl Ideal {
    fn of(s: &Scenario) -> Self {
        let costs: Vec<u64> = s
            .bodies
            .iter()
            .map(|b| tokens::estimate(s.api.endpoint(), b, DEFAULT_MAX_TOKENS).total())
            .collect();
        let n = costs.len();
        let mean_cost = costs.iter().sum::<u64>() as f64 / n.max(1) as f64;
        let max_cost = costs.iter().copied().max().unwrap_or(0);
        let infinite = |x: u64| if x == 0 { f64::INFINITY } else { x as f64 };
        let req_rate = infinite(s.mock.rpm) / 60.0;
        let tok_rate = infinite(s.mock.tpm) / mean_cost / 60.0;
        // A server with slots serves `slots` at once, each for the latency: the same formula with
        // a burst of `slots` and a rate of `slots ÷ latency` gives `N × latency ÷ slots`.
        let slot_rate = match s.mock.slots {
            Some(k) if s.latency_s > 0.0 => k as f64 / s.latency_s,
            _ => f64::INFINITY,
        };
        let (binding, rate, burst) = if slot_rate < req_rate.min(tok_rate) {
            ("slots", slot_rate, s.mock.slots.unwrap_or(1) as f64)
        } else if req_rate <= tok_rate {
            let burst = s.mock.burst.unwrap_or(s.mock.rpm).min(s.mock.rpm) as f64;
            ("requests", req_rate, burst)
        } else {
            let burst = s.mock.token_burst.unwrap_or(s.mock.tpm).min(s.mock.tpm) as f64;
            ("tokens", tok_rate, burst / mean_cost)
        };
        let makespan_s = if rate.is_finite() {
            (n as f64 - burst).max(0.0) / rate + s.latency_s
        } else {
            s.latency_s
        };
        Ideal {
            n,
            mean_cost,
            max_cost,
            binding,
            rate,
            burst,
            latency_s: s.latency_s,
            makespan_s,
            faults_charged: s.mock.faults_charge,
        }
    }

    /// The same formula for `attempts` admitted attempts (faulted attempts are admitted and
    /// charged too, unless the mock does not charge faults, so they take a slot of the binding
    /// rate).
    fn for_attempts(&self, attempts: u64) -> f64 {
        if self.rate.is_finite() {
            (attempts as f64 - self.burst).max(0.0) / self.rate + self.latency_s
        } else {
            self.latency_s
        }
    }
}

/// Check that paceline's estimate and the mock's admission count agree for every body.
fn check_costs(s: &Scenario) {
    let mut mismatches = 0usize;
    for body in &s.bodies {
        let ours = tokens::estimate(s.api.endpoint(), body, DEFAULT_MAX_TOKENS);
        let model = body.get("model").and_then(Value::as_str).unwrap_or(MODEL);
        let theirs = mock::chat::count_messages(body.get("messages"), model, s.api.flavor(), None)
            .expect("benchmark body is a valid chat request");
        if ours.prompt_tokens != theirs {
            mismatches += 1;
        }
    }
    if mismatches > 0 {
        println!(
            "  WARNING: paceline's prompt-token estimate differs from the mock's count for {mismatches} of {} requests",
            s.bodies.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Running contestants
// ---------------------------------------------------------------------------------------------

/// What happened to one attempt, on the contestant's clock (seconds since its start).
#[derive(Debug, Clone, Copy)]
struct Attempt {
    sent: f64,
    done: f64,
    /// HTTP status; 0 for a transport failure (reset, truncated, timeout).
    status: u16,
    /// Index of the request in the scenario.
    index: usize,
}

/// Everything measured about one contestant in one scenario.
#[derive(Debug, Clone)]
struct Measured {
    name: String,
    makespan_s: f64,
    succeeded: u64,
    failed: u64,
    attempts: Vec<Attempt>,
    mock: StatsSnapshot,
    /// Unix second at which the contestant started (for the mock's per-second series).
    start_unix: f64,
    /// paceline only: attempts that waited on a pause, and the summed quota wait.
    paused_attempts: u64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The simulated provider runs on a runtime of its own, as a provider beside paceline would
/// (sharing the machine's cores, not paceline's scheduler).
fn mock_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mock")
            .enable_all()
            .build()
            .expect("build the simulated provider's runtime")
    })
}

async fn fresh_mock(config: &MockConfig) -> MockHandle {
    let config = config.clone();
    mock_runtime()
        .spawn(async move { mock::start(config).await })
        .await
        .expect("the simulated provider's start task")
        .expect("start the simulated provider on loopback")
}

fn write_input(dir: &Path, bodies: &[Value], api: Api) -> std::path::PathBuf {
    let path = dir.join("input.jsonl");
    let file = std::fs::File::create(&path).expect("create the benchmark input file");
    let mut out = std::io::BufWriter::new(file);
    for (i, body) in bodies.iter().enumerate() {
        let line = match api {
            Api::Chat => json!({
                "custom_id": format!("req-{i}"),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            }),
            // Anthropic's Message Batches line.
            Api::Messages => json!({"custom_id": format!("req-{i}"), "params": body}),
        };
        writeln!(out, "{line}").expect("write the benchmark input file");
    }
    out.flush().expect("flush the benchmark input file");
    path
}

/// Run paceline on the scenario against a fresh mock, with no limits configured, adapting its
/// concurrency or with `concurrency` fixed.
async fn run_paceline(s: &Scenario, capture: &Capture, concurrency: Option<usize>) -> Measured {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let input = write_input(dir.path(), &s.bodies, s.api);
    let mock = fresh_mock(&s.mock).await;
    let upstream = Upstream::new(&mock.base_url(), Duration::from_secs(60))
        .expect("build the HTTP client")
        .with_provider(s.api.provider(), None);
    let plan = RunPlan {
        input: InputSpec {
            format: InputFormat::BatchJsonl,
            ..InputSpec::new(&input)
        },
        output: dir.path().join("results.jsonl"),
        output_format: s.api.output_format(),
        state: None,
        skip_invalid: false,
        errors_file: dir.path().join("errors.jsonl"),
        restart: true,
        retry_failed: false,
        stop_timeout: Duration::from_secs(30),
        upstream,
        keys: vec![(
            ApiKey::new(s.key.to_string(), "BENCH_KEY"),
            QuotaConfig::default(),
        )],
        engine: EngineConfig {
            concurrency,
            max_concurrency: 1024,
            backoff: BackoffPolicy {
                max_attempts: MAX_ATTEMPTS,
                ..BackoffPolicy::default()
            },
            seed: Some(7),
            stop_on_uniform_refusals: true,
        },
        default_max_tokens: DEFAULT_MAX_TOKENS,
        display: Display::Quiet,
        shared: None,
        batch: None,
        auto: None,
        prices: None,
        tracer: None,
    };
    capture.start();
    let start_unix = unix_now();
    let started = Instant::now();
    let report = runner::run(plan).await.expect("paceline run");
    let makespan_s = started.elapsed().as_secs_f64();
    let events = capture.stop();
    let stats = mock.stats();
    mock.shutdown().await;
    let attempts = events
        .iter()
        .filter_map(|e| {
            let done = e.at?.saturating_duration_since(started).as_secs_f64();
            Some(Attempt {
                sent: (done - e.latency_ms as f64 / 1000.0).max(0.0),
                done,
                status: u16::try_from(e.status).unwrap_or(0),
                index: e.index,
            })
        })
        .collect();
    Measured {
        name: concurrency.map_or_else(|| "paceline".into(), fixed_name),
        makespan_s,
        succeeded: report.succeeded,
        failed: report.failed + report.unsent,
        attempts,
        mock: stats,
        start_unix,
        paused_attempts: events.iter().filter(|e| e.paused).count() as u64,
    }
}

/// The usual approach: `workers` tasks, a shared queue, a fixed `sleep` after any retryable
/// failure, no header reading.
async fn run_baseline(s: &Scenario, name: &str, workers: usize, sleep: Duration) -> Measured {
    let mock = fresh_mock(&s.mock).await;
    let url = format!("{}/chat/completions", mock.base_url());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("build the baseline HTTP client");
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
        s.bodies
            .iter()
            .map(|b| bytes::Bytes::from(b.to_string()))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let start_unix = unix_now();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (client, url, bodies, next) = (
            client.clone(),
            url.clone(),
            Arc::clone(&bodies),
            Arc::clone(&next),
        );
        tasks.push(tokio::spawn(async move {
            let mut log = Vec::new();
            let (mut ok, mut failed) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let sent = started.elapsed().as_secs_f64();
                    let (status, retryable, success) =
                        baseline_attempt(&client, &url, body.clone()).await;
                    let done = started.elapsed().as_secs_f64();
                    log.push(Attempt {
                        sent,
                        done,
                        status,
                        index: i,
                    });
                    if success {
                        ok += 1;
                        break;
                    }
                    if !retryable || attempt >= MAX_ATTEMPTS {
                        failed += 1;
                        break;
                    }
                    tokio::time::sleep(sleep).await;
                }
            }
            (log, ok, failed)
        }));
    }
    let (mut attempts, mut succeeded, mut failed) = (Vec::new(), 0, 0);
    for task in tasks {
        let (log, ok, bad) = task.await.expect("baseline worker");
        attempts.extend(log);
        succeeded += ok;
        failed += bad;
    }
    let makespan_s = started.elapsed().as_secs_f64();
    // Idle pooled connections would hold the mock's graceful shutdown.
    drop(client);
    let stats = mock.stats();
    mock.shutdown().await;
    attempts.sort_by(|a, b| a.sent.total_cmp(&b.sent));
    Measured {
        name: name.to_string(),
        makespan_s,
        succeeded,
        failed,
        attempts,
        mock: stats,
        start_unix,
        paused_attempts: 0,
    }
}

/// One baseline attempt: (status or 0, retryable, succeeded).
async fn baseline_attempt(
    client: &reqwest::Client,
    url: &str,
    body: bytes::Bytes,
) -> (u16, bool, bool) {
    let sent = client
        .post(url)
        .bearer_auth(KEY)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(_) => return (0, true, false),
    };
    let status = response.status().as_u16();
    let body = response.bytes().await;
    match (status, body) {
        (200..=299, Ok(bytes)) if serde_json::from_slice::<Value>(&bytes).is_ok() => {
            (status, false, true)
        }
        // A 2xx whose body is cut short or not JSON: retry.
        (200..=299, _) => (0, true, false),
        (429, _) | (500..=599, _) => (status, true, false),
        (_, Ok(_)) => (status, false, false),
        (_, Err(_)) => (0, true, false),
    }
}

/// A plain reqwest loop with no pacing: how fast the mock and the HTTP stack go on this machine.
async fn run_raw(s: &Scenario, workers: usize) -> Measured {
    run_baseline(s, &raw_name(workers), workers, Duration::ZERO).await
}

// ---------------------------------------------------------------------------------------------
// Analysis
// ---------------------------------------------------------------------------------------------

/// Derived figures of one contestant.
#[derive(Debug, Clone)]
struct Figures {
    name: String,
    makespan_s: f64,
    ratio: f64,
    /// makespan ÷ the ideal for the attempts actually admitted (faults included).
    ratio_admitted: f64,
    succeeded: u64,
    failed: u64,
    attempts: u64,
    admitted: u64,
    r429: u64,
    r429_after_cal: u64,
    admitted_beyond_limit: u64,
    faults: u64,
    /// Achieved use of the binding dimension over [first send, last send], as a share of its limit.
    achieved_pct: f64,
    requests_per_s: f64,
    /// Time of the first answer (calibration), seconds from start.
    calibrated_s: f64,
    first_send_s: f64,
    sends_before_cal: usize,
    last_send_s: f64,
    /// Send rate between calibration and the last send, requests/s.
    rate_after_cal: f64,
    /// Largest gap between consecutive sends after calibration.
    max_gap_s: f64,
    max_gap_at_s: f64,
    tail_s: f64,
    paused_attempts: u64,
    per_second: Vec<u64>,
    /// Median and 90th percentile latency of the successful attempts, seconds.
    latency: [f64; 2],
    /// The mock's slots and queue (`--slots`).
    slots: Option<SlotStats>,
}

fn analyse(m: &Measured, ideal: &Ideal) -> Figures {
    let mut sends: Vec<f64> = m.attempts.iter().map(|a| a.sent).collect();
    sends.sort_by(f64::total_cmp);
    // The first HTTP answer of any kind carries the rate-limit headers.
    let calibrated_s = m
        .attempts
        .iter()
        .filter(|a| a.status != 0)
        .map(|a| a.done)
        .fold(f64::INFINITY, f64::min);
    let calibrated_s = if calibrated_s.is_finite() {
        calibrated_s
    } else {
        0.0
    };
    let r429_after_cal = m
        .attempts
        .iter()
        .filter(|a| a.status == 429 && a.sent >= calibrated_s)
        .count() as u64;
    let first_send_s = sends.first().copied().unwrap_or(0.0);
    let last_send_s = sends.last().copied().unwrap_or(0.0);
    let sends_before_cal = sends.iter().filter(|t| **t < calibrated_s).count();
    let after: Vec<f64> = sends
        .iter()
        .copied()
        .filter(|t| *t >= calibrated_s)
        .collect();
    let rate_after_cal = if after.len() > 1 {
        (after.len() - 1) as f64 / (last_send_s - after[0]).max(1e-9)
    } else {
        0.0
    };
    let (mut max_gap_s, mut max_gap_at_s) = (0.0, 0.0);
    for w in after.windows(2) {
        if w[1] - w[0] > max_gap_s {
            max_gap_s = w[1] - w[0];
            max_gap_at_s = w[0];
        }
    }
    let t = &m.mock.totals;
    let admitted = t
        .requests
        .saturating_sub(t.rate_limited + t.insufficient_quota + t.unauthorized);
    let faults = t.faults.fail_500
        + t.faults.fail_503
        + t.faults.fail_529
        + t.faults.reset
        + t.faults.truncate
        + t.faults.stall;
    // Faults the mock answered before its quota were not admitted.
    let admitted = if ideal.faults_charged {
        admitted
    } else {
        admitted.saturating_sub(faults)
    };
    let span = (last_send_s - first_send_s).max(1e-9);
    let achieved_pct = if !ideal.rate.is_finite() {
        f64::NAN
    } else if ideal.binding == "slots" {
        // The share of the server's capacity used over the whole run.
        m.succeeded as f64 / m.makespan_s.max(1e-9) / ideal.rate * 100.0
    } else if ideal.binding == "requests" {
        admitted as f64 / span / ideal.rate * 100.0
    } else {
        t.tokens_charged as f64 / span / (ideal.rate * ideal.mean_cost) * 100.0
    };
    // The mock's admissions per unix second, from the contestant's start second.
    let first_sec = m.start_unix.floor() as u64;
    let last_sec = t.per_second.back().map_or(first_sec, |(s, _)| *s);
    let mut per_second = vec![0u64; (last_sec.saturating_sub(first_sec) + 1) as usize];
    for (sec, count) in &t.per_second {
        if let Some(slot) = sec
            .checked_sub(first_sec)
            .and_then(|i| per_second.get_mut(i as usize))
        {
            *slot += count;
        }
    }
    Figures {
        name: m.name.clone(),
        makespan_s: m.makespan_s,
        ratio: m.makespan_s / ideal.makespan_s,
        ratio_admitted: m.makespan_s / ideal.for_attempts(admitted),
        succeeded: m.succeeded,
        failed: m.failed,
        attempts: t.requests,
        admitted,
        r429: t.rate_limited,
        r429_after_cal,
        admitted_beyond_limit: t.admitted_beyond_limit,
        faults,
        achieved_pct,
        requests_per_s: m.succeeded as f64 / m.makespan_s,
        calibrated_s,
        first_send_s,
        sends_before_cal,
        last_send_s,
        rate_after_cal,
        max_gap_s,
        max_gap_at_s,
        tail_s: m.makespan_s - last_send_s,
        paused_attempts: m.paused_attempts,
        per_second,
        latency: latency_quantiles(m),
        slots: m.mock.slots,
    }
}

/// Median and 90th percentile of the latency of the successful attempts (send to answer, as the
/// contestant saw it: a request queued at the server waits in it).
fn latency_quantiles(m: &Measured) -> [f64; 2] {
    let mut latencies: Vec<f64> = m
        .attempts
        .iter()
        .filter(|a| (200..300).contains(&a.status))
        .map(|a| a.done - a.sent)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round().max(0.0) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    [at(0.5), at(0.9)]
}

/// Whether paceline's figures (the first of `all`) meet the scenario's target, and why not.
fn verdict(target: Target, all: &[Figures]) -> (bool, String) {
    let Some(f) = all.first() else {
        return (false, "nothing measured".into());
    };
    let fixed = |c: usize| all.iter().find(|g| g.name == fixed_name(c));
    let mut misses = Vec::new();
    match target {
        Target::Pacing {
            ratio,
            after_cal,
            total_429,
            all_succeed,
        } => {
            if f.ratio > ratio {
                misses.push(format!("ratio {:.3} > {ratio}", f.ratio));
            }
            if let Some(max) = after_cal
                && f.r429_after_cal > max
            {
                misses.push(format!(
                    "{} 429s after calibration > {max}",
                    f.r429_after_cal
                ));
            }
            if let Some(max) = total_429
                && f.r429 > max
            {
                misses.push(format!("{} 429s > {max}", f.r429));
            }
            if all_succeed && f.failed > 0 {
                misses.push(format!("{} final failures", f.failed));
            }
        }
        Target::Throughput { per_second } => {
            if f.requests_per_s < per_second {
                misses.push(format!("{:.0} req/s < {per_second}", f.requests_per_s));
            }
        }
        Target::VsReference { ratio, reference } => {
            match all.iter().find(|g| g.name == reference.name()) {
                Some(r) => {
                    if f.makespan_s > ratio * r.makespan_s {
                        misses.push(format!(
                            "makespan {:.2}s > {ratio} × {:.2}s ({})",
                            f.makespan_s, r.makespan_s, r.name
                        ));
                    }
                }
                None => misses.push(format!("no run of {}", reference.name())),
            }
        }
        Target::Slots { makespan, latency } => {
            let best = all
                .iter()
                .filter(|g| g.name.starts_with(FIXED_PREFIX))
                .min_by(|a, b| a.makespan_s.total_cmp(&b.makespan_s));
            match best {
                Some(b) if f.makespan_s > makespan * b.makespan_s => misses.push(format!(
                    "makespan {:.2}s > {makespan} × {:.2}s ({})",
                    f.makespan_s, b.makespan_s, b.name
                )),
                Some(_) => {}
                None => misses.push("no fixed-concurrency run".into()),
            }
            match fixed(1) {
                Some(one) if f.latency[0].is_nan() || f.latency[0] > latency * one.latency[0] => {
                    misses.push(format!(
                        "median latency {:.3}s > {latency} × {:.3}s (at concurrency 1)",
                        f.latency[0], one.latency[0]
                    ))
                }
                Some(_) => {}
                None => misses.push(format!("no run of {}", fixed_name(1))),
            }
        }
    }
    if matches!(target, Target::VsReference { .. } | Target::Slots { .. }) && f.failed > 0 {
        misses.push(format!("{} final failures", f.failed));
    }
    (misses.is_empty(), misses.join("; "))
}

fn target_text(target: Target) -> String {
    match target {
        Target::Pacing {
            ratio,
            after_cal,
            total_429,
            all_succeed,
        } => {
            let mut parts = vec![format!("ratio <= {ratio}")];
            if let Some(n) = after_cal {
                parts.push(format!("<= {n} 429 after calibration"));
            }
            if let Some(n) = total_429 {
                parts.push(format!("<= {n} 429s in total"));
            }
            if all_succeed {
                parts.push("every request succeeds".into());
            }
            parts.join(", ")
        }
        Target::Throughput { per_second } => format!(">= {per_second} requests/s"),
        Target::VsReference { ratio, reference } => format!(
            "makespan <= {ratio} × {}'s, every request succeeds",
            reference.name()
        ),
        Target::Slots { makespan, latency } => format!(
            "makespan <= {makespan} × the best fixed concurrency's, median latency <= {latency} × \
             the median at concurrency 1, every request succeeds"
        ),
    }
}

fn series_text(series: &[u64]) -> String {
    let mut text = String::new();
    for (i, n) in series.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        let _ = write!(text, "{n}");
    }
    text
}

fn print_table(s: &Scenario, ideal: &Ideal, figures: &[Figures]) {
    println!();
    println!("{}", s.title);
    println!(
        "  N {}  mean admission cost {:.1} tokens (max {})  binding {}  rate {:.2} req/s  burst {:.2} req  latency {:.2} s  ideal {:.2} s",
        ideal.n,
        ideal.mean_cost,
        ideal.max_cost,
        ideal.binding,
        ideal.rate,
        ideal.burst,
        ideal.latency_s,
        ideal.makespan_s
    );
    println!(
        "  {:<34} {:>9} {:>7} {:>8} {:>6} {:>9} {:>6} {:>7} {:>7} {:>8} {:>9}",
        "contestant",
        "makespan",
        "ratio",
        "ratio_ad",
        "429s",
        "429s>cal",
        "fails",
        "faults",
        "beyond",
        "achieved",
        "req/s"
    );
    for f in figures {
        println!(
            "  {:<34} {:>8.2}s {:>7.3} {:>8.3} {:>6} {:>9} {:>6} {:>7} {:>7} {:>7.1}% {:>9.1}",
            f.name,
            f.makespan_s,
            f.ratio,
            f.ratio_admitted,
            f.r429,
            f.r429_after_cal,
            f.failed,
            f.faults,
            f.admitted_beyond_limit,
            f.achieved_pct,
            f.requests_per_s
        );
    }
}

/// Replay the client's own send times through the mock's bucket model (same limits, same
/// costs): how many attempts the *schedule* would have had refused if every request reached the
/// mock the instant it was sent. Compared with the 429s actually received, this separates a
/// schedule that outruns the limit from jitter between sending and admission.
fn replay(m: &Measured, s: &Scenario, costs: &[u64]) -> (u64, Vec<f64>) {
    let base = Instant::now();
    let at = |t: f64| base + Duration::from_secs_f64(t.max(0.0));
    let mut requests =
        (s.mock.rpm > 0).then(|| mock::bucket::Bucket::new(s.mock.rpm, s.mock.burst, at(0.0)));
    let mut tokens = (s.mock.tpm > 0)
        .then(|| mock::bucket::Bucket::new(s.mock.tpm, s.mock.token_burst, at(0.0)));
    let mut sends: Vec<&Attempt> = m.attempts.iter().collect();
    sends.sort_by(|a, b| a.sent.total_cmp(&b.sent));
    let (mut refused, mut when) = (0u64, Vec::new());
    for a in sends {
        let now = at(a.sent);
        let cost = costs.get(a.index).copied().unwrap_or(0);
        let ok_r = requests.as_mut().is_none_or(|b| b.check(1, now).is_ok());
        let ok_t = tokens.as_mut().is_none_or(|b| b.check(cost, now).is_ok());
        if ok_r && ok_t {
            if let Some(b) = requests.as_mut() {
                b.charge(1, now);
            }
            if let Some(b) = tokens.as_mut() {
                b.charge(cost, now);
            }
        } else {
            refused += 1;
            when.push(a.sent);
        }
    }
    (refused, when)
}

fn times_text(times: &[f64]) -> String {
    let shown: Vec<String> = times.iter().take(12).map(|t| format!("{t:.3}")).collect();
    let more = times.len().saturating_sub(12);
    if more > 0 {
        format!("{} (+{more} more)", shown.join(" "))
    } else {
        shown.join(" ")
    }
}

/// Where the 429s were: send times, and what the replay of the send schedule says.
fn print_429s(m: &Measured, s: &Scenario, costs: &[u64]) {
    let mut got: Vec<f64> = m
        .attempts
        .iter()
        .filter(|a| a.status == 429)
        .map(|a| a.sent)
        .collect();
    got.sort_by(f64::total_cmp);
    let (replayed, when) = replay(m, s, costs);
    println!(
        "    429s received at (s, send time): [{}]; replaying the send times through the mock's \
         bucket refuses {replayed}: [{}]",
        times_text(&got),
        times_text(&when)
    );
}

fn print_diagnosis(f: &Figures, ideal: &Ideal, series: bool) {
    println!(
        "  {}: first send {:.3}s, first answer (calibration) {:.3}s with {} sends before it, \
         send rate after calibration {:.2}/s (limit {:.2}/s), last send {:.2}s, tail {:.2}s \
         (mean latency {:.2}s), largest gap after calibration {:.3}s at {:.2}s, attempts {} \
         (admitted {}), {} attempts waited on a 429 pause",
        f.name,
        f.first_send_s,
        f.calibrated_s,
        f.sends_before_cal,
        f.rate_after_cal,
        ideal.rate,
        f.last_send_s,
        f.tail_s,
        ideal.latency_s,
        f.max_gap_s,
        f.max_gap_at_s,
        f.attempts,
        f.admitted,
        f.paused_attempts
    );
    if ideal.rate.is_finite() {
        // Where the time went, against the ideal schedule: burst at 0, then the binding rate.
        let pacing_needed = (f.admitted as f64 - ideal.burst).max(0.0) / ideal.rate;
        println!(
            "    time budget: ideal sending {:.2}s for {} admitted attempts vs actual last send {:.2}s \
             (+{:.2}s); tail {:.2}s vs latency {:.2}s (+{:.2}s)",
            pacing_needed,
            f.admitted,
            f.last_send_s,
            f.last_send_s - pacing_needed,
            f.tail_s,
            ideal.latency_s,
            f.tail_s - ideal.latency_s
        );
    }
    if series {
        println!(
            "    mock admissions per second: {}",
            series_text(&f.per_second)
        );
    }
}

/// Each contestant's latency (send to answer) quantiles.
fn print_latencies(figures: &[Figures]) {
    for f in figures {
        println!(
            "  {}: latency of the successful attempts median {:.3}s, p90 {:.3}s",
            f.name, f.latency[0], f.latency[1]
        );
    }
}

/// The mock's queue as one contestant left it.
fn print_slots(f: &Figures) {
    if let Some(q) = f.slots {
        let mean_wait = q.wait_ms_total as f64 / q.served.max(1) as f64 / 1000.0;
        println!(
            "  {}: server queue: peak in service {} of {}, peak queued {}, served {}, mean wait \
             for a slot {:.3}s (longest {:.3}s), left the queue {}",
            f.name,
            q.peak_in_service,
            q.slots,
            q.peak_queued,
            q.served,
            mean_wait,
            q.wait_ms_max as f64 / 1000.0,
            q.left_queue
        );
    }
}

fn json_line(s: &Scenario, ideal: &Ideal, figures: &[Figures], met: bool, why: &str) -> String {
    let contestants: Vec<Value> = figures
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "makespan_s": round(f.makespan_s, 3),
                "ratio": round(f.ratio, 3),
                "ratio_admitted": round(f.ratio_admitted, 3),
                "succeeded": f.succeeded,
                "failed": f.failed,
                "attempts": f.attempts,
                "admitted": f.admitted,
                "faults": f.faults,
                "r429": f.r429,
                "r429_after_calibration": f.r429_after_cal,
                "admitted_beyond_limit": f.admitted_beyond_limit,
                "achieved_pct_of_limit": round(f.achieved_pct, 1),
                "requests_per_s": round(f.requests_per_s, 1),
                "calibrated_s": round(f.calibrated_s, 3),
                "tail_s": round(f.tail_s, 3),
                "latency_median_s": round(f.latency[0], 3),
                "latency_p90_s": round(f.latency[1], 3),
                "server_queue": f.slots,
            })
        })
        .collect();
    json!({
        "scenario": s.name,
        "n": ideal.n,
        "mock": {
            "rpm": s.mock.rpm,
            "tpm": s.mock.tpm,
            "burst": s.mock.burst,
            "token_burst": s.mock.token_burst,
            "latency_ms": s.mock.latency.mean_ms,
            "latency_sd_ms": s.mock.latency.sd_ms,
            "faults": {
                "fail_500": s.mock.faults.fail_500,
                "fail_503": s.mock.faults.fail_503,
                "reset": s.mock.faults.reset,
                "truncate": s.mock.faults.truncate,
            },
            "faults_charge": s.mock.faults_charge,
            "slots": s.mock.slots,
            "api": format!("{:?}", s.api),
        },
        "mean_admission_cost": round(ideal.mean_cost, 1),
        "binding": ideal.binding,
        "binding_rate_per_s": round(ideal.rate, 3),
        "burst_requests": round(ideal.burst, 2),
        "ideal_s": round(ideal.makespan_s, 3),
        "target": target_text(s.target),
        "met": met,
        "miss": why,
        "contestants": contestants,
    })
    .to_string()
}

fn round(x: f64, digits: i32) -> Value {
    if x.is_finite() {
        let p = 10f64.powi(digits);
        json!((x * p).round() / p)
    } else {
        Value::Null
    }
}

/// Run one scenario: paceline, then (when asked) the two baselines, each on a fresh mock.
async fn run_scenario(s: Scenario, opts: &Options, capture: &Capture) -> String {
    check_costs(&s);
    let ideal = Ideal::of(&s);
    if let Some(burst) = s.mock.token_burst
        && ideal.max_cost > burst
    {
        println!(
            "  WARNING: the largest admission cost ({}) exceeds the token burst ({burst}); \
             the mock admits it only from a full bucket",
            ideal.max_cost
        );
    }
    eprintln!("[{}] paceline ...", s.name);
    let mut measured = vec![run_paceline(&s, capture, None).await];
    for &reference in &s.references {
        eprintln!("[{}] {} ...", s.name, reference.name());
        measured.push(match reference {
            Reference::Fixed(concurrency) => run_paceline(&s, capture, Some(concurrency)).await,
            Reference::Raw(workers) => run_raw(&s, workers).await,
        });
    }
    if s.baseline && opts.baseline {
        eprintln!("[{}] baseline W=10, 15 s sleep ...", s.name);
        measured.push(
            run_baseline(
                &s,
                "baseline W=10, sleep 15s (cookbook)",
                10,
                Duration::from_secs(15),
            )
            .await,
        );
        let workers = (ideal.rate * ideal.latency_s).ceil().max(1.0) as usize;
        eprintln!("[{}] baseline W={workers}, 1 s sleep ...", s.name);
        measured.push(
            run_baseline(
                &s,
                &format!("baseline W={workers}, sleep 1s (tuned)"),
                workers,
                Duration::from_secs(1),
            )
            .await,
        );
    }
    if matches!(s.target, Target::Throughput { .. }) && opts.baseline {
        eprintln!("[{}] raw reqwest reference ...", s.name);
        measured.push(run_raw(&s, 64).await);
    }
    let mut figures: Vec<Figures> = measured.iter().map(|m| analyse(m, &ideal)).collect();
    if matches!(s.target, Target::Throughput { .. }) {
        // Limits far above reach: a ratio to an "ideal" of a few milliseconds means nothing.
        for f in &mut figures {
            f.ratio = f64::NAN;
            f.ratio_admitted = f64::NAN;
            f.achieved_pct = f64::NAN;
        }
    }
    print_table(&s, &ideal, &figures);
    let (met, why) = verdict(s.target, &figures);
    println!(
        "  target ({}): {}",
        target_text(s.target),
        if met {
            "MET".to_string()
        } else {
            format!("MISSED: {why}")
        }
    );
    if ISSUE13.contains(&s.name) {
        print_latencies(&figures);
    }
    if s.name == "s8" {
        println!(
            "  note: the ideal is the mean answer's latency; the last of 200 answers sent at once \
             takes longer (the tail of the latency distribution): the raw reqwest run sends all 200 \
             at t = 0, so its makespan is the floor this latency model allows"
        );
    }
    if s.name == "s9" {
        println!(
            "  note: the mock answers its 503s before its quota (--faults-charge false): they use no \
             rate, so ratio_ad compares with the ideal for the attempts the buckets admitted"
        );
    }
    if s.name == "s3" {
        println!(
            "  note: faulted attempts are admitted and charged by the mock, so they use the binding rate too; \
             ratio_ad compares with the ideal for the attempts actually admitted"
        );
    }
    let costs: Vec<u64> = s
        .bodies
        .iter()
        .map(|b| tokens::estimate(s.api.endpoint(), b, DEFAULT_MAX_TOKENS).total())
        .collect();
    for (f, m) in figures.iter().zip(&measured) {
        if matches!(s.target, Target::Slots { .. }) {
            print_slots(f);
        } else if matches!(s.target, Target::Pacing { .. } | Target::VsReference { .. }) {
            print_diagnosis(f, &ideal, opts.series || (!met && f.name == "paceline"));
            if f.name == "paceline" && (f.r429 > 0 || opts.series) {
                print_429s(m, &s, &costs);
            }
        } else {
            println!(
                "  {}: mock admissions per second: {}",
                f.name,
                series_text(&f.per_second)
            );
        }
    }
    json_line(&s, &ideal, &figures, met, &why)
}

fn main() {
    let opts = parse_args();
    let capture = Capture::default();
    tracing_subscriber::registry()
        .with(capture.clone())
        .try_init()
        .expect("install the attempt-event capture");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    let (n, n4) = if opts.quick {
        (300, 3_000)
    } else {
        (2_000, 20_000)
    };
    println!(
        "paceline pacing benchmarks ({}; {} cores; mock in the same process on its own runtime, loopback)",
        if opts.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut lines = Vec::new();
    runtime.block_on(async {
        for name in &opts.scenarios {
            match name.as_str() {
                "s1" => lines.push(run_scenario(s1(n), &opts, &capture).await),
                "s2" => lines.push(run_scenario(s2(n), &opts, &capture).await),
                "s3" => lines.push(run_scenario(s3(n), &opts, &capture).await),
                "s4" => {
                    lines.push(run_scenario(s4(n4, true), &opts, &capture).await);
                    lines.push(run_scenario(s4(n4, false), &opts, &capture).await);
                }
                "s5" => lines.push(run_scenario(s5(), &opts, &capture).await),
                "s6" => lines.push(run_scenario(s6(), &opts, &capture).await),
                "s7" => lines.push(run_scenario(s7(), &opts, &capture).await),
                "s8" => lines.push(run_scenario(s8(), &opts, &capture).await),
                "s9" => lines.push(run_scenario(s9(), &opts, &capture).await),
                "s10" => lines.push(run_scenario(s10(), &opts, &capture).await),
                _ => {}
            }
        }
    });
    println!();
    for line in lines {
        println!("{line}");
    }
}
