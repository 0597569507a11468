//! The HTTP surface: the OpenAI routes, `/v1/models`, `/healthz`, the admin surface (`/metrics`
//! and the live status page: `/`, `/status`, `/status.json`, behind [`admin`]), and OpenAI-style
//! answers for unknown paths and methods.
//!
//! A proxied request goes: authenticate the client → read the body (size limit) and parse it
//! (JSON object) → read `x-paceline-priority` and `x-paceline-max-wait` → make the engine job
//! (for a stream, asking for usage if the client did not) → wait on the client's own quota →
//! queue it fairly → await its end: a whole answer, or a live stream to relay.
//!
//! It must not know how a request is paced or sent (the fair queue and the engine do that), nor any
//! provider's limit headers.

use super::access::RequestLog;
use super::admin::{self, AdminAccess};
use super::answer::{self, PASSED_HEADERS, status_headers};
use super::clients::{Client, ClientTicket, Refusal};
use super::errors::ApiError;
use super::relay::Relay;
use super::{App, metrics, status_page};
use crate::api::Endpoint;
use crate::engine::respond::{Delivery, LiveStream, Responder};
use crate::engine::trace::JobTrace;
use crate::engine::{Job, Priority};
use crate::provider::usage::Charge;
use crate::tokens::{self, Counting};
use crate::upstream::TransportError;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Bodies larger than this are tokenized on a blocking thread.
const BLOCKING_ESTIMATE_BYTES: usize = 64 * 1024;

/// Large bodies tokenized at once. A megabyte of prompt takes some 10 ms to count, and each
/// thread that counts keeps the tokenizer's 1.2 MB piece cache: a burst of large requests
/// must not start a blocking thread (and a cache) each.
static LARGE_ESTIMATES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The admin surface (the live page, `/status.json`, `/metrics`) behind `access`, plus
/// `/healthz`: served on `listen` beside the API and, alone, on `admin_listen`.
pub fn admin_router(access: Arc<AdminAccess>) -> Router<Arc<App>> {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/", get(status_page::page))
        .route("/status", get(status_page::page))
        .route("/status.json", get(status_page::json))
        .route_layer(axum::middleware::from_fn_with_state(access, admin::guard))
        .route("/healthz", get(healthz))
}

/// The gateway's router: the API, and the admin surface behind `admin` (see [`admin`]).
pub fn router(app: Arc<App>, admin: Arc<AdminAccess>) -> Router {
    let route = |endpoint: Endpoint| {
        post(
            move |State(app): State<Arc<App>>, headers: HeaderMap, body: Body| async move {
                proxy(app, endpoint, headers, body).await
            },
        )
    };
    Router::new()
        .route("/v1/chat/completions", route(Endpoint::ChatCompletions))
        .route("/v1/completions", route(Endpoint::Completions))
        .route("/v1/embeddings", route(Endpoint::Embeddings))
        .route("/v1/responses", route(Endpoint::Responses))
        .route("/v1/messages", route(Endpoint::Messages))
        .route("/v1/models", get(models))
        .merge(admin_router(admin))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn not_found(request: Request) -> Response {
    let mut response =
        ApiError::not_found(request.method().as_str(), request.uri().path()).into_response();
    status_headers(&mut response, Duration::ZERO, 0);
    response
}

async fn method_not_allowed(request: Request) -> Response {
    let mut response =
        ApiError::method_not_allowed(request.method().as_str(), request.uri().path())
            .into_response();
    status_headers(&mut response, Duration::ZERO, 0);
    response
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.engine_running.load(Ordering::SeqCst) && app.pool.active() > 0 {
        (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unavailable"})),
        )
            .into_response()
    }
}

async fn metrics_page(State(app): State<Arc<App>>) -> Response {
    let queue = [
        app.queue.len(Priority::Interactive),
        app.queue.len(Priority::Batch),
    ];
    let text = metrics::render(&app.pool, queue, app.tracer.as_ref());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The client's credentials as an `Authorization` value: the header itself, else Anthropic's
/// `x-api-key` (what the Anthropic SDKs send) as a bearer token.
fn authorization(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return Some(Cow::Borrowed(value));
    }
    let key = headers.get("x-api-key")?.to_str().ok()?;
    Some(Cow::Owned(format!("Bearer {key}")))
}

fn transport_error(err: &TransportError) -> ApiError {
    match err {
        TransportError::Timeout(_) => {
            ApiError::gateway_timeout(format!("the provider did not answer in time: {err}"))
        }
        _ => ApiError::bad_gateway(format!("the provider could not be reached: {err}")),
    }
}

/// `GET /v1/models`: not paced (it costs no quota), sent with a key in rotation; with
/// `[[models]]`, the list of their public names.
async fn models(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let route = "/v1/models";
    let client = match app.clients.authenticate(authorization(&headers).as_deref()) {
        Ok(client) => client,
        Err(err) => return finish_error(RequestLog::new(route, "unauthenticated".into()), err),
    };
    let log = RequestLog::new(route, Arc::clone(&client.name));
    if !app.config.deployments.is_empty() {
        // The public names of `[[models]]` are the gateway's own list.
        let mut names: Vec<&str> = app
            .config
            .deployments
            .iter()
            .map(|d| d.serves.as_str())
            .collect();
        names.dedup();
        let data: Vec<Value> = names
            .into_iter()
            .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "paceline"}))
            .collect();
        log.finish(200, "ok");
        let body = json!({"object": "list", "data": data}).to_string();
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    let Some(key) = app.pool.any_key() else {
        return finish_error(
            log,
            ApiError::unavailable("no usable upstream key is left".into()),
        );
    };
    match app.upstream.get(&key, route).await {
        Ok(reply) if matches!(reply.status, 401 | 403) => finish_error(
            log,
            ApiError::bad_gateway("the provider refused the gateway's upstream key".into()),
        ),
        Ok(reply) => {
            let answer = crate::engine::ProviderAnswer {
                status: reply.status,
                request_id: crate::provider::headers::request_id(|name| reply.header(name))
                    .map(str::to_string),
                body: reply.body,
                usage: None,
            };
            let mut response = answer::relay(&answer);
            status_headers(&mut response, Duration::ZERO, 1);
            log.finish(reply.status, "ok");
            response
        }
        Err(err) => finish_error(log, transport_error(&err)),
    }
}

/// The gateway's own error answer, with the status headers every answer carries: the time the
/// request waited for capacity so far and the attempts made (none: the gateway answered it).
fn finish_error(log: RequestLog, err: ApiError) -> Response {
    let waited = log.waited_so_far();
    log.finish(err.status.as_u16(), err.code.unwrap_or(err.kind));
    let mut response = err.into_response();
    status_headers(&mut response, waited, 0);
    response
}

/// [`finish_error`] in the error shape of `endpoint`'s API (Anthropic's for `/v1/messages`).
fn finish_endpoint_error(log: RequestLog, err: ApiError, endpoint: Endpoint) -> Response {
    let waited = log.waited_so_far();
    log.finish(err.status.as_u16(), err.code.unwrap_or(err.kind));
    let mut response = err.into_endpoint_response(endpoint);
    status_headers(&mut response, waited, 0);
    response
}

/// What a proxied request ends in before the access log is written.
enum Proxied {
    /// A complete response.
    Whole(Response, String),
    /// A live stream to relay.
    Live(Box<Live>),
}

struct Live {
    stream: LiveStream,
    strip_usage: bool,
    ticket: ClientTicket,
    charge: Charge,
}

async fn proxy(app: Arc<App>, endpoint: Endpoint, headers: HeaderMap, body: Body) -> Response {
    let route = endpoint.path();
    let tracer = app.tracer.as_ref();
    let client = match app.clients.authenticate(authorization(&headers).as_deref()) {
        Ok(client) => client,
        Err(err) => {
            let log = RequestLog::new(route, "unauthenticated".into()).traced(tracer, &headers);
            return finish_endpoint_error(log, err, endpoint);
        }
    };
    let mut log = RequestLog::new(route, Arc::clone(&client.name)).traced(tracer, &headers);
    match handle(&app, endpoint, &client, &headers, body, &mut log).await {
        Err(err) => finish_endpoint_error(log, err, endpoint),
        Ok(Proxied::Whole(response, outcome)) => {
            log.finish(response.status().as_u16(), &outcome);
            response
        }
        Ok(Proxied::Live(live)) => {
            let Live {
                stream,
                strip_usage,
                ticket,
                charge,
            } = *live;
            let status = StatusCode::from_u16(stream.status).unwrap_or(StatusCode::OK);
            let passed: Vec<(HeaderName, HeaderValue)> = PASSED_HEADERS
                .iter()
                .filter_map(|name| {
                    let value = HeaderValue::from_str(stream.header(name)?).ok()?;
                    Some((HeaderName::from_static(name), value))
                })
                .collect();
            let request_id = crate::provider::headers::request_id(|name| stream.header(name))
                .map(str::to_string);
            let (waited, attempts) = (stream.waited, stream.attempts);
            let relay = Relay::new(stream, strip_usage, ticket, charge, log);
            let mut response = Response::new(Body::from_stream(relay));
            *response.status_mut() = status;
            response.headers_mut().extend(passed);
            answer::set_request_id(response.headers_mut(), request_id.as_deref());
            status_headers(&mut response, waited, attempts);
            response
        }
    }
}

/// Read the body within the limit.
async fn read_body(app: &App, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = app.config.body_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|err| {
        let over = std::error::Error::source(&err)
            .is_some_and(|e| e.is::<http_body_util::LengthLimitError>())
            || err.to_string().contains("length limit");
        if over {
            ApiError::too_large(limit)
        } else {
            ApiError::bad_request(format!("could not read the request body: {err}"), None)
        }
    })?;
    // A body that came in one read is a slice of the connection's read buffer: keeping it for
    // the request's life (it goes upstream, maybe twice) would pin the whole buffer while the
    // connection allocates another. A copy of its own size frees the buffer now.
    Ok(Bytes::copy_from_slice(&bytes))
}

fn parse_json(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "The request body must be a JSON object.".into(),
            None,
        )),
        Err(err) => Err(ApiError::bad_request(
            format!(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON: {err})"
            ),
            None,
        )),
    }
}

fn priority(headers: &HeaderMap) -> Result<Priority, ApiError> {
    match headers
        .get("x-paceline-priority")
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => Ok(Priority::Interactive),
        Some(v) if v.eq_ignore_ascii_case("interactive") => Ok(Priority::Interactive),
        Some(v) if v.eq_ignore_ascii_case("batch") => Ok(Priority::Batch),
        Some(v) => Err(ApiError::bad_request(
            format!("x-paceline-priority must be `interactive` or `batch`, not {v:?}"),
            None,
        )),
    }
}

fn max_wait(app: &App, headers: &HeaderMap) -> Result<Duration, ApiError> {
    match headers.get("x-paceline-max-wait") {
        None => Ok(app.config.max_wait),
        Some(v) => crate::time::parse_duration(v.to_str().unwrap_or(""))
            .map_err(|m| ApiError::bad_request(format!("x-paceline-max-wait: {m}"), None)),
    }
}

/// For a stream of an endpoint that reports usage only when asked, ask for it. Returns
/// whether the gateway added the option (and must hide its effects from the client).
fn ask_for_usage(endpoint: Endpoint, body: &mut serde_json::Map<String, Value>) -> bool {
    if !matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions) {
        return false;
    }
    let asked = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if asked {
        return false;
    }
    match body.get_mut("stream_options") {
        Some(Value::Object(options)) => {
            options.insert("include_usage".into(), Value::Bool(true));
        }
        _ => {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    true
}

/// Whether some upstream of the gateway serves `endpoint`: the top-level one (when keys
/// without a route use it) or a `[[models]]` deployment.
fn served(app: &App, endpoint: Endpoint) -> bool {
    let config = &app.config;
    let top_level = config.deployments.is_empty() || !config.keys.is_empty();
    (top_level && app.upstream.provider().speaks(endpoint))
        || config
            .deployments
            .iter()
            .any(|d| d.provider.speaks(endpoint))
}

async fn handle(
    app: &Arc<App>,
    endpoint: Endpoint,
    client: &Arc<Client>,
    headers: &HeaderMap,
    body: Body,
    log: &mut RequestLog,
) -> Result<Proxied, ApiError> {
    if !served(app, endpoint) {
        let provider = app.upstream.provider();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("unknown_url"),
            format!(
                "{} is not served by this gateway's upstream: provider {}{}",
                endpoint.path(),
                provider.name(),
                provider.endpoints_hint()
            ),
        ));
    }
    let bytes = read_body(app, headers, body).await?;
    let mut object = parse_json(&bytes)?;
    log.priority = priority(headers)?;
    let max_wait = max_wait(app, headers)?;
    log.model = object
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let stream = endpoint != Endpoint::Embeddings
        && object.get("stream").and_then(Value::as_bool) == Some(true);
    log.stream = stream;
    let strip_usage = stream && ask_for_usage(endpoint, &mut object);
    let value = Value::Object(object);
    let id = format!("req-{}", app.next_id.fetch_add(1, Ordering::Relaxed));
    let default_max_tokens = app.config.default_max_tokens;
    // Nothing waits for a tokenizer: until the model family's is built (in the background,
    // from the first request of the family or at start), the estimate counts bytes, never
    // below the exact count, and settles from usage as always. A large body is estimated on a
    // blocking thread.
    let model = log.model.clone();
    let large = bytes.len() > BLOCKING_ESTIMATE_BYTES;
    let build = move || {
        let estimate = tokens::estimate_by(Counting::NoWait, endpoint, &value, default_max_tokens);
        // An unchanged request goes upstream byte for byte; one whose body was changed (usage
        // asked for) sends the new body.
        let bytes = if strip_usage {
            Bytes::from(value.to_string())
        } else {
            bytes
        };
        Job::with_estimate(id, endpoint, model, bytes, estimate)
    };
    let mut job = if large {
        let _turn = LARGE_ESTIMATES
            .acquire()
            .await
            .map_err(|e| ApiError::unavailable(format!("internal error: {e}")))?;
        tokio::task::spawn_blocking(build)
            .await
            .map_err(|e| ApiError::unavailable(format!("internal error: {e}")))?
    } else {
        build()
    };
    job.priority = log.priority;
    if let Some(span) = log.span() {
        job = job.with_trace(JobTrace::Within(span.clone()));
    }
    // The wait allowed counts from now: estimating a large body is not queueing.
    let waiting_from = Instant::now();
    log.waiting_from(waiting_from);
    let deadline = waiting_from + max_wait;
    job.deadline = Some(deadline);
    job.stream = stream;
    let charge = job.charge();

    let now = Instant::now();
    let (ticket, go_at) = match client.admit(job.cost(), deadline, now) {
        Ok(admitted) => admitted,
        Err(Refusal::NeverFits(err)) => {
            return Err(ApiError::bad_request(
                format!(
                    "request too large for client {}'s own limit: {err}",
                    client.name
                ),
                Some("request_too_large"),
            ));
        }
        Err(Refusal::TooLate(wait)) => {
            app.live.refused(&client.name);
            return Err(ApiError::rate_limited(
                format!(
                    "Rate limit reached for client {} (its own limit in the gateway). Please try again in {:.3}s.",
                    client.name,
                    wait.as_secs_f64()
                ),
                wait,
            ));
        }
    };
    if go_at > now {
        tokio::time::sleep_until(go_at).await;
    }
    let (responder, receiver) = Responder::new();
    let job = job.with_responder(responder);
    // With nothing queued ahead of it and capacity free now, the job goes straight out.
    let unsent = if app.queue.len(Priority::Interactive) == 0 {
        app.engine.send_now(job, &app.events)
    } else {
        Some(job)
    };
    if let Some(job) = unsent
        && app.queue.push(job, client.index, client.weight).is_err()
    {
        ticket.cancel();
        return Err(ApiError::unavailable("the gateway is shutting down".into()));
    }
    let delivery = match receiver.await {
        Ok(delivery) => delivery,
        Err(_) => {
            ticket.cancel();
            return Err(ApiError::unavailable(
                "no usable upstream key is left".into(),
            ));
        }
    };
    match delivery {
        Delivery::Stream(stream) => {
            log.attempts = stream.attempts;
            log.queued = stream.waited;
            app.live.request(&client.name, stream.waited);
            metrics::queue_wait(log.priority, stream.waited);
            Ok(Proxied::Live(Box::new(Live {
                stream,
                strip_usage,
                ticket,
                charge,
            })))
        }
        Delivery::Finished(finished) => {
            log.attempts = finished.attempts;
            log.queued = finished.waited;
            app.live.request(&client.name, finished.waited);
            metrics::queue_wait(log.priority, finished.waited);
            match &finished.verdict {
                crate::engine::Verdict::Succeeded(answer) => {
                    log.usage = answer.usage;
                    ticket.settle(answer.usage, charge);
                }
                crate::engine::Verdict::Failed { answer: None, .. } => ticket.cancel(),
                crate::engine::Verdict::Failed { .. } => {}
            }
            let (mut response, outcome) = answer::respond(&finished, endpoint);
            status_headers(&mut response, finished.waited, finished.attempts);
            Ok(Proxied::Whole(response, outcome))
        }
    }
}
