//! OpenAI's API: bearer authentication, paths under a base URL that carries the `/v1`.
//!
//! - Limits: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; limits and remaining
//!   counts are integers, resets Go `time.Duration` strings relative to the answer (`1s`,
//!   `6m0s`, `120ms`, `4m12.172s`; rate-limit guide and values seen in the field). A 429
//!   carries `retry-after-ms` (milliseconds, read first by the SDKs) and `retry-after`.
//! - Request id: `x-request-id`.
//! - Usage: Chat Completions, Completions and Embeddings report `usage.prompt_tokens` and
//!   `usage.completion_tokens`; the Responses API `usage.input_tokens` and
//!   `usage.output_tokens` (in a stream, under `response.usage` of `response.completed`).
//!   The output admitted (`max_tokens × n`) stays charged on tokens/min.
//!
//! This file holds OpenAI's facts only; the reading rules are shared ([`super::headers`],
//! [`super::usage`]).
//!
//! It must not know how those facts are read (the shared rules), the quota's arithmetic, the engine
//! or any HTTP crate.

use super::headers::{Field, LimitHeader};
use super::usage::UsageFields;
use super::{BatchApi, BatchSpec, Spec};
use crate::api::Endpoint;
use crate::quota::Dimension;

/// OpenAI's public API, the base URL used when none is given.
pub const BASE_URL: &str = "https://api.openai.com/v1";

/// What paceline knows about OpenAI's API.
pub static SPEC: Spec = Spec {
    name: "openai",
    semconv_name: "openai",
    summary: "OpenAI's API",
    default_key_env: "OPENAI_API_KEY",
    default_base_url: Some(BASE_URL),
    base_url_example: "https://api.openai.com/v1",
    claims: |host, _| host == "api.openai.com",
    speaks,
    auth_headers,
    url: |base_url, path, _, _| url(base_url, path),
    limit_headers: LIMIT_HEADERS,
    retry_hints_ms: &["retry-after-ms"],
    request_id_header: "x-request-id",
    usage_fields: USAGE_FIELDS,
    stream_usage_events: &[],
    output_at_completion: false,
    batch: Some(BatchSpec {
        api: BatchApi::OpenAi,
        // https://platform.openai.com/docs/guides/batch: 50,000 requests and 200 MB per
        // input file (and 50,000 embedding inputs across an embeddings batch).
        max_requests: 50_000,
        max_bytes: 200 * 1024 * 1024,
        endpoints: &[
            Endpoint::ChatCompletions,
            Endpoint::Completions,
            Endpoint::Embeddings,
            Endpoint::Responses,
        ],
        price_factor: 0.5,
        bare_paths: false,
    }),
};

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (Azure OpenAI and OpenAI-compatible
/// servers reuse the names).
pub const LIMIT_HEADERS: &[LimitHeader] = &[
    LimitHeader::new(
        "x-ratelimit-limit-requests",
        Dimension::Requests,
        Field::Limit,
    ),
    LimitHeader::new(
        "x-ratelimit-remaining-requests",
        Dimension::Requests,
        Field::Remaining,
    ),
    LimitHeader::new(
        "x-ratelimit-reset-requests",
        Dimension::Requests,
        Field::Reset,
    ),
    LimitHeader::new("x-ratelimit-limit-tokens", Dimension::Tokens, Field::Limit),
    LimitHeader::new(
        "x-ratelimit-remaining-tokens",
        Dimension::Tokens,
        Field::Remaining,
    ),
    LimitHeader::new("x-ratelimit-reset-tokens", Dimension::Tokens, Field::Reset),
];

/// `prompt_tokens` / `completion_tokens`, and the Responses API's `input_tokens` /
/// `output_tokens`.
pub const USAGE_FIELDS: UsageFields = UsageFields {
    prompt: &["prompt_tokens", "input_tokens"],
    completion: &["completion_tokens", "output_tokens"],
};

/// Every OpenAI endpoint paceline sends: all but Anthropic's Messages API.
pub fn speaks(endpoint: Endpoint) -> bool {
    endpoint != Endpoint::Messages
}

/// `Authorization: Bearer KEY`.
pub fn auth_headers(secret: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {secret}"))]
}

/// `{base}{path without /v1}`: the base URL (`https://api.openai.com/v1`) carries the `/v1`.
pub fn url(base_url: &str, path: &str) -> String {
    let tail = path.strip_prefix("/v1").unwrap_or(path);
    format!("{base_url}{tail}")
}

#[cfg(test)]
mod tests {
    use crate::provider::headers::parse_limit_headers;
    use crate::provider::test_time::{ms, now, secs};
    use crate::quota::{DimensionReading, LimitSnapshot};
    use crate::retry::{self, AttemptResult, Outcome, RetryCause};

    #[test]
    fn openai_headers() {
        let headers = [
            ("x-ratelimit-limit-requests", "5000"),
            ("x-ratelimit-limit-tokens", "1500000"),
            ("x-ratelimit-limit-tokens_usage_based", "1500000"),
            ("x-ratelimit-remaining-requests", "4999"),
            ("x-ratelimit-remaining-tokens", "1495621"),
            ("x-ratelimit-remaining-tokens_usage_based", "1"),
            ("x-ratelimit-reset-requests", "12ms"),
            ("x-ratelimit-reset-tokens", "6m0s"),
            ("x-ratelimit-reset-tokens_usage_based", "1h"),
            ("content-type", "application/json"),
        ];
        let snapshot = parse_limit_headers(headers, now());
        assert_eq!(
            snapshot,
            LimitSnapshot {
                requests: DimensionReading {
                    limit: Some(5000),
                    remaining: Some(4999),
                    reset: Some(ms(12)),
                    reset_resolution: Some(ms(1)),
                },
                tokens: DimensionReading {
                    limit: Some(1_500_000),
                    remaining: Some(1_495_621),
                    reset: Some(secs(360)),
                    reset_resolution: Some(secs(1)),
                },
                ..LimitSnapshot::default()
            }
        );
    }

    fn outcome(status: u16, body: &str) -> Outcome {
        retry::classify(&AttemptResult::Response {
            status,
            body: body.as_bytes(),
            headers_say_retry: None,
        })
    }

    /// OpenAI's documented error answers and what each one means for the pacing core.
    #[test]
    fn classification_table() {
        let rate = |kind: &str| {
            format!(
                r#"{{"error":{{"message":"Rate limit reached. Please try again in 1s.","type":"{kind}","code":"rate_limit_exceeded"}}}}"#
            )
        };
        let retries = [
            (429, rate("requests"), RetryCause::RateLimitRequests, true),
            (429, rate("tokens"), RetryCause::RateLimitTokens, true),
            (500, r#"{"error":{"message":"server error","type":"server_error"}}"#.into(), RetryCause::ServerError(500), false),
            (503, r#"{"error":{"message":"The engine is currently overloaded","type":"server_error"}}"#.into(), RetryCause::Overloaded, false),
            (408, String::new(), RetryCause::RequestTimeout, false),
            (409, String::new(), RetryCause::Conflict, false),
        ];
        for (status, body, cause, pause) in retries {
            assert_eq!(
                outcome(status, &body),
                Outcome::Retry {
                    cause,
                    pause_quota: pause
                },
                "{status} {body}"
            );
        }
        let finals = [
            (
                429,
                r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
                "insufficient_quota",
                true,
            ),
            (
                429,
                r#"{"error":{"message":"Request too large for gpt-4o. Limit 30000, Requested 30601.","type":"tokens","code":"rate_limit_exceeded"}}"#,
                "request_too_large",
                false,
            ),
            (
                401,
                r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
                "authentication_error",
                true,
            ),
            (
                400,
                r#"{"error":{"message":"bad","type":"invalid_request_error","code":null}}"#,
                "invalid_request_error",
                false,
            ),
            (
                404,
                r#"{"error":{"message":"The model does not exist","type":"invalid_request_error","code":"model_not_found"}}"#,
                "model_not_found",
                false,
            ),
        ];
        for (status, body, code, unusable) in finals {
            match outcome(status, body) {
                Outcome::Final { failure, .. } => {
                    assert_eq!(
                        (failure.code(), failure.removes_key()),
                        (code, unusable),
                        "{status} {body}"
                    );
                }
                other => panic!("{status} {body}: {other:?}"),
            }
        }
    }
}
