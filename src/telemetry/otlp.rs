//! OpenTelemetry traces over OTLP/HTTP (protobuf): the exporter, its bounded queue with the
//! count of spans it dropped, and the W3C trace context (`traceparent`) read from a client and
//! written for an upstream.
//!
//! Spans are recorded *after the fact*: a [`Span`] is only its place in a trace (trace id, its
//! own id, its parent), fixed when the work begins so that its children (and an upstream, through
//! `traceparent`) can name it; [`Span::record`] hands the whole span — start, end, attributes,
//! status — to the SDK once the work is over. Nothing lives in the SDK while a request waits, and
//! the hot path does no more than fill a vector and push it into the batch processor's channel
//! (a `try_send`; the export runs on the processor's own thread). Without an endpoint there is no
//! [`Tracer`] at all: callers hold an `Option` and skip everything.
//!
//! **Bounded, and counted.** The SDK's batch processor drops a span when its queue is full and
//! only logs it; a failed export loses its batch silently. So the processor is wrapped: at most
//! [`MAX_QUEUED`] spans wait (the SDK's queue is twice that, so it never drops on its own), and
//! every span refused by the full queue or lost in a failed export is counted
//! ([`Tracer::dropped`]).
//!
//! **A dead collector costs a counter.** Building a span (its attributes, the SDK's span data)
//! is most of what tracing costs a request, so once an export fails nothing is built: every span
//! until the next try is only counted as dropped ([`Span::record`] takes a closure that is not
//! called). The next try comes after a backoff ([`FIRST_BACKOFF`], doubling up to
//! [`MAX_BACKOFF`]), when spans are built again and the next batch is the probe; an export that
//! succeeds ends the outage. A collector that does not answer costs the export timeout on the
//! processor's thread, and the same outage.
//!
//! It knows nothing of paceline: what a span says is its caller's.

use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SdkTracer,
    SdkTracerProvider, SpanData, SpanExporter, SpanProcessor,
};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Spans waiting for export at most; one more is dropped (and counted).
pub const MAX_QUEUED: u64 = 4096;

/// The standard variable naming the collector's base URL (`/v1/traces` is added).
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable naming the traces URL itself (used as it is).
pub const TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The standard variable naming the service (default `paceline`).
pub const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";

/// How long spans are only counted after the first failed export.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between two tries of a collector that stays down.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long the last export may take when the process ends.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// The traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The endpoint is not an http(s) URL.
    #[error("{source_name} {url:?}: not an http:// or https:// URL")]
    Url {
        /// Where the URL came from (a flag, a config key, an environment variable).
        source_name: String,
        /// The URL given.
        url: String,
    },
    /// The exporter could not be built.
    #[error("cannot export traces to {url}: {message}")]
    Exporter {
        /// The traces URL.
        url: String,
        /// The SDK's message.
        message: String,
    },
}

/// Where traces go: the traces URL and what named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL spans are posted to (`…/v1/traces`).
    pub traces_url: String,
    /// The flag, config key or environment variable that named it, for messages.
    pub source_name: String,
}

impl Endpoint {
    /// The collector at base URL `base` (a flag's or a config key's value, with the semantics of
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: `/v1/traces` is added), named by `source_name`.
    pub fn base(base: &str, source_name: &str) -> Result<Endpoint, OtlpError> {
        let base = base.trim();
        check_url(base, source_name)?;
        Ok(Endpoint {
            traces_url: format!("{}/v1/traces", base.trim_end_matches('/')),
            source_name: source_name.to_string(),
        })
    }

    /// The endpoint the standard environment variables name, if any:
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else `OTEL_EXPORTER_OTLP_ENDPOINT` plus
    /// `/v1/traces`. Empty values count as unset.
    pub fn from_env() -> Result<Option<Endpoint>, OtlpError> {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        if let Some(url) = var(TRACES_ENDPOINT_VAR) {
            let url = url.trim().to_string();
            check_url(&url, TRACES_ENDPOINT_VAR)?;
            return Ok(Some(Endpoint {
                traces_url: url,
                source_name: TRACES_ENDPOINT_VAR.into(),
            }));
        }
        var(ENDPOINT_VAR)
            .map(|base| Endpoint::base(&base, ENDPOINT_VAR))
            .transpose()
    }
}

fn check_url(url: &str, source_name: &str) -> Result<(), OtlpError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
    if ok {
        Ok(())
    } else {
        Err(OtlpError::Url {
            source_name: source_name.to_string(),
            url: url.to_string(),
        })
    }
}

/// What happened to the spans so far, and whether the collector is taking them.
#[derive(Debug)]
struct Counts {
    /// The clock's origin for `resume_at`.
    epoch: Instant,
    /// While the collector is down: when spans are built again (milliseconds after `epoch`);
    /// 0 while it takes them.
    resume_at: AtomicU64,
    /// The pause after the last failed export (milliseconds; 0 after a success).
    backoff: AtomicU64,
    /// Handed to the batch processor and not yet exported or lost.
    queued: AtomicU64,
    /// Accepted by the collector.
    exported: AtomicU64,
    /// Refused by the full queue, or lost in a failed export.
    dropped: AtomicU64,
}

impl Counts {
    fn new() -> Counts {
        Counts {
            epoch: Instant::now(),
            resume_at: AtomicU64::new(0),
            backoff: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether spans are built: the collector took the last export, or the backoff after the
    /// last failure has passed.
    fn taking(&self) -> bool {
        // The clock is read only during an outage: a span's hot path loads one atomic.
        self.resume_at.load(Ordering::Relaxed) == 0 || self.taking_at(self.now())
    }

    fn taking_at(&self, now: u64) -> bool {
        let resume_at = self.resume_at.load(Ordering::Relaxed);
        resume_at == 0 || now >= resume_at
    }

    /// An export failed at `now`: stop building spans for a backoff twice the last one's.
    fn export_failed(&self, now: u64) {
        let first = FIRST_BACKOFF.as_millis() as u64;
        let backoff =
            (self.backoff.load(Ordering::Relaxed) * 2).clamp(first, MAX_BACKOFF.as_millis() as u64);
        self.backoff.store(backoff, Ordering::Relaxed);
        self.resume_at.store(now + backoff, Ordering::Relaxed);
    }

    /// An export succeeded: the outage, if any, is over.
    fn export_succeeded(&self) {
        self.backoff.store(0, Ordering::Relaxed);
        self.resume_at.store(0, Ordering::Relaxed);
    }
}

/// The spans' tally at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Accepted by the collector.
    pub exported: u64,
    /// Dropped: the queue was full, an export failed, or the last export did not end in time.
    pub dropped: u64,
}

/// Exports spans; cheap to clone. Dropping the last clone does not flush: call
/// [`Tracer::shutdown`].
#[derive(Clone, Debug)]
pub struct Tracer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    ids: RandomIdGenerator,
    counts: Arc<Counts>,
    endpoint: Endpoint,
}

impl Tracer {
    /// Export to `endpoint`, as service `OTEL_SERVICE_NAME` (default `paceline`). The exporter
    /// reads the standard `OTEL_EXPORTER_OTLP_TIMEOUT` and `OTEL_EXPORTER_OTLP_HEADERS` too;
    /// `OTEL_BSP_SCHEDULE_DELAY` sets how often a batch goes (default 5 s).
    pub fn start(endpoint: Endpoint) -> Result<Tracer, OtlpError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.traces_url.clone())
            .build()
            .map_err(|e| OtlpError::Exporter {
                url: endpoint.traces_url.clone(),
                message: e.to_string(),
            })?;
        let counts = Arc::new(Counts::new());
        let batch = BatchSpanProcessor::builder(Counted {
            inner: exporter,
            counts: Arc::clone(&counts),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(2 * MAX_QUEUED as usize)
                .build(),
        )
        .build();
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var(SERVICE_NAME_VAR).is_err() {
            resource = resource.with_service_name("paceline");
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded {
                inner: batch,
                counts: Arc::clone(&counts),
            })
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("paceline");
        Ok(Tracer {
            inner: Arc::new(Inner {
                provider,
                tracer,
                ids: RandomIdGenerator::default(),
                counts,
                endpoint,
            }),
        })
    }

    /// Where the spans go.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// Spans dropped so far (full queue, failed exports).
    pub fn dropped(&self) -> u64 {
        self.inner.counts.dropped.load(Ordering::Relaxed)
    }

    /// Spans the collector accepted so far.
    pub fn exported(&self) -> u64 {
        self.inner.counts.exported.load(Ordering::Relaxed)
    }

    /// Export what waits (for at most a few seconds: a collector that does not answer costs no
    /// more) and stop. Blocking: call it from a blocking thread or at the end of the process.
    /// What could not be exported in time counts as dropped.
    pub fn shutdown(&self) -> Tally {
        let _ = self.inner.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT);
        let counts = &self.inner.counts;
        let left = counts.queued.swap(0, Ordering::Relaxed);
        Tally {
            exported: counts.exported.load(Ordering::Relaxed),
            dropped: counts.dropped.fetch_add(left, Ordering::Relaxed) + left,
        }
    }

    /// A new span whose parent is `parent` (a client's context, from [`parent_from_headers`]),
    /// or the root of a new trace. A parent the client did not sample makes a span that is
    /// not recorded (its context still goes upstream).
    pub fn span(&self, parent: Option<SpanContext>) -> Span {
        let (trace_id, flags) = match &parent {
            Some(parent) => (parent.trace_id(), parent.trace_flags()),
            None => (self.inner.ids.new_trace_id(), TraceFlags::SAMPLED),
        };
        let state = parent
            .as_ref()
            .map_or_else(TraceState::default, |p| p.trace_state().clone());
        Span {
            tracer: self.clone(),
            context: SpanContext::new(trace_id, self.inner.ids.new_span_id(), flags, false, state),
            parent,
        }
    }
}

/// A span's place in its trace, fixed when its work begins; [`Span::record`] sends it when the
/// work is over. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Span {
    tracer: Tracer,
    context: SpanContext,
    parent: Option<SpanContext>,
}

/// What a span says when it is recorded.
#[derive(Debug)]
pub struct Record {
    /// Its name.
    pub name: Cow<'static, str>,
    /// Server, client or internal.
    pub kind: SpanKind,
    /// When its work began.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// Its attributes.
    pub attributes: Vec<KeyValue>,
    /// Why it failed, if it did (the span's status is then an error).
    pub error: Option<String>,
}

impl Span {
    /// A child of this span, in the same trace.
    pub fn child(&self) -> Span {
        Span {
            tracer: self.tracer.clone(),
            context: SpanContext::new(
                self.context.trace_id(),
                self.tracer.inner.ids.new_span_id(),
                self.context.trace_flags(),
                false,
                self.context.trace_state().clone(),
            ),
            parent: Some(self.context.clone()),
        }
    }

    /// The trace this span is in.
    pub fn trace_id(&self) -> TraceId {
        self.context.trace_id()
    }

    /// This span's id.
    pub fn span_id(&self) -> SpanId {
        self.context.span_id()
    }

    /// The W3C trace context naming this span as the parent of what a request causes: the
    /// `traceparent` header (and `tracestate`, when the trace carries one).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let cx = Context::new().with_remote_span_context(self.context.clone());
        let mut headers = W3cHeaders(Vec::with_capacity(1));
        TraceContextPropagator::new().inject_context(&cx, &mut headers);
        headers.0
    }

    /// Send the span with what `record` makes: nothing when its trace is not sampled, and while
    /// the collector is down (see the module documentation) `record` is not called and the span
    /// is counted as dropped.
    pub fn record(&self, record: impl FnOnce() -> Record) {
        if !self.context.is_sampled() {
            return;
        }
        let counts = &self.tracer.inner.counts;
        if !counts.taking() {
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let record = record();
        let mut builder = SpanBuilder::from_name(record.name)
            .with_kind(record.kind)
            .with_start_time(record.start)
            .with_attributes(record.attributes);
        if let Some(error) = record.error {
            builder = builder.with_status(Status::error(error));
        }
        builder.trace_id = Some(self.context.trace_id());
        builder.span_id = Some(self.context.span_id());
        let parent = match &self.parent {
            Some(parent) => Context::new().with_remote_span_context(parent.clone()),
            None => Context::new(),
        };
        let mut span = self
            .tracer
            .inner
            .tracer
            .build_with_context(builder, &parent);
        opentelemetry::trace::Span::end_with_timestamp(&mut span, record.end);
    }
}

/// The parent a client named in its `traceparent` (and `tracestate`) headers, if valid.
pub fn parent_from_headers(headers: &http::HeaderMap) -> Option<SpanContext> {
    if !headers.contains_key("traceparent") {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    let context = cx.span().span_context().clone();
    context.is_valid().then_some(context)
}

/// Collects the W3C headers the propagator writes.
struct W3cHeaders(Vec<(&'static str, String)>);

impl Injector for W3cHeaders {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.0.push(("traceparent", value)),
            "tracestate" if !value.is_empty() => self.0.push(("tracestate", value)),
            _ => {}
        }
    }
}

/// The batch processor behind a bounded, counted door (see the module documentation).
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    counts: Arc<Counts>,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if self.counts.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED {
            self.counts.queued.fetch_sub(1, Ordering::Relaxed);
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting what each export carried out of the queue.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    counts: Arc<Counts>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        self.counts.queued.fetch_sub(n, Ordering::Relaxed);
        let outcome = match result {
            Ok(()) => {
                self.counts.export_succeeded();
                &self.counts.exported
            }
            Err(_) => {
                self.counts.export_failed(self.counts.now());
                &self.counts.dropped
            }
        };
        outcome.fetch_add(n, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gets_the_traces_path_and_a_bad_one_is_named() {
        let e = Endpoint::base("http://127.0.0.1:4318/", "--otlp-endpoint").unwrap();
        assert_eq!(e.traces_url, "http://127.0.0.1:4318/v1/traces");
        let err = Endpoint::base("localhost:4318", "--otlp-endpoint").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--otlp-endpoint \"localhost:4318\": not an http:// or https:// URL"
        );
    }

    #[test]
    fn a_client_context_is_read_and_a_child_is_written_in_its_trace() {
        let tracer = Tracer::start(Endpoint::base("http://127.0.0.1:9", "test").unwrap()).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        );
        let parent = parent_from_headers(&headers).unwrap();
        let span = tracer.span(Some(parent));
        let child = span.child();
        assert_eq!(
            child.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        let written = child.headers();
        assert_eq!(
            written,
            vec![(
                "traceparent",
                format!("00-0af7651916cd43dd8448eb211c80319c-{}-01", child.span_id())
            )]
        );
        headers.insert("traceparent", http::HeaderValue::from_static("00-zz-01"));
        assert!(parent_from_headers(&headers).is_none());
        tracer.shutdown();
    }

    #[test]
    fn a_failed_export_stops_building_spans_for_a_doubling_backoff() {
        let counts = Counts::new();
        assert!(counts.taking_at(0));
        counts.export_failed(100);
        assert!(!counts.taking_at(1099));
        assert!(counts.taking_at(1100));
        counts.export_failed(1100);
        assert!(!counts.taking_at(3099));
        assert!(counts.taking_at(3100));
        for _ in 0..10 {
            counts.export_failed(3100);
        }
        assert!(!counts.taking_at(3100 + 29_999));
        assert!(counts.taking_at(3100 + 30_000));
        counts.export_succeeded();
        assert!(counts.taking_at(3100));
        counts.export_failed(5000);
        assert!(counts.taking_at(6000), "a success starts the backoff over");
    }

    #[test]
    fn while_the_collector_is_down_a_span_is_counted_and_not_built() {
        let tracer = Tracer::start(Endpoint::base("http://127.0.0.1:9", "test").unwrap()).unwrap();
        let counts = &tracer.inner.counts;
        counts.export_failed(counts.now());
        let mut built = false;
        tracer.span(None).record(|| {
            built = true;
            Record {
                name: "never".into(),
                kind: SpanKind::Internal,
                start: SystemTime::now(),
                end: SystemTime::now(),
                attributes: Vec::new(),
                error: None,
            }
        });
        assert!(!built);
        assert_eq!(tracer.dropped(), 1);
        assert_eq!(counts.queued.load(Ordering::Relaxed), 0);
        tracer.shutdown();
    }
}
