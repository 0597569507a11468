//! One attempt: send the job through the upstream's transport, feed the answer back to the
//! quota and the concurrency bound, and act on its outcome ([`super::react`]).
//!
//! It must not know any provider's header names (the answer is read through
//! [`crate::provider::headers`]), nor the store, files or Redis.

use super::concurrency::{Permit, Signal};
use super::react::{Next, Sent, attempt_record};
use super::respond::{Delivery, LiveStream};
use super::stats::Stats;
use super::trace;
use super::{AttemptRecord, Decision, Engine, Event, Job, Waits};
use crate::provider::headers::parse_limit_headers;
use crate::quota::Dimension;
use crate::telemetry::otlp::Span;
use crate::upstream::{Opened, Pick, Upstream};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;
use tokio::sync::mpsc;
use tokio::time::Instant;

impl Engine {
    /// Send one attempt and act on its outcome.
    pub(super) async fn attempt(
        self: Arc<Self>,
        mut job: Job,
        pick: Pick,
        waits: Waits,
        permit: Permit,
        sink: mpsc::Sender<Event>,
    ) {
        job.attempts += 1;
        Stats::incr(&self.stats.attempts);
        let in_flight = self.pool.start(pick.key_index);
        let started = Instant::now();
        let path = job.endpoint.path();
        let (upstream, model, body) = match &pick.route {
            Some(route) => (
                &route.upstream,
                route.model.as_str(),
                with_model(&job.body, &job.model, &route.model),
            ),
            None => (&self.upstream, job.model.as_str(), job.body.clone()),
        };
        let sent_at = upstream.wall_clock();
        job.sent_at = Some(started);
        let live = job.stream && job.responder.is_some();
        // A traced attempt names its span upstream (`traceparent`).
        let span = trace::attempt_span(&job);
        let trace_headers = span.as_ref().map(Span::headers).unwrap_or_default();
        let traced = span.map(|span| (span, model.to_string()));
        // The attempt's task lives while the answer is awaited, sized for the largest of its
        // states: what comes after the answer (the hand-over, finishing, the event sent) is
        // boxed when it comes, and the request's own future beside the task (7,680 bytes a
        // task before, 2,800 plus 720 now; ARCHITECTURE.md, "What a long `run` holds").
        let mut send = Box::pin(async {
            if live {
                match upstream
                    .open(&pick.key, path, model, body, trace_headers)
                    .await
                {
                    Ok(opened) if opened.is_success() => Answer::Live(opened),
                    Ok(opened) => Answer::Whole(opened.into_reply().await),
                    Err(err) => Answer::Whole(Err(err)),
                }
            } else {
                Answer::Whole(
                    upstream
                        .post(&pick.key, path, model, body, trace_headers)
                        .await,
                )
            }
        });
        // A request sent while probing is called back if the first answer shows a server with
        // no limits to learn: it would only wait in that server's queue (see `react`).
        // (A `Notify` wakes its waiters in a fixed order: runs in virtual time stay
        // deterministic.)
        let answer = match self.concurrency.probing().then(|| self.probes.notified()) {
            Some(called_back) => {
                tokio::select! {
                    biased;
                    answer = &mut send => Some(answer),
                    _ = called_back => {
                        let max_output = job.cost().get(Dimension::OutputTokens);
                        match self.call_back_at(started, max_output) {
                            Some(at) if at <= Instant::now() => None,
                            // Called back when it is overdue, unless it answers first.
                            Some(at) => tokio::select! {
                                biased;
                                answer = &mut send => Some(answer),
                                () = tokio::time::sleep_until(at) => None,
                            },
                            None => Some((&mut send).await),
                        }
                    }
                }
            }
            None => Some((&mut send).await),
        };
        drop(send);
        let result = match answer {
            Some(Answer::Whole(result)) => result,
            Some(Answer::Live(opened)) => {
                drop(in_flight);
                let sent = Sent {
                    at: sent_at,
                    latency: started.elapsed(),
                    in_flight: permit.in_flight_at_start(),
                };
                let wall = upstream.wall_clock();
                let traced = traced.map(|(span, model)| (span, upstream.clone(), model));
                Box::pin(
                    self.hand_over(job, pick, waits, permit, opened, sent, wall, sink, traced),
                )
                .await;
                return;
            }
            None => {
                // Dropping the request closed its connection: the server forgets it. It goes
                // again under the in-flight bound, as if it had not been sent.
                drop(in_flight);
                let now = Instant::now();
                pick.cancel(now);
                job.attempts -= 1;
                drop(permit);
                self.retry_later(job, now);
                return;
            }
        };
        let sent = Sent {
            at: sent_at,
            latency: started.elapsed(),
            in_flight: permit.in_flight_at_start(),
        };
        drop(in_flight);
        let wall = upstream.wall_clock();
        let (record, next) = self.react(&mut job, &pick, waits, result, sent, wall);
        // The in-flight slot is held until the results are handed over below: when the sink is
        // slow (a busy store), finished requests must not pile up while new ones start.
        let _slot = permit;
        if let Some((span, model)) = &traced {
            trace::record_attempt(span, &job, upstream, model, &record, &waits);
        }
        log_attempt(&job, &record);
        let _ = Box::pin(sink.send(Event::Attempt(record))).await;
        match next {
            Next::Finish {
                verdict,
                retry_after,
            } => Box::pin(self.finish(job, verdict, retry_after, &sink)).await,
            Next::Retry(due) => self.retry_later(job, due),
        }
    }

    /// A streaming attempt got a 2xx: calibrate from its headers and hand the live answer to
    /// the job's responder. The slot is freed now; the relay settles the quota at the end.
    #[allow(
        clippy::too_many_arguments,
        reason = "the attempt's parts, each moved in once, from the one caller"
    )]
    async fn hand_over(
        &self,
        mut job: Job,
        pick: Pick,
        waits: Waits,
        permit: Permit,
        opened: Opened,
        sent: Sent,
        wall: SystemTime,
        sink: mpsc::Sender<Event>,
        traced: Option<(Span, Upstream, String)>,
    ) {
        let latency = sent.latency;
        let now = Instant::now();
        let snapshot =
            parse_limit_headers(crate::upstream::answer::text_headers(&opened.headers), wall);
        pick.quota.observe(Some(&pick.reservation), &snapshot, now);
        self.concurrency.record(Signal::Answered, latency, now);
        self.update_target_rate(&job, now);
        drop(permit);
        let record = attempt_record(&job, &pick, waits, sent, Some(opened.status));
        if let Some((span, upstream, model)) = &traced {
            trace::record_attempt(span, &job, upstream, model, &record, &waits);
        }
        log_attempt(&job, &record);
        let _ = sink.send(Event::Attempt(record)).await;
        Stats::incr(&self.stats.succeeded);
        let live = LiveStream::new(
            opened,
            job.attempts,
            job.waited(now),
            pick,
            job.charge(),
            Arc::clone(&self.stats),
        );
        if let Some(responder) = job.responder.take() {
            responder.send(Delivery::Stream(live));
        }
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// How an attempt was answered.
enum Answer {
    /// Whole (or not at all).
    Whole(Result<crate::upstream::Reply, crate::upstream::TransportError>),
    /// A 2xx stream, handed over live.
    Live(Opened),
}

/// Log an attempt, except a gateway request's first attempt that succeeded: the request's own
/// access log line already says all of it (one event per request on the common path).
fn log_attempt(job: &Job, record: &AttemptRecord) {
    let told_by_access_log =
        job.responder.is_some() && record.attempt == 1 && record.decision == Decision::Succeeded;
    if !told_by_access_log {
        record.log();
    }
}

/// `body` with its `model` renamed to the deployment's `model` (the bytes as they are when the
/// name is the same or the body is not a JSON object).
fn with_model(body: &Bytes, public: &str, model: &str) -> Bytes {
    if public == model {
        return body.clone();
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut map)) => {
            map.insert("model".into(), Value::String(model.to_string()));
            Bytes::from(Value::Object(map).to_string())
        }
        _ => body.clone(),
    }
}
