//! OpenAI-compatible servers (vLLM, llama.cpp, Groq, Together, …): OpenAI's paths and bearer
//! authentication (see [`super::openai`]). They send whatever subset of OpenAI's rate-limit
//! headers they implement — Groq all of them, vLLM and llama.cpp none — and the quota uses what
//! arrives: with none, pacing runs on the configured limits, a 429's `retry-after` pauses the
//! quota, and the engine's AIMD concurrency bound limits the load. Ids and usage as OpenAI's.
//! No host is claimed: a base URL no other provider claims is taken for this one.
//!
//! It must not know how OpenAI's facts are read, the quota's arithmetic, the engine or any HTTP
//! crate.

use super::{Spec, openai};

/// What paceline knows about OpenAI-compatible servers: OpenAI's facts, no host and no key of
/// their own.
pub static SPEC: Spec = Spec {
    name: "openai-compatible",
    semconv_name: "openai_compatible",
    summary: "Any OpenAI-compatible server (vLLM, llama.cpp, Groq, Together, ...)",
    default_key_env: "OPENAI_API_KEY",
    default_base_url: None,
    base_url_example: "http://HOST:PORT/v1 (most OpenAI-compatible servers serve the API under /v1)",
    claims: |_, _| false,
    speaks: openai::speaks,
    auth_headers: openai::auth_headers,
    url: |base_url, path, _, _| openai::url(base_url, path),
    limit_headers: openai::LIMIT_HEADERS,
    retry_hints_ms: &[],
    request_id_header: "x-request-id",
    usage_fields: openai::USAGE_FIELDS,
    stream_usage_events: &[],
    output_at_completion: false,
    batch: None,
};

#[cfg(test)]
mod tests {
    use crate::provider::headers::parse_limit_headers;
    use crate::retry::{self, AttemptResult, Outcome, RetryCause};
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_bare_429_pauses_and_its_retry_after_is_the_hint() {
        for body in ["", "Too Many Requests", r#"{"detail":"rate limited"}"#] {
            let outcome = retry::classify(&AttemptResult::Response {
                status: 429,
                body: body.as_bytes(),
                headers_say_retry: None,
            });
            assert_eq!(
                outcome,
                Outcome::Retry {
                    cause: RetryCause::RateLimit,
                    pause_quota: true
                },
                "{body:?}"
            );
        }
        let snapshot = parse_limit_headers([("retry-after", "3")], SystemTime::now());
        assert_eq!(snapshot.retry_after, Some(Duration::from_secs(3)));
        assert!(snapshot.requests.limit.is_none() && snapshot.tokens.limit.is_none());
    }

    #[test]
    fn a_partial_header_set_is_used_as_far_as_it_goes() {
        let snapshot = parse_limit_headers(
            [
                ("x-ratelimit-limit-requests", "30"),
                ("x-ratelimit-remaining-requests", "29"),
                ("x-ratelimit-reset-requests", "2s"),
            ],
            SystemTime::now(),
        );
        assert_eq!(snapshot.requests.limit, Some(30));
        assert_eq!(snapshot.requests.remaining, Some(29));
        assert!(snapshot.tokens.limit.is_none());
    }
}
