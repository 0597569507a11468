//! `paceline serve` over real loopback HTTP, in front of `paceline mock`: error shapes, the
//! stream relay, pacing under load, priorities, client limits, fair share, upstream failures,
//! metrics and the SIGTERM drain.

mod common;

use common::mock::{MockProcess, chat_body, header};
use common::pace;
use common::serve::{ServeProcess, metric};
use futures::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const UPSTREAM_KEY: &str = "sk-upstream-secret-0123456789";

fn upstream_env() -> Vec<(&'static str, &'static str)> {
    vec![("UPSTREAM_KEY", UPSTREAM_KEY)]
}

fn gateway(mock: &MockProcess, extra: &[&str]) -> ServeProcess {
    let upstream = mock.base_url();
    let mut args = vec![
        "--base-url",
        upstream.as_str(),
        "--api-key-env",
        "UPSTREAM_KEY",
    ];
    args.extend_from_slice(extra);
    ServeProcess::start(&args, &upstream_env())
}

/// Two clients: `limited` to 60 requests a minute (one a second), `free` without limits.
const LIMITED_AND_FREE: &str = "[[clients]]\nname = \"limited\"\nkey_env = \"CLIENT_LIMITED\"\nrpm = 60\n\
     [[clients]]\nname = \"free\"\nkey_env = \"CLIENT_FREE\"\n";

/// The keys of [`LIMITED_AND_FREE`].
const LIMITED_AND_FREE_KEYS: [(&str, &str); 2] = [
    ("CLIENT_LIMITED", "client-key-limited"),
    ("CLIENT_FREE", "client-key-free"),
];

/// A gateway in front of `mock` configured by a file: `top` (top-level settings), the upstream
/// key, then `clients` (`[[clients]]` entries); `client_keys` are the variables they name.
fn gateway_with_clients(
    mock: &MockProcess,
    top: &str,
    clients: &str,
    client_keys: &[(&str, &str)],
) -> ServeProcess {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paceline.toml");
    std::fs::write(
        &config,
        format!(
            "base_url = \"{}\"\nadmin_key_env = \"ADMIN_KEY\"\n{top}[[keys]]\nenv = \"UPSTREAM_KEY\"\n{clients}",
            mock.base_url()
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().to_string();
    let mut env = vec![("UPSTREAM_KEY", UPSTREAM_KEY), ("ADMIN_KEY", ADMIN_KEY)];
    env.extend_from_slice(client_keys);
    // The gateway has read its config once it listens.
    ServeProcess::start(&["--config", &config], &env).with_admin_key(ADMIN_KEY)
}

/// The admin key of the gateways made by [`gateway_with_clients`].
const ADMIN_KEY: &str = "admin-key-test";

async fn chat(
    url: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: &Value,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(url).json(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("request to the gateway")
}

/// Poll `check` every 10 ms until it holds, at most `limit`.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["error"]["type"].as_str().unwrap_or_default(),
        body["error"]["code"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn client_keys_limits_and_error_shapes() {
    let mock = MockProcess::start(&["--seed", "1", "--rpm", "6000"]);
    let serve = gateway_with_clients(
        &mock,
        "body_limit_mb = 1\n",
        LIMITED_AND_FREE,
        &LIMITED_AND_FREE_KEYS,
    );
    let url = serve.url("/v1/chat/completions");
    let body = chat_body("gpt-4o-mini", "hello", 8);

    // 401 without a key and with an unknown one, OpenAI's shape, key not echoed.
    let resp = chat(&url, None, &[], &body).await;
    assert_eq!(resp.status(), 401);
    let resp = chat(&url, Some("sk-who-is-this"), &[], &body).await;
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.unwrap();
    assert!(!text.contains("sk-who-is-this"), "{text}");
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error_of(&err), ("invalid_request_error", "invalid_api_key"));

    // The limited client: 60 rpm (one a second). The second call at once cannot wait 200 ms.
    let first = chat(
        &url,
        Some("client-key-limited"),
        &[("x-paceline-max-wait", "200ms")],
        &body,
    )
    .await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-paceline-attempts"), "1");
    assert!(header(&first, "x-paceline-queue-ms").parse::<u64>().is_ok());
    let second = chat(
        &url,
        Some("client-key-limited"),
        &[("x-paceline-max-wait", "200ms")],
        &body,
    )
    .await;
    assert_eq!(second.status(), 429);
    let wait_ms: u64 = header(&second, "retry-after-ms").parse().unwrap();
    assert!((500..=1000).contains(&wait_ms), "retry-after-ms {wait_ms}");
    assert_eq!(header(&second, "retry-after"), "1");
    let err: Value = second.json().await.unwrap();
    assert_eq!(error_of(&err).1, "rate_limit_exceeded");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limited"),
        "{err}"
    );
    // The other client is not held back by it.
    let free = chat(&url, Some("client-key-free"), &[], &body).await;
    assert_eq!(free.status(), 200);
    assert_eq!(mock.stats().await["totals"]["requests"], 2);

    // 400 for bad JSON and bad headers, 413 over the body limit, 404 for unknown paths.
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth("client-key-free")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("parse the JSON body")
    );
    let resp = chat(
        &url,
        Some("client-key-free"),
        &[("x-paceline-priority", "urgent")],
        &body,
    )
    .await;
    assert_eq!(resp.status(), 400);
    // Just over the 1 MiB limit: the gateway answers 413 once the limit is passed and closes
    // the connection; a body far larger could still be being written then, and the client
    // would see a broken pipe instead of the answer (the loopback's buffers hold the rest).
    let big = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(1_100_000)}]});
    let resp = chat(&url, Some("client-key-free"), &[], &big).await;
    assert_eq!(resp.status(), 413);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(
        error_of(&err),
        ("invalid_request_error", "request_too_large")
    );
    let resp = reqwest::Client::new()
        .post(serve.url("/v1/nope"))
        .bearer_auth("client-key-free")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["message"], "Invalid URL (POST /v1/nope)");

    // /v1/models passes through; /healthz; /metrics counts by route, status and client.
    let models = reqwest::Client::new()
        .get(serve.url("/v1/models"))
        .bearer_auth("client-key-free")
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    let models: Value = models.json().await.unwrap();
    assert_eq!(models["object"], "list");
    let health = reqwest::get(serve.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let text = serve.metrics().await;
    let series = |status: &str, client: &str| {
        format!(
            "paceline_requests_total{{route=\"/v1/chat/completions\",status=\"{status}\",client=\"{client}\"}}"
        )
    };
    assert_eq!(
        metric(&text, &series("200", "limited")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, &series("429", "limited")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, &series("401", "unauthenticated")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "paceline_client_rate_limited_total{client=\"limited\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains("paceline_upstream_latency_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("paceline_queue_wait_seconds_bucket{priority=\"interactive\""),
        "{text}"
    );
    assert!(
        text.contains("paceline_tokens_total{client=\"free\",kind=\"prompt\"}"),
        "{text}"
    );
    assert!(
        text.contains("paceline_quota_remaining{key=\"UPSTREAM_KEY#"),
        "{text}"
    );

    // The access log is JSON, names clients, and holds no key.
    wait_until(Duration::from_secs(5), "the access log", || async {
        serve.log().len() >= 6
    })
    .await;
    let log = serve.log().join("\n");
    for secret in [
        UPSTREAM_KEY,
        "client-key-limited",
        "client-key-free",
        "sk-who-is-this",
    ] {
        assert!(!log.contains(secret), "a key leaked into the log");
    }
    let access: Vec<Value> = serve
        .log()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "paceline::access")
        .collect();
    assert!(
        access
            .iter()
            .any(|v| v["client"] == "limited" && v["status"] == 429),
        "{log}"
    );
}

#[tokio::test]
async fn a_zero_max_wait_sends_at_once_when_there_is_capacity() {
    let mock = MockProcess::start(&["--seed", "1", "--rpm", "6000"]);
    let serve = gateway_with_clients(&mock, "", LIMITED_AND_FREE, &LIMITED_AND_FREE_KEYS);
    let url = serve.url("/v1/chat/completions");
    let body = chat_body("gpt-4o-mini", "hello", 8);

    // An idle gateway: zero means "now", and now there is capacity, upstream and client alike.
    for wait in ["0s", "0ms", "0"] {
        let resp = chat(
            &url,
            Some("client-key-free"),
            &[("x-paceline-max-wait", wait)],
            &body,
        )
        .await;
        assert_eq!(resp.status(), 200, "max wait {wait}");
        assert_eq!(header(&resp, "x-paceline-attempts"), "1");
    }
    let first = chat(
        &url,
        Some("client-key-limited"),
        &[("x-paceline-max-wait", "0s")],
        &body,
    )
    .await;
    assert_eq!(first.status(), 200);

    // The limited client's next request (60 rpm: one a second) cannot go now: a 429 at once.
    let second = chat(
        &url,
        Some("client-key-limited"),
        &[("x-paceline-max-wait", "0s")],
        &body,
    )
    .await;
    assert_eq!(second.status(), 429);
    let wait_ms: u64 = header(&second, "retry-after-ms").parse().unwrap();
    assert!((500..=1000).contains(&wait_ms), "retry-after-ms {wait_ms}");
    assert_eq!(mock.stats().await["totals"]["requests"], 4);
}

#[tokio::test]
async fn the_gateways_own_answers_carry_the_status_headers() {
    let mock = MockProcess::start(&["--seed", "1", "--rpm", "6000"]);
    let serve = gateway_with_clients(&mock, "", LIMITED_AND_FREE, &LIMITED_AND_FREE_KEYS);
    let url = serve.url("/v1/chat/completions");
    let body = chat_body("gpt-4o-mini", "hello", 8);

    // 401, without a key and with an unknown one: nothing waited, nothing sent.
    for key in [None, Some("sk-who-is-this")] {
        let resp = chat(&url, key, &[], &body).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(header(&resp, "x-paceline-queue-ms"), "0");
        assert_eq!(header(&resp, "x-paceline-attempts"), "0");
    }
    // The client's own limit: a 429 after the time it waited so far, with no attempt made.
    let first = chat(&url, Some("client-key-limited"), &[], &body).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-paceline-attempts"), "1");
    let second = chat(
        &url,
        Some("client-key-limited"),
        &[("x-paceline-max-wait", "100ms")],
        &body,
    )
    .await;
    assert_eq!(second.status(), 429);
    assert_eq!(header(&second, "x-paceline-attempts"), "0");
    let queued: u64 = header(&second, "x-paceline-queue-ms").parse().unwrap();
    assert!(queued < 100, "x-paceline-queue-ms {queued}");
    // A 400 the gateway answers itself, and an unknown path.
    let resp = chat(
        &url,
        Some("client-key-limited"),
        &[("x-paceline-priority", "urgent")],
        &body,
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(header(&resp, "x-paceline-attempts"), "0");
    let resp = reqwest::Client::new()
        .post(serve.url("/v1/nope"))
        .bearer_auth("client-key-limited")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(header(&resp, "x-paceline-queue-ms"), "0");
    assert_eq!(header(&resp, "x-paceline-attempts"), "0");
}

#[tokio::test]
async fn streams_are_relayed_live_with_only_what_the_client_asked_for() {
    let mock = MockProcess::start(&[
        "--ms-per-token",
        "20",
        "--completion-tokens",
        "1000",
        "--seed",
        "3",
    ]);
    let serve = gateway(&mock, &[]);
    let url = serve.url("/v1/chat/completions");
    let mut body = chat_body("gpt-4o-mini", "Tell me a story", 20);
    body["stream"] = json!(true);

    // Without include_usage: chunks arrive spread over the answer, and none mentions usage.
    let resp = chat(&url, None, &[], &body).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    assert_eq!(header(&resp, "x-paceline-attempts"), "1");
    let mut stream = resp.bytes_stream();
    let (mut first, mut last, mut text) = (None, None, String::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        let now = Instant::now();
        first.get_or_insert(now);
        last = Some(now);
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let spread = last.unwrap() - first.unwrap();
    assert!(
        spread >= Duration::from_millis(200),
        "chunks were not relayed incrementally: {spread:?}"
    );
    assert!(!text.contains("usage"), "{text}");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    assert_eq!(events.len(), 20 + 3, "{text}");

    // With include_usage: the usage chunk and the null usage fields are kept.
    body["stream_options"] = json!({"include_usage": true});
    let text = chat(&url, None, &[], &body).await.text().await.unwrap();
    assert!(text.contains("\"usage\":null"), "{text}");
    assert!(text.contains("\"completion_tokens\":20"), "{text}");

    // A client hanging up mid-stream cancels the upstream request.
    body["max_tokens"] = json!(40);
    let ok_before = mock.stats().await["totals"]["ok"].as_u64().unwrap();
    let resp = chat(&url, None, &[], &body).await;
    let mut stream = resp.bytes_stream();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    wait_until(
        Duration::from_secs(5),
        "the access log of the cancelled stream",
        || async { serve.log().iter().any(|l| l.contains("client_gone")) },
    )
    .await;
    // The whole answer would take 40 × 20 ms; give it that long to prove it never completed.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        mock.stats().await["totals"]["ok"].as_u64().unwrap(),
        ok_before
    );
}

#[tokio::test]
async fn fifty_clients_at_three_times_the_limit_see_no_429_and_get_the_whole_limit() {
    let mock = MockProcess::start(&["--rpm", "600", "--burst", "5", "--soft-limits"]);
    let serve = gateway(&mock, &["--max-wait", "15s"]);
    let url = serve.url("/v1/chat/completions");
    let sent = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    // 50 clients, 60 requests at once: 3 × the 10/s limit over the first two seconds.
    let tasks: Vec<_> = (0..50)
        .map(|c| {
            let (url, sent) = (url.clone(), Arc::clone(&sent));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..(if c < 10 { 2 } else { 1 }) {
                    sent.fetch_add(1, Ordering::SeqCst);
                    let resp = chat(&url, None, &[], &chat_body("gpt-4o-mini", "hi", 4)).await;
                    statuses.push(resp.status().as_u16());
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.extend(task.await.unwrap());
    }
    let makespan = started.elapsed();
    assert_eq!(statuses.len(), 60);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let stats = mock.stats().await;
    assert_eq!(stats["totals"]["admitted_beyond_limit"], 0, "{stats}");
    assert_eq!(stats["totals"]["rate_limited"], 0, "{stats}");
    // And the whole limit reaches them: 60 requests, a burst of 5, then 10/s (answers in
    // ~0 ms), timed from the first request sent to the last answer received.
    let ideal = pace::ideal(60.0, 5.0, 10.0, Duration::ZERO);
    pace::assert_near_ideal("fifty clients", makespan, ideal);
    let text = serve.metrics().await;
    assert_eq!(
        metric(
            &text,
            "paceline_client_rate_limited_total{client=\"anonymous\"}"
        ),
        None,
        "{text}"
    );
}

#[tokio::test]
async fn interactive_requests_do_not_wait_behind_batch() {
    let mock = MockProcess::start(&["--rpm", "600", "--burst", "5"]);
    let serve = gateway(&mock, &[]);
    let url = serve.url("/v1/chat/completions");
    let batch: Vec<_> = (0..30)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let resp = chat(
                    &url,
                    None,
                    &[("x-paceline-priority", "batch")],
                    &chat_body("gpt-4o-mini", "bulk", 4),
                )
                .await;
                assert_eq!(resp.status(), 200);
                header(&resp, "x-paceline-queue-ms").parse::<u64>().unwrap()
            })
        })
        .collect();
    wait_until(Duration::from_secs(5), "a batch backlog", || async {
        metric(
            &serve.metrics().await,
            "paceline_queue_depth{priority=\"batch\"}",
        )
        .unwrap_or(0.0)
            >= 15.0
    })
    .await;
    let interactive: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let resp = chat(&url, None, &[], &chat_body("gpt-4o-mini", "now", 4)).await;
                assert_eq!(resp.status(), 200);
                header(&resp, "x-paceline-queue-ms").parse::<u64>().unwrap()
            })
        })
        .collect();
    let mut waits = Vec::new();
    for task in interactive {
        waits.push(task.await.unwrap());
    }
    let mut batch_waits = Vec::new();
    for task in batch {
        batch_waits.push(task.await.unwrap());
    }
    // Three interactive requests at 10/s: the last goes within ~300 ms, not after the backlog.
    assert!(
        waits.iter().all(|w| *w < 800),
        "interactive waits {waits:?}"
    );
    assert!(
        batch_waits.iter().max().copied().unwrap_or(0) > 1500,
        "batch waits {batch_waits:?}"
    );
}

#[tokio::test]
async fn weights_share_upstream_capacity() {
    let mock = MockProcess::start(&["--rpm", "600", "--burst", "5"]);
    let serve = gateway_with_clients(
        &mock,
        "",
        "[[clients]]\nname = \"heavy\"\nkey_env = \"CLIENT_HEAVY\"\nweight = 3\n\
             [[clients]]\nname = \"light\"\nkey_env = \"CLIENT_LIGHT\"\n",
        &[("CLIENT_HEAVY", "key-heavy"), ("CLIENT_LIGHT", "key-light")],
    );
    let url = serve.url("/v1/chat/completions");
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (url, order) = (url.clone(), Arc::clone(&order));
            let key = if i % 2 == 0 { "key-heavy" } else { "key-light" };
            tokio::spawn(async move {
                let resp = chat(
                    &url,
                    Some(key),
                    &[],
                    &chat_body("gpt-4o-mini", "same size", 4),
                )
                .await;
                assert_eq!(resp.status(), 200);
                order.lock().unwrap().push(key);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    // While both are backlogged, heavy gets about 3 of every 4 slots.
    let heavy = order[..16].iter().filter(|k| **k == "key-heavy").count();
    assert!(
        (10..=14).contains(&heavy),
        "heavy got {heavy} of the first 16: {order:?}"
    );
}

#[tokio::test]
async fn upstream_unreachable_or_silent_becomes_502_or_504() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let serve = ServeProcess::start(
        &[
            "--base-url",
            &dead,
            "--api-key-env",
            "UPSTREAM_KEY",
            "--max-wait",
            "1s",
        ],
        &upstream_env(),
    );
    let resp = chat(
        &serve.url("/v1/chat/completions"),
        None,
        &[],
        &chat_body("gpt-4o-mini", "hi", 4),
    )
    .await;
    assert_eq!(resp.status(), 502);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "upstream_unreachable");
    // Why, but not where: the provider's address is not the client's to know.
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("Connection refused"), "{message}");
    assert!(!message.contains(&dead), "{message}");

    let stalled = MockProcess::start(&["--stall", "1"]);
    let serve = gateway(&stalled, &["--timeout", "300ms", "--max-wait", "1s"]);
    let resp = chat(
        &serve.url("/v1/chat/completions"),
        None,
        &[],
        &chat_body("gpt-4o-mini", "hi", 4),
    )
    .await;
    assert_eq!(resp.status(), 504);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "upstream_timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let mock = MockProcess::start(&["--latency-ms", "800"]);
    let mut serve = gateway(&mock, &[]);
    let url = serve.url("/v1/chat/completions");
    let in_flight = tokio::spawn(async move {
        chat(&url, None, &[], &chat_body("gpt-4o-mini", "hi", 4))
            .await
            .status()
    });
    wait_until(
        Duration::from_secs(5),
        "the request to reach the mock",
        || async { mock.stats().await["totals"]["requests"].as_u64() == Some(1) },
    )
    .await;
    serve.terminate();
    assert_eq!(in_flight.await.unwrap(), 200);
    let status = tokio::task::block_in_place(|| serve.wait_exit(Duration::from_secs(10)));
    assert!(status.success(), "{status:?}");
    let refused = reqwest::Client::new()
        .get(serve.url("/healthz"))
        .send()
        .await;
    assert!(refused.is_err(), "still accepting after SIGTERM");
}

#[tokio::test]
async fn responses_api_passes_through_whole_and_streamed() {
    let mock = MockProcess::start(&["--rpm", "6000", "--tpm", "1000000", "--seed", "5"]);
    let serve = gateway(&mock, &[]);
    let url = serve.url("/v1/responses");
    let body = json!({"model": "gpt-4o-mini", "input": "Say hello", "max_output_tokens": 16});
    let resp = chat(&url, None, &[], &body).await;
    assert_eq!(resp.status(), 200);
    let object: Value = resp.json().await.unwrap();
    assert_eq!(object["object"], "response");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let resp = chat(&url, None, &[], &streamed).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("event: response.created"), "{text}");
    assert!(
        text.contains("event: response.completed") || text.contains("event: response.incomplete"),
        "{text}"
    );
    // The stream's usage (in its final event) reached the access log and the metrics.
    wait_until(
        Duration::from_secs(5),
        "the stream's access log line",
        || async {
            serve
                .log()
                .iter()
                .any(|l| l.contains("\"stream\":true") && !l.contains("\"completion_tokens\":0,"))
        },
    )
    .await;
    let metrics = serve.metrics().await;
    assert!(
        metric(
            &metrics,
            "paceline_tokens_total{client=\"anonymous\",kind=\"completion\"}"
        )
        .unwrap_or(0.0)
            > 0.0,
        "{metrics}"
    );
}

/// `paceline serve` with `args` and the environment minus OPENAI_API_KEY, plus `envs`: it must
/// refuse to start; its exit code and stderr.
fn serve_refused(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_paceline"));
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("PACELINE_LOG")
        .stdin(std::process::Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run paceline serve");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_without_a_key_variable_says_what_to_set() {
    let (code, err) = serve_refused(&[], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with("error: environment variable OPENAI_API_KEY is not set; set it to the provider's API key, or name other variables with --api-key-env K1,K2"),
        "{err}"
    );
}

#[test]
fn a_missing_client_key_variable_names_its_config_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("paceline.toml");
    std::fs::write(
        &config,
        "[[clients]]\nname = \"web\"\nkey_env = \"PACELINE_TEST_NO_SUCH_CLIENT_KEY\"\n",
    )
    .expect("write config");
    let (code, err) = serve_refused(
        &["--config", config.to_str().expect("utf-8 path")],
        &[("OPENAI_API_KEY", "sk-upstream")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with(
            "error: environment variable PACELINE_TEST_NO_SUCH_CLIENT_KEY is not set; set it to \
             the key client \"web\" sends (clients[0].key_env"
        ),
        "{err}"
    );
    assert!(
        err.contains("[[clients]] entry with name = \"web\""),
        "{err}"
    );
}
