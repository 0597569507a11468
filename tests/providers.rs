//! Providers beyond OpenAI, end to end: `paceline run` and `paceline serve` against `paceline
//! mock` serving Anthropic's Messages API, Azure OpenAI's deployment URLs and an
//! OpenAI-compatible server without limit headers, over loopback HTTP.

mod common;

use common::job::{KEY, Workdir, paceline, s, spawn, stderr, wait_for};
use common::mock::{MockProcess, chat_body, header};
use common::pace;
use common::serve::ServeProcess;
use futures::StreamExt;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const CLAUDE: &str = "claude-3-5-haiku-latest";

/// Anthropic Message Batches input: `n` requests `m0..` with `max_tokens`.
fn message_batch(n: usize, max_tokens: u64) -> String {
    (0..n)
        .map(|i| {
            json!({
                "custom_id": format!("m{i}"),
                "params": {
                    "model": CLAUDE,
                    "max_tokens": max_tokens,
                    "system": "Be brief.",
                    "messages": [{"role": "user", "content": format!("Say hello number {i}")}]
                }
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// Batch API JSONL of `n` chat requests `r0..`.
fn chat_batch(n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({
                "custom_id": format!("r{i}"),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": chat_body("gpt-4o-mini", &format!("Say hello number {i}"), 8)
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// Every line of a JSONL file.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn run_anthropic(mock: &MockProcess, input: &Path, output: &Path, extra: &[&str]) -> String {
    let base = mock.base_url();
    let mut args = vec![
        "run",
        s(input),
        "-o",
        s(output),
        "--provider",
        "anthropic",
        "--base-url",
        &base,
        "--api-key-env",
        "OPENAI_API_KEY",
        "--output-format",
        "anthropic",
        "-q",
    ];
    args.extend_from_slice(extra);
    let out = paceline(&args);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains(KEY), "the key leaked: {err}");
    err
}

#[tokio::test]
async fn anthropic_message_batch_round_trips_to_its_result_format() {
    let mock = MockProcess::start(&["--rpm", "6000", "--tpm", "1000000", "--seed", "1"]);
    let dir = Workdir::new();
    let mut text = message_batch(4, 16);
    // Refused by the API (an empty conversation): recorded as `errored` with its error body.
    text.push_str(
        &json!({"custom_id": "bad", "params": {"model": CLAUDE, "max_tokens": 4, "messages": []}})
            .to_string(),
    );
    text.push('\n');
    let input = dir.write("in.jsonl", &text);
    let output = dir.path("out.jsonl");
    let out = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&output),
        "--provider",
        "anthropic",
        "--base-url",
        &mock.base_url(),
        "--api-key-env",
        "OPENAI_API_KEY",
        "--output-format",
        "anthropic",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let results = lines(&output);
    assert_eq!(results.len(), 5);
    for result in &results {
        let id = result["custom_id"].as_str().unwrap();
        let r = &result["result"];
        if id == "bad" {
            assert_eq!(r["type"], "errored", "{result}");
            assert_eq!(r["error"]["type"], "error");
            assert_eq!(r["error"]["error"]["type"], "invalid_request_error");
        } else {
            assert_eq!(r["type"], "succeeded", "{result}");
            assert_eq!(r["message"]["type"], "message");
            assert!(r["message"]["usage"]["input_tokens"].as_u64().unwrap() > 0);
            assert!(result.get("id").is_none(), "not the OpenAI shape: {result}");
        }
    }
    // x-api-key and anthropic-version were sent: the mock answered every request.
    let stats = mock.stats().await;
    assert_eq!(stats["totals"]["ok"], 4);
    assert_eq!(stats["totals"]["unauthorized"], 0);

    // One output, one format: resuming the job with the other format is refused.
    let other = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&output),
        "--provider",
        "anthropic",
        "--base-url",
        &mock.base_url(),
        "--api-key-env",
        "OPENAI_API_KEY",
        "--retry-failed",
        "-q",
    ]);
    assert_eq!(other.status.code(), Some(2));
    assert!(
        stderr(&other).contains("--output-format"),
        "{}",
        stderr(&other)
    );
}

#[tokio::test]
async fn message_batches_lines_choose_anthropic_without_provider() {
    // Message Batches lines speak Anthropic's API: with no --provider and a base URL no
    // provider claims (a local server), they go out as Anthropic requests (before, every one
    // was refused 400 for want of an `anthropic-version` header).
    let mock = MockProcess::start(&["--rpm", "6000", "--tpm", "1000000", "--seed", "1"]);
    let dir = Workdir::new();
    let input = dir.write("in.jsonl", &message_batch(3, 8));
    let output = dir.path("out.jsonl");
    let base = mock.base_url();
    let out = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&output),
        "--base-url",
        &base,
        "--api-key-env",
        "OPENAI_API_KEY",
        "-q",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let results = lines(&output);
    assert_eq!(results.len(), 3, "{err}");
    assert!(
        results
            .iter()
            .all(|r| r["response"]["status_code"] == 200 && r["error"].is_null()),
        "{results:?}"
    );
    assert_eq!(mock.stats().await["totals"]["ok"], 3);
}

#[tokio::test]
async fn anthropic_529_is_retried_and_429_pauses_until_the_reset() {
    let overloaded = MockProcess::start(&["--fail-529", "0.4", "--seed", "11", "--rpm", "6000"]);
    let dir = Workdir::new();
    let input = dir.write("in.jsonl", &message_batch(10, 8));
    let output = dir.path("out.jsonl");
    run_anthropic(&overloaded, &input, &output, &[]);
    let results = lines(&output);
    assert_eq!(results.len(), 10);
    assert!(results.iter().all(|r| r["result"]["type"] == "succeeded"));
    let stats = overloaded.stats().await;
    assert!(
        stats["totals"]["faults"]["fail_529"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert_eq!(stats["totals"]["ok"], 10);

    // A burst of 3, then two per second: a 429 pauses the quota until its retry-after, and the
    // limit is learned from the anthropic-ratelimit-* headers, so the rest are paced. (Their
    // resets have whole-second precision, so a bucket this small is overestimated by up to a
    // second of its rate: a few 429s remain, never one per request.)
    let limited = MockProcess::start(&["--rpm", "120", "--burst", "3"]);
    let output = dir.path("out2.jsonl");
    let log = dir.path("attempts.log");
    let summary = run_anthropic(&limited, &input, &output, &["--log-file", s(&log)]);
    // Calibrated from anthropic-ratelimit-requests-limit: 120/min.
    assert!(summary.contains(" + 120/min)"), "{summary}");
    assert!(
        lines(&output)
            .iter()
            .all(|r| r["result"]["type"] == "succeeded")
    );
    let stats = limited.stats().await;
    assert_eq!(stats["totals"]["ok"], 10);
    let refused = stats["totals"]["rate_limited"].as_u64().unwrap();
    assert!(refused <= 4, "the 429s came in waves: {stats}");
    // And the pauses they cause cost little: 10 requests, a burst of 3, then 2/s.
    let ideal = pace::ideal(10.0, 3.0, 2.0, Duration::ZERO);
    pace::assert_near_ideal("anthropic 429s", pace::attempt_span(&log), ideal);
}

#[tokio::test]
async fn anthropic_output_tokens_settle_to_what_was_generated() {
    // 3,000 tokens/min and max_tokens 1,000: admitted at 1,000 output tokens each, only two
    // fit at once. Answers are ~4 tokens: settling the output dimension from usage gives the
    // rest back, so twelve requests finish at once; without it they would take minutes.
    let mock = MockProcess::start(&[
        "--tpm",
        "3000",
        "--refund-unused",
        "--completion-tokens",
        "2",
    ]);
    let dir = Workdir::new();
    let input = dir.write("in.jsonl", &message_batch(12, 1000));
    let output = dir.path("out.jsonl");
    let base = mock.base_url();
    let mut child = spawn(&[
        "run",
        s(&input),
        "-o",
        s(&output),
        "--provider",
        "anthropic",
        "--base-url",
        &base,
        "--api-key-env",
        "OPENAI_API_KEY",
        "--output-format",
        "anthropic",
        "-q",
    ]);
    let status = wait_for(&mut child, Duration::from_secs(40));
    if status.is_none() {
        let _ = child.kill();
        panic!("the run did not finish: output tokens were not settled");
    }
    assert!(status.is_some_and(|s| s.success()));
    assert_eq!(lines(&output).len(), 12);
}

#[tokio::test]
async fn azure_mock_speaks_the_azure_shape() {
    let mock = MockProcess::start(&["--rpm", "60", "--burst", "1"]);
    let client = reqwest::Client::new();
    let url = mock.url("/openai/deployments/gpt-4o-mini/chat/completions");
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
    let no_version = client
        .post(&url)
        .header("api-key", "k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status(), 404);
    let bearer = client
        .post(format!("{url}?api-version=2024-10-21"))
        .bearer_auth("k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 401);
    let err: Value = bearer.json().await.unwrap();
    assert_eq!(err["error"]["code"], "401");
    let ok = client
        .post(format!("{url}?api-version=2024-10-21"))
        .header("api-key", "k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(header(&ok, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(header(&ok, "x-ratelimit-remaining-tokens"), "-1");
    assert_eq!(header(&ok, "x-ratelimit-limit-requests"), "");
    let answer: Value = ok.json().await.unwrap();
    assert_eq!(answer["model"], "gpt-4o-mini");
    let limited = client
        .post(format!("{url}?api-version=2024-10-21"))
        .header("api-key", "k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(!header(&limited, "retry-after").is_empty());
    assert!(!header(&limited, "retry-after-ms").is_empty());
    assert!(!header(&limited, "x-ms-retry-after-ms").is_empty());
    let err: Value = limited.json().await.unwrap();
    assert_eq!(err["error"]["code"], "429");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("call rate limit"), "{message}");
}

#[tokio::test]
async fn azure_run_uses_deployment_urls_and_its_retry_hints() {
    // Azure sends no limits: the quota runs on what the 429s say (retry-after-ms) and the
    // remaining counts.
    let mock = MockProcess::start(&["--rpm", "120", "--burst", "1"]);
    let dir = Workdir::new();
    let input = dir.write("in.jsonl", &chat_batch(6));
    let output = dir.path("out.jsonl");
    let base = mock.url("");
    let out = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&output),
        "--provider",
        "azure",
        "--base-url",
        &base,
        "--api-version",
        "2024-10-21",
        "--api-key-env",
        "OPENAI_API_KEY",
        "-q",
    ]);
    let summary = stderr(&out);
    assert!(out.status.success(), "{summary}");
    // Remaining-only headers teach at most a lower bound of the rate (2 req/s at the mock),
    // and -1 for the unlimited tokens teaches nothing.
    let budget = summary
        .lines()
        .find_map(|l| l.strip_prefix("  budget used     "))
        .unwrap_or_else(|| panic!("no budget line: {summary}"));
    if let Some(rest) = budget.strip_prefix("requests ") {
        let per_minute: f64 = rest
            .split(" + ")
            .nth(1)
            .and_then(|v| v.split("/min").next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::INFINITY);
        assert!(per_minute <= 120.0, "{summary}");
    }
    assert!(!budget.contains("tokens"), "{summary}");
    let results = lines(&output);
    assert_eq!(results.len(), 6);
    assert!(
        results
            .iter()
            .all(|r| r["response"]["status_code"] == 200 && r["error"].is_null())
    );
    let stats = mock.stats().await;
    assert_eq!(stats["totals"]["ok"], 6);
    assert_eq!(stats["totals"]["unauthorized"], 0);
}

#[tokio::test]
async fn openai_compatible_server_without_limit_headers_runs_on_configured_limits() {
    // No limits at the mock: no rate-limit headers at all, like vLLM or llama.cpp.
    let mock = MockProcess::start(&[]);
    let dir = Workdir::new();
    let input = dir.write("in.jsonl", &chat_batch(8));
    let output = dir.path("out.jsonl");
    let config = dir.write(
        "paceline.toml",
        &format!(
            "base_url = \"{}\"\nprovider = \"openai-compatible\"\n[[keys]]\nenv = \"OPENAI_API_KEY\"\nrpm = 6000\n",
            mock.base_url()
        ),
    );
    let out = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&output),
        "--config",
        s(&config),
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(lines(&output).len(), 8);
    assert_eq!(mock.stats().await["totals"]["ok"], 8);
}

/// The access log line of the first successful request to `route`, once written.
async fn access_line(gateway: &ServeProcess, route: &str) -> Value {
    for _ in 0..200 {
        let found = gateway.log().iter().find_map(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            let text = v.to_string();
            let ok = v.get("status").and_then(Value::as_u64) == Some(200);
            (ok && text.contains(route) && text.contains("completion_tokens")).then_some(v)
        });
        if let Some(v) = found {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no access log line for {route}: {:?}", gateway.log());
}

fn field(line: &Value, name: &str) -> u64 {
    line.get(name)
        .or_else(|| line.get("fields").and_then(|f| f.get(name)))
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{name} in {line}"))
}

#[tokio::test]
async fn serve_relays_anthropic_messages_and_meters_the_stream() {
    let mock = MockProcess::start(&["--rpm", "6000", "--tpm", "1000000", "--seed", "5"]);
    let dir = Workdir::new();
    let config = dir.write(
        "serve.toml",
        &format!(
            "base_url = \"{}\"\nprovider = \"anthropic\"\n[[keys]]\nenv = \"ANTHROPIC_KEY\"\n\
             [[clients]]\nname = \"app\"\nkey_env = \"CLIENT_KEY\"\n",
            mock.base_url()
        ),
    );
    let gateway = ServeProcess::start(
        &["--config", s(&config)],
        &[("ANTHROPIC_KEY", KEY), ("CLIENT_KEY", "client-key-1")],
    );
    // The Anthropic SDKs authenticate with x-api-key, and read Anthropic's error shape.
    let client = reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::HeaderName::from_static("x-api-key"),
                reqwest::header::HeaderValue::from_static("client-key-1"),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let refused = reqwest::Client::new()
        .post(gateway.url("/v1/messages"))
        .header("x-api-key", "wrong")
        .json(&json!({"model": CLAUDE, "max_tokens": 8, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let err: Value = refused.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "authentication_error");
    let body = json!({"model": CLAUDE, "max_tokens": 32, "stream": true,
        "messages": [{"role": "user", "content": "Hello there"}]});
    let resp = client
        .post(gateway.url("/v1/messages"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Anthropic's `request-id` reaches the client as `x-request-id`, streamed or whole.
    assert!(resp.headers().contains_key("x-request-id"), "{resp:?}");
    let mut text = String::new();
    let mut chunks = resp.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let events: Vec<Value> = text
        .split_terminator("\n\n")
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    let input = events[0]["message"]["usage"]["input_tokens"]
        .as_u64()
        .unwrap();
    let output = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .and_then(|e| e["usage"]["output_tokens"].as_u64())
        .unwrap();
    let line = access_line(&gateway, "/v1/messages").await;
    assert_eq!(field(&line, "prompt_tokens"), input, "{line}");
    assert_eq!(field(&line, "completion_tokens"), output, "{line}");

    let whole = client
        .post(gateway.url("/v1/messages"))
        .json(&json!({"model": CLAUDE, "max_tokens": 8,
            "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200);
    assert!(whole.headers().contains_key("x-request-id"), "{whole:?}");
    let message: Value = whole.json().await.unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(mock.stats().await["totals"]["ok"], 2);
}

#[tokio::test]
async fn serve_answers_its_own_errors_on_messages_in_anthropics_shape() {
    let mock = MockProcess::start(&["--seed", "6"]);
    let dir = Workdir::new();
    // One request a minute, known from the start: a second one cannot go within its wait.
    let limited = dir.write(
        "limited.toml",
        &format!(
            "base_url = \"{}\"\nprovider = \"anthropic\"\n[[keys]]\nenv = \"ANTHROPIC_KEY\"\nrpm = 1\n",
            mock.base_url()
        ),
    );
    let gateway = ServeProcess::start(&["--config", s(&limited)], &[("ANTHROPIC_KEY", KEY)]);
    let client = reqwest::Client::new();
    let send = |url: String| {
        client
            .post(url)
            .header("x-api-key", "any")
            .header("x-paceline-max-wait", "200ms")
            .json(&json!({"model": CLAUDE, "max_tokens": 8,
                "messages": [{"role": "user", "content": "Hi"}]}))
            .send()
    };
    assert_eq!(
        send(gateway.url("/v1/messages")).await.unwrap().status(),
        200
    );
    let refused = send(gateway.url("/v1/messages")).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let err: Value = refused.json().await.unwrap();
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["error"]["type"], "rate_limit_error", "{err}");

    // A provider that cannot be reached: 502, in the same shape.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let gone = ServeProcess::start(
        &[
            "--base-url",
            &format!("http://127.0.0.1:{port}/v1"),
            "--provider",
            "anthropic",
            "--api-key-env",
            "ANTHROPIC_KEY",
        ],
        &[("ANTHROPIC_KEY", KEY)],
    );
    let failed = send(gone.url("/v1/messages")).await.unwrap();
    assert_eq!(failed.status(), 502);
    let err: Value = failed.json().await.unwrap();
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["error"]["type"], "api_error", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{err}"
    );
    // The OpenAI routes of the same gateway keep OpenAI's shape; an Anthropic upstream serves
    // none of them, which the gateway says itself.
    let openai = client
        .post(gone.url("/v1/chat/completions"))
        .header("x-paceline-max-wait", "200ms")
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(openai.status(), 404);
    let err: Value = openai.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("provider anthropic (it serves /v1/messages)"))
            && err.get("type").is_none(),
        "{err}"
    );
}

#[tokio::test]
async fn serve_routes_models_across_providers_and_falls_back() {
    // Azure fails every request; the OpenAI deployment behind it takes over. "claude" goes to
    // the Anthropic endpoint.
    let azure = MockProcess::start(&["--fail-500", "1", "--seed", "2"]);
    let openai = MockProcess::start(&["--rpm", "6000"]);
    let dir = Workdir::new();
    let config = dir.write(
        "serve.toml",
        &format!(
            r#"max_attempts = 4

[[models]]
name = "fast"
[[models.deployments]]
provider = "azure"
base_url = "{azure}"
model = "gpt-4o-mini"
api_version = "2024-10-21"
env = "AZURE_KEY"
[[models.deployments]]
provider = "openai"
base_url = "{openai}"
model = "gpt-4o-mini"
env = "OPENAI_KEY"

[[models]]
name = "claude"
[[models.deployments]]
provider = "anthropic"
base_url = "{openai}"
model = "{CLAUDE}"
env = "ANTHROPIC_KEY"
"#,
            azure = azure.url(""),
            openai = openai.base_url(),
        ),
    );
    let gateway = ServeProcess::start(
        &["--config", s(&config)],
        &[
            ("AZURE_KEY", "az-key"),
            ("OPENAI_KEY", KEY),
            ("ANTHROPIC_KEY", KEY),
        ],
    );
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let resp = client
            .post(gateway.url("/v1/chat/completions"))
            .json(&chat_body("fast", "hi", 4))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["model"], "gpt-4o-mini");
    }
    let azure_stats = azure.stats().await;
    assert!(
        azure_stats["totals"]["faults"]["fail_500"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(azure_stats["totals"]["unauthorized"], 0);
    assert_eq!(openai.stats().await["totals"]["ok"], 3);

    let resp = client
        .post(gateway.url("/v1/messages"))
        .json(&json!({"model": "claude", "max_tokens": 4,
            "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let message: Value = resp.json().await.unwrap();
    assert_eq!(message["model"], CLAUDE);

    let listed: Value = client
        .get(gateway.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fast", "claude"]);

    let unknown = client
        .post(gateway.url("/v1/chat/completions"))
        .json(&chat_body("nope", "hi", 4))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    let err: Value = unknown.json().await.unwrap();
    assert_eq!(err["error"]["code"], "model_not_found");
}

/// A line a provider cannot serve is refused before anything is sent (Azure's deployment URLs
/// have no Responses API), by line like any invalid line; the gateway answers such a route
/// itself, saying which endpoints its upstream serves.
#[tokio::test(flavor = "multi_thread")]
async fn what_a_provider_cannot_serve_is_refused_before_anything_is_sent() {
    let mock = MockProcess::start(&[]);
    let dir = Workdir::new();
    let mut text = chat_batch(2);
    text.push_str(
        &(json!({"custom_id": "resp", "method": "POST", "url": "/v1/responses",
                 "body": {"model": "gpt-4o-mini", "input": "hello"}})
        .to_string()
            + "\n"),
    );
    let input = dir.write("in.jsonl", &text);
    let output = dir.path("out.jsonl");
    let base = mock.url("");
    let out = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&output),
        "--provider",
        "azure",
        "--base-url",
        &base,
        "--api-key-env",
        "OPENAI_API_KEY",
        "-q",
    ]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(
            "line 3: /v1/responses is not served by provider azure (it serves /v1/chat/completions"
        ) && said.contains("nothing was sent"),
        "{said}"
    );
    assert_eq!(mock.stats().await["totals"]["requests"], 0);

    let gateway = ServeProcess::start(
        &[
            "--base-url",
            &base,
            "--provider",
            "azure",
            "--api-key-env",
            "UPSTREAM",
        ],
        &[("UPSTREAM", KEY)],
    );
    let resp = reqwest::Client::new()
        .post(gateway.url("/v1/responses"))
        .json(&json!({"model": "gpt-4o-mini", "input": "hello"}))
        .send()
        .await
        .expect("POST /v1/responses");
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.expect("error JSON");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("provider azure"), "{message}");
    assert_eq!(mock.stats().await["totals"]["requests"], 0);
}

/// When a run's first answers are all the same refusal (here every message lacks its `role`:
/// the same 400 and message), it stops sending and says why, with the provider's words,
/// instead of failing every line alike.
#[tokio::test(flavor = "multi_thread")]
async fn identical_refusals_stop_a_run_early_and_say_why() {
    let mock = MockProcess::start(&[]);
    let dir = Workdir::new();
    let text: String = (0..300)
        .map(|i| {
            json!({"custom_id": format!("r{i}"), "method": "POST", "url": "/v1/chat/completions",
                   "body": {"model": "gpt-4o-mini", "max_tokens": 8, "messages": [{"content": "hi"}]}})
            .to_string()
                + "\n"
        })
        .collect();
    let input = dir.write("in.jsonl", &text);
    let output = dir.path("out.jsonl");
    let base = mock.base_url();
    let out = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&output),
        "--base-url",
        &base,
        "-q",
    ]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("were all HTTP 400") && said.contains("role"),
        "the provider's words: {said}"
    );
    let sent = mock.stats().await["totals"]["requests"]
        .as_u64()
        .expect("requests");
    assert!(sent < 60, "{sent} of 300 sent: {said}");
    // What was refused is recorded as such; the rest is left for a fixed rerun.
    assert!(said.contains("requests left"), "{said}");
}
