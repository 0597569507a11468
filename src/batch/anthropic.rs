//! Anthropic's Message Batches result format, written by `paceline run --output-format
//! anthropic`: one line per `custom_id`,
//! `{"custom_id": …, "result": {"type": "succeeded", "message": {…}}}`, or
//! `{"type": "errored", "error": {"type": "error", "error": {"type", "message"}}}`, or
//! `{"type": "canceled"}` / `{"type": "expired"}` (Retrieve Message Batch results reference).
//!
//! A request that failed with an answer from the provider keeps the provider's error body; one
//! that failed without one (attempts exhausted on timeouts, a request too large for the limits)
//! gets an error object in the same shape with paceline's code as its `type`. A request that
//! could not go before its deadline is `expired`.
//!
//! It owns the shape of those lines only, and must not know the engine, the store or the provider
//! module: the store's writer hands it the provider's body or paceline's code.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One line of the results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageBatchResult {
    /// The request's `custom_id`.
    pub custom_id: String,
    /// How it ended.
    pub result: BatchResult,
}

/// How one request of a Message Batch ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BatchResult {
    /// The Messages API answered with a message.
    Succeeded {
        /// The `message` object as the API returned it.
        message: Value,
    },
    /// The request failed for good.
    Errored {
        /// An Anthropic error response: `{"type": "error", "error": {"type", "message"}}`.
        error: Value,
    },
    /// The request was canceled before it was sent.
    Canceled,
    /// The request could not be sent before its deadline.
    Expired,
}

impl MessageBatchResult {
    /// A success: the provider's message body.
    pub fn succeeded(custom_id: impl Into<String>, message: Value) -> Self {
        Self {
            custom_id: custom_id.into(),
            result: BatchResult::Succeeded { message },
        }
    }

    /// A final failure: the provider's error body when it is an Anthropic error response,
    /// else one built from `code` and `message`.
    pub fn errored(
        custom_id: impl Into<String>,
        provider_body: Option<Value>,
        code: &str,
        message: &str,
    ) -> Self {
        let error = match provider_body {
            Some(body) if body.get("type").and_then(Value::as_str) == Some("error") => body,
            _ => json!({"type": "error", "error": {"type": code, "message": message}}),
        };
        Self {
            custom_id: custom_id.into(),
            result: BatchResult::Errored { error },
        }
    }

    /// A request whose deadline passed before it could be sent.
    pub fn expired(custom_id: impl Into<String>) -> Self {
        Self {
            custom_id: custom_id.into(),
            result: BatchResult::Expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_the_documented_shapes() {
        let ok = MessageBatchResult::succeeded("a", json!({"id": "msg_1", "type": "message"}));
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            json!({"custom_id": "a", "result": {"type": "succeeded", "message": {"id": "msg_1", "type": "message"}}})
        );
        let provider =
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}});
        let errored = MessageBatchResult::errored("b", Some(provider.clone()), "x", "y");
        assert_eq!(
            serde_json::to_value(&errored).unwrap(),
            json!({"custom_id": "b", "result": {"type": "errored", "error": provider}})
        );
        let ours = MessageBatchResult::errored("c", None, "max_attempts_exceeded", "gave up");
        assert_eq!(
            serde_json::to_value(&ours).unwrap()["result"]["error"],
            json!({"type": "error", "error": {"type": "max_attempts_exceeded", "message": "gave up"}})
        );
        assert_eq!(
            serde_json::to_value(MessageBatchResult::expired("d")).unwrap(),
            json!({"custom_id": "d", "result": {"type": "expired"}})
        );
        let back: MessageBatchResult =
            serde_json::from_value(json!({"custom_id": "e", "result": {"type": "canceled"}}))
                .unwrap();
        assert_eq!(back.result, BatchResult::Canceled);
    }
}
