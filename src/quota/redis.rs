//! The shared quota: one GCRA state per (key, model) in Redis, used by every paceline process.
//!
//! # Design
//!
//! The engine's [`Quota`](super::Quota) is synchronous: the dispatcher asks it, under a lock,
//! when a request may go and sleeps until then. A Redis round trip cannot sit under that lock,
//! so the shared quota is a second, authoritative step:
//!
//! 1. **Local scheduling** stays as it is: the local quota picks the key, paces the probe and
//!    keeps the request's reservation for settling. It knows only this process's traffic, so
//!    with other processes on the key it admits early — that is fine, it is not the last word.
//! 2. **Shared admission**, right before the request is sent: one `EVALSHA` of `quota.lua`
//!    reserves the cost in every dimension of the shared quota at once, at the earliest time
//!    all of them (and the shared pause) allow, on the server's clock (`TIME`), and answers
//!    "go in X" (0: now). The dispatcher sleeps X and sends. The script never refuses: like the
//!    local quota it schedules by reservation, so a request is never sent just to be refused and
//!    no process polls. Each dispatcher books one request at a time, so Redis holds at most one
//!    future reservation per process.
//! 3. **Settle, cancel and pause** go to Redis as well, off the hot path (a spawned `EVALSHA`):
//!    the difference between estimate and usage, a whole refund for a request that was refused
//!    or never sent, and a 429's pause (the refused dimensions drained until the provider's
//!    hint) — so one process's 429 stops every process.
//! 4. **Learned limits** travel with every call: the caller's effective limit and burst per
//!    dimension are stored in the hash, and a process that knows no limit yet (still probing)
//!    is metered with the ones stored by the others. Before anyone has learned a limit, the
//!    processes' probes share one schedule ([`Op::Probe`]): N processes starting together send
//!    what one would before the first answer, not N times as much; and what they sent is
//!    charged to a dimension's cell when its limit is first learned (those requests are in the
//!    provider's bucket already), as the local quota does with its unmetered units.
//!
//! Redis thus sees one `EVALSHA` per admission and one per settlement: two commands per request
//! (`INFO commandstats`), one round trip on the hot path.
//!
//! The script is the arithmetic of [`super::gcra`] in integer nanoseconds since an epoch kept in
//! the hash (exact in Lua's doubles; the epoch moves forward after 2^50 ns), checked against the
//! in-process cell by a shared table (`gcra_cases.json`) that a unit test and an integration test
//! against `redis-server` both run. Every key of one quota shares the hash tag
//! `{paceline:quota:<fingerprint>:<model>}` (valid on Redis Cluster); the fingerprint is a
//! SHA-256 prefix of the API key, never the key. The script's version is part of the key name
//! (`…:v1`), so processes of two versions never read each other's state during an upgrade.
//!
//! **Redis unreachable**: an admission that fails (connection lost, no answer within
//! [`RESPONSE_TIMEOUT`]) falls back to a local GCRA holding a conservative share of each limit
//! ([`SharedQuotas::share`], by default 1 / expected processes), says so once in the log and in
//! the progress line, and Redis is tried again with backoff (100 ms doubling to
//! [`MAX_BACKOFF`]); meanwhile settles and pauses stay local. The first admission that succeeds
//! resumes the shared state. A Redis that came back empty starts each quota empty (the
//! provider's bucket was used meanwhile), and for [`RECOVERY_GRACE`] admissions keep to the
//! local share as well, since other processes may still be pacing on theirs, unseen by Redis.

use super::dimension::{Cost, Dimension};
use super::gcra::Gcra;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The script's version, part of every key name.
pub const SCRIPT_VERSION: u32 = 1;

/// The Lua source of the shared GCRA.
pub const SCRIPT: &str = include_str!("quota.lua");

/// How long one Redis command may take before the admission falls back to the local share.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

/// First wait before Redis is tried again after a failure; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Longest wait between two tries while Redis is unreachable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// After Redis is back, how long admissions also keep to the local share: the other processes
/// may still be on theirs (each tries again within [`MAX_BACKOFF`]) and their use is not in
/// Redis.
pub const RECOVERY_GRACE: Duration = Duration::from_secs(4);

/// When Redis may be tried again.
#[derive(Debug, Default)]
struct Backoff {
    next_try: Option<Instant>,
    delay: Duration,
    recovered_at: Option<Instant>,
}

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

/// A connection to Redis for shared quotas, cheap to clone (one multiplexed connection).
#[derive(Clone)]
pub struct SharedQuotas {
    conn: ConnectionManager,
    script: Arc<redis::Script>,
    url: Arc<str>,
    share: f64,
    down: Arc<AtomicBool>,
    fallbacks: Arc<AtomicU64>,
    backoff: Arc<Mutex<Backoff>>,
}

impl std::fmt::Debug for SharedQuotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedQuotas({})", self.url)
    }
}

impl SharedQuotas {
    /// Connect to `url` (`redis://[user:password@]host[:port][/db]`). `share` (0 < share ≤ 1) is
    /// the part of each limit this process uses on its own while Redis is unreachable.
    pub async fn connect(url: &str, share: f64) -> Result<Self, RedisError> {
        let shown = redact(url);
        let bad = |message: String| RedisError::BadUrl {
            url: shown.clone(),
            message,
        };
        if !(share > 0.0 && share <= 1.0) {
            return Err(bad(format!(
                "the local share must be above 0 and at most 1, not {share}"
            )));
        }
        let client = redis::Client::open(url).map_err(|e| bad(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| RedisError::Unavailable {
                url: shown.clone(),
                message: e.to_string(),
            })?;
        let quotas = SharedQuotas {
            conn,
            script: Arc::new(redis::Script::new(SCRIPT)),
            url: shown.into(),
            share,
            down: Arc::new(AtomicBool::new(false)),
            fallbacks: Arc::new(AtomicU64::new(0)),
            backoff: Arc::new(Mutex::new(Backoff::default())),
        };
        let mut conn = quotas.conn.clone();
        quotas
            .script
            .prepare_invoke()
            .load_async(&mut conn)
            .await
            .map_err(|e| quotas.unavailable(e))?;
        Ok(quotas)
    }

    /// The URL, password removed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The part of each limit used while Redis is unreachable.
    pub fn share(&self) -> f64 {
        self.share
    }

    /// Whether the last call failed (the process paces on its local share).
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Admissions made on the local share because Redis was unreachable.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Count one admission made on the local share.
    pub fn count_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// The shared cell of the key with this `secret` for `model`.
    pub fn cell(&self, secret: &str, model: &str) -> SharedCell {
        SharedCell {
            quotas: self.clone(),
            key: quota_key(secret, model),
        }
    }

    fn unavailable(&self, err: redis::RedisError) -> RedisError {
        RedisError::Unavailable {
            url: self.url.to_string(),
            message: err.to_string(),
        }
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether Redis came back from an outage less than [`RECOVERY_GRACE`] ago: admissions
    /// keep to the local share too.
    pub fn recovering(&self) -> bool {
        self.backoff()
            .recovered_at
            .is_some_and(|at| at.elapsed() < RECOVERY_GRACE)
    }

    /// Whether Redis may be tried now: always while it answers; after a failure, once the
    /// backoff has passed.
    fn may_try(&self) -> bool {
        self.backoff()
            .next_try
            .is_none_or(|at| Instant::now() >= at)
    }

    /// Record whether Redis answered; back off after failures; log the transitions.
    fn mark(&self, reachable: bool, err: Option<&RedisError>) {
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
            (false, false) => tracing::warn!(
                redis = %self.url,
                share = self.share,
                error = %err.map(ToString::to_string).unwrap_or_default(),
                "Redis unreachable: pacing on a local share of each limit and reconnecting"
            ),
            (true, true) => {
                tracing::warn!(redis = %self.url, "Redis reachable again: the quota is shared again")
            }
            _ => {}
        }
    }
}

/// The Redis key of the quota of the key with this `secret` for `model`: every key of one quota
/// shares the hash tag, and the script's version keeps versions apart.
pub fn quota_key(secret: &str, model: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let fingerprint: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let model: String = model
        .chars()
        .map(|c| if matches!(c, '{' | '}') { '_' } else { c })
        .collect();
    format!("{{paceline:quota:{fingerprint}:{model}}}:v{SCRIPT_VERSION}")
}

/// What one call of the script does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Reserve the amounts at the earliest time allowed.
    Admit,
    /// [`Op::Admit`] from a caller still probing (no answer yet): while the hash holds no limit
    /// either, every caller's requests share one probe schedule, the k-th going `step_ns ×
    /// log2(k)` after the first, so N processes starting together probe the provider as one.
    Probe {
        /// The schedule's step: the rate doubles every `step_ns`.
        step_ns: u64,
    },
    /// Charge (positive) or refund (negative) the amounts.
    Settle,
    /// Pause until `for_ns` from now; drain the `refused` dimensions (bit mask) to the amounts.
    Pause {
        /// Nanoseconds from now until the pause ends.
        for_ns: u64,
        /// Bit `i` set: dimension `i` refused.
        refused: u32,
    },
}

/// The script's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Admit: nanoseconds until the request may go.
    pub wait_ns: u64,
    /// Each dimension's tat afterwards, in nanoseconds since the quota's epoch (`None`: no limit).
    pub tat: [Option<u64>; 4],
}

/// One quota (key and model) in Redis.
#[derive(Debug, Clone)]
pub struct SharedCell {
    quotas: SharedQuotas,
    key: String,
}

impl SharedCell {
    /// The connection it uses.
    pub fn quotas(&self) -> &SharedQuotas {
        &self.quotas
    }

    /// Run the script once. `limits` are the caller's (per minute, burst) per dimension,
    /// `amounts` the signed amounts; `clock` fixes the time (tests), else the server's `TIME`.
    pub async fn call(
        &self,
        op: Op,
        clock: Option<u64>,
        margin_ns: u64,
        limits: [Option<(u64, u64)>; 4],
        amounts: [i64; 4],
    ) -> Result<Answer, RedisError> {
        if !self.quotas.may_try() {
            return Err(RedisError::Unavailable {
                url: self.quotas.url.to_string(),
                message: "unreachable; reconnecting".into(),
            });
        }
        let result = match tokio::time::timeout(
            RESPONSE_TIMEOUT,
            self.call_once(op, clock, margin_ns, limits, amounts),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(RedisError::Unavailable {
                url: self.quotas.url.to_string(),
                message: format!("no answer within {RESPONSE_TIMEOUT:?}"),
            }),
        };
        self.quotas.mark(result.is_ok(), result.as_ref().err());
        result
    }

    async fn call_once(
        &self,
        op: Op,
        clock: Option<u64>,
        margin_ns: u64,
        limits: [Option<(u64, u64)>; 4],
        amounts: [i64; 4],
    ) -> Result<Answer, RedisError> {
        let (name, for_ns, refused, probe_step) = match op {
            Op::Admit => ("admit", 0, 0, 0),
            Op::Probe { step_ns } => ("admit", 0, 0, step_ns),
            Op::Settle => ("settle", 0, 0, 0),
            Op::Pause { for_ns, refused } => ("pause", for_ns, refused, 0),
        };
        let mut invocation = self.quotas.script.key(&self.key);
        invocation
            .arg(name)
            .arg(clock.map(|c| c.to_string()).unwrap_or_default())
            .arg(margin_ns);
        for d in Dimension::ALL {
            let (per_minute, burst) = limits[d.index()].unwrap_or((0, 0));
            invocation
                .arg(per_minute)
                .arg(burst)
                .arg(amounts[d.index()]);
        }
        // After an outage a quota Redis no longer holds starts empty: the provider's bucket was
        // used meanwhile.
        let fresh_empty = u8::from(self.quotas.fallbacks() > 0);
        invocation
            .arg(for_ns)
            .arg(refused)
            .arg(fresh_empty)
            .arg(probe_step);
        let mut conn = self.quotas.conn.clone();
        let reply: Vec<i64> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.quotas.unavailable(e))?;
        let bad = || RedisError::Answer {
            url: self.quotas.url.to_string(),
            answer: format!("{reply:?}"),
        };
        let [wait, t0, t1, t2, t3] = reply[..] else {
            return Err(bad());
        };
        let wait_ns = u64::try_from(wait).map_err(|_| bad())?;
        let tat = [t0, t1, t2, t3].map(|t| u64::try_from(t).ok());
        Ok(Answer { wait_ns, tat })
    }
}

/// The local stand-in while Redis is unreachable: a share of each limit, in this process only.
#[derive(Debug, Default)]
pub struct LocalShare {
    cells: [Option<(u64, u64, Gcra)>; 4],
}

impl LocalShare {
    /// Reserve `cost` now under `share` of `limits`; returns the nanoseconds to wait. `now` is
    /// nanoseconds on any monotonic clock the caller keeps using.
    pub fn admit(
        &mut self,
        share: f64,
        margin_ns: u64,
        limits: [Option<(u64, u64)>; 4],
        cost: &Cost,
        now: u64,
    ) -> u64 {
        let mut go = now;
        for d in Dimension::ALL {
            let slot = &mut self.cells[d.index()];
            let Some((per_minute, burst)) = limits[d.index()] else {
                *slot = None;
                continue;
            };
            let scaled = ((per_minute as f64 * share).floor() as u64).max(1);
            let scaled_burst = ((burst as f64 * share).floor() as u64).max(1);
            let fresh = !matches!(slot, Some((p, b, _)) if *p == scaled && *b == scaled_burst);
            if fresh {
                let mut cell = Gcra::with_margin(scaled, scaled_burst, margin_ns);
                // Start empty: the other processes may have used the bucket just now.
                cell.drain_to(0, now);
                *slot = Some((scaled, scaled_burst, cell));
            }
            if let Some((_, _, cell)) = slot {
                go = go.max(cell.earliest(cost.get(d).min(scaled), now));
            }
        }
        for d in Dimension::ALL {
            if let Some((scaled, _, cell)) = &mut self.cells[d.index()] {
                cell.commit(cost.get(d).min(*scaled), go);
            }
        }
        go - now
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

    #[test]
    fn keys_share_a_hash_tag_and_never_hold_the_secret() {
        let key = quota_key("sk-secret-value", "gpt-{4}");
        assert!(key.starts_with("{paceline:quota:"), "{key}");
        assert!(key.ends_with(":gpt-_4_}:v1"), "{key}");
        assert!(!key.contains("secret"));
    }

    #[test]
    fn the_local_share_paces_at_its_fraction() {
        let mut share = LocalShare::default();
        let limits = [Some((600, 10)), None, None, None];
        let cost = Cost::request(0);
        // a quarter of 600/min = 150/min: one every 400 ms once the (empty) bucket refills.
        let waits: Vec<u64> = (0..3)
            .map(|_| share.admit(0.25, 0, limits, &cost, 0))
            .collect();
        assert_eq!(waits, vec![400_000_000, 800_000_000, 1_200_000_000]);
    }
}
