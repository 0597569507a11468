//! The access log: one JSON event per request (target `paceline::access`), written when the
//! answer is complete — for a stream, when it ends. It names the client, never a key: no
//! header, body or key of the request or of the provider is logged. The same moment feeds the
//! request metrics.
//!
//! With traces exported, the same moment records the request's span (a server span, parent of
//! its attempts' spans, child of the client's `traceparent` if it sent one).
//!
//! It must not know the routes or the engine's workings: it is told what happened.

use super::metrics;
use crate::api::Endpoint;
use crate::engine::Priority;
use crate::engine::trace::usage_attributes;
use crate::provider::usage::Usage;
use crate::telemetry::otlp::{Record, Span, Tracer, parent_from_headers};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// What is known about one request, filled in as it goes.
#[derive(Debug)]
pub struct RequestLog {
    started: Instant,
    /// When its wait for capacity began (the deadline counts from then), if it did.
    waiting_since: Option<Instant>,
    /// Route path (`/v1/chat/completions`, ...).
    pub route: &'static str,
    /// Client name.
    pub client: Arc<str>,
    /// The request's priority.
    pub priority: Priority,
    /// The model asked for, if any.
    pub model: String,
    /// Whether it asked for a stream.
    pub stream: bool,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Time waited before the last attempt went out.
    pub queued: Duration,
    /// Usage the provider reported.
    pub usage: Option<Usage>,
    /// The request's span and when it began, when traces are exported.
    trace: Option<(Span, SystemTime)>,
}

impl RequestLog {
    /// Start logging a request to `route` from `client`.
    pub fn new(route: &'static str, client: Arc<str>) -> Self {
        RequestLog {
            started: Instant::now(),
            waiting_since: None,
            route,
            client,
            priority: Priority::Interactive,
            model: String::new(),
            stream: false,
            attempts: 0,
            queued: Duration::ZERO,
            usage: None,
            trace: None,
        }
    }

    /// Trace the request with `tracer`, if there is one, as a child of the trace context in
    /// the client's `headers`.
    pub fn traced(mut self, tracer: Option<&Tracer>, headers: &http::HeaderMap) -> Self {
        self.trace = tracer.map(|t| (t.span(parent_from_headers(headers)), SystemTime::now()));
        self
    }

    /// The request's span, parent of its attempts', when it is traced.
    pub fn span(&self) -> Option<&Span> {
        self.trace.as_ref().map(|(span, _)| span)
    }

    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Its wait for capacity (client quota, queue, upstream quota) begins now.
    pub fn waiting_from(&mut self, at: Instant) {
        self.waiting_since = Some(at);
    }

    /// How long it has waited for capacity so far: zero if its wait has not begun (refused
    /// before it, a 401 or a 400).
    pub fn waited_so_far(&self) -> Duration {
        self.waiting_since
            .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Write the event and count the request: `status` sent, `outcome` a short word (`ok`, an
    /// error code, `client_gone`, `upstream_cut`).
    pub fn finish(self, status: u16, outcome: &str) {
        let usage = self.usage.unwrap_or_default();
        tracing::info!(
            target: "paceline::access",
            route = self.route,
            status,
            outcome,
            client = %self.client,
            model = %self.model,
            priority = self.priority.as_str(),
            stream = self.stream,
            attempts = self.attempts,
            queue_ms = self.queued.as_millis() as u64,
            duration_ms = self.started.elapsed().as_millis() as u64,
            prompt_tokens = usage.prompt,
            completion_tokens = usage.completion,
            "request"
        );
        metrics::request(self.route, status, &self.client);
        if self.usage.is_some() {
            metrics::tokens(&self.client, usage.prompt, usage.completion);
        }
        if let Some((span, start)) = &self.trace {
            self.record_span(span, *start, status, outcome);
        }
    }

    /// The request's span: HTTP server conventions, the generative-AI call's, and paceline's
    /// (client, priority, queue wait, attempts). A server span is an error for a 5xx only.
    fn record_span(&self, span: &Span, start: SystemTime, status: u16, outcome: &str) {
        span.record(|| {
            let mut attributes = vec![
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("http.route", self.route),
                KeyValue::new("url.path", self.route),
                KeyValue::new("http.response.status_code", i64::from(status)),
                KeyValue::new("paceline.client", self.client.to_string()),
                KeyValue::new("paceline.priority", self.priority.as_str()),
                KeyValue::new("paceline.stream", self.stream),
                KeyValue::new("paceline.attempts", i64::from(self.attempts)),
                KeyValue::new("paceline.wait.queue", self.queued.as_secs_f64()),
                KeyValue::new("paceline.outcome", outcome.to_string()),
            ];
            if let Some(endpoint) = Endpoint::from_path(self.route) {
                attributes.push(KeyValue::new(
                    "gen_ai.operation.name",
                    endpoint.operation_name(),
                ));
            }
            if !self.model.is_empty() {
                attributes.push(KeyValue::new("gen_ai.request.model", self.model.clone()));
            }
            if let Some(usage) = self.usage {
                attributes.extend(usage_attributes(usage));
            }
            let error = (status >= 500).then(|| outcome.to_string());
            if error.is_some() {
                attributes.push(KeyValue::new("error.type", status.to_string()));
            }
            Record {
                name: format!("POST {}", self.route).into(),
                kind: SpanKind::Server,
                start,
                end: SystemTime::now(),
                attributes,
                error,
            }
        });
    }
}
