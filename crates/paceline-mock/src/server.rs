//! The pipeline every API request goes through (key → body → admission → fault → answer → slot
//! (`--slots`) → latency → delivery; with `faults_charge` off, fault → admission), and the
//! shared state of a running mock ([`App`]). It knows no routes and no provider's reshaping:
//! [`crate::routes`] maps paths to [`handle`], and [`crate::azure`] wraps it.

use crate::api::{AnswerCtx, Endpoint, Payload};
use crate::batches::Batches;
use crate::config::MockConfig;
use crate::delivery::{self, Completion};
use crate::errors::{ApiError, Flavor};
use crate::faults::{self, Fault};
use crate::headers;
use crate::keys::{Admission, KeyState, KeyTable, LimitView, Lookup, MAX_UNDECLARED_KEYS};
use crate::latency;
use crate::seed::splitmix;
use crate::slots::Slots;
use crate::stats::StatsSnapshot;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Largest request body accepted (larger gets 413).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Shared state of a running mock.
pub struct App {
    config: MockConfig,
    keys: KeyTable,
    seed: u64,
    seq: AtomicU64,
    shutdown: watch::Receiver<bool>,
    slots: Option<Arc<Slots>>,
    batches: Batches,
}

impl App {
    /// State for `config`; `shutdown` turns true when the server stops.
    pub fn new(config: MockConfig, shutdown: watch::Receiver<bool>) -> Self {
        let seed = config.seed.unwrap_or_else(rand::random);
        let keys = KeyTable::new(&config);
        let slots = config.slots.map(|n| Arc::new(Slots::new(n)));
        let batches = Batches::new(config.batch.clone(), seed);
        Self {
            batches,
            config,
            keys,
            seed,
            seq: AtomicU64::new(0),
            shutdown,
            slots,
        }
    }

    /// Counters of every key and their totals.
    pub fn stats(&self) -> StatsSnapshot {
        let mut snapshot = StatsSnapshot::from_keys(self.keys.stats());
        snapshot.slots = self.slots.as_ref().map(|slots| slots.stats());
        snapshot.batches = self.batches.stats();
        snapshot
    }

    /// The Batch APIs' state.
    pub fn batches(&self) -> &Batches {
        &self.batches
    }

    /// The mock's configuration.
    pub fn config(&self) -> &MockConfig {
        &self.config
    }

    /// Whether the request presents a key this mock accepts; the 401 to answer with if not.
    pub fn authorize(&self, headers: &HeaderMap, flavor: Flavor) -> Result<(), ApiError> {
        if flavor == Flavor::Anthropic && !headers.contains_key("anthropic-version") {
            return Err(ApiError::missing_version());
        }
        let presented = presented_key(headers, flavor);
        match self.keys.lookup(presented) {
            Lookup::Key(_) => Ok(()),
            Lookup::Unknown => Err(ApiError::unauthorized(flavor, presented)),
            Lookup::TableFull => Err(ApiError::key_table_full(flavor, MAX_UNDECLARED_KEYS)),
        }
    }

    /// Clear counters, refill buckets, restart the request sequence (so seeded runs repeat).
    pub fn reset(&self) {
        self.keys.reset();
        self.seq.store(0, Ordering::SeqCst);
        self.batches.reset();
        if let Some(slots) = &self.slots {
            slots.reset();
        }
    }

    async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone: the server is stopping either way.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// The key a request presents: `Authorization: Bearer KEY`, or for Anthropic `x-api-key` first.
fn presented_key(headers: &HeaderMap, flavor: Flavor) -> Option<&str> {
    if flavor == Flavor::Anthropic
        && let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok())
    {
        return Some(k.trim());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = auth.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// Per-request facts every response needs.
struct Req {
    flavor: Flavor,
    id: String,
    started: Instant,
}

impl Req {
    fn respond(
        &self,
        status: StatusCode,
        view: Option<&LimitView>,
        body: Body,
        content_type: HeaderValue,
    ) -> Response {
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, content_type);
        if let Some(view) = view {
            headers::rate_limits(h, self.flavor, view);
        }
        headers::bookkeeping(h, self.flavor, &self.id, self.started.elapsed());
        response
    }

    fn error(&self, err: &ApiError, view: Option<&LimitView>) -> Response {
        let mut response = self.respond(
            err.status,
            view,
            Body::from(err.body()),
            HeaderValue::from_static("application/json"),
        );
        if let Some(wait) = err.retry_after {
            headers::retry_after(response.headers_mut(), self.flavor, wait);
        }
        response
    }
}

/// Marks a response given before the rate limiter was consulted (a fault that is not charged):
/// it carries no rate-limit headers, and Azure's reshaping must not add its `-1` ("not limited")
/// either.
#[derive(Debug, Clone, Copy)]
pub struct LimitsNotConsulted;

/// `response`, marked [`LimitsNotConsulted`] when it has no limit view (an uncharged fault).
fn unconsulted(mut response: Response, view: Option<&LimitView>) -> Response {
    if view.is_none() {
        response.extensions_mut().insert(LimitsNotConsulted);
    }
    response
}

/// The error status a fault answers with (`None`: the fault is in the delivery).
fn fault_error(fault: Fault, flavor: Flavor) -> Option<ApiError> {
    match fault {
        Fault::Fail500 => Some(ApiError::server_error(flavor)),
        Fault::Fail503 => Some(ApiError::unavailable(flavor)),
        Fault::Fail529 => Some(ApiError::overloaded(flavor)),
        Fault::Reset | Fault::Truncate | Fault::Stall => None,
    }
}

/// Ask the key's buckets (and credit) to admit `request`: the limits as they are right after,
/// and the refusal to answer with, if refused.
fn admit<E: Endpoint>(
    app: &App,
    key: &KeyState,
    request: &E,
    flavor: Flavor,
) -> (LimitView, Option<ApiError>) {
    let cost = request
        .prompt_tokens()
        .saturating_add(request.reserved_output());
    let (admission, view) = key.admit(
        request.model(),
        cost,
        app.config.quota_tokens,
        app.config.soft_limits,
        Instant::now(),
    );
    let model = request.model();
    let refusal = match admission {
        Admission::Admitted { .. } => return (view, None),
        Admission::RateLimited {
            dimension,
            wait,
            limit,
            used,
            requested,
        } => ApiError::rate_limited(flavor, model, dimension, limit, used, requested, wait),
        Admission::TooLarge { limit, requested } => {
            ApiError::request_too_large(flavor, model, limit, requested)
        }
        Admission::OutOfQuota => ApiError::insufficient_quota(flavor),
    };
    (view, Some(refusal))
}

/// The pipeline of one API request to endpoint `E` (an axum handler).
pub async fn handle<E: Endpoint>(
    State(app): State<Arc<App>>,
    request_headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let seq = app.seq.fetch_add(1, Ordering::Relaxed);
    let mixed = splitmix(app.seed ^ splitmix(seq));
    let flavor = E::FLAVOR;
    let req = Req {
        flavor,
        id: format!("req_{:016x}{:016x}", mixed, splitmix(mixed)),
        started,
    };
    if flavor == Flavor::Anthropic && !request_headers.contains_key("anthropic-version") {
        return req.error(&ApiError::missing_version(), None);
    }
    let presented = presented_key(&request_headers, flavor);
    let key = match app.keys.lookup(presented) {
        Lookup::Key(key) => key,
        Lookup::Unknown => {
            app.keys.unknown().count_request(true);
            return req.error(&ApiError::unauthorized(flavor, presented), None);
        }
        Lookup::TableFull => {
            app.keys.unknown().count_request(true);
            return req.error(&ApiError::key_table_full(flavor, MAX_UNDECLARED_KEYS), None);
        }
    };
    let bad = |err: ApiError| {
        key.count_request(false);
        req.error(&err, None)
    };
    let body = match body {
        Ok(body) => body,
        Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))) => {
            return bad(ApiError::body_too_large(flavor, MAX_BODY_BYTES));
        }
        Err(other) => return bad(ApiError::unreadable_body(flavor, other.body_text())),
    };
    let request = match E::parse(&body, &app.config) {
        Ok(request) => request,
        Err(err) => return bad(err),
    };
    let mut rng = SmallRng::seed_from_u64(mixed);
    let allow_529 = flavor == Flavor::Anthropic;
    // Not charged: the fault is drawn first and a faulted request never reaches the buckets.
    // Either way the draw is the first use of the request's RNG, so a seed gives the same faults.
    let uncharged = if app.config.faults_charge {
        None
    } else {
        faults::draw(&app.config.faults, allow_529, &mut rng)
    };
    let view = match uncharged {
        Some(fault) => {
            key.record_uncharged_fault(fault);
            None
        }
        None => match admit(&app, &key, &request, flavor) {
            (view, None) => Some(view),
            (view, Some(refusal)) => return req.error(&refusal, Some(&view)),
        },
    };
    let fault = if app.config.faults_charge {
        let fault = faults::draw(&app.config.faults, allow_529, &mut rng);
        if let Some(fault) = fault {
            key.record_fault(fault);
        }
        fault
    } else {
        uncharged
    };
    let view = view.as_ref();
    if let Some(err) = fault.and_then(|fault| fault_error(fault, flavor)) {
        return unconsulted(req.error(&err, view), view);
    }
    let id = format!("{mixed:016x}");
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let answer = request.answer(&mut AnswerCtx {
        rng: &mut rng,
        config: &app.config,
        id: &id,
        created,
    });
    let first_token = latency::base(&app.config.latency, &mut rng);
    let generation = latency::per_tokens(&app.config.latency, answer.completion_tokens);
    if fault == Some(Fault::Reset) {
        let response = req.respond(
            StatusCode::OK,
            view,
            delivery::reset(),
            delivery::content_type(&answer.payload),
        );
        return unconsulted(response, view);
    }
    // A self-hosted server's queue: wait for a slot; the latency below is the service time.
    let slot = match &app.slots {
        None => None,
        Some(slots) => {
            let taken = tokio::select! {
                slot = slots.acquire() => slot,
                () = app.shutting_down() => None,
            };
            match taken {
                Some(slot) => Some(slot),
                None => return req.error(&ApiError::unavailable(flavor), view),
            }
        }
    };
    if fault == Some(Fault::Stall) {
        tokio::select! {
            () = tokio::time::sleep(app.config.stall_duration) => {}
            () = app.shutting_down() => {}
        }
        let response = req.respond(
            StatusCode::OK,
            view,
            delivery::reset(),
            delivery::content_type(&answer.payload),
        );
        return unconsulted(response, view);
    }
    let streaming = matches!(answer.payload, Payload::Sse(_));
    let wait = if streaming {
        first_token
    } else {
        first_token + generation
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let content_type = delivery::content_type(&answer.payload);
    if fault == Some(Fault::Truncate) {
        let mut response = req.respond(StatusCode::OK, view, Body::empty(), content_type);
        *response.body_mut() = delivery::truncated(answer.payload, &mut response);
        return unconsulted(response, view);
    }
    let refund = if app.config.refund_unused {
        request
            .reserved_output()
            .saturating_sub(answer.completion_tokens)
    } else {
        0
    };
    let done = Completion {
        key: Arc::clone(&key),
        model: request.model().to_string(),
        prompt: request.prompt_tokens(),
        completion: answer.completion_tokens,
        refund,
        slot,
    };
    let gap = match &answer.payload {
        Payload::Sse(frames) if frames.len() > 1 => generation / (frames.len() as u32 - 1).max(1),
        _ => Duration::ZERO,
    };
    let body = delivery::complete(answer.payload, gap, done);
    req.respond(StatusCode::OK, view, body, content_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatRequest;
    use crate::config::FaultRates;

    fn app(faults_charge: bool, fail_503: f64, rpm: u64) -> Arc<App> {
        let config = MockConfig {
            rpm,
            faults: FaultRates {
                fail_503,
                ..FaultRates::default()
            },
            seed: Some(11),
            faults_charge,
            ..MockConfig::default()
        };
        // The sender is dropped: nothing here waits for shutdown.
        Arc::new(App::new(config, watch::channel(false).1))
    }

    async fn chat(app: &Arc<App>) -> (u16, Option<u64>) {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-unit"),
        );
        let body = Bytes::from_static(
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#,
        );
        let response = handle::<ChatRequest>(State(Arc::clone(app)), headers, Ok(body)).await;
        let remaining = response
            .headers()
            .get("x-ratelimit-remaining-requests")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        (response.status().as_u16(), remaining)
    }

    /// 40 requests at a bucket of 10 (refilling one per 6 s: not within the test), half faulted.
    #[tokio::test]
    async fn charged_faults_use_the_bucket_uncharged_ones_do_not() {
        let n = 40;
        let charged = app(true, 0.5, 10);
        let mut seen = Vec::new();
        for _ in 0..n {
            seen.push(chat(&charged).await);
        }
        // Admission first: the first 10 requests (answered or faulted) take the whole bucket.
        for (i, (status, remaining)) in seen.iter().enumerate() {
            if i < 10 {
                assert!(matches!(status, 200 | 503), "{i}: {status}");
                assert_eq!(*remaining, Some(9 - i as u64), "{i}");
            } else {
                assert_eq!((*status, *remaining), (429, Some(0)), "{i}");
            }
        }
        let charged_pattern: Vec<u16> = seen.iter().take(10).map(|s| s.0).collect();
        let s = charged.stats().totals;
        assert_eq!(s.ok + s.faults.fail_503, 10);
        assert_eq!((s.requests, s.rate_limited), (n, n - 10));
        assert!(s.faults.fail_503 > 0 && s.ok > 0, "{s:?}");

        let uncharged = app(false, 0.5, 10);
        let mut seen = Vec::new();
        for _ in 0..n {
            seen.push(chat(&uncharged).await);
        }
        // The same seed faults the same requests: the draw is the first use of each one's RNG.
        let pattern: Vec<u16> = seen.iter().take(10).map(|s| s.0).collect();
        assert_eq!(pattern, charged_pattern);
        // Fault first: a 503 has no limit headers and is answered even once the bucket is empty;
        // the k-th admitted request sees 10 − k left, whatever faults came between.
        let mut admitted = 0;
        for (i, (status, remaining)) in seen.iter().enumerate() {
            match status {
                503 => assert_eq!(*remaining, None, "{i}"),
                200 => {
                    admitted += 1;
                    assert_eq!(*remaining, Some(10 - admitted), "{i}");
                }
                _ => {
                    assert_eq!((*status, admitted), (429, 10), "{i}");
                    assert_eq!(*remaining, Some(0), "{i}");
                }
            }
        }
        let s = uncharged.stats().totals;
        assert_eq!(s.ok, 10);
        assert_eq!(s.requests, n);
        assert_eq!(s.rate_limited, n - 10 - s.faults.fail_503);
        let late_503 = seen.iter().skip_while(|s| s.0 != 429).any(|s| s.0 == 503);
        assert!(late_503, "a 503 after the bucket ran dry: {seen:?}");
        assert_eq!(s.per_second.iter().map(|(_, k)| k).sum::<u64>(), 10);
    }
}
