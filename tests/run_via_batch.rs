//! `paceline run --via batch` end to end: the real binary against `paceline mock`'s Batch APIs
//! over loopback HTTP — shards under an enqueued-token limit the client learns from the
//! refusal, partial failures retried in later shards, the same output as a live run (OpenAI's
//! and Anthropic's formats), and kill -9 at seeded points without any shard created twice (OpenAI's
//! Batches and Anthropic's Message Batches), and Azure OpenAI's global batch at the resource.

mod common;

use common::job::{KEY, Workdir, all_ids, output_ids, paceline, s, spawn, stderr, unique};
use common::mock::MockProcess;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Every line of an output, parsed.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// The shape of a line: its keys, and those of its `response` / `result`, recursively one level.
fn shape(v: &Value) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    if let Value::Object(map) = v {
        for (k, inner) in map {
            keys.insert(k.clone());
            if let Value::Object(inner) = inner {
                for k2 in inner.keys() {
                    keys.insert(format!("{k}.{k2}"));
                }
            }
        }
    }
    keys
}

/// The mock's batches (every page), newest first.
async fn mock_batches(mock: &MockProcess, path: &str, auth: &[(&str, &str)]) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{}?limit=100", mock.url(path));
        if let Some(a) = &after {
            let cursor = if path.contains("messages") {
                "after_id"
            } else {
                "after"
            };
            url.push_str(&format!("&{cursor}={a}"));
        }
        let mut r = reqwest::Client::new().get(url);
        for (k, v) in auth {
            r = r.header(*k, *v);
        }
        let page: Value = r.send().await.unwrap().json().await.unwrap();
        let data = page["data"].as_array().unwrap().clone();
        after = data.last().map(|b| b["id"].as_str().unwrap().to_owned());
        all.extend(data);
        if page["has_more"] != true {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_requests_go_in_shards_under_a_learned_enqueued_limit() {
    let n = 20_000;
    let dir = Workdir::new();
    let input = dir.batch("in.jsonl", n);
    // Each request enqueues ~19 tokens (prompt + max_tokens 8): the job is ~380,000, the limit
    // 100,000, so the client, told nothing, is refused, learns the limit and cuts shards under
    // it. 1% of processed requests fail with a 500 and go again in a later shard.
    let mock = MockProcess::start(&[
        "--seed",
        "5",
        "--batch-speed",
        "40000",
        "--batch-validation",
        "200ms",
        "--batch-enqueued-tokens",
        "100000",
        "--batch-fail",
        "0.01",
    ]);
    let out = dir.path("batch.jsonl");
    let run = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&out),
        "--base-url",
        &mock.base_url(),
        "--provider",
        "openai",
        "--via",
        "batch",
        "--batch-poll-min",
        "50ms",
        "--batch-poll-max",
        "300ms",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let ids = output_ids(&out);
    assert_eq!(unique(&ids), all_ids(n));
    let stats = mock.stats().await;
    let b = &stats["batches"];
    assert!(b["refused_enqueued"].as_u64().unwrap() >= 1, "{b}");
    // ~380,000 tokens under a 100,000 limit: at least four accepted shards, plus the retries'.
    let created = b["batches_created"].as_u64().unwrap();
    assert!(created >= 5, "{b}");
    let batches = mock_batches(
        &mock,
        "/v1/batches",
        &[("authorization", &format!("Bearer {KEY}"))],
    )
    .await;
    let accepted: Vec<&Value> = batches
        .iter()
        .filter(|b| b["status"] == "completed")
        .collect();
    assert!(accepted.len() >= 4);
    for batch in &accepted {
        // Close to the limit, never over it.
        assert!(batch["request_counts"]["total"].as_u64().unwrap() <= 100_000 / 19 + 1);
        assert!(batch["metadata"]["paceline_job"].is_string());
    }
    let retried: u64 = accepted
        .iter()
        .map(|b| b["request_counts"]["failed"].as_u64().unwrap())
        .sum();
    assert!(
        retried > 0,
        "some requests failed inside a batch and were sent again"
    );

    // The live run of the same input writes the same set of custom_ids in the same format.
    let live_mock = MockProcess::start(&["--seed", "5"]);
    let live_out = dir.path("live.jsonl");
    let live = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&live_out),
        "--base-url",
        &live_mock.base_url(),
    ]);
    assert!(live.status.success(), "{}", stderr(&live));
    let live_ids: HashSet<String> = unique(&output_ids(&live_out));
    assert_eq!(live_ids, unique(&ids));
    let live_shape = shape(&lines(&live_out)[0]);
    for line in lines(&out) {
        assert_eq!(shape(&line), live_shape, "{line}");
        assert_eq!(line["response"]["status_code"], 200);
        assert_eq!(line["response"]["body"]["object"], "chat.completion");
        assert!(line["error"].is_null());
    }
}

fn message_batches_input(dir: &Workdir, n: usize) -> std::path::PathBuf {
    let text: String = (0..n)
        .map(|i| {
            json!({"custom_id": format!("r{i}"), "params": {
                "model": "claude-3-5-haiku-latest", "max_tokens": 8,
                "messages": [{"role": "user", "content": format!("Say hello number {i}")}]}})
            .to_string()
                + "\n"
        })
        .collect();
    dir.write("in.jsonl", &text)
}

fn run_anthropic(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paceline"))
        .arg("run")
        .args(args)
        .env("ANTHROPIC_API_KEY", KEY)
        .env_remove("PACELINE_LOG")
        .output()
        .expect("run paceline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_batches_wait_for_the_processing_queue_and_write_anthropics_format() {
    let n = 6_000;
    let dir = Workdir::new();
    let input = message_batches_input(&dir, n);
    // The queue holds 3,000 requests: shards of 2,000 that take 4 s each, so a second one is
    // refused (429) while the first has more than 1,000 left, and waits.
    let mock = MockProcess::start(&[
        "--seed",
        "2",
        "--batch-speed",
        "500",
        "--batch-validation",
        "200ms",
        "--batch-queued-requests",
        "3000",
    ]);
    let out = dir.path("batch.jsonl");
    let run = run_anthropic(&[
        s(&input),
        "-o",
        s(&out),
        "--base-url",
        &mock.base_url(),
        "--provider",
        "anthropic",
        "--output-format",
        "anthropic",
        "--via",
        "batch",
        "--batch-max-requests",
        "2000",
        "--batch-poll-min",
        "50ms",
        "--batch-poll-max",
        "300ms",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let ids = output_ids(&out);
    assert_eq!(unique(&ids), all_ids(n));
    let b = &mock.stats().await["batches"];
    assert_eq!(b["batches_created"], 3, "{b}");
    assert!(b["refused_queue"].as_u64().unwrap() >= 1, "{b}");
    // `status` shows each shard's provider id and state.
    let status = paceline(&["status", s(&out)]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(text.contains("shards    3 (--via batch)"), "{text}");
    assert_eq!(text.matches("msgbatch_").count(), 3, "{text}");
    // Our state and the provider's status, on each of the three lines.
    assert_eq!(text.matches(" ended ").count(), 6, "{text}");

    let live_mock = MockProcess::start(&["--seed", "2"]);
    let live_out = dir.path("live.jsonl");
    let live = run_anthropic(&[
        s(&input),
        "-o",
        s(&live_out),
        "--base-url",
        &live_mock.base_url(),
        "--provider",
        "anthropic",
        "--output-format",
        "anthropic",
    ]);
    assert!(live.status.success(), "{}", stderr(&live));
    assert_eq!(unique(&output_ids(&live_out)), unique(&ids));
    let live_shape = shape(&lines(&live_out)[0]);
    for line in lines(&out) {
        assert_eq!(shape(&line), live_shape, "{line}");
        assert_eq!(line["result"]["type"], "succeeded");
        assert_eq!(line["result"]["message"]["type"], "message");
    }
}

/// Ten seeded kill -9s of a `--via batch` run of 6,000 requests in twelve shards of 500, then
/// the same command to the end: the output holds each line once, and the mock holds one batch
/// per shard. OpenAI's batches are tagged with their shard; Anthropic's carry no metadata, so
/// there a shard found `creating` is matched by its size and creation time.
async fn kill_9_at_ten_seeded_points(anthropic: bool) {
    let n = 6_000;
    let dir = Workdir::new();
    let input = if anthropic {
        message_batches_input(&dir, n)
    } else {
        dir.batch("in.jsonl", n)
    };
    // Twelve shards of 500 (~9,500 enqueued tokens each) under a configured enqueued limit of
    // 20,000 (for Anthropic, the mock's processing queue of 1,000 requests): two at a time,
    // ~1.5 s each at the mock, so the job spans the ten kills, which land in setup, uploads,
    // creates, polls and downloads (the log below shows where).
    let mut mock_args = vec![
        "--seed",
        "9",
        "--batch-speed",
        "400",
        "--batch-validation",
        "150ms",
    ];
    if anthropic {
        mock_args.extend(["--batch-queued-requests", "1000"]);
    }
    let mock = MockProcess::start(&mock_args);
    let out = dir.path("out.jsonl");
    let base = mock.base_url();
    let mut args = vec![
        "run",
        s(&input),
        "-o",
        s(&out),
        "--base-url",
        &base,
        "--provider",
        if anthropic { "anthropic" } else { "openai" },
        "--via",
        "batch",
        "--batch-max-requests",
        "500",
        "--batch-enqueued-tokens",
        "20000",
        "--batch-poll-min",
        "30ms",
        "--batch-poll-max",
        "200ms",
        "--quiet",
    ];
    if anthropic {
        // The helpers set OPENAI_API_KEY; the mock takes any key.
        args.extend([
            "--api-key-env",
            "OPENAI_API_KEY",
            "--output-format",
            "anthropic",
        ]);
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(15);
    for kill in 0..10 {
        let mut child = spawn(&args);
        let after = Duration::from_millis(rng.random_range(300..2500));
        std::thread::sleep(after);
        let _ = child.kill();
        let _ = child.wait();
        let b = mock.stats().await["batches"].clone();
        eprintln!(
            "kill {kill} after {after:?}: {} files uploaded, {} batches created, {} lines out",
            b["files_uploaded"],
            b["batches_created"],
            output_ids(&out).len()
        );
    }
    let last = paceline(&args);
    assert!(last.status.success(), "{}", stderr(&last));
    let ids = output_ids(&out);
    assert_eq!(ids.len(), n, "each line once");
    assert_eq!(unique(&ids), all_ids(n));
    let batches = if anthropic {
        mock_batches(
            &mock,
            "/v1/messages/batches",
            &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        )
        .await
    } else {
        mock_batches(
            &mock,
            "/v1/batches",
            &[("authorization", &format!("Bearer {KEY}"))],
        )
        .await
    };
    if !anthropic {
        let mut shards = HashSet::new();
        for b in &batches {
            let tag = (
                b["metadata"]["paceline_job"].clone(),
                b["metadata"]["paceline_shard"].clone(),
            );
            assert!(
                shards.insert(tag.clone()),
                "shard {tag:?} was created twice"
            );
        }
    }
    assert_eq!(
        mock.stats().await["batches"]["batches_created"]
            .as_u64()
            .unwrap(),
        batches.len() as u64
    );
    // One batch per shard: a shard created twice would make a thirteenth.
    assert_eq!(batches.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_ten_seeded_points_creates_no_shard_twice_and_writes_each_line_once() {
    kill_9_at_ten_seeded_points(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_message_batches_creates_no_shard_twice_and_writes_each_line_once() {
    kill_9_at_ten_seeded_points(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_global_batch_goes_through_the_resources_files_and_batches() {
    let n = 600;
    let dir = Workdir::new();
    let input = dir.batch("in.jsonl", n);
    let mock = MockProcess::start(&[
        "--seed",
        "6",
        "--batch-speed",
        "5000",
        "--batch-validation",
        "100ms",
    ]);
    let out = dir.path("out.jsonl");
    // The resource's URL, as Azure's endpoint is given (no `/v1`).
    let resource = mock.url("");
    let run = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&out),
        "--base-url",
        &resource,
        "--provider",
        "azure",
        // The helpers set OPENAI_API_KEY; Azure sends it as `api-key`.
        "--api-key-env",
        "OPENAI_API_KEY",
        "--via",
        "batch",
        "--batch-max-requests",
        "250",
        "--batch-poll-min",
        "50ms",
        "--batch-poll-max",
        "200ms",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let ids = output_ids(&out);
    assert_eq!(ids.len(), n);
    assert_eq!(unique(&ids), all_ids(n));
    for line in lines(&out) {
        assert_eq!(line["response"]["status_code"], 200, "{line}");
    }
    // The batches were made at the resource, named by the operation, with Azure's key header.
    let page: Value = reqwest::Client::new()
        .get(mock.url("/openai/batches?api-version=2024-10-21&limit=100"))
        .header("api-key", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let batches = page["data"].as_array().unwrap();
    assert_eq!(batches.len(), 3, "{page}");
    for b in batches {
        assert_eq!(b["endpoint"], "/chat/completions", "{b}");
        assert_eq!(b["status"], "completed", "{b}");
    }
    // Without api-version, Azure answers 404; with a bearer token instead of api-key, 401.
    let missing = reqwest::Client::new()
        .get(mock.url("/openai/batches"))
        .header("api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let bearer = reqwest::Client::new()
        .get(mock.url("/openai/batches?api-version=2024-10-21"))
        .header("authorization", format!("Bearer {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 401);
}
