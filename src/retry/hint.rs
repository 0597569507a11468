//! The server's wait hint written in an error message ([`server_hint_from_body`]): OpenAI's
//! "Please try again in 11.276s", Azure's "Please retry after 2 seconds".
//!
//! Owns reading a duration out of prose. It must not know where the hint goes (the backoff,
//! the quota's pause) nor the hint headers ([`crate::provider::headers`] reads those).

use crate::provider::error_body::ErrorBody;
use crate::provider::values::parse_go_duration;
use std::time::Duration;

/// The server's wait hint in an error message: OpenAI's "Please try again in 11.276s" (also
/// `20ms`, `1m2.5s`, any Go duration) and Azure's "Please retry after 2 seconds".
///
/// Reads the JSON error message when the body has one, else the body as text.
pub fn server_hint_from_body(body: &[u8]) -> Option<Duration> {
    let error = ErrorBody::parse(body);
    hint_in_text(error.message().or(error.text())?)
}

/// Finds "try again in `<duration>`" or "retry after `<duration>`" in a message.
fn hint_in_text(text: &str) -> Option<Duration> {
    // ASCII lowercasing keeps byte offsets, so positions in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    ["try again in ", "retry after "].iter().find_map(|phrase| {
        lower
            .match_indices(phrase)
            .find_map(|(at, _)| duration_at(&text[at + phrase.len()..]))
    })
}

/// A duration at the start of `text`: a Go duration (`11.276s`, `1m2.5s`, `20ms`) or a number
/// and a unit word (`2 seconds`, `500 milliseconds`, `1 minute`).
fn duration_at(text: &str) -> Option<Duration> {
    let text = text.trim_start();
    let token_len = text
        .find(|c: char| !(c.is_alphanumeric() || c == '.'))
        .unwrap_or(text.len());
    let token = text[..token_len].trim_end_matches('.');
    if let Some(duration) = parse_go_duration(token) {
        return Some(duration);
    }
    let word = text[token_len..]
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let unit = match word.as_str() {
        "ms" | "millisecond" | "milliseconds" => "ms",
        "s" | "sec" | "secs" | "second" | "seconds" => "s",
        "min" | "mins" | "minute" | "minutes" => "m",
        _ => return None,
    };
    if !token.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    parse_go_duration(&format!("{token}{unit}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI_RPM: &str = r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-abc on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    const OPENAI_TPM: &str = r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29521, Requested 1130. Please try again in 1.302s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
    const OPENAI_QUOTA: &str = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    const ANTHROPIC_RATE: &str = r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization of 40,000 input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."}}"#;

    #[test]
    fn hints_from_bodies() {
        let cases: &[(&str, Option<Duration>)] = &[
            (OPENAI_RPM, Some(Duration::from_secs(20))),
            (OPENAI_TPM, Some(Duration::from_millis(1302))),
            (
                r#"{"error":{"message":"Rate limit reached ... Please try again in 11.276s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","code":"rate_limit_exceeded"}}"#,
                Some(Duration::from_millis(11_276)),
            ),
            (
                r#"{"error":{"message":"Please try again in 20ms. Visit ...","code":"rate_limit_exceeded"}}"#,
                Some(Duration::from_millis(20)),
            ),
            (
                r#"{"error":{"message":"Please try again in 1m2.5s.","code":"rate_limit_exceeded"}}"#,
                Some(Duration::from_millis(62_500)),
            ),
            (
                r#"{"error":{"message":"Please try again in 6m0s","code":"rate_limit_exceeded"}}"#,
                Some(Duration::from_secs(360)),
            ),
            (
                r#"{"error":{"message":"Please try again in 1h2m3.5s. Visit","code":"rate_limit_exceeded"}}"#,
                Some(Duration::from_millis(3_723_500)),
            ),
            (
                r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-02-01 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}"#,
                Some(Duration::from_secs(2)),
            ),
            (
                "Too many requests, please TRY AGAIN IN 500 milliseconds",
                Some(Duration::from_millis(500)),
            ),
            ("try again in 1 minute", Some(Duration::from_secs(60))),
            (
                "Please try again in 1.5 s",
                Some(Duration::from_millis(1500)),
            ),
            (
                "Please try again later. Retry after 3s.",
                Some(Duration::from_secs(3)),
            ),
            (OPENAI_QUOTA, None),
            (ANTHROPIC_RATE, None),
            ("please try again in a moment", None),
            ("try again in -5s", None),
            ("try again in", None),
            ("", None),
            ("<html>try again in 2s</html>", Some(Duration::from_secs(2))),
        ];
        for &(body, expected) in cases {
            assert_eq!(
                server_hint_from_body(body.as_bytes()),
                expected,
                "body {body}"
            );
        }
    }
}
