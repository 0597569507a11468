//! Distributed mode: everything paceline keeps in Redis, so that many processes share keys and
//! jobs. It owns the Redis connection, the shared quota and its script, the work queue and the
//! distributed worker; the rest of paceline knows none of it (the key pool sees a shared quota
//! only through its seam, [`crate::upstream::QuotaSharing`], which the command line plugs in).
//!
//! # Design
//!
//! * **The shared quota is a second, authoritative admission step.** The engine's
//!   [`Quota`](crate::quota::Quota) is synchronous (the dispatcher reserves under a lock), and a
//!   Redis round trip cannot sit under that lock. So the local quota keeps scheduling (key
//!   choice, probe, the reservation used to settle): it knows only this process's traffic, so
//!   with other processes on the key it admits early — that is fine, it is not the last word.
//!   Right before the request is sent, the booking asks the key's shared quota
//!   ([`admission`]), which runs one `EVALSHA` of the script ([`shared_quota`]) and answers
//!   "go in X"; the dispatcher sleeps X and sends. Each dispatcher books one request at a
//!   time, so Redis holds at most one future reservation per process. With a shared quota the
//!   local "someone else uses this key" correction is off: the others' use is in Redis
//!   already.
//! * **Redis unreachable**: admissions fall back to a local share of every limit
//!   ([`local_share`]) while the connection ([`connection`]) backs off and reconnects.
//! * **The shared job** ([`queue`], [`worker`]) does not use the SQLite store: the queue is a
//!   Redis stream with one consumer group; results are a hash by `custom_id`.
//!
//! It must not know the SQLite store, the gateway or the command line; it uses the engine, the
//! runner's signal handling and the batch input as any caller does.

pub mod admission;
pub mod connection;
pub mod local_share;
pub mod queue;
pub mod shared_quota;
pub mod worker;

/// The least a Redis ACL user needs for everything paceline does (shared quotas, shared jobs,
/// `status`, `export`), as the rules of `ACL SETUSER NAME on >PASSWORD <rules>`: its keys only
/// (every key paceline writes starts with `{paceline:`), no channels, and exactly the commands
/// sent — those the two scripts run count too, since Redis checks a script's calls against the
/// user's ACL. `cluster|slots` reads a cluster's topology (and tells a cluster from one node).
pub const MINIMAL_ACL: &str = "~{paceline:* resetchannels -@all +ping \
+cluster|slots +evalsha +script|load +time +hmget +hset +pexpire +sadd +xadd +scard +set +get \
+exists +hlen +hexists +hsetnx +hincrby +xgroup|create +xreadgroup +xautoclaim +xpending +xack \
+xrange +multi +exec";

pub use admission::KeyShare;
pub use connection::{Link, RedisError, RedisTarget, redact};
pub use queue::{JobQueue, QueueError, QueueStatus};
pub use shared_quota::{Op, SharedCell, SharedQuotas};
pub use worker::{WorkerPlan, WorkerReport, work};

#[cfg(test)]
mod tests {
    use super::MINIMAL_ACL;

    #[test]
    fn the_readme_documents_the_acl_the_tests_use() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&format!("ACL SETUSER paceline on >PASSWORD {MINIMAL_ACL}")),
            "README.md's minimal ACL is not distributed::MINIMAL_ACL"
        );
    }
}
