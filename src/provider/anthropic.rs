//! Anthropic's Messages API (`POST /v1/messages`).
//!
//! - Authentication: `x-api-key: KEY` and `anthropic-version: 2023-06-01` (the version every
//!   current SDK pins; the API refuses a request without it).
//! - Limits: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`
//!   with RFC 3339 resets, and `retry-after` on a 429. Output tokens are admitted from
//!   `max_tokens` and corrected when the answer's `usage` is known, so paceline reserves input
//!   tokens, output tokens (`max_tokens`) and their sum, then settles all three from `usage`
//!   ([`crate::engine::usage`]).
//! - Errors: `{"type":"error","error":{"type","message"}}`; 429 `rate_limit_error` pauses the
//!   quota, 529 `overloaded_error` is load (retried with backoff, no pause), 402
//!   `billing_error` and 400 "credit balance is too low" take the key out of rotation.
//! - Streams: `message_start` carries `message.usage.input_tokens`, `message_delta` the
//!   cumulative `usage.output_tokens`, `message_stop` ends it.

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
    use crate::quota::headers::parse_limit_headers;

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
