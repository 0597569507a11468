//! The shared quota in Redis: the Lua script against the in-process arithmetic, and several
//! `paceline run` processes sharing one key against the mock. A real `redis-server` on a free
//! port, the real binary, the mock over loopback HTTP.

mod common;

use common::job::{KEY, Workdir, s, stderr};
use common::mock::{MockProcess, chat_body};
use common::redis::RedisServer;
use common::serve::ServeProcess;
use paceline::distributed::{Op, RedisTarget, SharedQuotas};
use serde_json::Value;
use std::process::Command;
use std::sync::Mutex;

/// The tests that run several paceline processes measure rates: one at a time, so they do not
/// compete for the machine's cores.
static PROCESSES: Mutex<()> = Mutex::new(());

/// The shared quotas on `redis`, the whole of each limit this process's own.
async fn connect(redis: &RedisServer) -> SharedQuotas {
    SharedQuotas::connect(
        &RedisTarget::new(redis.url()),
        1.0,
        tokio::runtime::Handle::current(),
    )
    .await
    .unwrap()
}

/// The table `src/quota/gcra.rs`'s unit test runs on the in-process cell, run by the script on
/// a fixed clock: the same operations give the same times.
#[tokio::test]
async fn the_script_matches_the_in_process_cell() {
    let redis = RedisServer::start();
    let shared = connect(&redis).await;
    let cases: Value = serde_json::from_str(include_str!("../src/quota/gcra_cases.json")).unwrap();
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let n = |v: &Value| v.as_u64().unwrap();
        let cell = shared.cell(name, "model");
        let limits = [
            Some((n(&case["per_minute"]), n(&case["burst"]))),
            None,
            None,
            None,
        ];
        for (i, op) in case["ops"].as_array().unwrap().iter().enumerate() {
            let now = n(&op["now"]);
            let amount = op["amount"].as_i64().unwrap();
            let kind = match op["op"].as_str().unwrap() {
                "admit" => Op::Admit,
                "settle" => Op::Settle,
                "pause" => Op::Pause {
                    for_ns: n(&op["until"]) - now,
                    refused: 1,
                },
                other => panic!("unknown op {other}"),
            };
            let margin = n(&case["margin_ns"]);
            let answer = cell
                .call(kind, Some(now), margin, limits, [amount, 0, 0, 0])
                .await
                .unwrap();
            if kind == Op::Admit {
                assert_eq!(now + answer.wait_ns, n(&op["go"]), "{name} op {i}: go");
            }
            assert_eq!(answer.tat[0], Some(n(&op["tat"])), "{name} op {i}: tat");
        }
    }
}

#[tokio::test]
async fn every_dimension_is_reserved_at_once() {
    let redis = RedisServer::start();
    let shared = connect(&redis).await;
    let cell = shared.cell("sk-any", "gpt-4o-mini");
    // 60 requests/min (burst 10) and 600 tokens/min (burst 100): 100 tokens at once, then
    // 10 tokens per second.
    let limits = [Some((60, 10)), Some((600, 100)), None, None];
    let first = cell
        .call(Op::Admit, Some(0), 0, limits, [1, 100, 0, 0])
        .await
        .unwrap();
    assert_eq!(first.wait_ns, 0);
    // The tokens are short: the request waits for them, and its request unit is committed at
    // that same time.
    let second = cell
        .call(Op::Admit, Some(0), 0, limits, [1, 50, 0, 0])
        .await
        .unwrap();
    assert_eq!(second.wait_ns, 5_000_000_000);
    assert_eq!(
        second.tat,
        [Some(6_000_000_000), Some(15_000_000_000), None, None]
    );
    // A limit stored by one caller meters a caller that knows none (still probing).
    let third = cell
        .call(Op::Admit, Some(0), 0, [None; 4], [1, 10, 0, 0])
        .await
        .unwrap();
    assert_eq!(third.wait_ns, 15_000_000_000 - 9_000_000_000);
}

/// Before anyone knows a limit, the callers' probes share one schedule: four processes
/// starting at once send what one would before the first answer.
#[tokio::test]
async fn callers_probe_on_one_schedule_until_a_limit_is_known() {
    let redis = RedisServer::start();
    let shared = connect(&redis).await;
    let cells: Vec<_> = (0..4)
        .map(|_| shared.cell("sk-new", "gpt-4o-mini"))
        .collect();
    let probe = Op::Probe {
        step_ns: 50_000_000,
    };
    let mut goes = Vec::new();
    for k in 0..8 {
        let answer = cells[k % 4]
            .call(probe, Some(0), 0, [None; 4], [1, 10, 0, 0])
            .await
            .unwrap();
        goes.push(answer.wait_ns / 1_000_000);
    }
    // The k-th request at 50 ms × log2(k), whichever caller sends it.
    assert_eq!(goes, [0, 50, 79, 100, 116, 129, 140, 150]);
    // A caller that had its answer (no limit headers at all) is not held to the probe.
    let after_answer = cells[0]
        .call(Op::Admit, Some(0), 0, [None; 4], [1, 10, 0, 0])
        .await
        .unwrap();
    assert_eq!(after_answer.wait_ns, 0);
    // Once one caller has learned a limit (100/s, burst 20), every caller is metered by it, not
    // by the probe; and the eight probe requests, sent before anyone knew the limit, are in the
    // provider's bucket: 12 more fit at once, not 20.
    let limits = [Some((6000, 20)), None, None, None];
    let at = 200_000_000;
    let mut at_once = 0;
    for k in 0..20 {
        let (cell_limits, op) = if k == 0 {
            (limits, Op::Admit)
        } else {
            ([None; 4], probe)
        };
        let answer = cells[k % 4]
            .call(op, Some(at), 0, cell_limits, [1, 10, 0, 0])
            .await
            .unwrap();
        if answer.wait_ns == 0 {
            at_once += 1;
        } else {
            // The next goes when one unit has refilled.
            assert_eq!(answer.wait_ns, 10_000_000 * (k as u64 - 11), "request {k}");
        }
    }
    assert_eq!(at_once, 12);
}

/// A caller whose connections open fast gives a shorter probe step: the shared schedule takes
/// the shortest step any caller has given, from the latest probe on (it keeps its time; no
/// burst to catch up with the shorter schedule), and a caller still on the default step does
/// not slow it down again.
#[tokio::test]
async fn the_shared_probe_takes_the_shortest_step_from_the_latest_probe_on() {
    let redis = RedisServer::start();
    let shared = connect(&redis).await;
    let far = shared.cell("sk-new", "gpt-4o-mini");
    let near = shared.cell("sk-new", "gpt-4o-mini");
    let default = Op::Probe {
        step_ns: 50_000_000,
    };
    let short = Op::Probe {
        step_ns: 10_000_000,
    };
    let mut goes = Vec::new();
    for (cell, op) in [
        (&far, default),
        (&far, default),
        (&near, short),
        (&near, short),
    ]
    .into_iter()
    .chain([(&far, default), (&near, short)])
    {
        let answer = cell
            .call(op, Some(0), 0, [None; 4], [1, 10, 0, 0])
            .await
            .unwrap();
        goes.push(answer.wait_ns as f64 / 1e6);
    }
    // 0 and 50 ms at the default step; then 50 + 10 × log2(k / 2) for the k-th: 55.8, 60,
    // 63.2 and 65.8 ms, whichever caller sends it.
    let expected = [0.0, 50.0, 55.85, 60.0, 63.22, 65.85];
    for (go, want) in goes.iter().zip(expected) {
        assert!((go - want).abs() < 0.01, "{goes:?}");
    }
}

#[test]
fn a_bad_url_is_a_usage_error_without_the_password() {
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 1);
    let out = Command::new(env!("CARGO_BIN_EXE_paceline"))
        .args([
            "run",
            s(&input),
            "-q",
            "--redis",
            "redis://user:hunter2@127.0.0.1:1",
        ])
        .env("OPENAI_API_KEY", KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--redis"), "{err}");
    assert!(err.contains("redis://user:***@127.0.0.1:1"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// Admissions per second over the whole seconds strictly inside the run (the first and last
/// are partial).
fn mean_rate(per_second: &Value) -> (f64, usize) {
    let counts: Vec<u64> = per_second
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[1].as_u64().unwrap())
        .collect();
    assert!(counts.len() >= 4, "run too short to measure: {counts:?}");
    let inner = &counts[1..counts.len() - 1];
    (
        inner.iter().sum::<u64>() as f64 / inner.len() as f64,
        inner.len(),
    )
}

/// The mock's admissions per second (`stats` from [`MockProcess::stats`]) are at least
/// `at_least` of the limit, and above it by no more than the burst spread over the run (a
/// second's count can hold a little of the burst on top).
fn assert_rate_within(stats: &Value, rpm: u64, burst: u64, at_least: f64) {
    let limit = rpm as f64 / 60.0;
    let (rate, seconds) = mean_rate(&stats["totals"]["per_second"]);
    assert!(rate >= at_least * limit, "{rate}/s of {limit}/s: {stats}");
    assert!(
        rate <= limit + burst as f64 / seconds as f64,
        "{rate}/s of {limit}/s: {stats}"
    );
}

/// A mock with soft limits: it admits everything and counts what its buckets would have
/// refused, so an overshoot shows as a number instead of as retried 429s.
fn soft_mock(rpm: u64, burst: u64) -> MockProcess {
    MockProcess::start(&[
        "--rpm",
        &rpm.to_string(),
        "--burst",
        &burst.to_string(),
        "--soft-limits",
    ])
}

#[test]
fn four_processes_share_one_limit() {
    let _one_at_a_time = PROCESSES.lock().unwrap_or_else(|p| p.into_inner());
    const RPM: u64 = 6000;
    const BURST: u64 = 20;
    let redis = RedisServer::start();
    let mock = soft_mock(RPM, BURST);
    let w = Workdir::new();
    let children: Vec<_> = (0..4)
        .map(|i| {
            let input = w.batch(&format!("in{i}.jsonl"), 150);
            let out = w.path(&format!("out{i}.jsonl"));
            Command::new(env!("CARGO_BIN_EXE_paceline"))
                .args(["run", s(&input), "-o", s(&out), "-q"])
                .args(["--base-url", &mock.base_url(), "--redis", &redis.url()])
                .args(["--processes", "4"])
                .env("OPENAI_API_KEY", KEY)
                .env_remove("PACELINE_LOG")
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let stats = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(mock.stats());
    let totals = &stats["totals"];
    assert_eq!(totals["requests"], 600, "{stats}");
    assert_eq!(totals["admitted_beyond_limit"], 0, "{stats}");
    assert_eq!(totals["rate_limited"], 0, "{stats}");
    // The processes together use the whole limit: 97-100 % of it.
    assert_rate_within(&stats, RPM, BURST, 0.97);
    // One round trip per admission and one per settlement.
    let calls = redis.command_calls("evalsha");
    assert!(calls <= 2 * 600, "{calls} EVALSHA for 600 requests");
}

#[test]
fn runs_outlive_a_redis_restart() {
    let _one_at_a_time = PROCESSES.lock().unwrap_or_else(|p| p.into_inner());
    const RPM: u64 = 3000;
    let mut redis = RedisServer::start();
    let port = redis.port();
    // The mock enforces its limits: a request beyond them gets a real 429.
    let mock = MockProcess::start(&["--rpm", &RPM.to_string(), "--burst", "10"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let requests = || {
        runtime.block_on(mock.stats())["totals"]["requests"]
            .as_u64()
            .unwrap()
    };
    let wait_for = |n: u64| {
        while requests() < n {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let w = Workdir::new();
    let mut children: Vec<_> = (0..2)
        .map(|i| {
            let input = w.batch(&format!("in{i}.jsonl"), 150);
            let out = w.path(&format!("out{i}.jsonl"));
            let child = Command::new(env!("CARGO_BIN_EXE_paceline"))
                .args(["run", s(&input), "-o", s(&out), "-q"])
                .args(["--base-url", &mock.base_url(), "--redis", &redis.url()])
                .args(["--processes", "2"])
                .env("OPENAI_API_KEY", KEY)
                .env_remove("PACELINE_LOG")
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    wait_for(80);
    redis.kill();
    // The runs go on without Redis, on half of the limit each.
    let during = requests();
    wait_for(during + 40);
    // Back, empty.
    let _redis = RedisServer::on_port(port);
    for (child, out) in children.drain(..) {
        let run = child.wait_with_output().unwrap();
        let err = stderr(&run);
        assert!(run.status.success(), "{err}");
        assert!(err.contains("Redis unreachable"), "{err}");
        assert!(err.contains("Redis reachable again"), "{err}");
        let lines = std::fs::read_to_string(out).unwrap().lines().count();
        assert_eq!(lines, 150);
    }
    let stats = runtime.block_on(mock.stats());
    let totals = &stats["totals"];
    let limited = totals["rate_limited"].as_u64().unwrap();
    assert!(
        limited * 100 <= 300,
        "{limited} 429s for 300 requests: {stats}"
    );
}

#[test]
fn two_gateways_share_one_limit() {
    let _one_at_a_time = PROCESSES.lock().unwrap_or_else(|p| p.into_inner());
    const RPM: u64 = 3000;
    const BURST: u64 = 10;
    const REQUESTS: usize = 200;
    let redis = RedisServer::start();
    let mock = soft_mock(RPM, BURST);
    let gateways: Vec<ServeProcess> = (0..2)
        .map(|_| {
            ServeProcess::start(
                &[
                    "--base-url",
                    &mock.base_url(),
                    "--api-key-env",
                    "UPSTREAM_KEY",
                    "--redis",
                    &redis.url(),
                    "--processes",
                    "2",
                ],
                &[("UPSTREAM_KEY", KEY)],
            )
        })
        .collect();
    let urls: Vec<String> = gateways
        .iter()
        .map(|g| g.url("/v1/chat/completions"))
        .collect();
    let statuses = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = reqwest::Client::new();
        // 40 clients, half on each gateway, each sending its share back to back.
        let tasks: Vec<_> = (0..40)
            .map(|c| {
                let (client, url) = (client.clone(), urls[c % 2].clone());
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    for _ in 0..REQUESTS / 40 {
                        let resp = client
                            .post(&url)
                            .header("x-paceline-max-wait", "60s")
                            .json(&chat_body("gpt-4o-mini", "Hello", 4))
                            .send()
                            .await
                            .unwrap();
                        statuses.push(resp.status().as_u16());
                        resp.bytes().await.unwrap();
                    }
                    statuses
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    assert_eq!(statuses.len(), REQUESTS);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let stats = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(mock.stats());
    let totals = &stats["totals"];
    assert_eq!(totals["requests"], REQUESTS, "{stats}");
    // Together the two gateways never went beyond the one limit.
    assert_eq!(totals["admitted_beyond_limit"], 0, "{stats}");
    // And used it: 40 clients offer far more than the limit.
    assert_rate_within(&stats, RPM, BURST, 0.9);
    // Both carried traffic through the shared quota.
    assert!(redis.command_calls("evalsha") >= REQUESTS as u64, "{stats}");
}
