//! `POST /v1/responses`: OpenAI's Responses API — the `response` object, or its typed event
//! stream (`response.created`, `response.output_text.delta`, ..., `response.completed`).
//!
//! It builds the answer only: it knows no HTTP, keys or buckets ([`crate::server`] admits, charges
//! and delivers).

use crate::api::{self, Answer, AnswerCtx, Endpoint, Payload};
use crate::config::MockConfig;
use crate::errors::{ApiError, Flavor};
use crate::text;
use crate::tokens::{self, ChatMessage};
use serde_json::{Value, json};

/// A parsed Responses API request.
#[derive(Debug)]
pub struct ResponsesRequest {
    model: String,
    prompt_tokens: u64,
    max_output_tokens: u64,
    stream: bool,
}

/// Prompt tokens of `input` (a string, or a list of message items) plus `instructions`.
fn count_input(input: &Value, instructions: Option<&str>, model: &str) -> Result<u64, ApiError> {
    let bpe = tokens::encoding_for(model);
    let flavor = Flavor::OpenAi;
    let base = match input {
        Value::String(text) => tokens::count(bpe, text),
        Value::Array(items) if !items.is_empty() => {
            let parsed: Vec<ChatMessage<'_>> = items
                .iter()
                .map(|item| ChatMessage {
                    role: item.get("role").and_then(Value::as_str).unwrap_or(""),
                    content: item
                        .get("content")
                        .map(tokens::content_text)
                        .unwrap_or_default(),
                    name: item.get("name").and_then(Value::as_str),
                })
                .collect();
            tokens::chat_prompt(bpe, &parsed)
        }
        Value::Null => return Err(ApiError::missing(flavor, "input")),
        _ => {
            return Err(ApiError::invalid_param(
                flavor,
                "input",
                "'input' must be a string or a non-empty array of input items.".to_owned(),
            ));
        }
    };
    Ok(base + instructions.map_or(0, |i| tokens::count(bpe, i)))
}

impl Endpoint for ResponsesRequest {
    const FLAVOR: Flavor = Flavor::OpenAi;

    fn parse(body: &[u8], config: &MockConfig) -> Result<Self, ApiError> {
        let obj = api::json_object(body, Self::FLAVOR)?;
        let model = api::model(&obj, Self::FLAVOR)?;
        let input = obj.get("input").unwrap_or(&Value::Null);
        let instructions = obj.get("instructions").and_then(Value::as_str);
        let prompt_tokens = count_input(input, instructions, &model)?;
        let max_output_tokens = api::positive_int(&obj, "max_output_tokens", Self::FLAVOR)?
            .unwrap_or(u64::from(config.default_max_tokens));
        let (stream, _) = api::stream_flags(&obj);
        Ok(Self {
            model,
            prompt_tokens,
            max_output_tokens,
            stream,
        })
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn prompt_tokens(&self) -> u64 {
        self.prompt_tokens
    }

    fn reserved_output(&self) -> u64 {
        self.max_output_tokens
    }

    fn answer(&self, ctx: &mut AnswerCtx<'_>) -> Answer {
        let bpe = tokens::encoding_for(&self.model);
        let (len, capped) = text::answer_length(
            ctx.rng,
            ctx.config.completion_tokens,
            self.max_output_tokens,
        );
        let pieces = text::pieces(ctx.rng, len);
        let content: String = pieces.concat();
        let completion_tokens = tokens::count(bpe, &content);
        let id = format!("resp_{}", ctx.id);
        let message_id = format!("msg_{}", ctx.id);
        let response = |status: &str, text: Option<&str>| {
            let output = match text {
                Some(text) => json!([{
                    "type": "message",
                    "id": message_id,
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]
                }]),
                None => json!([]),
            };
            let usage = text.map(|_| {
                json!({
                    "input_tokens": self.prompt_tokens,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": completion_tokens,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": self.prompt_tokens + completion_tokens
                })
            });
            json!({
                "id": id,
                "object": "response",
                "created_at": ctx.created,
                "status": status,
                "incomplete_details": if capped && text.is_some() {
                    json!({"reason": "max_output_tokens"})
                } else {
                    Value::Null
                },
                "model": self.model,
                "output": output,
                "max_output_tokens": self.max_output_tokens,
                "usage": usage
            })
        };
        let final_status = if capped { "incomplete" } else { "completed" };
        let payload = if self.stream {
            let mut seq = 0u64;
            let mut event = |name: &str, mut value: Value| {
                value["type"] = json!(name);
                value["sequence_number"] = json!(seq);
                seq += 1;
                api::sse_event(name, &value)
            };
            let mut frames = vec![event(
                "response.created",
                json!({"response": response("in_progress", None)}),
            )];
            for piece in &pieces {
                frames.push(event(
                    "response.output_text.delta",
                    json!({"item_id": message_id, "output_index": 0, "content_index": 0, "delta": piece}),
                ));
            }
            frames.push(event(
                "response.output_text.done",
                json!({"item_id": message_id, "output_index": 0, "content_index": 0, "text": content}),
            ));
            let done = if capped {
                "response.incomplete"
            } else {
                "response.completed"
            };
            frames.push(event(
                done,
                json!({"response": response(final_status, Some(&content))}),
            ));
            Payload::Sse(frames)
        } else {
            Payload::Json(
                response(final_status, Some(&content))
                    .to_string()
                    .into_bytes(),
            )
        };
        Answer {
            payload,
            completion_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_string_and_item_inputs() {
        let model = "gpt-4o-mini";
        let bpe = tokens::encoding_for(model);
        let text = count_input(&json!("hello world"), None, model).unwrap();
        assert_eq!(text, tokens::count(bpe, "hello world"));
        let items = count_input(
            &json!([{"role": "user", "content": "hello world"}]),
            Some("be brief"),
            model,
        )
        .unwrap();
        // 3 (priming) + 3 (message) + 1 ("user") + 2 ("hello world") + 2 ("be brief")
        assert_eq!(items, 11);
        assert!(count_input(&Value::Null, None, model).is_err());
    }
}
