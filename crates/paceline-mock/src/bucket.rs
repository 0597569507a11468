//! Limit arithmetic of the simulated provider: one continuously refilling bucket per
//! (key, dimension).
//!
//! # Design
//!
//! A bucket holds a real-valued `level` of units (requests or tokens). It refills continuously at
//! `limit / 60` units per second up to `capacity`, which is the per-minute limit unless a burst
//! cap lowers it (`--burst`, `--token-burst`). This is how real providers describe their limits:
//! `x-ratelimit-remaining-*` is `floor(level)` and `x-ratelimit-reset-*` the time until the
//! bucket is full again.
//!
//! Admission of a request costing `cost` units:
//! - `cost <= capacity`: admitted when `level >= cost`;
//! - `capacity < cost <= limit`: admitted only when the bucket is full; the charge then drives the
//!   level negative (debt), which later requests wait out;
//! - `cost > limit`: never admitted ("Request too large").
//!
//! Every function takes `now` explicitly and does no I/O, so the model is unit-tested with
//! arithmetic instead of sleeps. Callers hold one lock over all dimensions of a key so that
//! "check every dimension, then charge every dimension" is atomic.
//!
//! It knows nothing of keys, models, HTTP or headers.

use std::time::{Duration, Instant};

/// One refilling bucket for one dimension (requests or tokens) of one key.
#[derive(Debug, Clone)]
pub struct Bucket {
    limit: u64,
    capacity: f64,
    level: f64,
    updated: Instant,
}

/// Why a bucket cannot take a cost now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// The cost would fit after waiting this long.
    Wait(Duration),
    /// The cost exceeds the per-minute limit itself; no wait helps.
    TooLarge,
}

impl Bucket {
    /// A full bucket for `limit` units per minute, with capacity `min(limit, burst)`.
    ///
    /// `limit` must be at least 1; a `burst` of `None` (or above the limit) means capacity = limit.
    pub fn new(limit: u64, burst: Option<u64>, now: Instant) -> Self {
        let limit = limit.max(1);
        let capacity = burst.map_or(limit, |b| b.clamp(1, limit)) as f64;
        Self {
            limit,
            capacity,
            level: capacity,
            updated: now,
        }
    }

    /// The per-minute limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The capacity (the most units that can be taken at once without debt).
    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    fn rate_per_sec(&self) -> f64 {
        self.limit as f64 / 60.0
    }

    /// Bring the level up to date at `now` (time never runs backwards here).
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + elapsed * self.rate_per_sec()).min(self.capacity);
        if now > self.updated {
            self.updated = now;
        }
    }

    /// The level at `now` (may be negative while in debt).
    pub fn level(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.level
    }

    /// Whether `cost` could be charged at `now`, and if not, why.
    pub fn check(&mut self, cost: u64, now: Instant) -> Result<(), Refusal> {
        if cost > self.limit {
            return Err(Refusal::TooLarge);
        }
        self.refill(now);
        let needed = (cost as f64).min(self.capacity);
        if self.level >= needed {
            return Ok(());
        }
        let secs = (needed - self.level) / self.rate_per_sec();
        Err(Refusal::Wait(Duration::from_secs_f64(secs)))
    }

    /// Take `cost` units at `now` (after a successful [`Bucket::check`]).
    pub fn charge(&mut self, cost: u64, now: Instant) {
        self.refill(now);
        self.level -= cost as f64;
    }

    /// Give back `amount` units at `now` (never above capacity).
    pub fn refund(&mut self, amount: u64, now: Instant) {
        self.refill(now);
        self.level = (self.level + amount as f64).min(self.capacity);
    }

    /// Refill completely at `now`.
    pub fn fill(&mut self, now: Instant) {
        self.level = self.capacity;
        self.updated = now;
    }

    /// Whole units left at `now`: `floor(level)`, 0 while in debt.
    pub fn remaining(&mut self, now: Instant) -> u64 {
        self.refill(now);
        if self.level <= 0.0 {
            0
        } else {
            self.level.floor() as u64
        }
    }

    /// Time from `now` until the bucket is full again.
    pub fn until_full(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let secs = (self.capacity - self.level) / self.rate_per_sec();
        Duration::from_secs_f64(secs.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn n_pass_then_refused_with_exact_wait() {
        let t0 = Instant::now();
        let mut b = Bucket::new(60, None, t0);
        for _ in 0..60 {
            assert_eq!(b.check(1, t0), Ok(()));
            b.charge(1, t0);
        }
        assert_eq!(b.remaining(t0), 0);
        assert_eq!(b.check(1, t0), Err(Refusal::Wait(Duration::from_secs(1))));
        assert_eq!(b.until_full(t0), Duration::from_secs(60));
        assert!(b.check(1, at(t0, 999)).is_err());
        assert_eq!(b.check(1, at(t0, 1000)), Ok(()));
    }

    #[test]
    fn refill_is_continuous_and_capped() {
        let t0 = Instant::now();
        let mut b = Bucket::new(600, None, t0);
        b.charge(600, t0);
        assert_eq!(b.remaining(at(t0, 500)), 5);
        assert_eq!(b.remaining(at(t0, 3_600_000)), 600);
        assert_eq!(b.until_full(at(t0, 3_600_000)), Duration::ZERO);
    }

    #[test]
    fn burst_caps_capacity() {
        let t0 = Instant::now();
        let mut b = Bucket::new(60_000, Some(1_000), t0);
        assert_eq!(b.capacity(), 1_000.0);
        assert_eq!(b.remaining(t0), 1_000);
        b.charge(1_000, t0);
        // 1,000 per second refill: full again after one second.
        assert_eq!(b.until_full(t0), Duration::from_secs(1));
        assert_eq!(b.remaining(at(t0, 10_000)), 1_000);
    }

    #[test]
    fn cost_above_capacity_needs_full_bucket_and_goes_into_debt() {
        let t0 = Instant::now();
        let mut b = Bucket::new(6_000, Some(1_000), t0);
        assert_eq!(b.check(3_000, t0), Ok(()));
        b.charge(3_000, t0);
        assert_eq!(b.remaining(t0), 0);
        // level -2000, rate 100/s: back to full (1000) after 30 s.
        assert_eq!(
            b.check(3_000, t0),
            Err(Refusal::Wait(Duration::from_secs(30)))
        );
        assert_eq!(
            b.check(1, t0),
            Err(Refusal::Wait(Duration::from_secs_f64(20.01)))
        );
        assert_eq!(b.check(3_000, at(t0, 30_000)), Ok(()));
    }

    #[test]
    fn cost_above_limit_is_too_large() {
        let t0 = Instant::now();
        let mut b = Bucket::new(30_000, None, t0);
        assert_eq!(b.check(30_001, t0), Err(Refusal::TooLarge));
        assert_eq!(b.check(30_000, t0), Ok(()));
    }

    #[test]
    fn refund_never_exceeds_capacity() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100, None, t0);
        b.charge(40, t0);
        b.refund(30, t0);
        assert_eq!(b.remaining(t0), 90);
        b.refund(1_000, t0);
        assert_eq!(b.remaining(t0), 100);
    }

    #[test]
    fn time_going_backwards_changes_nothing() {
        let t0 = Instant::now();
        let later = at(t0, 10_000);
        let mut b = Bucket::new(60, None, later);
        b.charge(60, later);
        assert_eq!(b.remaining(t0), 0);
        assert_eq!(b.remaining(at(t0, 11_000)), 1);
    }
}
