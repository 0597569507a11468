//! `paceline plan` against what really happens: its prompt tokens are the simulated provider's
//! own count (a second tokenizer), its cost is the shipped price table × those tokens, and its
//! live time is within 10 % of a real `paceline run --via live` against the mock at the same
//! limits. It sends nothing: the mock sees no request while it plans.

mod common;

use common::job::{Workdir, paceline, s, stderr};
use common::mock::MockProcess;
use serde_json::Value;
use std::time::Instant;

fn price(model: &str) -> (f64, f64, f64, f64) {
    let table: toml::Value =
        toml::from_str(&std::fs::read_to_string("data/prices.toml").unwrap()).unwrap();
    let entry = table["price"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"].as_str() == Some(model))
        .unwrap();
    let f = |k: &str| entry[k].as_float().unwrap();
    (f("input"), f("output"), f("batch_input"), f("batch_output"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_matches_the_tokenizer_the_price_table_and_the_live_run() {
    let n = 10_000;
    let dir = Workdir::new();
    let input = dir.batch("in.jsonl", n);
    // ~200,000 admission tokens (prompt + max_tokens 8) at 800,000 TPM: ~15 s at the rate.
    let tpm = "800000";
    let mock = MockProcess::start(&["--seed", "4", "--tpm", tpm, "--rpm", "1000000"]);
    let planned = paceline(&[
        "plan",
        s(&input),
        "--base-url",
        &mock.base_url(),
        "--provider",
        "openai",
        "--tpm",
        tpm,
        "--json",
    ]);
    assert!(planned.status.success(), "{}", stderr(&planned));
    assert_eq!(
        mock.stats().await["totals"]["requests"],
        0,
        "plan sent nothing"
    );
    let plan: Value = serde_json::from_slice(&planned.stdout).unwrap();
    let g = &plan["groups"][0];
    assert_eq!(plan["requests"], n);
    assert_eq!(g["requests"], n);
    let prompt = g["prompt_tokens"].as_u64().unwrap();
    let output = g["output_tokens"].as_u64().unwrap();
    assert_eq!(output, 8 * n as u64);
    let (input_price, output_price, batch_in, batch_out) = price("gpt-4o-mini");
    let live_cost = g["live_cost"].as_f64().unwrap();
    let batch_cost = g["batch_cost"].as_f64().unwrap();
    let expect_live = prompt as f64 * input_price / 1e6 + output as f64 * output_price / 1e6;
    let expect_batch = prompt as f64 * batch_in / 1e6 + output as f64 * batch_out / 1e6;
    assert!(
        (live_cost - expect_live).abs() < 1e-9,
        "{live_cost} vs {expect_live}"
    );
    assert!(
        (batch_cost - expect_batch).abs() < 1e-9,
        "{batch_cost} vs {expect_batch}"
    );
    assert_eq!(g["batch"]["shards"], 1);
    assert_eq!(g["batch"]["window_hours"], 24);
    let predicted = g["live_seconds"].as_f64().unwrap();
    assert!(predicted > 10.0, "the limit binds: {predicted}");

    let out = dir.path("out.jsonl");
    let started = Instant::now();
    let run = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&out),
        "--base-url",
        &mock.base_url(),
        "--tpm",
        tpm,
        "--quiet",
    ]);
    let actual = started.elapsed().as_secs_f64();
    assert!(run.status.success(), "{}", stderr(&run));
    // The provider's own tokenizer counted the same prompt tokens.
    let stats = mock.stats().await;
    assert_eq!(stats["totals"]["prompt_tokens"].as_u64().unwrap(), prompt);
    let error = (actual - predicted).abs() / actual;
    eprintln!(
        "plan {predicted:.2}s, run {actual:.2}s ({:.1}% off)",
        error * 100.0
    );
    assert!(error < 0.10, "plan {predicted:.2}s vs run {actual:.2}s");
}

#[test]
fn a_model_without_a_price_is_listed_never_priced_at_zero() {
    let dir = Workdir::new();
    let input = dir.write(
        "in.jsonl",
        &[
            r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":4}}"#,
            r#"{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"my-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":4}}"#,
        ]
        .join("\n"),
    );
    let out = paceline(&["plan", s(&input), "--expect-output-tokens", "2", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["unpriced"], serde_json::json!([["my-llama", 1]]));
    let llama = &plan["groups"][1];
    assert!(llama["live_cost"].is_null() && llama["batch_cost"].is_null());
    assert_eq!(plan["groups"][0]["output_tokens"], 2);
    assert_eq!(plan["groups"][0]["output_basis"], "expected");
    let text = paceline(&["plan", s(&input)]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("unpriced        my-llama: 1 requests"),
        "{text}"
    );
    assert!(text.contains("live time       unknown"), "{text}");
}
