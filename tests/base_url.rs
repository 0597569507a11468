//! Base URLs as users write them: Anthropic's SDK spelling without `/v1` works, and a base URL
//! whose first answers are all 404 stops the run early with a message naming the URL tried.

mod common;

use common::job::{KEY, Workdir, output_lines, paceline, s, stderr};
use common::mock::MockProcess;
use serde_json::json;
use std::time::Instant;

#[test]
fn anthropic_base_url_without_v1_works() {
    let mock = MockProcess::start(&["--rpm", "6000", "--tpm", "1000000", "--seed", "1"]);
    let dir = Workdir::new();
    let text: String = (0..3)
        .map(|i| {
            json!({"custom_id": format!("m{i}"), "params": {
                "model": "claude-3-5-haiku-latest", "max_tokens": 8,
                "messages": [{"role": "user", "content": format!("hello {i}")}]}})
            .to_string()
                + "\n"
        })
        .collect();
    let input = dir.write("in.jsonl", &text);
    let output = dir.path("out.jsonl");
    // The Anthropic SDKs' base URL: the host, no `/v1`.
    let root = mock.base_url().trim_end_matches("/v1").to_string();
    let out = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&output),
        "--provider",
        "anthropic",
        "--base-url",
        &root,
        "--api-key-env",
        "OPENAI_API_KEY",
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(output_lines(&output), 3);
}

#[test]
fn all_404_first_answers_stop_the_run_naming_the_url() {
    let mock = MockProcess::start(&["--rpm", "6000", "--tpm", "1000000", "--seed", "1"]);
    let dir = Workdir::new();
    let input = dir.batch("in.jsonl", 200);
    let output = dir.path("out.jsonl");
    // OpenAI's paths need the `/v1` in the base URL: without it every answer is 404.
    let root = mock.base_url().trim_end_matches("/v1").to_string();
    let started = Instant::now();
    let out = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&output),
        "--base-url",
        &root,
        "--api-key-env",
        "OPENAI_API_KEY",
        "-q",
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    let tried = format!("{root}/chat/completions");
    assert!(err.contains(&tried), "the message names {tried}: {err}");
    assert!(err.contains("404"), "{err}");
    // and says what the inferred provider's base URL looks like.
    assert!(
        err.contains("openai-compatible: http://HOST:PORT/v1"),
        "{err}"
    );
    assert!(!err.contains(KEY), "the key leaked: {err}");
    // It stopped at the first answers instead of failing all 200 requests one by one, and the
    // rest stays pending for a resume with the right URL.
    assert!(output_lines(&output) < 200, "{err}");
    assert!(started.elapsed().as_secs() < 30);
}
