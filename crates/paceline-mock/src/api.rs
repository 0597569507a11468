//! What every simulated endpoint provides, and the request parsing they share.
//!
//! It knows no HTTP, keys or buckets: an endpoint turns a parsed body into an answer, and
//! [`crate::server`] does the rest.

use crate::config::MockConfig;
use crate::errors::{ApiError, Flavor};
use bytes::Bytes;
use rand::rngs::SmallRng;
use serde_json::{Map, Value};

/// A generated answer, ready to deliver.
#[derive(Debug)]
pub struct Answer {
    /// The body.
    pub payload: Payload,
    /// Output tokens generated (counted on the generated text).
    pub completion_tokens: u64,
}

/// An answer body.
#[derive(Debug)]
pub enum Payload {
    /// A complete JSON document.
    Json(Vec<u8>),
    /// Server-sent-event frames, each complete (`data: ...\n\n`).
    Sse(Vec<Bytes>),
}

/// What an endpoint may use to generate its answer.
pub struct AnswerCtx<'a> {
    /// The request's random source (seeded from `--seed` and the request's sequence number).
    pub rng: &'a mut SmallRng,
    /// The mock's configuration.
    pub config: &'a MockConfig,
    /// A unique hex id for the response object.
    pub id: &'a str,
    /// Unix seconds for `created`.
    pub created: i64,
}

/// One simulated endpoint: how it parses a request, what it charges, and what it answers.
pub trait Endpoint: Sized + Send + 'static {
    /// The provider conventions it follows (error bodies, headers, auth header).
    const FLAVOR: Flavor;

    /// Parse and validate the body.
    fn parse(body: &[u8], config: &MockConfig) -> Result<Self, ApiError>;
    /// The requested model.
    fn model(&self) -> &str;
    /// Prompt tokens, counted with the model's tokenizer.
    fn prompt_tokens(&self) -> u64;
    /// Output tokens reserved at admission: `max_tokens × n` (0 for embeddings).
    fn reserved_output(&self) -> u64;
    /// Generate the answer.
    fn answer(&self, ctx: &mut AnswerCtx<'_>) -> Answer;
}

/// Parse `body` as a JSON object.
pub fn json_object(body: &[u8], flavor: Flavor) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid_param(
            flavor,
            "body",
            "The request body must be a JSON object.".to_owned(),
        )),
        Err(err) => Err(ApiError::invalid_json(flavor, &err)),
    }
}

/// The required string `model`.
pub fn model(obj: &Map<String, Value>, flavor: Flavor) -> Result<String, ApiError> {
    match obj.get("model") {
        None | Some(Value::Null) => Err(ApiError::missing(flavor, "model")),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(ApiError::invalid_param(
            flavor,
            "model",
            "'model' must be a non-empty string.".to_owned(),
        )),
    }
}

/// An optional positive integer parameter.
pub fn positive_int(
    obj: &Map<String, Value>,
    name: &str,
    flavor: Flavor,
) -> Result<Option<u64>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(ApiError::invalid_param(
                flavor,
                name,
                format!("Invalid '{name}': expected an integer of at least 1, got {v}."),
            )),
        },
    }
}

/// `max_completion_tokens`, else `max_tokens`, else the configured default.
pub fn max_tokens(obj: &Map<String, Value>, config: &MockConfig) -> Result<u64, ApiError> {
    let flavor = Flavor::OpenAi;
    let explicit = match positive_int(obj, "max_completion_tokens", flavor)? {
        Some(n) => Some(n),
        None => positive_int(obj, "max_tokens", flavor)?,
    };
    Ok(explicit.unwrap_or(u64::from(config.default_max_tokens)))
}

/// `n` (default 1, at most 128 as OpenAI allows).
pub fn choices(obj: &Map<String, Value>) -> Result<u64, ApiError> {
    let n = positive_int(obj, "n", Flavor::OpenAi)?.unwrap_or(1);
    if n > 128 {
        return Err(ApiError::invalid_param(
            Flavor::OpenAi,
            "n",
            format!("Invalid 'n': at most 128, got {n}."),
        ));
    }
    Ok(n)
}

/// `stream` (default false) and `stream_options.include_usage` (default false).
pub fn stream_flags(obj: &Map<String, Value>) -> (bool, bool) {
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    (stream, usage)
}

/// One SSE frame `data: JSON\n\n`.
pub fn sse_data(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// One SSE frame with an event name (Anthropic).
pub fn sse_event(event: &str, value: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {value}\n\n"))
}

/// The terminating OpenAI frame.
pub fn sse_done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}
