//! The shared quota in Redis: one GCRA state per (key, model), used by every paceline process.
//! This file owns the script's operations ([`Op`]), its keys and its answers; it must not know
//! the engine nor the local quota (the bridge to them is [`super::admission`]).
//!
//! # Design
//!
//! 1. **Admission**: one `EVALSHA` of `quota.lua` reserves the cost in every dimension of the
//!    shared quota at once, at the earliest time all of them (and the shared pause) allow, on
//!    the server's clock (`TIME`), and answers "go in X" (0: now). The script never refuses:
//!    like the local quota it schedules by reservation, so a request is never sent just to be
//!    refused and no process polls.
//! 2. **Settle, cancel and pause** are operations of the same script: the difference between
//!    estimate and usage, a whole refund for a request that was refused or never sent, and a
//!    429's pause (the refused dimensions drained until the provider's hint) — so one process's
//!    429 stops every process.
//! 3. **Learned limits** travel with every call: the caller's effective limit and burst per
//!    dimension are stored in the hash, and a process that knows no limit yet (still probing)
//!    is metered with the ones stored by the others. Before anyone has learned a limit, the
//!    processes' probes share one schedule ([`Op::Probe`]): N processes starting together send
//!    what one would before the first answer, not N times as much; and what they sent is
//!    charged to a dimension's cell when its limit is first learned (those requests are in the
//!    provider's bucket already), as the local quota does with its unmetered units.
//!
//! The script is the arithmetic of [`crate::quota::gcra`] in integer nanoseconds since an epoch
//! kept in the hash (exact in Lua's doubles; the epoch moves forward after 2^50 ns), checked
//! against the in-process cell by a shared table (`gcra_cases.json`) that a unit test and an
//! integration test against `redis-server` both run. Every key of one quota shares the hash tag
//! `{paceline:quota:<fingerprint>:<model>}` (valid on Redis Cluster); the fingerprint is a
//! SHA-256 prefix of the API key, never the key. The script's version is part of the key name
//! (`…:v1`), so processes of two versions never read each other's state during an upgrade.
//!
//! A call that fails (connection lost, no answer within [`RESPONSE_TIMEOUT`]) is an error; the
//! connection then backs off ([`super::connection`]), and the first call after an outage that
//! finds a quota Redis no longer holds starts it empty (the provider's bucket was used
//! meanwhile).

use super::connection::{Connection, RESPONSE_TIMEOUT, RedisError, RedisTarget, Transition};
use crate::quota::Dimension;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The script's version, part of every key name.
pub const SCRIPT_VERSION: u32 = 1;

/// The Lua source of the shared GCRA.
pub const SCRIPT: &str = include_str!("quota.lua");

/// The shared quotas of this process: a connection to Redis with the script loaded, cheap to
/// clone. Its spawned work (settlements and pauses sent off the hot path) runs on the runtime
/// it was given.
#[derive(Clone)]
pub struct SharedQuotas {
    conn: Connection,
    script: Arc<redis::Script>,
    share: f64,
    fallbacks: Arc<AtomicU64>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for SharedQuotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedQuotas({})", self.conn.url())
    }
}

impl SharedQuotas {
    /// Connect to `target` (one node or a cluster). `share` (0 < share ≤ 1) is the part of each
    /// limit this process uses on its own while Redis is unreachable; `runtime` runs what is
    /// sent without being waited for.
    pub async fn connect(
        target: &RedisTarget,
        share: f64,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, RedisError> {
        if !(share > 0.0 && share <= 1.0) {
            return Err(RedisError::BadUrl {
                url: target.shown(),
                message: format!("the local share must be above 0 and at most 1, not {share}"),
            });
        }
        let conn = Connection::open(target, RESPONSE_TIMEOUT).await?;
        let script = Arc::new(redis::Script::new(SCRIPT));
        let mut link = conn.link();
        // A primary that does not hold it (on a cluster, a restart, a failover) gets it again on
        // its first `NOSCRIPT`.
        link.load_script(SCRIPT)
            .await
            .map_err(|e| conn.unavailable(e))?;
        Ok(SharedQuotas {
            conn,
            script,
            share,
            fallbacks: Arc::new(AtomicU64::new(0)),
            runtime,
        })
    }

    /// The URL, password removed.
    pub fn url(&self) -> &str {
        self.conn.url()
    }

    /// The part of each limit used while Redis is unreachable.
    pub fn share(&self) -> f64 {
        self.share
    }

    /// Whether the last call failed (the process paces on its local share).
    pub fn is_down(&self) -> bool {
        self.conn.is_down()
    }

    /// Whether Redis came back from an outage lately: admissions keep to the local share too
    /// (see [`super::connection::RECOVERY_GRACE`]).
    pub fn recovering(&self) -> bool {
        self.conn.recovering()
    }

    /// Admissions made on the local share because Redis was unreachable.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Count one admission made on the local share.
    pub fn count_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// The runtime that runs what is sent without being waited for.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// The shared cell of the key with this `secret` for `model`.
    pub fn cell(&self, secret: &str, model: &str) -> SharedCell {
        SharedCell {
            quotas: self.clone(),
            key: quota_key(secret, model),
        }
    }

    /// Record whether Redis answered; log the transitions.
    fn mark(&self, reachable: bool, err: Option<&RedisError>) {
        match self.conn.mark(reachable) {
            Some(Transition::Lost) => tracing::warn!(
                redis = %self.url(),
                share = self.share,
                error = %err.map(ToString::to_string).unwrap_or_default(),
                "Redis unreachable: pacing on a local share of each limit and reconnecting"
            ),
            Some(Transition::Back) => {
                tracing::warn!(redis = %self.url(), "Redis reachable again: the quota is shared again")
            }
            None => {}
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
        if !self.quotas.conn.may_try() {
            return Err(self.quotas.conn.unavailable("unreachable; reconnecting"));
        }
        let result = match tokio::time::timeout(
            RESPONSE_TIMEOUT,
            self.call_once(op, clock, margin_ns, limits, amounts),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(self
                .quotas
                .conn
                .unavailable(format!("no answer within {RESPONSE_TIMEOUT:?}"))),
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
        let mut conn = self.quotas.conn.link();
        let reply: Vec<i64> = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.quotas.conn.unavailable(e))?;
        let bad = || RedisError::Answer {
            url: self.quotas.url().to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag_and_never_hold_the_secret() {
        let key = quota_key("sk-secret-value", "gpt-{4}");
        assert!(key.starts_with("{paceline:quota:"), "{key}");
        assert!(key.ends_with(":gpt-_4_}:v1"), "{key}");
        assert!(!key.contains("secret"));
    }
}
