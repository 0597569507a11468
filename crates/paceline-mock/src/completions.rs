//! `POST /v1/completions`: the legacy `text_completion` object (or its stream).
//!
//! `n` choices are generated however many prompts an array holds, so that the answer never
//! exceeds the admission charge `tokens(prompt) + max_tokens × n`.
//!
//! It builds the answer only: it knows no HTTP, keys or buckets ([`crate::server`] admits, charges
//! and delivers).

use crate::api::{self, Answer, AnswerCtx, Endpoint, Payload};
use crate::chat::FINGERPRINT;
use crate::config::MockConfig;
use crate::errors::{ApiError, Flavor};
use crate::text;
use crate::tokens;
use serde_json::{Value, json};

/// A parsed completion request.
#[derive(Debug)]
pub struct CompletionRequest {
    model: String,
    prompt_tokens: u64,
    max_tokens: u64,
    n: u64,
    stream: bool,
    include_usage: bool,
}

/// Tokens of a `prompt`/`input` value: a string, an array of strings (summed), an array of token
/// ids (its length) or an array of such arrays. `None` when the shape is not one of these.
pub fn count_text_or_ids(value: &Value, model: &str) -> Option<u64> {
    let bpe = tokens::encoding_for(model);
    match value {
        Value::String(s) => Some(tokens::count(bpe, s)),
        Value::Array(items) => items.iter().try_fold(0u64, |acc, item| match item {
            Value::String(s) => Some(acc + tokens::count(bpe, s)),
            Value::Number(_) => Some(acc + 1),
            Value::Array(ids) if ids.iter().all(Value::is_number) => Some(acc + ids.len() as u64),
            _ => None,
        }),
        _ => None,
    }
}

impl Endpoint for CompletionRequest {
    const FLAVOR: Flavor = Flavor::OpenAi;

    fn parse(body: &[u8], config: &MockConfig) -> Result<Self, ApiError> {
        let obj = api::json_object(body, Self::FLAVOR)?;
        let model = api::model(&obj, Self::FLAVOR)?;
        let prompt_tokens = match obj.get("prompt") {
            None | Some(Value::Null) => return Err(ApiError::missing(Self::FLAVOR, "prompt")),
            Some(p) => count_text_or_ids(p, &model).ok_or_else(|| {
                ApiError::invalid_param(
                    Self::FLAVOR,
                    "prompt",
                    "'prompt' must be a string, an array of strings or of token ids.".to_owned(),
                )
            })?,
        };
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
        let id = format!("cmpl-{}", ctx.id);
        let mut completion_tokens = 0;
        let mut choices = Vec::new();
        let mut frames = Vec::new();
        let chunk = |choice: Value| {
            json!({
                "id": id,
                "object": "text_completion",
                "created": ctx.created,
                "model": self.model,
                "system_fingerprint": FINGERPRINT,
                "choices": [choice]
            })
        };
        for i in 0..self.n {
            let (len, capped) =
                text::answer_length(ctx.rng, ctx.config.completion_tokens, self.max_tokens);
            let pieces = text::pieces(ctx.rng, len);
            let content: String = pieces.concat();
            completion_tokens += tokens::count(bpe, &content);
            let finish = if capped { "length" } else { "stop" };
            if self.stream {
                for piece in &pieces {
                    let c =
                        json!({"text": piece, "index": i, "logprobs": null, "finish_reason": null});
                    frames.push(api::sse_data(&chunk(c)));
                }
                let c = json!({"text": "", "index": i, "logprobs": null, "finish_reason": finish});
                frames.push(api::sse_data(&chunk(c)));
            } else {
                choices.push(
                    json!({"text": content, "index": i, "logprobs": null, "finish_reason": finish}),
                );
            }
        }
        let usage = json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens
        });
        let payload = if self.stream {
            if self.include_usage {
                let mut v = chunk(Value::Null);
                v["choices"] = json!([]);
                v["usage"] = usage;
                frames.push(api::sse_data(&v));
            }
            frames.push(api::sse_done());
            Payload::Sse(frames)
        } else {
            let body = json!({
                "id": id,
                "object": "text_completion",
                "created": ctx.created,
                "model": self.model,
                "system_fingerprint": FINGERPRINT,
                "choices": choices,
                "usage": usage
            });
            Payload::Json(body.to_string().into_bytes())
        };
        Answer {
            payload,
            completion_tokens,
        }
    }
}
