//! `paceline run --via auto --deadline` end to end: the real binary against `paceline mock` over
//! loopback HTTP. With batches too slow for the deadline, the batch path hands the rest to live
//! requests in time (the mock's batch cancelled, what it finished kept) and the job ends before
//! the deadline; with fast batches every request goes by batch; a job killed during its batch
//! path and run again keeps its deadline and decides anew from the state.

mod common;

use common::job::{Workdir, all_ids, output_ids, paceline, s, spawn, stderr, unique};
use common::mock::MockProcess;
use std::path::Path;
use std::time::{Duration, Instant};

const N: usize = 400;

/// `run --via auto` of `input` against `mock`: live at 12,000 requests a minute (200 a second:
/// the 400 requests take about a second live), the hand-over margin 2 s.
fn args<'a>(input: &'a Path, out: &'a Path, base: &'a str, deadline: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        s(input),
        "-o",
        s(out),
        "--base-url",
        base,
        "--provider",
        "openai",
        "--via",
        "auto",
        "--deadline",
        deadline,
        "--handover-margin",
        "2s",
        "--rpm",
        "12000",
        "--batch-poll-min",
        "50ms",
        "--batch-poll-max",
        "200ms",
    ]
}

/// The number before `by batch` and before `live` on the summary's `via` line.
fn ways(summary: &str) -> (u64, u64) {
    let line = summary
        .lines()
        .find(|l| l.trim_start().starts_with("via "))
        .unwrap_or_else(|| panic!("no via line in:\n{summary}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_batches_hand_the_rest_to_live_requests_before_the_deadline() {
    let dir = Workdir::new();
    let input = dir.batch("in.jsonl", N);
    // 20 requests a second: the batch would take 20 s; the deadline is 8 s. The hand-over is
    // due at 8 − 1 s × 1.25 − 2 s = 4.75 s, when the batch has run ~90 requests.
    let mock = MockProcess::start(&[
        "--seed",
        "3",
        "--batch-speed",
        "20",
        "--batch-validation",
        "100ms",
    ]);
    let out = dir.path("out.jsonl");
    let base = mock.base_url();
    let started = Instant::now();
    let run = paceline(&args(&input, &out, &base, "8s"));
    let took = started.elapsed();
    let text = stderr(&run);
    assert!(run.status.success(), "{text}");
    assert!(took < Duration::from_secs(8), "took {took:?}:\n{text}");
    // Every request once, in the live format.
    let ids = output_ids(&out);
    assert_eq!(ids.len(), N);
    assert_eq!(unique(&ids), all_ids(N));
    let stats = mock.stats().await;
    assert_eq!(stats["batches"]["cancelled"], 1, "{stats}");
    let live = stats["totals"]["requests"].as_u64().unwrap();
    let (by_batch, by_live) = ways(&text);
    assert!(by_batch > 0 && by_live > 0, "{text}");
    assert_eq!(by_batch + by_live, N as u64, "{text}");
    assert_eq!(
        live, by_live,
        "each live result was one request at the mock"
    );
    assert!(text.contains("handed to live requests"), "{text}");
    assert!(text.contains("(all live: $"), "{text}");
    eprintln!("the job ended after {took:?}:\n{text}");
    // The batch's attempts are recorded like live ones.
    let status = paceline(&["status", s(&out)]);
    assert!(status.status.success(), "{}", stderr(&status));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_batches_keep_every_request_on_the_batch_path() {
    let dir = Workdir::new();
    let input = dir.batch("in.jsonl", N);
    let mock = MockProcess::start(&[
        "--seed",
        "3",
        "--batch-speed",
        "100000",
        "--batch-validation",
        "100ms",
    ]);
    let out = dir.path("out.jsonl");
    let base = mock.base_url();
    let run = paceline(&args(&input, &out, &base, "8s"));
    let text = stderr(&run);
    assert!(run.status.success(), "{text}");
    assert_eq!(unique(&output_ids(&out)), all_ids(N));
    let stats = mock.stats().await;
    assert_eq!(stats["totals"]["requests"], 0, "nothing went live: {stats}");
    assert_eq!(stats["batches"]["cancelled"], 0, "{stats}");
    assert_eq!(ways(&text), (N as u64, 0), "{text}");
    assert!(text.contains("--via auto: 400 succeeded"), "{text}");
    assert!(text.contains("50% less"), "{text}");
    eprintln!("{text}");
    // Each request a batch returned is an attempt in the state, as a live one is.
    let status = paceline(&["status", s(&out)]);
    let shown = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(shown.contains("attempts  400 (0 retries"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_job_resumes_with_its_deadline_and_decides_from_the_state() {
    let dir = Workdir::new();
    let input = dir.batch("in.jsonl", N);
    let mock = MockProcess::start(&[
        "--seed",
        "4",
        "--batch-speed",
        "20",
        "--batch-validation",
        "100ms",
    ]);
    let out = dir.path("out.jsonl");
    let base = mock.base_url();
    let started = Instant::now();
    let mut first = spawn(&args(&input, &out, &base, "8s"));
    // Killed once its batch runs, well before the hand-over is due (4.75 s).
    while mock.stats().await["batches"]["batches_created"] == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "no batch created"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = first.kill();
    let _ = first.wait();
    let killed_at = started.elapsed();
    let run = paceline(&args(&input, &out, &base, "8s"));
    let took = started.elapsed();
    let text = stderr(&run);
    assert!(run.status.success(), "{text}");
    // The deadline counts from the job's start, not from the second run's.
    assert!(took < Duration::from_secs(8), "took {took:?}:\n{text}");
    assert_eq!(unique(&output_ids(&out)), all_ids(N));
    assert_eq!(output_ids(&out).len(), N);
    let b = &mock.stats().await["batches"];
    // The batch the first run created was found, not created again, then cancelled.
    assert_eq!(b["batches_created"], 1, "{b}");
    assert_eq!(b["cancelled"], 1, "{b}");
    let (by_batch, by_live) = ways(&text);
    assert!(by_batch > 0 && by_live > 0, "{text}");
    eprintln!("killed after {killed_at:?}; the job ended after {took:?}:\n{text}");
}

#[test]
fn a_deadline_without_via_auto_is_refused_and_nothing_is_sent() {
    let dir = Workdir::new();
    let input = dir.batch("in.jsonl", 3);
    let out = dir.path("out.jsonl");
    // Nothing listens here: the run must stop before it sends anything.
    for via in ["live", "batch"] {
        let run = paceline(&[
            "run",
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--via",
            via,
            "--deadline",
            "6h",
        ]);
        let text = stderr(&run);
        assert_eq!(run.status.code(), Some(2), "{text}");
        assert!(
            text.contains(&format!(
                "--deadline is kept by --via auto only (with --via {via}"
            )),
            "{text}"
        );
        assert!(!out.exists(), "{text}");
    }
}
