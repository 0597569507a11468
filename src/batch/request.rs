//! The validated request: one line of the input, checked and ready to send.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::batch::error::LineError;

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

/// One validated request from the input.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRequest {
    /// The caller's id for this request; unique within a valid input.
    pub custom_id: String,
    /// Where the request goes.
    pub endpoint: Endpoint,
    /// The JSON request body, sent as is (a JSON object with at least `model`).
    pub body: Value,
    /// 1-based line number in the input (for CSV, the line where the record starts).
    pub line: u64,
}

impl BatchRequest {
    /// Parses and checks one line of OpenAI Batch API JSONL
    /// (`{"custom_id", "method": "POST", "url", "body"}`), or of Anthropic's Message Batches
    /// (`{"custom_id", "params"}`, sent to `/v1/messages`); `line` is its 1-based number.
    pub fn parse_batch_line(text: &str, line: u64) -> Result<BatchRequest, LineError> {
        parse_batch_value(parse_json_object(text, line)?, line)
    }
}

/// Parses `text` as a JSON object, with a line error naming serde's column or the wrong kind.
pub(crate) fn parse_json_object(text: &str, line: u64) -> Result<Map<String, Value>, LineError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(LineError::new(
            line,
            format!("expected a JSON object, found {}", json_kind(&other)),
        )),
        Err(err) => {
            let full = err.to_string();
            // serde_json appends " at line L column C"; the line is always 1 here, so keep the
            // message and report the column ourselves.
            let reason = full
                .rsplit_once(" at line ")
                .map_or(full.as_str(), |(reason, _)| reason);
            Err(LineError::new(
                line,
                format!("malformed JSON at column {}: {reason}", err.column()),
            ))
        }
    }
}

/// Checks the fields of a Batch API line already parsed into an object.
fn parse_batch_value(mut map: Map<String, Value>, line: u64) -> Result<BatchRequest, LineError> {
    let fail = |message: String| Err(LineError::new(line, message));
    let custom_id = match map.remove("custom_id") {
        None => return fail("missing field `custom_id`".to_owned()),
        Some(Value::String(id)) if id.is_empty() => return fail("`custom_id` is empty".to_owned()),
        Some(Value::String(id)) => id,
        Some(other) => {
            return fail(format!(
                "`custom_id` must be a string, found {}",
                json_kind(&other)
            ));
        }
    };
    if !map.contains_key("url") && !map.contains_key("method") && map.contains_key("params") {
        return parse_params_value(custom_id, map, line);
    }
    match map.get("method") {
        None => return fail("missing field `method` (must be \"POST\")".to_owned()),
        Some(Value::String(m)) if m == "POST" => {}
        Some(other) => return fail(format!("`method` must be \"POST\", found {other}")),
    }
    let endpoint = match map.get("url") {
        None => {
            return fail(format!(
                "missing field `url` (supported: {})",
                Endpoint::supported_list()
            ));
        }
        Some(Value::String(url)) => match Endpoint::from_path(url) {
            Some(endpoint) => endpoint,
            None => {
                return fail(format!(
                    "unsupported `url` \"{url}\" (supported: {})",
                    Endpoint::supported_list()
                ));
            }
        },
        Some(other) => {
            return fail(format!(
                "`url` must be a string, found {}",
                json_kind(other)
            ));
        }
    };
    let body = match map.remove("body") {
        None => return fail("missing field `body`".to_owned()),
        Some(Value::Object(body)) => body,
        Some(other) => {
            return fail(format!(
                "`body` must be a JSON object, found {}",
                json_kind(&other)
            ));
        }
    };
    if let Err(message) = endpoint.check_body(&body) {
        return fail(message);
    }
    Ok(BatchRequest {
        custom_id,
        endpoint,
        body: Value::Object(body),
        line,
    })
}

/// The rest of an Anthropic Message Batches line (`{"custom_id", "params"}`): `params` is a
/// Messages API request body.
fn parse_params_value(
    custom_id: String,
    mut map: Map<String, Value>,
    line: u64,
) -> Result<BatchRequest, LineError> {
    let endpoint = Endpoint::Messages;
    let body = match map.remove("params") {
        Some(Value::Object(body)) => body,
        Some(other) => {
            return Err(LineError::new(
                line,
                format!(
                    "`params` must be a JSON object, found {}",
                    json_kind(&other)
                ),
            ));
        }
        None => return Err(LineError::new(line, "missing field `params`".to_owned())),
    };
    if let Err(message) = endpoint.check_body(&body) {
        return Err(LineError::new(line, message.replace("`body", "`params")));
    }
    Ok(BatchRequest {
        custom_id,
        endpoint,
        body: Value::Object(body),
        line,
    })
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
