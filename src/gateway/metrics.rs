//! Prometheus metrics, recorded with the `metrics` crate and rendered on `GET /metrics` from the
//! `metrics-exporter-prometheus` recorder's handle (no listener of its own).
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | `paceline_requests_total` | counter | `route`, `status`, `client` |
//! | `paceline_queue_depth` | gauge | `priority` |
//! | `paceline_queue_wait_seconds` | histogram | `priority` |
//! | `paceline_upstream_attempts_total` | counter | `status` (`error` without an answer) |
//! | `paceline_upstream_latency_seconds` | histogram | |
//! | `paceline_retries_total` | counter | `cause` |
//! | `paceline_upstream_rate_limited_total` | counter | (429s received from the provider) |
//! | `paceline_client_rate_limited_total` | counter | `client` (429s sent to clients) |
//! | `paceline_tokens_total` | counter | `client`, `kind` (`prompt`, `completion`) |
//! | `paceline_quota_remaining` | gauge | `key` (fingerprint), `model`, `dimension` |
//! | `paceline_trace_spans_exported_total` | counter | (with `--otlp-endpoint`: spans the collector accepted) |
//! | `paceline_trace_spans_dropped_total` | counter | (with `--otlp-endpoint`: spans lost to a full queue or a failed export) |
//!
//! It must not know the routes or the engine's workings: it is told what happened (requests,
//! attempt records, queue depths) and reads the key pool's quotas for the gauges.

use crate::engine::{AttemptRecord, Decision, Priority};
use crate::quota::Dimension;
use crate::telemetry::otlp::Tracer;
use crate::upstream::KeyPool;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The process-wide recorder (installed once; `None` if another recorder was installed first).
fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Install the recorder (idempotent). Call before recording anything.
pub fn install() {
    let _ = handle();
}

/// Fold recorded histogram samples into their buckets every few seconds, forever. The recorder
/// keeps each sample until upkeep runs; a scrape runs it, but a gateway nobody scrapes would
/// otherwise hold every sample (8 bytes a request per histogram) for good.
pub async fn upkeep() {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    loop {
        every.tick().await;
        if let Some(handle) = handle() {
            handle.run_upkeep();
        }
    }
}

/// The exposition text: everything recorded, plus gauges read now from the key pool (and the
/// span counts of `tracer`, when traces are exported).
pub fn render(pool: &KeyPool, queue: [usize; 2], tracer: Option<&Tracer>) -> String {
    if let Some(tracer) = tracer {
        metrics::counter!("paceline_trace_spans_exported_total").absolute(tracer.exported());
        metrics::counter!("paceline_trace_spans_dropped_total").absolute(tracer.dropped());
    }
    let now = Instant::now();
    for (key, model, quota) in pool.quotas() {
        for (d, available) in Dimension::ALL.iter().zip(quota.available(now)) {
            if let Some(available) = available {
                metrics::gauge!("paceline_quota_remaining",
                    "key" => key.clone(), "model" => model.clone(), "dimension" => d.to_string())
                .set(available as f64);
            }
        }
    }
    for p in Priority::ALL {
        metrics::gauge!("paceline_queue_depth", "priority" => p.as_str())
            .set(queue[p.index()] as f64);
    }
    match handle() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

/// One request answered (for a stream: when it ends).
pub fn request(route: &'static str, status: u16, client: &Arc<str>) {
    metrics::counter!("paceline_requests_total",
        "route" => route, "status" => status.to_string(), "client" => client.to_string())
    .increment(1);
    if status == 429 {
        metrics::counter!("paceline_client_rate_limited_total", "client" => client.to_string())
            .increment(1);
    }
}

/// Time a request waited before its last attempt went out.
pub fn queue_wait(priority: Priority, waited: Duration) {
    metrics::histogram!("paceline_queue_wait_seconds", "priority" => priority.as_str())
        .record(waited.as_secs_f64());
}

/// Tokens the provider reported for a client's request.
pub fn tokens(client: &Arc<str>, prompt: u64, completion: u64) {
    metrics::counter!("paceline_tokens_total", "client" => client.to_string(), "kind" => "prompt")
        .increment(prompt);
    metrics::counter!("paceline_tokens_total", "client" => client.to_string(), "kind" => "completion").increment(completion);
}

/// One upstream attempt, as the engine reported it.
pub fn attempt(record: &AttemptRecord) {
    let status = record
        .status
        .map_or_else(|| "error".to_string(), |s| s.to_string());
    metrics::counter!("paceline_upstream_attempts_total", "status" => status).increment(1);
    metrics::histogram!("paceline_upstream_latency_seconds").record(record.latency.as_secs_f64());
    if record.status == Some(429) {
        metrics::counter!("paceline_upstream_rate_limited_total").increment(1);
    }
    if record.decision == Decision::Retry
        && let Some(cause) = &record.cause
    {
        metrics::counter!("paceline_retries_total", "cause" => cause.clone()).increment(1);
    }
}
