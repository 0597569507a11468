//! Per-job result routes: how a caller that submitted one job (a gateway request) gets that
//! job's end back, instead of reading the engine's shared sink.
//!
//! A job made [`Job::with_responder`](super::Job::with_responder) ends in exactly one
//! [`Delivery`] sent to its [`Responder`]: either [`Delivery::Finished`] (a whole answer or a
//! failure), or, for a streaming job whose attempt got a 2xx, [`Delivery::Stream`]: the live
//! upstream answer, handed over at its status and headers so that the caller relays the body
//! as it arrives. From that moment the engine is done with the job: it is never retried, its
//! in-flight slot is free, and the quota keeps the admission estimate until the caller settles
//! it with the usage found in the stream ([`LiveStream::settle`]). A caller that drops the
//! stream closes the upstream connection, which cancels the request at the provider; the
//! estimate then stays charged, as the provider charges admission.
//!
//! The engine checks [`Responder::is_closed`] before booking and again before sending, so a
//! job whose caller has gone is dropped without using the quota.
//!
//! It must not know HTTP routes or the SSE relay: what the caller does with a delivery is the
//! gateway's.

use super::finished::Finished;
use super::stats::Stats;
use crate::provider::usage::{Charge, Usage};
use crate::quota::Dimension;
use crate::upstream::{ByteStream, Opened, Pick};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How a job with a responder ends.
#[derive(Debug)]
pub enum Delivery {
    /// A whole answer or a failure.
    Finished(Finished),
    /// A 2xx streaming answer, live.
    Stream(LiveStream),
}

/// The sending half of a job's result route.
pub struct Responder(oneshot::Sender<Delivery>);

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Responder")
    }
}

impl Responder {
    /// A route and the receiver its caller awaits.
    pub fn new() -> (Responder, oneshot::Receiver<Delivery>) {
        let (tx, rx) = oneshot::channel();
        (Responder(tx), rx)
    }

    /// Whether the caller stopped waiting.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Deliver; a caller that has gone drops the delivery (and with it any live stream).
    pub(crate) fn send(self, delivery: Delivery) {
        let _ = self.0.send(delivery);
    }
}

/// A streaming answer being relayed: status, headers and the body still to read.
pub struct LiveStream {
    /// HTTP status (2xx).
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Attempts it took (earlier ones failed before any byte was relayed).
    pub attempts: u32,
    /// Time from the job's creation until this attempt was sent.
    pub waited: Duration,
    body: Option<ByteStream>,
    settlement: Settlement,
}

impl fmt::Debug for LiveStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveStream")
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// What settling a stream's reservation needs.
struct Settlement {
    /// Boxed: a pick is large, and a [`Delivery`] holds either a stream or a finished job.
    pick: Box<Pick>,
    charge: Charge,
    stats: Arc<Stats>,
}

impl LiveStream {
    pub(crate) fn new(
        mut opened: Opened,
        attempts: u32,
        waited: Duration,
        pick: Pick,
        charge: Charge,
        stats: Arc<Stats>,
    ) -> Self {
        let (status, headers) = (opened.status, std::mem::take(&mut opened.headers));
        LiveStream {
            status,
            headers,
            attempts,
            waited,
            body: Some(opened.into_stream()),
            settlement: Settlement {
                pick: Box::new(pick),
                charge,
                stats,
            },
        }
    }

    /// The body, chunk by chunk (once; later calls get an empty stream).
    pub fn take_body(&mut self) -> ByteStream {
        self.body
            .take()
            .unwrap_or_else(|| Box::pin(futures::stream::empty()))
    }

    /// The header named `name` (lower-case), if its value is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::upstream::answer::header_text(&self.headers, name)
    }

    /// Settle the upstream quota with the usage the stream reported; without one (the client
    /// hung up first, or the provider sent none) the admission estimate stays charged.
    pub fn settle(self, usage: Option<Usage>) {
        let Some(usage) = usage else { return };
        let s = &self.settlement;
        let cost = s.charge.cost(&usage);
        let charged = cost.get(Dimension::Tokens);
        s.pick.settle(cost, Instant::now());
        s.stats
            .prompt_tokens
            .fetch_add(usage.prompt, Ordering::Relaxed);
        s.stats
            .completion_tokens
            .fetch_add(usage.completion, Ordering::Relaxed);
        s.stats.tokens_charged.fetch_add(charged, Ordering::Relaxed);
    }
}
