//! The providers' Batch APIs, client side: OpenAI's Files and Batches, Anthropic's Message
//! Batches, each call one HTTP request over `reqwest`, answers read into provider-neutral
//! [`BatchStatus`] and [`ResultLine`]s.
//!
//! It asks the [`Upstream`] for URLs and the [`Provider`] for authentication; it must not know
//! the store, shards or what a result means for the job.

use crate::provider::{BatchApi, BatchSpec, Provider};
use crate::upstream::{ApiKey, Upstream};
use bytes::Bytes;
use serde_json::{Value, json};
use std::time::Duration;

/// A Batch API call that did not get the answer it needed.
#[derive(Debug, thiserror::Error)]
pub enum BatchApiError {
    /// No answer (connection, timeout).
    #[error("{what}: {detail}")]
    Transport {
        /// The call.
        what: String,
        /// What went wrong (no key in it: reqwest's messages carry the URL, never headers).
        detail: String,
    },
    /// An error status.
    #[error("{what}: HTTP {status}: {message}")]
    Status {
        /// The call.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
        /// The provider's retry hint.
        retry_after: Option<Duration>,
    },
    /// An answer that is not the documented shape.
    #[error("{what}: unexpected answer: {detail}")]
    Shape {
        /// The call.
        what: String,
        /// What was missing.
        detail: String,
    },
}

impl BatchApiError {
    /// Whether asking again later may succeed (no answer, 408, 409, 429, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            BatchApiError::Transport { .. } => true,
            BatchApiError::Status { status, .. } => {
                matches!(status, 408 | 409 | 429) || *status >= 500
            }
            BatchApiError::Shape { .. } => false,
        }
    }

    /// Whether the provider refused for a rate or queue limit (429).
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, BatchApiError::Status { status: 429, .. })
    }

    /// The provider's retry hint, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BatchApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A batch as the provider describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStatus {
    /// The provider's id.
    pub id: String,
    /// The provider's status word (`validating`, `in_progress`, `ended`, ...).
    pub status: String,
    /// Whether processing is over (results, if any, can be read).
    pub ended: bool,
    /// Requests done so far (succeeded).
    pub completed: u64,
    /// Requests failed so far (errored, expired, cancelled).
    pub failed: u64,
    /// OpenAI: the output file.
    pub output_file_id: Option<String>,
    /// OpenAI: the error file.
    pub error_file_id: Option<String>,
    /// OpenAI: the batch failed because the model's enqueued-token limit was reached; the
    /// limit, when the message states it.
    pub enqueued_refusal: Option<Option<u64>>,
    /// OpenAI: the batch failed validation (the first error's code and message).
    pub invalid: Option<(String, String)>,
    /// OpenAI: the batch's `metadata`.
    pub metadata: Value,
    /// Requests in the batch.
    pub total: u64,
    /// Anthropic: where its results are.
    pub results_url: Option<String>,
    /// When it was created (ms since the epoch), if the answer says.
    pub created_ms: Option<i64>,
}

/// What one request of an ended batch came to.
#[derive(Debug, Clone, PartialEq)]
pub enum LineOutcome {
    /// The endpoint answered (any status).
    Answer {
        /// HTTP status.
        status: u16,
        /// The provider's request id.
        request_id: Option<String>,
        /// The answer body.
        body: Bytes,
    },
    /// It never ran: the batch expired before it.
    Expired,
    /// It never ran: the batch was cancelled.
    Cancelled,
    /// It failed without an answer (OpenAI's `error` with a code).
    Error {
        /// The code.
        code: String,
        /// The message.
        message: String,
    },
}

/// One line of an ended batch's results.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultLine {
    /// The request.
    pub custom_id: String,
    /// What it came to.
    pub outcome: LineOutcome,
}

/// A Batch API client for one provider and key.
#[derive(Debug, Clone)]
pub struct BatchClient {
    http: reqwest::Client,
    upstream: Upstream,
    key: ApiKey,
    spec: BatchSpec,
}

fn transport(what: &str, e: reqwest::Error) -> BatchApiError {
    BatchApiError::Transport {
        what: what.to_string(),
        detail: e.without_url().to_string(),
    }
}

fn shape(what: &str, detail: impl Into<String>) -> BatchApiError {
    BatchApiError::Shape {
        what: what.to_string(),
        detail: detail.into(),
    }
}

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(str::to_string)
}

/// "Limit: 2,000,000 enqueued tokens" → 2000000.
pub fn enqueued_limit_in(message: &str) -> Option<u64> {
    let (_, rest) = message.split_once("Limit: ")?;
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl BatchClient {
    /// A client for `upstream`'s provider with `key`; `None` when the provider has no Batch
    /// API paceline speaks.
    pub fn new(upstream: Upstream, key: ApiKey) -> Result<Option<Self>, BatchApiError> {
        let Some(spec) = upstream.provider().batch() else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(upstream.timeout().max(Duration::from_secs(30)))
            .build()
            .map_err(|e| transport("building the HTTP client", e))?;
        Ok(Some(BatchClient {
            http,
            upstream,
            key,
            spec,
        }))
    }

    /// The key's fingerprint (`ENV#1a2b3c4d`), as attempt rows name it.
    pub fn key_label(&self) -> &str {
        self.key.label()
    }

    /// Which Batch API it speaks.
    pub fn api(&self) -> BatchApi {
        self.spec.api
    }

    fn provider(&self) -> Provider {
        self.upstream.provider()
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut builder = self.http.request(method, self.upstream.url_for(path, ""));
        for (name, value) in self.provider().auth_headers(self.key.secret()) {
            builder = builder.header(name, value);
        }
        builder
    }

    async fn send(
        &self,
        what: &str,
        builder: reqwest::RequestBuilder,
    ) -> Result<Bytes, BatchApiError> {
        let response = builder.send().await.map_err(|e| transport(what, e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let body = response.bytes().await.map_err(|e| transport(what, e))?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/message")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(BatchApiError::Status {
                what: what.to_string(),
                status,
                message: crate::retry::redact_keys(&message),
                retry_after,
            });
        }
        Ok(body)
    }

    async fn json(
        &self,
        what: &str,
        builder: reqwest::RequestBuilder,
    ) -> Result<Value, BatchApiError> {
        let body = self.send(what, builder).await?;
        serde_json::from_slice(&body).map_err(|e| shape(what, e.to_string()))
    }

    /// OpenAI: upload a batch input file (`purpose=batch`); its id.
    pub async fn upload(&self, name: &str, content: Vec<u8>) -> Result<String, BatchApiError> {
        let what = "uploading the batch input file";
        let part = reqwest::multipart::Part::bytes(content)
            .file_name(name.to_string())
            .mime_str("application/jsonl")
            .map_err(|e| transport(what, e))?;
        let form = reqwest::multipart::Form::new()
            .text("purpose", "batch")
            .part("file", part);
        let v = self
            .json(
                what,
                self.request(reqwest::Method::POST, "/v1/files")
                    .multipart(form),
            )
            .await?;
        text(&v, "id").ok_or_else(|| shape(what, "no `id`"))
    }

    /// OpenAI: delete a file (best effort, after its batch has ended).
    pub async fn delete_file(&self, id: &str) -> Result<(), BatchApiError> {
        let what = format!("deleting file {id}");
        self.send(
            &what,
            self.request(reqwest::Method::DELETE, &format!("/v1/files/{id}")),
        )
        .await
        .map(|_| ())
    }

    /// OpenAI: create a batch of `file_id` for `endpoint`, tagged with `metadata`.
    pub async fn create_openai(
        &self,
        file_id: &str,
        endpoint: &str,
        metadata: &Value,
    ) -> Result<BatchStatus, BatchApiError> {
        let what = "creating the batch";
        let body = json!({"input_file_id": file_id, "endpoint": self.spec.endpoint_name(endpoint),
            "completion_window": "24h", "metadata": metadata});
        let v = self
            .json(
                what,
                self.request(reqwest::Method::POST, "/v1/batches")
                    .json(&body),
            )
            .await?;
        self.status_of(what, &v)
    }

    /// Anthropic: create a Message Batch of `requests` (`{"custom_id", "params"}` each, as
    /// JSON text joined into the body without building one document).
    pub async fn create_anthropic(
        &self,
        requests: &[String],
    ) -> Result<BatchStatus, BatchApiError> {
        let what = "creating the Message Batch";
        let mut body = Vec::with_capacity(requests.iter().map(|r| r.len() + 1).sum::<usize>() + 16);
        body.extend_from_slice(b"{\"requests\":[");
        for (i, r) in requests.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(r.as_bytes());
        }
        body.extend_from_slice(b"]}");
        let builder = self
            .request(reqwest::Method::POST, "/v1/messages/batches")
            .header("content-type", "application/json")
            .body(body);
        let v = self.json(what, builder).await?;
        self.status_of(what, &v)
    }

    fn batches_path(&self) -> &'static str {
        match self.spec.api {
            BatchApi::OpenAi => "/v1/batches",
            BatchApi::Anthropic => "/v1/messages/batches",
        }
    }

    /// A batch's status.
    pub async fn retrieve(&self, id: &str) -> Result<BatchStatus, BatchApiError> {
        let what = format!("polling batch {id}");
        let path = format!("{}/{id}", self.batches_path());
        let v = self
            .json(&what, self.request(reqwest::Method::GET, &path))
            .await?;
        self.status_of(&what, &v)
    }

    /// Ask the provider to cancel a batch.
    pub async fn cancel(&self, id: &str) -> Result<BatchStatus, BatchApiError> {
        let what = format!("cancelling batch {id}");
        let path = format!("{}/{id}/cancel", self.batches_path());
        let v = self
            .json(&what, self.request(reqwest::Method::POST, &path))
            .await?;
        self.status_of(&what, &v)
    }

    /// The key's batches, newest first, one page after `after` (`None`: the first page);
    /// with whether more follow.
    pub async fn list(
        &self,
        after: Option<&str>,
    ) -> Result<(Vec<BatchStatus>, bool), BatchApiError> {
        let what = "listing batches";
        let cursor = match self.spec.api {
            BatchApi::OpenAi => "after",
            BatchApi::Anthropic => "after_id",
        };
        let mut builder = self
            .request(reqwest::Method::GET, self.batches_path())
            .query(&[("limit", "100")]);
        if let Some(after) = after {
            builder = builder.query(&[(cursor, after)]);
        }
        let v = self.json(what, builder).await?;
        let data = v
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| shape(what, "no `data`"))?;
        let batches = data
            .iter()
            .map(|b| self.status_of(what, b))
            .collect::<Result<Vec<_>, _>>()?;
        let more = v.get("has_more").and_then(Value::as_bool).unwrap_or(false);
        Ok((batches, more))
    }

    fn status_of(&self, what: &str, v: &Value) -> Result<BatchStatus, BatchApiError> {
        let id = text(v, "id").ok_or_else(|| shape(what, "no batch `id`"))?;
        let count = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        match self.spec.api {
            BatchApi::OpenAi => {
                let status = text(v, "status").ok_or_else(|| shape(what, "no `status`"))?;
                let first_error = v.pointer("/errors/data/0");
                let code = first_error.and_then(|e| text(e, "code"));
                let message = first_error
                    .and_then(|e| text(e, "message"))
                    .unwrap_or_default();
                let failed = status == "failed";
                let enqueued_refusal = (failed && code.as_deref() == Some("token_limit_exceeded"))
                    .then(|| enqueued_limit_in(&message));
                let invalid = (failed && enqueued_refusal.is_none())
                    .then(|| (code.unwrap_or_else(|| "batch_failed".into()), message));
                Ok(BatchStatus {
                    ended: matches!(
                        status.as_str(),
                        "completed" | "failed" | "expired" | "cancelled"
                    ),
                    completed: count("/request_counts/completed"),
                    failed: count("/request_counts/failed"),
                    total: count("/request_counts/total"),
                    output_file_id: text(v, "output_file_id"),
                    error_file_id: text(v, "error_file_id"),
                    metadata: v.get("metadata").cloned().unwrap_or(Value::Null),
                    results_url: None,
                    created_ms: v
                        .get("created_at")
                        .and_then(Value::as_i64)
                        .map(|s| s * 1000),
                    enqueued_refusal,
                    invalid,
                    id,
                    status,
                })
            }
            BatchApi::Anthropic => {
                let status = text(v, "processing_status")
                    .ok_or_else(|| shape(what, "no `processing_status`"))?;
                let failed = count("/request_counts/errored")
                    + count("/request_counts/canceled")
                    + count("/request_counts/expired");
                let completed = count("/request_counts/succeeded");
                Ok(BatchStatus {
                    ended: status == "ended",
                    total: completed + failed + count("/request_counts/processing"),
                    completed,
                    failed,
                    output_file_id: None,
                    error_file_id: None,
                    enqueued_refusal: None,
                    invalid: None,
                    metadata: Value::Null,
                    results_url: text(v, "results_url"),
                    created_ms: text(v, "created_at")
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                        .map(|t| t.timestamp_millis()),
                    id,
                    status,
                })
            }
        }
    }

    /// The results of an ended batch: every line of its output and error files (OpenAI) or
    /// its results (Anthropic).
    pub async fn results(&self, batch: &BatchStatus) -> Result<Vec<ResultLine>, BatchApiError> {
        let mut lines = Vec::new();
        match self.spec.api {
            BatchApi::OpenAi => {
                for file in [&batch.output_file_id, &batch.error_file_id]
                    .into_iter()
                    .flatten()
                {
                    let what = format!("downloading file {file}");
                    let path = format!("/v1/files/{file}/content");
                    let body = self
                        .send(&what, self.request(reqwest::Method::GET, &path))
                        .await?;
                    for line in jsonl_lines(&body) {
                        lines.push(openai_line(&what, line)?);
                    }
                }
            }
            BatchApi::Anthropic => {
                let what = format!("reading the results of {}", batch.id);
                let path = format!("/v1/messages/batches/{}/results", batch.id);
                let body = self
                    .send(&what, self.request(reqwest::Method::GET, &path))
                    .await?;
                for line in jsonl_lines(&body) {
                    lines.push(anthropic_line(&what, line)?);
                }
            }
        }
        Ok(lines)
    }
}

/// The lines of a JSONL body, blank ones skipped.
fn jsonl_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
}

/// One line of an OpenAI output or error file.
fn openai_line(what: &str, line: &[u8]) -> Result<ResultLine, BatchApiError> {
    let v: Value = serde_json::from_slice(line).map_err(|e| shape(what, e.to_string()))?;
    let custom_id =
        text(&v, "custom_id").ok_or_else(|| shape(what, "a line without `custom_id`"))?;
    let outcome = match v.get("response").filter(|r| !r.is_null()) {
        Some(response) => LineOutcome::Answer {
            status: response
                .get("status_code")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .ok_or_else(|| shape(what, "a response without `status_code`"))?,
            request_id: text(response, "request_id"),
            body: Bytes::from(
                response
                    .get("body")
                    .map(Value::to_string)
                    .unwrap_or_default(),
            ),
        },
        None => {
            let code = v
                .pointer("/error/code")
                .and_then(Value::as_str)
                .unwrap_or("batch_error");
            let message = v
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            match code {
                "batch_expired" => LineOutcome::Expired,
                "batch_cancelled" => LineOutcome::Cancelled,
                _ => LineOutcome::Error {
                    code: code.to_string(),
                    message,
                },
            }
        }
    };
    Ok(ResultLine { custom_id, outcome })
}

/// The HTTP status an Anthropic error type stands for (its documented table).
fn anthropic_status(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// One line of a Message Batch's results.
fn anthropic_line(what: &str, line: &[u8]) -> Result<ResultLine, BatchApiError> {
    let v: Value = serde_json::from_slice(line).map_err(|e| shape(what, e.to_string()))?;
    let custom_id =
        text(&v, "custom_id").ok_or_else(|| shape(what, "a line without `custom_id`"))?;
    let result = v
        .get("result")
        .ok_or_else(|| shape(what, "a line without `result`"))?;
    let outcome = match result.get("type").and_then(Value::as_str) {
        Some("succeeded") => LineOutcome::Answer {
            status: 200,
            request_id: None,
            body: Bytes::from(
                result
                    .get("message")
                    .map(Value::to_string)
                    .unwrap_or_default(),
            ),
        },
        Some("errored") => {
            let error = result.get("error").cloned().unwrap_or(Value::Null);
            let kind = error
                .pointer("/error/type")
                .and_then(Value::as_str)
                .unwrap_or("api_error");
            LineOutcome::Answer {
                status: anthropic_status(kind),
                request_id: None,
                body: Bytes::from(error.to_string()),
            }
        }
        Some("expired") => LineOutcome::Expired,
        Some("canceled") => LineOutcome::Cancelled,
        other => {
            return Err(shape(what, format!("unknown result type {other:?}")));
        }
    };
    Ok(ResultLine { custom_id, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_limit_of_openais_enqueued_refusal() {
        let m = "Enqueued token limit reached for gpt-4o-mini in organization org-x. Limit: \
                 2,000,000 enqueued tokens. Please try again once some in_progress batches have \
                 been completed.";
        assert_eq!(enqueued_limit_in(m), Some(2_000_000));
        assert_eq!(enqueued_limit_in("Limit: 90 enqueued tokens."), Some(90));
        assert_eq!(enqueued_limit_in("no figure"), None);
    }

    #[test]
    fn reads_each_kind_of_result_line() {
        let ok = br#"{"id":"batch_req_1","custom_id":"a","response":{"status_code":200,"request_id":"req_1","body":{"x":1}},"error":null}"#;
        let line = openai_line("t", ok).unwrap();
        assert_eq!(line.custom_id, "a");
        assert!(matches!(
            line.outcome,
            LineOutcome::Answer { status: 200, .. }
        ));
        let expired = br#"{"id":"b","custom_id":"e","response":null,"error":{"code":"batch_expired","message":"m"}}"#;
        assert_eq!(
            openai_line("t", expired).unwrap().outcome,
            LineOutcome::Expired
        );
        let errored = br#"{"custom_id":"z","result":{"type":"errored","error":{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}}}"#;
        assert!(matches!(
            anthropic_line("t", errored).unwrap().outcome,
            LineOutcome::Answer { status: 529, .. }
        ));
        let canceled = br#"{"custom_id":"c","result":{"type":"canceled"}}"#;
        assert_eq!(
            anthropic_line("t", canceled).unwrap().outcome,
            LineOutcome::Cancelled
        );
        assert!(openai_line("t", br#"{"response":null}"#).is_err());
    }
}
