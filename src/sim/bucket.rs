//! One continuously refilling bucket: a real-valued level that grows at `limit / 60` units per
//! second up to its capacity. `remaining` is the floor of the level; `reset` the time until
//! the bucket is full again.
//!
//! It must not know the client's quota (the GCRA of [`crate::quota`]): the two arithmetics are kept
//! apart so that one judges the other.

use std::time::Duration;
use tokio::time::Instant;

/// A refilling bucket of one dimension.
#[derive(Debug, Clone)]
pub struct Bucket {
    per_minute: f64,
    capacity: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `capacity` units refilling at `per_minute` units a minute.
    pub fn new(per_minute: u64, capacity: u64, now: Instant) -> Self {
        let capacity = capacity.clamp(1, per_minute.max(1)) as f64;
        Bucket {
            per_minute: per_minute.max(1) as f64,
            capacity,
            level: capacity,
            at: now,
        }
    }

    fn rate(&self) -> f64 {
        self.per_minute / 60.0
    }

    /// The level at `now`.
    pub fn level(&mut self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * self.rate()).min(self.capacity);
        self.at = self.at.max(now);
        self.level
    }

    /// The per-minute limit.
    pub fn per_minute(&self) -> u64 {
        self.per_minute as u64
    }

    /// The capacity.
    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    /// Whether `cost` may be taken now: the level holds it, or (a cost above the capacity) the
    /// bucket is full.
    pub fn admits(&mut self, cost: u64, now: Instant) -> bool {
        let level = self.level(now);
        let cost = cost as f64;
        if cost <= self.capacity {
            level >= cost - 1e-9
        } else {
            level >= self.capacity - 1e-9
        }
    }

    /// How long until `cost` would be admitted.
    pub fn wait_for(&mut self, cost: u64, now: Instant) -> Duration {
        let need = (cost as f64).min(self.capacity) - self.level(now);
        Duration::from_secs_f64((need / self.rate()).max(0.0))
    }

    /// Take `cost` (the level may go negative: debt).
    pub fn take(&mut self, cost: u64, now: Instant) {
        self.level(now);
        self.level -= cost as f64;
    }

    /// Give `units` back (unused output tokens).
    pub fn give(&mut self, units: u64, now: Instant) {
        self.level(now);
        self.level = (self.level + units as f64).min(self.capacity);
    }

    /// What `remaining` reports: the level's floor, never negative.
    pub fn remaining(&mut self, now: Instant) -> u64 {
        self.level(now).max(0.0).floor() as u64
    }

    /// Time until the bucket is full again.
    pub fn reset(&mut self, now: Instant) -> Duration {
        let missing = self.capacity - self.level(now);
        Duration::from_secs_f64((missing / self.rate()).max(0.0))
    }

    /// A new limit from now on; the capacity scales with it, the level is kept (clamped).
    pub fn lower_to(&mut self, per_minute: u64, now: Instant) {
        self.level(now);
        let per_minute = per_minute.max(1) as f64;
        self.capacity = (self.capacity * per_minute / self.per_minute)
            .max(1.0)
            .floor();
        self.per_minute = per_minute;
        self.level = self.level.min(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn refills_continuously_up_to_capacity() {
        let t0 = Instant::now();
        let mut b = Bucket::new(600, 5, t0);
        for _ in 0..5 {
            assert!(b.admits(1, t0));
            b.take(1, t0);
        }
        assert!(!b.admits(1, t0));
        assert_eq!(b.wait_for(1, t0), Duration::from_millis(100));
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(b.remaining(t1), 2);
        assert_eq!(b.reset(t1), Duration::from_millis(250));
        assert_eq!(b.remaining(t0 + Duration::from_secs(9)), 5);
    }
}
