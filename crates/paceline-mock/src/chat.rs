//! `POST /v1/chat/completions`: the `chat.completion` object, or `chat.completion.chunk` frames.
//!
//! It builds the answer only: it knows no HTTP, keys or buckets ([`crate::server`] admits, charges
//! and delivers).

use crate::api::{self, Answer, AnswerCtx, Endpoint, Payload};
use crate::config::MockConfig;
use crate::errors::{ApiError, Flavor};
use crate::text;
use crate::tokens::{self, ChatMessage};
use serde_json::{Value, json};

/// A parsed chat completion request.
#[derive(Debug)]
pub struct ChatRequest {
    model: String,
    prompt_tokens: u64,
    max_tokens: u64,
    n: u64,
    stream: bool,
    include_usage: bool,
}

/// The system fingerprint every OpenAI-shaped answer carries.
pub const FINGERPRINT: &str = "fp_mock0001";

/// Parse OpenAI-style `messages` and count their prompt tokens with `model`'s tokenizer.
pub fn count_messages(
    messages: Option<&Value>,
    model: &str,
    flavor: Flavor,
    extra: Option<ChatMessage<'_>>,
) -> Result<u64, ApiError> {
    let list = match messages {
        None | Some(Value::Null) => return Err(ApiError::missing(flavor, "messages")),
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(_) => {
            return Err(ApiError::invalid_param(
                flavor,
                "messages",
                "'messages' must be a non-empty array.".to_owned(),
            ));
        }
    };
    let mut parsed = Vec::with_capacity(list.len() + 1);
    parsed.extend(extra);
    for (i, m) in list.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::missing(flavor, &format!("messages[{i}].role")))?;
        parsed.push(ChatMessage {
            role,
            content: m
                .get("content")
                .map(tokens::content_text)
                .unwrap_or_default(),
            name: m.get("name").and_then(Value::as_str),
        });
    }
    Ok(tokens::chat_prompt(tokens::encoding_for(model), &parsed))
}

fn finish_reason(capped: bool) -> &'static str {
    if capped { "length" } else { "stop" }
}

impl Endpoint for ChatRequest {
    const FLAVOR: Flavor = Flavor::OpenAi;

    fn parse(body: &[u8], config: &MockConfig) -> Result<Self, ApiError> {
        let obj = api::json_object(body, Self::FLAVOR)?;
        let model = api::model(&obj, Self::FLAVOR)?;
        let prompt_tokens = count_messages(obj.get("messages"), &model, Self::FLAVOR, None)?;
        let max_tokens = api::max_tokens(&obj, config)?;
        let n = api::choices(&obj)?;
        let (stream, include_usage) = api::stream_flags(&obj);
        Ok(Self {
            model,
            prompt_tokens,
            max_tokens,
            n,
            stream,
            include_usage,
        })
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn prompt_tokens(&self) -> u64 {
        self.prompt_tokens
    }

    fn reserved_output(&self) -> u64 {
        self.max_tokens.saturating_mul(self.n)
    }

    fn answer(&self, ctx: &mut AnswerCtx<'_>) -> Answer {
        let bpe = tokens::encoding_for(&self.model);
        let mut answers = Vec::with_capacity(self.n as usize);
        let mut completion_tokens = 0;
        for _ in 0..self.n {
            let (len, capped) =
                text::answer_length(ctx.rng, ctx.config.completion_tokens, self.max_tokens);
            let pieces = text::pieces(ctx.rng, len);
            let content: String = pieces.concat();
            completion_tokens += tokens::count(bpe, &content);
            answers.push((pieces, content, finish_reason(capped)));
        }
        let usage = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            }
        });
        let id = format!("chatcmpl-{}", ctx.id);
        let payload = if self.stream {
            Payload::Sse(self.frames(&id, ctx.created, &answers, usage))
        } else {
            let choices: Vec<Value> = answers
                .iter()
                .enumerate()
                .map(|(i, (_, content, finish))| {
                    json!({
                        "index": i,
                        "message": {
                            "role": "assistant",
                            "content": content,
                            "refusal": null,
                            "annotations": []
                        },
                        "logprobs": null,
                        "finish_reason": finish
                    })
                })
                .collect();
            let body = json!({
                "id": id,
                "object": "chat.completion",
                "created": ctx.created,
                "model": self.model,
                "choices": choices,
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": FINGERPRINT
            });
            Payload::Json(body.to_string().into_bytes())
        };
        Answer {
            payload,
            completion_tokens,
        }
    }
}

type Generated = (Vec<&'static str>, String, &'static str);

impl ChatRequest {
    fn frames(
        &self,
        id: &str,
        created: i64,
        answers: &[Generated],
        usage: Value,
    ) -> Vec<bytes::Bytes> {
        let chunk = |choices: Value| {
            let mut v = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": FINGERPRINT,
                "choices": choices
            });
            if self.include_usage {
                v["usage"] = Value::Null;
            }
            v
        };
        let mut frames = Vec::new();
        for (i, (pieces, _, finish)) in answers.iter().enumerate() {
            let first = json!([{
                "index": i,
                "delta": {"role": "assistant", "content": "", "refusal": null},
                "logprobs": null,
                "finish_reason": null
            }]);
            frames.push(api::sse_data(&chunk(first)));
            for piece in pieces {
                let delta = json!([{
                    "index": i,
                    "delta": {"content": piece},
                    "logprobs": null,
                    "finish_reason": null
                }]);
                frames.push(api::sse_data(&chunk(delta)));
            }
            let last =
                json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": finish}]);
            frames.push(api::sse_data(&chunk(last)));
        }
        if self.include_usage {
            let mut v = chunk(json!([]));
            v["usage"] = usage;
            frames.push(api::sse_data(&v));
        }
        frames.push(api::sse_done());
        frames
    }
}
