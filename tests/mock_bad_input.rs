//! Bad input gets OpenAI-shaped 4xx answers; nothing panics.

mod common;

use common::mock::{MockProcess, header, post};
use serde_json::{Value, json};

async fn raw_post(url: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn invalid_json_is_400_naming_the_problem() {
    let mock = MockProcess::start(&[]);
    let url = format!("{}/chat/completions", mock.base_url());
    let resp = raw_post(&url, b"{\"model\": ".to_vec()).await;
    assert_eq!(resp.status(), 400);
    assert!(header(&resp, "x-request-id").starts_with("req_"));
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("parse the JSON body") && msg.contains("EOF"),
        "{msg}"
    );
    let resp = raw_post(&url, b"[1,2]".to_vec()).await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn missing_parameters_are_400_with_param() {
    let mock = MockProcess::start(&[]);
    let base = mock.base_url();
    let cases = [
        (
            "/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        (
            "/chat/completions",
            json!({"model": "gpt-4o-mini"}),
            "messages",
        ),
        (
            "/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"content": "x"}]}),
            "messages[0].role",
        ),
        (
            "/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}),
            "max_tokens",
        ),
        (
            "/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "n": 0}),
            "n",
        ),
        (
            "/completions",
            json!({"model": "gpt-3.5-turbo-instruct"}),
            "prompt",
        ),
        (
            "/embeddings",
            json!({"model": "text-embedding-3-small"}),
            "input",
        ),
        (
            "/embeddings",
            json!({"model": "text-embedding-3-small", "input": {"a": 1}}),
            "input",
        ),
        (
            "/embeddings",
            json!({"model": "text-embedding-3-small", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
        ("/embeddings", json!({"input": "x"}), "model"),
    ];
    for (path, body, param) in cases {
        let resp = post(&format!("{base}{path}"), None, &body).await;
        assert_eq!(resp.status(), 400, "{path} {body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["param"], param, "{path} {body}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
    }
    let stats = mock.stats().await;
    assert_eq!(stats["totals"]["requests"], 10);
    assert_eq!(stats["totals"]["ok"], 0);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_json() {
    let mock = MockProcess::start(&[]);
    let resp = reqwest::get(mock.url("/v1/nothing-here")).await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(header(&resp, "content-type"), "application/json");
    let err: Value = resp.json().await.unwrap();
    assert_eq!(
        err["error"]["message"],
        "Invalid URL (GET /v1/nothing-here)"
    );
    let resp = reqwest::get(mock.url("/v1/chat/completions"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"]["message"].is_string());
}

#[tokio::test]
async fn oversized_body_is_413_json() {
    let mock = MockProcess::start(&[]);
    let url = format!("{}/chat/completions", mock.base_url());
    let big = vec![b' '; 32 * 1024 * 1024 + 1];
    let resp = raw_post(&url, big).await;
    assert_eq!(resp.status(), 413);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too large")
    );
    // The mock still serves afterwards.
    let ok = post(&url, None, &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2})).await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn odd_but_valid_input_does_not_crash() {
    let mock = MockProcess::start(&["--tpm", "100000"]);
    let url = format!("{}/chat/completions", mock.base_url());
    let bodies = [
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": null}], "max_tokens": 1}),
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "max_tokens": 1}),
        json!({"model": "x", "messages": [{"role": "user", "content": "\u{0}<|endoftext|>"}], "max_tokens": 1, "n": 128, "stream": true}),
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": u64::MAX}),
    ];
    for body in bodies {
        let status = post(&url, None, &body).await.status().as_u16();
        assert!(status == 200 || status == 429, "{status} for {body}");
    }
}
