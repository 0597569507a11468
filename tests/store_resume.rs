//! The job store through the real binary: resume rules (edited input, `--restart`,
//! `--retry-failed`, a finished job), the state lock, output repair, `status` and `inspect`, and
//! errors that name the path.

mod common;

use common::job::{
    Workdir, all_ids, batch_text, output_ids, output_lines, paceline, s, spawn, stderr, stdout,
    unique, wait_for,
};
use common::mock::MockProcess;
use serde_json::Value;
use std::time::{Duration, Instant};

fn run<'a>(input: &'a str, out: &'a str, base_url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", input, "-o", out, "--base-url", base_url, "--quiet"];
    args.extend_from_slice(extra);
    args
}

async fn sent(mock: &MockProcess) -> u64 {
    mock.stats().await["totals"]["requests"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_input_is_refused_and_restart_starts_over() {
    let mock = MockProcess::start(&[]);
    let base = mock.base_url();
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 20);
    let out = w.path("out.jsonl");
    let first = paceline(&run(s(&input), s(&out), &base, &[]));
    assert!(first.status.success(), "{}", stderr(&first));

    // Running again resumes a finished job: nothing is sent.
    let again = paceline(&run(s(&input), s(&out), &base, &[]));
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("nothing to send"),
        "{}",
        stderr(&again)
    );
    assert_eq!(sent(&mock).await, 20);

    // Edit the input: refused, naming the input and --restart; nothing sent, output intact.
    std::fs::write(&input, batch_text(21)).expect("edit input");
    let refused = paceline(&run(s(&input), s(&out), &base, &[]));
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let err = stderr(&refused);
    assert!(err.contains("changed since the job"), "{err}");
    assert!(
        err.contains(s(&input)) && err.contains("--restart"),
        "{err}"
    );
    assert_eq!(sent(&mock).await, 20);
    assert_eq!(output_lines(&out), 20);

    // A changed template setting is refused too.
    let other = paceline(&run(s(&input), s(&out), &base, &["--format", "lines"]));
    assert_eq!(other.status.code(), Some(2));

    // --restart: a new job over the new input.
    let restarted = paceline(&run(s(&input), s(&out), &base, &["--restart"]));
    assert!(restarted.status.success(), "{}", stderr(&restarted));
    assert_eq!(unique(&output_ids(&out)), all_ids(21));
    assert_eq!(sent(&mock).await, 41);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_failed_sends_only_the_failures() {
    // One attempt each against a mock that fails 40 % of them.
    let flaky = MockProcess::start(&["--fail-500", "0.4", "--seed", "9"]);
    let w = Workdir::new();
    let n = 60;
    let input = w.batch("in.jsonl", n);
    let out = w.path("out.jsonl");
    let flaky_url = flaky.base_url();
    let first = paceline(&run(
        s(&input),
        s(&out),
        &flaky_url,
        &["--max-attempts", "1"],
    ));
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    let text = std::fs::read_to_string(&out).expect("output");
    let failed: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|v| !v["error"].is_null())
        .map(|v| v["custom_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(!failed.is_empty() && failed.len() < n, "{}", failed.len());

    // Retry against a healthy provider: exactly the failures are sent.
    let healthy = MockProcess::start(&[]);
    let healthy_url = healthy.base_url();
    let retry = paceline(&run(s(&input), s(&out), &healthy_url, &["--retry-failed"]));
    assert!(retry.status.success(), "{}", stderr(&retry));
    assert!(
        stderr(&retry).contains(&format!("retrying {} failed", failed.len())),
        "{}",
        stderr(&retry)
    );
    assert_eq!(sent(&healthy).await, failed.len() as u64);
    let text = std::fs::read_to_string(&out).expect("output");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), n);
    assert!(lines.iter().all(|v| v["error"].is_null()));
    assert_eq!(unique(&output_ids(&out)), all_ids(n));

    // The retried request keeps its whole history.
    let inspect = paceline(&["inspect", s(&out), &failed[0], "--json"]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let h: Value = serde_json::from_slice(&inspect.stdout).expect("inspect JSON");
    let attempts = h["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{h}");
    assert_eq!(attempts[0]["decision"], "give_up");
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(attempts[1]["run"], 2);
    assert_eq!(attempts[1]["decision"], "succeeded");
    assert_eq!(h["state"], "done");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_of_a_job_that_failed_names_retry_failed() {
    let broken = MockProcess::start(&["--fail-500", "1.0"]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 5);
    let out = w.path("out.jsonl");
    let url = broken.base_url();
    let first = paceline(&run(s(&input), s(&out), &url, &["--max-attempts", "1"]));
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));

    // Nothing is left to send, and the message says how to send the failures again.
    let again = paceline(&run(s(&input), s(&out), &url, &["--max-attempts", "1"]));
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    let err = stderr(&again);
    assert!(
        err.contains("nothing to send") && err.contains("5 failed"),
        "{err}"
    );
    assert!(err.contains("--retry-failed"), "{err}");
    assert_eq!(sent(&broken).await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_on_the_same_state_refuses_to_start() {
    let slow = MockProcess::start(&["--latency-ms", "400"]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 40);
    let out = w.path("out.jsonl");
    let base = slow.base_url();
    let args = run(s(&input), s(&out), &base, &["--concurrency", "2"]);
    let mut first = spawn(&args);
    // Wait until it runs (status sees the lock held).
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let st = paceline(&["status", s(&out), "--json"]);
        if st.status.success() && stdout(&st).contains("\"running\"") {
            break;
        }
        assert!(
            Instant::now() < until,
            "the first run never showed as running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = sent(&slow).await;
    let second = paceline(&args);
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(err.contains("in use by another paceline"), "{err}");
    assert!(err.contains("out.jsonl.paceline.db"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    // The second sent nothing (the first sends at most 2 more meanwhile).
    assert!(sent(&slow).await <= before + 4);
    let _ = first.kill();
    let _ = wait_for(&mut first, Duration::from_secs(5));
    // A killed run leaves its lock file behind: stale, since the kernel dropped the lock.
    let lock = w.path("out.jsonl.paceline.db.lock");
    let stale = std::fs::read_to_string(&lock).expect("the killed run's lock file");
    assert!(stale.contains(&format!("pid {}", first.id())), "{stale}");
    // Once the holder is gone (killed), the lock is free again.
    let resumed = paceline(&run(
        s(&input),
        s(&out),
        &MockProcess::start(&[]).base_url(),
        &[],
    ));
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(unique(&output_ids(&out)), all_ids(40));
    // A run that ends normally leaves no lock file.
    assert!(!lock.exists(), "{}", lock.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_run_leaves_no_lock_file() {
    let mock = MockProcess::start(&[]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 5);
    let out = w.path("out.jsonl");
    let done = paceline(&run(s(&input), s(&out), &mock.base_url(), &[]));
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(w.path("out.jsonl.paceline.db").exists());
    assert!(!w.path("out.jsonl.paceline.db.lock").exists());
    // Nor does a rerun with nothing left to send.
    let again = paceline(&run(s(&input), s(&out), &mock.base_url(), &[]));
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(!w.path("out.jsonl.paceline.db.lock").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_output_is_repaired_from_the_state() {
    let mock = MockProcess::start(&[]);
    let base = mock.base_url();
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 30);
    let out = w.path("out.jsonl");
    let first = paceline(&run(s(&input), s(&out), &base, &[]));
    assert!(first.status.success(), "{}", stderr(&first));
    let good = std::fs::read(&out).expect("output");

    // Lose the end of the file and leave a torn line: a cut that fell on a line's end would
    // leave none (the answers' lengths are random), so it moves back a byte then.
    let mut cut = good.len() / 2;
    if good[cut - 1] == b'\n' {
        cut -= 1;
    }
    std::fs::write(&out, &good[..cut]).expect("truncate");
    let repaired = paceline(&run(s(&input), s(&out), &base, &[]));
    assert!(repaired.status.success(), "{}", stderr(&repaired));
    assert!(stderr(&repaired).contains("torn"), "{}", stderr(&repaired));
    assert_eq!(std::fs::read(&out).expect("output"), good);

    // A line the store does not hold (and a duplicate) is removed.
    let mut bad = good.clone();
    let first_line_end = good.iter().position(|&b| b == b'\n').expect("a line") + 1;
    bad.extend_from_slice(&good[..first_line_end]);
    bad.extend_from_slice(b"{\"custom_id\":\"stranger\"}\n");
    std::fs::write(&out, &bad).expect("write");
    let repaired = paceline(&run(s(&input), s(&out), &base, &[]));
    assert!(repaired.status.success(), "{}", stderr(&repaired));
    assert_eq!(std::fs::read(&out).expect("output"), good);
    assert_eq!(sent(&mock).await, 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_inspect_show_progress_and_history() {
    let mock = MockProcess::start(&["--fail-500", "1.0"]);
    let base = mock.base_url();
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 3);
    let out = w.path("out.jsonl");
    let first = paceline(&run(s(&input), s(&out), &base, &["--max-attempts", "2"]));
    assert_eq!(first.status.code(), Some(1));

    let st = paceline(&["status", s(&out)]);
    assert!(st.status.success(), "{}", stderr(&st));
    let text = stdout(&st);
    assert!(text.contains("finished"), "{text}");
    assert!(text.contains("3/3 (100.0%): 0 done, 3 failed"), "{text}");
    assert!(text.contains("max_attempts_exceeded 3"), "{text}");
    assert!(text.contains("attempts  6 (3 retries"), "{text}");

    let db = w.path("out.jsonl.paceline.db");
    let inspect = paceline(&["inspect", s(&db), "r1"]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let text = stdout(&inspect);
    assert!(
        text.contains("r1 (input line 2): failed (max_attempts_exceeded)"),
        "{text}"
    );
    assert!(
        text.contains("attempt 1") && text.contains("attempt 2"),
        "{text}"
    );
    assert!(
        text.contains("HTTP 500") && text.contains("→ retry in"),
        "{text}"
    );
    assert!(text.contains("→ give_up"), "{text}");
    assert!(!text.contains(common::job::KEY));

    let missing = paceline(&["inspect", s(&db), "nope"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("nope"));
    let none = paceline(&["status", s(&w.path("elsewhere.jsonl"))]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        stderr(&none).contains("elsewhere.jsonl"),
        "{}",
        stderr(&none)
    );
    // The output of a shared `--job` run has no state beside it: the message says where it is.
    assert!(
        stderr(&none).contains("paceline status --redis URL --job ID"),
        "{}",
        stderr(&none)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_and_an_unwritable_place_are_named() {
    let mock = MockProcess::start(&[]);
    let base = mock.base_url();
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 10);
    let state = w.path("job.db");

    // /dev/full: every write fails with "No space left on device".
    let full = paceline(&run(s(&input), "/dev/full", &base, &["--state", s(&state)]));
    assert!(!full.status.success());
    let err = stderr(&full);
    assert!(
        err.contains("/dev/full") && err.contains("No space left"),
        "{err}"
    );
    // The results are safe in the state: a resume into a real file writes them all.
    let out = w.path("out.jsonl");
    let sent_before = sent(&mock).await;
    let resumed = paceline(&run(s(&input), s(&out), &base, &["--state", s(&state)]));
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(unique(&output_ids(&out)), all_ids(10));
    assert!(sent(&mock).await - sent_before < 10);

    // A place where nothing can be created (read-only even for root).
    let nowhere = paceline(&run(s(&input), "/proc/paceline-out.jsonl", &base, &[]));
    assert_eq!(nowhere.status.code(), Some(2));
    let err = stderr(&nowhere);
    assert!(
        err.contains("/proc/paceline-out.jsonl.paceline.db"),
        "{err}"
    );
}
