//! The seam between the key pool and quotas shared with other processes (distributed mode):
//! [`QuotaSharing`] gives each key's [`SharedQuota`], the last word on when a request reserved
//! on the local [`Quota`] may go, which is told what the local quota settles, cancels and
//! pauses.
//!
//! The engine composes the two at booking time: the local quota reserves (synchronously, under
//! its lock: key choice, probe, the reservation used to settle), then a shared key's
//! [`SharedQuota::admit`] answers how much longer to wait (asynchronously: a round trip to the
//! shared state). Settlements, cancellations and pauses go through [`super::Pick`], which hands
//! them to both. The real implementation keeps the shared state in Redis (`crate::distributed`,
//! plugged in by the command line); this module must not know Redis, nor how or where the
//! shared state is kept, nor run anything itself.

use crate::quota::{Cost, Dimension, Quota};
use futures::future::BoxFuture;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How this process's quotas are shared with other processes.
pub trait QuotaSharing: Send + Sync + fmt::Debug {
    /// The shared quota of the key with this `secret` for `model`, first used at `now`.
    fn quota(&self, secret: &str, model: &str, now: Instant) -> Arc<dyn SharedQuota>;

    /// While the shared state cannot be reached: the part of each limit this process paces on
    /// alone (`None` while it can).
    fn fallback_share(&self) -> Option<f64>;
}

/// One key's (and model's) quota shared with other processes.
pub trait SharedQuota: Send + Sync + fmt::Debug {
    /// Right before sending a request whose `cost` was reserved on `local`: how much longer it
    /// must wait so that every process together stays within the limits.
    fn admit<'a>(
        &'a self,
        local: &'a Quota,
        cost: &'a Cost,
        now: Instant,
    ) -> BoxFuture<'a, SharedAdmission>;

    /// A request it admitted ([`SharedAdmission::holds`]) cost `actual` instead of `reserved`
    /// (nothing: it was refused or never sent). Sent without waiting for it.
    fn settle(&self, local: &Quota, reserved: &Cost, actual: &Cost);

    /// The provider refused (a 429): `local` is paused until `until` (see [`Quota::pause`]);
    /// the shared quota is paused with it. Sent without waiting for it.
    fn pause(&self, local: &Quota, until: Instant, refused: Option<Dimension>, retry: &Cost);
}

/// What a shared admission answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedAdmission {
    /// How much longer the request waits before it goes.
    pub wait: Duration,
    /// Whether the shared state holds the reservation (so settling and cancelling must reach
    /// it); false when the request was paced on this process's fallback share instead.
    pub holds: bool,
}
