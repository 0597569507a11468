//! Error answers in the providers' own shapes, and the mock's own start-up error.
//!
//! OpenAI: `{"error":{"message","type","param","code"}}`.
//! Anthropic: `{"type":"error","error":{"type","message"}}`.
//!
//! It builds statuses and bodies only; when to answer with which is [`crate::server`]'s choice.

use crate::duration::seconds_3;
use crate::keys::Dimension;
use axum::http::StatusCode;
use serde_json::json;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Why the simulated provider could not start.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
}

/// Which provider's conventions an endpoint follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// OpenAI-shaped endpoints (`/v1/chat/completions`, ...).
    OpenAi,
    /// Anthropic's `/v1/messages`.
    Anthropic,
}

/// An error answer, rendered in the endpoint's flavor.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `error.type`.
    pub kind: &'static str,
    /// `error.message`.
    pub message: String,
    /// `error.param` (OpenAI only).
    pub param: Option<String>,
    /// `error.code` (OpenAI only).
    pub code: Option<&'static str>,
    /// `retry-after` / `retry-after-ms` hint (429s that a wait cures).
    pub retry_after: Option<Duration>,
    /// The flavor it renders in.
    pub flavor: Flavor,
}

const LIMITS_URL: &str = "https://platform.openai.com/account/rate-limits";

impl ApiError {
    fn new(flavor: Flavor, status: StatusCode, kind: &'static str, message: String) -> Self {
        Self {
            status,
            kind,
            message,
            param: None,
            code: None,
            retry_after: None,
            flavor,
        }
    }

    fn invalid_request(flavor: Flavor, status: StatusCode, message: String) -> Self {
        Self::new(flavor, status, "invalid_request_error", message)
    }

    /// The body is not JSON (or not the JSON expected); names the parse error.
    pub fn invalid_json(flavor: Flavor, err: &serde_json::Error) -> Self {
        Self::invalid_request(
            flavor,
            StatusCode::BAD_REQUEST,
            format!("We could not parse the JSON body of your request: {err}."),
        )
    }

    /// A required parameter is missing.
    pub fn missing(flavor: Flavor, param: &str) -> Self {
        let mut e = Self::invalid_request(
            flavor,
            StatusCode::BAD_REQUEST,
            format!("Missing required parameter: '{param}'."),
        );
        e.param = Some(param.to_owned());
        e.code = Some("missing_required_parameter");
        e
    }

    /// A parameter has an unusable value.
    pub fn invalid_param(flavor: Flavor, param: &str, message: String) -> Self {
        let mut e = Self::invalid_request(flavor, StatusCode::BAD_REQUEST, message);
        e.param = Some(param.to_owned());
        e.code = Some("invalid_value");
        e
    }

    /// The body could not be read (other than being too large).
    pub fn unreadable_body(flavor: Flavor, detail: String) -> Self {
        Self::invalid_request(
            flavor,
            StatusCode::BAD_REQUEST,
            format!("Could not read the request body: {detail}"),
        )
    }

    /// The body is larger than the mock accepts.
    pub fn body_too_large(flavor: Flavor, limit: usize) -> Self {
        let kind = match flavor {
            Flavor::OpenAi => "invalid_request_error",
            Flavor::Anthropic => "request_too_large",
        };
        Self::new(
            flavor,
            StatusCode::PAYLOAD_TOO_LARGE,
            kind,
            format!("Request body too large: the limit is {limit} bytes."),
        )
    }

    /// No such route.
    pub fn not_found(flavor: Flavor, method: &str, path: &str) -> Self {
        let kind = match flavor {
            Flavor::OpenAi => "invalid_request_error",
            Flavor::Anthropic => "not_found_error",
        };
        Self::new(
            flavor,
            StatusCode::NOT_FOUND,
            kind,
            format!("Invalid URL ({method} {path})"),
        )
    }

    /// The route exists but not for this method.
    pub fn method_not_allowed(flavor: Flavor, method: &str, path: &str) -> Self {
        Self::invalid_request(
            flavor,
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {method} is not allowed for {path}"),
        )
    }

    /// Unknown or missing key. Only a masked form of the key is shown.
    pub fn unauthorized(flavor: Flavor, key: Option<&str>) -> Self {
        match flavor {
            Flavor::OpenAi => {
                let message = match key {
                    Some(k) => format!(
                        "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                        mask(k)
                    ),
                    None => "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).".to_owned(),
                };
                let mut e = Self::new(
                    flavor,
                    StatusCode::UNAUTHORIZED,
                    "invalid_request_error",
                    message,
                );
                e.code = Some("invalid_api_key");
                e
            }
            Flavor::Anthropic => Self::new(
                flavor,
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid x-api-key".to_owned(),
            ),
        }
    }

    /// Anthropic's refusal of a request without the `anthropic-version` header.
    pub fn missing_version() -> Self {
        Self::invalid_request(
            Flavor::Anthropic,
            StatusCode::BAD_REQUEST,
            "anthropic-version: header is required".to_owned(),
        )
    }

    /// The mock already tracks as many undeclared keys as it will.
    pub fn key_table_full(flavor: Flavor, max: usize) -> Self {
        let mut e = Self::unauthorized(flavor, None);
        e.message = format!(
            "The mock tracks at most {max} distinct API keys; POST /_mock/reset to forget them."
        );
        e
    }

    /// A retryable rate-limit refusal; `wait` is when this request would fit.
    pub fn rate_limited(
        flavor: Flavor,
        model: &str,
        dimension: Dimension,
        limit: u64,
        used: u64,
        requested: u64,
        wait: Duration,
    ) -> Self {
        let mut e = match flavor {
            Flavor::OpenAi => {
                let (kind, what) = match dimension {
                    Dimension::Requests => ("requests", "requests per min (RPM)"),
                    Dimension::Tokens => ("tokens", "tokens per min (TPM)"),
                };
                let mut e = Self::new(
                    flavor,
                    StatusCode::TOO_MANY_REQUESTS,
                    kind,
                    format!(
                        "Rate limit reached for {model} in organization org-mock on {what}: Limit {limit}, Used {used}, Requested {requested}. Please try again in {}. Visit {LIMITS_URL} to learn more.",
                        seconds_3(wait)
                    ),
                );
                e.code = Some("rate_limit_exceeded");
                e
            }
            Flavor::Anthropic => {
                let what = match dimension {
                    Dimension::Requests => "requests",
                    Dimension::Tokens => "tokens",
                };
                Self::new(
                    flavor,
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    format!(
                        "This request would exceed the rate limit for your organization (org-mock) of {limit} {what} per minute. For details, refer to: https://docs.anthropic.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later."
                    ),
                )
            }
        };
        e.retry_after = Some(wait);
        e
    }

    /// Anthropic's refusal of a Message Batch whose requests would pass the processing queue's
    /// limit (429 `rate_limit_error`; a wait for queued batches to finish cures it).
    pub fn rate_limited_batch_queue(limit: u64) -> Self {
        Self::new(
            Flavor::Anthropic,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!(
                "Number of batch requests in the processing queue would exceed the rate limit for your organization (org-mock) of {limit} requests. Please try again once some batches have ended."
            ),
        )
    }

    /// The request's token cost exceeds the TPM limit itself: no wait helps (no retry hint).
    pub fn request_too_large(flavor: Flavor, model: &str, limit: u64, requested: u64) -> Self {
        match flavor {
            Flavor::OpenAi => {
                let mut e = Self::new(
                    flavor,
                    StatusCode::TOO_MANY_REQUESTS,
                    "tokens",
                    format!(
                        "Request too large for {model} in organization org-mock on tokens per min (TPM): Limit {limit}, Requested {requested}. The input or output tokens must be reduced in order to run successfully. Visit {LIMITS_URL} to learn more."
                    ),
                );
                e.code = Some("rate_limit_exceeded");
                e
            }
            Flavor::Anthropic => Self::new(
                flavor,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!(
                    "Request too large: it would use {requested} tokens, above your organization's (org-mock) rate limit of {limit} tokens per minute. Please reduce the prompt length or the maximum tokens requested."
                ),
            ),
        }
    }

    /// Out of credit: final, never retry.
    pub fn insufficient_quota(flavor: Flavor) -> Self {
        match flavor {
            Flavor::OpenAi => {
                let mut e = Self::new(
                    flavor,
                    StatusCode::TOO_MANY_REQUESTS,
                    "insufficient_quota",
                    "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.".to_owned(),
                );
                e.code = Some("insufficient_quota");
                e
            }
            Flavor::Anthropic => Self::invalid_request(
                flavor,
                StatusCode::BAD_REQUEST,
                "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.".to_owned(),
            ),
        }
    }

    /// Injected HTTP 500.
    pub fn server_error(flavor: Flavor) -> Self {
        match flavor {
            Flavor::OpenAi => Self::new(
                flavor,
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "The server had an error while processing your request. Sorry about that!"
                    .to_owned(),
            ),
            Flavor::Anthropic => Self::new(
                flavor,
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "Internal server error".to_owned(),
            ),
        }
    }

    /// Injected HTTP 503.
    pub fn unavailable(flavor: Flavor) -> Self {
        let kind = match flavor {
            Flavor::OpenAi => "server_error",
            Flavor::Anthropic => "api_error",
        };
        Self::new(
            flavor,
            StatusCode::SERVICE_UNAVAILABLE,
            kind,
            "The engine is currently overloaded, please try again later.".to_owned(),
        )
    }

    /// Injected HTTP 529 (Anthropic's overload).
    pub fn overloaded(flavor: Flavor) -> Self {
        let status = StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        Self::new(flavor, status, "overloaded_error", "Overloaded".to_owned())
    }

    /// The JSON body in the flavor's shape.
    pub fn body(&self) -> Vec<u8> {
        let value = match self.flavor {
            Flavor::OpenAi => json!({
                "error": {
                    "message": self.message,
                    "type": self.kind,
                    "param": self.param,
                    "code": self.code,
                }
            }),
            Flavor::Anthropic => json!({
                "type": "error",
                "error": { "type": self.kind, "message": self.message }
            }),
        };
        value.to_string().into_bytes()
    }
}

/// A key shown the way OpenAI shows it: never in full.
fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 10 {
        return "*".repeat(chars.len().min(8));
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keys() {
        assert_eq!(mask("short"), "*****");
        assert_eq!(mask("sk-abcdefghijkl"), "sk-********ijkl");
    }

    #[test]
    fn shapes() {
        let e = ApiError::insufficient_quota(Flavor::OpenAi);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["type"], "insufficient_quota");
        assert_eq!(v["error"]["code"], "insufficient_quota");
        assert!(v["error"]["param"].is_null());
        let e = ApiError::overloaded(Flavor::Anthropic);
        assert_eq!(e.status.as_u16(), 529);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(
            v,
            json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})
        );
    }

    #[test]
    fn rate_limit_message_carries_the_hint() {
        let e = ApiError::rate_limited(
            Flavor::OpenAi,
            "gpt-4o-mini",
            Dimension::Requests,
            60,
            60,
            1,
            Duration::from_millis(1234),
        );
        assert!(
            e.message.contains("Please try again in 1.234s."),
            "{}",
            e.message
        );
        assert_eq!(e.kind, "requests");
        assert_eq!(e.code, Some("rate_limit_exceeded"));
    }
}
