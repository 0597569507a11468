//! The output file of `paceline run`, in the OpenAI Batch API output format: one JSON line per
//! `custom_id`,
//! `{"id": "batch_req_…", "custom_id": …, "response": {"status_code", "request_id", "body"} | null,
//! "error": {"code", "message"} | null}`.

use crate::engine::{ProviderAnswer, Verdict};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

    /// The line for a request that ended with `verdict`: the provider's answer as received
    /// (its body parsed as JSON where it is), and for a failure the code and message.
    pub fn from_verdict(custom_id: impl Into<String>, verdict: Verdict) -> Self {
        let response = |answer: &ProviderAnswer| {
            ProviderResponse::new(
                answer.status,
                answer.request_id.clone().unwrap_or_default(),
                ProviderResponse::body_from_bytes(&answer.body),
            )
        };
        match verdict {
            Verdict::Succeeded(answer) => {
                let r = response(&answer);
                Self::success(custom_id, r.status_code, r.request_id, r.body)
            }
            Verdict::Failed {
                answer,
                code,
                message,
            } => Self::failure(custom_id, answer.as_ref().map(response), code, message),
        }
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
