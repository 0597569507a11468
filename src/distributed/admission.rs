//! The shared quota as the engine sees it: [`SharedQuotas`] and [`KeyShare`] implement the key
//! pool's seam ([`QuotaSharing`], [`SharedQuota`]) on the Redis script of
//! [`super::shared_quota`], with the local share of [`super::local_share`] while Redis is away.
//! It reads the local quota (limits, jitter margin, probe) but never changes it; it must not
//! know the engine.
//!
//! # Design
//!
//! An admission is one `EVALSHA` on the hot path (the booking awaits it). Settlements and
//! pauses are sent off the hot path, as tasks spawned on the runtime handle given to
//! [`SharedQuotas::connect`]: one more command per request, so Redis sees two per request
//! (`INFO commandstats`).
//!
//! **Redis unreachable**: an admission that fails (connection lost, no answer within
//! [`super::connection::RESPONSE_TIMEOUT`]) falls back to a local GCRA holding a conservative
//! share of each limit ([`SharedQuotas::share`], by default 1 / expected processes), says so
//! once in the log and in the progress line, and Redis is tried again with backoff; a request
//! admitted that way is not held in Redis, so its settlement stays local. The first admission
//! that succeeds resumes the shared state, and for
//! [`super::connection::RECOVERY_GRACE`] admissions keep to the local share as well, since other
//! processes may still be pacing on theirs, unseen by Redis.

use super::local_share::LocalShare;
use super::shared_quota::{Op, SharedCell, SharedQuotas};
use crate::quota::{Cost, Dimension, Quota};
use crate::upstream::{QuotaSharing, SharedAdmission, SharedQuota};
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

impl QuotaSharing for SharedQuotas {
    fn quota(&self, secret: &str, model: &str, now: Instant) -> Arc<dyn SharedQuota> {
        Arc::new(KeyShare {
            cell: self.cell(secret, model),
            local: Mutex::new(LocalShare::default()),
            epoch: now,
        })
    }

    fn fallback_share(&self) -> Option<f64> {
        self.is_down().then(|| self.share())
    }
}

/// One key's quota in Redis, with the local share it paces on while Redis is unreachable.
#[derive(Debug)]
pub struct KeyShare {
    cell: SharedCell,
    local: Mutex<LocalShare>,
    /// The local share's clock starts here.
    epoch: Instant,
}

impl KeyShare {
    /// Reserve on this process's share of the limits (Redis unreachable, or just back); returns
    /// the nanoseconds to wait.
    fn local_share(
        &self,
        local: &Quota,
        limits: [Option<(u64, u64)>; 4],
        cost: &Cost,
        now: Instant,
    ) -> u64 {
        let now =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        self.local.lock().unwrap_or_else(|p| p.into_inner()).admit(
            self.cell.quotas().share(),
            local.admission_margin(),
            limits,
            cost,
            now,
        )
    }

    /// Send one operation to Redis without waiting for it, with `local`'s limits and margin as
    /// they are now (after a pause has widened it).
    fn send(&self, local: &Quota, op: Op, amounts: [i64; 4]) {
        let (cell, margin, limits) = (self.cell.clone(), local.admission_margin(), local.limits());
        self.cell.quotas().runtime().spawn(async move {
            // A failure is logged by the connection's health tracking; the shared state then
            // misses this correction, which only errs on one side for a moment.
            let _ = cell.call(op, None, margin, limits, amounts).await;
        });
    }
}

impl SharedQuota for KeyShare {
    fn admit<'a>(
        &'a self,
        local: &'a Quota,
        cost: &'a Cost,
        now: Instant,
    ) -> BoxFuture<'a, SharedAdmission> {
        Box::pin(async move {
            let limits = local.limits();
            let amounts = Dimension::ALL.map(|d| signed(cost.get(d)));
            let op = match local.probe_step() {
                None => Op::Admit,
                Some(step) => Op::Probe {
                    step_ns: u64::try_from(step.as_nanos()).unwrap_or(u64::MAX),
                },
            };
            let quotas = self.cell.quotas();
            match self
                .cell
                .call(op, None, local.admission_margin(), limits, amounts)
                .await
            {
                Ok(answer) => {
                    let fallback = if quotas.recovering() {
                        self.local_share(local, limits, cost, now)
                    } else {
                        0
                    };
                    SharedAdmission {
                        wait: Duration::from_nanos(answer.wait_ns.max(fallback)),
                        holds: true,
                    }
                }
                Err(_) => {
                    quotas.count_fallback();
                    SharedAdmission {
                        wait: Duration::from_nanos(self.local_share(local, limits, cost, now)),
                        holds: false,
                    }
                }
            }
        })
    }

    fn settle(&self, local: &Quota, reserved: &Cost, actual: &Cost) {
        let delta =
            Dimension::ALL.map(|d| signed(actual.get(d)).saturating_sub(signed(reserved.get(d))));
        if delta.iter().any(|x| *x != 0) {
            self.send(local, Op::Settle, delta);
        }
    }

    fn pause(&self, local: &Quota, until: Instant, refused: Option<Dimension>, retry: &Cost) {
        let for_ns = until.saturating_duration_since(Instant::now()).as_nanos();
        let op = Op::Pause {
            for_ns: u64::try_from(for_ns).unwrap_or(u64::MAX),
            refused: refused.map_or(0b1111, |d| 1 << d.index()),
        };
        self.send(local, op, Dimension::ALL.map(|d| signed(retry.get(d))));
    }
}

/// An amount as the script's signed argument.
fn signed(amount: u64) -> i64 {
    i64::try_from(amount).unwrap_or(i64::MAX)
}
