//! The Redis connection of distributed mode, and what every Redis user here shares: where Redis
//! is and how to reach it ([`RedisTarget`]: URL, private CA, password), the URL as logs may show
//! it ([`redact`]), the link itself ([`Link`]: one node or a Redis Cluster) and the typed error
//! ([`RedisError`]).
//!
//! A [`Connection`] is one multiplexed link with a response timeout, plus its health: after a
//! failure it is tried again only after a backoff (100 ms doubling to [`MAX_BACKOFF`]), and it
//! remembers when it came back ([`Connection::recovering`]). It must not know what is sent over
//! it.
//!
//! # Design
//!
//! * **TLS** (`rediss://`): the system's trust store, or the PEM file given with `--redis-ca`
//!   (then only that CA); a certificate that does not verify is an error naming the URL and the
//!   flag, never a fallback to plain text. A CA with a `redis://` URL is refused for the same
//!   reason.
//! * **The password** comes from the URL or, better, from the environment variable named by
//!   `--redis-password-env` (it then replaces the URL's); it is never printed: every message
//!   shows the URL through [`redact`].
//! * **One node or a cluster**: at connect, `CLUSTER SLOTS` on the node the URL names tells
//!   which. On a cluster the link is `redis-rs`'s cluster client (it routes each command by its
//!   key's hash slot, follows `MOVED` / `ASK`, and rebuilds its slot map when a node stops
//!   answering), seeded with every node the cluster listed, so the topology can be read again
//!   after a failover even when the node the URL names is the one that died. Everything sent is
//!   single-slot: every key of one quota or one job shares one hash tag.
//! * **Single node**: `redis-rs`'s connection manager, which reconnects by itself.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, TlsCertificates, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long one Redis command may take before it counts as failed.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

/// First wait before Redis is tried again after a failure; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Longest wait between two tries while Redis is unreachable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// After Redis is back, how long [`Connection::recovering`] says so: the other processes may
/// still be on their own (each tries again within [`MAX_BACKOFF`]) and their use is not in
/// Redis.
pub const RECOVERY_GRACE: Duration = Duration::from_secs(4);

/// Why a Redis call failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL cannot be used.
    #[error("--redis {url}: {message}")]
    BadUrl {
        /// The URL, password removed.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The password's environment variable (`--redis-password-env`) is not set.
    #[error(
        "--redis-password-env {var}: the variable is not set (export {var}=... with the Redis \
         user's password)"
    )]
    NoPassword {
        /// The variable's name.
        var: String,
    },
    /// The private CA file (`--redis-ca`) cannot be read or holds no certificate.
    #[error("--redis-ca {}: {message}", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The server's certificate does not verify: no connection was made.
    #[error(
        "redis at {url}: the server's TLS certificate does not verify ({message}); if it is \
         signed by a private CA, give that CA's PEM file with --redis-ca FILE"
    )]
    Certificate {
        /// The URL, password removed.
        url: String,
        /// What the TLS layer said.
        message: String,
    },
    /// Redis did not answer, or answered with an error.
    #[error("redis at {url}: {message}")]
    Unavailable {
        /// The URL, password removed.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The quota script answered something it never returns (another program's key?).
    #[error("redis at {url}: unexpected answer from the quota script: {answer}")]
    Answer {
        /// The URL, password removed.
        url: String,
        /// What came back.
        answer: String,
    },
}

/// Where Redis is and how to reach it: the URL, a private CA for TLS, and a password read from
/// the environment. Its `Debug` shows neither password.
#[derive(Clone, Default)]
pub struct RedisTarget {
    url: String,
    ca: Option<(PathBuf, Vec<u8>)>,
    password: Option<String>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &redact(&self.url))
            .field("ca", &self.ca.as_ref().map(|(path, _)| path))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl RedisTarget {
    /// Redis at `url` (`redis://` or `rediss://`, `[user:password@]host[:port][/db]`).
    pub fn new(url: impl Into<String>) -> Self {
        RedisTarget {
            url: url.into(),
            ..RedisTarget::default()
        }
    }

    /// Trust only the CA certificates (PEM) in `path` for `rediss://`.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Result<Self, RedisError> {
        let path = path.into();
        let pem = std::fs::read(&path).map_err(|e| RedisError::BadCa {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(RedisError::BadCa {
                path,
                message: "no PEM certificate in it (-----BEGIN CERTIFICATE-----)".into(),
            });
        }
        self.ca = Some((path, pem));
        Ok(self)
    }

    /// Use the password held by the environment variable `var` (it replaces the URL's).
    pub fn with_password_env(mut self, var: &str) -> Result<Self, RedisError> {
        match std::env::var(var) {
            Ok(password) if !password.is_empty() => {
                self.password = Some(password);
                Ok(self)
            }
            _ => Err(RedisError::NoPassword {
                var: var.to_string(),
            }),
        }
    }

    /// The URL, password removed.
    pub fn shown(&self) -> String {
        redact(&self.url)
    }

    fn bad_url(&self, message: impl std::fmt::Display) -> RedisError {
        RedisError::BadUrl {
            url: self.shown(),
            message: message.to_string(),
        }
    }

    /// The URL's connection settings with the password from the environment, if any.
    fn info(&self) -> Result<redis::ConnectionInfo, RedisError> {
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| self.bad_url(e))?;
        let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
        if self.ca.is_some() && !tls {
            return Err(self.bad_url(
                "--redis-ca is for TLS: use a rediss:// URL (paceline never falls back to plain \
                 text)",
            ));
        }
        // No `CLIENT SETINFO` on connect: one command less for the ACL to allow (and Redis
        // before 7.2 does not know it).
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        Ok(info.set_redis_settings(settings))
    }

    fn certificates(&self) -> Option<TlsCertificates> {
        self.ca.as_ref().map(|(_, pem)| TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        })
    }

    /// A failure to connect, a certificate that does not verify told apart.
    fn connect_error(&self, err: &redis::RedisError) -> RedisError {
        let message = err.to_string();
        if message.contains("certificate") || message.contains("Certificate") {
            RedisError::Certificate {
                url: self.shown(),
                message,
            }
        } else {
            RedisError::Unavailable {
                url: self.shown(),
                message,
            }
        }
    }
}

/// The link to Redis: one node (through the connection manager) or a Redis Cluster (through
/// the cluster client, which routes by hash slot). Cheap to clone; commands are sent through it
/// as through any `redis-rs` connection.
#[derive(Clone)]
pub enum Link {
    /// One Redis node.
    Node(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl Link {
    /// Load the script whose source is `code` into the server's script cache, so that what this
    /// user may not run is refused now rather than at the first call. On a cluster one node (a
    /// random primary) takes it: the others load it on their first `NOSCRIPT`
    /// (`Script::invoke_async` sends it again), and a script the cluster's nodes already hold
    /// costs nothing more, so a process connects with one `SCRIPT LOAD` instead of one per
    /// primary. Only for scripts called through `invoke_async`: a pipeline's `EVALSHA`s are not
    /// sent again after a `NOSCRIPT`.
    pub async fn load_script(&mut self, code: &str) -> redis::RedisResult<()> {
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(code);
        match self {
            Link::Node(conn) => load.exec_async(conn).await,
            Link::Cluster(conn) => conn
                .route_command(
                    load,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
                )
                .await
                .map(drop),
        }
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Node(conn) => conn.req_packed_command(cmd),
            Link::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            Link::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Node(conn) => conn.get_db(),
            Link::Cluster(conn) => conn.get_db(),
        }
    }
}

/// The nodes a `CLUSTER SLOTS` answer lists (primaries and replicas), each once, as host and
/// port; none when the answer is not one.
fn cluster_nodes(reply: &Value) -> Vec<(String, u16)> {
    let mut nodes = Vec::new();
    let Value::Array(ranges) = reply else {
        return nodes;
    };
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        for node in fields.iter().skip(2) {
            let Value::Array(parts) = node else {
                continue;
            };
            let host = parts
                .first()
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
            let port = parts
                .get(1)
                .and_then(|v| redis::from_redis_value_ref::<u16>(v).ok());
            if let (Some(host), Some(port)) = (host, port)
                && !host.is_empty()
                && !nodes.contains(&(host.clone(), port))
            {
                nodes.push((host, port));
            }
        }
    }
    nodes
}

/// `redis://user:secret@host:6379/0` → `redis://user:***@host:6379/0`: a URL fit for logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// When Redis may be tried again.
#[derive(Debug, Default)]
struct Backoff {
    next_try: Option<Instant>,
    delay: Duration,
    recovered_at: Option<Instant>,
}

/// A change of reachability seen by [`Connection::mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// It answered before and failed now.
    Lost,
    /// It failed before and answered now.
    Back,
}

/// One connection to Redis with its health, cheap to clone.
#[derive(Clone)]
pub struct Connection {
    link: Link,
    url: Arc<str>,
    down: Arc<AtomicBool>,
    backoff: Arc<Mutex<Backoff>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection({})", self.url)
    }
}

impl Connection {
    /// Connect to `target`, every command bounded by `response_timeout`: one node, or every
    /// node of the cluster it belongs to.
    pub async fn open(
        target: &RedisTarget,
        response_timeout: Duration,
    ) -> Result<Self, RedisError> {
        let info = target.info()?;
        let client = match target.certificates() {
            Some(certificates) => redis::Client::build_with_tls(info.clone(), certificates),
            None => redis::Client::open(info.clone()),
        }
        .map_err(|e| target.bad_url(e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT.max(Duration::from_secs(2))))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(MAX_BACKOFF);
        let mut manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| target.connect_error(&e))?;
        // A cluster node answers with the slots and their nodes; any other server with an error
        // ("cluster support disabled"), as does a user not allowed to ask.
        let slots: redis::RedisResult<Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut manager)
            .await;
        let nodes = slots.as_ref().map(cluster_nodes).unwrap_or_default();
        let link = if nodes.is_empty() {
            Link::Node(manager)
        } else {
            drop(manager);
            let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
            let seeds: Vec<redis::ConnectionInfo> = nodes
                .into_iter()
                .map(|(host, port)| {
                    info.clone().set_addr(if tls {
                        redis::ConnectionAddr::TcpTls {
                            host,
                            port,
                            insecure: false,
                            tls_params: None,
                        }
                    } else {
                        redis::ConnectionAddr::Tcp(host, port)
                    })
                })
                .collect();
            let settings = info.redis_settings();
            let mut builder = ClusterClientBuilder::new(seeds)
                .connection_timeout(Duration::from_secs(2))
                .response_timeout(response_timeout)
                .retries(4)
                .min_retry_wait(50)
                .max_retry_wait(u64::try_from(MAX_BACKOFF.as_millis()).unwrap_or(2000));
            if let Some(user) = settings.username() {
                builder = builder.username(user);
            }
            if let Some(password) = settings.password() {
                builder = builder.password(password);
            }
            if let Some(certificates) = target.certificates() {
                builder = builder.certs(certificates);
            }
            let client = builder.build().map_err(|e| target.bad_url(e))?;
            Link::Cluster(
                client
                    .get_async_connection()
                    .await
                    .map_err(|e| target.connect_error(&e))?,
            )
        };
        Ok(Connection {
            link,
            url: target.shown().into(),
            down: Arc::new(AtomicBool::new(false)),
            backoff: Arc::new(Mutex::new(Backoff::default())),
        })
    }

    /// The URL, password removed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A handle on the link to send commands through.
    pub fn link(&self) -> Link {
        self.link.clone()
    }

    /// A Redis failure as this connection's error.
    pub fn unavailable(&self, err: impl std::fmt::Display) -> RedisError {
        RedisError::Unavailable {
            url: self.url.to_string(),
            message: err.to_string(),
        }
    }

    /// Whether the last call failed.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    fn backoff(&self) -> MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether Redis came back from an outage less than [`RECOVERY_GRACE`] ago.
    pub fn recovering(&self) -> bool {
        self.backoff()
            .recovered_at
            .is_some_and(|at| at.elapsed() < RECOVERY_GRACE)
    }

    /// Whether Redis may be tried now: always while it answers; after a failure, once the
    /// backoff has passed.
    pub fn may_try(&self) -> bool {
        self.backoff()
            .next_try
            .is_none_or(|at| Instant::now() >= at)
    }

    /// Record whether Redis answered (backing off after failures); returns the change of
    /// reachability, if this call made one.
    pub fn mark(&self, reachable: bool) -> Option<Transition> {
        {
            let mut backoff = self.backoff();
            if reachable {
                if backoff.next_try.is_some() {
                    backoff.recovered_at = Some(Instant::now());
                }
                backoff.next_try = None;
                backoff.delay = Duration::ZERO;
            } else {
                backoff.delay = (backoff.delay * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
                backoff.next_try = Some(Instant::now() + backoff.delay);
            }
        }
        let was_down = self.down.swap(!reachable, Ordering::Relaxed);
        match (was_down, reachable) {
            (false, false) => Some(Transition::Lost),
            (true, true) => Some(Transition::Back),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_never_shows_its_password() {
        let target = RedisTarget {
            url: "rediss://paceline:in-url@cache:6380".into(),
            ca: None,
            password: Some("from-env".into()),
        };
        let shown = format!("{target:?} {}", target.shown());
        assert!(
            !shown.contains("in-url") && !shown.contains("from-env"),
            "{shown}"
        );
        assert!(
            shown.contains("rediss://paceline:***@cache:6380"),
            "{shown}"
        );
        // The password from the environment replaces the URL's.
        let info = target.info().unwrap();
        assert_eq!(info.redis_settings().password(), Some("from-env"));
        assert_eq!(info.redis_settings().username(), Some("paceline"));
    }

    #[test]
    fn a_private_ca_needs_a_tls_url() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = RedisTarget::new("rediss://cache")
            .with_ca_file(&path)
            .unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        std::fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let target = RedisTarget::new("redis://cache")
            .with_ca_file(&path)
            .unwrap();
        let err = target.info().unwrap_err();
        assert!(err.to_string().contains("use a rediss:// URL"), "{err}");
    }

    #[test]
    fn the_cluster_slots_answer_lists_every_node_once() {
        let node = |port: i64, id: &str| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(id.as_bytes().to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node(7000, "a"),
                node(7003, "d"),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node(7001, "b"),
                node(7004, "e"),
            ]),
            Value::Array(vec![Value::Int(10923), Value::Int(16383), node(7000, "a")]),
        ]);
        let nodes: Vec<u16> = cluster_nodes(&reply).into_iter().map(|(_, p)| p).collect();
        assert_eq!(nodes, [7000, 7003, 7001, 7004]);
        assert!(cluster_nodes(&Value::Nil).is_empty());
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact("redis://user:hunter2@cache:6379/0"),
            "redis://user:***@cache:6379/0"
        );
        assert_eq!(redact("redis://:hunter2@cache"), "redis://:***@cache");
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
    }
}
