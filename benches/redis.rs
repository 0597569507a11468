//! Distributed-mode benchmark: a real `redis-server` on a free loopback port.
//!
//! 1. Admissions per second through the shared quota's script, from 1 and from 4 clients
//!    (each with its own connection, as separate processes would have).
//! 2. 16 runs sharing one key through Redis against the simulated provider (observe-only
//!    limits): the aggregate admitted rate against the limit, requests admitted beyond it,
//!    and Redis commands per request from `INFO commandstats`.
//!
//! `cargo bench --bench redis` (release). Needs `redis-server` on the PATH.

use paceline::batch::{InputFormat, InputSpec};
use paceline::distributed::{Op, SharedQuotas};
use paceline::engine::EngineConfig;
use paceline::progress::Display;
use paceline::quota::QuotaConfig;
use paceline::retry::BackoffPolicy;
use paceline::runner::{self, RunPlan};
use paceline::upstream::{ApiKey, Upstream};
use paceline_mock::{self as mock, MockConfig};
use serde_json::json;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "sk-bench-shared-key";

struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let redis = Redis { child, port };
        let until = Instant::now() + Duration::from_secs(10);
        while redis.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < until, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Every command's calls (scripts' inner commands included) and EVALSHA's alone.
    fn calls(&self) -> (u64, u64) {
        let info = self.cli(&["INFO", "commandstats"]);
        let mut total = 0;
        let mut evalsha = 0;
        for line in info.lines().filter(|l| l.starts_with("cmdstat_")) {
            let calls = line
                .split("calls=")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(0);
            total += calls;
            if line.starts_with("cmdstat_evalsha:") {
                evalsha += calls;
            }
        }
        (total, evalsha)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Admissions per second from `clients` clients over `span`.
async fn admissions(url: &str, clients: usize, span: Duration) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.to_string();
            tokio::spawn(async move {
                let shared = SharedQuotas::connect(&url, 1.0, tokio::runtime::Handle::current())
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

/// `runs` runs of `per_run` requests sharing one key with `rpm` through Redis.
async fn shared_runs(redis: &Redis, runs: usize, per_run: usize, rpm: u64) {
    let provider = mock::start(MockConfig {
        rpm,
        burst: Some(20),
        soft_limits: true,
        ..MockConfig::default()
    })
    .await
    .expect("start the simulated provider");
    let dir = tempfile::tempdir().expect("temp dir");
    let (calls_before, evalsha_before) = redis.calls();
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
                    &url,
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
                    },
                    default_max_tokens: 16,
                    display: Display::Quiet,
                    shared: Some(std::sync::Arc::new(shared)),
                    batch: None,
                };
                runner::run(plan).await.expect("run")
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("run task");
    }
    let wall = started.elapsed().as_secs_f64();
    let (calls_after, evalsha_after) = redis.calls();
    let stats = provider.stats();
    provider.shutdown().await;
    let totals = &stats.totals;
    let counts: Vec<u64> = totals.per_second.iter().map(|(_, n)| *n).collect();
    let inner = &counts[1..counts.len().saturating_sub(1).max(1)];
    let rate = inner.iter().sum::<u64>() as f64 / inner.len().max(1) as f64;
    let limit = rpm as f64 / 60.0;
    let requests = totals.requests as f64;
    println!(
        "{runs:>2} runs × {per_run} requests, limit {limit:.0}/s: {} requests in {wall:.1}s; \
         admitted {rate:.1}/s over the {} whole seconds inside the run ({:.1} % of the limit); \
         admitted beyond the limit {}; 429s {}; EVALSHA per request {:.2}; \
         Redis commands per request {:.2} (script-internal calls included)",
        totals.requests,
        inner.len(),
        rate / limit * 100.0,
        totals.admitted_beyond_limit,
        totals.rate_limited,
        (evalsha_after - evalsha_before) as f64 / requests,
        (calls_after - calls_before) as f64 / requests,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let redis = Redis::start();
    runtime.block_on(async {
        for clients in [1, 4] {
            let rate = admissions(&redis.url(), clients, Duration::from_secs(3)).await;
            println!("admissions through Redis from {clients} client(s): {rate:.0}/s");
        }
        shared_runs(&redis, 4, 300, 12_000).await;
        shared_runs(&redis, 16, 100, 12_000).await;
    });
}
