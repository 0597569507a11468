//! The Redis connection of the shared quotas, and what every Redis user here shares: the URL as
//! logs may show it ([`redact`]) and the typed error ([`RedisError`]).
//!
//! A [`Connection`] is one multiplexed connection (`redis-rs`'s connection manager, which
//! reconnects by itself) with a response timeout, plus its health: after a failure it is tried
//! again only after a backoff (100 ms doubling to [`MAX_BACKOFF`]), and it remembers when it came
//! back ([`Connection::recovering`]). It must not know what is sent over it.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
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
    manager: ConnectionManager,
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
    /// Connect to `url` (`redis://[user:password@]host[:port][/db]`), every command bounded by
    /// [`RESPONSE_TIMEOUT`].
    pub async fn open(url: &str) -> Result<Self, RedisError> {
        let shown = redact(url);
        let client = redis::Client::open(url).map_err(|e| RedisError::BadUrl {
            url: shown.clone(),
            message: e.to_string(),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| RedisError::Unavailable {
                url: shown.clone(),
                message: e.to_string(),
            })?;
        Ok(Connection {
            manager,
            url: shown.into(),
            down: Arc::new(AtomicBool::new(false)),
            backoff: Arc::new(Mutex::new(Backoff::default())),
        })
    }

    /// The URL, password removed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A handle on the connection to send commands through.
    pub fn manager(&self) -> ConnectionManager {
        self.manager.clone()
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
    fn urls_lose_their_password() {
        assert_eq!(
            redact("redis://user:hunter2@cache:6379/0"),
            "redis://user:***@cache:6379/0"
        );
        assert_eq!(redact("redis://:hunter2@cache"), "redis://:***@cache");
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
    }
}
