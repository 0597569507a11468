//! Token usage as providers report it, and what it costs in the quota's terms.
//!
//! The engine and the gateway see neutral types only: a [`Usage`] (prompt and completion
//! tokens) found in an answer or a stream, and a [`Charge`] that turns it into the [`Cost`]
//! the provider charged. Where each provider keeps its counts is its own fact, declared in its
//! file's [`Spec`] (`usage_fields`, `stream_usage_events`, `output_at_completion`); this module
//! holds what they share: the `usage` object of a body (or `response.usage`, where OpenAI's
//! Responses API puts it in a stream event), read against every provider's field names.
//! It must not know the quota's arithmetic or any transport.

use super::Provider;
use crate::api::Endpoint;
use crate::quota::{Cost, Dimension};
use serde_json::Value;

#[cfg(doc)]
use super::Spec;

/// Token usage reported by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt (input) tokens.
    pub prompt: u64,
    /// Completion (output) tokens.
    pub completion: u64,
}

/// The `usage` object of a response body (Chat/Completions/Embeddings `prompt_tokens`…, or
/// Responses/Anthropic `input_tokens`…), also found under `response.usage` in the Responses
/// API's `response.completed` stream event.
pub fn parse_usage(body: &Value) -> Option<Usage> {
    usage_from(body.get("usage"), body.get("response"))
}

/// The fields of a JSON object that can carry usage; the rest is checked for syntax and
/// skipped without being built.
#[derive(serde::Deserialize)]
struct Carrier {
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    response: Option<Value>,
}

/// The usage of a whole JSON answer, as [`parse_usage`] finds it, reading the body once
/// without building the whole document. `Err` when the body is not complete JSON (an answer
/// cut short); `Ok(None)` when it is JSON but reports no usage.
pub fn usage_of_body(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !object {
        // (A struct would also accept an array, field by field.)
        return serde_json::from_slice::<serde::de::IgnoredAny>(body).map(|_| None);
    }
    match serde_json::from_slice::<Carrier>(body) {
        Ok(carrier) => Ok(usage_from(
            carrier.usage.as_ref(),
            carrier.response.as_ref(),
        )),
        // Complete JSON whose object repeats a key: read it whole.
        Err(err) if err.is_data() => {
            serde_json::from_slice::<Value>(body).map(|whole| parse_usage(&whole))
        }
        Err(err) => Err(err),
    }
}

/// The usage in `usage` (when it is an object), else in `response.usage`, read with every
/// provider's field names in the order of [`Provider::ALL`].
fn usage_from(usage: Option<&Value>, response: Option<&Value>) -> Option<Usage> {
    let usage = match usage {
        Some(usage) if usage.is_object() => usage,
        _ => response?.get("usage")?,
    };
    let count = |names: fn(&UsageFields) -> &'static [&'static str]| {
        Provider::ALL
            .iter()
            .flat_map(|p| names(&p.spec().usage_fields))
            .find_map(|n| usage.get(*n).and_then(Value::as_u64))
    };
    Some(Usage {
        prompt: count(|f| f.prompt)?,
        completion: count(|f| f.completion).unwrap_or(0),
    })
}

/// Where a provider's `usage` object keeps its counts: the names of the prompt (input) token
/// field and of the completion (output) token field, the first present winning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageFields {
    /// Prompt (input) token field names.
    pub prompt: &'static [&'static str],
    /// Completion (output) token field names.
    pub completion: &'static [&'static str],
}

/// A stream event that carries usage a provider's own way: the event's `type`, and how it
/// updates the usage seen so far (its result replaces it).
#[derive(Debug, Clone, Copy)]
pub struct StreamUsageEvent {
    /// The event's `type` field.
    pub event_type: &'static str,
    /// The usage after this event, given the usage seen before it.
    pub merge: fn(Option<Usage>, &Value) -> Option<Usage>,
}

/// How a request's cost is settled once its usage is known: the output it was admitted with,
/// and whether the provider corrects that admission to the output actually produced.
///
/// OpenAI (and Azure, and the servers copying it) keeps the admission charge for the output
/// (`max_tokens × n`) on tokens/min; Anthropic admits output tokens from `max_tokens` and
/// corrects them on completion (rate limits guide), so its tokens and output tokens settle to
/// what the answer's `usage` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Charge {
    /// Output tokens admitted: the cap × the number of choices.
    pub max_output_tokens: u64,
    /// True when the provider charges the output actually produced (Anthropic Messages).
    pub output_at_completion: bool,
}

impl Charge {
    /// How a request to `endpoint`, admitted with `max_output_tokens` (the cap × the number of
    /// choices), is settled: its output at completion when a provider serving that endpoint
    /// corrects the admission ([`Spec::output_at_completion`]).
    pub fn new(endpoint: Endpoint, max_output_tokens: u64) -> Self {
        Charge {
            max_output_tokens,
            output_at_completion: Provider::ALL
                .iter()
                .any(|p| p.speaks(endpoint) && p.spec().output_at_completion),
        }
    }

    /// What the provider charged, in every dimension, for a request that reported `usage`.
    pub fn cost(&self, usage: &Usage) -> Cost {
        let output = if self.output_at_completion {
            usage.completion
        } else {
            self.max_output_tokens
        };
        Cost::request(usage.prompt + output)
            .with(Dimension::InputTokens, usage.prompt)
            .with(Dimension::OutputTokens, output)
    }
}

/// Merge what one stream event says into the usage seen so far: an event a provider declares
/// as its own ([`Spec::stream_usage_events`], Anthropic's `message_start` and
/// `message_delta`) merges its way; any other event carrying one complete `usage`
/// ([`parse_usage`]) replaces what was seen.
pub fn merge_stream_usage(seen: Option<Usage>, event: &Value) -> Option<Usage> {
    let own = event.get("type").and_then(Value::as_str).and_then(|kind| {
        Provider::ALL
            .iter()
            .flat_map(|p| p.spec().stream_usage_events)
            .find(|e| e.event_type == kind)
    });
    match own {
        Some(event_kind) => (event_kind.merge)(seen, event),
        None => parse_usage(event).or(seen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_of_a_body_matches_parsing_the_whole_document() {
        let bodies: [&[u8]; 9] = [
            br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#,
            br#"{"usage":{"input_tokens":5,"output_tokens":2},"type":"message"}"#,
            br#"{"type":"response.completed","response":{"usage":{"input_tokens":4,"output_tokens":9}}}"#,
            br#"{"usage":null,"response":{"usage":{"input_tokens":1}}}"#,
            br#"{"data":[{"embedding":[0.1,0.2]}],"usage":{"prompt_tokens":2,"total_tokens":2}}"#,
            br#"{"id":"no usage"}"#,
            br#"[1,2,3]"#,
            br#"{"usage":"odd","usage2":{}}"#,
            br#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
        ];
        for body in bodies {
            let whole: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(
                usage_of_body(body).unwrap(),
                parse_usage(&whole),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_body_cut_short_is_an_error() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tok"#;
        assert!(usage_of_body(body).is_err());
        assert!(usage_of_body(b"").is_err());
        assert!(usage_of_body(br#"{"usage":{"prompt_tokens":1}} trailing"#).is_err());
    }

    #[test]
    fn reads_chat_responses_and_stream_event_usage() {
        let chat = json!({"usage": {"prompt_tokens": 9, "completion_tokens": 3}});
        assert_eq!(
            parse_usage(&chat),
            Some(Usage {
                prompt: 9,
                completion: 3
            })
        );
        let event = json!({"type": "response.completed",
            "response": {"usage": {"input_tokens": 5, "output_tokens": 7}}});
        assert_eq!(
            parse_usage(&event),
            Some(Usage {
                prompt: 5,
                completion: 7
            })
        );
        assert_eq!(parse_usage(&json!({"usage": null})), None);
    }

    #[test]
    fn the_charge_follows_the_endpoints_provider() {
        let messages = Charge::new(Endpoint::Messages, 100);
        assert!(messages.output_at_completion && messages.max_output_tokens == 100);
        for endpoint in [
            Endpoint::ChatCompletions,
            Endpoint::Completions,
            Endpoint::Embeddings,
            Endpoint::Responses,
        ] {
            assert!(
                !Charge::new(endpoint, 100).output_at_completion,
                "{endpoint:?}"
            );
        }
    }
}
