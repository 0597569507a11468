//! Turning the engine's end of a request into the client's HTTP response, and the status
//! headers every answer carries (`x-paceline-queue-ms`, `x-paceline-attempts`): proxied ones
//! here, the gateway's own errors through `routes`.
//!
//! A success is relayed as the provider sent it. A failure is relayed too when the provider's
//! answer says it all (a 400 about the request, a 5xx after the retries ran out), with three
//! exceptions the client must not see as they are: no capacity before the deadline becomes a
//! 429 with an honest `retry-after-ms`; a failure with no answer becomes 502 (unreachable, cut)
//! or 504 (timeout); and the provider refusing the gateway's own key (401/403) becomes 502
//! without the provider's message, which may quote part of that key.
//!
//! It must not know how the request was paced or sent: it is handed the engine's end of it.

use super::errors::{ApiError, retry_after_headers};
use crate::api::Endpoint;
use crate::engine::{Finished, ProviderAnswer, Verdict};
use crate::retry::{Failure, RetryCause};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Upstream response headers passed on to the client as they are (the provider's rate-limit
/// headers describe the gateway's key, not the client, and are not; its request id goes out as
/// `x-request-id`, see [`set_request_id`]).
pub const PASSED_HEADERS: [&str; 3] = ["content-type", "openai-processing-ms", "openai-version"];

/// Set `x-request-id` to the provider's id for the answer, if it sent one that is a valid
/// header value.
pub fn set_request_id(headers: &mut HeaderMap, request_id: Option<&str>) {
    if let Some(id) = request_id.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(HeaderName::from_static("x-request-id"), id);
    }
}

/// Add `x-paceline-queue-ms` and `x-paceline-attempts`.
pub fn status_headers(response: &mut Response, waited: Duration, attempts: u32) {
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-paceline-queue-ms"),
        HeaderValue::from(u64::try_from(waited.as_millis()).unwrap_or(u64::MAX)),
    );
    headers.insert(
        HeaderName::from_static("x-paceline-attempts"),
        HeaderValue::from(attempts),
    );
}

/// The provider's answer as the client's response.
pub fn relay(answer: &ProviderAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, answer.body.clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    set_request_id(headers, answer.request_id.as_deref());
    response
}

/// How a finished request to `endpoint` is answered, and a short word for the access log. The
/// gateway's own errors take the shape of the endpoint's API (Anthropic's on `/v1/messages`).
pub fn respond(finished: &Finished, endpoint: Endpoint) -> (Response, String) {
    let (answer, failure, message) = match &finished.verdict {
        Verdict::Succeeded(answer) => return (relay(answer), "ok".into()),
        Verdict::Failed {
            answer,
            code,
            message,
        } => (answer, code, message),
    };
    let wait = finished.retry_after.unwrap_or_default();
    let error = match answer {
        Some(answer) if matches!(answer.status, 401 | 403) => ApiError::bad_gateway(
            "the provider refused the gateway's upstream key; it was taken out of rotation".into(),
        ),
        Some(answer) if *failure == Failure::DeadlineExceeded && answer.status == 429 => {
            ApiError::rate_limited(message.clone(), wait)
        }
        Some(answer) => {
            let mut response = relay(answer);
            if let Some(wait) = finished.retry_after {
                for (name, value) in retry_after_headers(wait) {
                    response.headers_mut().insert(name, value);
                }
            }
            return (response, failure.to_string());
        }
        None => match failure.http_status(finished.last_retry) {
            400 => {
                let code = match failure {
                    Failure::NoRoute => "model_not_found",
                    _ => "request_too_large",
                };
                ApiError::bad_request(message.clone(), Some(code))
            }
            504 => {
                ApiError::gateway_timeout(format!("the provider did not answer in time: {message}"))
            }
            429 => ApiError::rate_limited(
                format!(
                    "Rate limit reached: no capacity within the request's max wait. Please try again in {:.3}s.",
                    wait.as_secs_f64()
                ),
                wait,
            ),
            _ if matches!(
                finished.last_retry,
                Some(RetryCause::Connection | RetryCause::Truncated)
            ) =>
            {
                ApiError::bad_gateway(format!("the provider could not be reached: {message}"))
            }
            _ => ApiError::bad_gateway(message.clone()),
        },
    };
    (error.into_endpoint_response(endpoint), failure.to_string())
}
