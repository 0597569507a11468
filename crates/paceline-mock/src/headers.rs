//! Rate-limit and bookkeeping headers, in OpenAI's and Anthropic's conventions.
//!
//! It writes what a key's limit view says ([`crate::keys`]); it admits nothing.

use crate::duration::{ceil_millis, ceil_secs, go_duration};
use crate::errors::Flavor;
use crate::keys::{DimView, LimitView};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::{SecondsFormat, Utc};
use std::time::Duration;

fn put(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::try_from(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// Add the rate-limit headers of `view` (a dimension that is unlimited gets none).
pub fn rate_limits(headers: &mut HeaderMap, flavor: Flavor, view: &LimitView) {
    match flavor {
        Flavor::OpenAi => {
            if let Some(d) = view.requests {
                put(headers, "x-ratelimit-limit-requests", d.limit.to_string());
                put(
                    headers,
                    "x-ratelimit-remaining-requests",
                    d.remaining.to_string(),
                );
                put(headers, "x-ratelimit-reset-requests", go_duration(d.reset));
            }
            if let Some(d) = view.tokens {
                put(headers, "x-ratelimit-limit-tokens", d.limit.to_string());
                put(
                    headers,
                    "x-ratelimit-remaining-tokens",
                    d.remaining.to_string(),
                );
                put(headers, "x-ratelimit-reset-tokens", go_duration(d.reset));
            }
        }
        Flavor::Anthropic => {
            if let Some(d) = view.requests {
                anthropic_dim(headers, ANTHROPIC_REQUESTS, &d);
            }
            if let Some(d) = view.tokens {
                // The mock has one token bucket: it is reported as the combined, the input and
                // the output token limit alike.
                anthropic_dim(headers, ANTHROPIC_TOKENS, &d);
                anthropic_dim(headers, ANTHROPIC_INPUT_TOKENS, &d);
                anthropic_dim(headers, ANTHROPIC_OUTPUT_TOKENS, &d);
            }
        }
    }
}

type AnthropicNames = [&'static str; 3];
const ANTHROPIC_REQUESTS: AnthropicNames = [
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
];
const ANTHROPIC_TOKENS: AnthropicNames = [
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
];
const ANTHROPIC_INPUT_TOKENS: AnthropicNames = [
    "anthropic-ratelimit-input-tokens-limit",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
];
const ANTHROPIC_OUTPUT_TOKENS: AnthropicNames = [
    "anthropic-ratelimit-output-tokens-limit",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
];

fn anthropic_dim(headers: &mut HeaderMap, names: AnthropicNames, d: &DimView) {
    put(headers, names[0], d.limit.to_string());
    put(headers, names[1], d.remaining.to_string());
    put(headers, names[2], rfc3339_after(d.reset));
}

/// The wall-clock instant `d` from now, RFC 3339 in UTC with seconds precision rounded up.
pub fn rfc3339_after(d: Duration) -> String {
    let at =
        Utc::now() + chrono::Duration::milliseconds(ceil_millis(d).min(i64::MAX as u64) as i64);
    let rounded = if at.timestamp_subsec_nanos() > 0 {
        at + chrono::Duration::nanoseconds(1_000_000_000 - i64::from(at.timestamp_subsec_nanos()))
    } else {
        at
    };
    rounded.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Add the retry hint of a 429: `retry-after` (whole seconds, rounded up), and for OpenAI also
/// `retry-after-ms`.
pub fn retry_after(headers: &mut HeaderMap, flavor: Flavor, wait: Duration) {
    put(headers, "retry-after", ceil_secs(wait).max(1).to_string());
    if flavor == Flavor::OpenAi {
        put(headers, "retry-after-ms", ceil_millis(wait).to_string());
    }
}

/// Add the request id (`x-request-id` for OpenAI, `request-id` for Anthropic) and, for OpenAI,
/// `openai-processing-ms` and `openai-version`.
pub fn bookkeeping(
    headers: &mut HeaderMap,
    flavor: Flavor,
    request_id: &str,
    processing: Duration,
) {
    match flavor {
        Flavor::OpenAi => {
            put(headers, "x-request-id", request_id.to_owned());
            put(
                headers,
                "openai-processing-ms",
                ceil_millis(processing).to_string(),
            );
            headers.insert(
                HeaderName::from_static("openai-version"),
                HeaderValue::from_static("2020-10-01"),
            );
        }
        Flavor::Anthropic => put(headers, "request-id", request_id.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_headers_and_omission() {
        let mut h = HeaderMap::new();
        let view = LimitView {
            requests: Some(DimView {
                limit: 60,
                remaining: 59,
                reset: Duration::from_secs(1),
            }),
            tokens: None,
        };
        rate_limits(&mut h, Flavor::OpenAi, &view);
        assert_eq!(h["x-ratelimit-limit-requests"], "60");
        assert_eq!(h["x-ratelimit-remaining-requests"], "59");
        assert_eq!(h["x-ratelimit-reset-requests"], "1s");
        assert!(h.get("x-ratelimit-limit-tokens").is_none());
        retry_after(&mut h, Flavor::OpenAi, Duration::from_millis(1234));
        assert_eq!(h["retry-after"], "2");
        assert_eq!(h["retry-after-ms"], "1234");
    }

    #[test]
    fn anthropic_resets_are_rfc3339() {
        let s = rfc3339_after(Duration::from_millis(1500));
        let parsed = chrono::DateTime::parse_from_rfc3339(&s).unwrap();
        let ahead = parsed.with_timezone(&Utc) - Utc::now();
        assert!(
            ahead.num_milliseconds() > 0 && ahead.num_milliseconds() <= 3_000,
            "{s}"
        );
        assert!(s.ends_with('Z'), "{s}");
    }
}
