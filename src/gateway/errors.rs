//! Errors the gateway itself answers, in OpenAI's shape
//! (`{"error": {"message", "type", "param", "code"}}`) so that every SDK raises its own exception
//! type for them (401 → `AuthenticationError`, 400 → `BadRequestError`, 429 → `RateLimitError`).
//! On `/v1/messages` the rejections of a request (authentication, body, limits) use Anthropic's
//! shape (`{"type": "error", "error": {"type", "message"}}`, types by status as in Anthropic's
//! error guide) for the Anthropic SDKs.
//!
//! It must not know the engine's failures (mapped by [`super::answer`]) nor any provider's error
//! bodies, which are relayed as they came.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::time::Duration;

/// An error answered by the gateway (not relayed from the provider).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `error.message`: what went wrong, for people.
    pub message: String,
    /// `error.type`.
    pub kind: &'static str,
    /// `error.code`.
    pub code: Option<&'static str>,
    /// For 429: how long until capacity is expected (`retry-after-ms`, `retry-after`).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error of `status` with OpenAI's `type` and `code`.
    pub(super) fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        message: String,
    ) -> Self {
        ApiError {
            status,
            message,
            kind,
            code,
            retry_after: None,
        }
    }

    /// 401: no client key, or one no `[[clients]]` entry holds. The key is never echoed.
    pub fn unauthorized(given: bool) -> Self {
        let message = if given {
            "Incorrect API key provided. Use a client key configured in the gateway's [[clients]]."
        } else {
            "You didn't provide an API key. Send it as `Authorization: Bearer KEY`."
        };
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            message.into(),
        )
    }

    /// 404: no such route.
    pub fn not_found(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("unknown_url"),
            format!("Invalid URL ({method} {path})"),
        )
    }

    /// 405: a known route with another method.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            Some("method_not_supported"),
            format!("Method {method} is not supported for {path}"),
        )
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            format!(
                "The request body is larger than the gateway's limit of {} MB.",
                limit / (1024 * 1024)
            ),
        )
    }

    /// 400: a body, header or parameter the gateway cannot use.
    pub fn bad_request(message: String, code: Option<&'static str>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
    }

    /// 429: no capacity before the request's deadline; `retry_after` is the quota's honest wait.
    pub fn rate_limited(message: String, retry_after: Duration) -> Self {
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "requests",
            Some("rate_limit_exceeded"),
            message,
        );
        err.retry_after = Some(retry_after);
        err
    }

    /// 502: the provider could not be reached, or answered unusably.
    pub fn bad_gateway(message: String) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            Some("upstream_unreachable"),
            message,
        )
    }

    /// 504: the provider did not answer in time.
    pub fn gateway_timeout(message: String) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_error",
            Some("upstream_timeout"),
            message,
        )
    }

    /// 503: the gateway cannot take requests (shutting down, or no upstream key left).
    pub fn unavailable(message: String) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("unavailable"),
            message,
        )
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": null,
                "code": self.code,
            }
        })
        .to_string()
    }
}

impl ApiError {
    /// Anthropic's `error.type` for this status.
    fn anthropic_type(&self) -> &'static str {
        match self.status.as_u16() {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        }
    }

    /// The error in the shape of `endpoint`'s API: Anthropic's for `/v1/messages`, else
    /// OpenAI's.
    pub fn into_endpoint_response(self, endpoint: crate::api::Endpoint) -> Response {
        if endpoint == crate::api::Endpoint::Messages {
            self.into_anthropic_response()
        } else {
            self.into_response()
        }
    }

    /// The error as Anthropic's API answers it.
    pub fn into_anthropic_response(self) -> Response {
        let body = json!({
            "type": "error",
            "error": {"type": self.anthropic_type(), "message": self.message}
        })
        .to_string();
        let mut response = self.into_response();
        *response.body_mut() = axum::body::Body::from(body);
        response
    }
}

/// `retry-after-ms` (exact) and `retry-after` (whole seconds, rounded up) for a wait.
pub fn retry_after_headers(wait: Duration) -> [(&'static str, HeaderValue); 2] {
    let ms = wait.as_millis().max(1);
    let secs = ms.div_ceil(1000);
    [
        (
            "retry-after-ms",
            HeaderValue::from(u64::try_from(ms).unwrap_or(u64::MAX)),
        ),
        (
            "retry-after",
            HeaderValue::from(u64::try_from(secs).unwrap_or(u64::MAX)),
        ),
    ]
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(wait) = self.retry_after {
            for (name, value) in retry_after_headers(wait) {
                headers.insert(name, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape_and_retry_headers() {
        let err = ApiError::rate_limited("wait".into(), Duration::from_millis(1500));
        let body: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(body["error"]["param"], serde_json::Value::Null);
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after-ms"], "1500");
        assert_eq!(response.headers()["retry-after"], "2");
    }

    #[test]
    fn anthropic_shape_keeps_status_and_retry_headers() {
        let err = ApiError::rate_limited("wait".into(), Duration::from_millis(1500));
        let response = err.into_anthropic_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "2");
        let err = ApiError::unauthorized(true);
        assert_eq!(err.anthropic_type(), "authentication_error");
    }
}
