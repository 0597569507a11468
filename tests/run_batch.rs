//! `paceline run` end to end: the real binary against `paceline mock` over loopback HTTP.

mod common;

use common::mock::MockProcess;
use common::pace;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tempfile::TempDir;

const KEY: &str = "sk-test-very-secret-key-0001";

/// A temp dir with an input file in it.
struct Workdir {
    dir: TempDir,
}

impl Workdir {
    fn new() -> Self {
        Workdir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write input");
        path
    }

    /// Batch API JSONL of `n` small chat requests with ids `r0..`.
    fn batch(&self, name: &str, n: usize, max_tokens: u64) -> PathBuf {
        let text: String = (0..n)
            .map(|i| {
                json!({
                    "custom_id": format!("r{i}"),
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": format!("Say hello number {i}")}],
                        "max_tokens": max_tokens
                    }
                })
                .to_string()
                    + "\n"
            })
            .collect();
        self.write(name, &text)
    }
}

/// Run `paceline run ARGS` with `OPENAI_API_KEY` set (unless `envs` overrides keys).
fn paceline(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paceline"));
    cmd.arg("run")
        .args(args)
        .env("OPENAI_API_KEY", KEY)
        .env_remove("PACELINE_LOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run paceline")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Output lines by custom_id; panics if any id appears twice.
fn results(path: &Path) -> HashMap<String, Value> {
    let text = std::fs::read_to_string(path).expect("read output");
    let mut map = HashMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("output line is JSON");
        let id = v["custom_id"].as_str().expect("custom_id").to_string();
        assert!(map.insert(id.clone(), v).is_none(), "{id} written twice");
    }
    map
}

fn totals(stats: &Value) -> &Value {
    &stats["totals"]
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_jsonl_runs_to_exactly_one_result_per_request() {
    let mock = MockProcess::start(&["--seed", "1"]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 50, 16);
    let out = w.path("out.jsonl");
    let run = paceline(
        &[s(&input), "-o", s(&out), "--base-url", &mock.base_url()],
        &[],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let res = results(&out);
    assert_eq!(res.len(), 50);
    let r = &res["r7"];
    assert!(r["id"].as_str().unwrap().starts_with("batch_req_"));
    assert_eq!(r["response"]["status_code"], 200);
    assert!(
        r["response"]["request_id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
    assert_eq!(r["response"]["body"]["object"], "chat.completion");
    assert_eq!(r["error"], Value::Null);
    assert!(
        stderr(&run).contains("50 succeeded, 0 failed"),
        "{}",
        stderr(&run)
    );
    assert_eq!(totals(&mock.stats().await)["requests"], 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn template_lines_become_chat_requests() {
    let mock = MockProcess::start(&[]);
    let w = Workdir::new();
    let input = w.write("topics.txt", "compost\n\nsourdough\nbikes\n");
    let out = w.path("out.jsonl");
    let run = paceline(
        &[
            s(&input),
            "--template",
            "Write about {line}",
            "--model",
            "gpt-4o-mini",
            "--max-tokens",
            "20",
            "-o",
            s(&out),
            "--base-url",
            &mock.base_url(),
        ],
        &[],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let res = results(&out);
    // custom_id is the line number; the blank line 2 is skipped.
    let mut ids: Vec<_> = res.keys().cloned().collect();
    ids.sort();
    assert_eq!(ids, vec!["1", "3", "4"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_input_is_reported_by_line_and_nothing_is_sent() {
    let mock = MockProcess::start(&[]);
    let w = Workdir::new();
    let good = |id: &str| {
        json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions",
               "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}})
        .to_string()
    };
    let text = format!(
        "{}\n{{not json\n{}\n{}\n",
        good("a"),
        good("a"),
        json!({"custom_id": "c", "method": "POST", "url": "/v1/images", "body": {"model": "m"}})
    );
    let input = w.write("in.jsonl", &text);
    let out = w.path("out.jsonl");
    let run = paceline(
        &[s(&input), "-o", s(&out), "--base-url", &mock.base_url()],
        &[],
    );
    assert_eq!(run.status.code(), Some(2));
    let err = stderr(&run);
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("line 3") && err.contains("duplicate"), "{err}");
    assert!(
        err.contains("line 4") && err.contains("/v1/images"),
        "{err}"
    );
    assert_eq!(totals(&mock.stats().await)["requests"], 0);

    // --skip-invalid sends the valid line and writes the others to the errors file.
    let errors = w.path("errors.jsonl");
    let run = paceline(
        &[
            s(&input),
            "-o",
            s(&out),
            "--skip-invalid",
            "--errors-file",
            s(&errors),
            "--base-url",
            &mock.base_url(),
        ],
        &[],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(results(&out).len(), 1);
    let errors_text = std::fs::read_to_string(&errors).unwrap();
    assert_eq!(errors_text.lines().count(), 3);
    assert_eq!(totals(&mock.stats().await)["requests"], 1);
}

// The limits below are learned from the first answer's headers. Before that answer, paceline
// probes on a schedule whose rate doubles every 50 ms; the buckets are sized so the probe
// cannot outgrow them unless the first answer takes over ~250 ms (it takes a few ms here), so
// any overshoot counted is paceline's pacing after it learned the limits.

#[tokio::test(flavor = "multi_thread")]
async fn learned_limits_are_reached_and_never_exceeded() {
    // Observe-only mock: it admits everything and counts what its limits would have refused.
    let mock = MockProcess::start(&["--rpm", "6000", "--burst", "30", "--soft-limits"]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 150, 8);
    let out = w.path("out.jsonl");
    let log = w.path("attempts.log");
    let run = paceline(
        &[
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            &mock.base_url(),
            "--log-file",
            s(&log),
        ],
        &[],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(results(&out).len(), 150);
    let stats = mock.stats().await;
    assert_eq!(totals(&stats)["requests"], 150);
    assert_eq!(totals(&stats)["admitted_beyond_limit"], 0, "{stats}");
    // Nor far under them: 150 requests, a burst of 30, then 100/s (answers in ~0 ms).
    let ideal = pace::ideal(150.0, 30.0, 100.0, Duration::ZERO);
    pace::assert_near_ideal("learned limits", pace::attempt_span(&log), ideal);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_limit_is_reached_and_never_exceeded() {
    // 600,000 tokens/min = 10,000/s with a 20,000-token burst; each request admits ~514
    // tokens, so tokens bind at ~19.5 requests/s.
    let mock = MockProcess::start(&["--tpm", "600000", "--token-burst", "20000", "--soft-limits"]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 120, 500);
    let out = w.path("out.jsonl");
    let log = w.path("attempts.log");
    let run = paceline(
        &[
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            &mock.base_url(),
            "--log-file",
            s(&log),
        ],
        &[],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let stats = mock.stats().await;
    assert_eq!(totals(&stats)["requests"], 120);
    assert_eq!(totals(&stats)["admitted_beyond_limit"], 0, "{stats}");
    // Nor far under it: the tokens the mock charged, less the burst, at 10,000/s.
    let charged = totals(&stats)["tokens_charged"].as_f64().expect("tokens");
    let ideal = pace::ideal(charged, 20_000.0, 10_000.0, Duration::ZERO);
    pace::assert_near_ideal("token limit", pace::attempt_span(&log), ideal);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_pauses_the_quota_instead_of_a_storm() {
    // paceline is told a limit 10× the real one; the mock enforces the real one.
    let mock = MockProcess::start(&["--rpm", "1200", "--burst", "4"]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 60, 8);
    let out = w.path("out.jsonl");
    let log = w.path("attempts.log");
    let run = paceline(
        &[
            s(&input),
            "-o",
            s(&out),
            "--rpm",
            "12000",
            "--log-file",
            s(&log),
            "--base-url",
            &mock.base_url(),
        ],
        &[],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(results(&out).len(), 60);
    let stats = mock.stats().await;
    let limited = totals(&stats)["rate_limited"].as_u64().unwrap();
    // Header calibration pulls the configured limit down to the learned one after the first
    // answers: the 429s stay a handful, not one per request.
    assert!(limited <= 10, "{limited} 429s: {stats}");
    // And the pauses they cause cost little: 60 requests, a burst of 4, then 20/s.
    let ideal = pace::ideal(60.0, 4.0, 20.0, Duration::ZERO);
    pace::assert_near_ideal("a 429's pause", pace::attempt_span(&log), ideal);
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_are_retried_until_every_request_succeeds() {
    let mock = MockProcess::start(&[
        "--seed",
        "7",
        "--fail-500",
        "0.1",
        "--fail-503",
        "0.05",
        "--reset",
        "0.05",
        "--truncate",
        "0.05",
    ]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 60, 8);
    let out = w.path("out.jsonl");
    let log = w.path("attempts.log");
    let run = paceline(
        &[
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            &mock.base_url(),
            "--log-file",
            s(&log),
            "--seed",
            "3",
        ],
        &[],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let res = results(&out);
    assert_eq!(res.len(), 60);
    assert!(res.values().all(|r| r["error"].is_null()));
    let stats = mock.stats().await;
    let faults = &totals(&stats)["faults"];
    let injected: u64 = ["fail_500", "fail_503", "reset", "truncate"]
        .iter()
        .map(|f| faults[*f].as_u64().unwrap())
        .sum();
    assert!(injected > 0);
    // Every retry is in the log, with its cause and decision, per request.
    let log_text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<Value> = log_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["message"] == "attempt")
        .collect();
    assert_eq!(events.len() as u64, 60 + injected);
    let retries = events.iter().filter(|e| e["decision"] == "retry").count() as u64;
    assert_eq!(retries, injected);
    for e in &events {
        assert!(
            e["custom_id"].is_string() && e["attempt"].is_number() && e["latency_ms"].is_number()
        );
    }
    assert!(!log_text.contains(KEY));
}

/// `n` requests to `base_url` with two attempts each, all of which fail: the run exits 1.
fn run_giving_up_after_two(
    w: &Workdir,
    n: usize,
    base_url: &str,
) -> (Output, HashMap<String, Value>) {
    let input = w.batch("in.jsonl", n, 8);
    let out = w.path("out.jsonl");
    let run = paceline(
        &[
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            base_url,
            "--max-attempts",
            "2",
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    (run, results(&out))
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_attempts_fail_with_the_last_cause() {
    let mock = MockProcess::start(&["--fail-500", "1.0"]);
    let w = Workdir::new();
    let (run, res) = run_giving_up_after_two(&w, 3, &mock.base_url());
    assert_eq!(res.len(), 3);
    let r = &res["r0"];
    assert_eq!(r["error"]["code"], "max_attempts_exceeded");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("500"),
        "{r}"
    );
    assert_eq!(r["response"]["status_code"], 500);
    assert_eq!(totals(&mock.stats().await)["requests"], 6);
    assert!(
        stderr(&run).contains("max_attempts_exceeded 3"),
        "{}",
        stderr(&run)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_endpoint_fails_with_what_the_connection_said() {
    // Nothing listens on port 1: every attempt is refused.
    let w = Workdir::new();
    let (_, res) = run_giving_up_after_two(&w, 1, "http://127.0.0.1:1/v1");
    let r = &res["r0"];
    assert_eq!(r["error"]["code"], "max_attempts_exceeded");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(message.contains("Connection refused"), "{message}");
    assert!(r["response"].is_null(), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_responses_time_out_and_are_retried() {
    let mock = MockProcess::start(&["--stall", "1.0"]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 2, 8);
    let out = w.path("out.jsonl");
    let run = paceline(
        &[
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            &mock.base_url(),
            "--timeout",
            "300ms",
            "--max-attempts",
            "2",
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(1));
    let res = results(&out);
    assert_eq!(res["r1"]["error"]["code"], "max_attempts_exceeded");
    assert!(
        res["r1"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timeout")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn insufficient_quota_is_final_and_never_retried() {
    let mock = MockProcess::start(&["--quota-tokens", "1"]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 20, 8);
    let out = w.path("out.jsonl");
    let run = paceline(
        &[s(&input), "-o", s(&out), "--base-url", &mock.base_url()],
        &[],
    );
    // The only key leaves rotation: the run stops cleanly with exit code 1.
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let err = stderr(&run);
    assert!(err.contains("no usable API key left"), "{err}");
    assert!(!err.contains(KEY));
    let stats = mock.stats().await;
    // One request used up the credit; only requests already in flight when the first refusal
    // came back were refused too, none was retried, and the rest were never sent.
    let requests = totals(&stats)["requests"].as_u64().unwrap();
    assert!(requests <= 6, "{stats}");
    assert_eq!(
        totals(&stats)["insufficient_quota"].as_u64().unwrap(),
        requests - 1
    );
    assert!(
        err.contains(&format!("{} requests left", 20 - requests)),
        "{err}"
    );
    // The summary counts every 429 received, whatever its body says.
    assert!(
        err.contains(&format!("429s received   {}\n", requests - 1)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_leaves_rotation_and_the_others_carry_on() {
    let mock = MockProcess::start(&["--key", "good-key", "--key", "other-key"]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 20, 8);
    let out = w.path("out.jsonl");
    let run = paceline(
        &[
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            &mock.base_url(),
            "--api-key-env",
            "K_BAD,K_GOOD",
        ],
        &[("K_BAD", "sk-unknown-to-the-mock"), ("K_GOOD", "good-key")],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let res = results(&out);
    assert_eq!(res.len(), 20);
    assert!(res.values().all(|r| r["error"].is_null()));
    let err = stderr(&run);
    assert!(err.contains("K_BAD#"), "{err}");
    assert!(!err.contains("sk-unknown-to-the-mock"));
    let stats = mock.stats().await;
    assert_eq!(stats["keys"]["good-key"]["ok"], 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn several_keys_share_the_load() {
    let mock = MockProcess::start(&[
        "--key",
        "ka:3000",
        "--key",
        "kb:3000",
        "--burst",
        "3",
        "--soft-limits",
    ]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 120, 8);
    let out = w.path("out.jsonl");
    let log = w.path("attempts.log");
    let run = paceline(
        &[
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            &mock.base_url(),
            "--api-key-env",
            "KA,KB",
            "--log-file",
            s(&log),
        ],
        &[("KA", "ka"), ("KB", "kb")],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let stats = mock.stats().await;
    let a = stats["keys"]["ka"]["requests"].as_u64().unwrap();
    let b = stats["keys"]["kb"]["requests"].as_u64().unwrap();
    assert_eq!(a + b, 120);
    assert!(a >= 40 && b >= 40, "uneven split {a}/{b}");
    assert_eq!(totals(&stats)["admitted_beyond_limit"], 0, "{stats}");
    // Both keys are used to their limits: 120 requests, a burst of 3 each, 2 × 50/s.
    let ideal = pace::ideal(120.0, 6.0, 100.0, Duration::ZERO);
    pace::assert_near_ideal("two keys", pace::attempt_span(&log), ideal);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_can_never_fit_fails_fast() {
    let mock = MockProcess::start(&[]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 2, 5000);
    let out = w.path("out.jsonl");
    let run = paceline(
        &[
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            &mock.base_url(),
            "--tpm",
            "1000",
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(1));
    let res = results(&out);
    assert_eq!(res["r0"]["error"]["code"], "request_too_large");
    assert_eq!(res["r0"]["response"], Value::Null);
    assert_eq!(totals(&mock.stats().await)["requests"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_key_and_existing_output_are_usage_errors() {
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 1, 8);
    let out = w.write("out.jsonl", "{}\n");
    let run = paceline(
        &[s(&input), "-o", s(&out), "--api-key-env", "NOPE_NOT_SET"],
        &[],
    );
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("NOPE_NOT_SET"), "{}", stderr(&run));
    let run = paceline(
        &[
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            "http://127.0.0.1:9/v1",
        ],
        &[],
    );
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("--restart"), "{}", stderr(&run));
    // A missing input is named, and the system's reason given once.
    let missing = w.path("missing.jsonl");
    let run = paceline(&[s(&missing), "-o", s(&w.path("o2.jsonl"))], &[]);
    assert_eq!(run.status.code(), Some(2));
    let err = stderr(&run);
    assert!(err.contains("missing.jsonl"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_and_responses_endpoints_run_too() {
    let mock = MockProcess::start(&["--soft-limits", "--tpm", "100000"]);
    let w = Workdir::new();
    let lines = [
        json!({"custom_id": "e1", "method": "POST", "url": "/v1/embeddings",
               "body": {"model": "text-embedding-3-small", "input": ["a cat", "a dog"]}}),
        json!({"custom_id": "r1", "method": "POST", "url": "/v1/responses",
               "body": {"model": "gpt-4o-mini", "input": "Say hi", "max_output_tokens": 20}}),
        json!({"custom_id": "r2", "method": "POST", "url": "/v1/responses",
               "body": {"model": "gpt-4o-mini", "instructions": "Be brief",
                        "input": [{"role": "user", "content": "Say hi"}], "max_output_tokens": 20}}),
        json!({"custom_id": "c1", "method": "POST", "url": "/v1/completions",
               "body": {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 20}}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let input = w.write("in.jsonl", &text);
    let out = w.path("out.jsonl");
    let run = paceline(
        &[s(&input), "-o", s(&out), "--base-url", &mock.base_url()],
        &[],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let res = results(&out);
    assert_eq!(
        res["e1"]["response"]["body"]["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(res["r1"]["response"]["body"]["object"], "response");
    assert_eq!(res["c1"]["response"]["body"]["object"], "text_completion");
    // paceline's estimates equal the mock's admission charges: nothing went beyond the limit,
    // and the tokens the mock charged are exactly the tokens paceline reserved.
    let stats = mock.stats().await;
    assert_eq!(totals(&stats)["admitted_beyond_limit"], 0);
    assert_eq!(totals(&stats)["ok"], 4);
    let reserved: u64 = lines
        .iter()
        .map(|l| {
            let endpoint: paceline::api::Endpoint =
                l["url"].as_str().unwrap().parse().expect("endpoint");
            paceline::tokens::estimate(endpoint, &l["body"], 4096).total()
        })
        .sum();
    assert_eq!(totals(&stats)["tokens_charged"], reserved);
}

#[tokio::test(flavor = "multi_thread")]
async fn warnings_are_plain_text_when_stderr_is_not_a_terminal() {
    // The mock accepts only the key `someone-else`: ours is refused and leaves rotation, which
    // is warned about. stderr is a pipe here; colour is allowed (NO_COLOR empty) but must not
    // be used.
    let mock = MockProcess::start(&["--key", "someone-else"]);
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 2, 8);
    let out = w.path("out.jsonl");
    let run = paceline(
        &[
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            &mock.base_url(),
            "--quiet",
        ],
        &[("NO_COLOR", "")],
    );
    let err = stderr(&run);
    assert!(err.contains("removed from rotation"), "{err}");
    assert!(!err.contains("\x1b["), "{err:?}");
}

#[test]
fn serve_help_offers_only_what_serve_accepts() {
    let help = Command::new(env!("CARGO_BIN_EXE_paceline"))
        .args(["serve", "--help"])
        .output()
        .expect("run paceline");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--redis"), "{text}");
    assert!(!text.contains("--job"), "{text}");
}

#[test]
fn a_missing_key_variable_says_the_cause_first_then_what_to_do() {
    let w = Workdir::new();
    let input = w.batch("in.jsonl", 1, 8);
    let out = w.path("out.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_paceline"))
        .args([
            "run",
            s(&input),
            "-o",
            s(&out),
            "--base-url",
            "http://127.0.0.1:9",
        ])
        .env_remove("OPENAI_API_KEY")
        .env_remove("PACELINE_LOG")
        .output()
        .expect("run paceline");
    assert_eq!(run.status.code(), Some(2));
    let err = stderr(&run);
    assert!(
        err.starts_with(
            "error: environment variable OPENAI_API_KEY is not set; set it to the provider's API \
             key, or name other variables with --api-key-env K1,K2"
        ),
        "{err}"
    );
}
