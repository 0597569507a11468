//! The simulated provider: a [`Transport`] that answers from a bucket model in virtual time.
//!
//! It must not know the quota, the engine or the provider module (it writes each header dialect
//! itself); it counts tokens with `paceline_mock`'s tokenizer.

use super::bucket::Bucket;
use super::scenario::{HeaderStyle, LatencyModel, Limit, Scenario};
use crate::upstream::{Opened, Reply, Request, Transport, TransportError};
use bytes::Bytes;
use futures::future::BoxFuture;
use paceline_mock::tokens as counting;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Normal};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The dimensions a simulated key is limited in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    Requests,
    /// OpenAI's tokens: prompt + `max_tokens`, kept.
    Tokens,
    /// Anthropic's input tokens: the prompt.
    Input,
    /// Anthropic's output tokens: `max_tokens` at admission, corrected to the output.
    Output,
}

/// One attempt the provider admitted (charged to its buckets).
#[derive(Debug, Clone)]
pub struct Admitted {
    /// Which request (its body's `user` field, set by the harness to the `custom_id`).
    pub request: String,
    /// When it arrived.
    pub at: Instant,
    /// What it cost per dimension at admission: requests, tokens, input, output.
    pub cost: [u64; 4],
    /// Output tokens given back at its end (Anthropic's correction).
    pub refund: u64,
    /// How long it was worked on (its slot time).
    pub service: Duration,
    /// Whether it ended in a complete answer.
    pub succeeded: bool,
    /// Whether the buckets were charged (a fault drawn before admission is not).
    pub charged: bool,
}

/// What the provider saw, for the test's assertions.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    /// Requests that reached it.
    pub received: u64,
    /// Answered 429.
    pub refused: u64,
    /// 429s to requests that arrived after the first answer had been sent.
    pub refused_after_first_answer: u64,
    /// When the first answer (of any kind) was sent.
    pub first_answer: Option<Instant>,
    /// Every admitted attempt in order of arrival (and the faults answered without charge).
    pub admitted: Vec<Admitted>,
    /// Most requests waiting for a slot at once.
    pub peak_queued: usize,
    /// Units the second client took.
    pub second_client_units: u64,
}

#[derive(Debug)]
struct State {
    buckets: Vec<(Dim, Bucket)>,
    rng: SmallRng,
    stats: SimStats,
    lowered: bool,
    queued: usize,
}

#[derive(Debug)]
struct Inner {
    scenario: Scenario,
    start: Instant,
    wall_start: SystemTime,
    slots: Option<Semaphore>,
    state: Mutex<State>,
}

/// The simulated provider (cheap to clone: one shared state).
#[derive(Debug, Clone)]
pub struct SimProvider {
    inner: Arc<Inner>,
}

/// The wall clock's reading at the start: a fixed date a fraction into its second, so whole
/// seconds of RFC 3339 resets never line up with the run's own start.
const WALL_START_SECS: f64 = 1_780_000_000.37;

impl SimProvider {
    /// A provider for `scenario`, whose clock starts now (call it under a paused runtime).
    pub fn new(scenario: Scenario) -> Self {
        let start = Instant::now();
        let mut buckets = Vec::new();
        let bucket = |l: Limit| Bucket::new(l.per_minute, l.capacity, start);
        if let Some(l) = scenario.requests {
            buckets.push((Dim::Requests, bucket(l)));
        }
        if let Some(l) = scenario.tokens {
            if scenario.headers == HeaderStyle::Anthropic {
                buckets.push((Dim::Input, bucket(l)));
                buckets.push((Dim::Output, bucket(l)));
            } else {
                buckets.push((Dim::Tokens, bucket(l)));
            }
        }
        let provider = SimProvider {
            inner: Arc::new(Inner {
                slots: scenario.slots.map(Semaphore::new),
                wall_start: UNIX_EPOCH + Duration::from_secs_f64(WALL_START_SECS),
                start,
                state: Mutex::new(State {
                    buckets,
                    rng: SmallRng::seed_from_u64(scenario.seed),
                    stats: SimStats::default(),
                    lowered: false,
                    queued: 0,
                }),
                scenario,
            }),
        };
        if let Some(second) = provider.inner.scenario.second_client {
            let other = provider.clone();
            tokio::spawn(async move { other.second_client(second.share).await });
        }
        provider
    }

    /// The scenario it plays.
    pub fn scenario(&self) -> &Scenario {
        &self.inner.scenario
    }

    /// What it has seen so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Another client on the key: one request (and a typical token cost) at `share` of the
    /// requests dimension's rate, each as soon as the buckets hold it. It stops when the
    /// provider is dropped by everyone else.
    async fn second_client(self, share: f64) {
        let Some(limit) = self.inner.scenario.requests else {
            return;
        };
        let every = Duration::from_secs_f64(60.0 / (limit.per_minute as f64 * share));
        let mut next = Instant::now() + every;
        loop {
            tokio::time::sleep_until(next).await;
            if Arc::strong_count(&self.inner) <= 1 {
                return;
            }
            let now = Instant::now();
            let mut state = self.lock();
            let cost = [1, 50, 20, 30];
            if state
                .buckets
                .iter_mut()
                .all(|(d, b)| b.admits(cost_of(*d, &cost), now))
            {
                for (d, b) in state.buckets.iter_mut() {
                    b.take(cost_of(*d, &cost), now);
                }
                state.stats.second_client_units += 1;
                next += every;
            } else {
                let wait = state
                    .buckets
                    .iter_mut()
                    .map(|(d, b)| b.wait_for(cost_of(*d, &cost), now))
                    .max()
                    .unwrap_or(every);
                next = now + wait.max(Duration::from_millis(1));
            }
        }
    }

    fn wall(&self, now: Instant) -> SystemTime {
        self.inner.wall_start + now.saturating_duration_since(self.inner.start)
    }

    fn lower_limits_when_due(&self, state: &mut State, now: Instant) {
        if let Some((at, factor)) = self.inner.scenario.lower_limit
            && !state.lowered
            && now >= self.inner.start + at
        {
            state.lowered = true;
            for (_, bucket) in state.buckets.iter_mut() {
                let lower = (bucket.per_minute() as f64 * factor).round() as u64;
                bucket.lower_to(lower, now);
            }
        }
    }

    /// Decide at arrival what happens to a request: all bookkeeping under one lock.
    fn plan(&self, parsed: &Parsed, arrived: Instant) -> Plan {
        let scenario = &self.inner.scenario;
        let mut state = self.lock();
        state.stats.received += 1;
        self.lower_limits_when_due(&mut state, arrived);
        let after_first = state.stats.first_answer.is_some_and(|t| t <= arrived);
        // A fault drawn before admission costs the key nothing.
        let cost = [
            1,
            parsed.prompt + parsed.max_tokens,
            parsed.prompt,
            parsed.max_tokens,
        ];
        if !scenario.faults.charged
            && scenario.faults.p503 > 0.0
            && state.rng.random::<f64>() < scenario.faults.p503
        {
            state.stats.admitted.push(Admitted {
                request: parsed.user.clone(),
                at: arrived,
                cost,
                refund: 0,
                service: scenario.refusal_latency,
                succeeded: false,
                charged: false,
            });
            return Plan::FreeFault;
        }
        let refused = state
            .buckets
            .iter_mut()
            .position(|(d, b)| !b.admits(cost_of(*d, &cost), arrived));
        if let Some(index) = refused {
            state.stats.refused += 1;
            if after_first {
                state.stats.refused_after_first_answer += 1;
            }
            let (dim, bucket) = &mut state.buckets[index];
            let dim = *dim;
            let wait = bucket.wait_for(cost_of(dim, &cost), arrived);
            let headers = self.limit_headers(&mut state, arrived, Some(wait));
            return Plan::Refused {
                headers,
                body: rate_limit_body(scenario.headers, dim, wait),
            };
        }
        for (d, b) in state.buckets.iter_mut() {
            b.take(cost_of(*d, &cost), arrived);
        }
        let headers = self.limit_headers(&mut state, arrived, None);
        let mean = scenario.mean_output.max(1);
        let output = state
            .rng
            .random_range(1..=2 * mean)
            .min(parsed.max_tokens.max(1));
        let latency = draw_latency(&scenario.latency, output, &mut state.rng);
        let charged_fault = scenario.faults.charged
            && scenario.faults.p503 > 0.0
            && state.rng.random::<f64>() < scenario.faults.p503;
        let reset =
            scenario.faults.reset > 0.0 && state.rng.random::<f64>() < scenario.faults.reset;
        let succeeded = !charged_fault && !reset;
        let refund = if scenario.headers == HeaderStyle::Anthropic && succeeded {
            parsed.max_tokens.saturating_sub(output)
        } else {
            0
        };
        state.stats.admitted.push(Admitted {
            request: parsed.user.clone(),
            at: arrived,
            cost,
            refund,
            service: latency,
            succeeded,
            charged: true,
        });
        Plan::Admitted(Service {
            headers,
            latency,
            output,
            charged_fault,
            reset,
            refund,
        })
    }

    async fn answer(self, request: Request) -> Result<Reply, TransportError> {
        let scenario = &self.inner.scenario;
        let parsed = Parsed::of(&request);
        let Service {
            headers,
            latency,
            output,
            charged_fault,
            reset,
            refund,
        } = match self.plan(&parsed, Instant::now()) {
            Plan::FreeFault => {
                tokio::time::sleep(scenario.refusal_latency).await;
                self.first_answer();
                let body = unavailable_body(scenario.headers);
                return Ok(reply(503, HeaderMap::new(), body));
            }
            Plan::Refused { headers, body } => {
                tokio::time::sleep(scenario.refusal_latency).await;
                self.first_answer();
                return Ok(reply(429, headers, body));
            }
            Plan::Admitted(service) => service,
        };
        let _slot = self.take_slot().await;
        if latency > request.timeout {
            tokio::time::sleep(request.timeout).await;
            return Err(TransportError::Timeout(request.timeout));
        }
        tokio::time::sleep(latency).await;
        self.first_answer();
        if reset {
            return Err(TransportError::Reset(
                "connection reset by the simulated provider".into(),
            ));
        }
        if charged_fault {
            return Ok(reply(503, headers, unavailable_body(scenario.headers)));
        }
        if refund > 0 {
            let now = Instant::now();
            let mut state = self.lock();
            for (d, b) in state.buckets.iter_mut() {
                if *d == Dim::Output {
                    b.give(refund, now);
                }
            }
        }
        Ok(reply(
            200,
            headers,
            success_body(scenario.headers, &parsed, output),
        ))
    }

    /// Wait for a slot (when the server has a fixed number); the permit frees it.
    async fn take_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let slots = self.inner.slots.as_ref()?;
        {
            let mut state = self.lock();
            state.queued += 1;
            state.stats.peak_queued = state.stats.peak_queued.max(state.queued);
        }
        let permit = slots.acquire().await.ok();
        self.lock().queued -= 1;
        permit
    }

    fn first_answer(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        state.stats.first_answer.get_or_insert(now);
    }

    /// The rate-limit headers as of `now` (after this request's charge), in the scenario's
    /// dialect; `retry` adds the retry hint of a 429.
    fn limit_headers(&self, state: &mut State, now: Instant, retry: Option<Duration>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let style = self.inner.scenario.headers;
        let wall = self.wall(now);
        for (dim, bucket) in state.buckets.iter_mut() {
            let remaining = bucket.remaining(now);
            let reset = bucket.reset(now);
            let limit = bucket.per_minute();
            let suffix = if *dim == Dim::Requests {
                "requests"
            } else {
                "tokens"
            };
            match style {
                HeaderStyle::OpenAi => {
                    put(
                        &mut headers,
                        &format!("x-ratelimit-limit-{suffix}"),
                        limit.to_string(),
                    );
                    put(
                        &mut headers,
                        &format!("x-ratelimit-remaining-{suffix}"),
                        remaining.to_string(),
                    );
                    put(
                        &mut headers,
                        &format!("x-ratelimit-reset-{suffix}"),
                        go_duration(reset),
                    );
                }
                HeaderStyle::Azure => {
                    put(
                        &mut headers,
                        &format!("x-ratelimit-remaining-{suffix}"),
                        remaining.to_string(),
                    );
                }
                HeaderStyle::Anthropic => {
                    let name = match dim {
                        Dim::Requests => "requests",
                        Dim::Input => "input-tokens",
                        Dim::Output | Dim::Tokens => "output-tokens",
                    };
                    put(
                        &mut headers,
                        &format!("anthropic-ratelimit-{name}-limit"),
                        limit.to_string(),
                    );
                    put(
                        &mut headers,
                        &format!("anthropic-ratelimit-{name}-remaining"),
                        remaining.to_string(),
                    );
                    put(
                        &mut headers,
                        &format!("anthropic-ratelimit-{name}-reset"),
                        rfc3339_seconds(wall + reset),
                    );
                }
                HeaderStyle::None => {}
            }
        }
        if let Some(wait) = retry {
            match style {
                HeaderStyle::OpenAi => {
                    put(
                        &mut headers,
                        "retry-after-ms",
                        wait.as_millis().max(1).to_string(),
                    );
                }
                HeaderStyle::Azure => {
                    put(
                        &mut headers,
                        "retry-after-ms",
                        wait.as_millis().max(1).to_string(),
                    );
                    put(
                        &mut headers,
                        "retry-after",
                        wait.as_secs_f64().ceil().max(1.0).to_string(),
                    );
                }
                HeaderStyle::Anthropic | HeaderStyle::None => {
                    put(
                        &mut headers,
                        "retry-after",
                        (wait.as_secs_f64().ceil() as u64).max(1).to_string(),
                    );
                }
            }
        }
        headers
    }
}

impl Transport for SimProvider {
    fn send(&self, request: Request) -> BoxFuture<'static, Result<Reply, TransportError>> {
        Box::pin(self.clone().answer(request))
    }

    fn open(&self, request: Request) -> BoxFuture<'static, Result<Opened, TransportError>> {
        let timeout = request.timeout;
        let answer = self.clone().answer(request);
        Box::pin(async move {
            let reply = answer.await?;
            let body = futures::stream::once(async move { Ok(reply.body) });
            Ok(Opened::new(
                reply.status,
                reply.headers,
                Box::pin(body),
                timeout,
            ))
        })
    }

    fn wall_clock(&self) -> SystemTime {
        self.wall(Instant::now())
    }

    fn connect_time(&self) -> Option<Duration> {
        let connect = self.inner.scenario.connect?;
        (self.lock().stats.received > 0).then_some(connect)
    }
}

/// What happens to a request, decided when it arrives.
enum Plan {
    /// A 503 drawn before admission: nothing charged.
    FreeFault,
    /// A 429.
    Refused { headers: HeaderMap, body: Value },
    /// Charged; answered as `Service` says.
    Admitted(Service),
}

/// How an admitted request is answered: after `latency` (once a slot is free), with these
/// headers, a fault or `output` tokens, and `refund` output tokens given back at the end.
struct Service {
    headers: HeaderMap,
    latency: Duration,
    output: u64,
    charged_fault: bool,
    reset: bool,
    refund: u64,
}

fn reply(status: u16, headers: HeaderMap, body: Value) -> Reply {
    Reply {
        status,
        headers,
        body: Bytes::from(body.to_string()),
    }
}

fn cost_of(dim: Dim, cost: &[u64; 4]) -> u64 {
    match dim {
        Dim::Requests => cost[0],
        Dim::Tokens => cost[1],
        Dim::Input => cost[2],
        Dim::Output => cost[3],
    }
}

fn put(headers: &mut HeaderMap, name: &str, value: String) {
    if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
        headers.insert(name, value);
    }
}

/// A Go duration as OpenAI writes it: `20ms`, `1.5s`, `6m0s`.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let minutes = ms / 60_000;
    let seconds = (ms % 60_000) as f64 / 1000.0;
    let seconds = format!("{seconds:.3}");
    let seconds = seconds.trim_end_matches('0').trim_end_matches('.');
    if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// An instant as RFC 3339 with whole seconds (rounded up, as a "full again at" time is).
fn rfc3339_seconds(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + u64::from(since.subsec_nanos() > 0);
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp(secs as i64, 0).unwrap_or_default();
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn draw_latency(model: &LatencyModel, output: u64, rng: &mut SmallRng) -> Duration {
    match *model {
        LatencyModel::Fixed(d) => d,
        LatencyModel::LogNormal { mean, sigma } => {
            let mu = mean.as_secs_f64().ln() - sigma * sigma / 2.0;
            match LogNormal::new(mu, sigma) {
                Ok(dist) => Duration::from_secs_f64(dist.sample(rng)),
                Err(_) => mean,
            }
        }
        LatencyModel::PerToken {
            base,
            sd,
            per_token,
        } => {
            let b = match Normal::new(base.as_secs_f64(), sd.as_secs_f64()) {
                Ok(dist) => dist.sample(rng).max(base.as_secs_f64() * 0.1),
                Err(_) => base.as_secs_f64(),
            };
            Duration::from_secs_f64(b) + per_token * u32::try_from(output).unwrap_or(u32::MAX)
        }
    }
}

/// What the provider reads from a request body.
struct Parsed {
    model: String,
    prompt: u64,
    max_tokens: u64,
    user: String,
}

impl Parsed {
    fn of(request: &Request) -> Parsed {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_string();
        let bpe = counting::encoding_for(&model);
        let mut messages: Vec<counting::ChatMessage<'_>> = Vec::new();
        if let Some(system) = body.get("system") {
            messages.push(counting::ChatMessage {
                role: "system",
                content: counting::content_text(system),
                name: None,
            });
        }
        for m in body["messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            messages.push(counting::ChatMessage {
                role: m["role"].as_str().unwrap_or("user"),
                content: counting::content_text(&m["content"]),
                name: m["name"].as_str(),
            });
        }
        let prompt = counting::chat_prompt(bpe, &messages);
        let max_tokens = body["max_tokens"]
            .as_u64()
            .or_else(|| body["max_completion_tokens"].as_u64())
            .unwrap_or(4096);
        let user = body["user"]
            .as_str()
            .or_else(|| body["metadata"]["user_id"].as_str())
            .unwrap_or_default()
            .to_string();
        Parsed {
            model,
            prompt,
            max_tokens,
            user,
        }
    }
}

fn success_body(style: HeaderStyle, parsed: &Parsed, output: u64) -> Value {
    let text = "lorem ".repeat(usize::try_from(output.min(64)).unwrap_or(64));
    match style {
        HeaderStyle::Anthropic => json!({
            "id": "msg_sim", "type": "message", "role": "assistant", "model": parsed.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": parsed.prompt, "output_tokens": output}
        }),
        _ => json!({
            "id": "chatcmpl-sim", "object": "chat.completion", "created": 0, "model": parsed.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": parsed.prompt, "completion_tokens": output,
                      "total_tokens": parsed.prompt + output}
        }),
    }
}

fn rate_limit_body(style: HeaderStyle, dim: Dim, wait: Duration) -> Value {
    match style {
        HeaderStyle::Anthropic => json!({"type": "error", "error": {
            "type": "rate_limit_error",
            "message": "This request would exceed your organization's rate limit. Please try again later."
        }}),
        _ => {
            let kind = if dim == Dim::Requests {
                "requests"
            } else {
                "tokens"
            };
            json!({"error": {
                "message": format!("Rate limit reached on {kind}. Please try again in {:.3}s.", wait.as_secs_f64()),
                "type": kind, "param": null, "code": "rate_limit_exceeded"
            }})
        }
    }
}

fn unavailable_body(style: HeaderStyle) -> Value {
    match style {
        HeaderStyle::Anthropic => {
            json!({"type": "error", "error": {"type": "api_error", "message": "Service unavailable"}})
        }
        _ => {
            json!({"error": {"message": "The server is overloaded or not ready yet.", "type": "server_error", "param": null, "code": null}})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_rfc3339_seconds() {
        assert_eq!(go_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(rfc3339_seconds(t), "1970-01-01T00:00:02Z");
    }
}
