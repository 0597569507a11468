//! Anthropic's Messages API (`POST /v1/messages`).
//!
//! - Authentication: `x-api-key: KEY` and `anthropic-version: 2023-06-01` (the version every
//!   current SDK pins; the API refuses a request without it).
//! - Limits: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`
//!   with RFC 3339 resets, and `retry-after` on a 429. Output tokens are admitted from
//!   `max_tokens` and corrected when the answer's `usage` is known, so paceline reserves input
//!   tokens, output tokens (`max_tokens`) and their sum, then settles all three from `usage`
//!   ([`super::usage`]).
//! - Errors: `{"type":"error","error":{"type","message"}}`; 429 `rate_limit_error` pauses the
//!   quota, 529 `overloaded_error` is load (retried with backoff, no pause), 402
//!   `billing_error` and 400 "credit balance is too low" take the key out of rotation.
//! - Streams: `message_start` carries `message.usage.input_tokens`, `message_delta` the
//!   cumulative `usage.output_tokens`, `message_stop` ends it.
//! - Request id: `request-id`.
//!
//! This file holds Anthropic's facts only; the reading rules are shared ([`super::headers`],
//! [`super::usage`]).
//!
//! It must not know how those facts are read (the shared rules), the quota's arithmetic, the engine
//! or any HTTP crate.

use super::headers::{Field, LimitHeader};
use super::usage::{StreamUsageEvent, Usage, UsageFields};
use super::{BatchApi, BatchSpec, Spec};
use crate::api::Endpoint;
use crate::quota::Dimension;
use serde_json::Value;

/// What paceline knows about Anthropic's API.
pub static SPEC: Spec = Spec {
    name: "anthropic",
    semconv_name: "anthropic",
    summary: "Anthropic's Messages API (x-api-key, anthropic-ratelimit-* headers)",
    default_key_env: "ANTHROPIC_API_KEY",
    default_base_url: Some("https://api.anthropic.com/v1"),
    base_url_example: "https://api.anthropic.com (with or without /v1)",
    claims: |host, _| host == "api.anthropic.com",
    speaks: |endpoint| endpoint == Endpoint::Messages,
    auth_headers,
    url: |base_url, path, _, _| url(base_url, path),
    limit_headers: LIMIT_HEADERS,
    retry_hints_ms: &[],
    request_id_header: "request-id",
    usage_fields: UsageFields {
        prompt: &["input_tokens"],
        completion: &["output_tokens"],
    },
    stream_usage_events: &[
        StreamUsageEvent {
            event_type: "message_start",
            merge: message_start_usage,
        },
        StreamUsageEvent {
            event_type: "message_delta",
            merge: message_delta_usage,
        },
    ],
    output_at_completion: true,
    batch: Some(BatchSpec {
        api: BatchApi::Anthropic,
        // https://docs.anthropic.com/en/docs/build-with-claude/batch-processing: 100,000
        // requests or 256 MB per Message Batch, whichever comes first.
        max_requests: 100_000,
        max_bytes: 256 * 1024 * 1024,
        endpoints: &[Endpoint::Messages],
        price_factor: 0.5,
        bare_paths: false,
    }),
};

/// `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`
/// (`tokens`: the most restrictive token limit currently in effect).
const LIMIT_HEADERS: &[LimitHeader] = &[
    LimitHeader::new(
        "anthropic-ratelimit-requests-limit",
        Dimension::Requests,
        Field::Limit,
    ),
    LimitHeader::new(
        "anthropic-ratelimit-requests-remaining",
        Dimension::Requests,
        Field::Remaining,
    ),
    LimitHeader::new(
        "anthropic-ratelimit-requests-reset",
        Dimension::Requests,
        Field::Reset,
    ),
    LimitHeader::new(
        "anthropic-ratelimit-tokens-limit",
        Dimension::Tokens,
        Field::Limit,
    ),
    LimitHeader::new(
        "anthropic-ratelimit-tokens-remaining",
        Dimension::Tokens,
        Field::Remaining,
    ),
    LimitHeader::new(
        "anthropic-ratelimit-tokens-reset",
        Dimension::Tokens,
        Field::Reset,
    ),
    LimitHeader::new(
        "anthropic-ratelimit-input-tokens-limit",
        Dimension::InputTokens,
        Field::Limit,
    ),
    LimitHeader::new(
        "anthropic-ratelimit-input-tokens-remaining",
        Dimension::InputTokens,
        Field::Remaining,
    ),
    LimitHeader::new(
        "anthropic-ratelimit-input-tokens-reset",
        Dimension::InputTokens,
        Field::Reset,
    ),
    LimitHeader::new(
        "anthropic-ratelimit-output-tokens-limit",
        Dimension::OutputTokens,
        Field::Limit,
    ),
    LimitHeader::new(
        "anthropic-ratelimit-output-tokens-remaining",
        Dimension::OutputTokens,
        Field::Remaining,
    ),
    LimitHeader::new(
        "anthropic-ratelimit-output-tokens-reset",
        Dimension::OutputTokens,
        Field::Reset,
    ),
];

/// `message_start`: the input tokens (and the first output tokens) in `message.usage`.
fn message_start_usage(_seen: Option<Usage>, event: &Value) -> Option<Usage> {
    let usage = event.get("message").and_then(|m| m.get("usage"))?;
    let field = |name: &str| usage.get(name).and_then(Value::as_u64);
    Some(Usage {
        prompt: field("input_tokens")?,
        completion: field("output_tokens").unwrap_or(0),
    })
}

/// `message_delta`: the cumulative output tokens in `usage` (and the input tokens, when it
/// restates them; else those seen in `message_start`).
fn message_delta_usage(seen: Option<Usage>, event: &Value) -> Option<Usage> {
    let output = event.get("usage")?.get("output_tokens")?.as_u64()?;
    let input = event
        .get("usage")
        .and_then(|u| u.get("input_tokens"))
        .and_then(Value::as_u64);
    let prompt = input.or(seen.map(|s| s.prompt)).unwrap_or(0);
    Some(Usage {
        prompt,
        completion: output,
    })
}

/// Where an API `path` (`/v1/messages`) goes from `base_url`: the Anthropic SDKs' spelling has
/// no `/v1` (`https://api.anthropic.com`), OpenAI's habit puts it in the base URL; both work.
pub fn url(base_url: &str, path: &str) -> String {
    match base_url.strip_suffix("/v1") {
        Some(root) => format!("{root}{path}"),
        None => format!("{base_url}{path}"),
    }
}

/// The `anthropic-version` paceline sends.
pub const API_VERSION: &str = "2023-06-01";

/// `x-api-key: KEY` and `anthropic-version`.
pub fn auth_headers(secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-api-key", secret.to_string()),
        ("anthropic-version", API_VERSION.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use crate::provider::headers::parse_limit_headers;
    use crate::provider::test_time::{ms, now, secs};
    use crate::provider::usage::{Charge, Usage, merge_stream_usage};
    use crate::quota::{Dimension, DimensionReading, LimitSnapshot};
    use serde_json::json;

    #[test]
    fn anthropic_headers() {
        let headers = [
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", "2024-01-15T14:23:30Z"),
            ("anthropic-ratelimit-tokens-limit", "40000"),
            ("anthropic-ratelimit-tokens-remaining", "12000"),
            (
                "anthropic-ratelimit-tokens-reset",
                "2024-01-15T14:23:01.250Z",
            ),
            ("anthropic-ratelimit-input-tokens-limit", "40000"),
            ("anthropic-ratelimit-input-tokens-remaining", "39000"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2024-01-15T15:24:00+01:00",
            ),
            ("anthropic-ratelimit-output-tokens-limit", "8000"),
            ("anthropic-ratelimit-output-tokens-remaining", "8000"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2024-01-15T14:22:00Z",
            ),
            ("retry-after", "30"),
        ];
        let snapshot = parse_limit_headers(headers, now());
        assert_eq!(
            snapshot,
            LimitSnapshot {
                requests: DimensionReading {
                    limit: Some(50),
                    remaining: Some(0),
                    reset: Some(secs(30)),
                    reset_resolution: Some(secs(1)),
                },
                tokens: DimensionReading {
                    limit: Some(40_000),
                    remaining: Some(12_000),
                    reset: Some(ms(1250)),
                    reset_resolution: Some(ms(1)),
                },
                input_tokens: DimensionReading {
                    limit: Some(40_000),
                    remaining: Some(39_000),
                    reset: Some(secs(60)),
                    reset_resolution: Some(secs(1)),
                },
                output_tokens: DimensionReading {
                    limit: Some(8000),
                    remaining: Some(8000),
                    reset: Some(Duration::ZERO),
                    reset_resolution: Some(secs(1)),
                },
                retry_after: Some(secs(30)),
                retry_after_resolution: Some(secs(1)),
            }
        );
    }

    #[test]
    fn merges_anthropic_stream_usage() {
        let start = json!({"type": "message_start", "message": {"usage": {"input_tokens": 12, "output_tokens": 1}}});
        let seen = merge_stream_usage(None, &start);
        assert_eq!(
            seen,
            Some(Usage {
                prompt: 12,
                completion: 1
            })
        );
        let ping = json!({"type": "ping"});
        assert_eq!(merge_stream_usage(seen, &ping), seen);
        let delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 30}});
        assert_eq!(
            merge_stream_usage(seen, &delta),
            Some(Usage {
                prompt: 12,
                completion: 30
            })
        );
    }

    #[test]
    fn anthropic_output_settles_to_what_was_produced() {
        let usage = Usage {
            prompt: 10,
            completion: 3,
        };
        let openai = Charge {
            max_output_tokens: 100,
            output_at_completion: false,
        };
        assert_eq!(openai.cost(&usage).get(Dimension::Tokens), 110);
        let anthropic = Charge {
            max_output_tokens: 100,
            output_at_completion: true,
        };
        let cost = anthropic.cost(&usage);
        assert_eq!(
            [
                Dimension::Requests,
                Dimension::Tokens,
                Dimension::InputTokens,
                Dimension::OutputTokens
            ]
            .map(|d| cost.get(d)),
            [1, 13, 10, 3]
        );
    }

    #[test]
    fn base_url_with_or_without_v1() {
        for base in ["https://api.anthropic.com", "https://api.anthropic.com/v1"] {
            assert_eq!(
                super::url(base, "/v1/messages"),
                "https://api.anthropic.com/v1/messages"
            );
        }
        assert_eq!(
            super::url("http://127.0.0.1:8089/proxy", "/v1/messages"),
            "http://127.0.0.1:8089/proxy/v1/messages"
        );
    }
    use crate::retry::{self, AttemptResult, Outcome, RetryCause};
    use std::time::{Duration, SystemTime};

    fn outcome(status: u16, kind: &str, message: &str) -> Outcome {
        let body =
            format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"{message}"}}}}"#);
        retry::classify(&AttemptResult::Response {
            status,
            body: body.as_bytes(),
            headers_say_retry: None,
        })
    }

    /// Anthropic's documented errors (error guide) and what each one means for the pacing core.
    #[test]
    fn classification_table() {
        let retries = [
            (
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                RetryCause::RateLimit,
                true,
            ),
            (
                429,
                "rate_limit_error",
                "This request would exceed the rate limit for your organization of 40,000 input tokens per minute.",
                RetryCause::RateLimitInputTokens,
                true,
            ),
            (
                429,
                "rate_limit_error",
                "This request would exceed the rate limit for your organization of 8,000 output tokens per minute.",
                RetryCause::RateLimitOutputTokens,
                true,
            ),
            (
                429,
                "rate_limit_error",
                "This request would exceed the rate limit for your organization of 50 requests per minute.",
                RetryCause::RateLimitRequests,
                true,
            ),
            (
                529,
                "overloaded_error",
                "Overloaded",
                RetryCause::Overloaded,
                false,
            ),
            (
                500,
                "api_error",
                "Internal server error",
                RetryCause::ServerError(500),
                false,
            ),
        ];
        for (status, kind, message, cause, pause) in retries {
            assert_eq!(
                outcome(status, kind, message),
                Outcome::Retry {
                    cause,
                    pause_quota: pause
                },
                "{status} {kind}"
            );
        }
        let finals = [
            (
                400,
                "invalid_request_error",
                "max_tokens: Field required",
                "invalid_request_error",
                false,
            ),
            (
                401,
                "authentication_error",
                "invalid x-api-key",
                "authentication_error",
                true,
            ),
            (
                402,
                "billing_error",
                "payment required",
                "insufficient_quota",
                true,
            ),
            (
                400,
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API.",
                "insufficient_quota",
                true,
            ),
            (
                403,
                "permission_error",
                "no access to this model",
                "permission_denied",
                false,
            ),
            (
                404,
                "not_found_error",
                "model: claude-x",
                "not_found_error",
                false,
            ),
            (
                413,
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes.",
                "request_too_large",
                false,
            ),
        ];
        for (status, kind, message, code, unusable) in finals {
            match outcome(status, kind, message) {
                Outcome::Final { failure, .. } => {
                    assert_eq!(
                        (failure.code(), failure.removes_key()),
                        (code, unusable),
                        "{status} {kind}"
                    );
                }
                other => panic!("{status} {kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn reads_every_dimension_and_the_retry_hint() {
        let snapshot = parse_limit_headers(
            [
                ("anthropic-ratelimit-requests-limit", "50"),
                ("anthropic-ratelimit-input-tokens-limit", "40000"),
                ("anthropic-ratelimit-input-tokens-remaining", "39000"),
                ("anthropic-ratelimit-output-tokens-limit", "8000"),
                ("retry-after", "7"),
            ],
            SystemTime::now(),
        );
        assert_eq!(snapshot.requests.limit, Some(50));
        assert_eq!(snapshot.input_tokens.remaining, Some(39000));
        assert_eq!(snapshot.output_tokens.limit, Some(8000));
        assert_eq!(snapshot.retry_after, Some(Duration::from_secs(7)));
    }
}
