//! Distributed-mode benchmark: real `redis-server`s on free loopback ports.
//!
//! 1. Admissions per second through the shared quota's script, from 1 and from 4 clients
//!    (each with its own connection, as separate processes would have).
//! 2. 16 runs sharing one key through Redis against the simulated provider (observe-only
//!    limits): the aggregate admitted rate against the limit, requests admitted beyond it,
//!    and Redis commands per request from `INFO commandstats`.
//! 3. 32 `paceline run` processes (the release binary) sharing one key, through one plain
//!    Redis and through a 3-primary / 3-replica Redis Cluster, against the simulated provider
//!    in this process: once with observe-only limits (requests admitted beyond the limit are
//!    counted instead of refused) and once with enforced limits (429s). Aggregate rate / limit,
//!    admissions beyond the limit, 429s, and the Redis round trips the clients made, summed over
//!    every node (not the script's own calls), in two parts: per admission (`EVALSHA`, one per
//!    admission plus any sent again after a `NOSCRIPT`) and per process, once, to connect
//!    (`CLUSTER SLOTS`, `SCRIPT LOAD`, and what the client library sends on each connection:
//!    `PING`, `READONLY`, `CLIENT SETINFO`, `HELLO`, `AUTH`, `SELECT`).
//!
//! `cargo bench --bench redis` (release). Needs `redis-server` and `redis-cli` on the PATH.

#[path = "../tests/common/redis.rs"]
#[allow(
    dead_code,
    reason = "the tests' Redis helpers; the bench uses some of them"
)]
mod servers;

use paceline::batch::{InputFormat, InputSpec};
use paceline::distributed::{Op, RedisTarget, SharedQuotas};
use paceline::engine::EngineConfig;
use paceline::progress::Display;
use paceline::quota::QuotaConfig;
use paceline::retry::BackoffPolicy;
use paceline::runner::{self, RunPlan};
use paceline::upstream::{ApiKey, Upstream};
use paceline_mock::{self as mock, MockConfig};
use serde_json::json;
use servers::{RedisCluster, RedisServer};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "sk-bench-shared-key";

/// Admissions per second from `clients` clients over `span`.
async fn admissions(url: &str, clients: usize, span: Duration) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.to_string();
            tokio::spawn(async move {
                let shared = SharedQuotas::connect(
                    &RedisTarget::new(url.as_str()),
                    1.0,
                    tokio::runtime::Handle::current(),
                )
                .await
                .expect("connect");
                let cell = shared.cell("sk-admissions", "m");
                let limits = [Some((1_000_000_000, 1_000_000_000)), None, None, None];
                let mut n = 0u64;
                while started.elapsed() < span {
                    cell.call(Op::Admit, None, 0, limits, [1, 0, 0, 0])
                        .await
                        .expect("admit");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("admission task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn input(dir: &std::path::Path, run: usize, n: usize) -> std::path::PathBuf {
    let path = dir.join(format!("in{run}.jsonl"));
    let mut out = std::fs::File::create(&path).expect("create input");
    for i in 0..n {
        let line = json!({
            "custom_id": format!("r{i}"),
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "max_tokens": 16,
                     "messages": [{"role": "user", "content": format!("Say hello number {i}")}]}
        });
        writeln!(out, "{line}").expect("write input");
    }
    path
}

/// The simulated provider at `rpm`, burst 20; `soft`: observe-only limits (what is beyond the
/// limit is admitted and counted), else enforced (429).
async fn provider(rpm: u64, soft: bool) -> mock::MockHandle {
    mock::start(MockConfig {
        rpm,
        burst: Some(20),
        soft_limits: soft,
        ..MockConfig::default()
    })
    .await
    .expect("start the simulated provider")
}

/// Admissions per second over the whole seconds strictly inside the run (the first and last
/// are partial), and how many seconds that is.
fn inner_rate(per_second: &std::collections::VecDeque<(u64, u64)>) -> (f64, usize) {
    let counts: Vec<u64> = per_second.iter().map(|(_, n)| *n).collect();
    let inner = &counts[1..counts.len().saturating_sub(1).max(1)];
    (
        inner.iter().sum::<u64>() as f64 / inner.len().max(1) as f64,
        inner.len(),
    )
}

/// `runs` runs of `per_run` requests sharing one key with `rpm` through Redis.
async fn shared_runs(redis: &RedisServer, runs: usize, per_run: usize, rpm: u64) {
    let provider = provider(rpm, true).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (calls_before, evalsha_before) = (all_calls(redis), redis.command_calls("evalsha"));
    let started = Instant::now();
    let tasks: Vec<_> = (0..runs)
        .map(|run| {
            let input = input(dir.path(), run, per_run);
            let output = dir.path().join(format!("out{run}.jsonl"));
            let errors_file = dir.path().join(format!("err{run}.jsonl"));
            let base_url = provider.base_url();
            let url = redis.url();
            tokio::spawn(async move {
                let shared = SharedQuotas::connect(
                    &RedisTarget::new(url.as_str()),
                    1.0 / runs as f64,
                    tokio::runtime::Handle::current(),
                )
                .await
                .expect("connect");
                let plan = RunPlan {
                    input: InputSpec {
                        format: InputFormat::BatchJsonl,
                        ..InputSpec::new(&input)
                    },
                    output,
                    output_format: paceline::batch::OutputFormat::OpenAi,
                    state: None,
                    skip_invalid: false,
                    errors_file,
                    restart: true,
                    retry_failed: false,
                    stop_timeout: Duration::from_secs(30),
                    upstream: Upstream::new(&base_url, Duration::from_secs(60)).expect("client"),
                    keys: vec![(ApiKey::new(KEY.into(), "BENCH_KEY"), QuotaConfig::default())],
                    engine: EngineConfig {
                        concurrency: None,
                        max_concurrency: 1024,
                        backoff: BackoffPolicy::default(),
                        seed: Some(run as u64),
                        stop_on_uniform_refusals: true,
                    },
                    default_max_tokens: 16,
                    display: Display::Quiet,
                    shared: Some(std::sync::Arc::new(shared)),
                    batch: None,
                    auto: None,
                    prices: None,
                    tracer: None,
                };
                runner::run(plan).await.expect("run")
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("run task");
    }
    let wall = started.elapsed().as_secs_f64();
    let (calls_after, evalsha_after) = (all_calls(redis), redis.command_calls("evalsha"));
    let stats = provider.stats();
    provider.shutdown().await;
    let totals = &stats.totals;
    let (rate, seconds) = inner_rate(&totals.per_second);
    let limit = rpm as f64 / 60.0;
    let requests = totals.requests as f64;
    println!(
        "{runs:>2} runs × {per_run} requests, limit {limit:.0}/s: {} requests in {wall:.1}s; \
         admitted {rate:.1}/s over the {} whole seconds inside the run ({:.1} % of the limit); \
         admitted beyond the limit {}; 429s {}; EVALSHA per request {:.2}; \
         Redis commands per request {:.2} (script-internal calls included)",
        totals.requests,
        seconds,
        rate / limit * 100.0,
        totals.admitted_beyond_limit,
        totals.rate_limited,
        (evalsha_after - evalsha_before) as f64 / requests,
        (calls_after - calls_before) as f64 / requests,
    );
}

/// Every command's calls in `INFO commandstats` (the scripts' inner calls included).
fn all_calls(redis: &RedisServer) -> u64 {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter(|l| l.starts_with("cmdstat_"))
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|r| r.split(',').next())
        .filter_map(|c| c.parse::<u64>().ok())
        .sum()
}

/// What a client sends once per admission.
const ADMISSION_COMMANDS: [&str; 1] = ["evalsha"];

/// What a client sends once, to connect (to each node, on a cluster).
const SETUP_COMMANDS: [&str; 8] = [
    "script|load",
    "cluster|slots",
    "ping",
    "readonly",
    "client|setinfo",
    "hello",
    "auth",
    "select",
];

/// Where the processes meet: one Redis or a cluster.
enum Deployment {
    Plain(RedisServer),
    Cluster(RedisCluster),
}

impl Deployment {
    fn name(&self) -> &'static str {
        match self {
            Deployment::Plain(_) => "one Redis",
            Deployment::Cluster(_) => "3-primary cluster",
        }
    }

    fn url(&self) -> String {
        match self {
            Deployment::Plain(redis) => redis.url(),
            Deployment::Cluster(cluster) => cluster.url(),
        }
    }

    /// The calls of these commands, summed over every node.
    fn calls(&self, commands: &[&str]) -> u64 {
        commands
            .iter()
            .map(|command| match self {
                Deployment::Plain(redis) => redis.command_calls(command),
                Deployment::Cluster(cluster) => cluster.command_calls(command),
            })
            .sum()
    }
}

/// When a process sent its first and its last request (ms since the epoch), read from the
/// attempts its state keeps (`ended_at - latency_ms`).
fn sending_span(state: &std::path::Path) -> (i64, i64) {
    let db = rusqlite::Connection::open(state).expect("open a process's state");
    db.query_row(
        "SELECT MIN(ended_at - latency_ms), MAX(ended_at - latency_ms) FROM attempts",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .expect("read the attempts")
}

/// The provider's admissions per second over the whole seconds inside `[from, to]` (ms since
/// the epoch), and how many seconds that is.
fn rate_within(
    per_second: &std::collections::VecDeque<(u64, u64)>,
    from: i64,
    to: i64,
) -> (f64, usize) {
    let first = (from + 999).div_euclid(1000);
    let end = to.div_euclid(1000);
    let inside: u64 = per_second
        .iter()
        .filter(|(second, _)| (first..end).contains(&(*second as i64)))
        .map(|(_, n)| *n)
        .sum();
    let seconds = usize::try_from(end - first).unwrap_or(0);
    (inside as f64 / seconds.max(1) as f64, seconds)
}

/// `processes` `paceline run` processes of `per_process` requests each, sharing one key of
/// `rpm` through `deployment`; `soft`: observe-only limits, else enforced. The rate is the
/// provider's count over the whole seconds in which every process was sending (from the last
/// one's first request to the first one's last), so that neither the processes' staggered
/// start nor their end dilutes it.
async fn many_processes(
    deployment: &Deployment,
    processes: usize,
    per_process: usize,
    rpm: u64,
    soft: bool,
) {
    let provider = provider(rpm, soft).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let key = format!("{KEY}-{}-{soft}", deployment.name().replace(' ', "-"));
    let admission_before = deployment.calls(&ADMISSION_COMMANDS);
    let setup_before = deployment.calls(&SETUP_COMMANDS);
    let started = Instant::now();
    let children: Vec<_> = (0..processes)
        .map(|i| {
            let input = input(dir.path(), i, per_process);
            let output = dir.path().join(format!("out{i}.jsonl"));
            let state = dir.path().join(format!("state{i}.db"));
            Command::new(env!("CARGO_BIN_EXE_paceline"))
                .args(["run", input.to_str().expect("path"), "-q", "--restart"])
                .args(["-o", output.to_str().expect("path")])
                .args(["--state", state.to_str().expect("path")])
                .args(["--base-url", &provider.base_url()])
                .args(["--redis", &deployment.url()])
                .args(["--processes", &processes.to_string()])
                .env("OPENAI_API_KEY", &key)
                .env_remove("PACELINE_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn paceline")
        })
        .collect();
    for child in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("join")
            .expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let wall = started.elapsed().as_secs_f64();
    let admission_trips = deployment.calls(&ADMISSION_COMMANDS) - admission_before;
    let setup_trips = deployment.calls(&SETUP_COMMANDS) - setup_before;
    let stats = provider.stats();
    provider.shutdown().await;
    let totals = &stats.totals;
    let spans: Vec<(i64, i64)> = (0..processes)
        .map(|i| sending_span(&dir.path().join(format!("state{i}.db"))))
        .collect();
    let all_from = spans.iter().map(|s| s.0).max().unwrap_or(0);
    let all_to = spans.iter().map(|s| s.1).min().unwrap_or(0);
    let (rate, seconds) = rate_within(&totals.per_second, all_from, all_to);
    let limit = rpm as f64 / 60.0;
    println!(
        "{processes} processes × {per_process} requests through {}, limit {limit:.0}/s, {} \
         limits: {} requests in {wall:.1}s; admitted {rate:.1}/s over the {} whole seconds in \
         which all {processes} were sending ({:.3} of the limit); admitted beyond the limit {}; \
         429s {}; Redis round trips: {:.3} per admission, {:.1} per process to connect, {:.3} \
         per request in all",
        deployment.name(),
        if soft { "observe-only" } else { "enforced" },
        totals.requests,
        seconds,
        rate / limit,
        totals.admitted_beyond_limit,
        totals.rate_limited,
        admission_trips as f64 / totals.requests.max(1) as f64,
        setup_trips as f64 / processes as f64,
        (admission_trips + setup_trips) as f64 / totals.requests.max(1) as f64,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let redis = RedisServer::start();
    runtime.block_on(async {
        for clients in [1, 4] {
            let rate = admissions(&redis.url(), clients, Duration::from_secs(3)).await;
            println!("admissions through Redis from {clients} client(s): {rate:.0}/s");
        }
        shared_runs(&redis, 4, 300, 12_000).await;
        shared_runs(&redis, 16, 100, 12_000).await;
    });
    let deployments = [
        Deployment::Plain(redis),
        Deployment::Cluster(RedisCluster::start()),
    ];
    runtime.block_on(async {
        for deployment in &deployments {
            for soft in [true, false] {
                many_processes(deployment, 32, 500, 12_000, soft).await;
            }
        }
    });
}
