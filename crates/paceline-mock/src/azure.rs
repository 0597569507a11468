//! Azure OpenAI's shape: `POST /openai/deployments/{deployment}/{operation}?api-version=V`, and
//! global batch's resource-level `/openai/files` and `/openai/batches` ([`resource_access`]).
//!
//! The request and answer bodies are OpenAI's, so a deployment route runs the OpenAI pipeline
//! of [`crate::server`] and then reshapes what differs at Azure (Azure OpenAI REST reference,
//! quotas and limits guide):
//!
//! - authentication by the `api-key` header (a bearer token is not accepted here), 401
//!   `{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong
//!   API endpoint. …"}}`;
//! - `api-version` is required: without it, 404 `Resource not found`;
//! - the deployment names the model: a body without `model` is given the deployment's name;
//! - limit headers: `x-ratelimit-remaining-requests` and `x-ratelimit-remaining-tokens` only,
//!   `-1` for a dimension that is not limited (what Azure sends when it does not enforce one);
//! - a 429 carries `retry-after` (seconds), `retry-after-ms` and `x-ms-retry-after-ms`, with the
//!   body `{"error":{"code":"429","message":"Requests to the … Operation under Azure OpenAI API
//!   version V have exceeded token rate limit … Please retry after N seconds."}}` ("call rate
//!   limit" for requests).
//!
//! It only reshapes what [`crate::server::handle`] answers: it knows no buckets, no answer's making
//! and no route table ([`crate::routes`] maps the paths here).

use crate::api::Endpoint;
use crate::duration::{ceil_millis, ceil_secs};
use crate::server::{App, LimitsNotConsulted, handle};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

/// Azure's 401 message.
const ACCESS_DENIED: &str = "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.";

/// The largest error body reshaped (error bodies are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The Azure operation name in 429 messages.
pub trait Operation {
    /// `ChatCompletions_Create`, `Completions_Create`, `Embeddings_Create`.
    const OPERATION: &'static str;
}

impl Operation for crate::chat::ChatRequest {
    const OPERATION: &'static str = "ChatCompletions_Create";
}

impl Operation for crate::completions::CompletionRequest {
    const OPERATION: &'static str = "Completions_Create";
}

impl Operation for crate::embeddings::EmbeddingRequest {
    const OPERATION: &'static str = "Embeddings_Create";
}

fn azure_error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16().to_string(), "message": message}});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The `api-version` of a query string, if given and not empty.
fn api_version(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "api-version")
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

/// A deployment route for OpenAI endpoint `E`.
pub async fn deployment<E: Endpoint + Operation>(
    State(app): State<Arc<App>>,
    Path(deployment): Path<String>,
    RawQuery(query): RawQuery,
    mut headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(version) = api_version(query.as_deref()) else {
        return azure_error(StatusCode::NOT_FOUND, "Resource not found");
    };
    headers.remove(header::AUTHORIZATION);
    let key = headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .and_then(|k| HeaderValue::try_from(format!("Bearer {k}")).ok());
    let Some(key) = key else {
        return azure_error(
            StatusCode::UNAUTHORIZED,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        );
    };
    headers.insert(header::AUTHORIZATION, key);
    let body = body.map(|bytes| with_model(bytes, &deployment));
    let response = handle::<E>(State(app), headers, body).await;
    reshape(response, E::OPERATION, &version).await
}

/// The resource-level routes of global batch (`/openai/files`, `/openai/batches`): Azure's
/// checks (`api-version`, the `api-key` header, read as OpenAI's bearer token), then OpenAI's
/// handler; its 401 in Azure's words.
pub async fn resource_access(mut request: Request, next: Next) -> Response {
    if api_version(request.uri().query()).is_none() {
        return azure_error(StatusCode::NOT_FOUND, "Resource not found");
    }
    let headers = request.headers_mut();
    headers.remove(header::AUTHORIZATION);
    let key = headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .and_then(|k| HeaderValue::try_from(format!("Bearer {k}")).ok());
    let Some(key) = key else {
        return azure_error(StatusCode::UNAUTHORIZED, ACCESS_DENIED);
    };
    headers.insert(header::AUTHORIZATION, key);
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        return azure_error(StatusCode::UNAUTHORIZED, ACCESS_DENIED);
    }
    response
}

/// The body with `model` set to the deployment when it names none.
fn with_model(bytes: Bytes, deployment: &str) -> Bytes {
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(mut map)) if !map.contains_key("model") => {
            map.insert("model".into(), Value::String(deployment.to_string()));
            Bytes::from(Value::Object(map).to_string())
        }
        _ => bytes,
    }
}

/// OpenAI's answer turned into Azure's: its headers, and its 401 and 429 bodies.
async fn reshape(response: Response, operation: &str, version: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    // An uncharged fault never consulted the limits: "-1" (not limited) would be a claim too.
    let consulted = parts.extensions.get::<LimitsNotConsulted>().is_none();
    let h = &mut parts.headers;
    for dimension in ["requests", "tokens"] {
        h.remove(format!("x-ratelimit-limit-{dimension}").as_str());
        h.remove(format!("x-ratelimit-reset-{dimension}").as_str());
        let remaining = format!("x-ratelimit-remaining-{dimension}");
        if consulted
            && !h.contains_key(remaining.as_str())
            && parts.status != StatusCode::UNAUTHORIZED
            && let Ok(name) = header::HeaderName::try_from(remaining)
        {
            h.insert(name, HeaderValue::from_static("-1"));
        }
    }
    h.remove("openai-version");
    h.remove("openai-processing-ms");
    if parts.status == StatusCode::UNAUTHORIZED {
        let err = azure_error(
            StatusCode::UNAUTHORIZED,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        );
        return Response::from_parts(parts, err.into_body());
    }
    if parts.status != StatusCode::TOO_MANY_REQUESTS {
        return Response::from_parts(parts, body);
    }
    let bytes = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let openai: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let kind = openai["error"]["type"].as_str().unwrap_or("");
    let code = openai["error"]["code"].as_str().unwrap_or("");
    if code != "rate_limit_exceeded"
        || openai["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Request too large"))
    {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let wait_ms: u64 = parts
        .headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let wait = std::time::Duration::from_millis(wait_ms);
    if let Ok(v) = HeaderValue::try_from(ceil_millis(wait).to_string()) {
        parts.headers.insert("x-ms-retry-after-ms", v);
    }
    let what = if kind == "requests" { "call" } else { "token" };
    let message = format!(
        "Requests to the {operation} Operation under Azure OpenAI API version {version} have exceeded {what} rate limit of your current OpenAI S0 pricing tier. Please retry after {} seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
        ceil_secs(wait).max(1)
    );
    let err = azure_error(StatusCode::TOO_MANY_REQUESTS, &message);
    Response::from_parts(parts, err.into_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_api_version() {
        assert_eq!(
            api_version(Some("api-version=2024-10-21")).as_deref(),
            Some("2024-10-21")
        );
        assert_eq!(api_version(Some("a=b&api-version=v")).as_deref(), Some("v"));
        assert_eq!(api_version(Some("api-version=")), None);
        assert_eq!(api_version(None), None);
    }
}
