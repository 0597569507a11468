//! Response shapes (OpenAI and Anthropic), SSE framing, embeddings, reproducibility.

mod common;

use base64::Engine;
use common::mock::{MockProcess, chat_body, header, post};
use serde_json::{Value, json};

/// Split an SSE body into its `data:` payloads, checking the framing on the way.
fn sse_data(body: &str) -> Vec<String> {
    assert!(body.ends_with("\n\n"), "frames end with a blank line");
    body.split_terminator("\n\n")
        .map(|frame| {
            let data: Vec<&str> = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            assert_eq!(data.len(), 1, "one data line per frame: {frame:?}");
            data[0].to_owned()
        })
        .collect()
}

#[tokio::test]
async fn chat_completion_shape_and_usage() {
    let mock = MockProcess::start(&["--seed", "1"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}], "name": "bob"}
        ],
        "max_completion_tokens": 7
    });
    let resp = post(&url, None, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "application/json");
    assert!(!header(&resp, "openai-processing-ms").is_empty());
    let v: Value = resp.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert!(v["created"].as_i64().unwrap() > 1_600_000_000);
    assert!(v["system_fingerprint"].is_string());
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["refusal"].is_null());
    assert!(choice["logprobs"].is_null());
    let content = choice["message"]["content"].as_str().unwrap();
    let usage = &v["usage"];
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=7).contains(&completion));
    assert_eq!(content.split(' ').count() as u64, completion);
    assert_eq!(
        choice["finish_reason"],
        if completion == 7 { "length" } else { "stop" }
    );
    // system: 3 + 1 ("system") + 3 ("Be brief.") ; user: 3 + 1 + 2 ("Hello there") + 1 + 1 ("bob"); + 3
    assert_eq!(usage["prompt_tokens"], 7 + 8 + 3);
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), 18 + completion);
    assert!(usage["prompt_tokens_details"].is_object());
    assert!(usage["completion_tokens_details"].is_object());
}

#[tokio::test]
async fn answers_are_capped_at_max_tokens_with_finish_reason_length() {
    let mock = MockProcess::start(&["--completion-tokens", "500"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let v: Value = post(&url, None, &chat_body("gpt-4o-mini", "hi", 3))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn chat_stream_framing_with_include_usage() {
    let mock = MockProcess::start(&["--seed", "2"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let mut body = chat_body("gpt-4o-mini", "hi", 20);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = post(&url, None, &body).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let final_chunk = &chunks[chunks.len() - 2];
    assert!(final_chunk["choices"][0]["finish_reason"].is_string());
    assert!(final_chunk["usage"].is_null());
    let content: String = chunks[1..chunks.len() - 2]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let completion = usage_chunk["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(content.split(' ').count() as u64, completion);
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 8);

    // Without include_usage: no usage chunk, no usage fields.
    body["stream_options"] = json!(null);
    let text = post(&url, None, &body).await.text().await.unwrap();
    let data = sse_data(&text);
    for d in &data[..data.len() - 1] {
        let c: Value = serde_json::from_str(d).unwrap();
        assert!(c.get("usage").is_none());
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
    let stats = mock.stats().await;
    assert_eq!(stats["totals"]["ok"], 2);
}

#[tokio::test]
async fn completions_shape() {
    let mock = MockProcess::start(&[]);
    let url = format!("{}/completions", mock.base_url());
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": ["Hello there", "Hi"], "max_tokens": 4});
    let v: Value = post(&url, None, &body).await.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert!(v["choices"][0]["text"].is_string());
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    let mut body = body;
    body["stream"] = json!(true);
    let text = post(&url, None, &body).await.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn embeddings_float_and_base64_agree() {
    let mock = MockProcess::start(&[]);
    let url = format!("{}/embeddings", mock.base_url());
    let body = json!({"model": "text-embedding-3-small", "input": ["alpha", "beta gamma"]});
    let floats: Value = post(&url, None, &body).await.json().await.unwrap();
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["model"], "text-embedding-3-small");
    assert_eq!(floats["usage"]["prompt_tokens"], 3);
    assert_eq!(floats["usage"]["total_tokens"], 3);
    let data = floats["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    let v0: Vec<f32> = serde_json::from_value(data[0]["embedding"].clone()).unwrap();
    assert_eq!(v0.len(), 1536);

    let mut b64 = body.clone();
    b64["encoding_format"] = json!("base64");
    let encoded: Value = post(&url, None, &b64).await.json().await.unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, v0);

    // Deterministic per input, dimensions honoured, -large defaults to 3072, token ids count.
    let again: Value = post(
        &url,
        None,
        &json!({"model": "text-embedding-3-small", "input": "alpha"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(again["data"][0]["embedding"], data[0]["embedding"]);
    let small: Value = post(
        &url,
        None,
        &json!({"model": "text-embedding-3-small", "input": "alpha", "dimensions": 8}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(small["data"][0]["embedding"].as_array().unwrap().len(), 8);
    let large: Value = post(
        &url,
        None,
        &json!({"model": "text-embedding-3-large", "input": "x"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        large["data"][0]["embedding"].as_array().unwrap().len(),
        3072
    );
    let ids: Value = post(
        &url,
        None,
        &json!({"model": "text-embedding-3-small", "input": [1, 2, 3, 4]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(ids["usage"]["prompt_tokens"], 4);
}

#[tokio::test]
async fn models_list() {
    let mock = MockProcess::start(&[]);
    let v: Value = reqwest::get(format!("{}/models", mock.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "gpt-4o-mini" && m["object"] == "model")
    );
}

#[tokio::test]
async fn anthropic_message_shape_headers_and_stream() {
    let mock = MockProcess::start(&["--rpm", "50", "--tpm", "40000"]);
    let url = format!("{}/messages", mock.base_url());
    let client = reqwest::Client::new();
    let body = json!({
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 16,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello"}]
    });
    let resp = client
        .post(&url)
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "anthropic-ratelimit-requests-limit"), "50");
    assert_eq!(
        header(&resp, "anthropic-ratelimit-requests-remaining"),
        "49"
    );
    for dim in ["requests", "tokens", "input-tokens", "output-tokens"] {
        let reset = header(&resp, &format!("anthropic-ratelimit-{dim}-reset"));
        assert!(
            chrono::DateTime::parse_from_rfc3339(&reset).is_ok(),
            "{dim}: {reset:?}"
        );
    }
    assert_eq!(header(&resp, "anthropic-ratelimit-tokens-limit"), "40000");
    assert!(header(&resp, "request-id").starts_with("req_"));
    let v: Value = resp.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["content"][0]["type"], "text");
    assert!(v["stop_reason"] == "end_turn" || v["stop_reason"] == "max_tokens");
    // system (3 + 1 + 3) + user (3 + 1 + 1) + 3
    assert_eq!(v["usage"]["input_tokens"], 15);
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() >= 1);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = client
        .post(&url)
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
        .json(&streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<(String, Value)> = text
        .split_terminator("\n\n")
        .map(|frame| {
            let mut lines = frame.lines();
            let event = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap()
                .to_owned();
            let data: Value =
                serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap())
                    .unwrap();
            assert_eq!(data["type"], event.as_str());
            (event, data)
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(
        names[3..names.len() - 3]
            .iter()
            .all(|n| *n == "content_block_delta")
    );
    let delta = &events[events.len() - 2].1;
    assert_eq!(
        delta["usage"]["output_tokens"].as_u64().unwrap() as usize,
        names.len() - 6
    );

    // Anthropic-shaped errors.
    let resp = client
        .post(&url)
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-3-5-haiku-latest", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn anthropic_429_and_529() {
    let mock = MockProcess::start(&["--rpm", "1"]);
    let url = format!("{}/messages", mock.base_url());
    let client = reqwest::Client::new();
    let body = json!({"model": "claude-3-5-haiku-latest", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]});
    assert_eq!(
        client
            .post(&url)
            .header("x-api-key", "a")
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let resp = client
        .post(&url)
        .header("x-api-key", "a")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let secs: u64 = header(&resp, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&secs));
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "rate_limit_error");

    let mock = MockProcess::start(&["--fail-529", "1", "--seed", "3"]);
    let url = format!("{}/messages", mock.base_url());
    let resp = client
        .post(&url)
        .header("x-api-key", "a")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 529);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "overloaded_error");
    // The 529 fault is Anthropic's: OpenAI-shaped endpoints answer normally.
    let chat = post(
        &format!("{}/chat/completions", mock.base_url()),
        None,
        &chat_body("gpt-4o-mini", "hi", 3),
    )
    .await;
    assert_eq!(chat.status(), 200);
    assert_eq!(mock.stats().await["totals"]["faults"]["fail_529"], 1);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_answers() {
    let run = || async {
        let mock = MockProcess::start(&["--seed", "42", "--fail-500", "0.3"]);
        let url = format!("{}/chat/completions", mock.base_url());
        let mut out = Vec::new();
        for _ in 0..10 {
            let resp = post(&url, None, &chat_body("gpt-4o-mini", "hi", 50)).await;
            let status = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap();
            out.push((status, v["choices"][0]["message"]["content"].clone()));
        }
        out
    };
    let first = run().await;
    assert_eq!(first, run().await);
    assert!(first.iter().any(|(s, _)| *s == 500) && first.iter().any(|(s, _)| *s == 200));
}

#[tokio::test]
async fn latency_model_delays_answers_and_paces_streams() {
    let mock = MockProcess::start(&["--latency-ms", "100", "--ms-per-token", "10", "--seed", "4"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let started = std::time::Instant::now();
    let v: Value = post(&url, None, &chat_body("gpt-4o-mini", "hi", 10))
        .await
        .json()
        .await
        .unwrap();
    let tokens = v["usage"]["completion_tokens"].as_u64().unwrap();
    // Lower bounds only: a loaded machine can only make it slower.
    assert!(started.elapsed().as_millis() as u64 >= 100 + 10 * tokens);
    let mut body = chat_body("gpt-4o-mini", "hi", 10);
    body["stream"] = json!(true);
    let started = std::time::Instant::now();
    let text = post(&url, None, &body).await.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(started.elapsed().as_millis() >= 100);
}
