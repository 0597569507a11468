//! Token usage as the provider reports it, and what it means for the quota.

use super::job::Job;
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
    let usage = match body.get("usage") {
        Some(usage) if usage.is_object() => usage,
        _ => body.get("response")?.get("usage")?,
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

/// What the provider charged the request's tokens/min: its own prompt count plus the output it
/// admitted (`max_tokens × n`: OpenAI keeps the admission charge for the output).
pub fn charged_tokens(job: &Job, usage: &Usage) -> u64 {
    charged_tokens_for(job.estimate.max_output_tokens, usage)
}

/// [`charged_tokens`] given the admitted output cap.
pub fn charged_tokens_for(max_output_tokens: u64, usage: &Usage) -> u64 {
    usage.prompt + max_output_tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
