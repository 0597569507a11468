//! The engine's spans (with `--otlp-endpoint`): one per upstream attempt, a child of its
//! request's span, and — for a job that is a whole request of its own (`run`) — the request's
//! span when the job ends. A span says what OpenTelemetry's conventions for HTTP clients and
//! generative-AI calls name (`http.*`, `server.*`, `gen_ai.*`), plus paceline's waits
//! (`paceline.*`, in seconds).
//!
//! It must not know where spans go ([`crate::telemetry::otlp`]) nor how an attempt is sent or
//! judged: it is handed the attempt's record and the request's end.

use super::{AttemptRecord, Decision, Finished, Job, Priority, Verdict, Waits};
use crate::api::Endpoint;
use crate::provider::usage::Usage;
use crate::telemetry::otlp::{Record, Span};
use crate::upstream::Upstream;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use std::time::{Duration, SystemTime};

/// A wait shorter than this is no wait (the dispatcher's own hand-offs).
const NO_WAIT: Duration = Duration::from_millis(1);

/// How a job is traced.
#[derive(Debug)]
pub enum JobTrace {
    /// The job is a whole request (`run`): the engine records the request's span, begun at
    /// `start`, when the job ends.
    Request {
        /// The request's span.
        span: Span,
        /// When the request began (the job was made).
        start: SystemTime,
    },
    /// The job serves a request whose span its caller records (the gateway, once the answer is
    /// complete); the engine records the attempts under it.
    Within(Span),
}

impl JobTrace {
    /// The request's span, parent of every attempt's.
    pub fn span(&self) -> &Span {
        match self {
            JobTrace::Request { span, .. } | JobTrace::Within(span) => span,
        }
    }
}

/// The span of `job`'s next attempt, if the job is traced.
pub(super) fn attempt_span(job: &Job) -> Option<Span> {
    job.trace.as_ref().map(|trace| trace.span().child())
}

/// What made an attempt wait before it went: a 429's pause of the key's quota, the quota's
/// rate, or the in-flight bound and the jobs ahead of it (whichever was longer), or nothing.
fn wait_reason(waits: &Waits) -> &'static str {
    if waits.paused {
        "paused"
    } else if waits.quota < NO_WAIT && waits.queued < NO_WAIT {
        "none"
    } else if waits.quota >= waits.queued {
        "rate"
    } else {
        "concurrency"
    }
}

/// The attributes every span of a call to `model` on `endpoint` carries.
fn gen_ai(endpoint: Endpoint, upstream: &Upstream, model: &str) -> [KeyValue; 4] {
    let provider = upstream.provider().spec().semconv_name;
    [
        KeyValue::new("gen_ai.operation.name", endpoint.operation_name()),
        KeyValue::new("gen_ai.provider.name", provider),
        // The name before `gen_ai.provider.name` (conventions up to 1.36), still the one many
        // backends read.
        KeyValue::new("gen_ai.system", provider),
        KeyValue::new("gen_ai.request.model", model.to_string()),
    ]
}

/// The attributes of an answer's token counts (the request's span, in `run` and in the
/// gateway).
pub fn usage_attributes(usage: Usage) -> [KeyValue; 2] {
    [
        KeyValue::new("gen_ai.usage.input_tokens", usage.prompt as i64),
        KeyValue::new("gen_ai.usage.output_tokens", usage.completion as i64),
    ]
}

/// Record an attempt's span: `model` as sent to `upstream`, what `record` says of its answer,
/// and what it waited for.
pub(super) fn record_attempt(
    span: &Span,
    job: &Job,
    upstream: &Upstream,
    model: &str,
    record: &AttemptRecord,
    waits: &Waits,
) {
    span.record(|| {
        let mut attributes = Vec::with_capacity(24);
        attributes.extend(gen_ai(job.endpoint, upstream, model));
        attributes.push(KeyValue::new("http.request.method", "POST"));
        if let Ok(uri) = upstream.base_url().parse::<http::Uri>() {
            if let Some(host) = uri.host() {
                attributes.push(KeyValue::new("server.address", host.to_string()));
            }
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        if let Some(status) = record.status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if record.attempt > 1 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(record.attempt - 1),
            ));
        }
        let failed = record.decision != Decision::Succeeded;
        if failed {
            let error_type = match (record.status, &record.cause) {
                (Some(status), _) if status >= 400 => status.to_string(),
                (_, Some(cause)) => cause.clone(),
                _ => "_OTHER".to_string(),
            };
            attributes.push(KeyValue::new("error.type", error_type));
        }
        attributes.extend([
            KeyValue::new("paceline.custom_id", record.custom_id.clone()),
            KeyValue::new("paceline.attempt", i64::from(record.attempt)),
            KeyValue::new("paceline.key", record.key.clone()),
            KeyValue::new("paceline.tokens", record.tokens as i64),
            KeyValue::new("paceline.wait.reason", wait_reason(waits)),
            KeyValue::new("paceline.wait.quota", waits.quota.as_secs_f64()),
            KeyValue::new("paceline.wait.paused", waits.paused),
            KeyValue::new("paceline.wait.concurrency", waits.queued.as_secs_f64()),
            KeyValue::new("paceline.wait.backoff", waits.backoff.as_secs_f64()),
            KeyValue::new("paceline.decision", record.decision.as_str()),
        ]);
        if let Some(cause) = &record.cause {
            attributes.push(KeyValue::new("paceline.cause", cause.clone()));
        }
        if record.decision == Decision::Retry {
            attributes.push(KeyValue::new(
                "paceline.retry_in",
                record.retry_in.as_secs_f64(),
            ));
        }
        Record {
            name: format!("{} {model}", job.endpoint.operation_name()).into(),
            kind: SpanKind::Client,
            start: record.sent_at,
            end: record.sent_at + record.latency,
            attributes,
            error: failed.then(|| record.cause.clone().unwrap_or_else(|| "failed".into())),
        }
    });
}

/// What a request was, for its span.
pub(super) struct Request<'a> {
    pub endpoint: Endpoint,
    pub model: &'a str,
    pub priority: Priority,
}

/// Record the span of a request that ended as `finished`, when the job was the whole request
/// ([`JobTrace::Request`]).
pub(super) fn record_request(
    trace: JobTrace,
    request: Request<'_>,
    upstream: &Upstream,
    finished: &Finished,
) {
    let JobTrace::Request { span, start } = trace else {
        return;
    };
    span.record(|| {
        let mut attributes = Vec::with_capacity(16);
        attributes.extend(gen_ai(request.endpoint, upstream, request.model));
        attributes.extend([
            KeyValue::new("paceline.custom_id", finished.custom_id.clone()),
            KeyValue::new("paceline.priority", request.priority.as_str()),
            KeyValue::new("paceline.attempts", i64::from(finished.attempts)),
            KeyValue::new("paceline.wait.queue", finished.waited.as_secs_f64()),
        ]);
        let (answer, error) = match &finished.verdict {
            Verdict::Succeeded(answer) => {
                attributes.push(KeyValue::new("paceline.outcome", "succeeded"));
                (Some(answer), None)
            }
            Verdict::Failed {
                answer,
                code,
                message,
            } => {
                attributes.push(KeyValue::new("paceline.outcome", code.code().to_string()));
                attributes.push(KeyValue::new("error.type", code.code().to_string()));
                (answer.as_ref(), Some(message.clone()))
            }
        };
        if let Some(answer) = answer {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(answer.status),
            ));
            if let Some(usage) = answer.usage {
                attributes.extend(usage_attributes(usage));
            }
        }
        Record {
            name: format!("{} {}", request.endpoint.operation_name(), request.model).into(),
            kind: SpanKind::Internal,
            start,
            end: SystemTime::now(),
            attributes,
            error,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_wait_names_the_reason() {
        let ms = Duration::from_millis;
        let waits = |quota, queued, paused| Waits {
            quota: ms(quota),
            queued: ms(queued),
            paused,
            backoff: Duration::ZERO,
        };
        assert_eq!(wait_reason(&waits(0, 0, false)), "none");
        assert_eq!(wait_reason(&waits(40, 3, false)), "rate");
        assert_eq!(wait_reason(&waits(2, 30, false)), "concurrency");
        assert_eq!(wait_reason(&waits(2, 30, true)), "paused");
    }
}
