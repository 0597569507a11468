//! The output file of `paceline run`, in the OpenAI Batch API output format: one JSON line per
//! `custom_id`,
//! `{"id": "batch_req_…", "custom_id": …, "response": {"status_code", "request_id", "body"} | null,
//! "error": {"code", "message"} | null}`.
//!
//! It turns the engine's [`Verdict`] into a line and must not know where the line goes (the store's
//! writer appends it, the distributed worker stores it in Redis) nor how the request was sent.

use crate::engine::{ProviderAnswer, Verdict};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// Which results format the output is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// OpenAI's Batch API output ([`OutputRecord`]).
    #[default]
    OpenAi,
    /// Anthropic's Message Batches results ([`crate::batch::MessageBatchResult`]).
    Anthropic,
}

impl OutputFormat {
    /// The command-line name: `openai` or `anthropic`.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::OpenAi => "openai",
            OutputFormat::Anthropic => "anthropic",
        }
    }
}

/// The provider's answer to a request, as recorded in the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderResponse {
    /// The HTTP status code.
    pub status_code: u16,
    /// The provider's request id (the `x-request-id` header), or empty if it sent none.
    pub request_id: String,
    /// The response body: its JSON value, or a JSON string holding the text when it was not JSON
    /// (see [`ProviderResponse::body_from_bytes`]).
    pub body: Value,
}

impl ProviderResponse {
    /// A provider response from its parts.
    pub fn new(status_code: u16, request_id: impl Into<String>, body: Value) -> Self {
        Self {
            status_code,
            request_id: request_id.into(),
            body,
        }
    }

    /// A response body as recorded: the parsed JSON when `bytes` is JSON, otherwise the text
    /// (invalid UTF-8 replaced) as a JSON string.
    pub fn body_from_bytes(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }
}

/// Why a request finally failed, as recorded in the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordError {
    /// A machine-readable code, e.g. `insufficient_quota`, `max_attempts_exceeded`.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

/// One line of the output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// `batch_req_` followed by 24 random alphanumeric characters.
    pub id: String,
    /// The request's `custom_id`.
    pub custom_id: String,
    /// The provider's response, when there was one (serialized as `null` otherwise).
    pub response: Option<ProviderResponse>,
    /// Why the request failed, or `null` for a success.
    pub error: Option<RecordError>,
}

impl OutputRecord {
    /// A successful request: the provider's status, request id and body, `"error": null`.
    pub fn success(
        custom_id: impl Into<String>,
        status_code: u16,
        request_id: impl Into<String>,
        body: Value,
    ) -> Self {
        Self {
            id: new_record_id(),
            custom_id: custom_id.into(),
            response: Some(ProviderResponse::new(status_code, request_id, body)),
            error: None,
        }
    }

    /// A final failure: keeps the provider's last response when there was one (else
    /// `"response": null`) and sets `"error": {"code", "message"}`.
    pub fn failure(
        custom_id: impl Into<String>,
        response: Option<ProviderResponse>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            id: new_record_id(),
            custom_id: custom_id.into(),
            response,
            error: Some(RecordError {
                code: code.into(),
                message: message.into(),
            }),
        }
    }

    /// The output line for a request that ended with `verdict`: the provider's answer as
    /// received, and for a failure the code and message. A JSON body is copied into the line
    /// as it came (not parsed into a document and written again: most of a result's cost);
    /// one that spans lines is rewritten compactly, and one that is not JSON becomes a string.
    pub fn line_from_verdict(custom_id: &str, verdict: &Verdict) -> serde_json::Result<String> {
        let line = match verdict {
            Verdict::Succeeded(answer) => RecordLine {
                id: new_record_id(),
                custom_id,
                response: Some(ResponseLine::of(answer)),
                error: None,
            },
            Verdict::Failed {
                answer,
                code,
                message,
            } => RecordLine {
                id: new_record_id(),
                custom_id,
                response: answer.as_ref().map(ResponseLine::of),
                error: Some(RecordErrorLine {
                    code: code.code(),
                    message,
                }),
            },
        };
        serde_json::to_string(&line)
    }

    /// Whether this record is a success (`error` is null).
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }
}

/// A fresh output record id: `batch_req_` + 24 random alphanumeric characters.
pub fn new_record_id() -> String {
    let mut id = String::with_capacity(34);
    id.push_str("batch_req_");
    id.extend(
        rand::rng()
            .sample_iter(Alphanumeric)
            .take(24)
            .map(char::from),
    );
    id
}

/// [`OutputRecord`] as written: the same fields in the same order, borrowing the answer.
#[derive(Serialize)]
struct RecordLine<'a> {
    id: String,
    custom_id: &'a str,
    response: Option<ResponseLine<'a>>,
    error: Option<RecordErrorLine<'a>>,
}

/// [`ProviderResponse`] as written.
#[derive(Serialize)]
struct ResponseLine<'a> {
    status_code: u16,
    request_id: &'a str,
    body: BodyLine<'a>,
}

impl<'a> ResponseLine<'a> {
    fn of(answer: &'a ProviderAnswer) -> Self {
        ResponseLine {
            status_code: answer.status,
            request_id: answer.request_id.as_deref().unwrap_or_default(),
            body: BodyLine::of(&answer.body),
        }
    }
}

/// [`RecordError`] as written.
#[derive(Serialize)]
struct RecordErrorLine<'a> {
    code: &'a str,
    message: &'a str,
}

/// A response body as written into one output line.
#[derive(Serialize)]
#[serde(untagged)]
enum BodyLine<'a> {
    /// JSON on one line, copied as it came.
    Raw(&'a RawValue),
    /// JSON spanning lines (rewritten compactly), or text that is not JSON (a string).
    Value(Value),
}

impl<'a> BodyLine<'a> {
    fn of(bytes: &'a [u8]) -> Self {
        // A raw line break would split the output line; inside JSON strings they are escaped,
        // so one here is whitespace between tokens (a final one is common, and dropped).
        let json = bytes.trim_ascii();
        if !json.iter().any(|&b| b == b'\n' || b == b'\r')
            && let Ok(raw) = serde_json::from_slice::<&RawValue>(json)
        {
            return BodyLine::Raw(raw);
        }
        BodyLine::Value(ProviderResponse::body_from_bytes(bytes))
    }
}
