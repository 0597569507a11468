//! The shared work queue: several `paceline run --redis URL --job NAME` processes on one job,
//! one of them killed; `paceline export` and `paceline status` read it from Redis.

mod common;

use common::job::{KEY, Workdir, paceline, s, signal, stderr, stdout, wait_for};
use common::mock::MockProcess;
use common::redis::RedisServer;
use serde_json::Value;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn worker(input: &str, redis: &str, mock: &MockProcess, out: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_paceline"))
        .args(["run", input, "-q", "-o", out, "--job", "articles"])
        .args(["--base-url", &mock.base_url(), "--redis", redis])
        .args([
            "--processes",
            "3",
            "--claim-idle",
            "1s",
            "--concurrency",
            "8",
        ])
        .env("OPENAI_API_KEY", KEY)
        .env_remove("PACELINE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn paceline")
}

/// `paceline export --redis URL --job JOB -o OUT`.
fn export_job(redis: &str, job: &str, out: &std::path::Path) -> std::process::Output {
    paceline(&["export", "--redis", redis, "--job", job, "-o", s(out)])
}

/// Output lines by custom_id; panics if an id appears twice.
fn by_id(text: &str) -> HashMap<String, Value> {
    let mut map = HashMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        let id = v["custom_id"].as_str().expect("custom_id").to_string();
        assert!(map.insert(id.clone(), v).is_none(), "{id} exported twice");
    }
    map
}

#[test]
fn killed_and_stopped_workers_lose_nothing_and_duplicate_nothing() {
    const N: usize = 90;
    let redis = RedisServer::start();
    let mock = MockProcess::start(&["--rpm", "1200", "--burst", "5", "--latency-ms", "50"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let w = Workdir::new();
    let input = w.batch("in.jsonl", N);
    let outs: Vec<_> = (0..3).map(|i| w.path(&format!("out{i}.jsonl"))).collect();
    let mut workers: Vec<Child> = outs
        .iter()
        .map(|out| worker(s(&input), &redis.url(), &mock, s(out)))
        .collect();
    while runtime.block_on(mock.stats())["totals"]["requests"]
        .as_u64()
        .unwrap()
        < 20
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&workers[0], libc::SIGKILL);
    let _ = wait_for(&mut workers[0], Duration::from_secs(5));

    // Status while the job runs.
    let status = paceline(&[
        "status",
        "--redis",
        &redis.url(),
        "--job",
        "articles",
        "--json",
    ]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["total"], N as u64, "{status}");

    // SIGTERM: the worker stops taking requests, stores what it finishes, and exits 143.
    while runtime.block_on(mock.stats())["totals"]["requests"]
        .as_u64()
        .unwrap()
        < 40
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&workers[1], libc::SIGTERM);
    let stopped = workers.remove(1).wait_with_output().unwrap();
    assert_eq!(stopped.status.code(), Some(143), "{}", stderr(&stopped));
    assert!(
        stderr(&stopped).contains("stopped by SIGTERM"),
        "{}",
        stderr(&stopped)
    );

    let last = workers.remove(1).wait_with_output().unwrap();
    assert!(last.status.success(), "{}", stderr(&last));
    let export = w.path("export.jsonl");
    let run = export_job(&redis.url(), "articles", &export);
    assert!(run.status.success(), "{}", stderr(&run));
    let results = by_id(&std::fs::read_to_string(&export).unwrap());
    assert_eq!(results.len(), N);
    for i in 0..N {
        let r = &results[&format!("r{i}")];
        assert_eq!(r["response"]["status_code"], 200, "{r}");
        assert!(r["error"].is_null(), "{r}");
    }
    // The last worker exported the complete job too.
    assert_eq!(by_id(&std::fs::read_to_string(&outs[2]).unwrap()).len(), N);
    let status = paceline(&["status", "--redis", &redis.url(), "--job", "articles"]);
    assert!(stdout(&status).contains("finished"), "{}", stdout(&status));
}

#[test]
fn an_unknown_job_is_an_error_and_the_results_file_has_a_normal_mode() {
    use std::os::unix::fs::PermissionsExt;
    let redis = RedisServer::start();
    let mock = MockProcess::start(&[]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 5);
    let shared = w.path("shared.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_paceline"))
        .args([
            "run",
            s(&input),
            "-q",
            "-o",
            s(&shared),
            "--job",
            "articles",
        ])
        .args(["--base-url", &mock.base_url(), "--redis", &redis.url()])
        .env("OPENAI_API_KEY", KEY)
        .env_remove("PACELINE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run paceline");
    assert!(run.status.success(), "{}", stderr(&run));
    let plain = w.path("plain.jsonl");
    let run = paceline(&[
        "run",
        s(&input),
        "-q",
        "-o",
        s(&plain),
        "--base-url",
        &mock.base_url(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .expect("results file")
            .permissions()
            .mode()
            & 0o777
    };
    // The shared job's results file gets the mode of a plain run's output (0644 under umask 022).
    assert_eq!(mode(&shared), mode(&plain));
    let export = w.path("export.jsonl");
    let run = export_job(&redis.url(), "articles", &export);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(mode(&export), mode(&plain));

    // A job name Redis has never seen is an error naming it, not a job "still loading".
    let status = paceline(&["status", "--redis", &redis.url(), "--job", "typo"]);
    assert_eq!(status.status.code(), Some(2), "{}", stdout(&status));
    assert!(
        stderr(&status).contains("no job named \"typo\""),
        "{}",
        stderr(&status)
    );
    let status = paceline(&["status", "--redis", &redis.url(), "--job", "typo", "--json"]);
    assert_eq!(status.status.code(), Some(2), "{}", stdout(&status));
    let typo = w.path("typo.jsonl");
    let run = export_job(&redis.url(), "typo", &typo);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("no job named \"typo\""),
        "{}",
        stderr(&run)
    );
    assert!(!typo.exists());
    // The real job still answers.
    let status = paceline(&["status", "--redis", &redis.url(), "--job", "articles"]);
    assert!(status.status.success(), "{}", stderr(&status));
}
