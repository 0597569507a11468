//! The validated request: one line of the input, checked and ready to send.
//!
//! It must not know the input file or its format detection ([`super::input`]), nor how the request
//! is sent.

use serde_json::{Map, Value};

use crate::api::{Endpoint, json_kind};
use crate::batch::error::LineError;

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

/// Whether a line's object is an Anthropic Message Batches request (`{"custom_id", "params"}`,
/// with no `url` or `method`) rather than an OpenAI Batch API one.
pub(crate) fn is_message_batches(map: &Map<String, Value>) -> bool {
    map.contains_key("params") && !map.contains_key("url") && !map.contains_key("method")
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
    if is_message_batches(&map) {
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
