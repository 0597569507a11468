//! Classification: what one attempt's answer means ([`classify`]).
//!
//! Owns the status rules the official SDKs follow (which statuses are retried, what
//! `x-should-retry` overrides) and the message recorded with a final answer. What a body's
//! words mean is the providers' knowledge ([`crate::provider::error_body`]); this module asks
//! and decides. It must not know the engine, the quota's state or any HTTP crate (of the quota it
//! names only the refused [`Dimension`]).

use super::cause::RetryCause;
use super::failure::Failure;
use super::outcome::{AttemptResult, Outcome};
use super::redact::redact_keys;
use crate::provider::error_body::ErrorBody;
use crate::quota::Dimension;

/// Longest message kept from a provider body, in characters.
const MAX_MESSAGE_CHARS: usize = 1000;

/// Longest excerpt kept from a body that is not a JSON error, in characters.
const MAX_EXCERPT_CHARS: usize = 200;

/// Classifies one attempt. See the [module documentation](super) for the rules.
pub fn classify(result: &AttemptResult<'_>) -> Outcome {
    match *result {
        AttemptResult::Response {
            status,
            body,
            headers_say_retry,
        } => classify_response(status, body, headers_say_retry),
        AttemptResult::Timeout => retry(RetryCause::Timeout),
        AttemptResult::Connect | AttemptResult::ConnectionReset => retry(RetryCause::Connection),
        AttemptResult::TruncatedBody => retry(RetryCause::Truncated),
    }
}

fn retry(cause: RetryCause) -> Outcome {
    Outcome::Retry {
        cause,
        pause_quota: false,
    }
}

/// What the status and the body say before `x-should-retry` is heard: a retry (its cause, and
/// whether the whole quota pauses) or a failure.
type Reading = Result<(RetryCause, bool), Failure>;

fn classify_response(status: u16, body: &[u8], headers_say_retry: Option<bool>) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Success;
    }
    let error = ErrorBody::parse(body);
    let reading = match (read_answer(status, &error), headers_say_retry) {
        (Ok((cause, _)), Some(false)) => Err(Failure::Provider(
            error.provider_code().unwrap_or(cause.label()).to_owned(),
        )),
        (Err(failure), Some(true)) if failure.is_retryable() => {
            Ok((RetryCause::ServerRequested, false))
        }
        (reading, _) => reading,
    };
    match reading {
        Ok((cause, pause_quota)) => Outcome::Retry { cause, pause_quota },
        Err(failure) => Outcome::Final {
            failure,
            message: final_message(status, &error),
        },
    }
}

/// The reading of a non-2xx answer from its status and body alone.
fn read_answer(status: u16, error: &ErrorBody) -> Reading {
    if (400..500).contains(&status)
        && let Some(code) = error.quota_exhausted(status)
    {
        return Err(Failure::KeyRefused(code.to_owned()));
    }
    match status {
        429 if error.says_request_too_large() => Err(Failure::RequestTooLarge),
        429 => Ok((rate_limit_cause(error.refused_dimension()), true)),
        413 => Err(Failure::RequestTooLarge),
        408 => Ok((RetryCause::RequestTimeout, false)),
        409 => Ok((RetryCause::Conflict, false)),
        500..=599 => {
            let cause = if status == 529 || error.says_overloaded() {
                RetryCause::Overloaded
            } else {
                RetryCause::ServerError(status)
            };
            Ok((cause, false))
        }
        401 => Err(Failure::Authentication),
        403 => Err(Failure::PermissionDenied),
        _ => Err(Failure::Provider(
            error
                .provider_code()
                .map_or_else(|| status_code_name(status), str::to_owned),
        )),
    }
}

/// The cause of a rate-limit 429 that names `dimension` (or none).
fn rate_limit_cause(dimension: Option<Dimension>) -> RetryCause {
    match dimension {
        Some(Dimension::Requests) => RetryCause::RateLimitRequests,
        Some(Dimension::Tokens) => RetryCause::RateLimitTokens,
        Some(Dimension::InputTokens) => RetryCause::RateLimitInputTokens,
        Some(Dimension::OutputTokens) => RetryCause::RateLimitOutputTokens,
        None => RetryCause::RateLimit,
    }
}

/// A code for a status whose body gave none.
fn status_code_name(status: u16) -> String {
    match status {
        400 => "invalid_request".to_owned(),
        404 => "not_found".to_owned(),
        422 => "unprocessable_entity".to_owned(),
        429 => "rate_limit_exceeded".to_owned(),
        _ => format!("http_{status}"),
    }
}

/// The message recorded with a final outcome: the provider's, else an excerpt of the body.
fn final_message(status: u16, error: &ErrorBody) -> String {
    let message = match (error.message(), error.text()) {
        (Some(message), _) => truncate_chars(message, MAX_MESSAGE_CHARS),
        (None, Some(text)) => {
            let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
            format!(
                "HTTP {status}: {}",
                truncate_chars(&collapsed, MAX_EXCERPT_CHARS)
            )
        }
        (None, None) => format!("HTTP {status} with no error message"),
    };
    redact_keys(&message)
}

/// The first `max` characters of `text`, with `…` when cut.
fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::headers::should_retry;
    use crate::retry::server_hint_from_body;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    fn response(status: u16, body: &str, headers_say_retry: Option<bool>) -> Outcome {
        classify(&AttemptResult::Response {
            status,
            body: body.as_bytes(),
            headers_say_retry,
        })
    }

    fn retrying(cause: RetryCause, pause_quota: bool) -> Outcome {
        Outcome::Retry { cause, pause_quota }
    }

    fn final_(code: &str, message: &str) -> Outcome {
        Outcome::Final {
            failure: Failure::Provider(code.to_owned()),
            message: message.to_owned(),
        }
    }

    /// One documented answer and what it must classify as (`classification_cases.json`).
    #[derive(Deserialize)]
    struct Case {
        name: String,
        /// Where the answer and its meaning are documented.
        source: String,
        status: u16,
        headers: BTreeMap<String, String>,
        body: String,
        expect: Expect,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Expect {
        Success,
        Retry {
            cause: String,
            pause_quota: bool,
        },
        Final {
            code: String,
            message: String,
            key_unusable: bool,
        },
    }

    #[test]
    fn classification_table() {
        let cases: Vec<Case> =
            serde_json::from_str(include_str!("classification_cases.json")).expect("valid table");
        assert!(cases.len() >= 58, "{} cases", cases.len());
        for case in cases {
            let name = &case.name;
            assert!(!case.source.is_empty(), "case {name} names no source");
            let header = |name: &str| case.headers.get(name).map(String::as_str);
            let outcome = response(case.status, &case.body, should_retry(header));
            match (outcome, case.expect) {
                (Outcome::Success, Expect::Success) => {}
                (
                    Outcome::Retry { cause, pause_quota },
                    Expect::Retry {
                        cause: label,
                        pause_quota: pause,
                    },
                ) => assert_eq!(
                    (cause.label(), pause_quota),
                    (label.as_str(), pause),
                    "case {name}"
                ),
                (
                    Outcome::Final { failure, message },
                    Expect::Final {
                        code,
                        message: expected,
                        key_unusable,
                    },
                ) => assert_eq!(
                    (failure.code(), message.as_str(), failure.removes_key()),
                    (code.as_str(), expected.as_str(), key_unusable),
                    "case {name}"
                ),
                (outcome, _) => panic!("case {name}: {outcome:?}"),
            }
        }
    }

    #[test]
    fn transport_failures_retry() {
        let cases = [
            (AttemptResult::Timeout, RetryCause::Timeout),
            (AttemptResult::Connect, RetryCause::Connection),
            (AttemptResult::ConnectionReset, RetryCause::Connection),
            (AttemptResult::TruncatedBody, RetryCause::Truncated),
        ];
        for (result, cause) in cases {
            assert_eq!(classify(&result), retrying(cause, false), "{result:?}");
        }
    }

    #[test]
    fn odd_bodies_do_not_panic() {
        let bodies: &[&[u8]] = &[
            b"",
            b"\xff\xfe\x00garbage",
            b"null",
            b"42",
            b"[]",
            b"[{\"error\":{\"message\":\"in an array\",\"code\":\"x\"}}]",
            b"{\"error\":\"plain string error\"}",
            b"{\"error\":null}",
            b"{\"error\":{\"message\":123,\"type\":[1],\"code\":{}}}",
            b"{\"message\":\"top level\",\"code\":7}",
            b"{\"error\":{\"message\":\"sk-",
            "{\"error\":{\"message\":\"Gr\u{fc}\u{df}e sk-ant-api03-\u{e9}\u{e9}\"}}".as_bytes(),
        ];
        for status in [400, 401, 403, 404, 409, 422, 429, 500, 529] {
            for body in bodies {
                for should_retry in [None, Some(true), Some(false)] {
                    let outcome = classify(&AttemptResult::Response {
                        status,
                        body,
                        headers_say_retry: should_retry,
                    });
                    if let Outcome::Final { message, failure } = outcome {
                        assert!(!message.is_empty() && !failure.code().is_empty());
                    }
                }
                let _ = server_hint_from_body(body);
            }
        }
    }

    #[test]
    fn body_shapes_are_read() {
        let cases: &[(&str, Outcome)] = &[
            (
                r#"[{"error":{"message":"in an array","code":"bad_thing"}}]"#,
                final_("bad_thing", "in an array"),
            ),
            (
                r#"{"error":"plain string error"}"#,
                final_("invalid_request", "plain string error"),
            ),
            (
                r#"{"message":"top level","code":7}"#,
                final_("7", "top level"),
            ),
            (
                r#"{"detail":"Not authenticated"}"#,
                final_(
                    "invalid_request",
                    r#"HTTP 400: {"detail":"Not authenticated"}"#,
                ),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(&response(400, body, None), expected, "body {body}");
        }
    }

    #[test]
    fn long_messages_are_cut() {
        let body = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(5000));
        let Outcome::Final { message, .. } = response(400, &body, None) else {
            panic!("400 must be final");
        };
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
        let html = format!("<html>{}</html>", "a b  \n c ".repeat(500));
        let Outcome::Final { message, .. } = response(404, &html, None) else {
            panic!("404 must be final");
        };
        assert!(
            message.chars().count() <= MAX_EXCERPT_CHARS + 20,
            "{message}"
        );
        assert!(!message.contains('\n'));
    }
}
