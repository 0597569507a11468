//! Azure OpenAI: OpenAI's request and response bodies behind deployment URLs.
//!
//! - URL: `{endpoint}/openai/deployments/{deployment}/{operation}?api-version={version}`, where
//!   the endpoint is the resource's (`https://NAME.openai.azure.com`) and the deployment is the
//!   request's model name (name deployments after their models, or map public names to
//!   deployments with the gateway's `[[models]]`). A base URL that already names a deployment
//!   (`…/openai/deployments/my-gpt4o`) is used as it is.
//! - Authentication: the `api-key: KEY` header.
//! - Limits: `x-ratelimit-remaining-requests` and `x-ratelimit-remaining-tokens`, without the
//!   `-limit-` and `-reset-` headers (OpenAI's names, [`super::openai::LIMIT_HEADERS`]); `-1`
//!   where a limit is not enforced (read as absent, see [`super::headers`]). The quota
//!   therefore runs on the configured limits and uses the remaining counts to notice other
//!   users of the deployment. A 429 carries `retry-after`,
//!   and `retry-after-ms` / `x-ms-retry-after-ms`, which win (milliseconds are finer).
//! - 429 body: `{"error":{"code":"429","message":"Requests to the ChatCompletions_Create
//!   Operation under Azure OpenAI API version … have exceeded token rate limit of your current
//!   OpenAI S0 pricing tier. Please retry after 6 seconds."}}`: "token rate limit" is the tokens
//!   dimension, "call rate limit" the requests one, and "retry after N seconds" a hint.
//! - Request id: `x-request-id`; usage as OpenAI's.
//! - Endpoints: OpenAI's but `/v1/responses`, which Azure serves at the resource, not under a
//!   deployment: refused before anything is sent ([`speaks`]).
//! - Global batch (`run --via batch`): OpenAI's Files and Batches at the resource
//!   (`{endpoint}/openai/files`, `{endpoint}/openai/batches`, with `api-version`), endpoints
//!   named without `/v1`; chat completions only.
//!
//! This file holds Azure's facts only; the reading rules are shared ([`super::headers`],
//! [`super::usage`]).
//!
//! Besides OpenAI's names, which it reuses, it must not know other providers' facts, how they are
//! read, the quota's arithmetic, the engine or any HTTP crate.

use super::{BatchApi, BatchSpec, Spec, openai};
use crate::api::Endpoint;

/// The operations of a deployment URL: OpenAI's endpoints but the Responses API, which Azure
/// serves at the resource (`/openai/responses` or its `v1` API), not under a deployment, and
/// Anthropic's Messages.
pub fn speaks(endpoint: Endpoint) -> bool {
    openai::speaks(endpoint) && endpoint != Endpoint::Responses
}

/// What paceline knows about Azure OpenAI.
pub static SPEC: Spec = Spec {
    name: "azure",
    semconv_name: "azure.ai.openai",
    summary: "Azure OpenAI (deployment URLs, api-version, api-key header)",
    default_key_env: "AZURE_OPENAI_API_KEY",
    default_base_url: None,
    base_url_example: "https://YOUR-RESOURCE.openai.azure.com (the request's model names the deployment)",
    claims: |host, base_url| is_azure_host(host) || base_url.contains("/openai/deployments"),
    speaks,
    auth_headers,
    url,
    limit_headers: openai::LIMIT_HEADERS,
    retry_hints_ms: &["retry-after-ms", "x-ms-retry-after-ms"],
    request_id_header: "x-request-id",
    usage_fields: openai::USAGE_FIELDS,
    stream_usage_events: &[],
    output_at_completion: false,
    batch: Some(BatchSpec {
        // Global batch follows OpenAI's shape at the resource: `/openai/files` and
        // `/openai/batches` with `api-version` and the `api-key` header, the lines' `url` and
        // the batch's `endpoint` naming the operation (`/chat/completions`), `model` the global
        // batch deployment. Limits (Azure OpenAI batch guide, read 2026-12-01): 100,000
        // requests and 200 MB per input file.
        api: BatchApi::OpenAi,
        max_requests: 100_000,
        max_bytes: 200 * 1024 * 1024,
        endpoints: &[Endpoint::ChatCompletions],
        price_factor: 0.5,
        bare_paths: true,
    }),
};

/// The `api-version` used when none is configured (the current GA data-plane version).
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// Whether `host` is an Azure OpenAI resource host.
pub fn is_azure_host(host: &str) -> bool {
    host.ends_with(".openai.azure.com") || host.ends_with(".cognitiveservices.azure.com")
}

/// `api-key: KEY`.
pub fn auth_headers(secret: &str) -> Vec<(&'static str, String)> {
    vec![("api-key", secret.to_string())]
}

/// The deployment URL of API `path` (`/v1/chat/completions`) for `deployment`; with no
/// deployment, the resource-level URL (`/v1/models` → `{endpoint}/openai/models`).
pub fn url(base_url: &str, path: &str, deployment: &str, api_version: &str) -> String {
    let operation = path.strip_prefix("/v1").unwrap_or(path);
    let endpoint = base_url.strip_suffix("/openai").unwrap_or(base_url);
    let prefix = if base_url.contains("/openai/deployments/") {
        base_url.to_string()
    } else if deployment.is_empty() {
        format!("{endpoint}/openai")
    } else {
        format!(
            "{endpoint}/openai/deployments/{}",
            encode_segment(deployment)
        )
    };
    format!(
        "{prefix}{operation}?api-version={}",
        encode_segment(api_version)
    )
}

/// `segment` with every byte outside RFC 3986's unreserved set percent-encoded.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::headers::parse_limit_headers;
    use crate::retry::{self, AttemptResult, Outcome, RetryCause};
    use std::time::{Duration, SystemTime};

    #[test]
    fn builds_deployment_urls() {
        assert_eq!(
            url(
                "https://r.openai.azure.com",
                "/v1/chat/completions",
                "gpt-4o",
                "2024-10-21"
            ),
            "https://r.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            url(
                "https://r.openai.azure.com/openai",
                "/v1/embeddings",
                "my emb",
                "v"
            ),
            "https://r.openai.azure.com/openai/deployments/my%20emb/embeddings?api-version=v"
        );
        assert_eq!(
            url(
                "http://h/openai/deployments/fixed",
                "/v1/chat/completions",
                "ignored",
                "v"
            ),
            "http://h/openai/deployments/fixed/chat/completions?api-version=v"
        );
        assert_eq!(
            url("https://r.openai.azure.com", "/v1/models", "", "v"),
            "https://r.openai.azure.com/openai/models?api-version=v"
        );
    }

    #[test]
    fn tolerates_missing_and_unenforced_limits() {
        let snapshot = parse_limit_headers(
            [
                ("x-ratelimit-remaining-requests", "-1"),
                ("x-ratelimit-remaining-tokens", "4000"),
                ("x-ms-retry-after-ms", "1500"),
                ("retry-after", "2"),
            ],
            SystemTime::now(),
        );
        assert_eq!(snapshot.requests.remaining, None);
        assert_eq!(snapshot.tokens.remaining, Some(4000));
        assert_eq!(snapshot.tokens.limit, None);
        assert_eq!(snapshot.retry_after, Some(Duration::from_millis(1500)));
    }

    /// Azure's 429s name the dimension in words and the wait in seconds.
    #[test]
    fn classification_table() {
        let body = |what: &str| {
            format!(
                r#"{{"error":{{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded {what} rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds."}}}}"#
            )
        };
        let cases = [
            (body("token"), RetryCause::RateLimitTokens),
            (body("call"), RetryCause::RateLimitRequests),
        ];
        for (body, cause) in cases {
            let outcome = retry::classify(&AttemptResult::Response {
                status: 429,
                body: body.as_bytes(),
                headers_say_retry: None,
            });
            assert_eq!(
                outcome,
                Outcome::Retry {
                    cause,
                    pause_quota: true
                }
            );
            assert_eq!(
                retry::server_hint_from_body(body.as_bytes()),
                Some(Duration::from_secs(6))
            );
        }
        let unusable = retry::classify(&AttemptResult::Response {
            status: 401,
            body: br#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint."}}"#,
            headers_say_retry: None,
        });
        assert!(matches!(
            unusable,
            Outcome::Final { failure, .. } if failure.removes_key()
        ));
    }
}
