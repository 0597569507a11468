//! The Batch APIs' HTTP handlers: OpenAI's Files (`/v1/files`) and Batches (`/v1/batches`),
//! the same at an Azure OpenAI resource (`/openai/files`, `/openai/batches`: global batch),
//! Anthropic's Message Batches (`/v1/messages/batches`), and the test hook that moves the
//! batches' clock forward (`POST /_mock/advance {"seconds": N}`).
//!
//! Each handler checks the key the provider's way, reads its arguments and answers with what
//! [`crate::batches`] computes; it holds no state of its own.

use crate::batches::OPENAI_MAX_FILE_BYTES;
use crate::errors::{ApiError, Flavor};
use crate::server::App;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The Batch APIs' routes (merged into [`crate::routes::router`]).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/v1/files",
            post(upload).layer(DefaultBodyLimit::max(OPENAI_MAX_FILE_BYTES + 64 * 1024)),
        )
        .route("/v1/files/{id}", get(file).delete(delete_file))
        .route("/v1/files/{id}/content", get(file_content))
        .route("/v1/batches", post(create_openai).get(list_openai))
        .route("/v1/batches/{id}", get(retrieve_openai))
        .route("/v1/batches/{id}/cancel", post(cancel_openai))
        .route(
            "/v1/messages/batches",
            post(create_anthropic)
                .get(list_anthropic)
                .layer(DefaultBodyLimit::max(
                    crate::batches::ANTHROPIC_MAX_BYTES + 64 * 1024,
                )),
        )
        .route("/v1/messages/batches/{id}", get(retrieve_anthropic))
        .route("/v1/messages/batches/{id}/cancel", post(cancel_anthropic))
        .route("/v1/messages/batches/{id}/results", get(results_anthropic))
        .route("/_mock/advance", post(advance))
        .merge(azure())
}

/// Azure OpenAI's global batch: OpenAI's Files and Batches at the resource (`/openai/files`,
/// `/openai/batches`), behind Azure's `api-version` and `api-key` checks.
fn azure() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/openai/files",
            post(upload).layer(DefaultBodyLimit::max(OPENAI_MAX_FILE_BYTES + 64 * 1024)),
        )
        .route("/openai/files/{id}", get(file).delete(delete_file))
        .route("/openai/files/{id}/content", get(file_content))
        .route("/openai/batches", post(create_azure).get(list_openai))
        .route("/openai/batches/{id}", get(retrieve_openai))
        .route("/openai/batches/{id}/cancel", post(cancel_openai))
        .route_layer(axum::middleware::from_fn(crate::azure::resource_access))
}

fn respond(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(value) => respond(
            StatusCode::OK,
            value.to_string().into_bytes(),
            "application/json",
        ),
        Err(err) => error(&err),
    }
}

fn error(err: &ApiError) -> Response {
    let mut response = respond(err.status, err.body(), "application/json");
    if let Some(wait) = err.retry_after
        && let Ok(v) = HeaderValue::try_from(wait.as_secs().max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// The base URL clients reached this mock at (for Anthropic's `results_url`).
fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn upload(State(app): State<Arc<App>>, headers: HeaderMap, mut form: Multipart) -> Response {
    if let Err(err) = app.authorize(&headers, Flavor::OpenAi) {
        return error(&err);
    }
    let (mut purpose, mut file) = (None, None);
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_owned();
                let filename = field.file_name().unwrap_or("upload.jsonl").to_owned();
                let bytes = match field.bytes().await {
                    Ok(bytes) => bytes,
                    Err(err) => {
                        return error(&ApiError::unreadable_body(Flavor::OpenAi, err.body_text()));
                    }
                };
                match name.as_str() {
                    "purpose" => purpose = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    "file" => file = Some((filename, bytes.to_vec())),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(err) => return error(&ApiError::unreadable_body(Flavor::OpenAi, err.body_text())),
        }
    }
    let Some(purpose) = purpose else {
        return error(&ApiError::missing(Flavor::OpenAi, "purpose"));
    };
    let Some((filename, bytes)) = file else {
        return error(&ApiError::missing(Flavor::OpenAi, "file"));
    };
    json(app.batches().upload(filename, purpose, bytes))
}

async fn file(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    match app.authorize(&headers, Flavor::OpenAi) {
        Ok(()) => json(app.batches().file(&id)),
        Err(err) => error(&err),
    }
}

async fn delete_file(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match app.authorize(&headers, Flavor::OpenAi) {
        Ok(()) => json(app.batches().delete_file(&id)),
        Err(err) => error(&err),
    }
}

async fn file_content(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(err) = app.authorize(&headers, Flavor::OpenAi) {
        return error(&err);
    }
    match app.batches().file_content(&id) {
        Ok(bytes) => respond(StatusCode::OK, bytes, "application/octet-stream"),
        Err(err) => error(&err),
    }
}

async fn create_openai(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    match app.authorize(&headers, Flavor::OpenAi) {
        Ok(()) => json(app.batches().create_openai(&body, app.config(), false)),
        Err(err) => error(&err),
    }
}

/// Azure OpenAI's `POST /openai/batches` (the key already checked the Azure way).
async fn create_azure(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    match app.authorize(&headers, Flavor::OpenAi) {
        Ok(()) => json(app.batches().create_openai(&body, app.config(), true)),
        Err(err) => error(&err),
    }
}

async fn retrieve_openai(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match app.authorize(&headers, Flavor::OpenAi) {
        Ok(()) => json(app.batches().retrieve_openai(&id, app.config())),
        Err(err) => error(&err),
    }
}

async fn cancel_openai(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match app.authorize(&headers, Flavor::OpenAi) {
        Ok(()) => json(app.batches().cancel_openai(&id, app.config())),
        Err(err) => error(&err),
    }
}

/// `?after=&limit=` (OpenAI) and `?after_id=&before_id=&limit=` (Anthropic).
#[derive(Debug, Deserialize)]
struct Page {
    after: Option<String>,
    after_id: Option<String>,
    before_id: Option<String>,
    limit: Option<usize>,
}

async fn list_openai(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    if let Err(err) = app.authorize(&headers, Flavor::OpenAi) {
        return error(&err);
    }
    let limit = page.limit.unwrap_or(20).clamp(1, 100);
    json(Ok(app.batches().list_openai(
        page.after.as_deref(),
        limit,
        app.config(),
    )))
}

async fn create_anthropic(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match app.authorize(&headers, Flavor::Anthropic) {
        Ok(()) => json(app.batches().create_anthropic(&body, app.config())),
        Err(err) => error(&err),
    }
}

async fn retrieve_anthropic(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match app.authorize(&headers, Flavor::Anthropic) {
        Ok(()) => json(app.batches().retrieve_anthropic(&id, &base(&headers))),
        Err(err) => error(&err),
    }
}

async fn cancel_anthropic(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match app.authorize(&headers, Flavor::Anthropic) {
        Ok(()) => json(app.batches().cancel_anthropic(&id, &base(&headers))),
        Err(err) => error(&err),
    }
}

async fn list_anthropic(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    if let Err(err) = app.authorize(&headers, Flavor::Anthropic) {
        return error(&err);
    }
    let limit = page.limit.unwrap_or(20).clamp(1, 1000);
    json(Ok(app.batches().list_anthropic(
        page.after_id.as_deref(),
        page.before_id.as_deref(),
        limit,
        &base(&headers),
    )))
}

async fn results_anthropic(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(err) = app.authorize(&headers, Flavor::Anthropic) {
        return error(&err);
    }
    match app.batches().results_anthropic(&id, app.config()) {
        Ok(bytes) => respond(StatusCode::OK, bytes, "application/x-jsonl"),
        Err(err) => error(&err),
    }
}

/// `{"seconds": N}`.
#[derive(Debug, Deserialize)]
struct Advance {
    seconds: f64,
}

async fn advance(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Advance>(&body) {
        Ok(a) if a.seconds.is_finite() && a.seconds >= 0.0 => {
            app.batches().advance(Duration::from_secs_f64(a.seconds));
            respond(
                StatusCode::OK,
                format!("{{\"advanced\":{}}}", a.seconds).into_bytes(),
                "application/json",
            )
        }
        _ => error(&ApiError::invalid_param(
            Flavor::OpenAi,
            "seconds",
            "expected {\"seconds\": N} with N ≥ 0".to_owned(),
        )),
    }
}
