//! Outcome classification and backoff: what one attempt's result means, and how long to wait.
//!
//! Every attempt ends in one of three [`Outcome`]s: success, retry (with a [`RetryCause`] and
//! whether the whole quota must pause), or final (with a stable error code, the provider's
//! message with anything key-like redacted, and whether the key must leave rotation). The module
//! knows nothing of any HTTP crate: the caller hands over the status, the body bytes and the
//! `x-should-retry` header as an [`AttemptResult`].
//!
//! # The rules, and where they come from
//!
//! - **Retryable statuses** are those the official OpenAI and Anthropic SDKs retry
//!   (`_should_retry` in both Python clients): 408, 409, 429 and every 5xx. Transport failures
//!   (timeout, connect error, connection reset) and a truncated body or stream are retried too:
//!   nothing was delivered.
//! - **429 is not one thing** (OpenAI error-code guide; bodies as OpenAI sends them):
//!   - `code: rate_limit_exceeded` with `type: requests` or `tokens` is a rate limit: retry, and
//!     pause the whole quota (DESIGN.md, "The pacing core", point 3: that is what ends the 429
//!     waves). Anthropic's `rate_limit_error` and a 429 without a readable body are the same.
//!     The dimension comes from `type`, else from the message ("tokens per min (TPM)",
//!     "requests per minute"; Anthropic's "input tokens per minute" and "output tokens per
//!     minute", which pause those dimensions; Azure's "token rate limit", "call rate limit").
//!   - "Request too large for gpt-4o … Limit 30000, Requested 30601" arrives as a 429
//!     `rate_limit_exceeded` of type `tokens`, but the request can never fit the limit: final,
//!     `request_too_large`.
//!   - `type` or `code` `insufficient_quota`, and the codes OpenAI sends under that type
//!     (`credit_balance_exhausted`, `project_spend_limit_exceeded`,
//!     `organization_spend_limit_exceeded`, `billing_hard_limit_reached`, `billing_not_active`,
//!     …): no wait helps, final, and the key leaves rotation. Anthropic's equivalents (402
//!     `billing_error`; 400 "Your credit balance is too low") are treated the same way and
//!     reported as `insufficient_quota`.
//! - **Overload is not quota** (Anthropic error guide: 529 `overloaded_error`; OpenAI 503 "The
//!   engine is currently overloaded"): retried as [`RetryCause::Overloaded`] without pausing the
//!   quota, so the engine can shrink concurrency instead.
//! - **Final statuses** (both providers' error guides): 400, 404, 422 and other 4xx keep the
//!   provider's `error.code`, else its `error.type`, else a code derived from the status; 413 is
//!   `request_too_large`; 401 is `authentication_error` and takes the key out of rotation; 403 is
//!   `permission_denied` but keeps the key, because a 403 is usually about one model, endpoint or
//!   region (OpenAI "You are not allowed to sample from this model", Anthropic
//!   `permission_error` "does not have permission to use the specified resource") and the same
//!   key still serves everything else.
//! - **`x-should-retry`** overrides the status, as in the official SDKs: `false` makes a
//!   retryable outcome final, `true` makes a final one retryable ([`RetryCause::ServerRequested`]).
//!   Two exceptions: a 2xx is never retried, and an outcome no retry can fix (insufficient quota,
//!   a request too large for the limit) stays final.
//! - **Error bodies** are OpenAI's `{"error":{"message","type","param","code"}}` and Anthropic's
//!   `{"type":"error","error":{"type","message"}}`; anything else (plain text, an HTML page from
//!   a proxy, truncated JSON) is tolerated and summarised, never a panic.
//! - **Backoff** is "full jitter" (AWS Architecture Blog, "Exponential Backoff and Jitter"):
//!   a uniform draw in `[0, min(cap, base·2^(attempt−1))]`, then at least the server's hint
//!   (`retry-after-ms` / `retry-after`, see [`crate::provider::headers`], or the "Please try again in
//!   11.276s" in OpenAI's 429 message, see [`server_hint_from_body`]). The hint is not capped:
//!   the server knows when the limit resets, and waiting less only earns another 429.

use std::time::Duration;

use serde_json::Value;

use crate::provider::values::parse_go_duration;

/// What happened to one attempt, as far as classification needs to know (no HTTP crate types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult<'a> {
    /// The upstream answered with a status and a complete body.
    Response {
        /// The HTTP status code.
        status: u16,
        /// The response body, as received (may be empty, JSON, or anything else).
        body: &'a [u8],
        /// The `x-should-retry` header: `Some(true)` for `true`, `Some(false)` for `false`,
        /// `None` when absent or anything else.
        headers_say_retry: Option<bool>,
    },
    /// The attempt's deadline passed before the response was complete.
    Timeout,
    /// No connection could be made (DNS, refused, TLS handshake).
    Connect,
    /// The connection was reset or closed mid-request.
    ConnectionReset,
    /// The upstream closed, or the body or stream did not parse completely.
    TruncatedBody,
}

/// The classification of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx: done.
    Success,
    /// Worth another attempt after a delay.
    Retry {
        /// Why the attempt failed.
        cause: RetryCause,
        /// True for a rate-limit 429: the whole quota pauses, not only this request.
        pause_quota: bool,
    },
    /// No retry can help: record the error.
    Final {
        /// A stable snake_case code: `insufficient_quota`, `request_too_large`,
        /// `authentication_error`, `permission_denied`, the provider's `error.code` or
        /// `error.type`, or one derived from the status (`invalid_request`, `not_found`,
        /// `unprocessable_entity`, `http_<status>`, …).
        code: String,
        /// The provider's message (or a summary of a body without one), with API keys redacted.
        message: String,
        /// True for 401 and insufficient quota: take the key out of rotation.
        key_unusable: bool,
    },
}

/// Why an attempt is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryCause {
    /// 429 on the requests dimension.
    RateLimitRequests,
    /// 429 on the tokens dimension.
    RateLimitTokens,
    /// 429 on the input tokens dimension (Anthropic: "… input tokens per minute").
    RateLimitInputTokens,
    /// 429 on the output tokens dimension (Anthropic: "… output tokens per minute").
    RateLimitOutputTokens,
    /// 429 whose dimension is unknown.
    RateLimit,
    /// 529, or a 5xx that says the service is overloaded: load, not quota.
    Overloaded,
    /// Any other 5xx, with its status.
    ServerError(u16),
    /// The attempt timed out on our side.
    Timeout,
    /// 408 Request Timeout.
    RequestTimeout,
    /// 409 Conflict.
    Conflict,
    /// Connect failure or connection reset.
    Connection,
    /// The body or stream was cut short or did not parse.
    Truncated,
    /// A status that is otherwise final, answered with `x-should-retry: true`.
    ServerRequested,
}

impl RetryCause {
    /// A short, stable snake_case label for logs and the summary: `rate_limit_requests`,
    /// `server_error_500`, `overloaded`, …
    pub fn label(&self) -> &'static str {
        match self {
            Self::RateLimitRequests => "rate_limit_requests",
            Self::RateLimitTokens => "rate_limit_tokens",
            Self::RateLimitInputTokens => "rate_limit_input_tokens",
            Self::RateLimitOutputTokens => "rate_limit_output_tokens",
            Self::RateLimit => "rate_limit",
            Self::Overloaded => "overloaded",
            Self::ServerError(status) => server_error_label(*status),
            Self::Timeout => "timeout",
            Self::RequestTimeout => "request_timeout",
            Self::Conflict => "conflict",
            Self::Connection => "connection",
            Self::Truncated => "truncated",
            Self::ServerRequested => "server_requested",
        }
    }
}

/// Defines `server_error_label`, mapping each listed status to `server_error_<status>`.
macro_rules! server_error_labels {
    ($($status:literal)*) => {
        /// `server_error_<status>` for a 5xx, `server_error` for anything else.
        fn server_error_label(status: u16) -> &'static str {
            match status {
                $($status => concat!("server_error_", $status),)*
                _ => "server_error",
            }
        }
    };
}

server_error_labels!(
    500 501 502 503 504 505 506 507 508 509 510 511 512 513 514 515 516 517 518 519
    520 521 522 523 524 525 526 527 528 529 530 531 532 533 534 535 536 537 538 539
    540 541 542 543 544 545 546 547 548 549 550 551 552 553 554 555 556 557 558 559
    560 561 562 563 564 565 566 567 568 569 570 571 572 573 574 575 576 577 578 579
    580 581 582 583 584 585 586 587 588 589 590 591 592 593 594 595 596 597 598 599
);

/// Classifies one attempt. See the module documentation for the rules.
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

/// The server's wait hint in an error message: OpenAI's "Please try again in 11.276s" (also
/// `20ms`, `1m2.5s`, any Go duration) and Azure's "Please retry after 2 seconds".
///
/// Reads the JSON error message when the body has one, else the body as text.
pub fn server_hint_from_body(body: &[u8]) -> Option<Duration> {
    let error = ErrorBody::parse(body);
    let text = error.message.or(error.text)?;
    hint_in_text(&text)
}

/// Exponential backoff with full jitter, bounded by a cap and a number of attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The first retry's ceiling (default 1 s).
    pub base: Duration,
    /// The largest backoff ceiling (default 60 s); a server hint may exceed it.
    pub cap: Duration,
    /// Attempts allowed in all, the first one included (default 8).
    pub max_attempts: u32,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            max_attempts: 8,
        }
    }
}

impl BackoffPolicy {
    /// The wait before retrying after failed attempt number `attempt` (1 for the first attempt;
    /// 0 is treated as 1): a uniform draw in `[0, min(cap, base·2^(attempt−1))]` from `rng`,
    /// then raised to `server_hint` when the server asked for longer. The hint is not capped.
    ///
    /// Whether another attempt is allowed at all is [`BackoffPolicy::exhausted`]'s question.
    pub fn delay(
        &self,
        attempt: u32,
        server_hint: Option<Duration>,
        rng: &mut impl rand::Rng,
    ) -> Duration {
        let ceiling = self.ceiling(attempt);
        let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(rng.random_range(0..=ceiling_nanos));
        server_hint.map_or(jitter, |hint| jitter.max(hint))
    }

    /// True when `attempts_made` attempts leave none to make.
    pub fn exhausted(&self, attempts_made: u32) -> bool {
        attempts_made >= self.max_attempts
    }

    /// `min(cap, base·2^(attempt−1))`, saturating at `cap`.
    fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.max(1) - 1;
        1u32.checked_shl(doublings)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.cap, |ceiling| ceiling.min(self.cap))
    }
}

/// Codes OpenAI sends (as `code`, under `type: insufficient_quota`) when the key has no money
/// or spend allowance left.
const QUOTA_CODES: [&str; 7] = [
    "insufficient_quota",
    "credit_balance_exhausted",
    "project_spend_limit_exceeded",
    "organization_spend_limit_exceeded",
    "organization_usage_limit_exceeded",
    "billing_hard_limit_reached",
    "billing_not_active",
];

/// Longest message kept from a provider body, in characters.
const MAX_MESSAGE_CHARS: usize = 1000;

/// Longest excerpt kept from a body that is not a JSON error, in characters.
const MAX_EXCERPT_CHARS: usize = 200;

/// Classification before `x-should-retry` is applied.
enum Verdict {
    Retry {
        cause: RetryCause,
        pause_quota: bool,
    },
    Final {
        code: String,
        key_unusable: bool,
        /// Whether `x-should-retry: true` may turn it into a retry.
        overridable: bool,
    },
}

/// What an error body said, as far as it could be read.
#[derive(Default)]
struct ErrorBody {
    /// `error.type` (OpenAI: `requests`, `tokens`, `insufficient_quota`, …; Anthropic:
    /// `rate_limit_error`, `overloaded_error`, …).
    kind: Option<String>,
    /// `error.code` (OpenAI: `rate_limit_exceeded`, `insufficient_quota`, …).
    code: Option<String>,
    /// `error.message`.
    message: Option<String>,
    /// The body as text, when it is not a JSON error.
    text: Option<String>,
}

impl ErrorBody {
    fn parse(body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => Self::from_json(&value),
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                Self {
                    text: (!text.is_empty()).then(|| text.to_owned()),
                    ..Self::default()
                }
            }
        }
    }

    fn from_json(value: &Value) -> Self {
        let value = match value {
            Value::Array(items) => items.first().unwrap_or(value),
            _ => value,
        };
        match value.get("error") {
            Some(error @ Value::Object(_)) => Self::from_object(error),
            Some(Value::String(message)) => Self {
                message: non_empty(message),
                ..Self::default()
            },
            _ if value.get("message").is_some() => Self::from_object(value),
            _ => Self {
                text: Some(value.to_string()),
                ..Self::default()
            },
        }
    }

    fn from_object(object: &Value) -> Self {
        Self {
            kind: object.get("type").and_then(json_text),
            code: object.get("code").and_then(json_text),
            message: object.get("message").and_then(json_text),
            text: None,
        }
    }

    fn message_lower(&self) -> String {
        self.message.as_deref().unwrap_or("").to_lowercase()
    }

    fn is(&self, name: &str) -> bool {
        self.kind.as_deref() == Some(name) || self.code.as_deref() == Some(name)
    }

    /// The provider's own code: `error.code`, else `error.type`.
    fn provider_code(&self) -> Option<String> {
        self.code.clone().or_else(|| self.kind.clone())
    }
}

/// A JSON string or number as text; `None` for empty strings, null and anything else.
fn json_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => non_empty(text),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn retry(cause: RetryCause) -> Outcome {
    Outcome::Retry {
        cause,
        pause_quota: false,
    }
}

fn classify_response(status: u16, body: &[u8], headers_say_retry: Option<bool>) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Success;
    }
    let error = ErrorBody::parse(body);
    let verdict = match (classify_status(status, &error), headers_say_retry) {
        (Verdict::Retry { cause, .. }, Some(false)) => Verdict::Final {
            code: error
                .provider_code()
                .unwrap_or_else(|| cause.label().to_owned()),
            key_unusable: false,
            overridable: false,
        },
        (
            Verdict::Final {
                overridable: true, ..
            },
            Some(true),
        ) => Verdict::Retry {
            cause: RetryCause::ServerRequested,
            pause_quota: false,
        },
        (verdict, _) => verdict,
    };
    match verdict {
        Verdict::Retry { cause, pause_quota } => Outcome::Retry { cause, pause_quota },
        Verdict::Final {
            code, key_unusable, ..
        } => Outcome::Final {
            code,
            message: final_message(status, &error),
            key_unusable,
        },
    }
}

/// The verdict from the status and body alone.
fn classify_status(status: u16, error: &ErrorBody) -> Verdict {
    if (400..500).contains(&status) {
        if let Some(code) = quota_exhausted_code(status, error) {
            return Verdict::Final {
                code,
                key_unusable: true,
                overridable: false,
            };
        }
    }
    let final_code = |code: &str, key_unusable: bool| Verdict::Final {
        code: code.to_owned(),
        key_unusable,
        overridable: true,
    };
    match status {
        429 if error.message_lower().contains("request too large") => Verdict::Final {
            code: "request_too_large".to_owned(),
            key_unusable: false,
            overridable: false,
        },
        429 => Verdict::Retry {
            cause: rate_limit_cause(error),
            pause_quota: true,
        },
        413 => Verdict::Final {
            code: "request_too_large".to_owned(),
            key_unusable: false,
            overridable: false,
        },
        408 => Verdict::Retry {
            cause: RetryCause::RequestTimeout,
            pause_quota: false,
        },
        409 => Verdict::Retry {
            cause: RetryCause::Conflict,
            pause_quota: false,
        },
        500..=599 => Verdict::Retry {
            cause: if status == 529 || is_overloaded(error) {
                RetryCause::Overloaded
            } else {
                RetryCause::ServerError(status)
            },
            pause_quota: false,
        },
        401 => final_code("authentication_error", true),
        403 => final_code("permission_denied", false),
        _ => Verdict::Final {
            code: error
                .provider_code()
                .unwrap_or_else(|| status_code_name(status)),
            key_unusable: false,
            overridable: true,
        },
    }
}

/// The final code when a 4xx says the key has no quota or credit left, else `None`.
fn quota_exhausted_code(status: u16, error: &ErrorBody) -> Option<String> {
    if let Some(code) = error
        .code
        .as_deref()
        .filter(|code| QUOTA_CODES.contains(code))
    {
        return Some(code.to_owned());
    }
    let anthropic_credit =
        status == 400 && error.message_lower().contains("credit balance is too low");
    let exhausted = status == 402
        || error.is("insufficient_quota")
        || error.is("billing_error")
        || anthropic_credit;
    exhausted.then(|| "insufficient_quota".to_owned())
}

/// Which dimension a rate-limit 429 is about: OpenAI's `type`, else the message's wording.
fn rate_limit_cause(error: &ErrorBody) -> RetryCause {
    let kind = error.kind.as_deref().unwrap_or("");
    if kind.starts_with("requests") {
        return RetryCause::RateLimitRequests;
    }
    if kind.starts_with("tokens") {
        return RetryCause::RateLimitTokens;
    }
    let message = error.message_lower();
    let says = |phrases: &[&str]| phrases.iter().any(|phrase| message.contains(phrase));
    if says(&["input tokens per min"]) {
        return RetryCause::RateLimitInputTokens;
    }
    if says(&["output tokens per min"]) {
        return RetryCause::RateLimitOutputTokens;
    }
    if says(&[
        "tokens per min",
        "tokens per day",
        "(tpm)",
        "(tpd)",
        "token rate limit",
    ]) {
        RetryCause::RateLimitTokens
    } else if says(&[
        "requests per min",
        "requests per day",
        "(rpm)",
        "(rpd)",
        "call rate limit",
    ]) {
        RetryCause::RateLimitRequests
    } else {
        RetryCause::RateLimit
    }
}

/// Anthropic's `overloaded_error`, or any 5xx message saying the service is overloaded.
fn is_overloaded(error: &ErrorBody) -> bool {
    error.is("overloaded_error") || error.message_lower().contains("overloaded")
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
    let message = match (&error.message, &error.text) {
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

/// Characters that may continue an API key (OpenAI masks the middle of a quoted key with `*`).
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*')
}

/// Replaces every token starting with `sk-` (OpenAI `sk-…`, `sk-proj-…`; Anthropic
/// `sk-ant-…`) with `sk-…`. A `sk-` inside a word (`task-`, `disk-`) is left alone; after
/// punctuation, even a hyphen, it is redacted: better too much than a leaked key.
fn redact_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut previous: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("sk-") && !previous.is_some_and(|p| p.is_alphanumeric() || p == '_') {
            out.push_str("sk-…");
            let key_len = rest[3..]
                .find(|c: char| !is_key_char(c))
                .map_or(rest.len(), |len| len + 3);
            rest = &rest[key_len..];
            previous = Some('…');
            continue;
        }
        out.push(c);
        previous = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Finds "try again in <duration>" or "retry after <duration>" in a message.
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
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

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

    fn final_(code: &str, message: &str, key_unusable: bool) -> Outcome {
        Outcome::Final {
            code: code.to_owned(),
            message: message.to_owned(),
            key_unusable,
        }
    }

    const OPENAI_RPM: &str = r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-abc on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    const OPENAI_TPM: &str = r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29521, Requested 1130. Please try again in 1.302s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
    const OPENAI_TOO_LARGE: &str = r#"{"error":{"message":"Request too large for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Requested 30601. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
    const OPENAI_QUOTA: &str = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    const OPENAI_CREDIT: &str = r#"{"error":{"message":"Your credit balance is exhausted.","type":"insufficient_quota","param":null,"code":"credit_balance_exhausted"}}"#;
    const OPENAI_PROJECT_SPEND: &str = r#"{"error":{"message":"Project spend limit exceeded.","type":"insufficient_quota","param":null,"code":"project_spend_limit_exceeded"}}"#;
    const OPENAI_HARD_LIMIT: &str = r#"{"error":{"message":"Billing hard limit has been reached","type":"invalid_request_error","param":null,"code":"billing_hard_limit_reached"}}"#;
    const OPENAI_BAD_KEY: &str = r#"{"error":{"message":"Incorrect API key provided: sk-proj-abc1********************mVsA. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    const OPENAI_CONTEXT: &str = r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
    const OPENAI_400_NO_CODE: &str = r#"{"error":{"message":"'messages' is a required property","type":"invalid_request_error","param":null,"code":null}}"#;
    const OPENAI_MODEL_404: &str = r#"{"error":{"message":"The model `gpt-5-ultra` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#;
    const OPENAI_403: &str = r#"{"error":{"message":"You are not allowed to sample from this model","type":"invalid_request_error","param":null,"code":null}}"#;
    const OPENAI_500: &str = r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#;
    const OPENAI_503: &str = r#"{"error":{"message":"The engine is currently overloaded, please try again later","type":"server_error","param":null,"code":null}}"#;
    const ANTHROPIC_RATE: &str = r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization of 40,000 input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."}}"#;
    const ANTHROPIC_RATE_PLAIN: &str =
        r#"{"type":"error","error":{"type":"rate_limit_error","message":"Rate limited"}}"#;
    const ANTHROPIC_OVERLOADED: &str =
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    const ANTHROPIC_API_ERROR: &str =
        r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#;
    const ANTHROPIC_AUTH: &str =
        r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
    const ANTHROPIC_PERMISSION: &str = r#"{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}"#;
    const ANTHROPIC_NOT_FOUND: &str = r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-nonexistent"}}"#;
    const ANTHROPIC_INVALID: &str = r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#;
    const ANTHROPIC_CREDIT: &str = r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}"#;
    const ANTHROPIC_BILLING: &str =
        r#"{"type":"error","error":{"type":"billing_error","message":"Billing issue"}}"#;
    const ANTHROPIC_TOO_LARGE: &str = r#"{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}"#;
    const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>";

    #[test]
    fn classification_table() {
        use RetryCause::*;
        type Case = (&'static str, u16, &'static str, Option<bool>, Outcome);
        let cases: Vec<Case> = vec![
            ("200", 200, r#"{"id":"chatcmpl-1"}"#, None, Outcome::Success),
            ("201 empty", 201, "", None, Outcome::Success),
            ("2xx never retried", 200, "", Some(true), Outcome::Success),
            ("2xx ignores false", 204, "", Some(false), Outcome::Success),
            // 429 rate limits: retry, pause the quota.
            (
                "openai rpm",
                429,
                OPENAI_RPM,
                None,
                retrying(RateLimitRequests, true),
            ),
            (
                "openai tpm",
                429,
                OPENAI_TPM,
                None,
                retrying(RateLimitTokens, true),
            ),
            (
                "openai tpd by message",
                429,
                r#"{"error":{"message":"Rate limit reached for gpt-4o on tokens per day (TPD): Limit 90000, Used 89000, Requested 2000. Please try again in 1h2m3.5s.","type":null,"code":"rate_limit_exceeded"}}"#,
                None,
                retrying(RateLimitTokens, true),
            ),
            (
                "anthropic itpm",
                429,
                ANTHROPIC_RATE,
                None,
                retrying(RateLimitInputTokens, true),
            ),
            (
                "anthropic plain",
                429,
                ANTHROPIC_RATE_PLAIN,
                None,
                retrying(RateLimit, true),
            ),
            ("429 empty body", 429, "", None, retrying(RateLimit, true)),
            (
                "429 text body",
                429,
                "Too Many Requests",
                None,
                retrying(RateLimit, true),
            ),
            (
                "429 html",
                429,
                "<html><body>slow down</body></html>",
                None,
                retrying(RateLimit, true),
            ),
            (
                "429 truncated json",
                429,
                r#"{"error":{"message":"Rate lim"#,
                None,
                retrying(RateLimit, true),
            ),
            (
                "429 should-retry true",
                429,
                OPENAI_RPM,
                Some(true),
                retrying(RateLimitRequests, true),
            ),
            // 429 that no wait fixes.
            (
                "request too large",
                429,
                OPENAI_TOO_LARGE,
                None,
                final_(
                    "request_too_large",
                    "Request too large for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Requested 30601. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.",
                    false,
                ),
            ),
            (
                "request too large ignores should-retry true",
                429,
                r#"{"error":{"message":"Request too large for gpt-4o-mini: Limit 200000, Requested 329134","type":"tokens","code":"rate_limit_exceeded"}}"#,
                Some(true),
                final_(
                    "request_too_large",
                    "Request too large for gpt-4o-mini: Limit 200000, Requested 329134",
                    false,
                ),
            ),
            (
                "insufficient quota",
                429,
                OPENAI_QUOTA,
                None,
                final_(
                    "insufficient_quota",
                    "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
                    true,
                ),
            ),
            (
                "insufficient quota ignores should-retry true",
                429,
                OPENAI_QUOTA,
                Some(true),
                final_(
                    "insufficient_quota",
                    "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
                    true,
                ),
            ),
            (
                "insufficient quota by type only",
                429,
                r#"{"error":{"message":"quota","type":"insufficient_quota","code":null}}"#,
                None,
                final_("insufficient_quota", "quota", true),
            ),
            (
                "credit exhausted",
                429,
                OPENAI_CREDIT,
                None,
                final_(
                    "credit_balance_exhausted",
                    "Your credit balance is exhausted.",
                    true,
                ),
            ),
            (
                "project spend",
                429,
                OPENAI_PROJECT_SPEND,
                None,
                final_(
                    "project_spend_limit_exceeded",
                    "Project spend limit exceeded.",
                    true,
                ),
            ),
            (
                "hard limit on 400",
                400,
                OPENAI_HARD_LIMIT,
                None,
                final_(
                    "billing_hard_limit_reached",
                    "Billing hard limit has been reached",
                    true,
                ),
            ),
            (
                "anthropic credit too low",
                400,
                ANTHROPIC_CREDIT,
                None,
                final_(
                    "insufficient_quota",
                    "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
                    true,
                ),
            ),
            (
                "anthropic billing 402",
                402,
                ANTHROPIC_BILLING,
                None,
                final_("insufficient_quota", "Billing issue", true),
            ),
            // 408, 409, 5xx.
            ("408", 408, "", None, retrying(RequestTimeout, false)),
            (
                "409",
                409,
                r#"{"error":{"message":"conflict","type":"invalid_request_error","code":null}}"#,
                None,
                retrying(Conflict, false),
            ),
            (
                "openai 500",
                500,
                OPENAI_500,
                None,
                retrying(ServerError(500), false),
            ),
            (
                "anthropic 500",
                500,
                ANTHROPIC_API_ERROR,
                None,
                retrying(ServerError(500), false),
            ),
            (
                "html 502",
                502,
                HTML_502,
                None,
                retrying(ServerError(502), false),
            ),
            (
                "504 empty",
                504,
                "",
                None,
                retrying(ServerError(504), false),
            ),
            (
                "openai 503 overloaded",
                503,
                OPENAI_503,
                None,
                retrying(Overloaded, false),
            ),
            (
                "503 plain",
                503,
                "Service Unavailable",
                None,
                retrying(ServerError(503), false),
            ),
            (
                "anthropic 529",
                529,
                ANTHROPIC_OVERLOADED,
                None,
                retrying(Overloaded, false),
            ),
            ("529 no body", 529, "", None, retrying(Overloaded, false)),
            // Final 4xx.
            (
                "openai context length",
                400,
                OPENAI_CONTEXT,
                None,
                final_(
                    "context_length_exceeded",
                    "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the length of the messages.",
                    false,
                ),
            ),
            (
                "openai 400 type only",
                400,
                OPENAI_400_NO_CODE,
                None,
                final_(
                    "invalid_request_error",
                    "'messages' is a required property",
                    false,
                ),
            ),
            (
                "anthropic 400",
                400,
                ANTHROPIC_INVALID,
                None,
                final_("invalid_request_error", "max_tokens: Field required", false),
            ),
            (
                "400 empty",
                400,
                "",
                None,
                final_("invalid_request", "HTTP 400 with no error message", false),
            ),
            (
                "openai bad key",
                401,
                OPENAI_BAD_KEY,
                None,
                final_(
                    "authentication_error",
                    "Incorrect API key provided: sk-…. You can find your API key at https://platform.openai.com/account/api-keys.",
                    true,
                ),
            ),
            (
                "anthropic bad key",
                401,
                ANTHROPIC_AUTH,
                None,
                final_("authentication_error", "invalid x-api-key", true),
            ),
            (
                "openai 403",
                403,
                OPENAI_403,
                None,
                final_(
                    "permission_denied",
                    "You are not allowed to sample from this model",
                    false,
                ),
            ),
            (
                "anthropic 403",
                403,
                ANTHROPIC_PERMISSION,
                None,
                final_(
                    "permission_denied",
                    "Your API key does not have permission to use the specified resource.",
                    false,
                ),
            ),
            (
                "openai 404",
                404,
                OPENAI_MODEL_404,
                None,
                final_(
                    "model_not_found",
                    "The model `gpt-5-ultra` does not exist or you do not have access to it.",
                    false,
                ),
            ),
            (
                "anthropic 404",
                404,
                ANTHROPIC_NOT_FOUND,
                None,
                final_("not_found_error", "model: claude-nonexistent", false),
            ),
            (
                "404 html",
                404,
                "<h1>Not Found</h1>",
                None,
                final_("not_found", "HTTP 404: <h1>Not Found</h1>", false),
            ),
            (
                "422 empty",
                422,
                "",
                None,
                final_(
                    "unprocessable_entity",
                    "HTTP 422 with no error message",
                    false,
                ),
            ),
            (
                "anthropic 413",
                413,
                ANTHROPIC_TOO_LARGE,
                None,
                final_(
                    "request_too_large",
                    "Request exceeds the maximum allowed number of bytes.",
                    false,
                ),
            ),
            (
                "418 other",
                418,
                "I'm a teapot",
                None,
                final_("http_418", "HTTP 418: I'm a teapot", false),
            ),
            (
                "3xx",
                302,
                "",
                None,
                final_("http_302", "HTTP 302 with no error message", false),
            ),
            // x-should-retry overrides.
            (
                "false on 429",
                429,
                OPENAI_RPM,
                Some(false),
                final_(
                    "rate_limit_exceeded",
                    "Rate limit reached for gpt-4o-mini in organization org-abc on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more.",
                    false,
                ),
            ),
            (
                "false on 429 no body",
                429,
                "",
                Some(false),
                final_("rate_limit", "HTTP 429 with no error message", false),
            ),
            (
                "false on 500",
                500,
                ANTHROPIC_API_ERROR,
                Some(false),
                final_("api_error", "Internal server error", false),
            ),
            (
                "false on 503 text",
                503,
                "busy",
                Some(false),
                final_("server_error_503", "HTTP 503: busy", false),
            ),
            (
                "false on 408",
                408,
                "",
                Some(false),
                final_("request_timeout", "HTTP 408 with no error message", false),
            ),
            (
                "true on 400",
                400,
                ANTHROPIC_INVALID,
                Some(true),
                retrying(ServerRequested, false),
            ),
            (
                "true on 401",
                401,
                ANTHROPIC_AUTH,
                Some(true),
                retrying(ServerRequested, false),
            ),
            (
                "true on 404",
                404,
                "",
                Some(true),
                retrying(ServerRequested, false),
            ),
            (
                "true on 413 stays final",
                413,
                ANTHROPIC_TOO_LARGE,
                Some(true),
                final_(
                    "request_too_large",
                    "Request exceeds the maximum allowed number of bytes.",
                    false,
                ),
            ),
        ];
        for (name, status, body, should_retry, expected) in cases {
            assert_eq!(
                response(status, body, should_retry),
                expected,
                "case {name}"
            );
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
                    if let Outcome::Final { message, code, .. } = outcome {
                        assert!(!message.is_empty() && !code.is_empty());
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
                final_("bad_thing", "in an array", false),
            ),
            (
                r#"{"error":"plain string error"}"#,
                final_("invalid_request", "plain string error", false),
            ),
            (
                r#"{"message":"top level","code":7}"#,
                final_("7", "top level", false),
            ),
            (
                r#"{"detail":"Not authenticated"}"#,
                final_(
                    "invalid_request",
                    r#"HTTP 400: {"detail":"Not authenticated"}"#,
                    false,
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

    #[test]
    fn keys_are_redacted() {
        let cases = [
            ("key sk-abc123 here", "key sk-… here"),
            ("sk-proj-AbC_d-9**********xYz.", "sk-…."),
            (
                "Incorrect key: sk-ant-api03-AAAA-BBBB_cc",
                "Incorrect key: sk-…",
            ),
            ("(sk-1234)", "(sk-…)"),
            ("'sk-1234'", "'sk-…'"),
            ("two sk-a sk-b", "two sk-… sk-…"),
            ("task-sk-1 disk-5 mask-x", "task-sk-… disk-5 mask-x"),
            ("Gr\u{fc}\u{df}esk-1", "Gr\u{fc}\u{df}esk-1"),
            ("sk-", "sk-…"),
            ("no keys here", "no keys here"),
            ("Gr\u{fc}\u{df}e sk-x\u{e9}", "Gr\u{fc}\u{df}e sk-…\u{e9}"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_keys(input), expected, "input {input:?}");
        }
    }

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

    #[test]
    fn labels_are_stable() {
        use RetryCause::*;
        let cases = [
            (RateLimitRequests, "rate_limit_requests"),
            (RateLimitTokens, "rate_limit_tokens"),
            (RateLimitInputTokens, "rate_limit_input_tokens"),
            (RateLimitOutputTokens, "rate_limit_output_tokens"),
            (RateLimit, "rate_limit"),
            (Overloaded, "overloaded"),
            (ServerError(500), "server_error_500"),
            (ServerError(503), "server_error_503"),
            (ServerError(599), "server_error_599"),
            (ServerError(600), "server_error"),
            (Timeout, "timeout"),
            (RequestTimeout, "request_timeout"),
            (Conflict, "conflict"),
            (Connection, "connection"),
            (Truncated, "truncated"),
            (ServerRequested, "server_requested"),
        ];
        for (cause, label) in cases {
            assert_eq!(cause.label(), label);
        }
    }

    #[test]
    fn backoff_ceilings_and_exhaustion() {
        let policy = BackoffPolicy::default();
        let cases = [
            (0, Duration::from_secs(1)),
            (1, Duration::from_secs(1)),
            (2, Duration::from_secs(2)),
            (3, Duration::from_secs(4)),
            (6, Duration::from_secs(32)),
            (7, Duration::from_secs(60)),
            (40, Duration::from_secs(60)),
            (u32::MAX, Duration::from_secs(60)),
        ];
        for (attempt, ceiling) in cases {
            assert_eq!(policy.ceiling(attempt), ceiling, "attempt {attempt}");
        }
        assert!(!policy.exhausted(0));
        assert!(!policy.exhausted(7));
        assert!(policy.exhausted(8));
        assert!(policy.exhausted(9));
    }

    #[test]
    fn backoff_is_seeded_and_spreads() {
        let policy = BackoffPolicy::default();
        let mut a = SmallRng::seed_from_u64(7);
        let mut b = SmallRng::seed_from_u64(7);
        let draws: Vec<Duration> = (0..200).map(|_| policy.delay(5, None, &mut a)).collect();
        let again: Vec<Duration> = (0..200).map(|_| policy.delay(5, None, &mut b)).collect();
        assert_eq!(draws, again);
        let ceiling = Duration::from_secs(16);
        assert!(draws.iter().all(|d| *d <= ceiling));
        assert!(draws.iter().any(|d| *d < ceiling / 4));
        assert!(draws.iter().any(|d| *d > ceiling * 3 / 4));
    }

    #[test]
    fn hint_above_cap_wins() {
        let policy = BackoffPolicy::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let hint = Duration::from_secs(600);
        assert_eq!(policy.delay(3, Some(hint), &mut rng), hint);
    }

    proptest! {
        #[test]
        fn backoff_bounds(
            seed in any::<u64>(),
            attempt in 0u32..100,
            hint_ms in proptest::option::of(0u64..200_000),
            base_ms in 1u64..5_000,
            cap_ms in 1u64..120_000,
        ) {
            let policy = BackoffPolicy {
                base: Duration::from_millis(base_ms),
                cap: Duration::from_millis(cap_ms),
                max_attempts: 8,
            };
            let hint = hint_ms.map(Duration::from_millis);
            let mut rng = SmallRng::seed_from_u64(seed);
            let delay = policy.delay(attempt, hint, &mut rng);
            let floor = hint.unwrap_or(Duration::ZERO);
            prop_assert!(delay >= floor);
            prop_assert!(delay <= policy.cap.max(floor));
            if attempt <= 1 {
                prop_assert!(delay <= policy.base.min(policy.cap).max(floor));
            }
        }
    }
}
