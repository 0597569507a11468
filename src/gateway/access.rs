//! The access log: one JSON event per request (target `paceline::access`), written when the
//! answer is complete — for a stream, when it ends. It names the client, never a key: no
//! header, body or key of the request or of the provider is logged. The same moment feeds the
//! request metrics.
//!
//! It must not know the routes or the engine's workings: it is told what happened.

use super::metrics;
use crate::engine::Priority;
use crate::provider::usage::Usage;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What is known about one request, filled in as it goes.
#[derive(Debug)]
pub struct RequestLog {
    started: Instant,
    /// When its wait for capacity began (the deadline counts from then), if it did.
    waiting_since: Option<Instant>,
    /// Route path (`/v1/chat/completions`, ...).
    pub route: &'static str,
    /// Client name.
    pub client: Arc<str>,
    /// The request's priority.
    pub priority: Priority,
    /// The model asked for, if any.
    pub model: String,
    /// Whether it asked for a stream.
    pub stream: bool,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Time waited before the last attempt went out.
    pub queued: Duration,
    /// Usage the provider reported.
    pub usage: Option<Usage>,
}

impl RequestLog {
    /// Start logging a request to `route` from `client`.
    pub fn new(route: &'static str, client: Arc<str>) -> Self {
        RequestLog {
            started: Instant::now(),
            waiting_since: None,
            route,
            client,
            priority: Priority::Interactive,
            model: String::new(),
            stream: false,
            attempts: 0,
            queued: Duration::ZERO,
            usage: None,
        }
    }

    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Its wait for capacity (client quota, queue, upstream quota) begins now.
    pub fn waiting_from(&mut self, at: Instant) {
        self.waiting_since = Some(at);
    }

    /// How long it has waited for capacity so far: zero if its wait has not begun (refused
    /// before it, a 401 or a 400).
    pub fn waited_so_far(&self) -> Duration {
        self.waiting_since
            .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Write the event and count the request: `status` sent, `outcome` a short word (`ok`, an
    /// error code, `client_gone`, `upstream_cut`).
    pub fn finish(self, status: u16, outcome: &str) {
        let usage = self.usage.unwrap_or_default();
        tracing::info!(
            target: "paceline::access",
            route = self.route,
            status,
            outcome,
            client = %self.client,
            model = %self.model,
            priority = self.priority.as_str(),
            stream = self.stream,
            attempts = self.attempts,
            queue_ms = self.queued.as_millis() as u64,
            duration_ms = self.started.elapsed().as_millis() as u64,
            prompt_tokens = usage.prompt,
            completion_tokens = usage.completion,
            "request"
        );
        metrics::request(self.route, status, &self.client);
        if self.usage.is_some() {
            metrics::tokens(&self.client, usage.prompt, usage.completion);
        }
    }
}
