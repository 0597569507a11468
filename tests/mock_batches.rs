//! The mock's Batch APIs over HTTP: OpenAI's Files and Batches (upload, create with metadata,
//! the status sequence, output and error files, list pages, cancel, expiry, the enqueued-token
//! refusal) and Anthropic's Message Batches (create, counts, results, the queue's 429, cancel).
//! The batches' clock is moved with `POST /_mock/advance`; every step is a half second away from
//! a boundary, so the wall time the test itself takes cannot change what it sees.

mod common;

use common::mock::{MockProcess, chat_body};
use serde_json::{Value, json};

const KEY: &str = "sk-batch";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn advance(mock: &MockProcess, seconds: f64) {
    let r = client()
        .post(mock.url("/_mock/advance"))
        .json(&json!({ "seconds": seconds }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn line(id: &str, body: Value) -> String {
    json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions", "body": body})
        .to_string()
}

async fn upload(mock: &MockProcess, lines: &[String]) -> Value {
    let content = lines.join("\n") + "\n";
    let form = reqwest::multipart::Form::new()
        .text("purpose", "batch")
        .part(
            "file",
            reqwest::multipart::Part::bytes(content.into_bytes()).file_name("in.jsonl"),
        );
    let r = client()
        .post(mock.url("/v1/files"))
        .bearer_auth(KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn create(mock: &MockProcess, file: &str, metadata: Value) -> Value {
    let body = json!({"input_file_id": file, "endpoint": "/v1/chat/completions",
        "completion_window": "24h", "metadata": metadata});
    let r = client()
        .post(mock.url("/v1/batches"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn get_json(mock: &MockProcess, path: &str) -> Value {
    let r = client()
        .get(mock.url(path))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

async fn content(mock: &MockProcess, file: &str) -> Vec<Value> {
    let r = client()
        .get(mock.url(&format!("/v1/files/{file}/content")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn requests(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| line(&format!("r{i}"), chat_body("gpt-4o-mini", "hello there", 5)))
        .collect()
}

#[tokio::test]
async fn an_openai_batch_goes_through_every_status_and_writes_both_files() {
    let mock = MockProcess::start(&[
        "--seed",
        "3",
        "--batch-speed",
        "1",
        "--batch-validation",
        "100s",
    ]);
    let mut lines = requests(5);
    // The endpoint refuses this one (no messages): a 400 line in the error file.
    lines.push(line(
        "bad",
        json!({"model": "gpt-4o-mini", "max_tokens": 5}),
    ));
    let file = upload(&mock, &lines).await;
    assert_eq!(file["object"], "file");
    assert_eq!(file["purpose"], "batch");
    assert_eq!(file["filename"], "in.jsonl");
    let id = file["id"].as_str().unwrap().to_owned();
    let batch = create(&mock, &id, json!({"job": "j1", "shard": "0"})).await;
    assert_eq!(batch["object"], "batch");
    assert_eq!(batch["status"], "validating");
    assert_eq!(batch["completion_window"], "24h");
    assert_eq!(batch["metadata"], json!({"job": "j1", "shard": "0"}));
    assert_eq!(batch["input_file_id"], id.as_str());
    assert_eq!(
        batch["expires_at"].as_i64().unwrap() - batch["created_at"].as_i64().unwrap(),
        86_400
    );
    let bid = batch["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/batches/{bid}");

    advance(&mock, 103.5).await;
    let b = get_json(&mock, &path).await;
    assert_eq!(b["status"], "in_progress");
    assert!(b["in_progress_at"].is_i64());
    let counts = &b["request_counts"];
    assert_eq!(counts["total"], 6);
    assert_eq!(
        counts["completed"].as_u64().unwrap() + counts["failed"].as_u64().unwrap(),
        3
    );
    assert!(b["output_file_id"].is_null());

    advance(&mock, 3.0).await;
    let b = get_json(&mock, &path).await;
    assert_eq!(b["status"], "finalizing");
    assert!(b["finalizing_at"].is_i64());
    advance(&mock, 100.0).await;
    let b = get_json(&mock, &path).await;
    assert_eq!(b["status"], "completed");
    assert_eq!(
        b["request_counts"],
        json!({"total": 6, "completed": 5, "failed": 1})
    );
    let output = content(&mock, b["output_file_id"].as_str().unwrap()).await;
    let errors = content(&mock, b["error_file_id"].as_str().unwrap()).await;
    assert_eq!(output.len(), 5);
    for (i, o) in output.iter().enumerate() {
        assert_eq!(o["custom_id"], format!("r{i}"));
        assert!(o["id"].as_str().unwrap().starts_with("batch_req_"));
        assert_eq!(o["response"]["status_code"], 200);
        assert!(o["response"]["request_id"].is_string());
        assert_eq!(o["response"]["body"]["object"], "chat.completion");
        assert!(o["error"].is_null());
    }
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["custom_id"], "bad");
    assert_eq!(errors[0]["response"]["status_code"], 400);
    assert!(errors[0]["response"]["body"]["error"]["message"].is_string());

    let deleted = client()
        .delete(mock.url(&format!("/v1/files/{id}")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(
        deleted,
        json!({"id": id, "object": "file", "deleted": true})
    );
    let gone = client()
        .get(mock.url(&format!("/v1/files/{id}")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn batches_are_listed_newest_first_in_pages() {
    let mock = MockProcess::start(&["--batch-validation", "100s"]);
    let file = upload(&mock, &requests(2)).await;
    let id = file["id"].as_str().unwrap();
    let mut made = Vec::new();
    for shard in 0..3 {
        let b = create(&mock, id, json!({"shard": shard.to_string()})).await;
        made.push(b["id"].as_str().unwrap().to_owned());
    }
    let page = get_json(&mock, "/v1/batches?limit=2").await;
    assert_eq!(page["object"], "list");
    assert_eq!(page["has_more"], true);
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [made[2].as_str(), made[1].as_str()]);
    assert_eq!(page["last_id"], made[1].as_str());
    let next = get_json(&mock, &format!("/v1/batches?limit=2&after={}", made[1])).await;
    assert_eq!(next["has_more"], false);
    assert_eq!(next["data"][0]["id"], made[0].as_str());
    assert_eq!(next["data"][0]["metadata"]["shard"], "0");
    assert_eq!(mock.stats().await["batches"]["batches_created"], 3);
}

#[tokio::test]
async fn the_enqueued_token_limit_fails_the_batch_that_would_pass_it_and_frees_up() {
    // Each request costs its prompt (9 tokens) + max_tokens 5: 14; a batch of three, 42.
    let mock = MockProcess::start(&[
        "--batch-speed",
        "1",
        "--batch-validation",
        "10s",
        "--batch-enqueued-tokens",
        "60",
    ]);
    let file = upload(&mock, &requests(3)).await;
    let id = file["id"].as_str().unwrap();
    let first = create(&mock, id, json!({})).await;
    let second = create(&mock, id, json!({})).await;
    advance(&mock, 10.5).await;
    let a = get_json(
        &mock,
        &format!("/v1/batches/{}", first["id"].as_str().unwrap()),
    )
    .await;
    let b = get_json(
        &mock,
        &format!("/v1/batches/{}", second["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(a["status"], "in_progress");
    assert_eq!(b["status"], "failed");
    assert!(b["failed_at"].is_i64());
    let error = &b["errors"]["data"][0];
    assert_eq!(error["code"], "token_limit_exceeded");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("Enqueued token limit reached for gpt-4o-mini")
            && message.contains("Limit: 60 enqueued tokens"),
        "{message}"
    );
    // Close to the limit but not over it: once the first batch has ended, one fits again.
    advance(&mock, 20.0).await;
    let third = create(&mock, id, json!({})).await;
    advance(&mock, 10.5).await;
    let c = get_json(
        &mock,
        &format!("/v1/batches/{}", third["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(c["status"], "in_progress");
    let stats = mock.stats().await;
    assert_eq!(stats["batches"]["refused_enqueued"], 1);
    assert_eq!(stats["batches"]["batches_created"], 3);
}

#[tokio::test]
async fn a_batch_past_its_window_expires_and_a_cancelled_one_keeps_what_ran() {
    let mock = MockProcess::start(&[
        "--batch-speed",
        "1",
        "--batch-validation",
        "10s",
        "--batch-window",
        "20s",
    ]);
    let file = upload(&mock, &requests(20)).await;
    let id = file["id"].as_str().unwrap();
    let expiring = create(&mock, id, json!({})).await;
    advance(&mock, 20.5).await;
    let e = get_json(
        &mock,
        &format!("/v1/batches/{}", expiring["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(e["status"], "expired");
    assert_eq!(
        e["request_counts"],
        json!({"total": 20, "completed": 10, "failed": 10})
    );
    let errors = content(&mock, e["error_file_id"].as_str().unwrap()).await;
    assert_eq!(errors.len(), 10);
    assert_eq!(errors[0]["error"]["code"], "batch_expired");
    assert!(errors[0]["response"].is_null());
    assert_eq!(
        content(&mock, e["output_file_id"].as_str().unwrap())
            .await
            .len(),
        10
    );

    let cancelled = create(&mock, id, json!({})).await;
    let path = format!("/v1/batches/{}", cancelled["id"].as_str().unwrap());
    advance(&mock, 14.5).await;
    let r = client()
        .post(mock.url(&format!("{path}/cancel")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["status"], "cancelling");
    assert!(c["cancelling_at"].is_i64());
    advance(&mock, 10.5).await;
    let c = get_json(&mock, &path).await;
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["request_counts"]["completed"], 4);
    assert_eq!(
        content(&mock, c["output_file_id"].as_str().unwrap())
            .await
            .len(),
        4
    );
}

async fn anthropic(
    mock: &MockProcess,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut r = client()
        .request(method, mock.url(path))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01");
    if let Some(body) = body {
        r = r.json(&body);
    }
    r.send().await.unwrap()
}

fn message_requests(prefix: &str, n: usize) -> Value {
    let requests: Vec<Value> = (0..n)
        .map(|i| {
            json!({"custom_id": format!("{prefix}{i}"), "params": {
            "model": "claude-3-5-haiku-latest", "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}]}})
        })
        .collect();
    json!({ "requests": requests })
}

#[tokio::test]
async fn message_batches_count_results_and_refuse_past_the_queue_limit() {
    let mock = MockProcess::start(&[
        "--batch-speed",
        "1",
        "--batch-queued-requests",
        "6",
        "--batch-validation",
        "10s",
    ]);
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let r = anthropic(
        &mock,
        post.clone(),
        "/v1/messages/batches",
        Some(message_requests("a", 4)),
    )
    .await;
    assert_eq!(r.status(), 200);
    let batch: Value = r.json().await.unwrap();
    assert_eq!(batch["type"], "message_batch");
    assert_eq!(batch["processing_status"], "in_progress");
    assert_eq!(
        batch["request_counts"],
        json!({"processing": 4, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0})
    );
    assert!(batch["results_url"].is_null());
    let id = batch["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("msgbatch_"));
    let early = anthropic(
        &mock,
        get.clone(),
        &format!("/v1/messages/batches/{id}/results"),
        None,
    )
    .await;
    assert_eq!(early.status(), 400);

    // 4 queued + 4 more would pass 6: refused with Anthropic's 429; 2 more fit.
    let refused = anthropic(
        &mock,
        post.clone(),
        "/v1/messages/batches",
        Some(message_requests("b", 4)),
    )
    .await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let fits = anthropic(
        &mock,
        post.clone(),
        "/v1/messages/batches",
        Some(message_requests("c", 2)),
    )
    .await;
    assert_eq!(fits.status(), 200);
    let other: Value = fits.json().await.unwrap();
    let other_id = other["id"].as_str().unwrap().to_owned();
    let cancel = anthropic(
        &mock,
        post.clone(),
        &format!("/v1/messages/batches/{other_id}/cancel"),
        None,
    )
    .await;
    let cancel: Value = cancel.json().await.unwrap();
    assert_eq!(cancel["processing_status"], "canceling");
    assert!(cancel["cancel_initiated_at"].is_string());

    advance(&mock, 14.5).await;
    let done: Value = anthropic(
        &mock,
        get.clone(),
        &format!("/v1/messages/batches/{id}"),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(done["processing_status"], "ended");
    assert_eq!(done["request_counts"]["succeeded"], 4);
    assert!(done["ended_at"].is_string());
    assert!(
        done["results_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/messages/batches/{id}/results"))
    );
    let text = anthropic(
        &mock,
        get.clone(),
        &format!("/v1/messages/batches/{id}/results"),
        None,
    )
    .await
    .text()
    .await
    .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["custom_id"], "a0");
    assert_eq!(lines[0]["result"]["type"], "succeeded");
    assert_eq!(lines[0]["result"]["message"]["type"], "message");
    let cancelled: Value = anthropic(
        &mock,
        get.clone(),
        &format!("/v1/messages/batches/{other_id}/results"),
        None,
    )
    .await
    .text()
    .await
    .unwrap()
    .lines()
    .map(|l| serde_json::from_str::<Value>(l).unwrap())
    .next()
    .unwrap();
    assert_eq!(cancelled["result"]["type"], "canceled");

    let list: Value = anthropic(&mock, get, "/v1/messages/batches?limit=1", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["id"], other_id.as_str());
    assert_eq!(list["has_more"], true);
    let stats = mock.stats().await;
    assert_eq!(stats["batches"]["batches_created"], 2);
    assert_eq!(stats["batches"]["refused_queue"], 1);
}
