//! `POST /v1/messages` in Anthropic's shape (`message` object or its event stream).
//!
//! Input tokens follow the chat formula, with `system` counted as a leading system message
//! (cl100k_base for Claude models: the mock has no Claude tokenizer). Admission charges
//! `input + max_tokens`, which Anthropic requires.
//!
//! It builds the answer only: it knows no HTTP, keys or buckets ([`crate::server`] admits, charges
//! and delivers).

use crate::api::{self, Answer, AnswerCtx, Endpoint, Payload};
use crate::chat::count_messages;
use crate::config::MockConfig;
use crate::errors::{ApiError, Flavor};
use crate::text;
use crate::tokens::{self, ChatMessage};
use serde_json::{Value, json};

/// A parsed Messages API request.
#[derive(Debug)]
pub struct MessagesRequest {
    model: String,
    input_tokens: u64,
    max_tokens: u64,
    stream: bool,
}

impl Endpoint for MessagesRequest {
    const FLAVOR: Flavor = Flavor::Anthropic;

    fn parse(body: &[u8], _config: &MockConfig) -> Result<Self, ApiError> {
        let flavor = Self::FLAVOR;
        let obj = api::json_object(body, flavor)?;
        let model = api::model(&obj, flavor)?;
        let max_tokens = api::positive_int(&obj, "max_tokens", flavor)?
            .ok_or_else(|| ApiError::missing(flavor, "max_tokens"))?;
        let system = obj.get("system").map(tokens::content_text);
        let system = system.filter(|s| !s.is_empty()).map(|content| ChatMessage {
            role: "system",
            content,
            name: None,
        });
        let input_tokens = count_messages(obj.get("messages"), &model, flavor, system)?;
        let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
        Ok(Self {
            model,
            input_tokens,
            max_tokens,
            stream,
        })
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn prompt_tokens(&self) -> u64 {
        self.input_tokens
    }

    fn reserved_output(&self) -> u64 {
        self.max_tokens
    }

    fn answer(&self, ctx: &mut AnswerCtx<'_>) -> Answer {
        let (len, capped) =
            text::answer_length(ctx.rng, ctx.config.completion_tokens, self.max_tokens);
        let pieces = text::pieces(ctx.rng, len);
        let content: String = pieces.concat();
        let output_tokens = tokens::count(tokens::encoding_for(&self.model), &content);
        let stop_reason = if capped { "max_tokens" } else { "end_turn" };
        let id = format!("msg_{}", ctx.id);
        let payload = if self.stream {
            let mut frames = Vec::with_capacity(pieces.len() + 6);
            let start = json!({
                "type": "message_start",
                "message": {
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {
                        "input_tokens": self.input_tokens,
                        "output_tokens": 1,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0
                    }
                }
            });
            frames.push(api::sse_event("message_start", &start));
            frames.push(api::sse_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            frames.push(api::sse_event("ping", &json!({"type": "ping"})));
            for piece in &pieces {
                frames.push(api::sse_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
                ));
            }
            frames.push(api::sse_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            frames.push(api::sse_event(
                "message_delta",
                &json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                    "usage": {"output_tokens": output_tokens}
                }),
            ));
            frames.push(api::sse_event(
                "message_stop",
                &json!({"type": "message_stop"}),
            ));
            Payload::Sse(frames)
        } else {
            let body = json!({
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [{"type": "text", "text": content}],
                "stop_reason": stop_reason,
                "stop_sequence": null,
                "usage": {
                    "input_tokens": self.input_tokens,
                    "output_tokens": output_tokens,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0
                }
            });
            Payload::Json(body.to_string().into_bytes())
        };
        Answer {
            payload,
            completion_tokens: output_tokens,
        }
    }
}
