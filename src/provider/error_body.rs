//! What a provider's error body says, and what its words mean.
//!
//! Owns the providers' knowledge of their error answers: the JSON shapes they send (OpenAI's
//! `{"error":{"message","type","param","code"}}`, Anthropic's
//! `{"type":"error","error":{"type","message"}}`, and the variants proxies and compatible
//! servers send: an array around it, a bare string, a top-level `message`), the codes OpenAI
//! sends when a key has no money left, and the wording that names a refused dimension, an
//! overload or a request too large for any limit. Anything else (plain text, an HTML page,
//! truncated JSON) is kept as text, never a panic.
//!
//! It must not know which statuses are retried, what the engine does with an answer, or any
//! HTTP crate: [`crate::retry`] asks it what a body says and decides.

use crate::quota::Dimension;
use serde_json::Value;

/// Codes OpenAI sends (as `code`, under `type: insufficient_quota`) when the key has no money
/// or spend allowance left (OpenAI error-code guide).
pub const QUOTA_CODES: [&str; 7] = [
    "insufficient_quota",
    "credit_balance_exhausted",
    "project_spend_limit_exceeded",
    "organization_spend_limit_exceeded",
    "organization_usage_limit_exceeded",
    "billing_hard_limit_reached",
    "billing_not_active",
];

/// The code reported for a key without quota or credit when the provider's own code is not
/// one of [`QUOTA_CODES`] (Anthropic's `billing_error`, a 402, "credit balance is too low").
pub const INSUFFICIENT_QUOTA: &str = QUOTA_CODES[0];

/// What an error body said, as far as it could be read.
#[derive(Debug, Default)]
pub struct ErrorBody {
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
    /// Reads `body`, whatever it holds.
    pub fn parse(body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => Self::from_json(&value),
            Err(_) => Self {
                text: non_empty(&String::from_utf8_lossy(body)),
                ..Self::default()
            },
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

    /// The provider's message (`error.message`).
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The body as text, when it is not a JSON error.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// The provider's own code: `error.code`, else `error.type`.
    pub fn provider_code(&self) -> Option<&str> {
        self.code.as_deref().or(self.kind.as_deref())
    }

    /// The code to report when this answer (a 4xx with `status`) says the key has no quota or
    /// credit left, else `None`: one of OpenAI's [`QUOTA_CODES`] as sent, else
    /// [`INSUFFICIENT_QUOTA`] for `type: insufficient_quota`, Anthropic's 402 `billing_error`
    /// and its 400 "Your credit balance is too low".
    pub fn quota_exhausted(&self, status: u16) -> Option<&str> {
        if let Some(code) = self
            .code
            .as_deref()
            .filter(|code| QUOTA_CODES.contains(code))
        {
            return Some(code);
        }
        let anthropic_credit = status == 400 && self.says(&["credit balance is too low"]);
        let exhausted = status == 402
            || self.is(INSUFFICIENT_QUOTA)
            || self.is("billing_error")
            || anthropic_credit;
        exhausted.then_some(INSUFFICIENT_QUOTA)
    }

    /// OpenAI's "Request too large for gpt-4o … Limit 30000, Requested 30601": a 429 about a
    /// request that can never fit the limit.
    pub fn says_request_too_large(&self) -> bool {
        self.says(&["request too large"])
    }

    /// Anthropic's `overloaded_error`, or a message saying the service is overloaded (OpenAI's
    /// 503 "The engine is currently overloaded").
    pub fn says_overloaded(&self) -> bool {
        self.is("overloaded_error") || self.says(&["overloaded"])
    }

    /// Which dimension a rate-limit answer names: OpenAI's `type` (`requests`, `tokens`), else
    /// the message's wording ("tokens per min (TPM)", "requests per minute"; Anthropic's "input
    /// tokens per minute" and "output tokens per minute"; Azure's "token rate limit", "call
    /// rate limit"); `None` when it names none.
    pub fn refused_dimension(&self) -> Option<Dimension> {
        let kind = self.kind.as_deref().unwrap_or("");
        if kind.starts_with("requests") {
            return Some(Dimension::Requests);
        }
        if kind.starts_with("tokens") {
            return Some(Dimension::Tokens);
        }
        if self.says(&["input tokens per min"]) {
            Some(Dimension::InputTokens)
        } else if self.says(&["output tokens per min"]) {
            Some(Dimension::OutputTokens)
        } else if self.says(&[
            "tokens per min",
            "tokens per day",
            "(tpm)",
            "(tpd)",
            "token rate limit",
        ]) {
            Some(Dimension::Tokens)
        } else if self.says(&[
            "requests per min",
            "requests per day",
            "(rpm)",
            "(rpd)",
            "call rate limit",
        ]) {
            Some(Dimension::Requests)
        } else {
            None
        }
    }

    /// Whether `error.type` or `error.code` is `name`.
    fn is(&self, name: &str) -> bool {
        self.kind.as_deref() == Some(name) || self.code.as_deref() == Some(name)
    }

    /// Whether the message holds any of `phrases` (lower case), ignoring case.
    fn says(&self, phrases: &[&str]) -> bool {
        let message = self.message.as_deref().unwrap_or("").to_lowercase();
        phrases.iter().any(|phrase| message.contains(phrase))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_read() {
        let openai = ErrorBody::parse(
            br#"{"error":{"message":"m","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(openai.message(), Some("m"));
        assert_eq!(openai.provider_code(), Some("rate_limit_exceeded"));
        assert_eq!(openai.refused_dimension(), Some(Dimension::Tokens));
        let anthropic = ErrorBody::parse(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(anthropic.provider_code(), Some("overloaded_error"));
        assert!(anthropic.says_overloaded());
        let array = ErrorBody::parse(br#"[{"error":{"message":"in an array","code":"x"}}]"#);
        assert_eq!(
            (array.message(), array.provider_code()),
            (Some("in an array"), Some("x"))
        );
        let string = ErrorBody::parse(br#"{"error":"plain"}"#);
        assert_eq!(
            (string.message(), string.provider_code()),
            (Some("plain"), None)
        );
        let number = ErrorBody::parse(br#"{"message":"top level","code":7}"#);
        assert_eq!(number.provider_code(), Some("7"));
        let other = ErrorBody::parse(br#"{"detail":"Not authenticated"}"#);
        assert_eq!(other.text(), Some(r#"{"detail":"Not authenticated"}"#));
        let html = ErrorBody::parse(b"  <h1>Not Found</h1>\n");
        assert_eq!(html.text(), Some("<h1>Not Found</h1>"));
        assert_eq!(ErrorBody::parse(b"").text(), None);
    }

    #[test]
    fn quota_words() {
        let body = |json: &str| ErrorBody::parse(json.as_bytes());
        let credit = body(r#"{"error":{"message":"x","code":"credit_balance_exhausted"}}"#);
        assert_eq!(
            credit.quota_exhausted(429),
            Some("credit_balance_exhausted")
        );
        let by_type = body(r#"{"error":{"message":"x","type":"insufficient_quota"}}"#);
        assert_eq!(by_type.quota_exhausted(429), Some(INSUFFICIENT_QUOTA));
        let low = body(
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low"}}"#,
        );
        assert_eq!(low.quota_exhausted(400), Some(INSUFFICIENT_QUOTA));
        assert_eq!(low.quota_exhausted(403), None);
        assert_eq!(body("").quota_exhausted(402), Some(INSUFFICIENT_QUOTA));
        assert_eq!(body("").quota_exhausted(429), None);
    }
}
