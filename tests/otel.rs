//! OpenTelemetry traces, end to end over loopback: a receiver in this test decodes what
//! `paceline run` and `paceline serve` export over OTLP/HTTP (the `opentelemetry-proto` types),
//! in front of `paceline mock` failing 5 % of requests with a 500. Every request has its span,
//! every attempt its child span (a retried request two or more), with the conventions'
//! attributes; a client's `traceparent` is the gateway's parent and goes upstream naming the
//! attempt. With the receiver down nothing waits and the spans are counted as dropped.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::job::{Workdir, paceline, s, stderr};
use common::mock::MockProcess;
use common::serve::ServeProcess;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One span as received, with its attributes.
#[derive(Debug, Clone)]
struct Got {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    error: bool,
    service: String,
    attrs: HashMap<String, Any>,
}

impl Got {
    fn str(&self, key: &str) -> &str {
        match self.attrs.get(key) {
            Some(Any::StringValue(v)) => v,
            other => panic!("{}: attribute {key} is {other:?}", self.name),
        }
    }

    fn int(&self, key: &str) -> i64 {
        match self.attrs.get(key) {
            Some(Any::IntValue(v)) => *v,
            other => panic!("{}: attribute {key} is {other:?}", self.name),
        }
    }

    fn float(&self, key: &str) -> f64 {
        match self.attrs.get(key) {
            Some(Any::DoubleValue(v)) => *v,
            other => panic!("{}: attribute {key} is {other:?}", self.name),
        }
    }
}

type Spans = Arc<Mutex<Vec<Got>>>;

/// An OTLP/HTTP receiver on loopback: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`.
async fn receiver() -> (String, Spans) {
    async fn traces(State(spans): State<Spans>, headers: HeaderMap, body: Bytes) -> Response {
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/x-protobuf")
        );
        let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
        let mut got = spans.lock().unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Any::StringValue(name) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                got.push(Got {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    error: span
                        .status
                        .is_some_and(|s| s.code == SpanStatus::Error as i32),
                    service: service.clone(),
                    attrs: span
                        .attributes
                        .into_iter()
                        .filter_map(|kv| Some((kv.key, kv.value?.value?)))
                        .collect(),
                });
            }
        }
        let answer = ExportTraceServiceResponse::default().encode_to_vec();
        (
            [("content-type", "application/x-protobuf")],
            Bytes::from(answer),
        )
            .into_response()
    }
    let spans = Spans::default();
    let app = Router::new()
        .route("/v1/traces", axum::routing::post(traces))
        .with_state(Arc::clone(&spans));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Wait until `done` holds for the spans received (at most 30 s).
async fn received(spans: &Spans, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let got = spans.lock().unwrap().clone();
        if done(&got) {
            return got;
        }
        assert!(
            Instant::now() < until,
            "{what}: not received in 30 s ({} spans)",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The request spans (by span id) and, by parent span id, the attempt spans in order.
fn by_request(
    spans: &[Got],
    is_request: impl Fn(&Got) -> bool,
) -> (HashMap<String, &Got>, HashMap<String, Vec<&Got>>) {
    let requests: HashMap<String, &Got> = spans
        .iter()
        .filter(|s| is_request(s))
        .map(|s| (s.span_id.clone(), s))
        .collect();
    let mut attempts: HashMap<String, Vec<&Got>> = HashMap::new();
    for span in spans.iter().filter(|s| s.kind == SpanKind::Client as i32) {
        attempts.entry(span.parent.clone()).or_default().push(span);
    }
    for list in attempts.values_mut() {
        list.sort_by_key(|s| s.int("paceline.attempt"));
    }
    (requests, attempts)
}

/// What every attempt span says, and how its siblings number it.
fn check_attempts(request: &Got, attempts: &[&Got]) {
    let n = request.int("paceline.attempts");
    assert_eq!(
        attempts.len() as i64,
        n,
        "attempt spans of {}",
        request.name
    );
    for (i, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.trace_id, request.trace_id);
        assert_eq!(attempt.int("paceline.attempt"), i as i64 + 1);
        assert_eq!(attempt.name, "chat gpt-4o-mini");
        assert_eq!(attempt.str("gen_ai.operation.name"), "chat");
        assert_eq!(attempt.str("gen_ai.request.model"), "gpt-4o-mini");
        assert_eq!(attempt.str("gen_ai.provider.name"), "openai_compatible");
        assert_eq!(attempt.str("http.request.method"), "POST");
        assert_eq!(attempt.str("server.address"), "127.0.0.1");
        assert!(attempt.float("paceline.wait.quota") >= 0.0);
        assert!(attempt.float("paceline.wait.concurrency") >= 0.0);
        let reason = attempt.str("paceline.wait.reason");
        assert!(
            ["none", "rate", "concurrency", "paused"].contains(&reason),
            "{reason}"
        );
        let last = i + 1 == attempts.len();
        let status = attempt.int("http.response.status_code");
        if last {
            assert_eq!(status, 200, "the last attempt succeeded");
            assert!(!attempt.error);
        } else {
            assert_eq!(status, 500, "only the mock's 500s are retried here");
            assert!(attempt.error, "a failed attempt's span is an error");
            assert_eq!(attempt.str("error.type"), "500");
            assert_eq!(attempt.str("paceline.decision"), "retry");
        }
        if i > 0 {
            assert_eq!(attempt.int("http.request.resend_count"), i as i64);
            assert!(
                attempt.float("paceline.wait.backoff") > 0.0,
                "a retry waited for its backoff"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exports_a_span_per_request_and_per_attempt() {
    let (url, spans) = receiver().await;
    let mock = MockProcess::start(&["--fail-500", "0.05", "--seed", "16"]);
    let dir = Workdir::new();
    let n = 200;
    let input = dir.batch("in.jsonl", n);
    let output = dir.path("out.jsonl");
    let out = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&output),
        "--base-url",
        &mock.base_url(),
        "--otlp-endpoint",
        &url,
        "--quiet",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");

    let got = spans.lock().unwrap().clone();
    let (requests, attempts) = by_request(&got, |s| s.kind == SpanKind::Internal as i32);
    assert_eq!(requests.len(), n, "one span per request");
    let ids: HashSet<&str> = requests
        .values()
        .map(|r| r.str("paceline.custom_id"))
        .collect();
    assert_eq!(ids.len(), n, "every custom_id once");
    let attempt_count: usize = attempts.values().map(Vec::len).sum();
    assert_eq!(
        got.len(),
        n + attempt_count,
        "nothing but requests and attempts"
    );
    assert!(
        err.contains(&format!(
            "traces          {} spans exported to {url}/v1/traces, 0 dropped",
            got.len()
        )),
        "{err}"
    );
    let mut retried = 0;
    for request in requests.values() {
        assert_eq!(request.service, "paceline");
        assert!(request.parent.is_empty(), "a run's request is a root span");
        assert_eq!(request.name, "chat gpt-4o-mini");
        assert_eq!(request.str("paceline.outcome"), "succeeded");
        assert_eq!(request.int("http.response.status_code"), 200);
        assert!(request.int("gen_ai.usage.input_tokens") > 0);
        assert!(request.int("gen_ai.usage.output_tokens") > 0);
        assert!(request.float("paceline.wait.queue") >= 0.0);
        let list = attempts
            .get(&request.span_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        check_attempts(request, list);
        for attempt in list {
            assert_eq!(
                attempt.str("paceline.custom_id"),
                request.str("paceline.custom_id")
            );
        }
        retried += usize::from(list.len() > 1);
    }
    assert!(retried > 0, "5 % of 500s over {n} requests retried some");
}

/// A proxy between the gateway and the mock that keeps the `traceparent` of every request.
async fn recording_proxy(mock: String) -> (String, Arc<Mutex<Vec<String>>>) {
    type Seen = Arc<Mutex<Vec<String>>>;
    async fn forward(
        State((mock, seen)): State<(String, Seen)>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        if let Some(parent) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
            seen.lock().unwrap().push(parent.to_string());
        }
        let mut request = reqwest::Client::new()
            .post(format!("{mock}{}", uri.path()))
            .body(body);
        for name in ["authorization", "content-type"] {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value.as_bytes());
            }
        }
        let answer = request.send().await.expect("the mock answers");
        let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
        let mut out = HeaderMap::new();
        for (name, value) in answer.headers() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_str().as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) && name != "content-length"
                && name != "transfer-encoding"
            {
                out.insert(name, value);
            }
        }
        let body = answer.bytes().await.expect("the mock's body");
        (status, out, body).into_response()
    }
    let seen = Seen::default();
    let app = Router::new()
        .fallback(forward)
        .with_state((mock, Arc::clone(&seen)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_the_clients_trace_and_passes_it_upstream() {
    let (url, spans) = receiver().await;
    let mock = MockProcess::start(&["--fail-500", "0.05", "--seed", "61"]);
    let (proxy, seen) = recording_proxy(format!("http://{}", mock.addr())).await;
    let gateway = ServeProcess::start(
        &[
            "--base-url",
            &proxy,
            "--api-key-env",
            "UPSTREAM_KEY",
            "--otlp-endpoint",
            &url,
        ],
        &[
            ("UPSTREAM_KEY", "sk-up"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let n = 120;
    let client = reqwest::Client::new();
    let mut traces = HashMap::new();
    let mut sent = Vec::new();
    for i in 0..n {
        let trace_id = format!("{:032x}", 0x1600_0000_u128 + i);
        let parent = format!("{:016x}", 0xabc0_0000_u64 + i as u64);
        traces.insert(trace_id.clone(), parent.clone());
        let request = client
            .post(gateway.url("/v1/chat/completions"))
            .header("traceparent", format!("00-{trace_id}-{parent}-01"))
            .json(&common::mock::chat_body("gpt-4o-mini", "hi", 8))
            .send();
        sent.push(request);
    }
    for answer in futures::future::join_all(sent).await {
        assert_eq!(answer.expect("the gateway answers").status(), 200);
    }
    let got = received(&spans, "a span per request and per attempt", |all| {
        let servers: Vec<&Got> = all
            .iter()
            .filter(|s| s.kind == SpanKind::Server as i32)
            .collect();
        let wanted: i64 = servers.iter().map(|s| s.int("paceline.attempts")).sum();
        let have = all
            .iter()
            .filter(|s| s.kind == SpanKind::Client as i32)
            .count();
        servers.len() == n as usize && have as i64 == wanted
    })
    .await;
    let (requests, attempts) = by_request(&got, |s| s.kind == SpanKind::Server as i32);
    assert_eq!(requests.len(), n as usize);
    let upstream: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
    let mut retried = 0;
    for request in requests.values() {
        assert_eq!(
            traces.get(&request.trace_id),
            Some(&request.parent),
            "the request span is the child of the client's span"
        );
        assert_eq!(request.name, "POST /v1/chat/completions");
        assert_eq!(request.str("http.route"), "/v1/chat/completions");
        assert_eq!(request.int("http.response.status_code"), 200);
        assert_eq!(request.str("paceline.client"), "anonymous");
        assert_eq!(request.str("paceline.priority"), "interactive");
        assert_eq!(request.str("gen_ai.request.model"), "gpt-4o-mini");
        assert!(request.int("gen_ai.usage.output_tokens") > 0);
        assert!(request.float("paceline.wait.queue") >= 0.0);
        let list = attempts
            .get(&request.span_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        check_attempts(request, list);
        for attempt in list {
            let passed = format!("00-{}-{}-01", attempt.trace_id, attempt.span_id);
            assert!(
                upstream.contains(&passed),
                "attempt {passed} went upstream with its traceparent"
            );
        }
        retried += usize::from(list.len() > 1);
    }
    assert!(retried > 0, "5 % of 500s over {n} requests retried some");
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("paceline_trace_spans_dropped_total 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_blocks_nothing_and_its_spans_are_counted() {
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let mock = MockProcess::start(&[]);
    let dir = Workdir::new();
    let n = 100;
    let input = dir.batch("in.jsonl", n);
    let started = Instant::now();
    let out = paceline(&[
        "run",
        s(&input),
        "-o",
        s(&dir.path("out.jsonl")),
        "--base-url",
        &mock.base_url(),
        "--otlp-endpoint",
        &dead,
        "--quiet",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the run waited for the dead collector: {:?}",
        started.elapsed()
    );
    assert!(
        err.contains(&format!(
            "traces          0 spans exported to {dead}/v1/traces, {} dropped",
            2 * n
        )),
        "every request and attempt span dropped and counted: {err}"
    );

    let gateway = ServeProcess::start(
        &[
            "--base-url",
            &mock.base_url(),
            "--api-key-env",
            "UPSTREAM_KEY",
            "--otlp-endpoint",
            &dead,
        ],
        &[
            ("UPSTREAM_KEY", "sk-up"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let answer = client
            .post(gateway.url("/v1/chat/completions"))
            .json(&common::mock::chat_body("gpt-4o-mini", "hi", 8))
            .send()
            .await
            .expect("the gateway answers");
        assert_eq!(answer.status(), 200);
    }
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = gateway.metrics().await;
        // Each request is one server span and one attempt span.
        if metrics.contains("paceline_trace_spans_dropped_total 40") {
            break;
        }
        assert!(
            Instant::now() < until,
            "dropped spans not counted: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
