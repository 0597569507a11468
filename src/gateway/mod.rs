//! `paceline serve`: an OpenAI-compatible gateway in front of the same engine and quotas as
//! `paceline run`.
//!
//! ```text
//! client ──► routes (auth, body limit, JSON, priority, max wait)
//!              │
//!              ├─► clients: the client's own quota (wait its turn, up to the deadline)
//!              ├─► fair: weighted fair queue per priority ──► engine lanes (interactive first)
//!              │                                                 │
//!              │      engine: quota per upstream key, retries, deadline, concurrency
//!              │                                                 │
//!              ◄── answer (whole) ◄── responder ◄─────────────────┤
//!              ◄── relay (SSE, live) ◄── live stream ◄────────────┘
//! ```
//!
//! One concept per module: [`config`] (TOML and flags, validated), [`routes`] (the HTTP
//! surface), [`clients`] (virtual keys and their quotas), [`fair`] (weighted fair share),
//! [`relay`] (streaming pass-through), [`answer`] (engine result → response, status headers),
//! [`errors`] (OpenAI-shaped errors), [`metrics`], [`access`] (the access log), [`admin`] (who
//! may read the status page and metrics),
//! [`shutdown`] (SIGTERM: stop accepting, drain, exit) and [`status_page`] (the live page).
//!
//! The gateway must not know files, the job store or Redis (a shared quota comes in through the key
//! pool's seam), nor any provider's limit or usage names: answers are read through
//! [`crate::provider`].

pub mod access;
pub mod admin;
pub mod answer;
pub mod clients;
pub mod config;
pub mod errors;
pub mod fair;
pub mod metrics;
pub mod relay;
pub mod routes;
pub mod shutdown;
pub mod status_page;

use crate::engine::{Engine, EngineConfig, EngineExit, Event, Job, Priority};
use crate::retry::BackoffPolicy;
use crate::telemetry::otlp::Tracer;
use crate::upstream::{ApiKey, KeyPool, KeyProblem, Route, Upstream, UpstreamError};
use axum::serve::ListenerExt;
use clients::Clients;
pub use config::{GatewayConfig, RawGatewayConfig};
use fair::FairQueue;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Ceiling of the adaptive in-flight bound.
const MAX_CONCURRENCY: usize = 4096;

/// Shared state of the running gateway.
pub struct App {
    config: GatewayConfig,
    clients: Clients,
    queue: Arc<FairQueue>,
    engine: Arc<Engine>,
    pool: Arc<KeyPool>,
    upstream: Upstream,
    next_id: AtomicU64,
    engine_running: Arc<AtomicBool>,
    /// The engine's event sink, for jobs sent without queueing ([`Engine::send_now`]).
    events: mpsc::Sender<Event>,
    live: Arc<status_page::LiveStatus>,
    /// Where spans go, when traces are exported.
    tracer: Option<Tracer>,
}

/// A gateway that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// An upstream or client key cannot be read (the message says what to do).
    #[error(transparent)]
    Key(#[from] KeyProblem),
    /// The upstream URL or HTTP client is unusable.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Traces cannot be exported where the configuration says.
    #[error(transparent)]
    Traces(#[from] crate::telemetry::otlp::OtlpError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    admin: Option<(SocketAddr, JoinHandle<()>)>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    engine: JoinHandle<EngineExit>,
    upkeep: JoinHandle<()>,
    app: Arc<App>,
}

impl Gateway {
    /// Read the keys, start the engine, bind and serve in the background. Returns once the
    /// listener accepts connections.
    pub async fn start(config: GatewayConfig) -> Result<Gateway, GatewayError> {
        Self::start_shared(config, None).await
    }

    /// [`Gateway::start`], with the upstream quotas shared with other paceline processes
    /// through `shared` when it is given.
    pub async fn start_shared(
        config: GatewayConfig,
        shared: Option<Arc<dyn crate::upstream::QuotaSharing>>,
    ) -> Result<Gateway, GatewayError> {
        metrics::install();
        let tracer = config
            .otlp_endpoint
            .clone()
            .map(Tracer::start)
            .transpose()?;
        let upstream = Upstream::new(&config.base_url, config.timeout)?
            .with_provider(config.provider, config.api_version.as_deref());
        let mut keys = if config.keys.is_empty() && config.deployments.is_empty() {
            let key = ApiKey::from_env(config.provider.default_key_env()).map_err(|e| {
                e.with_fix(
                    "set it to the provider's API key, or name other variables with \
                     --api-key-env K1,K2 (or [[keys]] env = \"NAME\" in the config)",
                )
            })?;
            vec![(key, crate::quota::QuotaConfig::default(), None)]
        } else {
            config
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let key = ApiKey::from_env(&k.env).map_err(|e| {
                        e.with_fix(format!(
                            "set it to the upstream API key of keys[{i}] (--api-key-env, or the \
                             config's [[keys]] entry with env = {:?})",
                            k.env
                        ))
                    })?;
                    Ok((key, k.limits, None))
                })
                .collect::<Result<Vec<_>, KeyProblem>>()?
        };
        for deployment in &config.deployments {
            let route = Route {
                serves: deployment.serves.clone(),
                model: deployment.model.clone(),
                upstream: upstream.sibling(
                    &deployment.base_url,
                    deployment.provider,
                    deployment.api_version.as_deref(),
                )?,
            };
            let key = ApiKey::from_env(&deployment.key.env).map_err(|e| {
                e.with_fix(format!(
                    "set it to the API key of a deployment of model {:?} (the config's \
                     [[models.deployments]] entry with env = {:?})",
                    deployment.serves, deployment.key.env
                ))
            })?;
            keys.push((key, deployment.key.limits, Some(route)));
        }
        // The tokenizers of the models the config names are built in the background from now;
        // requests do not wait for them (see routes).
        for deployment in &config.deployments {
            crate::tokens::Encoding::for_model(&deployment.serves).prepare();
        }
        let clients = Clients::load(&config.clients)?;
        let admin_key = match &config.admin_key_env {
            Some(env) => Some(ApiKey::from_env(env).map_err(|e| {
                e.with_fix(
                    "set it to the key the status page and /metrics ask for (admin_key_env, \
                     --admin-key-env)",
                )
            })?),
            None => None,
        };
        let has_clients = !config.clients.is_empty();
        let access = |listener| {
            Arc::new(admin::AdminAccess::new(
                listener,
                has_clients,
                admin_key.as_ref().map(ApiKey::secret),
            ))
        };
        let (listener, addr) = bind(config.listen).await?;
        let admin_listener = match config.admin_listen {
            Some(at) => Some(bind(at).await?),
            None => None,
        };
        if has_clients && admin_key.is_none() {
            match &admin_listener {
                Some((_, at)) => tracing::info!(
                    "the status page and /metrics are served on http://{at} only: this gateway has \
                     [[clients]] and no admin_key_env"
                ),
                None => tracing::warn!(
                    "the status page and /metrics are closed: this gateway has [[clients]]; set \
                     admin_key_env (--admin-key-env) or admin_listen (--admin-listen) to read them"
                ),
            }
        } else if admin_key.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(
                "the gateway, its status page and /metrics are open to anyone who reaches {addr}: \
                 add [[clients]] and admin_key_env to require keys"
            );
        }

        let pool = KeyPool::with_routes(keys);
        let pool = Arc::new(match shared {
            Some(shared) => pool.with_shared(shared),
            None => pool,
        });
        let engine = Engine::new(
            EngineConfig {
                concurrency: config.concurrency,
                max_concurrency: MAX_CONCURRENCY,
                backoff: BackoffPolicy {
                    max_attempts: config.max_attempts,
                    ..BackoffPolicy::default()
                },
                seed: None,
                stop_on_uniform_refusals: false,
            },
            Arc::clone(&pool),
            upstream.clone(),
        );
        let queue = Arc::new(FairQueue::new(clients.flows()));
        let engine_running = Arc::new(AtomicBool::new(true));
        let live = Arc::new(status_page::LiveStatus::default());
        let (engine_task, events) = spawn_engine(
            Arc::clone(&engine),
            Arc::clone(&queue),
            Arc::clone(&engine_running),
            Arc::clone(&live),
        );

        let app = Arc::new(App {
            config,
            clients,
            queue,
            engine,
            pool,
            upstream,
            next_id: AtomicU64::new(1),
            engine_running,
            events,
            live,
            tracer,
        });
        status_page::spawn_sampler(Arc::downgrade(&app));
        let (stop, stop_rx) = watch::channel(false);
        let stopped = stop_rx.clone();
        let router = routes::router(Arc::clone(&app), access(admin::Listener::Api));
        let admin = admin_listener.map(|(listener, at)| {
            let router =
                routes::admin_router(access(admin::Listener::Admin)).with_state(Arc::clone(&app));
            (at, spawn_server(listener, router, stop_rx.clone(), "admin"))
        });
        // Relayed events are small writes: without TCP_NODELAY, Nagle's algorithm would hold
        // each one back until the client acknowledged the previous one.
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(%err, "cannot set TCP_NODELAY on a client connection");
            }
        });
        let server = spawn_server(listener, router, stopped, "gateway");
        Ok(Gateway {
            addr,
            admin,
            stop,
            server,
            engine: engine_task,
            upkeep: tokio::spawn(metrics::upkeep()),
            app,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address serving the admin surface alone (`admin_listen`), if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(at, _)| *at)
    }

    /// Stop accepting, let in-flight requests (streams included) finish within the drain
    /// timeout, then stop the engine. See [`shutdown`].
    pub async fn shutdown(self) {
        shutdown::drain(self.stop, self.server, self.engine, &self.app).await;
        if let Some((_, admin)) = self.admin {
            admin.abort();
        }
        self.upkeep.abort();
        if let Some(tracer) = self.app.tracer.clone() {
            let url = tracer.endpoint().traces_url.clone();
            if let Ok(tally) = tokio::task::spawn_blocking(move || tracer.shutdown()).await {
                report_traces(&url, tally);
            }
        }
    }
}

/// Say what became of the spans, as a warning when some were dropped.
fn report_traces(url: &str, tally: crate::telemetry::otlp::Tally) {
    let (exported, dropped) = (tally.exported, tally.dropped);
    if dropped > 0 {
        tracing::warn!(
            exported,
            dropped,
            "traces: {dropped} spans dropped (collector {url} unreachable or too slow)"
        );
    } else {
        tracing::info!(
            exported,
            dropped,
            "traces: {exported} spans exported to {url}"
        );
    }
}

/// Serve `router` on `listener` until `stopped` turns true, then let open connections finish.
fn spawn_server<L>(
    listener: L,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
    what: &'static str,
) -> JoinHandle<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        // As a make-service each connection gets a cheap clone of the router; served as a
        // plain `Router`, axum rebuilds its route table for every connection (~4.5 KB).
        if let Err(err) = axum::serve(listener, router.into_make_service())
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%err, "{what} server stopped");
        }
    })
}

/// Bind `at`; the listener and the address it got (port 0 picks one).
async fn bind(at: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), GatewayError> {
    let bind_error = |source| GatewayError::Bind { addr: at, source };
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    Ok((listener, addr))
}

/// Run the engine fed from the fair queue; when it stops, refuse and drop what is queued.
/// Returns the engine's task and its event sink.
fn spawn_engine(
    engine: Arc<Engine>,
    queue: Arc<FairQueue>,
    running: Arc<AtomicBool>,
    live: Arc<status_page::LiveStatus>,
) -> (JoinHandle<EngineExit>, mpsc::Sender<Event>) {
    let (interactive_tx, interactive_rx) = mpsc::channel::<Job>(1);
    let (batch_tx, batch_rx) = mpsc::channel::<Job>(1);
    let (sink, mut events) = mpsc::channel::<Event>(1024);
    tokio::spawn(fair::feed(
        Arc::clone(&queue),
        Priority::Interactive,
        interactive_tx,
    ));
    tokio::spawn(fair::feed(Arc::clone(&queue), Priority::Batch, batch_tx));
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Attempt(record) = event {
                metrics::attempt(&record);
                live.attempt(&record);
            }
        }
    });
    let events_in = sink.clone();
    let task = tokio::spawn(async move {
        let exit = engine.run_prioritized(interactive_rx, batch_rx, sink).await;
        running.store(false, std::sync::atomic::Ordering::SeqCst);
        queue.close();
        queue.drain();
        if let EngineExit::NoKeys { reason, .. } = &exit {
            tracing::error!(reason = %reason, "no usable upstream key is left; answering 503");
        }
        exit
    });
    (task, events_in)
}
