//! The crash harness: `paceline run` against the mock over HTTP, killed (SIGKILL) or stopped
//! (SIGINT, SIGTERM) at many seeded points — while starting, mid-flight, while results are being
//! written, while retries wait — then resumed until done. Every `custom_id` must end up in the
//! output exactly once, none lost, the same set as an uninterrupted run's.

mod common;

use common::job::{
    Workdir, all_ids, output_ids, output_lines, paceline, s, signal, spawn, stderr, unique,
    wait_for,
};
use common::mock::MockProcess;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

const N: usize = 300;

/// A mock slow and faulty enough that a run lasts a couple of seconds, with retry waits.
fn faulty_mock(seed: &str) -> MockProcess {
    MockProcess::start(&[
        "--rpm",
        "9000",
        "--burst",
        "20",
        "--latency-ms",
        "20",
        "--latency-sd",
        "10",
        "--fail-500",
        "0.08",
        "--reset",
        "0.02",
        "--seed",
        seed,
    ])
}

fn run_args<'a>(input: &'a str, out: &'a str, base_url: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        input,
        "-o",
        out,
        "--base-url",
        base_url,
        "--quiet",
        "--seed",
        "5",
        "--stop-timeout",
        "10s",
    ]
}

/// When to kill a run.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// This long after it starts.
    After(Duration),
    /// Once the output holds this many more complete lines than when it started.
    Lines(usize),
}

/// Wait for `trigger` (or the child's exit); returns whether the child is still running.
fn wait_trigger(child: &mut std::process::Child, out: &std::path::Path, trigger: Trigger) -> bool {
    let started = Instant::now();
    let base = output_lines(out);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return false;
        }
        let hit = match trigger {
            Trigger::After(d) => started.elapsed() >= d,
            Trigger::Lines(n) => output_lines(out) >= base + n,
        };
        if hit {
            return true;
        }
        if started.elapsed() > Duration::from_secs(30) {
            panic!("trigger {trigger:?} not reached in 30 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_seeded_points_then_resume_gives_every_result_exactly_once() {
    // The reference: one uninterrupted run.
    let w = Workdir::new();
    let input = w.batch("in.jsonl", N);
    let reference = w.path("reference.jsonl");
    let mock = faulty_mock("21");
    let base = mock.base_url();
    let run = paceline(&run_args(s(&input), s(&reference), &base));
    assert!(run.status.success(), "{}", stderr(&run));
    let expected = unique(&output_ids(&reference));
    assert_eq!(expected, all_ids(N));
    let sent_before = mock.stats().await["totals"]["requests"]
        .as_u64()
        .unwrap_or(0);

    let out = w.path("out.jsonl");
    let mut rng = SmallRng::seed_from_u64(20240601);
    // Early points (during setup and the first requests), then points by results written
    // (mid-flight and during output writing); 8 % 500s and 2 % resets keep retries waiting.
    let mut triggers = vec![
        Trigger::After(Duration::from_millis(5)),
        Trigger::After(Duration::from_millis(40)),
        Trigger::Lines(1),
    ];
    for _ in 0..5 {
        triggers.push(Trigger::Lines(rng.random_range(1..40)));
    }
    for _ in 0..4 {
        triggers.push(Trigger::After(Duration::from_millis(
            rng.random_range(80..600),
        )));
    }
    let mut kills = 0;
    for trigger in &triggers {
        let mut child = spawn(&run_args(s(&input), s(&out), &base));
        if !wait_trigger(&mut child, &out, *trigger) {
            break;
        }
        signal(&child, libc::SIGKILL);
        let status = wait_for(&mut child, Duration::from_secs(10)).expect("killed run exits");
        assert!(!status.success());
        kills += 1;
        // Even right after a kill, no complete line is there twice.
        unique(&output_ids(&out));
    }
    assert!(
        kills >= 10,
        "only {kills} kills landed before the job finished"
    );

    let run = paceline(&run_args(s(&input), s(&out), &base));
    assert!(run.status.success(), "{}", stderr(&run));
    let got = unique(&output_ids(&out));
    assert_eq!(
        got, expected,
        "the resumed output differs from the uninterrupted one"
    );
    assert_eq!(output_lines(&out), N);

    // Every request reached the provider at least once.
    let stats = mock.stats().await;
    let sent = stats["totals"]["requests"].as_u64().unwrap_or(0) - sent_before;
    assert!(sent >= N as u64, "{stats}");

    // The state agrees.
    let status = paceline(&["status", s(&out), "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let st: serde_json::Value =
        serde_json::from_slice(&status.stdout).expect("status --json is JSON");
    assert_eq!(st["done"], N as u64, "{st}");
    assert_eq!(st["phase"], "finished", "{st}");
    // A kill during setup leaves no run behind; the others do.
    assert!(st["runs"].as_u64().unwrap_or(0) >= kills as u64 / 2, "{st}");
}

/// Stop a run with `sig` once some results are written; it must exit with `code`, resumable.
async fn graceful_stop_then_resume(sig: i32, code: i32) {
    let w = Workdir::new();
    let input = w.batch("in.jsonl", N);
    let out = w.path("out.jsonl");
    let mock = faulty_mock("33");
    let base = mock.base_url();
    let args = run_args(s(&input), s(&out), &base);
    let mut stopped_mid_run = 0;
    for lines in [5, 60] {
        let mut child = spawn(&args);
        if !wait_trigger(&mut child, &out, Trigger::Lines(lines)) {
            break;
        }
        signal(&child, sig);
        let status = wait_for(&mut child, Duration::from_secs(15)).expect("stops in time");
        assert_eq!(status.code(), Some(code), "{status:?}");
        stopped_mid_run += 1;
        unique(&output_ids(&out));
        let st = paceline(&["status", s(&out), "--json"]);
        let st: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status JSON");
        assert_eq!(st["phase"]["resumable"]["last_run"], "interrupted", "{st}");
        // In-flight requests were let finish: nothing is left in flight.
        assert_eq!(st["in_flight"], 0, "{st}");
    }
    assert!(stopped_mid_run >= 1);
    let run = paceline(&args);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stderr(&run).contains("resuming"), "{}", stderr(&run));
    assert_eq!(unique(&output_ids(&out)), all_ids(N));
    assert_eq!(output_lines(&out), N);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_cleanly_with_130_and_resumes() {
    graceful_stop_then_resume(libc::SIGINT, 130).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_cleanly_with_143_and_resumes() {
    graceful_stop_then_resume(libc::SIGTERM, 143).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigint_exits_at_once_and_the_job_still_resumes() {
    let w = Workdir::new();
    let input = w.batch("in.jsonl", N);
    let out = w.path("out.jsonl");
    // Slow answers: the first Ctrl-C alone would wait for them.
    let mock = MockProcess::start(&["--latency-ms", "3000", "--seed", "4"]);
    let base = mock.base_url();
    let mut args = run_args(s(&input), s(&out), &base);
    args.extend(["--concurrency", "8"]);
    let mut child = spawn(&args);
    // `status` of a running job: the store knows what the process holds, the process what it
    // is sending (8 at a time, each answer 3 s away), said once a second.
    let asked = Instant::now();
    let running = loop {
        let text = common::job::stdout(&paceline(&["status", s(&out)]));
        if text.contains("  now       8 being sent, ") || asked.elapsed() > Duration::from_secs(10)
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        running.contains("held by the running process")
            && running.contains("  now       8 being sent, "),
        "{running}"
    );
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    signal(&child, libc::SIGINT);
    let status = wait_for(&mut child, Duration::from_secs(2)).expect("exits at once");
    assert_eq!(status.code(), Some(130));
    assert!(asked.elapsed() < Duration::from_secs(2));
    // Nothing is in flight without a process: what it held counts as pending.
    let stopped = common::job::stdout(&paceline(&["status", s(&out)]));
    assert!(stopped.contains("resumable"), "{stopped}");
    assert!(
        stopped.contains(&format!("0 done, 0 failed, {N} pending ("))
            && stopped.contains("were in flight when the last run stopped"),
        "{stopped}"
    );
    // Resume against a fast mock.
    let fast = MockProcess::start(&["--seed", "4"]);
    let fast_url = fast.base_url();
    let run = paceline(&run_args(s(&input), s(&out), &fast_url));
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(unique(&output_ids(&out)), all_ids(N));
}

/// The attempt log survives a second Ctrl-C: every result in the output has its attempt line in
/// the log (the exit skips destructors, so the log writer's buffered lines are written first).
/// Without that, a line was lost only when its result had been committed in the last ~50 ms
/// before the exit, so the stop is tried three times.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigint_keeps_the_log_of_every_result() {
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 3000);
    // Answers spread from a few ms to over a second: results keep coming, some stay in flight.
    let mock = MockProcess::start(&["--latency-ms", "200", "--latency-sd", "400", "--seed", "3"]);
    let base = mock.base_url();
    for round in 0..3 {
        let out = w.path(&format!("out{round}.jsonl"));
        let log = w.path(&format!("log{round}.jsonl"));
        let mut args = run_args(s(&input), s(&out), &base);
        args.extend(["--concurrency", "64", "--log-file", s(&log)]);
        let mut child = spawn(&args);
        assert!(wait_trigger(
            &mut child,
            &out,
            Trigger::Lines(100 + 50 * round)
        ));
        signal(&child, libc::SIGINT);
        std::thread::sleep(Duration::from_millis(20));
        signal(&child, libc::SIGINT);
        let status = wait_for(&mut child, Duration::from_secs(2)).expect("exits at once");
        assert_eq!(status.code(), Some(130));
        let written = unique(&output_ids(&out));
        let logged: std::collections::HashSet<String> = std::fs::read_to_string(&log)
            .expect("log file")
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| event["decision"] == "succeeded")
            .filter_map(|event| event["custom_id"].as_str().map(str::to_owned))
            .collect();
        let missing: Vec<_> = written.difference(&logged).collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} results have no attempt line in the log: {missing:?}",
            missing.len(),
            written.len()
        );
    }
}
