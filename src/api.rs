//! The request types every layer shares: the API [`Endpoint`] a request goes to (its URL path
//! and what its body must hold). The bottom of the crate: it imports nothing of paceline, so
//! the tokenizer, the quota's key pool, the providers, the engine, the batch input and the
//! gateway can all use it. It must not know how requests are read, paced, sent or answered.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Supported endpoints, written as their URL paths (`/v1/chat/completions`, ...) in input files,
/// in serialized form and by [`Display`](fmt::Display) / [`FromStr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    #[default]
    #[serde(rename = "/v1/chat/completions")]
    ChatCompletions,
    /// `/v1/completions`.
    #[serde(rename = "/v1/completions")]
    Completions,
    /// `/v1/embeddings`.
    #[serde(rename = "/v1/embeddings")]
    Embeddings,
    /// `/v1/responses`.
    #[serde(rename = "/v1/responses")]
    Responses,
    /// `/v1/messages` (Anthropic's Messages API).
    #[serde(rename = "/v1/messages")]
    Messages,
}

impl Endpoint {
    /// Every supported endpoint, in the order error messages list them.
    pub const ALL: [Endpoint; 5] = [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Messages,
    ];

    /// The URL path, e.g. `/v1/chat/completions`.
    pub fn path(&self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Messages => "/v1/messages",
        }
    }

    /// Its operation in OpenTelemetry's generative-AI conventions (`gen_ai.operation.name`).
    pub fn operation_name(&self) -> &'static str {
        match self {
            Endpoint::Completions => "text_completion",
            Endpoint::Embeddings => "embeddings",
            Endpoint::ChatCompletions | Endpoint::Responses | Endpoint::Messages => "chat",
        }
    }

    /// The endpoint whose URL path is exactly `path`.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.path() == path)
    }

    /// The supported paths, comma-separated, for error messages.
    pub fn supported_list() -> String {
        Endpoint::ALL.map(|e| e.path()).join(", ")
    }

    /// The body field (besides `model`) this endpoint requires, and what kind it must be.
    fn required_field(&self) -> (&'static str, Required) {
        match self {
            Endpoint::ChatCompletions | Endpoint::Messages => ("messages", Required::Array),
            Endpoint::Completions => ("prompt", Required::Present),
            Endpoint::Embeddings | Endpoint::Responses => ("input", Required::Present),
        }
    }

    /// Checks that a request body has what this endpoint needs: a non-empty string `model` and
    /// the endpoint's own field (`messages` array, `prompt`, or `input`; Messages also a
    /// positive integer `max_tokens`, which Anthropic requires). Returns the problem.
    pub fn check_body(&self, body: &Map<String, Value>) -> Result<(), String> {
        match body.get("model") {
            None => return Err("`body` is missing field `model`".to_owned()),
            Some(Value::String(m)) if m.is_empty() => {
                return Err("`body.model` is empty".to_owned());
            }
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(format!(
                    "`body.model` must be a string, found {}",
                    json_kind(other)
                ));
            }
        }
        if *self == Endpoint::Messages {
            match body.get("max_tokens") {
                None => {
                    return Err(format!(
                        "`body` is missing field `max_tokens` (required by {})",
                        self.path()
                    ));
                }
                Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {}
                Some(other) => {
                    return Err(format!(
                        "`body.max_tokens` must be a positive integer, found {other}"
                    ));
                }
            }
        }
        let (field, required) = self.required_field();
        match (body.get(field), required) {
            (None, _) => Err(format!(
                "`body` is missing field `{field}` (required by {})",
                self.path()
            )),
            (Some(Value::Array(_)), Required::Array) | (Some(_), Required::Present) => Ok(()),
            (Some(other), Required::Array) => Err(format!(
                "`body.{field}` must be an array, found {}",
                json_kind(other)
            )),
        }
    }
}

/// What an endpoint's required body field must be.
#[derive(Clone, Copy)]
enum Required {
    /// Present and a JSON array.
    Array,
    /// Present, any JSON value (string, array of strings or tokens, ...).
    Present,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

impl FromStr for Endpoint {
    type Err = String;

    /// Parses a URL path such as `/v1/chat/completions`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::from_path(s).ok_or_else(|| {
            format!(
                "unsupported endpoint `{s}` (supported: {})",
                Endpoint::supported_list()
            )
        })
    }
}

/// "a string", "an array", ... for error messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
