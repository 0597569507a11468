//! Token usage as the provider reports it, and what it means for the quota.

use crate::quota::{Cost, Dimension};
use serde_json::Value;

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

fn usage_from(usage: Option<&Value>, response: Option<&Value>) -> Option<Usage> {
    let usage = match usage {
        Some(usage) if usage.is_object() => usage,
        _ => response?.get("usage")?,
    };
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| usage.get(*n).and_then(Value::as_u64))
    };
    Some(Usage {
        prompt: field(&["prompt_tokens", "input_tokens"])?,
        completion: field(&["completion_tokens", "output_tokens"]).unwrap_or(0),
    })
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

/// Merge what one stream event says into the usage seen so far: Anthropic's `message_start`
/// carries the input tokens (`message.usage`) and each `message_delta` the cumulative output
/// tokens; the other providers send one complete `usage` ([`parse_usage`]).
pub fn merge_stream_usage(seen: Option<Usage>, event: &Value) -> Option<Usage> {
    match event.get("type").and_then(Value::as_str) {
        Some("message_start") => {
            let usage = event.get("message").and_then(|m| m.get("usage"))?;
            let field = |name: &str| usage.get(name).and_then(Value::as_u64);
            Some(Usage {
                prompt: field("input_tokens")?,
                completion: field("output_tokens").unwrap_or(0),
            })
        }
        Some("message_delta") => {
            let output = event.get("usage")?.get("output_tokens")?.as_u64()?;
            let input = event
                .get("usage")
                .and_then(|u| u.get("input_tokens"))
                .and_then(Value::as_u64);
            let prompt = input.or(seen.map(|s| s.prompt)).unwrap_or(0);
            Some(Usage {
                prompt,
                completion: output,
            })
        }
        _ => parse_usage(event).or(seen),
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
    fn merges_anthropic_stream_usage() {
        let start = json!({"type": "message_start", "message": {"usage": {"input_tokens": 12, "output_tokens": 1}}});
        let seen = merge_stream_usage(None, &start);
        assert_eq!(
            seen,
            Some(Usage {
                prompt: 12,
                completion: 1
            })
        );
        let ping = json!({"type": "ping"});
        assert_eq!(merge_stream_usage(seen, &ping), seen);
        let delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 30}});
        assert_eq!(
            merge_stream_usage(seen, &delta),
            Some(Usage {
                prompt: 12,
                completion: 30
            })
        );
    }

    #[test]
    fn anthropic_output_settles_to_what_was_produced() {
        let usage = Usage {
            prompt: 10,
            completion: 3,
        };
        let openai = Charge {
            max_output_tokens: 100,
            output_at_completion: false,
        };
        assert_eq!(openai.cost(&usage).get(Dimension::Tokens), 110);
        let anthropic = Charge {
            max_output_tokens: 100,
            output_at_completion: true,
        };
        let cost = anthropic.cost(&usage);
        assert_eq!(
            [
                Dimension::Requests,
                Dimension::Tokens,
                Dimension::InputTokens,
                Dimension::OutputTokens
            ]
            .map(|d| cost.get(d)),
            [1, 13, 10, 3]
        );
    }
}
