//! The engine's pieces one at a time, in virtual time: priority preemption, deadlines (at
//! booking and at a retry), the pause a 429 puts on the whole quota, `send_now`, and the
//! refund of faults the provider does not charge.
//!
//! Every test runs on a current-thread runtime whose clock is paused (`start_paused`): time
//! moves only when every task waits, straight to the next timer, so the times asserted below
//! are the ones the engine planned (to within a millisecond of rounding, far below any gap
//! tested) and every run is the same. The engine sends through [`Upstream::with_transport`]
//! either to [`Scripted`], a transport in this file whose answers are chosen per request (and
//! which records every request and its virtual time), or to the simulated provider
//! [`SimProvider`].

use bytes::Bytes;
use futures::future::BoxFuture;
use paceline::api::Endpoint;
use paceline::engine::respond::{Delivery, Responder};
use paceline::engine::{Engine, EngineConfig, EngineExit, Event, Finished, Job, Priority, Verdict};
use paceline::provider::Provider;
use paceline::quota::{Dimension, LimitSpec, QuotaConfig};
use paceline::retry::{BackoffPolicy, Failure};
use paceline::sim::scenario::Limit;
use paceline::sim::{Faults, HeaderStyle, LatencyModel, Scenario, SimProvider};
use paceline::upstream::{
    ApiKey, KeyPool, Opened, Reply, Request, Transport, TransportError, Upstream,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Slack on asserted virtual times: the quota counts in integer nanoseconds, so its instants
/// can sit a few nanoseconds off a round figure; a millisecond is far below every gap tested.
const SLACK: Duration = Duration::from_millis(1);

/// `n` milliseconds.
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `|actual - expected| <= SLACK`.
fn near(actual: Duration, expected: Duration) -> bool {
    actual.abs_diff(expected) <= SLACK
}

// ---------------------------------------------------------------------------------------------
// A scripted transport.

/// One request that reached [`Scripted`].
#[derive(Debug, Clone)]
struct Seen {
    /// The job's id (the body's `user` field).
    id: String,
    /// 1 for the job's first request, 2 for its first retry, ...
    attempt: usize,
    /// Virtual time since the transport was made.
    at: Duration,
}

/// What [`Scripted`] answers to one request, after `latency`.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
    latency: Duration,
}

impl Answer {
    /// A chat completion with its usage.
    fn ok() -> Self {
        Answer {
            status: 200,
            headers: Vec::new(),
            body: json!({
                "id": "chatcmpl-scripted", "object": "chat.completion", "created": 0,
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
            }),
            latency: Duration::ZERO,
        }
    }

    /// OpenAI's 429 on the requests dimension, with `retry-after-ms`.
    fn rate_limited(retry_after: Duration) -> Self {
        Answer {
            status: 429,
            headers: vec![("retry-after-ms", retry_after.as_millis().to_string())],
            body: json!({"error": {
                "message": "Rate limit reached for gpt-4o-mini on requests per min (RPM).",
                "type": "requests", "param": null, "code": "rate_limit_exceeded"
            }}),
            latency: Duration::ZERO,
        }
    }

    /// A 503 with `retry-after-ms` (retryable, no quota pause).
    fn unavailable(retry_after: Duration) -> Self {
        Answer {
            status: 503,
            headers: vec![("retry-after-ms", retry_after.as_millis().to_string())],
            body: json!({"error": {
                "message": "Service temporarily unavailable.",
                "type": "server_error", "param": null, "code": null
            }}),
            latency: Duration::ZERO,
        }
    }

    fn after(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    fn reply(&self) -> Reply {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        Reply {
            status: self.status,
            headers,
            body: Bytes::from(self.body.to_string()),
        }
    }
}

type Script = dyn Fn(&Seen) -> Answer + Send + Sync;

/// A transport that answers each request as its script says and records what it saw.
struct Scripted {
    start: Instant,
    script: Box<Script>,
    seen: Mutex<Vec<Seen>>,
}

impl fmt::Debug for Scripted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scripted").finish_non_exhaustive()
    }
}

impl Scripted {
    /// A transport whose clock starts now (call it under the paused runtime).
    fn new(script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Scripted {
            start: Instant::now(),
            script: Box::new(script),
            seen: Mutex::new(Vec::new()),
        })
    }

    /// Every request so far, in order of arrival.
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// The requests for job `id`.
    fn seen_for(&self, id: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.id == id).collect()
    }

    fn answer(&self, request: &Request) -> Answer {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let id = body["user"].as_str().unwrap_or_default().to_string();
        let mut seen = self.seen.lock().expect("lock");
        let attempt = seen.iter().filter(|s| s.id == id).count() + 1;
        let this = Seen {
            id,
            attempt,
            at: self.start.elapsed(),
        };
        let answer = (self.script)(&this);
        seen.push(this);
        answer
    }
}

impl Transport for Scripted {
    fn send(&self, request: Request) -> BoxFuture<'static, Result<Reply, TransportError>> {
        let answer = self.answer(&request);
        Box::pin(async move {
            tokio::time::sleep(answer.latency).await;
            Ok(answer.reply())
        })
    }

    fn open(&self, request: Request) -> BoxFuture<'static, Result<Opened, TransportError>> {
        let (answer, timeout) = (self.answer(&request), request.timeout);
        Box::pin(async move {
            tokio::time::sleep(answer.latency).await;
            let reply = answer.reply();
            let body = futures::stream::once(async move { Ok(reply.body) });
            Ok(Opened::new(
                reply.status,
                reply.headers,
                Box::pin(body),
                timeout,
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Harness.

/// A small chat job whose body carries its id as `user` (how the transports tell jobs apart).
fn job(id: &str) -> Job {
    let body = json!({
        "model": "gpt-4o-mini",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": format!("Say hello to {id}.")}],
        "user": id,
    });
    Job::new(id.to_string(), Endpoint::ChatCompletions, &body, 4096)
}

fn interactive(id: &str) -> Job {
    let mut job = job(id);
    job.priority = Priority::Interactive;
    job
}

/// A requests-only limit of `per_minute` with a bucket of `burst`, and no jitter margin: the
/// quota is exactly that bucket, so every reservation falls on a multiple of the interval.
fn requests_limit(per_minute: u64, burst: u64) -> QuotaConfig {
    QuotaConfig::default().with_margin(Duration::ZERO).with(
        Dimension::Requests,
        LimitSpec {
            per_minute,
            burst: Some(burst),
        },
    )
}

/// An engine with one key limited by `limits`, sending through `transport` as OpenAI.
fn engine(transport: Arc<dyn Transport>, limits: QuotaConfig) -> Arc<Engine> {
    let upstream = Upstream::with_transport(
        transport,
        "http://scripted.provider/v1",
        Duration::from_secs(600),
    )
    .with_provider(Provider::OpenAi, None);
    let key = ApiKey::new("sk-virtual-0000".into(), "VIRTUAL_KEY");
    let pool = Arc::new(KeyPool::new(vec![(key, limits)]));
    Engine::new(
        EngineConfig {
            concurrency: None,
            max_concurrency: 1024,
            backoff: BackoffPolicy::default(),
            seed: Some(7),
            stop_on_uniform_refusals: true,
        },
        pool,
        upstream,
    )
}

/// Every event of a sink with the virtual time it arrived, once the sink closes.
fn collect(mut events: mpsc::Receiver<Event>, start: Instant) -> tokio::task::JoinHandle<Log> {
    tokio::spawn(async move {
        let mut log = Log::default();
        while let Some(event) = events.recv().await {
            if let Event::Finished(done) = event {
                log.finished.push((start.elapsed(), done));
            }
        }
        log
    })
}

/// What came out of the engine's sink.
#[derive(Debug, Default)]
struct Log {
    /// Each finished job with the virtual time it finished.
    finished: Vec<(Duration, Finished)>,
}

impl Log {
    /// The one [`Finished`] of `id` and its time (panics unless there is exactly one).
    fn only(&self, id: &str) -> (Duration, &Finished) {
        let all: Vec<_> = self
            .finished
            .iter()
            .filter(|(_, f)| f.custom_id == id)
            .collect();
        assert_eq!(all.len(), 1, "{id} finished {} times", all.len());
        (all[0].0, &all[0].1)
    }
}

fn code(finished: &Finished) -> &str {
    match &finished.verdict {
        Verdict::Succeeded(_) => "succeeded",
        Verdict::Failed { code, .. } => code.code(),
    }
}

/// `(id, virtual time)` of every request, for failure messages and comparisons.
fn schedule(seen: &[Seen]) -> Vec<(String, f64)> {
    seen.iter()
        .map(|s| (s.id.clone(), s.at.as_secs_f64()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Priority preemption.

#[tokio::test(start_paused = true)]
async fn an_interactive_job_takes_the_place_of_a_batch_job_waiting_for_its_reservation() {
    let start = Instant::now();
    // One request a second, a bucket of one: b0 goes at 0, b1 is booked for 1 s.
    let transport = Scripted::new(|_| Answer::ok().after(ms(10)));
    let engine = engine(transport.clone(), requests_limit(60, 1));
    let (interactive_tx, interactive_rx) = mpsc::channel(4);
    let (batch_tx, batch_rx) = mpsc::channel(16);
    let (sink, events) = mpsc::channel(1024);
    let collected = collect(events, start);
    for id in ["b0", "b1", "b2"] {
        batch_tx.send(job(id)).await.expect("batch lane");
    }
    drop(batch_tx);
    let running = tokio::spawn(Arc::clone(&engine).run_prioritized(interactive_rx, batch_rx, sink));
    // At 300 ms, while the dispatcher sleeps toward b1's reservation, an interactive job comes.
    tokio::time::sleep(ms(300)).await;
    assert_eq!(schedule(&transport.seen()), [("b0".to_string(), 0.0)]);
    interactive_tx
        .send(interactive("i0"))
        .await
        .expect("interactive lane");
    drop(interactive_tx);
    assert_eq!(running.await.expect("engine"), EngineExit::Completed);
    let log = collected.await.expect("collector");

    // i0 takes b1's place at 1 s; b1 goes next among the batch jobs, once, then b2.
    let seen = transport.seen();
    let order: Vec<&str> = seen.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(order, ["b0", "i0", "b1", "b2"], "{:?}", schedule(&seen));
    for (s, expected) in seen.iter().zip([0, 1000, 2000, 3000]) {
        assert!(near(s.at, ms(expected)), "{:?}", schedule(&seen));
        assert_eq!(s.attempt, 1, "{:?}", schedule(&seen));
    }
    for (id, done_at) in [("b0", 10), ("i0", 1010), ("b1", 2010), ("b2", 3010)] {
        let (at, finished) = log.only(id);
        assert_eq!(code(finished), "succeeded", "{id}: {finished:?}");
        assert_eq!(finished.attempts, 1, "{id}");
        assert!(near(at, ms(done_at)), "{id} finished at {at:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Deadlines at booking.

#[tokio::test(start_paused = true)]
async fn a_job_that_cannot_go_before_its_deadline_finishes_unsent_with_when_it_could_have() {
    let start = Instant::now();
    let transport = Scripted::new(|_| Answer::ok().after(ms(10)));
    let engine = engine(transport.clone(), requests_limit(60, 1));
    let (input, jobs) = mpsc::channel(16);
    let (sink, events) = mpsc::channel(1024);
    let collected = collect(events, start);
    let with_deadline = |id: &str, after_ms: u64| {
        let mut job = job(id);
        job.deadline = Some(start + ms(after_ms));
        job
    };
    // j0 takes the bucket at 0; `late` would go at 1 s, after its deadline at 500 ms; j2 goes
    // at 1 s (the cancelled reservation was given back); `in-time` goes at 2 s, before 2.5 s.
    for job in [
        job("j0"),
        with_deadline("late", 500),
        job("j2"),
        with_deadline("in-time", 2500),
    ] {
        input.send(job).await.expect("input");
    }
    drop(input);
    let exit = Arc::clone(&engine).run(jobs, sink).await;
    assert_eq!(exit, EngineExit::Completed);
    let log = collected.await.expect("collector");

    assert!(
        transport.seen_for("late").is_empty(),
        "a request for it was sent"
    );
    let (at, late) = log.only("late");
    assert_eq!(code(late), Failure::DeadlineExceeded.code(), "{late:?}");
    assert!(near(at, Duration::ZERO), "finished at {at:?}, not at once");
    assert_eq!(late.attempts, 0);
    let retry_after = late.retry_after.expect("a retry_after");
    assert!(
        near(retry_after, ms(1000)),
        "retry_after {retry_after:?}: the quota lets the next request go at 1 s"
    );
    let Verdict::Failed { answer, .. } = &late.verdict else {
        unreachable!()
    };
    assert!(answer.is_none(), "{answer:?}");

    let seen = transport.seen();
    let expected = [("j0", 0), ("j2", 1000), ("in-time", 2000)];
    assert_eq!(seen.len(), expected.len(), "{:?}", schedule(&seen));
    for (s, (id, at)) in seen.iter().zip(expected) {
        assert_eq!(s.id, id, "{:?}", schedule(&seen));
        assert!(near(s.at, ms(at)), "{:?}", schedule(&seen));
    }
    for id in ["j0", "j2", "in-time"] {
        assert_eq!(code(log.only(id).1), "succeeded", "{id}");
    }
}

// ---------------------------------------------------------------------------------------------
// A 429 pauses the whole quota.

#[tokio::test(start_paused = true)]
async fn one_429_pauses_every_request_until_its_hint_then_the_rate_resumes() {
    let start = Instant::now();
    let hint = ms(2000);
    let latency = ms(20);
    // Ten a second, a bucket of one: r0, r1, r2 go at 0, 100, 200 ms; r2's first attempt is
    // refused with a 2 s hint, which arrives at 220 ms, before r3's reservation at 300 ms.
    let transport = Scripted::new(move |seen| {
        if seen.id == "r2" && seen.attempt == 1 {
            Answer::rate_limited(hint).after(latency)
        } else {
            Answer::ok().after(latency)
        }
    });
    let engine = engine(transport.clone(), requests_limit(600, 1));
    let (input, jobs) = mpsc::channel(16);
    let (sink, events) = mpsc::channel(1024);
    let collected = collect(events, start);
    for i in 0..10 {
        input.send(job(&format!("r{i}"))).await.expect("input");
    }
    drop(input);
    let exit = Arc::clone(&engine).run(jobs, sink).await;
    assert_eq!(exit, EngineExit::Completed);
    let log = collected.await.expect("collector");

    let seen = transport.seen();
    let shown = schedule(&seen);
    // Every job once, r2 twice: eleven requests.
    assert_eq!(seen.len(), 11, "{shown:?}");
    for i in 0..10 {
        let id = format!("r{i}");
        let (_, finished) = log.only(&id);
        assert_eq!(code(finished), "succeeded", "{id}: {finished:?}");
        let attempts = if id == "r2" { 2 } else { 1 };
        assert_eq!(finished.attempts, attempts, "{id}");
    }
    // Before the 429: 0, 100, 200 ms.
    for (s, at) in seen.iter().zip([0, 100, 200]) {
        assert!(near(s.at, ms(at)), "{shown:?}");
    }
    // Nothing between the 429 and the end of its hint (220 ms + 2 s).
    let resume = ms(200) + latency + hint;
    let after: Vec<&Seen> = seen[3..].iter().collect();
    assert!(
        after.iter().all(|s| s.at + SLACK >= resume),
        "a request went during the pause: {shown:?}"
    );
    // Then the eight left (r2's retry among them) at the rate: the first at once, each next one
    // an interval later, never sooner, and no later either.
    assert!(near(after[0].at, resume), "resumed late: {shown:?}");
    for pair in after.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(near(gap, ms(100)), "gap {gap:?}: {shown:?}");
    }
    assert!(after.iter().any(|s| s.id == "r2" && s.attempt == 2));
}

// ---------------------------------------------------------------------------------------------
// A retry due after the deadline.

#[tokio::test(start_paused = true)]
async fn a_retry_due_after_the_deadline_ends_the_job_with_its_last_answer() {
    let start = Instant::now();
    let latency = ms(20);
    // Both jobs' first attempts get a 503; `doomed`'s says to come back in 5 s (after its 1 s
    // deadline), `saved`'s in 300 ms (before it).
    let transport = Scripted::new(move |seen| match (seen.id.as_str(), seen.attempt) {
        ("doomed", 1) => Answer::unavailable(ms(5000)).after(latency),
        ("saved", 1) => Answer::unavailable(ms(300)).after(latency),
        _ => Answer::ok().after(latency),
    });
    let engine = engine(transport.clone(), requests_limit(6000, 100));
    let (input, jobs) = mpsc::channel(16);
    let (sink, events) = mpsc::channel(1024);
    let collected = collect(events, start);
    for id in ["doomed", "saved"] {
        let mut job = job(id);
        job.deadline = Some(start + ms(1000));
        input.send(job).await.expect("input");
    }
    drop(input);
    let exit = Arc::clone(&engine).run(jobs, sink).await;
    assert_eq!(exit, EngineExit::Completed);
    let log = collected.await.expect("collector");

    let doomed_seen = transport.seen_for("doomed");
    assert_eq!(doomed_seen.len(), 1, "{:?}", schedule(&doomed_seen));
    assert!(near(doomed_seen[0].at, Duration::ZERO));
    let (at, doomed) = log.only("doomed");
    // It ends when the 503 arrives, not at the deadline, and says when the retry was due.
    assert!(near(at, latency), "finished at {at:?}");
    assert_eq!(code(doomed), Failure::DeadlineExceeded.code(), "{doomed:?}");
    assert_eq!(doomed.attempts, 1);
    let retry_after = doomed.retry_after.expect("a retry_after");
    // The 503's hint, spread by at most a quarter of it (no more than the first retry's 1 s).
    assert!(
        retry_after >= ms(5000) && retry_after <= ms(6000),
        "retry_after {retry_after:?}"
    );
    let Verdict::Failed { answer, .. } = &doomed.verdict else {
        unreachable!()
    };
    let answer = answer.as_ref().expect("the 503 is kept");
    assert_eq!(answer.status, 503);
    let body: Value = serde_json::from_slice(&answer.body).expect("JSON body");
    assert_eq!(
        body["error"]["message"], "Service temporarily unavailable.",
        "{body}"
    );

    let saved_seen = transport.seen_for("saved");
    assert_eq!(saved_seen.len(), 2, "{:?}", schedule(&saved_seen));
    let waited = saved_seen[1].at - saved_seen[0].at;
    assert!(
        waited + SLACK >= latency + ms(300) && saved_seen[1].at < ms(1000),
        "retried {waited:?} after its first attempt, at {:?}",
        saved_seen[1].at
    );
    let (_, saved) = log.only("saved");
    assert_eq!(code(saved), "succeeded", "{saved:?}");
    assert_eq!(saved.attempts, 2);
}

// ---------------------------------------------------------------------------------------------
// Faults the provider does not charge.

/// 10 requests a second, a bucket of 5.
const SIM_LIMIT: Limit = Limit {
    per_minute: 600,
    capacity: 5,
};

#[tokio::test(start_paused = true)]
async fn uncharged_faults_cost_no_rate() {
    // 10 % of requests are answered 503 before the provider charges them (such answers carry
    // no rate-limit headers); the others carry OpenAI's. A quota that keeps the refused
    // requests charged loses 10 % of the rate; one that gives them back reaches the limit.
    // Measured over 20 s of a 40 s backlog, so the window ends long before the last retries.
    let faults = Faults {
        p503: 0.1,
        charged: false,
        reset: 0.0,
    };
    let window = Duration::from_secs(20);
    let jobs = 400;
    let sim = SimProvider::new(Scenario {
        headers: HeaderStyle::OpenAi,
        requests: Some(SIM_LIMIT),
        latency: LatencyModel::Fixed(ms(200)),
        faults,
        seed: 7,
        ..Scenario::default()
    });
    let engine = engine(Arc::new(sim.clone()), QuotaConfig::default());
    let (input, rx) = mpsc::channel(64);
    let (sink, mut events) = mpsc::channel(1024);
    let feeder = tokio::spawn(async move {
        for i in 0..jobs {
            if input.send(job(&format!("req-{i:04}"))).await.is_err() {
                return;
            }
        }
    });
    let drain = tokio::spawn(async move {
        let mut failed = 0;
        while let Some(event) = events.recv().await {
            if let Event::Finished(done) = event
                && !matches!(done.verdict, Verdict::Succeeded(_))
            {
                failed += 1;
            }
        }
        failed
    });
    let exit = Arc::clone(&engine).run(rx, sink).await;
    feeder.await.expect("feeder");
    assert_eq!(exit, EngineExit::Completed);
    assert_eq!(drain.await.expect("drain"), 0, "some requests failed");

    let stats = sim.stats();
    // What the buckets charged: with these faults (none charged, no resets) exactly the
    // attempts that succeeded.
    let charged: Vec<_> = stats.admitted.iter().filter(|a| a.succeeded).collect();
    assert_eq!(charged.len(), jobs);
    let first = stats.first_answer.expect("an answer");
    let end = first + window;
    let last = charged.last().expect("admissions").at;
    assert!(
        last >= end,
        "the backlog ran out before the window closed: last admission {:?} after the first answer",
        last - first
    );
    let in_window = charged
        .iter()
        .filter(|a| a.at >= first && a.at < end)
        .count();
    let rate = in_window as f64 / window.as_secs_f64();
    let limit = SIM_LIMIT.per_minute as f64 / 60.0;
    println!(
        "uncharged 503s: {rate:.3} requests/s charged over {window:?} after the first answer \
         ({:.3} of the limit); {} requests received, {} answered with an uncharged 503, {} refused",
        rate / limit,
        stats.received,
        stats.received - stats.refused - jobs as u64,
        stats.refused
    );
    assert!(
        rate >= 0.97 * limit,
        "{rate:.3} requests/s charged after the first answer, under 0.97 × {limit}/s"
    );
}

// ---------------------------------------------------------------------------------------------
// send_now.

/// A job's end from its responder, and the virtual time it came.
async fn delivered(rx: oneshot::Receiver<Delivery>, start: Instant) -> (Duration, Finished) {
    match rx.await.expect("a delivery") {
        Delivery::Finished(finished) => (start.elapsed(), finished),
        Delivery::Stream(stream) => panic!("a stream for a whole-answer job: {stream:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn send_now_sends_at_once_when_idle_and_hands_the_job_back_when_the_quota_is_spent() {
    let start = Instant::now();
    let latency = ms(50);
    let transport = Scripted::new(move |_| Answer::ok().after(latency));
    // One request a second, a bucket of one.
    let engine = engine(transport.clone(), requests_limit(60, 1));
    let (interactive_tx, interactive_rx) = mpsc::channel(4);
    let (batch_tx, batch_rx) = mpsc::channel(4);
    let (sink, events) = mpsc::channel(1024);
    let collected = collect(events, start);
    let running =
        tokio::spawn(Arc::clone(&engine).run_prioritized(interactive_rx, batch_rx, sink.clone()));

    // Idle: sent from here, at once.
    let (responder, rx) = Responder::new();
    assert!(
        engine
            .send_now(interactive("first").with_responder(responder), &sink)
            .is_none(),
        "an idle engine did not take the job"
    );
    let (at, first) = delivered(rx, start).await;
    assert_eq!(code(&first), "succeeded", "{first:?}");
    assert!(near(at, latency), "answered at {at:?}");
    assert_eq!(schedule(&transport.seen()), [("first".to_string(), 0.0)]);

    // The bucket is empty until 1 s: the next one comes back untouched, nothing is sent.
    let (responder, rx) = Responder::new();
    let handed_back = engine
        .send_now(interactive("second").with_responder(responder), &sink)
        .expect("handed back while the quota cannot admit it");
    assert_eq!(handed_back.attempts, 0);
    assert_eq!(handed_back.custom_id, "second");
    // Only interactive jobs skip the queue.
    let batch = engine
        .send_now(job("batch").with_responder(Responder::new().0), &sink)
        .expect("a batch job is handed back");
    drop(batch);
    tokio::task::yield_now().await;
    assert_eq!(
        transport.seen().len(),
        1,
        "{:?}",
        schedule(&transport.seen())
    );

    // Queued the usual way, it goes when the quota lets it: at 1 s.
    interactive_tx
        .send(handed_back)
        .await
        .expect("interactive lane");
    drop((interactive_tx, batch_tx, sink));
    let (at, second) = delivered(rx, start).await;
    assert_eq!(code(&second), "succeeded", "{second:?}");
    assert!(near(at, ms(1000) + latency), "answered at {at:?}");
    assert_eq!(running.await.expect("engine"), EngineExit::Completed);
    // Results with a responder go there, not to the sink.
    assert!(collected.await.expect("collector").finished.is_empty());
    let seen = transport.seen();
    assert_eq!(seen.len(), 2, "{:?}", schedule(&seen));
    assert_eq!(seen[1].id, "second");
    assert!(near(seen[1].at, ms(1000)), "{:?}", schedule(&seen));
}
