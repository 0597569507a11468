//! The routes: which path goes to which handler (the OpenAI and Anthropic endpoints to
//! [`crate::server::handle`], Azure's deployment paths to [`crate::azure::deployment`]), the
//! mock's own `/_mock/stats` and `/_mock/reset`, `/v1/models`, and the answers to unknown paths
//! and methods. It owns no request pipeline: that is [`crate::server`]'s, which knows nothing of
//! the routes (so the Azure reshaping can wrap the pipeline without a cycle).

use crate::anthropic::MessagesRequest;
use crate::azure;
use crate::chat::ChatRequest;
use crate::completions::CompletionRequest;
use crate::embeddings::EmbeddingRequest;
use crate::errors::{ApiError, Flavor};
use crate::responses::ResponsesRequest;
use crate::server::{App, MAX_BODY_BYTES, handle};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use std::sync::Arc;

/// The router of the simulated provider.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(handle::<ChatRequest>))
        .route("/v1/completions", post(handle::<CompletionRequest>))
        .route("/v1/embeddings", post(handle::<EmbeddingRequest>))
        .route("/v1/messages", post(handle::<MessagesRequest>))
        .route("/v1/responses", post(handle::<ResponsesRequest>))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure::deployment::<ChatRequest>),
        )
        .route(
            "/openai/deployments/{deployment}/completions",
            post(azure::deployment::<CompletionRequest>),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(azure::deployment::<EmbeddingRequest>),
        )
        .route("/v1/models", get(models))
        .route("/_mock/stats", get(stats))
        .route("/_mock/reset", post(reset))
        .merge(crate::batch_routes::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let id = format!("req_{:032x}", rand::random::<u128>());
    if let Ok(id) = HeaderValue::try_from(id) {
        h.insert("x-request-id", id);
    }
    response
}

fn flavor_of(uri: &Uri) -> Flavor {
    if uri.path().starts_with("/v1/messages") {
        Flavor::Anthropic
    } else {
        Flavor::OpenAi
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    let err = ApiError::not_found(flavor_of(&uri), method.as_str(), uri.path());
    json_response(err.status, err.body())
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let err = ApiError::method_not_allowed(flavor_of(&uri), method.as_str(), uri.path());
    json_response(err.status, err.body())
}

async fn stats(State(app): State<Arc<App>>) -> Response {
    match serde_json::to_vec(&app.stats()) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(err) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::unreadable_body(Flavor::OpenAi, err.to_string()).body(),
        ),
    }
}

async fn reset(State(app): State<Arc<App>>) -> Response {
    app.reset();
    json_response(StatusCode::OK, br#"{"reset":true}"#.to_vec())
}

/// Models `GET /v1/models` lists.
const MODELS: [&str; 8] = [
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-3.5-turbo",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "claude-3-5-haiku-latest",
];

async fn models() -> Response {
    let data: Vec<serde_json::Value> = MODELS
        .iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "system"}))
        .collect();
    let body = serde_json::json!({"object": "list", "data": data});
    json_response(StatusCode::OK, body.to_string().into_bytes())
}
